//! The log lines' timestamps: what tracing-subscriber's `SystemTime`
//! writes (RFC 3339 in UTC, to the microsecond), with the date and the
//! time of day formatted once a second instead of for every line. The
//! proxy writes a line for every request, and formatting its timestamp
//! took ~2,200 instructions of each (`benches/instructions.sh`), about
//! as many as reading the request's head.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

use addrmunge::Day;

/// The timer of every log format (`fmt().with_timer(Timestamps)`).
pub(super) struct Timestamps;

thread_local! {
    /// The second this thread last wrote a line in, as text.
    static SECOND: RefCell<Second> = const { RefCell::new(Second { at: u64::MAX, text: String::new() }) };
}

impl FormatTime for Timestamps {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        if now.is_zero() || now.as_secs() / 86_400 > u64::from(u16::MAX) {
            // A clock before 1970 or past 2149 (no `Day`): tracing's own way.
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        }
        SECOND.with_borrow_mut(|s| w.write_str(s.text(now.as_secs())))?;
        write_fraction(w, now.subsec_micros())
    }
}

/// A second and its text, `YYYY-MM-DDTHH:MM:SS`.
struct Second {
    at: u64,
    text: String,
}

impl Second {
    /// The text of `secs` (Unix seconds within `Day`'s range), made anew
    /// only when the second is not the last one asked for.
    fn text(&mut self, secs: u64) -> &str {
        if self.at != secs {
            let day = Day::from_unix(secs as i64);
            let t = secs % 86_400;
            self.text = format!("{day}T{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
            self.at = secs;
        }
        &self.text
    }
}

/// `.MMMMMMZ`: the microseconds, six digits.
fn write_fraction(w: &mut impl Write, micros: u32) -> fmt::Result {
    let mut digits = itoa::Buffer::new();
    // A leading 1 keeps the zeros after it; it is not written.
    let padded = digits.format(1_000_000 + micros);
    w.write_char('.')?;
    w.write_str(&padded[1..])?;
    w.write_char('Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u32) -> String {
        let mut s = Second {
            at: u64::MAX,
            text: String::new(),
        };
        let mut out = s.text(secs).to_owned();
        write_fraction(&mut out, micros).unwrap();
        out
    }

    /// Against `date -u -d @SECS`.
    #[test]
    fn timestamps_are_rfc_3339_in_utc_to_the_microsecond() {
        assert_eq!(at(1, 0), "1970-01-01T00:00:01.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_796_057_623, 88_784), "2026-11-30T16:53:43.088784Z");
        assert_eq!(at(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
    }

    #[test]
    fn the_text_follows_the_second() {
        let mut s = Second {
            at: u64::MAX,
            text: String::new(),
        };
        assert_eq!(s.text(1_796_057_623), "2026-11-30T16:53:43");
        assert_eq!(s.text(1_796_057_623), "2026-11-30T16:53:43");
        assert_eq!(s.text(1_796_057_624), "2026-11-30T16:53:44");
        assert_eq!(s.text(1_796_057_623), "2026-11-30T16:53:43");
    }

    /// What tracing-subscriber's own timer writes, to the second (tried
    /// again when the two calls straddle one).
    #[test]
    fn the_line_reads_as_tracing_writes_it() {
        let write = |timer: &dyn FormatTime| {
            let mut s = String::new();
            timer.format_time(&mut Writer::new(&mut s)).unwrap();
            s
        };
        for _ in 0..3 {
            let (ours, theirs) = (
                write(&Timestamps),
                write(&tracing_subscriber::fmt::time::SystemTime),
            );
            assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
            if ours[..19] == theirs[..19] {
                return;
            }
        }
        panic!("three seconds apart in three tries");
    }
}
