//! The proxy in front of a real nginx (started here on a free loopback port
//! with its own config): every place an address can be, visitors, gzip,
//! harvesters, a unix-socket upstream.

use std::fs;
use std::time::{Duration, Instant};

mod common;
use common::daemon::metric_at;
use common::free_port;
use common::nginx::Nginx;
use common::proxy::{Proxy, fetch, munged_addresses, site, today};

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

/// What a contact page links to is rewritten by default like the page: a
/// vCard, a calendar and an SVG image each name the visitor's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcards_calendars_and_svg_are_rewritten_by_default() {
    let nginx = Nginx::start(&site());
    let proxy = Proxy::start(nginx.port, "");
    for path in ["/card.vcf", "/event.ics", "/map.svg"] {
        let got = fetch("127.0.0.1", proxy.port, "GET", path, &[], false).await;
        let text = String::from_utf8(got.decoded()).unwrap();
        let found = munged_addresses(&text);
        assert_eq!(
            found.len(),
            if path == "/map.svg" { 2 } else { 1 },
            "{path}: {text}"
        );
        assert!(!text.contains("mjd@plover.com"), "{path}: {text}");
        for v in proxy.decode(&found) {
            assert_eq!(v["ip"], "127.0.0.1", "{v}");
        }
    }
    // The owner can still name types one by one.
    let only_html = Proxy::start(nginx.port, "rewrite_types = [\"text/html\"]");
    let got = fetch("127.0.0.1", only_html.port, "GET", "/card.vcf", &[], false).await;
    assert_eq!(got.body, fs::read(nginx.root.join("card.vcf")).unwrap());
}

/// A response with no Content-Type is sniffed as a browser sniffs it: a
/// page or text is rewritten (an address in it after the first 1024 bytes
/// too), a binary file passes through byte for byte; neither is compressed
/// by the proxy, since such a body may be a large download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_without_a_type_are_rewritten_when_they_are_text() {
    let nginx = Nginx::start(&site());
    let proxy = Proxy::start(nginx.port, "");
    for (path, addresses) in [("/untyped/contact", 1), ("/untyped/notes", 1)] {
        for gzip in [false, true] {
            let headers: &[(&str, &str)] = if gzip { &[("accept-encoding", "gzip")] } else { &[] };
            let got = fetch("127.0.0.1", proxy.port, "GET", path, headers, false).await;
            assert!(!got.headers.contains_key("content-type"), "{:?}", got.headers);
            assert!(!got.headers.contains_key("content-encoding"), "{:?}", got.headers);
            let text = String::from_utf8(got.decoded()).unwrap();
            let found = munged_addresses(&text);
            assert_eq!(found.len(), addresses, "{path}: {text}");
            assert!(!text.contains("mjd@plover.com"), "{path}: {text}");
            for v in proxy.decode(&found) {
                assert_eq!(v["ip"], "127.0.0.1", "{v}");
            }
        }
    }
    for gzip in [false, true] {
        let headers: &[(&str, &str)] = if gzip { &[("accept-encoding", "gzip")] } else { &[] };
        let got = fetch("127.0.0.1", proxy.port, "GET", "/untyped/blob", headers, false).await;
        assert_eq!(got.body, fs::read(nginx.root.join("untyped/blob")).unwrap());
    }
    // Sniffed as HTML is, so an owner who does not rewrite HTML does not
    // get these rewritten either.
    let no_html = Proxy::start(nginx.port, "rewrite_types = [\"application/json\"]");
    let got = fetch("127.0.0.1", no_html.port, "GET", "/untyped/contact", &[], false).await;
    assert_eq!(got.body, fs::read(nginx.root.join("untyped/contact")).unwrap());
}

