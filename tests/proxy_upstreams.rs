//! The proxy in front of small in-test upstreams that misbehave on purpose
//! (and of nginx where a real one does): failures, streaming, upgrades,
//! charsets, and a visit log that stalls.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::free_port;
use common::nginx::Nginx;
use common::proxy::{
    Proxy, bad_upstream, fetch, get_streaming, get_streaming_with, munged_addresses, site, try_get_streaming,
};

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
    // Either way the client cannot take it for whole: when the upstream's
    // head, partial body and close arrive in one read, the proxy's first
    // body frame is already the error (the scanner holds the short start
    // back) and hyper closes before flushing the head.
    let cut_off = match try_get_streaming(proxy.port).await {
        Ok(resp) => resp.into_body().collect().await.is_err(),
        Err(e) => e.is_incomplete_message(),
    };
    assert!(cut_off, "a cut-off upstream body must not look complete");
    drop(proxy);

    // brotli and zstd from the upstream are undone too; the client gets
    // the page as it takes it: zstd or gzip compressed by the proxy, else
    // identity.
    for (script, accept, coding) in [
        ("br", "br", None),
        ("zstd", "zstd, gzip;q=0.5", Some("zstd")),
        ("br", "br, gzip", Some("gzip")),
    ] {
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
        assert_eq!(
            got.headers.get("content-encoding").map(String::as_str),
            coding,
            "{script}: {:?}",
            got.headers
        );
        let body = String::from_utf8(got.decoded()).unwrap();
        assert_eq!(munged_addresses(&body).len(), 2, "{script}: {body}");
        drop(proxy);
    }

    // Streaming: the first rewritten bytes arrive before the upstream finishes.
    let (port, tx) = bad_upstream("waits").await;
    let proxy = Proxy::start(port, "");
    let resp = get_streaming(proxy.port).await;
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
    drop(proxy);

    // Compressed too: what the compressor holds goes out while the
    // upstream keeps the rest, decodable as it is.
    let (port, tx) = bad_upstream("waits").await;
    let proxy = Proxy::start(port, "");
    let resp = get_streaming_with(proxy.port, &[("accept-encoding", "gzip")])
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let mut plain = Vec::with_capacity(1 << 16);
    while !String::from_utf8_lossy(&plain).contains("-id-") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("compressed bytes must arrive while the upstream still holds the rest");
        got.extend_from_slice(&frame.unwrap().unwrap().into_data().unwrap());
        // The gzip header is 10 bytes; the rest is deflate.
        if got.len() > 10 {
            plain.clear();
            flate2::Decompress::new(false)
                .decompress_vec(&got[10..], &mut plain, flate2::FlushDecompress::Sync)
                .unwrap();
        }
    }
    tx.send(()).await.unwrap();
    got.extend_from_slice(&body.collect().await.unwrap().to_bytes());
    let mut whole = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&got[..]), &mut whole).unwrap();
    assert!(whole.starts_with("<p>") && whole.ends_with("later"), "{whole}");
}

