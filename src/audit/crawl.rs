//! Fetching a site the way a harvester does: from the start URLs, every
//! same-origin link and script a page names (`href` and `src`, read by
//! pattern as harvesters do), breadth first, bounded in depth, pages and
//! bytes, politely (a few requests at once, a delay between them, and
//! robots.txt when asked). Optionally each HTML page again as headless
//! Chromium leaves it after its scripts ran.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use regex::Regex;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use url::Url;

use crate::rewrite::charset;
use crate::rewrite::codec::{Coding, Decoder};

/// How far and how fast to go.
#[derive(Debug, Clone)]
pub struct Options {
    /// Links followed from a start page, at most.
    pub depth: u32,
    /// Pages (and scripts) fetched, at most.
    pub max_pages: usize,
    /// Requests at once.
    pub concurrency: usize,
    /// Pause after each request, per worker.
    pub delay: Duration,
    /// Obey robots.txt's `Disallow` for `User-agent: *`.
    pub robots: bool,
    /// The largest body read, coded or decoded: a larger one is not read,
    /// and its page says so.
    pub max_body: usize,
    /// Paths never fetched (the bait page: it would catch the auditor).
    pub skip: Vec<String>,
    /// A header sent with every request (the proxy's audit mark).
    pub mark: Option<(HeaderName, HeaderValue)>,
    /// Extra CA certificates (PEM) for HTTPS.
    pub ca: Option<PathBuf>,
    /// Headless Chromium to render HTML pages with.
    pub render: Option<PathBuf>,
    /// Per request.
    pub timeout: Duration,
}

/// One fetched page or script.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where.
    pub url: Url,
    /// The HTTP status.
    pub status: u16,
    /// Its media type (`text/html`), lowercase, without parameters.
    pub media_type: String,
    /// The body as text.
    pub body: String,
    /// The DOM after scripts ran (`--render`, HTML only).
    pub rendered: Option<String>,
    /// What went wrong fetching or rendering it, if anything.
    pub problem: Option<String>,
    /// Who the proxy took the auditor for (its answer to the audit's
    /// mark): the visitor every munged address here must be made for.
    pub visitor: Option<String>,
}

/// One answer, read.
struct Got {
    status: u16,
    media_type: String,
    body: String,
    visitor: Option<String>,
    /// The body went on past the limit: only its start was read.
    cut: bool,
}

/// What a fetch failed on, for the report.
type Problem = String;

/// Extensions of files no harvester reads addresses from.
const BINARY: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "avif", "ico", "bmp", "woff", "woff2", "ttf", "otf", "eot", "pdf",
    "zip", "gz", "tgz", "bz2", "xz", "zst", "mp3", "mp4", "webm", "ogg", "wav", "mov", "exe", "dmg", "iso",
];