/// A page's link to the site with the owner's address in it gets the
/// visitor's ID like any address; following it, the web server is asked
/// for the URL it wrote (the ID taken out), in the path and in a query,
/// over HTTP/1.1 and HTTP/2. An ID that is not authentic is passed on as
/// it is (and finds nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_to_the_site_with_an_address_in_them_still_work() {
    let nginx = Nginx::start(&site());
    let proxy = Proxy::start(nginx.port, "");
    for h2 in [false, true] {
        let page = fetch("127.0.0.1", proxy.port, "GET", "/people.html", &[], h2).await;
        let page = String::from_utf8(page.body).unwrap();
        let links: Vec<&str> = page
            .split("href=\"")
            .skip(1)
            .map(|h| h.split('"').next().unwrap())
            .collect();
        assert_eq!(links.len(), 2, "{page}");
        for link in &links {
            assert!(
                link.contains("mjd-id-") && !link.contains("mjd@") && !link.contains("mjd%40"),
                "{link}"
            );
            let got = fetch("127.0.0.1", proxy.port, "GET", link, &[], h2).await;
            assert_eq!(got.status, 200, "{link}");
            assert_eq!(got.body, b"<p>Mark's page</p>\n");
        }
        let escaped = "GET /people/mjd%40plover.com/?to=mjd%40plover.com HTTP/1.1";
        let raw = "GET /people/mjd@plover.com/ HTTP/1.1";
        let log = nginx.log_when("access.log", |l| l.contains(escaped) && l.contains(raw));
        assert!(
            log.contains(escaped)
                && log.contains(raw)
                && log
                    .lines()
                    .filter(|l| l.contains("-id-"))
                    .all(|l| l.contains("mjd-id-0")),
            "{log}"
        );
        let forged = links[0].replacen("mjd-id-", "mjd-id-0", 1).replacen("@", "x@", 1);
        let got = fetch("127.0.0.1", proxy.port, "GET", &forged, &[], h2).await;
        assert_eq!(got.status, 404, "{forged}");
    }
}

