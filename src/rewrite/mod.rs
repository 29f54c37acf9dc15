//! The body pipeline of a rewritten response: decompress -> scan -> compress,
//! chunk by chunk, with memory bounded by the scanner's carry and the
//! codecs' windows, never by the size of the page.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::{GzDecoder, GzEncoder, ZlibDecoder};

pub mod charset;

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

    /// Decodes the last chunk and ends the stream: everything not yet
    /// handed over, in one buffer.
    fn finish_with(mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match &mut self {
            Decoder::Gzip(d) => d.write_all(data)?,
            Decoder::Deflate(d) => d.write_all(data)?,
            Decoder::Brotli(d) => d.write_all(data)?,
            Decoder::Zstd(d) => d.write_all(data)?,
        }
        self.finish()
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

/// The munged form of each base address, computed once per visitor, day
/// and kind: a bounded LRU of visitor-days, so a crawler walking many pages
/// costs one token per address, and a flood of visitors evicts the least
/// recent. A response takes its visitor-day's [`Tokens`] once, then looks
/// addresses up there by `&str`, without building a key per address.
pub struct TokenCache {
    map: Mutex<lru::LruCache<VisitorDay, Arc<Tokens>>>,
}

/// Visitor, day and kind.
type VisitorDay = (Visitor, Day, Kind);

/// Visitor-days kept. Each holds the tokens of the addresses that visitor
/// was served (about 100 bytes each, at most [`TOKENS_MAX`]).
const CACHE_MAX: usize = 10_000;

/// Tokens kept per visitor-day: a page full of distinct addresses (a list
/// archive) must not grow one entry without bound; beyond this they are
/// made on every use.
const TOKENS_MAX: usize = 1024;

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::with_capacity(CACHE_MAX)
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("len", &self.len()).finish()
    }
}

impl TokenCache {
    /// A cache of at most `n` visitor-days (at least 1).
    pub fn with_capacity(n: usize) -> TokenCache {
        let n = std::num::NonZeroUsize::new(n.max(1)).expect("at least 1");
        TokenCache {
            map: Mutex::new(lru::LruCache::new(n)),
        }
    }

    /// Visitor-days held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every token (after the keys changed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<VisitorDay, Arc<Tokens>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tokens of the visitor-day `claims` names.
    pub fn tokens(&self, claims: &Claims) -> Arc<Tokens> {
        let key = (
            claims.visitor.unwrap_or(Visitor::V4([0, 0, 0, 0].into())),
            claims.day,
            claims.kind,
        );
        Arc::clone(self.lock().get_or_insert(key, || Arc::new(Tokens::default())))
    }

    /// The token for `base` under `claims`, from the cache or made now.
    pub fn get(&self, keys: &KeyRing, claims: &Claims, base: &str) -> Arc<str> {
        self.tokens(claims).get(keys, claims, base)
    }
}

/// One visitor-day's tokens, by base address.
#[derive(Default)]
pub struct Tokens(Mutex<HashMap<Box<str>, Arc<str>>>);

impl Tokens {
    /// The token for `base` under `claims` (which must be this visitor-day's).
    pub fn get(&self, keys: &KeyRing, claims: &Claims, base: &str) -> Arc<str> {
        let lock = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = lock().get(base) {
            return Arc::clone(t);
        }
        // Made outside the lock: two requests may both make it; same bytes.
        let t: Arc<str> = keys.encode(base, "", claims).into();
        let mut map = lock();
        if map.len() < TOKENS_MAX {
            map.insert(base.into(), Arc::clone(&t));
        }
        t
    }
}

/// Writes `SEP TOKEN` for one visitor, day and kind.
pub struct VisitorMunger {
    keys: Arc<KeyRing>,
    separator: String,
    claims: Claims,
    tokens: Arc<Tokens>,
    domain: Option<String>,
    base: String,
}

