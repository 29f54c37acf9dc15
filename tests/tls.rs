//! HTTPS at the proxy, with real clients: curl over HTTP/2 and HTTP/1.1
//! against a private CA, headless Chromium, openssl's s_client for SNI,
//! certificates replaced under a running proxy (and broken ones refused),
//! plain HTTP and half-open handshakes on the TLS port, the web server told
//! the visitor came over HTTPS, and the redirect from plain HTTP.
//!
//! Needs Debian's nginx, curl, openssl and chromium (scripts/test.sh
//! installs them).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::nginx::Nginx;
use common::pki::{Pki, file_serial, served_serial, spki_sha256};
use common::proxy::{Proxy, munged_addresses, site};
use common::{free_port, wait_for_port, within};

/// `[proxy]` lines serving HTTPS on `port` with these certificates.
fn tls_config(port: u16, certs: &[(&Path, &Path)]) -> String {
    let mut s = format!("tls_listen = [\"127.0.0.1:{port}\"]\n");
    for (c, k) in certs {
        s.push_str(&format!(
            "[[proxy.tls]]\ncert = \"{}\"\nkey = \"{}\"\n",
            c.display(),
            k.display()
        ));
    }
    s
}

/// curl against the private CA, `name` resolved to loopback: (exit ok,
/// stdout).
fn curl(pki: &Pki, port: u16, name: &str, args: &[&str], path: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(pki.ca())
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args(args)
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The kinds and visitors the munged addresses in `page` decode to.
fn decoded_visitors(proxy: &Proxy, page: &str) -> Vec<String> {
    let found = munged_addresses(page);
    assert!(!found.is_empty(), "no munged address in {page}");
    proxy
        .decode(&found)
        .iter()
        .map(|v| format!("{} {}", v["kind"].as_str().unwrap(), v["ip"].as_str().unwrap()))
        .collect()
}

/// A TLS connection kept open across requests (rustls, trusting the CA).
struct Kept(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl Kept {
    async fn open(pki: &Pki, port: u16, name: &str) -> Kept {
        Kept(common::pki::connect(pki, port, name, &[]).await)
    }

    /// GET `path` (a response with a Content-Length); its status.
    async fn get(&mut self, path: &str) -> u16 {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let req = format!("GET {path} HTTP/1.1\r\nHost: plover.test\r\n\r\n");
        self.0.write_all(req.as_bytes()).await.unwrap();
        let mut r = tokio::io::BufReader::new(&mut self.0);
        let (mut status, mut len) = (0, 0usize);
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            if status == 0 {
                status = line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await.unwrap();
        status
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_real_clients_sni_and_certificate_reloads() {
    let pki = Pki::new();
    let (a_cert, a_key) = pki.leaf("plover", &["plover.test", "www.plover.test"]);
    let (b_cert, b_key) = pki.leaf("other", &["*.other.test"]);
    let nginx = Nginx::start(&site());
    let (port, admin) = (free_port(), free_port());
    let proxy = Proxy::start(
        nginx.port,
        &format!(
            "admin_listen = \"127.0.0.1:{admin}\"\n{}",
            tls_config(port, &[(&a_cert, &a_key), (&b_cert, &b_key)])
        ),
    );
    wait_for_port(port, "the TLS listener");

    // curl over HTTP/2 and HTTP/1.1 (ALPN), verified against the CA: the
    // page is rewritten for the visitor, as over plain HTTP.
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (ok, out) = curl(
            &pki,
            port,
            "plover.test",
            &[flag, "-w", "\n%{http_version}"],
            "/forms.html",
        );
        assert!(ok, "{out}");
        let (page, got) = out.rsplit_once('\n').unwrap();
        assert_eq!(got, version);
        assert!(
            decoded_visitors(&proxy, page)
                .iter()
                .all(|v| v == "visitor 127.0.0.1")
        );
    }

    // SNI picks the certificate (curl checks the name against it); none,
    // or a name none serves, gets the first.
    assert!(curl(&pki, port, "a.other.test", &[], "/forms.html").0);
    assert_eq!(served_serial(port, "a.other.test"), file_serial(&b_cert));
    assert_eq!(served_serial(port, "www.plover.test"), file_serial(&a_cert));
    assert_eq!(served_serial(port, "nobody.test"), file_serial(&a_cert));

    // Modern defaults: TLS 1.1 is refused; a session is resumed.
    let s_client = |args: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{port} -servername plover.test {args} </dev/null 2>&1"
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let old = s_client("-tls1_1");
    assert!(old.contains("Cipher is (NONE)"), "{old}");
    let session = pki.dir.path().join("session");
    s_client(&format!("-tls1_2 -sess_out {}", session.display()));
    let again = s_client(&format!("-tls1_2 -sess_in {}", session.display()));
    assert!(again.contains("Reused, TLSv1.2"), "{again}");

    // Headless Chromium over HTTPS: the address it shows is the visitor's.
    let dom = common::chromium::chromium(
        &[
            "--dump-dom",
            &format!("--ignore-certificate-errors-spki-list={}", spki_sha256(&a_cert)),
            "--host-resolver-rules=MAP plover.test 127.0.0.1",
        ],
        &format!("https://plover.test:{port}/forms.html"),
    );
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        decoded_visitors(&proxy, &dom)
            .iter()
            .all(|v| v == "visitor 127.0.0.1"),
        "{dom}"
    );

    // Plain HTTP to the TLS port: a clear 400, and the proxy goes on.
    let (status, body) = common::daemon::get(port, "/forms.html", &[]);
    assert_eq!(status, 400);
    assert!(body.contains("use https://"), "{body}");

    let check = proxy.inst.cli_ok(&["check-config"]);
    assert!(check.contains("for plover.test, www.plover.test ("), "{check}");
    assert!(check.contains("for *.other.test ("), "{check}");

    // A new certificate in the files is served without a restart, and a
    // connection made before keeps working.
    let mut kept = Kept::open(&pki, port, "plover.test").await;
    assert_eq!(kept.get("/image.png").await, 200);
    let before = file_serial(&a_cert);
    pki.leaf("plover", &["plover.test", "www.plover.test"]);
    let after = file_serial(&a_cert);
    assert_ne!(before, after);
    within(Duration::from_secs(15), "the new certificate is served", || {
        served_serial(port, "plover.test") == after
    });
    assert_eq!(
        kept.get("/image.png").await,
        200,
        "the old connection was dropped"
    );

    // A broken file (seen changed, or at SIGHUP) keeps the old one, says why.
    std::fs::write(&a_cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    within(Duration::from_secs(15), "the broken file is refused", || {
        proxy.inst.log("proxy").contains("certificates not reloaded")
    });
    let pid = proxy.running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(served_serial(port, "plover.test"), after);
    assert!(curl(&pki, port, "plover.test", &[], "/forms.html").0);
    let log = proxy.inst.log("proxy");
    assert!(
        log.contains(&a_cert.display().to_string()),
        "the log names the file: {log}"
    );
    let out = proxy.inst.cli(&["check-config"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("no PEM certificate"),
        "{said}"
    );
    let (_, metrics) = common::daemon::get(admin, "/metrics", &[]);
    assert!(metrics.contains("addrmunge_tls_plain_http_total 1"), "{metrics}");
}

/// The web server is told the visitor came over HTTPS; the plain listener
/// redirects to HTTPS when asked to.
#[test]
fn the_web_server_is_told_https_and_plain_http_redirects() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("plover", &["plover.test"]);
    let upstream = common::daemon::upstream(|head, s| {
        let body = head.to_ascii_lowercase();
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let port = free_port();
    let proxy = Proxy::start(
        upstream,
        &format!("https_redirect = true\n{}", tls_config(port, &[(&cert, &key)])),
    );
    wait_for_port(port, "the TLS listener");
    let (ok, head) = curl(&pki, port, "plover.test", &[], "/x");
    assert!(ok, "{head}");
    assert!(head.contains("x-forwarded-proto: https"), "{head}");
    assert!(head.contains("forwarded: for=127.0.0.1;proto=https"), "{head}");
    let (status, _) = common::daemon::get(proxy.port, "/a/b?c=1", &[]);
    assert_eq!(status, 308);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.write_all(b"GET /a/b?c=1 HTTP/1.1\r\nHost: plover.test:8080\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert!(
        got.to_ascii_lowercase()
            .contains(&format!("location: https://plover.test:{port}/a/b?c=1")),
        "{got}"
    );
}

/// Thousands of connections that never finish a handshake take no more
/// than max_connections, are closed after request_timeout, and never keep
/// a real visitor out.
#[test]
fn half_open_handshakes_are_bounded() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("plover", &["plover.test"]);
    let nginx = Nginx::start(&site());
    let (port, admin) = (free_port(), free_port());
    let _proxy = Proxy::start(
        nginx.port,
        &format!(
            "admin_listen = \"127.0.0.1:{admin}\"\nmax_connections = 50\nrequest_timeout = 2\n{}",
            tls_config(port, &[(&cert, &key)])
        ),
    );
    wait_for_port(port, "the TLS listener");
    let silent: Vec<TcpStream> = (0..1500)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(silent.len() > 1000, "{} connected", silent.len());
    let start = Instant::now();
    let (ok, out) = curl(&pki, port, "plover.test", &[], "/forms.html");
    assert!(ok && out.contains("-id-"), "{out}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // Every silent one is closed by the proxy soon: a read ends.
    std::thread::sleep(Duration::from_secs(3));
    let mut open = 0;
    for mut s in silent.into_iter().take(200) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        if matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
        {
            open += 1;
        }
    }
    let (_, metrics) = common::daemon::get(admin, "/metrics", &[]);
    let evicted_or_timed_out = metrics.lines().any(|l| {
        (l.starts_with("addrmunge_connections_evicted_total")
            || l.starts_with("addrmunge_request_timeouts_total"))
            && !l.ends_with(" 0")
    });
    assert!(evicted_or_timed_out, "{metrics}");
    assert_eq!(open, 0, "silent connections still open");
}
