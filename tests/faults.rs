//! Faults of the store, the first boot, the resolver's connections, the
//! config and the CLI, replayed against the real binary: a deleted or
//! corrupt store is never an empty truth, proxy and resolver may start
//! together on a new store, idle connections cannot starve the resolver,
//! config and key holes are refused with errors that say how to fix them.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::daemon::{BIN, Daemon, PROTECT};
use common::nginx::Nginx;
use common::wire::socketmap;
use common::{free_port, keygen, wait_for_port};

/// The state file deleted under a running resolver: an expired address is
/// refused or deferred, never accepted; blocks stay; no empty store takes
/// its place until a reload.
#[test]
fn a_deleted_store_is_never_an_empty_truth() {
    let d = Daemon::resolver("");
    let a = d.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    d.cli_ok(&["expire", "--ip", "203.0.113.9"]);
    // A trap mail from 192.0.2.66 blocks it.
    let trap = d.cli_ok(&[
        "encode",
        "--ip",
        "198.51.100.1",
        "--kind",
        "trap",
        "mjd@plover.com",
    ]);
    let mut p = TcpStream::connect(("127.0.0.1", d.policy)).unwrap();
    p.write_all(
        format!("request=smtpd_access_policy\nclient_address=192.0.2.66\nrecipient={trap}\n\n").as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = p.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("action=DISCARD"));
    let start = Instant::now();
    while !socketmap(d.port, &format!("recipient {a}")).starts_with("OK REJECT") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the rule was never seen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    fs::remove_file(d.path("state.sqlite")).unwrap();
    let watch = |for_ms: u64| {
        let start = Instant::now();
        let mut temp = false;
        while start.elapsed() < Duration::from_millis(for_ms) {
            let got = socketmap(d.port, &format!("recipient {a}"));
            assert!(got.starts_with("OK REJECT") || got.starts_with("TEMP"), "{got}");
            temp |= got.starts_with("TEMP");
            assert!(
                socketmap(d.port, "client 192.0.2.66").starts_with("OK REJECT"),
                "the block vanished"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(temp, "no TEMP while the store is missing");
    };
    watch(1500);
    assert!(
        !d.path("state.sqlite").exists(),
        "the resolver recreated the store"
    );
    assert!(d.log().contains("deleted or moved"), "{}", d.log());
    // The owner's next command finds the old journal and says what happened
    // instead of mixing a new store with it.
    let out = d.cli(&["rules"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("-wal"), "{err}");
    assert!(!d.path("state.sqlite").exists());
    // With the journal gone too, it makes a new, empty store (and says so);
    // the resolver does not take it for the truth until told.
    for f in ["state.sqlite-wal", "state.sqlite-shm"] {
        let _ = fs::remove_file(d.path(f));
    }
    let out = d.cli(&["rules"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("created a new, empty one"),
        "{err}"
    );
    watch(1000);
    assert!(d.metric("addrmunge_resolver_store_faults_total") > 0);
    assert_eq!(d.metric("addrmunge_resolver_store_ok"), 0);
    assert!(
        Command::new("kill")
            .arg("-HUP")
            .arg(d.running.0.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    while socketmap(d.port, &format!("recipient {a}")) != "OK DUNNO" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the reload did not take the new store"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Proxy and resolver started together on a fresh store (systemd's usual
/// first boot), again and again: both come up every time.
#[test]
fn first_boot_proxy_and_resolver_start_together() {
    let nginx = Nginx::start(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/site"));
    for round in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let (web, map) = (free_port(), free_port());
        let cfg = format!(
            "key_file = \"k\"\nstate = \"state.sqlite\"\n{PROTECT}[proxy]\nlisten = [\"127.0.0.1:{web}\"]\nupstream = \"http://127.0.0.1:{}\"\n[resolver]\nsocketmap = [\"inet:127.0.0.1:{map}\"]\n",
            nginx.port
        );
        fs::write(dir.path().join("c.toml"), cfg).unwrap();
        keygen(&dir.path().join("k"));
        let mut daemons: Vec<Child> = ["proxy", "resolver"]
            .iter()
            .map(|what| {
                Command::new(BIN)
                    .arg("--config")
                    .arg(dir.path().join("c.toml"))
                    .arg(what)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let rules = Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("c.toml"))
            .arg("rules")
            .output()
            .unwrap();
        wait_for_port(web, "proxy");
        wait_for_port(map, "resolver");
        for c in &mut daemons {
            assert!(c.try_wait().unwrap().is_none(), "round {round}: a daemon died");
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(
            rules.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&rules.stderr)
        );
    }
}

/// Thousands of idle connections cannot take the resolver's descriptors:
/// at max_connections the idlest go first, and a lookup is answered.
#[test]
fn idle_connections_cannot_starve_the_resolver() {
    let d = Daemon::resolver("max_connections = 40");
    let a = d.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", d.port)).unwrap())
        .collect();
    for _ in 0..5 {
        assert_eq!(socketmap(d.port, &format!("virtual {a}")), "OK mjd@plover.com");
    }
    assert!(d.metric("addrmunge_resolver_connections_open") <= 40);
    assert!(d.metric("addrmunge_resolver_connections_evicted_total") > 0);
    drop(idle);
}

/// A client that stops reading its answers, one that trickles a request
/// and one that only idles each lose their connection after
/// `idle_timeout`, counted by why; the resolver keeps answering.
#[test]
fn stalled_resolver_clients_are_closed_by_their_deadlines() {
    let d = Daemon::resolver("idle_timeout = 1");
    let a = d.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    // Pipelined requests, never a read: the answers fill both socket
    // buffers and the resolver's write waits until the deadline.
    let mut deaf = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    deaf.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let q = common::wire::netstring(format!("virtual {a}").as_bytes()).repeat(1000);
    let start = Instant::now();
    let deaf_closed = loop {
        if deaf.write_all(&q).is_err() {
            break true;
        }
        if start.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    assert!(deaf_closed, "a client that never read kept its connection");
    // Half a request, a byte at a time: closed a second after its first byte.
    let mut trickle = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    let start = Instant::now();
    let trickle_closed = b"900:".iter().cycle().any(|b| {
        std::thread::sleep(Duration::from_millis(200));
        trickle.write_all(&[*b]).is_err() || start.elapsed() > Duration::from_secs(20)
    });
    assert!(
        trickle_closed && start.elapsed() < Duration::from_secs(20),
        "a trickled request kept its connection"
    );
    // Silent: the server ends it (end of stream, no answer).
    let mut silent = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    let start = Instant::now();
    let _ = silent.read_to_end(&mut rest);
    assert!(rest.is_empty() && start.elapsed() < Duration::from_secs(15));
    assert!(d.metric("addrmunge_resolver_send_timeouts_total") >= 1);
    assert!(d.metric("addrmunge_resolver_request_timeouts_total") >= 1);
    assert!(d.metric("addrmunge_resolver_idle_closed_total") >= 1);
    assert_eq!(socketmap(d.port, &format!("virtual {a}")), "OK mjd@plover.com");
    let log = d.log();
    for says in [
        "did not read its answer within idle_timeout",
        "did not arrive whole within idle_timeout",
        "idle longer than idle_timeout",
    ] {
        assert!(log.contains(says), "no '{says}' in the log:\n{log}");
    }
}

fn check_config(dir: &Path, config: &str) -> Output {
    fs::write(dir.join("c.toml"), config).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg("c.toml")
        .arg("check-config")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("check-config hung on:\n{config}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Config and key files that used to be accepted, hang, or break the wire.
#[test]
fn config_and_key_holes_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("k"));
    let base = format!("key_file = \"k\"\nstate = \"s.sqlite\"\n{PROTECT}");
    // A relative state path next to a config named relatively: fine.
    let ok = check_config(d, &base);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    for (extra, key) in [
        ("[traps]\naction = \"DISCARD\\naction=OK\"\n", "traps.action"),
        ("[proxy]\nheader_timeout = 0\n", "proxy.header_timeout"),
        ("[proxy]\nrequest_timeout = 0\n", "proxy.request_timeout"),
        (
            "[resolver]\nreject_text = \"5.1.1 no\\r\\naction=OK\"\n",
            "resolver.reject_text",
        ),
        ("[resolver]\nmax_connections = 0\n", "resolver.max_connections"),
    ] {
        let out = check_config(d, &format!("{base}{extra}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(64) && err.contains(key),
            "{extra}: {err}"
        );
    }
    fs::write(d.join("zero.key"), format!("{}\n", "00".repeat(32))).unwrap();
    fs::set_permissions(
        d.join("zero.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(d.join("fifo.key"))
            .status()
            .unwrap()
            .success()
    );
    for (key, says) in [
        ("zero.key", "not random"),
        ("fifo.key", "not a regular file"),
        ("/dev/zero", "not a regular file"),
    ] {
        let out = check_config(
            d,
            &base.replace("key_file = \"k\"", &format!("key_file = \"{key}\"")),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(64) && err.contains(says),
            "{key}: {err}"
        );
    }
}

/// The smaller holes of the mail side and the CLI.
#[test]
fn decode_and_the_resolver_agree_and_the_cli_is_safe() {
    let d = Daemon::resolver("recipient_delimiter = \"+\"");
    let a = d.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let (l, dom) = a.split_once('@').unwrap();
    for spelled in [format!("<{a}>"), format!("{l}+news@{dom}"), a.to_uppercase()] {
        assert_eq!(
            socketmap(d.port, &format!("virtual {spelled}")),
            "OK mjd@plover.com",
            "{spelled}"
        );
        let out = d.cli(&["decode", &spelled]);
        assert!(
            out.status.success(),
            "{spelled}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // A forged ID with letters the alphabet lacks: refused, and decode says so.
    let ilou = format!("{}ilou@{dom}", &l[..l.len() - 4]);
    assert!(
        socketmap(d.port, &format!("recipient {ilou}")).starts_with("OK REJECT"),
        "{ilou}"
    );
    let v: serde_json::Value = serde_json::from_slice(&d.cli(&["decode", "--json", &ilou]).stdout).unwrap();
    assert_eq!(v["status"], "invalid");
    // Reasons with terminal escapes are stored as given, shown escaped.
    d.cli_ok(&[
        "expire",
        "--day",
        "2026-01-01",
        "--reason",
        "spam \x1b[2J\x1b]0;owned\x07",
    ]);
    let listed = d.cli_ok(&["rules"]);
    assert!(
        !listed.contains('\x1b') && listed.contains("\\u{1b}[2J"),
        "{listed:?}"
    );
    let json = d.cli_ok(&["rules", "--json"]);
    assert!(json.contains("\\u001b[2J"), "{json}");
    // --days past 1970: every day since, not just today.
    let r: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["report", "--json", "--days", "30000"])).unwrap();
    assert_eq!(r["from"], "1970-01-01");
}

/// A second resolver must not take over a live unix socket; a stale one
/// is replaced.
#[test]
fn a_live_unix_socket_is_never_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("map.sock");
    let cfg = format!(
        "key_file = \"k\"\nstate = \"s.sqlite\"\n{PROTECT}[resolver]\nsocketmap = [\"unix:{}\"]\n",
        sock.display()
    );
    fs::write(dir.path().join("c.toml"), cfg).unwrap();
    keygen(&dir.path().join("k"));
    let run = || {
        Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("c.toml"))
            .arg("resolver")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = run();
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = run().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && err.contains("in use"), "{err}");
    assert!(
        std::os::unix::net::UnixStream::connect(&sock).is_ok(),
        "the first lost its socket"
    );
    let _ = first.kill();
    let _ = first.wait();
    // The first is gone, its socket file stale: a new resolver takes it.
    let mut third = run();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a stale socket was not replaced"
        );
        assert!(third.try_wait().unwrap().is_none(), "the third resolver died");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = third.kill();
    let _ = third.wait();
}

/// A store replaced by garbage under the resolver is a lasting fault: TEMP,
/// and one log line, not one every refresh (four a second).
#[test]
fn a_corrupt_store_is_logged_without_a_flood() {
    let d = Daemon::resolver("");
    let a = d.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    fs::write(d.path("garbage"), vec![0x42u8; 8192]).unwrap();
    fs::rename(d.path("garbage"), d.path("state.sqlite")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(socketmap(d.port, &format!("recipient {a}")).starts_with("TEMP"));
    let errors = d.log().lines().filter(|l| l.contains("\"ERROR\"")).count();
    assert_eq!(errors, 1, "{}", d.log());
    assert!(d.metric("addrmunge_resolver_store_faults_total") >= 8);
}
