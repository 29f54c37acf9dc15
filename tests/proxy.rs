//! The proxy in front of a real nginx (started here on a free loopback port
//! with its own config) and in front of small in-test upstreams that
//! misbehave on purpose.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::nginx::Nginx;
use common::{Instance, free_port, wait_for_port};

fn site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/site")
}

struct Proxy {
    /// Stopped before its folder goes.
    running: common::Running,
    port: u16,
    inst: Instance,
}

impl Proxy {
    fn start(upstream_port: u16, extra: &str) -> Proxy {
        Proxy::start_upstream(&format!("http://127.0.0.1:{upstream_port}"), extra)
    }

    fn start_upstream(upstream: &str, extra: &str) -> Proxy {
        let port = free_port();
        let inst = Instance::new(&format!(
            r#"
[[protect]]
domain = "ihatespam.test"
exempt = ["*-subscribe", "*-unsubscribe"]

[[protect]]
domain = "plover.com"
local = "mjd"

[proxy]
listen = ["127.0.0.1:{port}"]
upstream = "{upstream}"
trusted_proxies = ["127.0.0.2/32"]
header_timeout = 2
body_idle_timeout = 2
{extra}
"#
        ));
        let running = inst.start("proxy", &[]);
        wait_for_port(port, "addrmunge proxy");
        Proxy { running, port, inst }
    }

