//! The resolver against a real Sendmail 8.17 (tests/common/sendmail.rs
//! starts one of its own per test, with the README's virtusertable line
//! and `Local_check_rcpt` ruleset): delivery, refusal, traps and blocks
//! over real SMTP with swaks, and a deferral, never a bounce, when the
//! store cannot be read or the resolver is gone.
//!
//! Needs Sendmail unpacked, m4 and swaks (scripts/test.sh does all three).

use std::fs;
use std::time::Duration;

mod common;
use common::postfix::day_offset;
use common::sendmail::Sendmail;
use common::wire::socketmap;
use common::{trap_address, within};

/// `valid` with its last character changed: a forged ID.
fn forge(valid: &str) -> String {
    let (l, d) = valid.split_once('@').unwrap();
    let last = if l.ends_with('a') { 'b' } else { 'a' };
    format!("{}{last}@{d}", &l[..l.len() - 1])
}

#[test]
fn sendmail_delivers_refuses_and_traps() {
    let x = Sendmail::start("", "");
    let valid = x.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(ok, "{t}");
    assert!(x.delivered(&valid, "mjd@plover.com"), "{}", x.mailbox());

    // Yesterday's ID is still good; the bare address and an exempt one are
    // delivered (bare = "accept", the default).
    let yesterday = x.cli_ok(&[
        "encode",
        "--ip",
        "203.0.113.9",
        "--date",
        &day_offset(-1),
        "mjd@plover.com",
    ]);
    for (to, base) in [
        (yesterday.as_str(), "mjd@plover.com"),
        ("mjd@plover.com", "mjd@plover.com"),
        ("list-subscribe@plover.com", "list-subscribe@plover.com"),
    ] {
        let (ok, t) = x.send("127.0.0.2", to);
        assert!(ok, "{to}: {t}");
        assert!(x.delivered(to, base), "{to}\n{}", x.mailbox());
    }

    // Expired by IP and by day, and forged: 5xx at RCPT with the text.
    let by_ip = x.cli_ok(&["encode", "--ip", "198.51.100.20", "mjd@plover.com"]);
    x.cli_ok(&["expire", "--ip", "198.51.100.20"]);
    let old_day = day_offset(-3);
    let by_day = x.cli_ok(&[
        "encode",
        "--ip",
        "203.0.113.9",
        "--date",
        &old_day,
        "mjd@plover.com",
    ]);
    x.cli_ok(&["expire", "--day", &old_day]);
    let forged = forge(&valid);
    std::thread::sleep(Duration::from_millis(600)); // the rules reach the resolver
    for to in [&by_ip, &by_day, &forged] {
        let (ok, t) = x.send("127.0.0.2", to);
        assert!(!ok, "{to} accepted: {t}");
        assert!(
            t.contains(&format!("<** 550 5.1.1 <{to}>... This address has expired")),
            "{to}: {t}"
        );
    }
    assert!(!x.mailbox().contains(&by_ip) && !x.mailbox().contains(&forged));

    // A trap: accepted-looking, never delivered, and its client refused next time.
    let trap = trap_address(&x.inst);
    let (ok, t) = x.send("127.0.0.66", &trap);
    assert!(ok, "a trap must look accepted: {t}");
    let (ok, t) = x.send("127.0.0.66", &valid);
    assert!(
        !ok && t.contains("<** 550 5.7.1") && t.contains("spam trap"),
        "the trap's client: {t}"
    );
    let (ok, t) = x.send("127.0.0.67", &valid);
    assert!(ok, "another client: {t}");
    // Everything accepted is delivered (the queue empties), the trap's
    // mail discarded, never queued.
    within(Duration::from_secs(20), "the queue to empty", || {
        x.queue() == (0, 0)
    });
    assert_eq!(x.mailbox().matches(&format!("Subject: to {valid}")).count(), 2);
    assert!(
        !x.mailbox().contains(&format!("Subject: to {trap}")),
        "trap mail delivered"
    );
    assert!(x.cli_ok(&["blocks"]).contains("127.0.0.66"));
    // Every arrival recorded, as with Postfix, with Sendmail's fields.
    let trace = x.cli_ok(&["trace", &valid]);
    assert!(
        trace.contains("from 127.0.0.2 (HELO sender.example) sender <spammer@sender.example>")
            && trace.contains("127.0.0.67"),
        "{trace}"
    );
}

/// `bare = "reject"`: the bare base address is refused at RCPT, and any
/// other bare local part at the protected domain (every local part is
/// protected by default); postmaster is never refused.
#[test]
fn sendmail_refuses_bare_addresses_when_told() {
    let x = Sendmail::start("bare = \"reject\"", "");
    let (ok, t) = x.send("127.0.0.2", "mjd@plover.com");
    assert!(!ok && t.contains("<** 550 5.1.1 <mjd@plover.com>..."), "{t}");
    let (ok, t) = x.send("127.0.0.2", "list-subscribe@plover.com");
    assert!(ok, "exempt: {t}");
    let (ok, t) = x.send("127.0.0.2", "nobody-here@plover.com");
    assert!(
        !ok && t.contains("<** 550 5.1.1 <nobody-here@plover.com>... This address does not take mail"),
        "{t}"
    );
    let (ok, t) = x.send("127.0.0.2", "postmaster@plover.com");
    assert!(ok, "{t}");
    assert!(
        x.delivered("postmaster@plover.com", "postmaster@plover.com"),
        "{}",
        x.mailbox()
    );
}

