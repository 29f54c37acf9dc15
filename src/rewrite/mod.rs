//! The body pipeline of a rewritten response: decompress -> scan -> compress,
//! chunk by chunk, with memory bounded by the scanner's carry and the
//! codecs' windows, never by the size of the page.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::{GzDecoder, GzEncoder, ZlibDecoder};

use crate::day::Day;
use crate::scan::{Found, Munger, Scanner};
use crate::token::{Claims, KeyRing, Kind, Visitor};

/// A content coding the pipeline can undo or apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// No coding.
    Identity,
    /// `gzip`.
    Gzip,
    /// `deflate` (zlib-wrapped, as HTTP specifies).
    Deflate,
    /// `br` (brotli).
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Coding {
    /// Reads a `Content-Encoding` value; `None` for codings we cannot undo.
    pub fn parse(value: Option<&str>) -> Option<Coding> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Some(Coding::Identity),
            Some("gzip") | Some("x-gzip") => Some(Coding::Gzip),
            Some("deflate") => Some(Coding::Deflate),
            Some("br") => Some(Coding::Brotli),
            Some("zstd") => Some(Coding::Zstd),
            _ => None,
        }
    }
}

enum Decoder {
    Gzip(GzDecoder<Vec<u8>>),
    Deflate(ZlibDecoder<Vec<u8>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Decoder {
    /// Decodes one chunk; returns what is decoded so far.
    fn push(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        // flush() makes the streaming decoders hand over everything they
        // have decoded, so output never waits for a full internal buffer.
        Ok(match self {
            Decoder::Gzip(d) => {
                d.write_all(data)?;
                std::mem::take(d.get_mut())
            }
            Decoder::Deflate(d) => {
                d.write_all(data)?;
                std::mem::take(d.get_mut())
            }
            Decoder::Brotli(d) => {
                d.write_all(data)?;
                d.flush()?;
                std::mem::take(d.get_mut())
            }
            Decoder::Zstd(d) => {
                d.write_all(data)?;
                d.flush()?;
                std::mem::take(d.get_mut())
            }
        })
    }

    /// Ends the stream; a truncated one is an error.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Decoder::Gzip(d) => d.finish(),
            Decoder::Deflate(d) => d.finish(),
            Decoder::Brotli(mut d) => {
                d.close()?;
                d.into_inner()
                    .map_err(|_| std::io::Error::other("brotli stream ended early"))
            }
            Decoder::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
        }
    }
}

/// Per-visitor-day cache of munged forms, shared by all responses: the
/// token of each base address is computed once per visitor, day and kind.
/// Bounded: when full it is emptied (a day's worth of visitors refills it
/// cheaply; the token costs about 2 µs).
#[derive(Debug, Default)]
pub struct TokenCache {
    map: Mutex<HashMap<CacheKey, Arc<str>>>,
}

/// Visitor, day, kind and base address.
type CacheKey = (Visitor, Day, Kind, String);

const CACHE_MAX: usize = 100_000;

impl TokenCache {
    fn get(&self, keys: &KeyRing, claims: &Claims, base: &str) -> Arc<str> {
        let key = (
            claims.visitor.unwrap_or(Visitor::V4([0, 0, 0, 0].into())),
            claims.day,
            claims.kind,
            base.to_owned(),
        );
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = map.get(&key) {
            return Arc::clone(t);
        }
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        let t: Arc<str> = keys.encode(base, "", claims).into();
        map.insert(key, Arc::clone(&t));
        t
    }
}

/// Writes `SEP TOKEN` for one visitor, day and kind.
pub struct VisitorMunger {
    keys: Arc<KeyRing>,
    separator: String,
    claims: Claims,
    cache: Arc<TokenCache>,
    local: HashMap<String, Arc<str>>,
    domain: Option<String>,
}

impl VisitorMunger {
    /// A munger for one response.
    pub fn new(keys: Arc<KeyRing>, separator: &str, claims: Claims, cache: Arc<TokenCache>) -> VisitorMunger {
        VisitorMunger {
            keys,
            separator: separator.to_owned(),
            claims,
            cache,
            local: HashMap::new(),
            domain: None,
        }
    }

    /// Writes `domain` instead of the protected one (a harvester's `domain` action).
    pub fn with_domain(mut self, domain: Option<String>) -> VisitorMunger {
        self.domain = domain;
        self
    }
}

impl Munger for VisitorMunger {
    fn munge(&mut self, found: &Found<'_>, out: &mut Vec<u8>) {
        let base = format!("{}@{}", found.local, found.domain);
        let token = match self.local.get(&base) {
            Some(t) => Arc::clone(t),
            None => {
                let t = self.cache.get(&self.keys, &self.claims, &base);
                self.local.insert(base, Arc::clone(&t));
                t
            }
        };
        out.extend_from_slice(self.separator.as_bytes());
        out.extend_from_slice(token.as_bytes());
    }

    fn domain(&self, _found: &Found<'_>) -> Option<&str> {
        self.domain.as_deref()
    }
}

