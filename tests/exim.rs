//! The resolver against a real Exim 4 (tests/common/exim.rs starts one of
//! its own per test, with the README's router and RCPT ACL): delivery,
//! refusal, traps and blocks over real SMTP with swaks, and a deferral,
//! never a bounce, when the store cannot be read.
//!
//! Needs Exim unpacked and swaks (scripts/test.sh does both).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;
use common::exim::Exim;
use common::mta::{self, Mta};
use common::{trap_address, within};

/// The resolver's answer to one line, as Exim's `${readsocket}` asks it.
fn ask(port: u16, line: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Over max_request the resolver closes with the rest unread: the
    // write or the shutdown may meet the reset, and the answer is empty.
    if s.write_all(line.as_bytes()).is_err() || s.shutdown(std::net::Shutdown::Write).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn exim_delivers_refuses_and_traps() {
    let x = Exim::start("");
    // Exim folds a long text over several 550- lines.
    let valid = mta::delivers_and_refuses(&x, |_, t| t.contains("<** 550-5.1.1 This address has expired"));
    let trap = mta::traps_block_their_client(&x, &valid, |t| t.contains("<** 550") && t.contains("5.7.1"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !x.all_mail().contains(&format!("Subject: to {trap}")),
        "trap mail delivered"
    );
}

/// The store cannot be read: Exim defers at RCPT (4xx), nothing bounces,
/// and mail flows again once it is back; with the resolver down, Exim's
/// own fail string defers too.
#[test]
fn exim_defers_when_the_store_or_resolver_is_gone() {
    let mut x = Exim::start("");
    let valid = mta::valid(&x);
    let state = x.inst.path("state.sqlite");
    fs::rename(&state, x.inst.path("state.moved")).unwrap();
    fs::create_dir(&state).unwrap();
    let rcpt = format!("rcpt 127.0.0.2 {valid} a@b.example helo\n");
    within(
        Duration::from_secs(5),
        "defer while the store is unreadable",
        || ask(x.port, &rcpt).starts_with("defer 4.3.0"),
    );
    assert!(ask(x.port, &format!("route {valid}\n")).starts_with(":defer: "));
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(!ok && t.contains("<** 451 4.3.0"), "{t}");
    fs::remove_dir(&state).unwrap();
    fs::rename(x.inst.path("state.moved"), &state).unwrap();
    within(Duration::from_secs(5), "the resolver recovers", || {
        ask(x.port, &rcpt) == "accept\n"
    });
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(ok, "{t}");
    assert!(x.delivered(&valid, "mjd@plover.com"), "{}", x.log());

    x.stop_resolver();
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(
        !ok && t.contains("<** 451 4.3.0 addrmunge is not answering"),
        "{t}"
    );
    assert_eq!(x.queued(), 0, "nothing accepted and left to bounce");
}

/// The line protocol by itself: both requests, odd input, and the limits.
#[test]
fn the_exim_protocol() {
    let x = Exim::start("bare = \"reject\"");
    let valid = mta::valid(&x);
    assert_eq!(
        ask(x.port, &format!("route {}\n", valid.to_uppercase())),
        "mjd@plover.com\n"
    );
    assert_eq!(
        ask(x.port, "route mjd@plover.com\n"),
        "\n",
        "a base address is not routed"
    );
    assert_eq!(ask(x.port, "route someone@example.com\n"), "\n");
    // No newline at the end (the shutdown ends the request), and a bounce's empty sender.
    assert_eq!(
        ask(x.port, &format!("rcpt 127.0.0.2 {valid}  helo.example")),
        "accept\n"
    );
    assert!(ask(x.port, "rcpt 127.0.0.2 mjd@plover.com  helo\n").starts_with("reject 5.1.1 "));
    assert_eq!(
        ask(x.port, "rcpt 127.0.0.2 postmaster@plover.com  helo\n"),
        "accept\n"
    );
    assert_eq!(
        ask(x.port, "rcpt 127.0.0.2 someone@example.com  helo\n"),
        "accept\n"
    );
    for bad in ["", "rcpt\n", "route\n", "hello there\n"] {
        assert!(
            ask(x.port, bad).is_empty() || ask(x.port, bad).starts_with("defer 4.5.4 "),
            "{bad:?}"
        );
    }
    // Two requests on one connection get two answers.
    let mut s = TcpStream::connect(("127.0.0.1", x.port)).unwrap();
    s.write_all(format!("route {valid}\nroute {valid}\n").as_bytes())
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out, "mjd@plover.com\nmjd@plover.com\n");
    // Over max_request: closed without an answer; the resolver lives on.
    assert_eq!(ask(x.port, &format!("route {}\n", "a".repeat(20_000))), "");
    assert_eq!(ask(x.port, &format!("route {valid}\n")), "mjd@plover.com\n");
}

/// `[traps] action = "HOLD"`: Exim freezes trap mail in its queue (kept
/// for a look, never delivered); `REJECT text` refuses it with the text.
#[test]
fn exim_holds_or_rejects_traps_as_configured() {
    let x = Exim::start_with("", "action = \"HOLD\"");
    let trap = trap_address(&x.inst);
    let (ok, t) = x.send("127.0.0.66", &trap);
    assert!(ok, "{t}");
    within(Duration::from_secs(10), "the trap mail frozen", || {
        x.log().contains("frozen")
    });
    assert_eq!(x.queued(), 1);
    assert!(!x.all_mail().contains(&format!("Subject: to {trap}")));

    let x = Exim::start_with("", "action = \"REJECT 5.7.1 not here\"");
    let trap = trap_address(&x.inst);
    let (ok, t) = x.send("127.0.0.66", &trap);
    assert!(!ok && t.contains("<** 550 5.7.1 not here"), "{t}");
}

/// A message accepted while the resolver was up, routed while it is down:
/// the router defers and Exim keeps it (no bounce), and the next queue run
/// after the resolver is back delivers it to its base address.
#[test]
fn exim_keeps_what_it_cannot_route_until_the_resolver_is_back() {
    let mut x = Exim::queue_only();
    let valid = mta::valid(&x);
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(ok, "{t}");
    assert_eq!(x.queued(), 1);
    x.stop_resolver();
    x.run_queue();
    assert_eq!(x.queued(), 1, "deferred, kept: {}", x.log());
    assert!(
        x.log().contains("== ") && !x.log().contains(" ** "),
        "a deferral, no bounce: {}",
        x.log()
    );
    x.start_resolver();
    x.run_queue();
    assert!(x.delivered(&valid, "mjd@plover.com"), "{}", x.log());
    assert_eq!(x.queued(), 0);
}
