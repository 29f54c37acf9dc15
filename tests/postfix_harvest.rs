//! The whole chain: a harvester fetches pages through the proxy in front of
//! a real nginx, spam arrives at a real Postfix, and `trace`, `report` and
//! `blocks` tell who harvested what and cut them off.
//!
//! Needs Debian's postfix, swaks, nginx, curl and faketime (scripts/test.sh
//! installs them).

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::postfix::{Mail, day_offset};
use common::proxy::fetch_as as fetch;
use common::{free_port, wait_for_port};

/// `addrmunge proxy` sharing the resolver's key and store, optionally
/// under libfaketime (`faketime -f -2d`) to serve pages on another day.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        // The whole process group: faketime runs the proxy as its child.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

impl Mail {
    fn proxy(&self, port: u16, fake_offset: Option<&str>) -> Proxy {
        let bin = env!("CARGO_BIN_EXE_addrmunge");
        let mut cmd = match fake_offset {
            Some(off) => {
                let mut c = Command::new("faketime");
                c.args(["-f", off, bin]);
                // Only the calendar moves; timers (monotonic) stay real, or
                // libfaketime stretches timed waits.
                c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                c
            }
            None => Command::new(bin),
        };
        use std::os::unix::process::CommandExt;
        let child = cmd
            .arg("--config")
            .arg(self.path("addrmunge.toml"))
            .arg("proxy")
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.path(&format!("proxy-{port}.log"))).unwrap())
            .spawn()
            .expect("faketime is installed (scripts/test.sh installs it)");
        wait_for_port(port, "addrmunge proxy");
        Proxy(child)
    }

    /// Waits until nothing listens on `port` any more.
    fn wait_port_free(port: u16) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "port {port} still taken"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn munged_in(page: &str, domain: &str) -> Vec<String> {
    let mut v: Vec<String> = page
        .split(|c: char| !(c.is_ascii_alphanumeric() || "-_.@".contains(c)))
        .filter(|w| w.contains("-id-") && w.ends_with(&format!("@{domain}")))
        .map(str::to_owned)
        .collect();
    v.dedup();
    v
}

