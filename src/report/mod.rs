//! Forensics over the store: `addrmunge trace` (who harvested one address,
//! when, what mail it drew, how to cut it off) and `addrmunge report` (the
//! picture of the last N days, as text, JSON or one self-contained HTML
//! file with inline SVG charts), plus the recipients of a message or mbox.
//! One file per role: `trace`, `summary`, `html`,
//! `blocks`, `mbox`.

mod blocks;
mod html;
mod mbox;
mod summary;
mod trace;

pub use blocks::{BlockFormat, write_blocks};
pub use html::html_report;
pub use mbox::message_recipients;
pub use summary::{Report, Target, report, write_report};
pub use trace::{CutOff, Trace, trace, write_trace};

use crate::day::Day;
use crate::store::Visit;

/// `2026-11-20 16:14:03 UTC`.
pub fn fmt_time(secs: i64) -> String {
    let day = Day::from_unix(secs);
    let s = secs.rem_euclid(86_400);
    format!("{day} {:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// `3d 4h`, `9h 6m`, `12m 5s`.
pub fn fmt_span(secs: i64) -> String {
    let (sign, s) = if secs < 0 { ("-", -secs) } else { ("", secs) };
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d {h}h")
    } else if h > 0 {
        format!("{sign}{h}h {m}m")
    } else {
        format!("{sign}{m}m {sec}s")
    }
}

fn day_start(day: Day) -> i64 {
    i64::from(day.number()) * 86_400
}

/// When an ID was harvested: the first page that carried an address to its
/// visitor that day, else their first request, else (no visit logged) the
/// start of the day.
fn harvest_time(visit: Option<&Visit>, day: Day) -> i64 {
    visit
        .map(|v| v.first_munged.unwrap_or(v.first_seen))
        .unwrap_or_else(|| day_start(day))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Protection;
    use crate::store::Store;

    /// `--days` past 1970 covers everything since, not just today.
    #[test]
    fn more_days_than_there_are_cover_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        // Today's number + 1 is exactly every day since; a fixed number
        // here stopped being "more than there are" when the calendar passed it.
        for days in [Day::today().number() + 1, 30_000, u16::MAX] {
            let r = report(&mut store, days).unwrap();
            assert_eq!((r.from, r.to), (Day::from_number(0), Day::today()), "{days}");
        }
        assert_eq!(
            report(&mut store, 2).unwrap().from,
            Day::today().checked_sub(1).unwrap()
        );
    }

    #[test]
    fn times_and_spans() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_time(86_400 + 3723), "1970-01-02 01:02:03 UTC");
        assert_eq!(fmt_span(9 * 3600 + 6 * 60), "9h 6m");
        assert_eq!(fmt_span(3 * 86_400 + 4 * 3600), "3d 4h");
        assert_eq!(fmt_span(65), "1m 5s");
    }

    #[test]
    fn recipients_from_a_message_and_an_mbox() {
        let prot = Protection::new(
            vec![crate::address::Protect {
                domain: "plover.com".into(),
                local: crate::address::Glob::new("*").unwrap(),
                exempt: vec![],
                deliver_to: None,
            }],
            "-id-",
        );
        let msg = "From spammer@x.test Fri Nov 20 16:14:03 2026\r\nReturn-Path: <spammer@x.test>\r\nDelivered-To: mjd-id-m37zeg5dtbfcd59x57rca4c8@plover.com\r\nTo: \"Mark\" <MJD-id-zxpv745h78nrzysvv8y5c07g@plover.com>,\r\n\tother@x.test\r\nCc: mjd@plover.com\r\nSubject: hi\r\n\r\nTo: mjd-id-body@plover.com\r\n\nFrom someone Fri Nov 20 17:00:00 2026\nX-Original-To: jane.doe-id-snmmtxs8y4en3wn536yhfxdg@plover.com\n\nbody\n";
        assert_eq!(
            message_recipients(msg, &prot),
            vec![
                "mjd-id-m37zeg5dtbfcd59x57rca4c8@plover.com",
                "mjd-id-zxpv745h78nrzysvv8y5c07g@plover.com",
                "jane.doe-id-snmmtxs8y4en3wn536yhfxdg@plover.com"
            ]
        );
    }

    #[test]
    fn block_formats() {
        let b = vec![
            ("192.0.2.66".parse().unwrap(), 86_400),
            ("2001:db8::1".parse().unwrap(), 86_400),
        ];
        let mut o = Vec::new();
        write_blocks(&mut o, &b, BlockFormat::PostfixCidr, "5.7.1 blocked").unwrap();
        let t = String::from_utf8(o).unwrap();
        assert!(t.contains("192.0.2.66/32\tREJECT 5.7.1 blocked"), "{t}");
        assert!(t.contains("2001:db8::1/128\tREJECT"), "{t}");
        let mut o = Vec::new();
        assert_eq!(
            write_blocks(&mut o, &b, BlockFormat::Rbldnsd, "blocked").unwrap(),
            1
        );
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "# addrmunge blocks: rbldnsd ip4set data\n:127.0.0.2:blocked\n192.0.2.66\n"
        );
    }
}