static LINK: LazyLock<Regex> = LazyLock::new(|| {
    // An attribute, not a script's `a.href = …`.
    Regex::new(r#"(?i)[\s"'/](?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'<>()]+))"#)
        .expect("a valid pattern")
});

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// A crawl under way.
pub struct Crawl {
    client: Client<Https, Empty<Bytes>>,
    opts: Options,
    origins: Vec<url::Origin>,
    queue: VecDeque<(Url, u32)>,
    seen: HashSet<Url>,
    disallowed: Vec<(url::Origin, Vec<String>)>,
    fetched: usize,
}

impl Crawl {
    /// A crawl of the sites of `starts`.
    pub fn new(starts: &[Url], opts: Options) -> Result<Crawl, Problem> {
        let tls = tls_config(opts.ca.as_ref())?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let mut c = Crawl {
            client,
            opts,
            origins: starts.iter().map(Url::origin).collect(),
            queue: VecDeque::new(),
            seen: HashSet::new(),
            disallowed: Vec::new(),
            fetched: 0,
        };
        for u in starts {
            c.enqueue(u.clone(), 0);
        }
        Ok(c)
    }

    /// Pages fetched so far, and waiting.
    pub fn progress(&self) -> (usize, usize) {
        (self.fetched, self.queue.len())
    }

    /// Reads robots.txt of each origin (when asked to obey it).
    pub async fn read_robots(&mut self) {
        if !self.opts.robots {
            return;
        }
        for origin in self.origins.clone() {
            let Ok(url) = Url::parse(&origin.ascii_serialization()).and_then(|u| u.join("/robots.txt"))
            else {
                continue;
            };
            if let Ok(got) = self.get(&url).await
                && got.status == 200
            {
                self.disallowed.push((origin, disallowed(&got.body)));
            }
        }
    }

    /// The next few pages, fetched at once (at most `concurrency`); empty
    /// when the crawl is done.
    pub async fn next_batch(&mut self) -> Vec<Page> {
        let mut batch = Vec::new();
        while batch.len() < self.opts.concurrency.max(1) && self.fetched < self.opts.max_pages {
            let Some(item) = self.queue.pop_front() else { break };
            self.fetched += 1;
            batch.push(item);
        }
        // Fetched together: each waits on the network, not on the others.
        let pages = join_all(batch.iter().map(|(u, _)| self.fetch(u.clone()))).await;
        for ((_, depth), page) in batch.iter().zip(&pages) {
            if page.media_type == "text/html" && *depth < self.opts.depth {
                for link in links(&page.url, &page.body) {
                    self.enqueue(link, depth + 1);
                }
            }
        }
        if !pages.is_empty() {
            tokio::time::sleep(self.opts.delay).await;
        }
        pages
    }

    fn enqueue(&mut self, mut url: Url, depth: u32) {
        url.set_fragment(None);
        let ext = url
            .path()
            .rsplit('/')
            .next()
            .and_then(|f| f.rsplit_once('.'))
            .map(|(_, e)| e.to_ascii_lowercase());
        let wanted = self.origins.contains(&url.origin())
            && !ext.is_some_and(|e| BINARY.contains(&e.as_str()))
            && !self.opts.skip.iter().any(|s| url.path().starts_with(s.as_str()))
            && !self.disallowed.iter().any(|(o, rules)| {
                *o == url.origin() && rules.iter().any(|r| url.path().starts_with(r.as_str()))
            });
        if wanted && self.seen.insert(url.clone()) {
            self.queue.push_back((url, depth));
        }
    }

    async fn fetch(&self, url: Url) -> Page {
        let (got, mut problem) = match self.get(&url).await {
            Ok(got) if got.cut => {
                let mib = self.opts.max_body >> 20;
                let why = format!("longer than {mib} MiB: only the first {mib} MiB were audited");
                (got, Some(why))
            }
            Ok(got) => (got, None),
            Err(e) => {
                let none = Got {
                    status: 0,
                    media_type: String::new(),
                    body: String::new(),
                    visitor: None,
                    cut: false,
                };
                (none, Some(e))
            }
        };
        let Got {
            status,
            media_type,
            body,
            visitor,
            ..
        } = got;
        let mut rendered = None;
        if let Some(chromium) = self.opts.render.as_ref().filter(|_| media_type == "text/html") {
            match render(chromium, &url, self.opts.timeout).await {
                Ok(dom) => rendered = Some(dom),
                Err(e) => problem = Some(format!("rendering: {e}")),
            }
        }
        Page {
            url,
            status,
            media_type,
            body,
            rendered,
            problem,
            visitor,
        }
    }

    /// One GET: status, media type, the body decoded to text, and who the
    /// proxy says the auditor is.
    async fn get(&self, url: &Url) -> Result<Got, Problem> {
        let mut req = hyper::Request::get(url.as_str())
            .header(
                header::USER_AGENT,
                concat!("addrmunge-audit/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd");
        if let Some((name, value)) = &self.opts.mark {
            req = req.header(name, value);
        }
        let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.opts.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {:?}", self.opts.timeout))?
            .map_err(|e| {
                format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                )
            })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let value = |h: header::HeaderName| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let content_type = value(header::CONTENT_TYPE);
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        // Raw bytes are bounded too: a coded body expands at most so far.
        let limit = self.opts.max_body;
        let (raw, raw_cut) = tokio::time::timeout(self.opts.timeout, read_up_to(resp.into_body(), limit))
            .await
            .map_err(|_| format!("the body took longer than {:?}", self.opts.timeout))?
            .map_err(|e| format!("reading the body: {e}"))?;
        let coding = Coding::parse(Some(&value(header::CONTENT_ENCODING)))
            .ok_or_else(|| format!("unknown Content-Encoding {:?}", value(header::CONTENT_ENCODING)))?;
        let (bytes, decoded_cut) = decoded(coding, &raw, limit)?;
        let visitor = Some(value(header::HeaderName::from_static(
            crate::proxy::AUDIT_VISITOR_HEADER,
        )))
        .filter(|v| !v.is_empty());
        Ok(Got {
            status,
            media_type,
            body: text(&bytes, &content_type),
            visitor,
            cut: raw_cut || decoded_cut,
        })
    }
}

/// Up to `limit` bytes of `body`, and whether it had more: a page too big
/// to read whole is still audited as far as it was read.
async fn read_up_to(mut body: hyper::body::Incoming, limit: usize) -> Result<(Vec<u8>, bool), hyper::Error> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        let room = limit - out.len();
        if data.len() > room {
            out.extend_from_slice(&data[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&data);
    }
    Ok((out, false))
}

/// The body, decoded from its Content-Encoding, at most `limit` bytes, and
/// whether it decoded to more.
fn decoded(coding: Coding, raw: &[u8], limit: usize) -> Result<(Vec<u8>, bool), Problem> {
    let Some(mut d) = Decoder::new(coding).map_err(|e| e.to_string())? else {
        return Ok((raw.to_vec(), false));
    };
    // One byte past the limit tells whether the body went on.
    let wanted = limit + 1;
    let mut out = Vec::new();
    let mut input = raw;
    while !input.is_empty() && out.len() < wanted {
        let n = d.step(input, &mut out).map_err(|e| e.to_string())?;
        input = &input[n..];
    }
    while out.len() < wanted && !d.finish_step(&mut out).map_err(|e| e.to_string())? {}
    let cut = out.len() > limit;
    out.truncate(limit);
    Ok((out, cut))
}

/// The body as text in the charset a browser settles on (its BOM,
/// Content-Type or meta, or the guess from its first bytes), read as the
/// proxy reads it: well-formed UTF-8 in a single-byte page as UTF-8.
fn text(bytes: &[u8], content_type: &str) -> String {
    let declared = charset::from_content_type(content_type);
    let enc =
        charset::settle(bytes, declared, true, bytes.len() <= charset::SNIFF).unwrap_or(encoding_rs::UTF_8);
    match String::from_utf8(charset::decode_whole(enc, bytes)) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The same-origin candidates of a page's `href` and `src` attributes.
fn links(base: &Url, body: &str) -> Vec<Url> {
    LINK.captures_iter(body)
        .filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)))
        .map(|m| m.as_str().replace("&amp;", "&"))
        .filter(|l| !l.starts_with("mailto:") && !l.starts_with("javascript:") && !l.starts_with("data:"))
        .filter_map(|l| base.join(&l).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .collect()
}