impl VisitorMunger {
    /// A munger for one response.
    pub fn new(keys: Arc<KeyRing>, separator: &str, claims: Claims, cache: Arc<TokenCache>) -> VisitorMunger {
        VisitorMunger {
            tokens: cache.tokens(&claims),
            keys,
            separator: separator.to_owned(),
            claims,
            domain: None,
            base: String::new(),
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
        // A reused buffer: no allocation per address once warm.
        self.base.clear();
        self.base.push_str(found.local);
        self.base.push('@');
        self.base.push_str(found.domain);
        let token = self.tokens.get(&self.keys, &self.claims, &self.base);
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

/// Decompress -> (charset) -> (bait link) -> scan -> (charset) -> compress
/// for one response body.
pub struct Pipeline {
    decoder: Option<Decoder>,
    /// A copy of the first bytes (up to 1024) while the charset is not yet
    /// known (see [`charset`]); `None` once it is.
    head: Option<Vec<u8>>,
    /// Bytes held back until the charset is known: from the first ESC on,
    /// since before any ESC an ISO-2022-JP page is plain ASCII and can be
    /// scanned as bytes (so pages do not wait for 1024 bytes to stream).
    pending: Vec<u8>,
    declared: Option<&'static encoding_rs::Encoding>,
    html: bool,
    transcoder: Option<charset::Transcoder>,
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
            head: None,
            pending: Vec::new(),
            declared: None,
            html: false,
            transcoder: None,
            link: None,
            scanner,
            munger,
            encoder: gzip_out.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
            scanned: Vec::new(),
        }
    }

    /// Decides the body's charset as a browser does (byte-order mark, then
    /// `declared` from the `Content-Type`, then for HTML a `<meta>` in the
    /// first 1024 bytes) and transcodes UTF-16 and ISO-2022-JP bodies.
    pub fn with_charset(mut self, declared: Option<&'static encoding_rs::Encoding>, html: bool) -> Pipeline {
        self.head = Some(Vec::new());
        self.declared = declared;
        self.html = html;
        self
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
        self.feed(data, false)
    }

    /// Feeds the last chunk and ends the body: [`push`](Self::push) then
    /// [`finish`](Self::finish) in one buffer, so the last frame of a page
    /// is not copied again to join the tail.
    pub fn push_last(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        self.feed(data, true)
    }

    /// Ends the body; returns the rest.
    pub fn finish(&mut self) -> std::io::Result<Bytes> {
        self.feed(&[], true)
    }

    fn feed(&mut self, data: &[u8], last: bool) -> std::io::Result<Bytes> {
        let plain = if last {
            self.decoder.take().map(|d| d.finish_with(data)).transpose()?
        } else {
            match &mut self.decoder {
                None => None,
                Some(d) => Some(d.push(data)?),
            }
        };
        let plain = plain.as_deref().unwrap_or(data);
        let Some(head) = &mut self.head else {
            return self.rest(plain, last);
        };
        let room = charset::SNIFF.saturating_sub(head.len()).min(plain.len());
        head.extend_from_slice(&plain[..room]);
        // A byte-order mark needs 3 bytes; a <meta> only matters for HTML
        // whose header names no charset, and is looked for in 1024 bytes.
        // At the end, what was seen is all there is.
        let seen = head.len();
        let sniffing_meta = self.html && self.declared.is_none();
        let bom = seen >= 3 && charset::from_bom(head).is_some();
        let meta_found = sniffing_meta && seen >= 3 && charset::from_meta(head).is_some();
        let decided = last || (seen >= 3 && (bom || !sniffing_meta || meta_found || seen >= charset::SNIFF));
        if decided {
            self.decide();
        }
        // What may go on now: everything once decided; while undecided only
        // what comes before the first ESC (ASCII-safe), and nothing before
        // the byte-order mark could be seen. Bytes are copied only when some
        // are already held.
        let cut = if decided {
            plain.len()
        } else if seen < 3 {
            0
        } else {
            memchr::memchr(0x1b, plain).unwrap_or(plain.len())
        };
        if self.pending.is_empty() {
            self.pending.extend_from_slice(&plain[cut..]);
            return self.rest(&plain[..cut], last);
        }
        self.pending.extend_from_slice(plain);
        let cut = if decided {
            self.pending.len()
        } else if seen < 3 {
            0
        } else {
            memchr::memchr(0x1b, &self.pending).unwrap_or(self.pending.len())
        };
        let ready: Vec<u8> = self.pending.drain(..cut).collect();
        self.rest(&ready, last)
    }

    /// Settles the charset from the first bytes.
    fn decide(&mut self) {
        let head = self.head.take().unwrap_or_default();
        let enc = charset::from_bom(&head).or(self.declared).or_else(|| {
            if self.html {
                charset::from_meta(&head[..head.len().min(charset::SNIFF)])
            } else {
                None
            }
        });
        if let Some(e) = enc.filter(|e| charset::needs_transcoding(e)) {
            self.transcoder = Some(charset::Transcoder::new(e));
        }
    }

    /// Everything after decompression and sniffing.
    fn rest(&mut self, data: &[u8], last: bool) -> std::io::Result<Bytes> {
        let decoded = self.transcoder.as_mut().map(|t| t.decode(data, last));
        let mut input = decoded.as_deref().unwrap_or(data);
        let linked;
        if let Some(l) = &mut self.link {
            let mut v = l.push(input)?;
            if last {
                v.extend(l.finish()?);
            }
            linked = v;
            input = &linked;
        }
        self.scanned.clear();
        // Room for the chunk and a few tokens: no regrowth (and copy) while scanning.
        self.scanned.reserve(input.len() + input.len() / 16 + 256);
        self.scanner.feed(input, &mut self.scanned, &mut self.munger);
        if last {
            self.scanner.finish(&mut self.scanned, &mut self.munger);
        }
        if let Some(t) = &mut self.transcoder {
            self.scanned = t.encode(&self.scanned, last);
        }
        self.encode(last)
    }

    fn encode(&mut self, last: bool) -> std::io::Result<Bytes> {
        match &mut self.encoder {
            // Hand the buffer over instead of copying it; the next chunk
            // allocates its own.
            None => Ok(Bytes::from(std::mem::take(&mut self.scanned))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Glob, Protect, Protection};
    use crate::scan::Matcher;

    fn pipeline(declared: Option<&'static encoding_rs::Encoding>) -> Pipeline {
        coded_pipeline(declared, Coding::Identity, false)
    }

    fn coded_pipeline(
        declared: Option<&'static encoding_rs::Encoding>,
        from: Coding,
        gzip_out: bool,
    ) -> Pipeline {
        let m = Matcher::new(Arc::new(Protection::new(
            vec![Protect {
                domain: "plover.com".into(),
                local: Glob::new("*").unwrap(),
                exempt: vec![],
                deliver_to: None,
            }],
            "-id-",
        )));
        let claims = Claims::visit(
            Kind::Visitor,
            Day::from_number(20_000),
            "192.0.2.1".parse().unwrap(),
        );
        let munger = VisitorMunger::new(
            Arc::new(KeyRing::new(&[[1u8; 32]])),
            "-id-",
            claims,
            Arc::new(TokenCache::default()),
        );
        Pipeline::new(m.scanner(), munger, from, gzip_out).with_charset(declared, true)
    }

    fn run(p: &mut Pipeline, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            out.extend_from_slice(&p.push(part).unwrap());
        }
        out.extend_from_slice(&p.finish().unwrap());
        out
    }

    #[test]
    fn one_visitor_day_holds_a_bounded_number_of_tokens() {
        let keys = KeyRing::new(&[[1u8; 32]]);
        let c = TokenCache::default();
        let claims = Claims::visit(
            Kind::Visitor,
            Day::from_number(20_000),
            "192.0.2.1".parse().unwrap(),
        );
        let tokens = c.tokens(&claims);
        for i in 0..TOKENS_MAX + 100 {
            let base = format!("user{i}@plover.com");
            // Beyond the bound tokens are still right, only not kept.
            assert_eq!(
                *tokens.get(&keys, &claims, &base),
                *keys.encode(&base, "", &claims)
            );
        }
        assert_eq!(tokens.0.lock().unwrap().len(), TOKENS_MAX);
    }

    #[test]
    fn the_token_cache_is_a_bounded_lru() {
        let keys = KeyRing::new(&[[1u8; 32]]);
        let c = TokenCache::with_capacity(2);
        let day = Day::from_number(20_000);
        let claims = |ip: &str| Claims::visit(Kind::Visitor, day, ip.parse().unwrap());
        let a = c.get(&keys, &claims("192.0.2.1"), "a@plover.com");
        c.get(&keys, &claims("192.0.2.2"), "a@plover.com");
        // Touch the first, then a third entry evicts the second, not the first.
        assert!(Arc::ptr_eq(
            &a,
            &c.get(&keys, &claims("192.0.2.1"), "a@plover.com")
        ));
        c.get(&keys, &claims("192.0.2.3"), "a@plover.com");
        assert_eq!(c.len(), 2);
        assert!(Arc::ptr_eq(
            &a,
            &c.get(&keys, &claims("192.0.2.1"), "a@plover.com")
        ));
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn charsets_are_settled_the_same_in_any_chunking() {
        let page = "<html><head><title>x</title><meta charset=iso-2022-jp></head><body>日本 mjd@plover.com 語</body></html>";
        let (jis, _, _) = encoding_rs::ISO_2022_JP.encode(page);
        let whole = run(&mut pipeline(None), &[&jis]);
        let (text, bad) = encoding_rs::ISO_2022_JP.decode_without_bom_handling(&whole);
        assert!(
            !bad && text.contains("mjd-id-") && text.contains("日本"),
            "{text}"
        );
        for cut in 0..jis.len() {
            let got = run(&mut pipeline(None), &[&jis[..cut], &jis[cut..]]);
            assert_eq!(got, whole, "cut at {cut}");
        }
        // Plain ASCII HTML streams before 1024 bytes arrive.
        let mut p = pipeline(None);
        let first = p.push(b"<p>write to mjd@plover.com today, please</p>").unwrap();
        assert!(String::from_utf8_lossy(&first).contains("mjd-id-"), "{first:?}");
    }

    fn compress(coding: Coding, data: &[u8]) -> Vec<u8> {
        match coding {
            Coding::Identity => data.to_vec(),
            Coding::Gzip => {
                let mut e = GzEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::Brotli => {
                let mut out = Vec::new();
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(data).unwrap();
                drop(e);
                out
            }
            Coding::Zstd => zstd::encode_all(data, 3).unwrap(),
        }
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut d = GzDecoder::new(Vec::new());
        d.write_all(data).unwrap();
        d.finish().unwrap()
    }

    #[test]
    fn the_last_chunk_with_the_end_gives_what_push_then_finish_gives() {
        let body = format!("<p>{}</p>", "Lorem ipsum, write to mjd@plover.com. ".repeat(400));
        let jis = format!("<meta charset=iso-2022-jp><p>日本 {body}</p>");
        let (jis, _, _) = encoding_rs::ISO_2022_JP.encode(&jis);
        let mut utf16: Vec<u8> = vec![0xff, 0xfe];
        utf16.extend(body.encode_utf16().flat_map(u16::to_le_bytes));
        for (page, declared) in [
            (body.as_bytes().to_vec(), Some(encoding_rs::UTF_8)),
            (body.as_bytes().to_vec(), None),
            (jis.to_vec(), None),
            (utf16, None),
            // Short: undecided (no byte-order mark, no <meta>) when the end comes.
            (b"ok".to_vec(), None),
            (
                encoding_rs::ISO_2022_JP.encode("日本 mjd@plover.com").0.to_vec(),
                None,
            ),
        ] {
            let munged = if page.len() < 100 {
                u64::from(page.len() > 2)
            } else {
                400
            };
            for coding in [
                Coding::Identity,
                Coding::Gzip,
                Coding::Deflate,
                Coding::Brotli,
                Coding::Zstd,
            ] {
                let wire = compress(coding, &page);
                for gzip_out in [false, true] {
                    for cut in
                        [0, 1, 2, 700, wire.len() / 2, wire.len() - 1, wire.len()].map(|c| c.min(wire.len()))
                    {
                        let (a, b) = wire.split_at(cut);
                        let mut p = coded_pipeline(declared, coding, gzip_out);
                        let want = run(&mut p, &[a, b]);
                        let mut p = coded_pipeline(declared, coding, gzip_out);
                        let mut got = p.push(a).unwrap().to_vec();
                        got.extend_from_slice(&p.push_last(b).unwrap());
                        let (want, got) = if gzip_out {
                            (gunzip(&want), gunzip(&got))
                        } else {
                            (want, got)
                        };
                        assert!(got == want, "{coding:?} gzip_out={gzip_out} cut at {cut}");
                        assert_eq!(p.munged(), munged, "{coding:?} cut at {cut}");
                    }
                }
            }
        }
    }
}