/// A form's hidden recipient gets the visitor's ID like any address (a
/// harvester reads the page's source); posted back URL-encoded, the form
/// handler gets the address it wrote, as a FormMail that checks its list of
/// recipients needs, in every field. A body of another type is passed on as
/// it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_post_back_the_address_they_were_written_with() {
    let nginx = Nginx::start(&site());
    let proxy = Proxy::start(nginx.port, "");
    let page = fetch("127.0.0.1", proxy.port, "GET", "/people.html", &[], false).await;
    let page = String::from_utf8(page.body).unwrap();
    let value = page
        .split("name=\"recipient\" value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap();
    assert!(
        value.starts_with("mjd-id-") && value.ends_with("@plover.com"),
        "{page}"
    );
    let encoded = value.replace('@', "%40");
    let form = format!("recipient={encoded}&message=write+to+{encoded}");
    let cases = [
        ("application/x-www-form-urlencoded", form.clone()),
        ("Application/X-WWW-Form-Urlencoded; charset=UTF-8", form.clone()),
        ("text/plain", format!("recipient={value}")),
    ];
    for (ctype, body) in &cases {
        let request = format!(
            "POST /form HTTP/1.1\r\nHost: plover.com\r\nContent-Type: {ctype}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let log = nginx.log_when("form.log", |l| l.lines().count() >= 3);
    let lines: Vec<&str> = log.lines().collect();
    let bare = "recipient=mjd%40plover.com&message=write+to+mjd%40plover.com";
    let want = [
        format!("/form {bare}"),
        format!("/form {bare}"),
        format!("/form recipient={value}"),
    ];
    assert_eq!(lines, want, "{log}");
}

/// A harvester reads headers too: a redirect to `mailto:`, a `Link` or a
/// `Refresh` naming an address get the visitor's ID as a page would, on
/// any response, also one whose body is passed through; a cookie is left
/// as the site set it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_in_response_headers_are_munged() {
    let nginx = Nginx::start(&site());
    let admin = free_port();
    let proxy = Proxy::start(nginx.port, &format!("admin_listen = \"127.0.0.1:{admin}\""));
    let before = metric_at(admin, "addrmunge_addresses_munged_total");
    for h2 in [false, true] {
        let got = fetch("127.0.0.1", proxy.port, "GET", "/contact", &[], h2).await;
        assert_eq!(got.status, 302);
        let location = &got.headers["location"];
        assert!(
            location.starts_with("mailto:mjd-id-") && location.ends_with("@plover.com?subject=Hello"),
            "{location}"
        );
        assert!(
            got.headers["cache-control"].starts_with("private"),
            "{:?}",
            got.headers
        );

        let got = fetch("127.0.0.1", proxy.port, "GET", "/card.png", &[], h2).await;
        assert_eq!(got.body, fs::read(nginx.root.join("image.png")).unwrap());
        assert_eq!(
            got.headers["content-length"], "100000",
            "the body is passed through"
        );
        assert!(
            got.headers["cache-control"].starts_with("private"),
            "{:?}",
            got.headers
        );
        assert_eq!(got.headers["set-cookie"], "owner=mjd@plover.com; Path=/");
        let (link, refresh) = (&got.headers["link"], &got.headers["refresh"]);
        assert!(
            refresh.contains("%40plover.com") && !refresh.contains("mjd%40"),
            "{refresh}"
        );
        let found = munged_addresses(&format!("{location} {link} {refresh}"));
        assert_eq!(found.len(), 3, "{location} {link} {refresh}");
        for v in proxy.decode(&found) {
            assert_eq!(v["status"], "valid", "{v}");
            assert_eq!(v["ip"], "127.0.0.1");
            assert_eq!(v["original"], "mjd@plover.com");
        }
    }
    // Counted as munged, like a page's.
    assert_eq!(metric_at(admin, "addrmunge_addresses_munged_total") - before, 6);
    // Headers without the owner's addresses are as the web server sent them.
    let got = fetch("127.0.0.1", proxy.port, "GET", "/image.png", &[], false).await;
    assert!(!got.headers.contains_key("cache-control"), "{:?}", got.headers);
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

/// A page is compressed once, by the proxy: a browser's navigation is
/// asked of nginx uncompressed, though nginx compresses for proxies, and
/// reaches the browser compressed (gzip from kept stretches unless it
/// weighs zstd higher; zstd when nothing is kept) with its addresses
/// munged; what the proxy does not rewrite (a WebAssembly module) comes
/// from nginx compressed as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_compressed_once_by_the_proxy() {
    let nginx = Nginx::start(&site());
    let proxy = Proxy::start(nginx.port, "");
    let browser = ("accept-encoding", "gzip, deflate, br, zstd");
    let gzip = ("accept-encoding", "gzip, deflate, br");
    let zstd_first = ("accept-encoding", "zstd, gzip;q=0.9");
    let page = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
    let image = ("accept", "image/avif,image/webp,image/*,*/*;q=0.8");
    // The response's Content-Encoding, its text as the client reads it.
    let get = |port: u16, path: &'static str, headers: Vec<(&'static str, &'static str)>| async move {
        let got = fetch("127.0.0.1", port, "GET", path, &headers, false).await;
        let coding = got.headers.get("content-encoding").cloned();
        let plain = String::from_utf8_lossy(&got.decoded()).into_owned();
        (coding, plain, got)
    };
    // nginx compresses for a proxy that asks for it.
    let nginx_gets = |path| {
        get(
            nginx.port,
            path,
            vec![browser, ("via", "1.1 test"), ("host", "127.0.0.1")],
        )
    };
    assert_eq!(nginx_gets("/forms.html").await.0.as_deref(), Some("gzip"));
    // What the proxy asks nginx for: nothing compressed for a page or a
    // stylesheet, what the client takes otherwise.
    let asked = |headers| async { get(proxy.port, "/echo-headers", headers).await.1 };
    for headers in [
        vec![browser, page],
        vec![gzip, ("sec-fetch-dest", "style")],
        vec![page],
    ] {
        let echo = asked(headers.clone()).await;
        assert!(
            echo.starts_with("accept-encoding=identity "),
            "{headers:?}: {echo}"
        );
    }
    let echo = asked(vec![("accept-encoding", "br, gzip, xz"), image]).await;
    assert!(echo.starts_with("accept-encoding=gzip, br "), "{echo}");
    // The page reaches the browser compressed as it takes it, each address
    // munged for it; zstd at equal weights when gzip keeps nothing.
    let whole = Proxy::start(nginx.port, "gzip_cache_bytes = 0");
    let cases = [
        (&proxy, browser, "gzip"),
        (&proxy, gzip, "gzip"),
        (&proxy, zstd_first, "zstd"),
        (&whole, browser, "zstd"),
        (&whole, gzip, "gzip"),
    ];
    for (proxy, accept, want) in cases {
        let (coding, html, got) = get(proxy.port, "/forms.html", vec![accept, page]).await;
        assert_eq!(coding.as_deref(), Some(want), "{accept:?}");
        assert!(got.headers["vary"].contains("Accept-Encoding"));
        let found = munged_addresses(&html);
        assert!(!found.is_empty(), "{html}");
        for v in proxy.decode(&found) {
            assert_eq!(v["ip"], "127.0.0.1", "{v}");
        }
    }
    // The module is nginx's own gzip, passed through.
    let (coding, _, got) = get(proxy.port, "/module.wasm", vec![browser]).await;
    assert_eq!(coding.as_deref(), Some("gzip"));
    assert_eq!(got.body, nginx_gets("/module.wasm").await.2.body);
}

