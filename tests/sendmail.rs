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
use common::mta::{self, Mta};
use common::sendmail::Sendmail;
use common::wire::socketmap;
use common::{trap_address, within};

#[test]
fn sendmail_delivers_refuses_and_traps() {
    let x = Sendmail::start("", "");
    let valid = mta::delivers_and_refuses(&x, |to, t| {
        t.contains(&format!("<** 550 5.1.1 <{to}>... This address has expired"))
    });
    let trap = mta::traps_block_their_client(&x, &valid, |t| {
        t.contains("<** 550 5.7.1") && t.contains("spam trap")
    });
    // Everything accepted is delivered (the queue empties), the trap's
    // mail discarded, never queued.
    within(Duration::from_secs(20), "the queue to empty", || {
        x.queue() == (0, 0)
    });
    assert!(x.delivered(&valid, "mjd@plover.com"));
    assert!(
        !x.all_mail().contains(&format!("Subject: to {trap}")),
        "trap mail delivered"
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
        x.all_mail()
    );
}

/// The store cannot be read: Sendmail defers at RCPT (4xx), nothing is
/// queued to bounce later, and mail flows again once it is back; with the
/// resolver down, the `-T<TMPF>` rule defers too.
#[test]
fn sendmail_defers_when_the_store_or_resolver_is_gone() {
    let mut x = Sendmail::start("", "");
    let valid = mta::valid(&x);
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
    assert!(x.delivered(&valid, "mjd@plover.com"), "{}", x.all_mail());

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
    let valid = mta::valid(&x);
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
    assert!(!x.all_mail().contains(&format!("Subject: to {trap}")));

    let x = Sendmail::start("", "action = \"REJECT 5.7.1 not here\"");
    let trap = trap_address(&x.inst);
    let (ok, t) = x.send("127.0.0.66", &trap);
    assert!(
        !ok && t.contains("<** 550 5.7.1 <") && t.contains("... not here"),
        "{t}"
    );
}

/// A message accepted while the resolver was up, delivered by a queue run
/// while it is down: virtusertable's lookup fails temporarily and Sendmail
/// keeps the message (no bounce); the next run after the resolver is back
/// delivers it to its base address.
#[test]
fn sendmail_keeps_what_it_cannot_route_until_the_resolver_is_back() {
    let mut x = Sendmail::queue_only();
    let valid = mta::valid(&x);
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(ok, "{t}");
    assert_eq!(x.queue(), (1, 0));
    x.stop_resolver();
    x.run_queue();
    assert_eq!(x.queue(), (1, 0), "deferred, kept");
    assert!(!x.all_mail().contains(&format!("Subject: to {valid}")));
    x.start_resolver();
    x.run_queue();
    assert!(x.delivered(&valid, "mjd@plover.com"), "{}", x.all_mail());
    within(Duration::from_secs(10), "the queue to empty", || {
        x.queue() == (0, 0)
    });
}
