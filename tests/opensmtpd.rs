//! The resolver against a real OpenSMTPD 6.8 (tests/common/opensmtpd.rs
//! starts one of its own per test, with the README's `filter` and
//! `listen` lines): delivery, refusal, traps and blocks over real SMTP
//! with swaks through `addrmunge opensmtpd-filter`, and a 451, never a
//! bounce, when the store cannot be read or the resolver is gone.
//!
//! Needs OpenSMTPD unpacked and swaks (scripts/test.sh does both).

use std::fs;
use std::time::Duration;

mod common;
use common::mta::{self, Mta, forge};
use common::opensmtpd::Opensmtpd;
use common::wire::socketmap;
use common::{trap_address, within};

#[test]
fn opensmtpd_delivers_refuses_and_traps() {
    let x = Opensmtpd::start("", "");
    let valid = mta::delivers_and_refuses(&x, |_, t| t.contains("<** 550 5.1.1 This address has expired"));
    let trap = mta::traps_block_their_client(&x, &valid, |t| {
        t.contains("<** 550 5.7.1 Your server sent mail to a spam trap")
    });
    within(Duration::from_secs(20), "the queue to empty", || x.queued() == 0);
    assert!(x.delivered(&valid, "mjd@plover.com"));
    assert!(
        !x.mailbox("mjd@plover.com")
            .contains(&format!("Subject: to {trap}"))
    );
    assert!(
        x.log().contains("to=<addrmunge-trap@localhost>"),
        "the trap went to the sink: {}",
        x.log()
    );
}

/// `bare = "reject"`: the bare base address is refused at RCPT;
/// postmaster is never refused; `REJECT text` traps are refused with it.
#[test]
fn opensmtpd_refuses_bare_addresses_and_reject_traps_when_told() {
    let x = Opensmtpd::start("bare = \"reject\"", "action = \"REJECT 5.7.1 not here\"");
    let (ok, t) = x.send("127.0.0.2", "mjd@plover.com");
    assert!(!ok && t.contains("<** 550 5.1.1 "), "{t}");
    let (ok, t) = x.send("127.0.0.2", "list-subscribe@plover.com");
    assert!(ok, "exempt: {t}");
    let (ok, t) = x.send("127.0.0.2", "postmaster@plover.com");
    assert!(ok, "{t}");
    assert!(
        x.delivered("postmaster@plover.com", "postmaster@plover.com"),
        "{}",
        x.log()
    );
    let trap = trap_address(&x.inst);
    let (ok, t) = x.send("127.0.0.66", &trap);
    assert!(!ok && t.contains("<** 550 5.7.1 not here"), "{t}");
}

/// The store cannot be read: a 451 at RCPT, nothing queued to bounce
/// later, and mail flows again once it is back; with the resolver down,
/// the filter answers 451 itself and OpenSMTPD keeps running.
#[test]
fn opensmtpd_defers_when_the_store_or_resolver_is_gone() {
    let mut x = Opensmtpd::start("", "");
    let valid = mta::valid(&x);
    let state = x.inst.path("state.sqlite");
    fs::rename(&state, x.inst.path("state.moved")).unwrap();
    fs::create_dir(&state).unwrap();
    let key = format!("opensmtpd 127.0.0.2|{valid}|a@b.example|helo");
    within(
        Duration::from_secs(5),
        "a 451 while the store is unreadable",
        || socketmap(x.port, &key).starts_with("OK reject 451 4.3.0 "),
    );
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(!ok && t.contains("<** 451 4.3.0"), "{t}");
    fs::remove_dir(&state).unwrap();
    fs::rename(x.inst.path("state.moved"), &state).unwrap();
    within(Duration::from_secs(5), "the resolver recovers", || {
        socketmap(x.port, &key) == "OK rewrite mjd@plover.com"
    });
    let (ok, t) = x.send("127.0.0.2", &valid);
    assert!(ok, "{t}");
    assert!(x.delivered(&valid, "mjd@plover.com"), "{}", x.log());

    x.stop_resolver();
    for _ in 0..2 {
        let (ok, t) = x.send("127.0.0.2", &valid);
        assert!(
            !ok && t.contains("<** 451 4.3.0 addrmunge is not answering"),
            "{t}"
        );
    }
    within(Duration::from_secs(20), "the queue to empty", || x.queued() == 0);
}

