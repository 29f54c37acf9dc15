//! Protocol abuse against the resolver while a real Postfix uses it: bad
//! netstrings and policy requests get clean errors, many connections are
//! served, and Postfix's lookups go on working.
//!
//! Needs Debian's postfix and swaks (scripts/test.sh installs them).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod common;
use common::postfix::Mail;
use common::wire::{netstring, read_netstring};

#[test]
fn bad_input_gets_clean_errors_and_the_server_lives() {
    let m = Mail::start("");
    let a = m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let alive = || {
        let mut s = TcpStream::connect(("127.0.0.1", m.map)).unwrap();
        s.write_all(&netstring(format!("virtual {a}").as_bytes()))
            .unwrap();
        assert_eq!(read_netstring(&mut s), "OK mjd@plover.com");
    };
    // Unknown map: PERM, connection stays usable.
    let mut s = TcpStream::connect(("127.0.0.1", m.map)).unwrap();
    s.write_all(&netstring(b"nosuchmap x@y")).unwrap();
    assert!(read_netstring(&mut s).starts_with("PERM "));
    s.write_all(&netstring(b"noseparator")).unwrap();
    assert!(read_netstring(&mut s).starts_with("PERM "));
    s.write_all(&netstring(b"recipient nobody@example.com")).unwrap();
    assert_eq!(read_netstring(&mut s), "NOTFOUND ");
    // A key that is empty or not UTF-8 is none of the owner's (ASCII)
    // addresses: not found, so Postfix goes on instead of deferring.
    for key in [
        &b"virtual "[..],
        b"virtual caf\xe9@plover.com",
        b"recipient \xff\xfe",
    ] {
        s.write_all(&netstring(key)).unwrap();
        assert_eq!(
            read_netstring(&mut s),
            "NOTFOUND ",
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    // Garbage, oversize, truncated: the connection is closed, the server lives.
    for bad in [
        b"hello world\r\n".to_vec(),
        b"99999999:".to_vec(),
        format!("20000:{}", "x".repeat(100)).into_bytes(),
        b"10:virtual".to_vec(),
        b"3:abcX".to_vec(),
        vec![0xff; 64],
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", m.map)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&bad).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            rest.is_empty() || rest.starts_with(b"4:PERM"),
            "{:?}",
            String::from_utf8_lossy(&rest)
        );
        alive();
    }
    // The store cannot be read: TEMP (mail deferred, never wrongly answered);
    // back to normal once it is back.
    let state = m.path("state.sqlite");
    fs::rename(&state, m.path("state.moved")).unwrap();
    fs::create_dir(&state).unwrap();
    let temp = || {
        let mut s = TcpStream::connect(("127.0.0.1", m.map)).unwrap();
        s.write_all(&netstring(format!("recipient {a}").as_bytes()))
            .unwrap();
        read_netstring(&mut s)
    };
    let start = Instant::now();
    while !temp().starts_with("TEMP ") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no TEMP while the store is unreadable"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    fs::remove_dir(&state).unwrap();
    fs::rename(m.path("state.moved"), &state).unwrap();
    let start = Instant::now();
    while temp() != "OK DUNNO" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the resolver did not recover"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The policy service: a good request, then garbage.
    let mut p = TcpStream::connect(("127.0.0.1", m.policy)).unwrap();
    p.write_all(
        format!(
            "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=127.0.0.9\nrecipient={a}\n\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = p.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"action=DUNNO\n\n");
    for bad in [
        b"no equals sign\n\n".to_vec(),
        "x=".repeat(20_000).into_bytes(),
        b"a=b".to_vec(),
    ] {
        let mut p = TcpStream::connect(("127.0.0.1", m.policy)).unwrap();
        p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = p.write_all(&bad);
        let _ = p.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = p.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        alive();
    }
}

#[test]
fn five_hundred_concurrent_connections() {
    let m = Mail::start("");
    let valid = m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let expired = m.cli_ok(&["encode", "--ip", "203.0.113.10", "mjd@plover.com"]);
    m.cli_ok(&["expire", "--ip", "203.0.113.10"]);
    std::thread::sleep(Duration::from_millis(1000));
    let port = m.map;
    let threads: Vec<_> = (0..500)
        .map(|i| {
            let (valid, expired) = (valid.clone(), expired.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                for k in 0..40 {
                    let (q, want) = match (i + k) % 3 {
                        0 => (format!("virtual {valid}"), "OK mjd@plover.com".to_string()),
                        1 => (format!("recipient {expired}"), "OK REJECT".to_string()),
                        _ => (format!("virtual {expired}"), "NOTFOUND ".to_string()),
                    };
                    s.write_all(&netstring(q.as_bytes())).unwrap();
                    let got = read_netstring(&mut s);
                    assert!(got.starts_with(&want), "{q}: {got}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
