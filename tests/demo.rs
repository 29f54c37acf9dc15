//! `addrmunge demo` end to end, as a newcomer walks it: start it, open the
//! printed URL, find munged addresses, decode one, ask the resolver, expire
//! it, watch the resolver refuse it, stop it with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::chromium::{chromium, inked_rows, screenshot};

struct Demo {
    child: Child,
    banner: String,
    dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_addrmunge"))
            .args(["demo", "--port", "0", "--dir"])
            .arg(dir.path())
            .env_remove("ADDRMUNGE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("demo.log")).unwrap())
            .spawn()
            .unwrap();
        // The banner is printed once everything listens; it ends with the
        // `unexpire` hint.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        while !banner.contains("unexpire") {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("demo exited before it was ready: {banner}");
            }
            banner.push_str(&line);
        }
        Demo { child, banner, dir }
    }

    /// The port on the banner line that starts with `label`.
    fn port(&self, label: &str) -> u16 {
        let line = self
            .banner
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no '{label}' line in {}", self.banner));
        let after = &line[line.find("127.0.0.1:").unwrap() + 10..];
        after
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_addrmunge"))
            .env("ADDRMUNGE_CONFIG", self.dir.path().join("addrmunge.toml"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

fn socketmap(port: u16, map: &str, key: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let q = format!("{map} {key}");
    write!(s, "{}:{},", q.len(), q).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn munged(page: &str) -> Vec<String> {
    page.split(|c: char| !(c.is_ascii_alphanumeric() || "-@.".contains(c)))
        .filter(|w| w.contains("-id-") && w.ends_with("@plover.com"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_newcomer_walks_through_the_demo() {
    let demo = Demo::start();
    let proxy = demo.port("open this");
    let site = demo.port("the same site, raw");
    let map = demo.port("resolver");

    // The raw site shows real addresses; through the proxy none is left.
    let raw = get(site, "/contact.html");
    assert!(raw.contains("mjd@plover.com"), "{raw}");
    let page = get(proxy, "/contact.html");
    assert!(
        page.starts_with("HTTP/1.1 200") || page.starts_with("HTTP/1.0 200"),
        "{page}"
    );
    assert!(!page.contains("mjd@plover.com"), "{page}");
    assert!(
        page.contains("perl-qotw-subscribe@plover.com"),
        "exempt stays: {page}"
    );
    assert!(page.contains("someone@example.com"), "unprotected stays: {page}");
    let found = munged(&page);
    assert!(found.len() >= 2, "{found:?}");
    let a = found.iter().find(|a| a.starts_with("mjd-id-")).unwrap().clone();
    // The banner's example is the address this visitor got.
    assert!(demo.banner.contains(&a), "{}", demo.banner);

    let (ok, text) = demo.cli(&["decode", &a]);
    assert!(
        ok && text.contains("visitor 127.0.0.1") && text.contains("mjd@plover.com"),
        "{text}"
    );
    assert_eq!(socketmap(map, "virtual", &a), "17:OK mjd@plover.com,");
    assert_eq!(socketmap(map, "recipient", &a), "8:OK DUNNO,");

    let (ok, text) = demo.cli(&["expire", "--ip", "127.0.0.1", "--reason", "demo"]);
    assert!(ok, "{text}");
    let start = Instant::now();
    loop {
        let answer = socketmap(map, "recipient", &a);
        if answer.contains("REJECT") {
            assert!(answer.contains("expired"), "{answer}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never refused: {answer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, text) = demo.cli(&["decode", &a]);
    assert!(!ok && text.contains("expired"), "{text}");

    // SIGTERM stops it cleanly.
    let mut demo = demo;
    let pid = demo.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "demo did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_temporary_demo_folder_is_removed_at_exit() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_addrmunge"))
        .args(["demo", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut dir = None;
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.trim().strip_prefix("key, config, store:") {
            dir = Some(std::path::PathBuf::from(rest.trim()));
            break;
        }
        line.clear();
    }
    let dir = dir.expect("banner names the folder");
    assert!(dir.join("addrmunge.key").exists());
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn chromium_renders_the_proxied_site_like_the_direct_one() {
    let demo = Demo::start();
    let proxy = demo.port("open this");
    let site = demo.port("the same site, raw");

    // The home page shows no address, only carries them in links, a form
    // and JSON-LD: through the proxy it must render pixel for pixel the same.
    let (direct, _) = screenshot(&format!("http://127.0.0.1:{site}/"));
    let (proxied, _) = screenshot(&format!("http://127.0.0.1:{proxy}/"));
    assert!(direct == proxied, "the proxied home page renders differently");

    // The contact page shows addresses, so text is longer; the layout (which
    // rows have ink) must not change: nothing wraps, breaks or disappears.
    let (direct, line) = screenshot(&format!("http://127.0.0.1:{site}/contact.html"));
    let (proxied, line2) = screenshot(&format!("http://127.0.0.1:{proxy}/contact.html"));
    assert_eq!(line, line2);
    assert_eq!(inked_rows(&direct, line), inked_rows(&proxied, line));
    assert!(direct != proxied, "the contact page should show munged addresses");

    // In the DOM after scripts ran, every protected mailto: is munged and
    // decodes to this visitor (127.0.0.1) today.
    for page in ["/", "/contact.html"] {
        let dom =
            String::from_utf8(chromium(&["--dump-dom"], &format!("http://127.0.0.1:{proxy}{page}")).stdout)
                .unwrap();
        let hrefs: Vec<&str> = dom
            .split("href=\"mailto:")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        assert!(hrefs.len() >= 3, "{page}: {dom}");
        for href in hrefs {
            let to = href.split('?').next().unwrap();
            for addr in to.split(',') {
                if addr == "perl-qotw-subscribe@plover.com" {
                    continue; // exempt
                }
                assert!(addr.contains("-id-"), "{page}: {addr} not munged");
                let (ok, text) = demo.cli(&["decode", "--json", addr]);
                assert!(ok, "{text}");
                let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
                assert_eq!(v["ip"], "127.0.0.1", "{text}");
                assert_eq!(v["date"], addrmunge::Day::today().to_string(), "{text}");
            }
        }
        // Script-written text is munged too, and an address a script
        // joins from string literals (its link is among the hrefs above).
        if page == "/contact.html" {
            assert!(dom.contains("press-id-"), "{dom}");
            assert!(dom.contains("mailto:sales-id-"), "{dom}");
        }
    }
}