    /// `addrmunge decode --json` on each address.
    fn decode(&self, addresses: &[String]) -> Vec<serde_json::Value> {
        let mut args = vec!["decode", "--json"];
        args.extend(addresses.iter().map(String::as_str));
        String::from_utf8(self.inst.cli(&args).stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

struct Got {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// One request from `from` (a loopback address) over HTTP/1.1 or h2c.
async fn fetch(from: &str, port: u16, method: &str, path: &str, headers: &[(&str, &str)], h2: bool) -> Got {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse::<SocketAddr>().unwrap())
        .unwrap();
    let stream = sock.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let io = TokioIo::new(stream);
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    let resp = if h2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Got {
        status,
        headers,
        body,
    }
}

/// Undoes what a harvester undoes: entities (twice, for srcdoc),
/// percent-encoding and JS escapes.
fn harvester_view(text: &str) -> String {
    let mut s = text.to_owned();
    for _ in 0..2 {
        let b = s.as_bytes();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            let rest = &s[i..];
            let mut took = None;
            if let Some(r) = rest.strip_prefix("&#x").or_else(|| rest.strip_prefix("&#X")) {
                let n = r.bytes().take_while(|c| c.is_ascii_hexdigit()).count();
                if let Ok(v) = u32::from_str_radix(&r[..n], 16) {
                    let semi = usize::from(r[n..].starts_with(';'));
                    took = Some((char::from_u32(v).unwrap_or('?'), 3 + n + semi));
                }
            } else if let Some(r) = rest.strip_prefix("&#") {
                let n = r.bytes().take_while(|c| c.is_ascii_digit()).count();
                if let Ok(v) = r[..n].parse::<u32>() {
                    let semi = usize::from(r[n..].starts_with(';'));
                    took = Some((char::from_u32(v).unwrap_or('?'), 2 + n + semi));
                }
            } else if rest.starts_with("&commat;") {
                took = Some(('@', 8));
            } else if rest.starts_with("&period;") {
                took = Some(('.', 8));
            } else if rest.starts_with("&amp;") {
                took = Some(('&', 5));
            } else if rest.len() >= 3
                && rest.starts_with('%')
                && rest[1..3].bytes().all(|c| c.is_ascii_hexdigit())
            {
                took = Some((u8::from_str_radix(&rest[1..3], 16).unwrap() as char, 3));
            } else if rest.len() >= 6
                && rest.starts_with("\\u")
                && rest[2..6].bytes().all(|c| c.is_ascii_hexdigit())
            {
                took = Some((
                    char::from_u32(u32::from_str_radix(&rest[2..6], 16).unwrap()).unwrap_or('?'),
                    6,
                ));
            } else if rest.len() >= 4
                && rest.starts_with("\\x")
                && rest[2..4].bytes().all(|c| c.is_ascii_hexdigit())
            {
                took = Some((u8::from_str_radix(&rest[2..4], 16).unwrap() as char, 4));
            }
            match took {
                Some((c, n)) => {
                    out.push(c);
                    i += n;
                }
                None => {
                    let c = rest.chars().next().unwrap();
                    out.push(c);
                    i += c.len_utf8();
                }
            }
        }
        s = out;
    }
    s
}

/// Every munged address (`…-id-TOKEN@domain`) a harvester would find.
fn munged_addresses(text: &str) -> Vec<String> {
    let view = harvester_view(text);
    let b = view.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(k) = view[from..].find("-id-") {
        let at = from + k;
        from = at + 4;
        let mut start = at;
        while start > 0 && (b[start - 1].is_ascii_alphanumeric() || b"._+-".contains(&b[start - 1])) {
            start -= 1;
        }
        let mut end = at + 4;
        while end < b.len() && b[end].is_ascii_alphanumeric() {
            end += 1;
        }
        if end >= b.len() || b[end] != b'@' {
            continue;
        }
        end += 1;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b".-".contains(&b[end])) {
            end += 1;
        }
        found.push(view[start..end].trim_end_matches('.').to_owned());
    }
    found
}

fn today() -> String {
    addrmunge::Day::today().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_every_place_on_a_real_nginx_site() {
    let nginx = Nginx::start(&site());
    let proxy = Proxy::start(nginx.port, "");
    let page = fs::read_to_string(site().join("forms.html")).unwrap();
    let want = page.matches("<!--want-->").count();

    for h2 in [false, true] {
        let got = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], h2).await;
        assert_eq!(got.status, 200);
        let body = String::from_utf8(got.body).unwrap();
        let found = munged_addresses(&body);
        assert_eq!(found.len(), want, "h2={h2}: {found:?}");
        for v in proxy.decode(&found) {
            assert_eq!(v["status"], "valid", "{v}");
            assert_eq!(v["ip"], "127.0.0.1");
            assert_eq!(v["date"], today());
            assert_eq!(v["kind"], "visitor");
        }
        // Nothing else changed: removing the insertions gives the file back.
        let mut restored = body.clone();
        while let Some(i) = restored.find("-id-") {
            restored.replace_range(i..i + 4 + 24, "");
        }
        assert_eq!(restored, page, "h2={h2}");
        // Headers of a rewritten response.
        assert!(!got.headers.contains_key("content-length"));
        assert!(!got.headers.contains_key("accept-ranges"));
        assert!(
            got.headers["cache-control"].starts_with("private"),
            "{:?}",
            got.headers
        );
        assert!(got.headers["etag"].starts_with("W/\""), "{:?}", got.headers);
    }
    // The right original for each.
    let got = fetch("127.0.0.1", proxy.port, "GET", "/notes.txt", &[], false).await;
    let found = munged_addresses(&String::from_utf8(got.body).unwrap());
    let originals: Vec<String> = proxy
        .decode(&found)
        .iter()
        .map(|v| v["original"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(originals, ["joe@ihatespam.test", "mjd@plover.com"]);

    // RSS and JSON responses too.
    for (path, n) in [("/feed.xml", 3), ("/data.json", 2)] {
        let got = fetch("127.0.0.1", proxy.port, "GET", path, &[], false).await;
        let found = munged_addresses(&String::from_utf8(got.body).unwrap());
        assert_eq!(found.len(), n, "{path}: {found:?}");
    }

    // A page without protected addresses and a non-rewritten type: byte-identical.
    let got = fetch("127.0.0.1", proxy.port, "GET", "/plain.html", &[], false).await;
    assert_eq!(got.body, fs::read(nginx.root.join("plain.html")).unwrap());
    let got = fetch("127.0.0.1", proxy.port, "GET", "/image.png", &[], false).await;
    assert_eq!(got.body, fs::read(nginx.root.join("image.png")).unwrap());
    assert_eq!(got.headers["content-length"], "100000");
    assert_eq!(
        got.headers.get("accept-ranges").map(String::as_str),
        Some("bytes")
    );
    // Ranges of non-rewritten types still work; of rewritten types, the whole page comes.
    let got = fetch(
        "127.0.0.1",
        proxy.port,
        "GET",
        "/image.png",
        &[("range", "bytes=0-9")],
        false,
    )
    .await;
    assert_eq!((got.status, got.body.len()), (206, 10));
    let got = fetch(
        "127.0.0.1",
        proxy.port,
        "GET",
        "/forms.html",
        &[("range", "bytes=0-9")],
        false,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        munged_addresses(&String::from_utf8(got.body).unwrap()).len(),
        want
    );

    // HEAD answers with the headers a GET would.
    let head = fetch("127.0.0.1", proxy.port, "HEAD", "/forms.html", &[], false).await;
    let get = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], false).await;
    assert!(head.body.is_empty());
    for h in ["cache-control", "etag", "content-type"] {
        assert_eq!(head.headers.get(h), get.headers.get(h), "{h}");
    }
    assert!(!head.headers.contains_key("content-length"));
    // A conditional request with our validator: 304 with the same validator.
    let etag = get.headers["etag"].clone();
    let cond = fetch(
        "127.0.0.1",
        proxy.port,
        "GET",
        "/forms.html",
        &[("if-none-match", &etag)],
        false,
    )
    .await;
    assert_eq!(cond.status, 304);
    assert_eq!(cond.headers["etag"], etag);
    // Another visitor's validator does not match ours.
    let other = fetch(
        "127.0.0.2",
        proxy.port,
        "GET",
        "/forms.html",
        &[("x-forwarded-for", "198.51.100.1")],
        false,
    )
    .await;
    assert_ne!(other.headers["etag"], etag);
    let cond = fetch(
        "127.0.0.2",
        proxy.port,
        "GET",
        "/forms.html",
        &[("if-none-match", &etag), ("x-forwarded-for", "198.51.100.1")],
        false,
    )
    .await;
    assert_eq!(
        cond.status, 200,
        "a validator of another visitor must not give a 304"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_upstream() {
    let nginx = Nginx::start(&site());
    let proxy = Proxy::start_upstream(&format!("unix:{}", nginx.socket.display()), "");
    let got = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], false).await;
    assert_eq!(got.status, 200);
    let found = munged_addresses(&String::from_utf8(got.body).unwrap());
    assert!(!found.is_empty());
    for v in proxy.decode(&found) {
        assert_eq!(v["status"], "valid", "{v}");
    }
    // The visitor's Host goes through, not the socket's made-up name.
    let got = fetch("127.0.0.1", proxy.port, "GET", "/echo-headers", &[], false).await;
    let echo = String::from_utf8(got.body).unwrap();
    assert!(
        echo.contains("host=127.0.0.1") && echo.contains("xff=127.0.0.1"),
        "{echo}"
    );
    // Gone: a clean 502.
    drop(nginx);
    let got = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], false).await;
    assert_eq!(got.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_ip_gzip_and_harvesters() {
    let nginx = Nginx::start(&site());
    let admin = free_port();
    let proxy = Proxy::start(nginx.port, &format!("admin_listen = \"127.0.0.1:{admin}\""));
    let ip_of = |body: &[u8]| -> String {
        let found = munged_addresses(&String::from_utf8_lossy(body));
        proxy.decode(&found[..1])[0]["ip"].as_str().unwrap().to_owned()
    };
    // An untrusted peer cannot choose its visitor IP.
    let got = fetch(
        "127.0.0.1",
        proxy.port,
        "GET",
        "/notes.txt",
        &[("x-forwarded-for", "203.0.113.50")],
        false,
    )
    .await;
    assert_eq!(ip_of(&got.body), "127.0.0.1");
    // A trusted proxy can: the rightmost untrusted hop.
    let got = fetch(
        "127.0.0.2",
        proxy.port,
        "GET",
        "/notes.txt",
        &[("x-forwarded-for", "192.0.2.1, 203.0.113.50, 127.0.0.2")],
        false,
    )
    .await;
    assert_eq!(ip_of(&got.body), "203.0.113.50");
    let got = fetch(
        "127.0.0.2",
        proxy.port,
        "GET",
        "/notes.txt",
        &[("forwarded", "for=\"[2001:db8:1:2::7]:99\"")],
        false,
    )
    .await;
    assert_eq!(ip_of(&got.body), "2001:db8:1:2::/64");
    // The upstream sees the real chain and our Via.
    let got = fetch(
        "127.0.0.1",
        proxy.port,
        "GET",
        "/echo-headers",
        &[("x-forwarded-for", "6.6.6.6")],
        false,
    )
    .await;
    let echo = String::from_utf8(got.body).unwrap();
    assert!(
        echo.contains("xff=127.0.0.1 ") && echo.contains("via=1.1 addrmunge"),
        "{echo}"
    );
    // The Host header goes through as the visitor sent it.
    let got = fetch(
        "127.0.0.1",
        proxy.port,
        "GET",
        "/echo-headers",
        &[("host", "www.plover.test")],
        false,
    )
    .await;
    assert!(
        String::from_utf8(got.body)
            .unwrap()
            .ends_with("host=www.plover.test")
    );

    // gzip from nginx, gzip to the client.
    let got = fetch(
        "127.0.0.1",
        proxy.port,
        "GET",
        "/data.json",
        &[("accept-encoding", "gzip")],
        false,
    )
    .await;
    assert_eq!(
        got.headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&got.body[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert_eq!(munged_addresses(&plain).len(), 2, "{plain}");
    // A client without gzip gets identity even though nginx compresses.
    let got = fetch("127.0.0.1", proxy.port, "GET", "/data.json", &[], false).await;
    assert!(!got.headers.contains_key("content-encoding"));
    assert_eq!(munged_addresses(&String::from_utf8(got.body).unwrap()).len(), 2);

    // A harvester gets trap IDs.
    let got = fetch(
        "127.0.0.1",
        proxy.port,
        "GET",
        "/notes.txt",
        &[("user-agent", "Mozilla/4.0 (EmailSiphon)")],
        false,
    )
    .await;
    let found = munged_addresses(&String::from_utf8(got.body).unwrap());
    for v in proxy.decode(&found) {
        assert_eq!(v["kind"], "trap", "{v}");
    }

    // Metrics on the admin listener only.
    let m = fetch("127.0.0.1", admin, "GET", "/metrics", &[], false).await;
    let text = String::from_utf8(m.body).unwrap();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in {text}"))
    };
    assert!(value("addrmunge_requests_total") >= 7);
    assert!(value("addrmunge_addresses_munged_total") >= 10);
    assert!(value("addrmunge_response_header_seconds_count") >= 7);
    let public = fetch("127.0.0.1", proxy.port, "GET", "/metrics", &[], false).await;
    assert_eq!(public.status, 404, "metrics must not be on the public listener");

    // One access-log line per request, with bytes and addresses munged.
    let start = Instant::now();
    loop {
        let log = proxy.inst.log("proxy");
        let line = log
            .lines()
            .find(|l| l.contains("path=/data.json") && l.contains("munged=2"));
        if let Some(line) = line {
            assert!(
                line.contains("visitor=127.0.0.1") && line.contains("status=200") && line.contains("bytes="),
                "{line}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no access line for /data.json in {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An upstream that misbehaves as told, for one connection at a time.
async fn bad_upstream(script: &'static str) -> (u16, tokio::sync::mpsc::Sender<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            match script {
                "upgrade" => {
                    let _ = s
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n")
                        .await;
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                }
                "br" | "zstd" => {
                    let page = b"<p>mail joe@ihatespam.test or ann&#64;ihatespam.test</p>";
                    let body = if script == "br" {
                        let mut out = Vec::new();
                        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                        std::io::Write::write_all(&mut w, page).unwrap();
                        drop(w);
                        out
                    } else {
                        zstd::encode_all(&page[..], 3).unwrap()
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-encoding: {script}\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&body).await;
                }
                "silent" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                "one-byte-chunks" => {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n")
                        .await;
                    for c in b"<p>write to joe&#64;ihatespam.test now</p>" {
                        let _ = s.write_all(format!("1\r\n{}\r\n", *c as char).as_bytes()).await;
                        let _ = s.flush().await;
                    }
                    let _ = s.write_all(b"0\r\n\r\n").await;
                }
                "dies" => {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 1000\r\n\r\n<p>joe@ihatespam.test")
                        .await;
                    drop(s);
                    continue;
                }
                "waits" => {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n1a\r\n<p>joe@ihatespam.test</p>\n\r\n")
                        .await;
                    let _ = s.flush().await;
                    rx.recv().await;
                    let _ = s.write_all(b"5\r\nlater\r\n0\r\n\r\n").await;
                }
                _ => {}
            }
            let _ = s.shutdown().await;
        }
    });
    (port, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_streaming() {
    // Nothing listening: 502 with a short HTML page.
    let closed = free_port();
    let proxy = Proxy::start(closed, "");
    let got = fetch("127.0.0.1", proxy.port, "GET", "/", &[], false).await;
    assert_eq!(got.status, 502);
    assert!(String::from_utf8_lossy(&got.body).contains("502"));
    // And it keeps serving.
    let got = fetch("127.0.0.1", proxy.port, "GET", "/again", &[], false).await;
    assert_eq!(got.status, 502);
    // Oversized request heads are refused before they reach anything.
    // (hyper answers 431 or closes the connection, depending on where the limit hits).
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-huge: {}\r\n\r\n",
        "x".repeat(100_000)
    );
    let _ = s.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    let got = fetch("127.0.0.1", proxy.port, "GET", "/still-there", &[], false).await;
    assert_eq!(got.status, 502);
    drop(proxy);

    // Too slow: 504.
    let (port, _tx) = bad_upstream("silent").await;
    let proxy = Proxy::start(port, "");
    let got = fetch("127.0.0.1", proxy.port, "GET", "/", &[], false).await;
    assert_eq!(got.status, 504);
    drop(proxy);

    // One-byte chunks: the address still munged, the rest unchanged.
    let (port, _tx) = bad_upstream("one-byte-chunks").await;
    let proxy = Proxy::start(port, "");
    let got = fetch("127.0.0.1", proxy.port, "GET", "/", &[], false).await;
    let body = String::from_utf8(got.body).unwrap();
    assert_eq!(munged_addresses(&body).len(), 1, "{body}");
    assert!(
        body.starts_with("<p>write to joe-id-") && body.ends_with("&#64;ihatespam.test now</p>"),
        "{body}"
    );
    drop(proxy);

    // Dying mid-body: the client sees a broken response, not a complete one.
    let (port, _tx) = bad_upstream("dies").await;
    let proxy = Proxy::start(port, "");
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(sock))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = s
        .send_request(Request::get("/").body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert!(
        resp.into_body().collect().await.is_err(),
        "a cut-off upstream body must not look complete"
    );
    drop(proxy);

    // brotli and zstd from the upstream are undone too; the client gets
    // identity or gzip, whichever it takes.
    for (script, accept) in [("br", "br"), ("zstd", "zstd, gzip")] {
        let (port, _tx) = bad_upstream(script).await;
        let proxy = Proxy::start(port, "");
        let got = fetch(
            "127.0.0.1",
            proxy.port,
            "GET",
            "/",
            &[("accept-encoding", accept)],
            false,
        )
        .await;
        let body = if got.headers.get("content-encoding").map(String::as_str) == Some("gzip") {
            let mut plain = String::new();
            flate2::read::GzDecoder::new(&got.body[..])
                .read_to_string(&mut plain)
                .unwrap();
            plain
        } else {
            assert!(
                !got.headers.contains_key("content-encoding"),
                "{script}: {:?}",
                got.headers
            );
            String::from_utf8(got.body).unwrap()
        };
        assert_eq!(munged_addresses(&body).len(), 2, "{script}: {body}");
        drop(proxy);
    }

    // Streaming: the first rewritten bytes arrive before the upstream finishes.
    let (port, tx) = bad_upstream("waits").await;
    let proxy = Proxy::start(port, "");
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(sock))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = s
        .send_request(Request::get("/").body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("first bytes must arrive while the upstream still holds the rest")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("-id-"), "{first:?}");
    tx.send(()).await.unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&rest).ends_with("later"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through() {
    let (port, _tx) = bad_upstream("upgrade").await;
    let proxy = Proxy::start(port, "");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping joe@ihatespam.test").await.unwrap();
    let mut echo = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &echo, b"ping joe@ihatespam.test",
        "upgraded streams are not rewritten"
    );
}

/// The visit log is written off the request path: with the store locked
/// by someone else (a stalled writer, as on a slow disk), every request is
/// still answered, and the records that do not fit the queue are dropped
/// and counted. Latency is printed, not asserted: this is no benchmark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_visit_log_never_holds_up_responses() {
    let nginx = Nginx::start(&site());
    let admin = free_port();
    let proxy = Proxy::start(
        nginx.port,
        &format!("admin_listen = \"127.0.0.1:{admin}\"\nvisit_queue = 4"),
    );
    let state = proxy.inst.path("state.sqlite");
    // Let the proxy create the store, then lock it against writers.
    let lock = rusqlite::Connection::open(&state).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // One request, so the writer gathers it and then waits on the lock.
    fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut times = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        let got = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], i % 2 == 0).await;
        times.push(t.elapsed());
        assert_eq!(got.status, 200);
        assert!(!got.body.is_empty());
    }
    times.sort();
    println!(
        "with the store locked: p50 {:?}, p99 {:?}, max {:?}",
        times[150], times[297], times[299]
    );
    let m = fetch("127.0.0.1", admin, "GET", "/metrics", &[], false).await;
    let text = String::from_utf8(m.body).unwrap();
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("addrmunge_visit_log_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped >= 250, "dropped {dropped}:\n{text}");

    // Once the store is free again, visits are logged again.
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    tokio::time::sleep(Duration::from_secs(6)).await;
    fetch("127.0.0.2", proxy.port, "GET", "/forms.html", &[], false).await;
    let mut store = addrmunge::Store::open(&state).unwrap();
    let start = Instant::now();
    while store
        .visit(addrmunge::Day::today(), "127.0.0.2")
        .unwrap()
        .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "visit never logged after the lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An upstream that answers every request with one fixed response.
async fn fixed_upstream(content_type: &'static str, body: Vec<u8>) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    port
}

/// UTF-16 and ISO-2022-JP pages are decoded, rewritten and encoded back into
/// their own charset (declared in the header, by a byte-order mark, or by a
/// <meta> the proxy sniffs); everything else on the page is byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_compatible_charsets_are_transcoded() {
    let text = "<html><head><meta charset=\"iso-2022-jp\"><title>連絡先</title></head><body>メール: joe@ihatespam.test です。</body></html>";
    let utf16le: Vec<u8> = "\u{feff}"
        .chars()
        .chain(text.chars())
        .collect::<String>()
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let utf16be: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    let (jis, _, _) = encoding_rs::ISO_2022_JP.encode(text);
    let cases: Vec<(&'static str, Vec<u8>, &'static encoding_rs::Encoding)> = vec![
        ("text/html", utf16le, encoding_rs::UTF_16LE), // BOM only
        ("text/html; charset=utf-16be", utf16be, encoding_rs::UTF_16BE), // header
        ("text/html", jis.into_owned(), encoding_rs::ISO_2022_JP), // <meta> only
    ];
    for (ct, body, enc) in cases {
        let up = fixed_upstream(ct, body.clone()).await;
        let proxy = Proxy::start(up, "");
        let got = fetch("127.0.0.1", proxy.port, "GET", "/", &[], false).await;
        assert_eq!(got.status, 200);
        let (decoded, errors) = enc.decode_without_bom_handling(&got.body);
        assert!(!errors, "{}: the answer is not valid {}", enc.name(), enc.name());
        let found = munged_addresses(&decoded);
        assert_eq!(found.len(), 1, "{}: {decoded}", enc.name());
        assert!(found[0].starts_with("joe-id-"), "{found:?}");
        let v = proxy.decode(&found);
        assert_eq!(v[0]["ip"], "127.0.0.1", "{v:?}");
        // Only the address changed.
        assert_eq!(
            decoded
                .replace(&found[0], "joe@ihatespam.test")
                .trim_start_matches('\u{feff}'),
            text
        );
        // The BOM, if any, is still there.
        assert_eq!(
            got.body.starts_with(&[0xff, 0xfe]),
            body.starts_with(&[0xff, 0xfe])
        );
    }
}

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args(["-s", sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// SIGHUP reloads config and keys (a broken config keeps the old one);
/// SIGTERM stops accepting, lets the request in flight finish, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_drains() {
    let nginx = Nginx::start(&site());
    let proxy = Proxy::start(nginx.port, "");
    let pid = proxy.running.0.id();
    let got = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], false).await;
    assert!(String::from_utf8_lossy(&got.body).contains("-id-"));

    let cfg_path = proxy.inst.config();
    let cfg = fs::read_to_string(&cfg_path).unwrap();
    // (The config ends in [proxy]: the last line lands there.)
    fs::write(
        &cfg_path,
        format!("separator = \"-x-\"\n{cfg}\nupstream_host = \"internal.test\"\n"),
    )
    .unwrap();
    signal(pid, "HUP");
    let start = Instant::now();
    loop {
        let got = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], false).await;
        let body = String::from_utf8_lossy(&got.body).into_owned();
        if body.contains("-x-") && !body.contains("-id-") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reload never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // upstream_host replaces the visitor's Host towards the web server.
    let got = fetch("127.0.0.1", proxy.port, "GET", "/echo-headers", &[], false).await;
    assert!(
        String::from_utf8(got.body)
            .unwrap()
            .ends_with("host=internal.test")
    );
    // A broken config on SIGHUP: logged, the old one stays.
    fs::write(&cfg_path, "this is = not [toml").unwrap();
    signal(pid, "HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], false).await;
    assert_eq!(got.status, 200);
    assert!(String::from_utf8_lossy(&got.body).contains("-x-"));
    let log = proxy.inst.log("proxy");
    assert!(log.contains("reload failed; keeping the old config"), "{log}");
    fs::write(&cfg_path, &cfg).unwrap();

    // SIGTERM while a response is in flight.
    let (port, tx) = bad_upstream("waits").await;
    drop(proxy);
    let mut proxy = Proxy::start(port, "");
    let pid = proxy.running.0.id();
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(sock))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = s
        .send_request(Request::get("/").body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    signal(pid, "TERM");
    // New connections are refused once the listener closes.
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .is_ok()
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The request in flight completes.
    tx.send(()).await.unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&rest).ends_with("later"));
    let start = Instant::now();
    loop {
        if let Some(status) = proxy.running.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "proxy did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
