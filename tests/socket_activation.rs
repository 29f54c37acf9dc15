//! systemd socket activation: the proxy and the resolver serve on sockets
//! another process made and passed (`LISTEN_FDS`), as with the `.socket`
//! units in dist/systemd, so neither daemon needs a privilege to serve port
//! 80 or a socket in Postfix's queue folder. `systemd-socket-activate` (from
//! Debian's systemd package; scripts/test.sh installs it) holds the address
//! bound, so a daemon that tried to bind it itself would fail instead.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Instance, Running, free_port, one_page_server, wait_for_port};

/// `addrmunge --config CONFIG WHAT` under `systemd-socket-activate -l
/// ADDR...`, logging to `WHAT.log` in the instance's folder.
fn activated(inst: &Instance, listen: &[&str], what: &str) -> Running {
    let tool = ["/usr/bin/systemd-socket-activate", "/bin/systemd-socket-activate"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("systemd-socket-activate is missing; `bash scripts/test.sh` installs systemd");
    let mut cmd = Command::new(tool);
    for l in listen {
        cmd.arg("-l").arg(l);
    }
    cmd.arg("-E").arg("ADDRMUNGE_LOG=info");
    cmd.arg(env!("CARGO_BIN_EXE_addrmunge"))
        .arg("--config")
        .arg(inst.config())
        .arg(what);
    Running(
        cmd.stdout(Stdio::null())
            .stderr(fs::File::create(inst.path(&format!("{what}.log"))).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn wait_for_log(log: &Path, text: &str) -> String {
    let start = Instant::now();
    loop {
        let got = fs::read_to_string(log).unwrap_or_default();
        if got.contains(text) {
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no '{text}' in the log:\n{got}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: www.plover.com\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// An instance protecting plover.com with a proxy in front of `up` and a
/// resolver on a unix socket and a policy port.
fn setup(proxy_port: u16, up: u16, policy: u16) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("map.sock");
    Instance::in_dir(
        dir,
        &format!(
            r#"
[[protect]]
domain = "plover.com"

[proxy]
listen = ["127.0.0.1:{proxy_port}"]
upstream = "http://127.0.0.1:{up}"

[resolver]
socketmap = ["unix:{sock}"]
policy = ["inet:127.0.0.1:{policy}"]
"#,
            sock = sock.display()
        ),
    )
}

#[test]
fn the_proxy_serves_on_a_socket_systemd_made() {
    let port = free_port();
    let inst = setup(port, one_page_server(), free_port());
    let log = inst.path("proxy.log");
    let _proxy = activated(&inst, &[&format!("127.0.0.1:{port}")], "proxy");
    // systemd-socket-activate holds the port from the start and starts the
    // proxy on the first connection, which the proxy then answers.
    wait_for_port(port, "systemd-socket-activate");
    let page = get(port);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("mailto:mjd-id-"), "not munged:\n{page}");
    let text = wait_for_log(&log, "using the socket systemd passed");
    assert!(!text.contains("WARN"), "{text}");
}

#[test]
fn the_resolver_serves_on_a_unix_socket_systemd_made_and_binds_the_rest() {
    let policy = free_port();
    let inst = setup(free_port(), one_page_server(), policy);
    let sock = inst.path("map.sock");
    let log = inst.path("resolver.log");
    let _resolver = activated(&inst, &[sock.to_str().unwrap()], "resolver");
    // The socket exists before the resolver runs; connecting starts it.
    let start = Instant::now();
    let mut s = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(20), "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let munged = inst.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    assert_eq!(
        common::wire::query(&mut s, &format!("virtual {munged}")),
        "OK mjd@plover.com"
    );
    // The policy listener, which systemd did not pass, is bound by the resolver.
    wait_for_port(policy, "resolver policy service");
    let text = wait_for_log(&log, "using the socket systemd passed");
    assert!(!text.contains("WARN"), "{text}");
    assert!(sock.exists(), "the resolver must not remove systemd's socket");
}

#[test]
fn a_socket_unit_that_does_not_match_the_config_is_reported() {
    let (port, other) = (free_port(), free_port());
    let inst = setup(port, one_page_server(), free_port());
    let log = inst.path("proxy.log");
    let _proxy = activated(&inst, &[&format!("127.0.0.1:{other}")], "proxy");
    wait_for_port(other, "systemd-socket-activate");
    // The first connection starts it; the proxy serves its configured port
    // itself and says which passed socket nothing uses.
    let _poke = TcpStream::connect(("127.0.0.1", other)).unwrap();
    let text = wait_for_log(&log, "no listener in the config uses");
    assert!(text.contains(&format!("inet:127.0.0.1:{other}")), "{text}");
    wait_for_port(port, "proxy");
    assert!(get(port).contains("mailto:mjd-id-"));
}