/// The one structural HTML edit: a link appended to `<body>` (or to the
/// document, when it has no body element), by lol_html's streaming rewriter.
pub struct LinkInserter {
    // A Mutex only to make the body Sync, as hyper's boxed bodies must be;
    // it is reached through get_mut, never locked.
    rewriter: Option<Mutex<lol_html::send::HtmlRewriter<'static, Sink>>>,
    out: Arc<Mutex<Vec<u8>>>,
}

/// lol_html's output, shared with the pipeline that drains it.
pub struct Sink(Arc<Mutex<Vec<u8>>>);

impl lol_html::OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(chunk);
    }
}

impl LinkInserter {
    /// Appends `html` as the last child of `<body>`.
    pub fn new(html: String) -> LinkInserter {
        use lol_html::html_content::ContentType;
        let out = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (in_body, at_end) = (Arc::clone(&done), done);
        let (html_body, html_end) = (html.clone(), html);
        let settings = lol_html::send::Settings::new_send()
            .append_element_content_handler(lol_html::element!("body", move |el| {
                if !in_body.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    el.append(&html_body, ContentType::Html);
                }
                Ok(())
            }))
            .append_document_content_handler(lol_html::end!(move |end| {
                if !at_end.load(std::sync::atomic::Ordering::Relaxed) {
                    end.append(&html_end, ContentType::Html);
                }
                Ok(())
            }));
        LinkInserter {
            rewriter: Some(Mutex::new(lol_html::send::HtmlRewriter::new(
                settings,
                Sink(Arc::clone(&out)),
            ))),
            out,
        }
    }

    fn drain(&self) -> Vec<u8> {
        std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Rewrites one chunk; returns what lol_html has let through so far.
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        if let Some(r) = &mut self.rewriter {
            r.get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .write(data)
                .map_err(std::io::Error::other)?;
        }
        Ok(self.drain())
    }

    /// Ends the document.
    pub fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        if let Some(r) = self.rewriter.take() {
            r.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .end()
                .map_err(std::io::Error::other)?;
        }
        Ok(self.drain())
    }
}

/// Decompress -> scan -> compress for one response body.
pub struct Pipeline {
    decoder: Option<Decoder>,
    link: Option<LinkInserter>,
    scanner: Scanner,
    munger: VisitorMunger,
    encoder: Option<GzEncoder<Vec<u8>>>,
    scanned: Vec<u8>,
}

impl Pipeline {
    /// A pipeline undoing `from` and gzip-compressing the output when `gzip_out`.
    pub fn new(scanner: Scanner, munger: VisitorMunger, from: Coding, gzip_out: bool) -> Pipeline {
        let decoder = match from {
            Coding::Identity => None,
            Coding::Gzip => Some(Decoder::Gzip(GzDecoder::new(Vec::new()))),
            Coding::Deflate => Some(Decoder::Deflate(ZlibDecoder::new(Vec::new()))),
            Coding::Brotli => Some(Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(
                Vec::new(),
                8192,
            )))),
            Coding::Zstd => Some(Decoder::Zstd(
                zstd::stream::write::Decoder::new(Vec::new()).expect("a zstd decoder context can be created"),
            )),
        };
        Pipeline {
            decoder,
            link: None,
            scanner,
            munger,
            encoder: gzip_out.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
            scanned: Vec::new(),
        }
    }

    /// Also inserts a link into the HTML (the bait link).
    pub fn with_link(mut self, link: LinkInserter) -> Pipeline {
        self.link = Some(link);
        self
    }

    /// Addresses munged so far.
    pub fn munged(&self) -> u64 {
        self.scanner.munged()
    }

    /// Feeds one chunk of the upstream body; returns what can be sent now.
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        let mut plain = match &mut self.decoder {
            None => None,
            Some(d) => Some(d.push(data)?),
        };
        if let Some(l) = &mut self.link {
            plain = Some(l.push(plain.as_deref().unwrap_or(data))?);
        }
        self.scanned.clear();
        self.scanner.feed(
            plain.as_deref().unwrap_or(data),
            &mut self.scanned,
            &mut self.munger,
        );
        self.encode(false)
    }

    /// Ends the body; returns the rest.
    pub fn finish(&mut self) -> std::io::Result<Bytes> {
        self.scanned.clear();
        let mut tail = match self.decoder.take() {
            None => Vec::new(),
            Some(d) => d.finish()?,
        };
        if let Some(mut l) = self.link.take() {
            let mut t = l.push(&tail)?;
            t.extend(l.finish()?);
            tail = t;
        }
        self.scanner.feed(&tail, &mut self.scanned, &mut self.munger);
        self.scanner.finish(&mut self.scanned, &mut self.munger);
        self.encode(true)
    }

    fn encode(&mut self, last: bool) -> std::io::Result<Bytes> {
        match &mut self.encoder {
            None => Ok(Bytes::copy_from_slice(&self.scanned)),
            Some(e) => {
                e.write_all(&self.scanned)?;
                if last {
                    let e = self.encoder.take().expect("checked");
                    Ok(Bytes::from(e.finish()?))
                } else {
                    // A sync flush, so the client gets bytes as the page streams.
                    if !self.scanned.is_empty() {
                        e.flush()?;
                    }
                    Ok(Bytes::from(std::mem::take(e.get_mut())))
                }
            }
        }
    }
}