/// The `opensmtpd` map by itself: the key the filter sends, and bad keys.
#[test]
fn the_opensmtpd_map() {
    let x = Opensmtpd::start("", "");
    let valid = mta::valid(&x);
    let ask = |to: &str| socketmap(x.port, &format!("opensmtpd 127.0.0.2|{to}|a@b.example|helo"));
    assert_eq!(ask(&valid.to_uppercase()), "OK rewrite mjd@plover.com");
    assert_eq!(ask("mjd@plover.com"), "OK proceed");
    assert_eq!(ask("someone@example.com"), "OK proceed");
    let forged = ask(&forge(&valid));
    assert!(forged.starts_with("OK reject 550 5.1.1 "), "{forged}");
    // Last: the trap blocks the client that asked.
    assert_eq!(ask(&trap_address(&x.inst)), "OK trap");
    assert!(ask(&valid).starts_with("OK reject 550 5.7.1 "));
    assert!(socketmap(x.port, "opensmtpd 127.0.0.2").starts_with("PERM "));
}

/// `addrmunge opensmtpd-filter` as OpenSMTPD runs it, on a pipe, asking a
/// resolver on a unix socket: registrations, a session, and the resolver
/// stopping and coming back (the filter reconnects; it never exits);
/// nothing but the protocol on standard output.
#[test]
fn the_filter_over_a_unix_socket() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("map.sock");
    let inst = common::Instance::in_dir(
        dir,
        &format!(
            "[[protect]]\ndomain = \"plover.com\"\n[resolver]\nsocketmap = [\"unix:{}\"]\n",
            sock.display()
        ),
    );
    let resolver = inst.start("resolver", &[]);
    within(Duration::from_secs(10), "the resolver's socket", || sock.exists());
    let valid = inst.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let mut filter = Command::new(env!("CARGO_BIN_EXE_addrmunge"))
        .args([
            "opensmtpd-filter",
            "--resolver",
            &format!("unix:{}", sock.display()),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = filter.stdin.take().unwrap();
    let mut output = BufReader::new(filter.stdout.take().unwrap());
    let mut say = |line: &str, answers: usize| -> Vec<String> {
        writeln!(input, "{line}").unwrap();
        (0..answers)
            .map(|_| {
                let mut l = String::new();
                output.read_line(&mut l).unwrap();
                l.trim_end().to_owned()
            })
            .collect()
    };
    let reg = say("config|ready", 6);
    assert_eq!(reg.last().unwrap(), "register|ready", "{reg:?}");
    assert!(reg.contains(&"register|filter|smtp-in|rcpt-to".to_owned()));
    say(
        "report|0.6|1|smtp-in|link-connect|s1|<unknown>|fail|127.0.0.2:4000|127.0.0.1:25",
        0,
    );
    say("report|0.6|1|smtp-in|link-identify|s1|EHLO|mx.example", 0);
    assert_eq!(
        say("filter|0.6|1|smtp-in|mail-from|s1|t1|a@b.example", 1),
        ["filter-result|s1|t1|proceed"]
    );
    let rcpt = format!("filter|0.6|1|smtp-in|rcpt-to|s1|t2|{valid}");
    assert_eq!(say(&rcpt, 1), ["filter-result|s1|t2|rewrite|<mjd@plover.com>"]);
    drop(resolver);
    assert_eq!(
        say(&rcpt, 1),
        ["filter-result|s1|t2|reject|451 4.3.0 addrmunge is not answering; try again later"]
    );
    let resolver = inst.start("resolver", &[]);
    within(Duration::from_secs(10), "the resolver back", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    assert_eq!(say(&rcpt, 1), ["filter-result|s1|t2|rewrite|<mjd@plover.com>"]);
    drop(input);
    assert!(filter.wait().unwrap().success(), "the filter ends with its input");
    drop(resolver);
}