/// A gzipped page is made of stretches compressed for earlier visitors and
/// the visitor's own IDs: a second visitor's copy, read by curl, is the
/// page with its own IDs, and the metrics show the stretches reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_reuses_what_was_compressed_for_earlier_visitors() {
    let nginx = Nginx::start(&site());
    let admin = free_port();
    let proxy = Proxy::start(nginx.port, &format!("admin_listen = \"127.0.0.1:{admin}\""));
    let metric = |name| metric_at(admin, name);
    let original = fetch(
        "127.0.0.1",
        nginx.port,
        "GET",
        "/long.html",
        &[("host", "127.0.0.1")],
        false,
    )
    .await;
    let original = String::from_utf8(original.body).unwrap();
    // The page as sent, each address back to what the web server wrote,
    // and whom the IDs name.
    let unmunged = |page: &str| {
        let found = munged_addresses(page);
        let ips: Vec<String> = proxy.decode(&found).iter().map(|v| v["ip"].to_string()).collect();
        let mut plain = page.to_owned();
        for a in &found {
            let (local, domain) = a.split_once('@').unwrap();
            let base = format!("{}@{domain}", local.split("-id-").next().unwrap());
            plain = plain.replace(a.as_str(), &base);
        }
        (plain, found.len(), ips)
    };
    let gzip = [("accept-encoding", "gzip"), ("accept", "text/html")];
    let first = fetch("127.0.0.1", proxy.port, "GET", "/long.html", &gzip, false).await;
    assert_eq!(first.headers["content-encoding"], "gzip");
    let (page, n, ips) = unmunged(&String::from_utf8(first.decoded()).unwrap());
    assert!(
        page == original && n == 6,
        "{n} addresses; {} bytes, not {}",
        page.len(),
        original.len()
    );
    assert!(ips.iter().all(|ip| ip == "\"127.0.0.1\""), "{ips:?}");
    assert_eq!(metric("addrmunge_gzip_stretches_reused_total"), 0);
    let compressed = metric("addrmunge_gzip_stretches_compressed_total");
    assert!(compressed >= 1, "{compressed}");

    let url = format!("http://127.0.0.1:{}/long.html", proxy.port);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--compressed", "--interface", "127.0.0.2"])
        .args(["-H", "Accept-Encoding: gzip", "-H", "Accept: text/html"])
        .args(["-H", "X-Forwarded-For: 203.0.113.7", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (page, n, ips) = unmunged(&String::from_utf8(out.stdout).unwrap());
    assert!(
        page == original && n == 6,
        "{n} addresses; {} bytes, not {}",
        page.len(),
        original.len()
    );
    assert!(ips.iter().all(|ip| ip == "\"203.0.113.7\""), "{ips:?}");
    // Every stretch, unless the network cut one differently this time.
    let reused = metric("addrmunge_gzip_stretches_reused_total");
    assert!(reused >= 1, "{reused} of {compressed}");
    assert!(metric("addrmunge_gzip_cache_bytes") > 0);
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
    let plain = String::from_utf8(got.decoded()).unwrap();
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

/// A visitor from a network in `[crawlers] ranges` (a search engine's
/// published JSON) gets crawler IDs and no bait page, even with a
/// harvester's User-Agent; everyone else gets visitor IDs and the bait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawlers_get_crawler_ids_and_no_bait() {
    let nginx = Nginx::start(&site());
    let dir = tempfile::tempdir().unwrap();
    let ranges = dir.path().join("googlebot.json");
    fs::write(&ranges, r#"{"prefixes": [{"ipv4Prefix": "127.0.0.5/32"}]}"#).unwrap();
    let proxy = Proxy::start(
        nginx.port,
        &format!(
            "\n[crawlers]\nranges = [\"{}\"]\n[bait]\npath = \"/staff-archive/\"\n",
            ranges.display()
        ),
    );
    let check = proxy.inst.cli_ok(&["check-config"]);
    assert!(
        check.contains("crawlers:  1 network of search engines' crawlers get crawler IDs"),
        "{check}"
    );
    let harvester_agent = [("user-agent", "EmailCollector/1.0")];
    for (from, kind) in [("127.0.0.5", "crawler"), ("127.0.0.6", "visitor")] {
        let got = fetch(from, proxy.port, "GET", "/forms.html", &[], false).await;
        let found = munged_addresses(&String::from_utf8(got.body).unwrap());
        assert!(!found.is_empty());
        for v in proxy.decode(&found) {
            assert_eq!(
                (v["kind"].as_str(), v["ip"].as_str()),
                (Some(kind), Some(from)),
                "{v}"
            );
        }
        let bait = fetch(from, proxy.port, "GET", "/staff-archive/", &[], false).await;
        assert_eq!(bait.status == 200, kind == "visitor", "{from}: {}", bait.status);
    }
    // The crawler's User-Agent is not judged: its network says who it is.
    let got = fetch(
        "127.0.0.5",
        proxy.port,
        "GET",
        "/forms.html",
        &harvester_agent,
        false,
    )
    .await;
    let found = munged_addresses(&String::from_utf8(got.body).unwrap());
    assert!(proxy.decode(&found).iter().all(|v| v["kind"] == "crawler"));
}

/// A visitor whose User-Agent claims to be Googlebot is looked up in a
/// real DNS server (dnsmasq on loopback): served at once as a visitor,
/// then, once its reverse name (an engine's) resolves back to it, given
/// crawler IDs and no bait. A reverse name that resolves elsewhere, one
/// that is not an engine's, or none at all leave a visitor; so does the
/// crawler's own address without the claim. The visitors come through the
/// trusted balancer (127.0.0.2) with public addresses: resolvers answer
/// any 127/8 reverse name with "localhost" (RFC 6761).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_crawlers_are_verified_in_the_dns() {
    let dns = common::dns::Dns::start(&[
        "--host-record=crawl-66-249-66-1.googlebot.com,66.249.66.1",
        "--ptr-record=2.66.249.66.in-addr.arpa,crawl-fake.googlebot.com",
        "--address=/crawl-fake.googlebot.com/66.249.66.99",
        "--host-record=spoof.example.net,203.0.113.11",
    ]);
    let nginx = Nginx::start(&site());
    let admin = free_port();
    let proxy = Proxy::start(
        nginx.port,
        &format!(
            "admin_listen = \"127.0.0.1:{admin}\"\n[crawlers]\nnameservers = [\"127.0.0.1:{}\"]\n[bait]\npath = \"/staff-archive/\"\n",
            dns.port
        ),
    );
    const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let get = |visitor: &str, agent: &str, path: &str| {
        let headers = [
            ("x-forwarded-for", visitor.to_owned()),
            ("user-agent", agent.to_owned()),
        ];
        let (port, path) = (proxy.port, path.to_owned());
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            fetch("127.0.0.2", port, "GET", &path, &h, false).await
        }
    };
    let kind_for = |visitor: &'static str, agent: &'static str| {
        let (proxy, get) = (&proxy, &get);
        async move {
            let got = get(visitor, agent, "/forms.html").await;
            let found = munged_addresses(&String::from_utf8(got.body).unwrap());
            let decoded = proxy.decode(&found);
            assert!(decoded.iter().all(|v| v["ip"] == visitor), "{decoded:?}");
            let kinds: Vec<&str> = decoded.iter().map(|v| v["kind"].as_str().unwrap()).collect();
            assert!(
                !kinds.is_empty() && kinds.iter().all(|k| *k == kinds[0]),
                "{kinds:?}"
            );
            kinds[0].to_owned()
        }
    };
    // Not held up by the DNS: the first answer is a visitor's.
    assert_eq!(kind_for("66.249.66.1", GOOGLEBOT).await, "visitor");
    let start = Instant::now();
    while kind_for("66.249.66.1", GOOGLEBOT).await != "crawler" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never verified: {}",
            proxy.inst.log("proxy")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bait = get("66.249.66.1", GOOGLEBOT, "/staff-archive/").await;
    assert_ne!(bait.status, 200, "a crawler is never shown the bait");
    assert_eq!(
        kind_for("66.249.66.1", "curl/8").await,
        "visitor",
        "no claim, no crawler IDs"
    );
    let others = ["66.249.66.2", "203.0.113.11", "203.0.113.12"];
    for from in others {
        kind_for(from, GOOGLEBOT).await;
    }
    let metric = |name: &'static str| {
        let (_, text) = common::daemon::get(admin, "/metrics", &[]);
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let start = Instant::now();
    while metric("addrmunge_crawlers_refuted_total") < 3 {
        assert!(start.elapsed() < Duration::from_secs(10), "never refuted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for from in others {
        assert_eq!(kind_for(from, GOOGLEBOT).await, "visitor", "{from}");
    }
    assert_eq!(metric("addrmunge_crawlers_verified_total"), 1);
    assert_eq!(metric("addrmunge_crawler_lookups_failed_total"), 0);
    // trace points at the address, never at the crawler.
    let got = get("66.249.66.1", GOOGLEBOT, "/forms.html").await;
    let found = munged_addresses(&String::from_utf8(got.body).unwrap());
    let trace = proxy.inst.cli_ok(&["trace", &found[0]]);
    assert!(trace.contains("search engine's crawler"), "{trace}");
    assert!(!trace.contains("--ip 66.249.66.1"), "{trace}");
}

/// A script that builds the address from the page's variables, writes it
/// from character codes, turns it back from ROT13 or undoes Cloudflare's
/// obfuscation, as the e-mail
/// "protection" snippets of older sites do: Chromium runs it on the proxied page and shows the munged
/// address, made for the visitor, and nowhere the bare one.
#[test]
fn chromium_shows_the_address_a_script_joins_from_variables_munged() {
    let root = tempfile::tempdir().unwrap();
    let link = r#"<a href="mailto:mjd@plover.com">mjd@plover.com</a>"#;
    let codes: Vec<String> = link.bytes().map(|b| b.to_string()).collect();
    // Cloudflare's obfuscation: a key, then the address XORed with it.
    let key = 0x3d;
    let cloudflare: String = std::iter::once(key)
        .chain(b"mjd@plover.com".iter().map(|b| b ^ key))
        .map(|b| format!("{b:02x}"))
        .collect();
    let page = r#"<!doctype html>
<html><body>
<p id="a"></p><p id="b"></p><p id="c"></p><p id="d"></p><p id="e"></p><p id="f"></p>
<p id="g"><script>document.write(atob("BASE64"));</script></p>
<p><a id="r" href="znvygb:zwq@cybire.pbz">mail</a></p>
<p><a href="/cdn-cgi/l/email-protection#CFHEX"><span class="__cf_email__" data-cfemail="CFHEX">[email&#160;protected]</span></a></p>
<script>
var user = "mjd";
var site = "plover.com";
document.getElementById("a").innerHTML = '<a href="mailto:' + user + '@' + site + '">' + user + '@' + site + '</a>';
</script>
<script>
const contact = {name: 'mjd', host: 'plover.com'};
document.getElementById("b").textContent = `${contact.name}@${contact.host}`;
var u = 'mjd', dom = 'plover', tld = 'com';
document.getElementById("c").textContent = u + '@' + dom + '.' + tld;
var parts = ["mjd", "plover.com"];
document.getElementById("d").textContent = parts.join("@");
</script>
<script>
document.getElementById("e").innerHTML = String.fromCharCode(CODES);
document.getElementById("f").textContent = parts.join(String.fromCharCode(64));
var r = document.getElementById("r");
r.href = r.getAttribute("href").replace(/[a-z]/g, function (c) {
  return String.fromCharCode((c <= "m" ? 13 : -13) + c.charCodeAt(0));
});
// What Cloudflare's email-decode script does.
function cf(h) {
  var k = parseInt(h.substr(0, 2), 16), s = "";
  for (var i = 2; i < h.length; i += 2) s += String.fromCharCode(parseInt(h.substr(i, 2), 16) ^ k);
  return s;
}
document.querySelectorAll("a[href*='/email-protection#']").forEach(function (a) {
  a.href = "mailto:" + cf(a.getAttribute("href").split('#')[1]);
});
document.querySelectorAll("[data-cfemail]").forEach(function (e) {
  e.replaceWith(cf(e.getAttribute("data-cfemail")));
});
</script>
</body></html>
"#
    .replace("CODES", &codes.join(", "))
    .replace("CFHEX", &cloudflare)
    // The `@` the third byte of its group: every character after the ID,
    // whatever its length, written anew.
    .replace("BASE64", &data_encoding::BASE64.encode(format!("Or, {link}").as_bytes()));
    fs::write(root.path().join("vars.html"), page).unwrap();
    let nginx = Nginx::serve(root.path());
    let proxy = Proxy::start(nginx.port, "");
    let url = format!("http://127.0.0.1:{}/vars.html", proxy.port);
    let dom = common::chromium::chromium(&["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(!dom.contains("mjd@plover.com"), "a bare address shown: {dom}");
    // What the scripts wrote: the link's target and text, the template's,
    // the pieces' and the array's, the coded link's target and text, the
    // array joined by a coded `@`, the base64 link's target and text, the
    // ROT13 link's target turned back, and Cloudflare's link target and
    // text decoded.
    let shown = dom
        .split("<script>")
        .map(|s| s.split_once("</script>").map_or(s, |(_, after)| after));
    let found = munged_addresses(&shown.collect::<String>());
    assert_eq!(found.len(), 13, "{dom}");
    for v in proxy.decode(&found) {
        assert_eq!(
            (v["status"].as_str(), v["kind"].as_str(), v["ip"].as_str()),
            (Some("valid"), Some("visitor"), Some("127.0.0.1")),
            "{v}"
        );
    }
}
