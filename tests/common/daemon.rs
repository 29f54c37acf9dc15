//! A daemon of ours in a temp folder, and the small HTTP client and
//! misbehaving upstreams the hostile-client and fault tests drive it with.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use super::{Instance, Running, free_port};

pub const BIN: &str = env!("CARGO_BIN_EXE_addrmunge");

/// A daemon of ours with its own key, config and store in a temp folder.
pub struct Daemon {
    /// Stopped before its folder goes.
    pub running: Running,
    pub inst: Instance,
    pub what: &'static str,
    /// The proxy's or the socketmap's port.
    pub port: u16,
    /// The admin (metrics) port.
    pub admin: u16,
    /// The policy port (resolver only).
    pub policy: u16,
}

pub const PROTECT: &str = "[[protect]]\ndomain = \"plover.com\"\nexempt = [\"*-subscribe\"]\n\n[[protect]]\ndomain = \"ihatespam.test\"\n";

impl Daemon {
    pub fn path(&self, p: &str) -> PathBuf {
        self.inst.path(p)
    }

    /// The proxy in front of `upstream_port`, with `extra` in `[proxy]`.
    pub fn proxy(upstream_port: u16, extra: &str) -> Daemon {
        let (port, admin) = (free_port(), free_port());
        let cfg = format!(
            "{PROTECT}[proxy]\nlisten = [\"127.0.0.1:{port}\"]\nupstream = \"http://127.0.0.1:{upstream_port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n{extra}\n"
        );
        let d = Daemon::start(&cfg, "proxy", port, admin, 0);
        d.inst.wait_for(port, "proxy");
        d
    }

    /// The resolver, with `extra` in `[resolver]`.
    pub fn resolver(extra: &str) -> Daemon {
        let (port, admin, policy) = (free_port(), free_port(), free_port());
        let cfg = format!(
            "{PROTECT}[resolver]\nsocketmap = [\"inet:127.0.0.1:{port}\"]\npolicy = [\"inet:127.0.0.1:{policy}\"]\nadmin_listen = \"127.0.0.1:{admin}\"\n{extra}\n[traps]\nnever_block = []\n"
        );
        let d = Daemon::start(&cfg, "resolver", port, admin, policy);
        d.inst.wait_for(port, "resolver");
        d
    }

    pub fn start(cfg: &str, what: &'static str, port: u16, admin: u16, policy: u16) -> Daemon {
        let inst = Instance::new(cfg);
        Daemon {
            running: inst.start(what, &[("ADDRMUNGE_LOG_FORMAT", "json")]),
            inst,
            what,
            port,
            admin,
            policy,
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.inst.cli(args)
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        self.inst.cli_ok(args)
    }

    /// The daemon's resident memory, in MiB.
    pub fn rss_mib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.running.0.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb / 1024
    }

    /// A counter or gauge from the admin listener.
    pub fn metric(&self, name: &str) -> u64 {
        metric_at(self.admin, name)
    }

    pub fn log(&self) -> String {
        self.inst.log(self.what)
    }

    pub fn alive(&mut self) -> bool {
        self.running.0.try_wait().unwrap().is_none()
    }
}

/// A counter or gauge from the admin listener on `port`.
pub fn metric_at(port: u16, name: &str) -> u64 {
    let (status, body) = get(port, "/metrics", &[]);
    assert_eq!(status, 200, "metrics: {body}");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

/// One HTTP/1.1 GET (`Connection: close`); status and body as text. Panics
/// when no answer comes within 20 s.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, body) = get_bytes(port, path, headers);
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub fn get_bytes(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: plover.com\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body_at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = &text[..body_at.min(text.len())];
    let mut body = raw[body_at..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < eol + 2 + n {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[(eol + 4 + n).min(b.len())..];
    }
    out
}

/// A web server that answers each connection with `respond(request head,
/// stream)`, one thread per connection; returns its port.
pub fn upstream(respond: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let respond = Arc::new(respond);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let respond = Arc::clone(&respond);
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut s = s;
                respond(&head, &mut s);
            });
        }
    });
    port
}

pub fn html_head(extra: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n{extra}\r\n")
}

pub fn protected_page() -> &'static str {
    "<p>Write to <a href=\"mailto:mjd@plover.com\">mjd@plover.com</a>.</p>\n"
}