/// WebSocket-style upgrades pass through, over plain HTTP and over TLS
/// (HTTP/1.1 by ALPN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through() {
    let (port, _tx) = bad_upstream("upgrade").await;
    let pki = common::pki::Pki::new();
    let (cert, key) = pki.leaf("plover", &["plover.test"]);
    let tls_port = common::free_port();
    let proxy = Proxy::start(
        port,
        &format!(
            "tls_listen = [\"127.0.0.1:{tls_port}\"]\n[[proxy.tls]]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let plain = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    echoes_upgraded(plain).await;
    common::wait_for_port(tls_port, "the TLS listener");
    echoes_upgraded(common::pki::connect(&pki, tls_port, "plover.test", &[b"http/1.1"]).await).await;
}

async fn echoes_upgraded(mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin) {
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

/// Shift_JIS, Big5, GBK and EUC-KR pages are read decoded: a character whose
/// second byte is a letter (`ス`, `0x83 0x58`) does not join the address
/// after it, and a fullwidth address gets its ID too; what the visitor gets
/// is the page's own bytes with the IDs inserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_byte_charsets_are_spliced() {
    let cases = [
        ("text/html", encoding_rs::SHIFT_JIS), // <meta> only
        ("text/html; charset=big5", encoding_rs::BIG5),
        ("text/html; charset=gbk", encoding_rs::GBK),
        ("text/plain; charset=euc-kr", encoding_rs::EUC_KR),
    ];
    for (ct, enc) in cases {
        let ch = ('\u{3041}'..='\u{d7a3}')
            .find(|c| {
                let s = c.to_string();
                let (b, _, bad) = enc.encode(&s);
                !bad && b.len() == 2 && b[1].is_ascii_alphabetic()
            })
            .unwrap();
        let text = format!(
            "<html><head><meta charset=\"{}\"></head><body><p>{ch}joe@ihatespam.test、ｍｊｄ＠ｉｈａｔｅｓｐａｍ．ｔｅｓｔ</p></body></html>",
            enc.name()
        );
        let (body, _, bad) = enc.encode(&text);
        assert!(!bad);
        let up = fixed_upstream(ct, body.to_vec()).await;
        let proxy = Proxy::start(up, "");
        let got = fetch("127.0.0.1", proxy.port, "GET", "/", &[], false).await;
        assert_eq!(got.status, 200);
        let (decoded, errors) = enc.decode_without_bom_handling(&got.body);
        assert!(!errors, "{}: {decoded}", enc.name());
        // Right after the character, for `joe`.
        let joe = decoded.split(ch).nth(1).unwrap().split('、').next().unwrap();
        let wide = decoded.split('、').nth(1).unwrap().split('<').next().unwrap();
        assert!(
            joe.starts_with("joe-id-") && wide.starts_with("ｍｊｄ-id-"),
            "{}: {decoded}",
            enc.name()
        );
        let wide_id = &wide["ｍｊｄ-id-".len()..wide.find('＠').unwrap()];
        let v = proxy.decode(&[joe.to_owned(), format!("mjd-id-{wide_id}@ihatespam.test")]);
        for v in v {
            assert_eq!(v["ip"], "127.0.0.1", "{}: {v:?}", enc.name());
        }
        // Every other byte as it came.
        let mut bare = got.body.to_vec();
        while let Some(i) = memchr::memmem::find(&bare, b"-id-") {
            let end = bare[i + 4..]
                .iter()
                .position(|b| !b.is_ascii_alphanumeric())
                .unwrap();
            bare.drain(i..i + 4 + end);
        }
        assert!(bare == body.as_ref(), "{}", enc.name());
    }
}

/// A Latin-1 page is read as a browser shows it: a raw no-break space
/// (`0xA0`) is a space and a soft hyphen (`0xAD`) is invisible; the IDs are
/// the visitor's and every other byte comes as it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_byte_charsets_are_spliced() {
    let body = b"<html><body><p>\xc9crivez \xe0 joe\xa0[at]\xa0ihatespam\xa0[dot]\xa0test \
                 ou \xe0 mj\xadd@ihatespam.test.</p></body></html>"
        .to_vec();
    let up = fixed_upstream("text/html; charset=iso-8859-1", body.clone()).await;
    let proxy = Proxy::start(up, "");
    let got = fetch("127.0.0.1", proxy.port, "GET", "/", &[], false).await;
    assert_eq!(got.status, 200);
    let text = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&got.body).0;
    let ids: Vec<String> = text
        .split("-id-")
        .skip(1)
        .map(|s| {
            s.split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 2, "{text}");
    assert!(
        text.contains("joe-id-") && text.contains("mj\u{ad}d-id-"),
        "{text}"
    );
    let v = proxy.decode(&[
        format!("joe-id-{}@ihatespam.test", ids[0]),
        format!("mjd-id-{}@ihatespam.test", ids[1]),
    ]);
    for v in v {
        assert_eq!(v["ip"], "127.0.0.1", "{v:?}");
    }
    let mut bare = got.body.to_vec();
    for id in &ids {
        let id = format!("-id-{id}");
        let i = memchr::memmem::find(&bare, id.as_bytes()).unwrap();
        bare.drain(i..i + id.len());
    }
    assert!(bare == body, "{}", String::from_utf8_lossy(&bare));
}

/// A web server that sends its 304 with the page's Content-Type (many app
/// servers do; nginx does not): the visitor still gets back its own
/// validator, made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_304_gives_back_the_visitors_validator() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                let body = "<p>joe@ihatespam.test</p>";
                let head = if req.contains("if-none-match: \"v1\"") {
                    "HTTP/1.1 304 Not Modified\r\ncontent-type: text/html\r\netag: \"v1\"\r\nconnection: close\r\n\r\n".to_owned()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\netag: \"v1\"\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = s.write_all(head.as_bytes()).await;
            });
        }
    });
    let proxy = Proxy::start(up, "");
    let got = fetch("127.0.0.1", proxy.port, "GET", "/", &[], false).await;
    assert_eq!(got.status, 200);
    let etag = got.headers["etag"].clone();
    let cond = fetch(
        "127.0.0.1",
        proxy.port,
        "GET",
        "/",
        &[("if-none-match", &etag)],
        false,
    )
    .await;
    assert_eq!(cond.status, 304);
    assert_eq!(cond.headers["etag"], etag);
}
