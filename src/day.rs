//! UTC calendar days: the unit every ID, rule and log entry is dated in.
//!
//! A day is stored as the number of days since 1970-01-01 in a `u16`, which
//! reaches 2149-06-06; tokens carry exactly these 16 bits. The civil-date
//! conversion is Howard Hinnant's public-domain `days_from_civil` /
//! `civil_from_days` algorithm: twenty lines, exhaustively tested below, and
//! cheaper to keep than a date crate we would use for nothing else.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// One UTC calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(u16);

/// Why a text is not a day.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a date: write it as YYYY-MM-DD between 1970-01-01 and 2149-06-06")]
pub struct DayParseError {
    text: String,
}

impl Day {
    /// The first representable day, 1970-01-01.
    pub const EPOCH: Day = Day(0);

    /// Today in UTC, from the system clock.
    pub fn today() -> Day {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Day(u16::try_from(secs / 86_400).unwrap_or(u16::MAX))
    }

    /// The day containing a Unix timestamp (seconds).
    pub fn from_unix(secs: i64) -> Day {
        Day(u16::try_from(secs.max(0) / 86_400).unwrap_or(u16::MAX))
    }

    /// Builds a day from its number (days since 1970-01-01).
    pub const fn from_number(n: u16) -> Day {
        Day(n)
    }

    /// Days since 1970-01-01.
    pub const fn number(self) -> u16 {
        self.0
    }

    /// Builds a day from a civil date, or `None` outside 1970-01-01..=2149-06-06
    /// or for a date that does not exist (2026-02-30).
    pub fn from_ymd(y: i32, m: u32, d: u32) -> Option<Day> {
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        let n = days_from_civil(y, m, d);
        u16::try_from(n).ok().map(Day)
    }

    /// The civil date `(year, month, day)`.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(i64::from(self.0))
    }

    /// `self + n` days, or `None` past the last representable day.
    pub fn checked_add(self, n: u16) -> Option<Day> {
        self.0.checked_add(n).map(Day)
    }

    /// `self - n` days, or `None` before 1970-01-01.
    pub fn checked_sub(self, n: u16) -> Option<Day> {
        self.0.checked_sub(n).map(Day)
    }

    /// Whole days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Day) -> i32 {
        i32::from(later.0) - i32::from(self.0)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl FromStr for Day {
    type Err = DayParseError;

    fn from_str(s: &str) -> Result<Day, DayParseError> {
        let err = || DayParseError { text: s.to_owned() };
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, DayParseError> {
            let part = &s[r];
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().map_err(|_| err())
            } else {
                Err(err())
            }
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        Day::from_ymd(y as i32, m, d).ok_or_else(err)
    }
}

impl serde::Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_representable_day_round_trips_through_text() {
        for n in 0..=u16::MAX {
            let day = Day(n);
            let text = day.to_string();
            assert_eq!(text.parse::<Day>(), Ok(day), "{text}");
        }
        assert_eq!(Day(0).to_string(), "1970-01-01");
        assert_eq!(Day(u16::MAX).to_string(), "2149-06-06");
    }

    #[test]
    fn impossible_dates_are_refused() {
        for bad in [
            "2026-02-29",
            "2024-13-01",
            "2024-00-10",
            "1969-12-31",
            "2149-06-07",
            "2026-1-01",
            "26-01-01xx",
            "2026/01/01",
            "+026-01-01",
        ] {
            assert!(bad.parse::<Day>().is_err(), "{bad}");
        }
        assert!("2024-02-29".parse::<Day>().is_ok());
    }

    #[test]
    fn known_dates() {
        assert_eq!(Day::from_ymd(2026, 11, 22).unwrap().number(), 20_779);
        assert_eq!(Day::from_unix(1_763_769_600).to_string(), "2025-11-22");
    }
}
