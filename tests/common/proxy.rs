//! The proxy in front of the fixture site, and an HTTP/1.1 and h2c
//! client that sees responses as a harvester would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Instance, Running, free_port};

/// The fixture site nginx serves.
pub fn site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/site")
}

/// The proxy protecting the fixture site's domains, on a free port.
pub struct Proxy {
    /// Stopped before its folder goes.
    pub running: Running,
    pub port: u16,
    pub inst: Instance,
}

impl Proxy {
    /// The proxy in front of `http://127.0.0.1:UPSTREAM_PORT`, `extra` in
    /// its `[proxy]` section.
    pub fn start(upstream_port: u16, extra: &str) -> Proxy {
        Proxy::start_upstream(&format!("http://127.0.0.1:{upstream_port}"), extra)
    }

    /// The proxy in front of `upstream` (any upstream the config takes).
    pub fn start_upstream(upstream: &str, extra: &str) -> Proxy {
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
        inst.wait_for(port, "proxy");
        Proxy { running, port, inst }
    }

    /// `addrmunge decode --json` on each address.
    pub fn decode(&self, addresses: &[String]) -> Vec<serde_json::Value> {
        let mut args = vec!["decode", "--json"];
        args.extend(addresses.iter().map(String::as_str));
        String::from_utf8(self.inst.cli(&args).stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A response, whole.
pub struct Got {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Got {
    /// The body as the client reads it: undone as its `Content-Encoding`
    /// says when that is gzip or zstd (what the proxy compresses with).
    pub fn decoded(&self) -> Vec<u8> {
        match self.headers.get("content-encoding").map(String::as_str) {
            Some("gzip") => {
                use std::io::Read as _;
                let mut plain = Vec::new();
                let mut gz = flate2::read::GzDecoder::new(&self.body[..]);
                gz.read_to_end(&mut plain).unwrap();
                plain
            }
            Some("zstd") => zstd::decode_all(&self.body[..]).unwrap(),
            _ => self.body.clone(),
        }
    }
}

/// One request from `from` (a loopback address) over HTTP/1.1 or h2c.
pub async fn fetch(
    from: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    h2: bool,
) -> Got {
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

/// `GET /` over HTTP/1.1, the response's head as soon as it comes; the body
/// is read by the caller, frame by frame.
pub async fn get_streaming(port: u16) -> hyper::Response<hyper::body::Incoming> {
    try_get_streaming(port).await.unwrap()
}

/// [`get_streaming`], or the error when the connection closed before a
/// whole response head arrived.
pub async fn try_get_streaming(port: u16) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
    get_streaming_with(port, &[]).await
}

/// [`try_get_streaming`] with these request headers.
pub async fn get_streaming_with(
    port: u16,
    headers: &[(&str, &str)],
) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(sock))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get("/");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    s.send_request(req.body(Empty::<Bytes>::new()).unwrap()).await
}

/// Undoes what a harvester undoes: entities (twice, for srcdoc),
/// percent-encoding and JS escapes.
pub fn harvester_view(text: &str) -> String {
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

/// GET through curl from a given loopback address with a given User-Agent:
/// `(status, body)`.
pub fn fetch_as(port: u16, from: &str, user_agent: &str, path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--interface",
            from,
            "-A",
            user_agent,
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl is installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

/// Every munged address (`…-id-TOKEN@domain`) a harvester would find.
pub fn munged_addresses(text: &str) -> Vec<String> {
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

/// Today, as `YYYY-MM-DD`.
pub fn today() -> String {
    addrmunge::Day::today().to_string()
}

/// An upstream that misbehaves as told, for one connection at a time.
pub async fn bad_upstream(script: &'static str) -> (u16, tokio::sync::mpsc::Sender<()>) {
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