/// The store cannot be read: Sendmail defers at RCPT (4xx), nothing is
/// queued to bounce later, and mail flows again once it is back; with the
/// resolver down, the `-T<TMPF>` rule defers too.
#[test]
fn sendmail_defers_when_the_store_or_resolver_is_gone() {
    let mut x = Sendmail::start("", "");
    let valid = x.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let state = x.inst.path("state.sqlite");
    fs::rename(&state, x.inst.path("state.moved")).unwrap();
    fs::create_dir(&state).unwrap();
    let key = format!("addrmunge 127.0.0.2|<{valid}>|a@b.example|helo");
    within(
        Duration::from_secs(5),
        "tempfail while the store is unreadable",
        || socketmap(x.port, &key).starts_with("OK tempfail 4.3.0 \"451 "),
    );
    assert!(socketmap(x.port, &format!("virtuser {valid}")).starts_with("TEMP "));
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(!ok && t.contains("<** 451 4.3.0"), "{t}");
    fs::remove_dir(&state).unwrap();
    fs::rename(x.inst.path("state.moved"), &state).unwrap();
    within(Duration::from_secs(5), "the resolver recovers", || {
        socketmap(x.port, &key) == "OK accept"
    });
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(ok, "{t}");
    assert!(x.delivered(&valid, "mjd@plover.com"), "{}", x.mailbox());

    x.stop_resolver();
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(
        !ok && t.contains("<** 451 4.3.0 addrmunge is not answering"),
        "{t}"
    );
    assert_eq!(x.queue(), (0, 0), "nothing accepted and left to bounce");
}

/// Sendmail's two map names by themselves: the key as Sendmail sends it
/// (lowercased, spaces between tokens, `IPv6:` clients), and bad keys.
#[test]
fn the_sendmail_maps() {
    let x = Sendmail::start("bare = \"reject\"", "");
    let valid = x.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let ask = |q: &str| socketmap(x.port, q);
    assert_eq!(
        ask(&format!("virtuser {}", valid.to_lowercase())),
        "OK mjd@plover.com"
    );
    assert_eq!(ask("virtuser mjd@plover.com"), "NOTFOUND ");
    assert_eq!(ask("virtuser @plover.com"), "NOTFOUND ");
    let rcpt = |client: &str, to: &str| ask(&format!("addrmunge {client} |<{to}>| < a@b.example > | helo"));
    assert_eq!(rcpt("127.0.0.2", &valid.to_lowercase()), "OK accept");
    assert_eq!(rcpt("ipv6:2001:db8::7", &valid), "OK accept");
    assert!(
        rcpt("127.0.0.2", "mjd@plover.com").starts_with("OK reject 5.1.1 \"550 This address"),
        "{}",
        rcpt("127.0.0.2", "mjd@plover.com")
    );
    assert_eq!(rcpt("127.0.0.2", "postmaster@plover.com"), "OK accept");
    assert_eq!(rcpt("127.0.0.2", "someone@example.com"), "OK accept");
    // A trap from an IPv6 client blocks that client, by its address.
    let trap = trap_address(&x.inst);
    assert_eq!(rcpt("ipv6:2001:db8::66", &trap), "OK discard");
    assert!(rcpt("ipv6:2001:db8::66", &valid).starts_with("OK reject 5.7.1 "));
    for bad in ["addrmunge 127.0.0.2", "addrmunge |", "sendmail x"] {
        assert!(ask(bad).starts_with("PERM "), "{bad}: {}", ask(bad));
    }
}

/// `[traps] action = "HOLD"`: Sendmail quarantines trap mail in its queue
/// (kept for a look, never delivered); `REJECT text` refuses it with the text.
#[test]
fn sendmail_holds_or_rejects_traps_as_configured() {
    let x = Sendmail::start("", "action = \"HOLD\"");
    let trap = trap_address(&x.inst);
    let (ok, t) = x.send("127.0.0.66", &trap);
    assert!(ok, "{t}");
    within(Duration::from_secs(10), "the trap mail quarantined", || {
        x.queue() == (0, 1)
    });
    x.run_queue();
    assert_eq!(x.queue(), (0, 1), "a queue run leaves it held");
    assert!(!x.mailbox().contains(&format!("Subject: to {trap}")));

    let x = Sendmail::start("", "action = \"REJECT 5.7.1 not here\"");
    let trap = trap_address(&x.inst);
    let (ok, t) = x.send("127.0.0.66", &trap);
    assert!(
        !ok && t.contains("<** 550 5.7.1 <") && t.contains("... not here"),
        "{t}"
    );
}
