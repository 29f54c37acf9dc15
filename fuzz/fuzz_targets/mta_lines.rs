//! OpenSMTPD's filter protocol and the Sendmail/OpenSMTPD map key over any
//! bytes: the filter never panics, answers every `filter` line with exactly
//! one `filter-result` (OpenSMTPD waits for it), and a parsed key always
//! has a recipient without the separator.
#![no_main]

use std::time::Duration;

use addrmunge::listen::Listen;
use addrmunge::resolver::sendmail::request;
use addrmunge::smtpd_filter::{Filter, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Nothing listens on loopback's port 9: every RCPT gets the 451 path.
    let mut f = Filter::new(Options {
        resolver: Listen::parse("inet:127.0.0.1:9").unwrap(),
        trap_to: "trap@localhost".into(),
        timeout: Duration::from_millis(50),
    });
    let mut out = Vec::new();
    f.run(data, &mut out).unwrap();
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let answers = f.line(line);
        if line.starts_with("filter|") && line.split('|').count() >= 7 && line.split('|').nth(3) == Some("smtp-in") {
            assert_eq!(answers.len(), 1, "{line:?}");
            assert!(answers[0].starts_with("filter-result|"));
        }
        if let Some(req) = request(line) {
            assert!(!req.recipient.is_empty() && !req.recipient.contains('|'));
        }
    }
});