/// robots.txt's `Disallow` paths for `User-agent: *`.
fn disallowed(robots: &str) -> Vec<String> {
    let mut ours = false;
    let mut out = Vec::new();
    for line in robots.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "user-agent" => ours = v == "*",
            "disallow" if ours && !v.is_empty() => out.push(v.to_owned()),
            _ => {}
        }
    }
    out
}

fn tls_config(ca: Option<&PathBuf>) -> Result<rustls::ClientConfig, Problem> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read the CA certificates in {}: {e}", path.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("{} holds no CA certificate (PEM)", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The DOM of `url` after its scripts ran, from headless Chromium.
async fn render(chromium: &PathBuf, url: &Url, timeout: Duration) -> Result<String, Problem> {
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(chromium);
    // Only the page and what it loads: nothing of Chromium's own.
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
    ])
    .args([
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(concat!(
        "--user-agent=addrmunge-audit/",
        env!("CARGO_PKG_VERSION"),
        " (rendering)"
    ))
    .args(["--virtual-time-budget=3000", "--dump-dom"])
    .arg(url.as_str())
    .stdin(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(timeout + Duration::from_secs(10), cmd.output())
        .await
        .map_err(|_| "Chromium took too long".to_owned())?
        .map_err(|e| format!("cannot run {}: {e}", chromium.display()))?;
    if !out.status.success() {
        return Err(format!("{} exited with {}", chromium.display(), out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_as_a_harvester_reads_them() {
        let base = Url::parse("http://127.0.0.1:8080/a/page.html").unwrap();
        let body = r#"<a href="b.html#x">b</a> <a href='/c?x=1&amp;y=2'>c</a> <script src=/s.js></script>
            <a href="mailto:mjd@plover.com">m</a> <a href="https://elsewhere.example/">e</a>
            <script>a.href = a.getAttribute("href"); img.src=x;</script>"#;
        let got: Vec<String> = links(&base, body).iter().map(Url::to_string).collect();
        assert_eq!(
            got,
            [
                "http://127.0.0.1:8080/a/b.html#x",
                "http://127.0.0.1:8080/c?x=1&y=2",
                "http://127.0.0.1:8080/s.js",
                "https://elsewhere.example/"
            ]
        );
    }

    #[test]
    fn a_body_past_the_limit_is_read_up_to_it_and_said_to_be_cut() {
        use std::io::Write;
        let gzip = |plain: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        };
        let plain = b"<p>mjd@plover.com</p>".repeat(1000);
        let fits = decoded(Coding::Gzip, &gzip(&plain), plain.len()).unwrap();
        assert_eq!(fits, (plain.clone(), false));
        let (start, cut) = decoded(Coding::Gzip, &gzip(&plain), 100).unwrap();
        assert_eq!((&start[..], cut), (&plain[..100], true));
        // A bomb stops expanding at the limit.
        let (start, cut) = decoded(Coding::Gzip, &gzip(&vec![b'x'; 64 << 20]), 1 << 20).unwrap();
        assert_eq!((start.len(), cut), (1 << 20, true));
        assert_eq!(
            decoded(Coding::Identity, b"abc", 3).unwrap(),
            (b"abc".to_vec(), false)
        );
    }

    #[test]
    fn robots_rules_for_everyone() {
        let r = "User-agent: Googlebot\nDisallow: /g\n\nUser-agent: *\nDisallow: /private/ # no\nDisallow:\n";
        assert_eq!(disallowed(r), ["/private/"]);
    }
}