#[test]
fn harvest_to_spam_traced_reported_and_blocked() {
    let nginx = common::nginx::Nginx::start(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo"));
    let port = free_port();
    let m = Mail::start(&format!(
        r#"
[proxy]
listen = ["127.0.0.1:{port}"]
upstream = "http://127.0.0.1:{up}"

[bait]
path = "/contact-archive/"
addresses = 5
link = true

[[harvesters.agent]]
pattern = "SiphonDomain"
action = "domain"
domain = "siphon.invalid"
"#,
        up = nginx.port
    ));

    // Two days ago a visitor (127.0.0.3, a browser User-Agent) read the
    // contact page: the proxy runs under libfaketime for that.
    let harvested = {
        let _old = m.proxy(port, Some("-2d"));
        let (status, page) = fetch(port, "127.0.0.3", "Mozilla/5.0 (X11; Linux)", "/contact.html");
        assert_eq!(status, 200, "{page}");
        // The bait link is in every HTML page, invisible.
        assert!(
            page.contains("href=\"/contact-archive/\" style=\"display:none\""),
            "{page}"
        );
        let a = munged_in(&page, "plover.com");
        let mjd = a.iter().find(|x| x.starts_with("mjd-id-")).unwrap().clone();
        // The visit log is written off the request path: wait for it.
        let start = Instant::now();
        while !m.cli_ok(&["trace", &mjd]).contains("Mozilla/5.0") {
            assert!(start.elapsed() < Duration::from_secs(10), "visit never logged");
            std::thread::sleep(Duration::from_millis(100));
        }
        mjd
    };
    let decoded = m.cli_ok(&["decode", "--json", &harvested]);
    assert!(
        decoded.contains(&format!("\"date\":\"{}\"", day_offset(-2))),
        "{decoded}"
    );

    Mail::wait_port_free(port);
    let _proxy = m.proxy(port, None);
    // A harvester User-Agent gets trap IDs on ordinary pages.
    let (_, page) = fetch(port, "127.0.0.4", "EmailSiphon/1.0", "/contact.html");
    let traps = munged_in(&page, "plover.com");
    assert!(!traps.is_empty());
    for t in &traps {
        assert!(
            m.cli_ok(&["decode", "--json", t]).contains("\"kind\":\"trap\""),
            "{t}"
        );
    }
    // The domain action sends addresses elsewhere.
    let (_, page) = fetch(port, "127.0.0.7", "SiphonDomain 2.0", "/contact.html");
    assert!(!munged_in(&page, "siphon.invalid").is_empty(), "{page}");
    assert!(munged_in(&page, "plover.com").is_empty(), "{page}");

    // robots.txt keeps honest crawlers off the bait page (nginx has none: ours).
    let (status, robots) = fetch(port, "127.0.0.4", "EmailSiphon/1.0", "/robots.txt");
    assert_eq!(status, 200);
    assert!(robots.contains("Disallow: /contact-archive/"), "{robots}");

    // The bait page: a handful of ordinary-looking trap addresses, stable on reload.
    let (status, bait) = fetch(port, "127.0.0.4", "EmailSiphon/1.0", "/contact-archive/");
    assert_eq!(status, 200);
    // Both protected domains take any local part, so both get bait addresses.
    let all = |page: &str| [munged_in(page, "plover.com"), munged_in(page, "press.test")].concat();
    let bait_addrs = all(&bait);
    assert_eq!(bait_addrs.len(), 5, "{bait}");
    assert_eq!(
        all(&fetch(port, "127.0.0.4", "EmailSiphon/1.0", "/contact-archive/").1),
        bait_addrs
    );
    assert_eq!(fetch(port, "127.0.0.4", "x", "/contact-archive/old/").0, 404);
    assert_eq!(fetch(port, "127.0.0.4", "x", "/contact-archive").0, 301);
    // A browser-looking visitor that fetches the bait is a harvester for the day.
    fetch(port, "127.0.0.6", "Mozilla/5.0", "/contact-archive/");
    let (_, page) = fetch(port, "127.0.0.6", "Mozilla/5.0", "/contact.html");
    for t in munged_in(&page, "plover.com") {
        assert!(
            m.cli_ok(&["decode", "--json", &t]).contains("\"kind\":\"trap\""),
            "{t}"
        );
    }

    // Spam arrives today: to the harvested address from 127.0.0.2 (delivered),
    // to a bait address from 127.0.0.5 (discarded, client blocked).
    let (ok, t) = m.send("127.0.0.2", &harvested);
    assert!(ok, "{t}");
    assert!(m.delivered("mjd", &harvested));
    let (ok, t) = m.send("127.0.0.5", &bait_addrs[0]);
    assert!(ok, "trap mail is accepted: {t}");
    let (ok, t) = m.send("127.0.0.5", &harvested);
    assert!(!ok && t.contains("spam trap"), "blocked: {t}");
    // Blocks and arrivals reach the store through the resolver's writer
    // thread: wait for them rather than race it.
    let start = Instant::now();
    loop {
        let cidr = m.cli_ok(&["blocks", "--format", "postfix-cidr"]);
        if cidr.contains("127.0.0.5/32\tREJECT") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{cidr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = Instant::now();
    while !m.cli_ok(&["trace", &bait_addrs[0]]).contains("from 127.0.0.5") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "trap arrival never recorded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // trace on the delivered message: the whole chain, with the right days.
    let msg_dir = m.path("mail/mjd/new");
    let msg = fs::read_dir(&msg_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            fs::read_to_string(p)
                .unwrap()
                .contains(&format!("Subject: to {harvested}"))
        })
        .unwrap();
    let text = m.cli_ok(&["trace", "--message", msg.to_str().unwrap()]);
    assert!(
        text.contains(&format!("harvested   by 127.0.0.3 on {}", day_offset(-2))),
        "{text}"
    );
    assert!(
        text.contains("Mozilla/5.0 (X11; Linux)") && text.contains("/contact.html"),
        "{text}"
    );
    assert!(
        text.contains("from 127.0.0.2 (HELO sender.example) sender <spammer@sender.example>: delivered"),
        "{text}"
    );
    assert!(
        text.contains("first mail  2d") || text.contains("first mail  1d"),
        "{text}"
    );
    assert!(text.contains("addrmunge expire --ip 127.0.0.3 --day"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&m.cli_ok(&["trace", "--json", &harvested])).unwrap();
    let delay = json["harvest_to_first_mail"].as_i64().unwrap();
    assert!((2 * 86_400 - 120..2 * 86_400 + 120).contains(&delay), "{delay}");
    assert_eq!(json["harvest"]["visitor"], "127.0.0.3");
    // The bait address: a trap, served to the bait visitor, hit from 127.0.0.5.
    let text = m.cli_ok(&["trace", &bait_addrs[0]]);
    assert!(
        text.contains("trap address") && text.contains("agent emailsiphon"),
        "{text}"
    );
    assert!(
        text.contains("from 127.0.0.5") && text.contains("trap: discarded"),
        "{text}"
    );

    // The report: text, JSON, and an HTML page Chromium renders with its charts.
    let json: serde_json::Value =
        serde_json::from_str(&m.cli_ok(&["report", "--days", "7", "--json"])).unwrap();
    assert_eq!(json["trap_hits"], 1, "{json}");
    assert!(json["harvesters"].as_array().unwrap().len() >= 3, "{json}");
    let html = m.path("report.html");
    m.cli_ok(&["report", "--days", "7", "--html", html.to_str().unwrap()]);
    let page = fs::read_to_string(&html).unwrap();
    // Self-contained: no script, nothing fetched.
    assert!(!page.contains("<script") && !page.contains(" src=") && !page.contains("<link"));
    let url = format!("file://{}", html.display());
    let dom = String::from_utf8(common::chromium::chromium(&["--dump-dom"], &url).stdout).unwrap();
    for id in ["by-day", "delays", "targets", "harvesters-table", "blocks-table"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    assert!(dom.matches("class=\"bar\"").count() >= 7, "{dom}");
    let (pixels, line) = common::chromium::screenshot(&url);
    let inked = common::chromium::inked_rows(&pixels, line)
        .iter()
        .filter(|r| **r)
        .count();
    assert!(inked > 200, "the report renders mostly blank: {inked} rows");
}
