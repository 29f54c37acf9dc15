//! The body pipeline of a rewritten response: decompress -> scan -> compress,
//! chunk by chunk, with memory bounded by the scanner's carry and the
//! codecs' windows, never by the size of the page.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

pub mod charset;
pub mod codec;

use codec::Decoder;
pub use codec::{Coding, PIECE};

use crate::day::Day;
use crate::scan::{Found, Munger, Scanner};
use crate::token::{Claims, KeyRing, Kind, Visitor};

/// The munged form of each base address, computed once per visitor, day
/// and kind: an LRU of visitor-days, bounded by entries and by bytes, so a
/// crawler walking many pages costs one token per address, and a flood of
/// visitors (or of addresses) evicts the least recent instead of growing.
/// A response takes its visitor-day's [`Tokens`] once, then looks
/// addresses up there by `&str`, without building a key per address.
pub struct TokenCache {
    map: Mutex<lru::LruCache<VisitorDay, Arc<Tokens>>>,
    /// Bytes held by every [`Tokens`] alive (cached or still in use by a
    /// response), estimated.
    bytes: Arc<AtomicUsize>,
    budget: usize,
}

/// Visitor, day and kind.
type VisitorDay = (Visitor, Day, Kind);

/// Visitor-days kept at most.
const CACHE_MAX: usize = 10_000;

/// Bytes the cache may hold by default (`[proxy] token_cache_bytes`).
pub const CACHE_BYTES: usize = 64 << 20;

/// Tokens kept per visitor-day: a page full of distinct addresses (a list
/// archive) must not grow one entry without bound; beyond this they are
/// made on every use.
const TOKENS_MAX: usize = 1024;

/// What a visitor-day costs besides its tokens (LRU node, map, locks),
/// and what one token entry costs besides its text: estimates on the
/// generous side.
const DAY_BYTES: usize = 256;
const ENTRY_BYTES: usize = 96;

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
    /// A cache of at most `n` visitor-days (at least 1) and [`CACHE_BYTES`].
    pub fn with_capacity(n: usize) -> TokenCache {
        TokenCache::with_limits(n, CACHE_BYTES)
    }

    /// A cache of about `budget` bytes.
    pub fn with_budget(budget: usize) -> TokenCache {
        TokenCache::with_limits(CACHE_MAX, budget)
    }

    /// A cache of at most `n` visitor-days and about `budget` bytes.
    pub fn with_limits(n: usize, budget: usize) -> TokenCache {
        let n = std::num::NonZeroUsize::new(n.max(1)).expect("at least 1");
        TokenCache {
            map: Mutex::new(lru::LruCache::new(n)),
            bytes: Arc::new(AtomicUsize::new(0)),
            budget,
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

    /// Bytes held now (an estimate), by the cache and responses in flight.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Forgets every token (after the keys changed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<VisitorDay, Arc<Tokens>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tokens of the visitor-day `claims` names. Over the byte budget,
    /// the least recent visitor-days are let go first.
    pub fn tokens(&self, claims: &Claims) -> Arc<Tokens> {
        let key = (
            claims.visitor.unwrap_or(Visitor::V4([0, 0, 0, 0].into())),
            claims.day,
            claims.kind,
        );
        let mut map = self.lock();
        let tokens = Arc::clone(map.get_or_insert(key, || {
            Arc::new(Tokens::new(Arc::clone(&self.bytes), self.budget))
        }));
        while self.bytes() > self.budget && map.len() > 1 {
            map.pop_lru();
        }
        tokens
    }

    /// The token for `base` under `claims`, from the cache or made now.
    pub fn get(&self, keys: &KeyRing, claims: &Claims, base: &str) -> Arc<str> {
        self.tokens(claims).get(keys, claims, base)
    }
}

/// One visitor-day's tokens, by base address.
pub struct Tokens {
    map: Mutex<HashMap<Box<str>, Arc<str>>>,
    /// The cache's byte count, and this entry's share of it.
    total: Arc<AtomicUsize>,
    mine: AtomicUsize,
    budget: usize,
}

impl Drop for Tokens {
    fn drop(&mut self) {
        self.total
            .fetch_sub(self.mine.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl Tokens {
    fn new(total: Arc<AtomicUsize>, budget: usize) -> Tokens {
        total.fetch_add(DAY_BYTES, Ordering::Relaxed);
        Tokens {
            map: Mutex::new(HashMap::new()),
            total,
            mine: AtomicUsize::new(DAY_BYTES),
            budget,
        }
    }

    /// The token for `base` under `claims` (which must be this visitor-day's).
    /// Kept unless this visitor-day holds [`TOKENS_MAX`] already or the
    /// cache is over its budget; then made on every use.
    pub fn get(&self, keys: &KeyRing, claims: &Claims, base: &str) -> Arc<str> {
        let lock = || self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = lock().get(base) {
            return Arc::clone(t);
        }
        // Made outside the lock: two requests may both make it; same bytes.
        let t: Arc<str> = keys.encode(base, "", claims).into();
        let cost = base.len() + t.len() + ENTRY_BYTES;
        let mut map = lock();
        if map.len() < TOKENS_MAX
            && self.total.load(Ordering::Relaxed) + cost <= self.budget
            && map.insert(base.into(), Arc::clone(&t)).is_none()
        {
            self.mine.fetch_add(cost, Ordering::Relaxed);
            self.total.fetch_add(cost, Ordering::Relaxed);
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

/// Bounds on what a compressed body may expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expansion {
    /// Decoded bytes at most, whatever the ratio.
    pub max_bytes: u64,
    /// Decoded bytes per compressed byte at most, once past [`RATIO_GRACE`].
    pub max_ratio: u64,
}

/// Decoded bytes a body may produce before the ratio applies: small,
/// very repetitive pages compress far better than large ones.
pub const RATIO_GRACE: u64 = 1 << 20;

impl Default for Expansion {
    fn default() -> Self {
        Expansion {
            max_bytes: 256 << 20,
            max_ratio: 100,
        }
    }
}

/// A compressed body that expanded past its [`Expansion`] bounds.
#[derive(Debug, thiserror::Error)]
#[error(
    "the compressed body expands too much ({decoded} bytes from {encoded}; at most {max_bytes} bytes or {max_ratio}:1 is allowed by [proxy] max_decoded_bytes / max_decoded_ratio)"
)]
pub struct Expanded {
    /// Decoded bytes when it was stopped.
    pub decoded: u64,
    /// Compressed bytes they came from.
    pub encoded: u64,
    /// The size bound.
    pub max_bytes: u64,
    /// The ratio bound.
    pub max_ratio: u64,
}

/// Decompress -> (charset) -> (bait link) -> scan -> (charset) -> compress
/// for one response body, one bounded piece at a time: [`input`](Self::input)
/// takes an upstream chunk, [`next_piece`](Self::next_piece) turns at most
/// about [`PIECE`] decoded bytes of it into output.
pub struct Pipeline {
    decoder: Option<Decoder>,
    /// Upstream bytes not yet decoded.
    input: Bytes,
    /// The upstream body has ended.
    ended: bool,
    /// Everything is out.
    finished: bool,
    expansion: Expansion,
    /// Compressed bytes taken and decoded bytes made, for `expansion`.
    encoded: u64,
    decoded: u64,
    /// A reused buffer for decoded pieces.
    plain: Vec<u8>,
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
    /// The declared charset was UTF-16 and the bytes were not.
    charset_mismatch: bool,
    link: Option<LinkInserter>,
    scanner: Scanner,
    munger: VisitorMunger,
    encoder: Option<GzEncoder<Vec<u8>>>,
    scanned: Vec<u8>,
}

impl Pipeline {
    /// A pipeline undoing `from` and gzip-compressing the output when `gzip_out`.
    pub fn new(scanner: Scanner, munger: VisitorMunger, from: Coding, gzip_out: bool) -> Pipeline {
        Pipeline {
            // Only zstd's context can fail to be made (out of memory): then
            // the body is decoded as if it had no coding and the scan finds
            // garbage, never a crash.
            decoder: Decoder::new(from).ok().flatten(),
            input: Bytes::new(),
            ended: false,
            finished: false,
            expansion: Expansion::default(),
            encoded: 0,
            decoded: 0,
            plain: Vec::new(),
            head: None,
            pending: Vec::new(),
            declared: None,
            html: false,
            transcoder: None,
            charset_mismatch: false,
            link: None,
            scanner,
            munger,
            encoder: gzip_out.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
            scanned: Vec::new(),
        }
    }

    /// Bounds the expansion of a compressed body (default [`Expansion::default`]).
    pub fn with_expansion(mut self, expansion: Expansion) -> Pipeline {
        self.expansion = expansion;
        self
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

    /// True once the whole body is out.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Takes the next chunk of the upstream body; `last` when the body
    /// ends with it. Call [`next_piece`](Self::next_piece) until it
    /// answers `None` before giving more.
    pub fn input(&mut self, data: Bytes, last: bool) {
        debug_assert!(
            self.input.is_empty() && !self.ended,
            "input given before the last was used"
        );
        self.input = data;
        self.ended |= last;
    }

    /// The output of the next piece of input (possibly empty: compressed
    /// output may wait for more), or `None` when all input given so far is
    /// used and more is needed, or everything is out.
    pub fn next_piece(&mut self) -> std::io::Result<Option<Bytes>> {
        if self.finished || (self.input.is_empty() && !self.ended) {
            return Ok(None);
        }
        let Some(d) = &mut self.decoder else {
            // No coding: the upstream's own bytes, in pieces, not copied.
            let piece = self.input.split_to(self.input.len().min(PIECE));
            let last = self.ended && self.input.is_empty();
            return self.sniffed(&piece, last).map(Some);
        };
        self.plain.clear();
        let mut last = false;
        if !self.input.is_empty() {
            let n = d.step(&self.input, &mut self.plain)?;
            self.encoded += n as u64;
            let _ = self.input.split_to(n);
        }
        if self.input.is_empty() && self.ended && self.plain.len() < PIECE {
            // The end, in the same piece when it fits (one frame, not two).
            last = d.finish_step(&mut self.plain)?;
        }
        self.decoded += self.plain.len() as u64;
        self.check_expansion()?;
        let plain = std::mem::take(&mut self.plain);
        let out = self.sniffed(&plain, last);
        self.plain = plain;
        out.map(Some)
    }

    fn check_expansion(&self) -> std::io::Result<()> {
        let e = &self.expansion;
        let over_ratio =
            self.decoded > RATIO_GRACE && self.decoded > self.encoded.saturating_mul(e.max_ratio);
        if self.decoded > e.max_bytes || over_ratio {
            return Err(std::io::Error::other(Expanded {
                decoded: self.decoded,
                encoded: self.encoded,
                max_bytes: e.max_bytes,
                max_ratio: e.max_ratio,
            }));
        }
        Ok(())
    }

    /// Feeds one chunk and returns all output it gives (for callers that
    /// hold whole chunks anyway: tests, benchmarks).
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        self.input(Bytes::copy_from_slice(data), false);
        self.drain()
    }

    /// Feeds the last chunk and ends the body: [`push`](Self::push) then
    /// [`finish`](Self::finish).
    pub fn push_last(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        self.input(Bytes::copy_from_slice(data), true);
        self.drain()
    }

    /// Ends the body; returns the rest.
    pub fn finish(&mut self) -> std::io::Result<Bytes> {
        if !self.ended {
            self.input(Bytes::new(), true);
        }
        self.drain()
    }

    fn drain(&mut self) -> std::io::Result<Bytes> {
        let mut out = Vec::new();
        while let Some(piece) = self.next_piece()? {
            out.extend_from_slice(&piece);
        }
        Ok(Bytes::from(out))
    }

    /// Decoded bytes through charset sniffing, then [`rest`](Self::rest).
    fn sniffed(&mut self, plain: &[u8], last: bool) -> std::io::Result<Bytes> {
        if last {
            self.finished = true;
        }
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
        // A header's UTF-16 is only believed after bytes that could show it
        // false (see charset::could_be_utf16).
        let checkable = bom || seen >= 16 || !self.declared.is_some_and(charset::is_utf16);
        let decided = last
            || (seen >= 3 && checkable && (bom || !sniffing_meta || meta_found || seen >= charset::SNIFF));
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
        let bom = charset::from_bom(&head);
        let enc = bom.or(self.declared).or_else(|| {
            if self.html {
                charset::from_meta(&head[..head.len().min(charset::SNIFF)])
            } else {
                None
            }
        });
        let Some(e) = enc.filter(|e| charset::needs_transcoding(e)) else {
            return;
        };
        if bom.is_none() && !charset::could_be_utf16(e, &head) {
            // Scanned as the bytes they are, which is how a harvester reads them.
            self.charset_mismatch = true;
            return;
        }
        self.transcoder = Some(charset::Transcoder::new(e));
    }

    /// True (once) when the body's declared charset was found to be false
    /// and its bytes were scanned as they are instead.
    pub fn take_charset_mismatch(&mut self) -> bool {
        std::mem::take(&mut self.charset_mismatch)
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
                    // A sync flush, so the client gets bytes as the page
                    // streams; not while more of this chunk is coming.
                    if !self.scanned.is_empty() && self.input.is_empty() {
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
        assert_eq!(tokens.map.lock().unwrap().len(), TOKENS_MAX);
    }

    /// 12,000 visitors each shown 1,024 addresses once took 1.5 GB: the
    /// cache is bounded by bytes, whatever the number of entries.
    #[test]
    fn the_token_cache_is_bounded_by_bytes() {
        let keys = KeyRing::new(&[[1u8; 32]]);
        let budget = 1 << 20;
        let c = TokenCache::with_limits(100_000, budget);
        let day = Day::from_number(20_000);
        for v in 0..200u32 {
            let claims = Claims::visit(
                Kind::Visitor,
                day,
                std::net::Ipv4Addr::from(0xc000_0200 + v).into(),
            );
            let tokens = c.tokens(&claims);
            for i in 0..200 {
                let base = format!("someone-with-a-long-name-{i}@plover.com");
                assert_eq!(
                    *tokens.get(&keys, &claims, &base),
                    *keys.encode(&base, "", &claims)
                );
            }
            assert!(c.bytes() <= budget, "{} bytes held", c.bytes());
        }
        // The budget was reached (it did cache), and evicting freed it.
        assert!(c.bytes() > budget / 2, "{}", c.bytes());
        assert!(c.len() < 200);
        c.clear();
        assert_eq!(c.bytes(), 0);
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

    /// A page that says `charset=utf-16` but is ASCII: harvesters read its
    /// bytes as they are, so it is scanned as bytes (and counted), never
    /// served with bare addresses.
    #[test]
    fn a_lying_utf16_declaration_does_not_leak_addresses() {
        let page = b"<html><body><p>Write to mjd@plover.com, please.</p></body></html>";
        for cut in [0, 10, 40, page.len()] {
            let mut p = pipeline(Some(encoding_rs::UTF_16LE));
            let out = run(&mut p, &[&page[..cut], &page[cut..]]);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.contains("mjd-id-") && !text.contains("mjd@"),
                "cut {cut}: {text}"
            );
            assert!(p.take_charset_mismatch() && !p.take_charset_mismatch());
        }
        // Real UTF-16 (no byte-order mark, the header says so) is transcoded.
        let utf16: Vec<u8> = std::str::from_utf8(page)
            .unwrap()
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut p = pipeline(Some(encoding_rs::UTF_16LE));
        let out = run(&mut p, &[&utf16]);
        let (text, _) = encoding_rs::UTF_16LE.decode_without_bom_handling(&out);
        assert!(text.contains("mjd-id-"), "{text}");
        assert!(!p.take_charset_mismatch());
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

    use super::codec::tests::compress;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut d = flate2::write::GzDecoder::new(Vec::new());
        d.write_all(data).unwrap();
        d.finish().unwrap()
    }

    /// Runs a body given as one upstream chunk piece by piece; the output
    /// size, the largest piece, and how it ended.
    fn pieces(p: &mut Pipeline, wire: Vec<u8>) -> (usize, usize, std::io::Result<()>) {
        p.input(Bytes::from(wire), true);
        let (mut total, mut most) = (0, 0);
        loop {
            match p.next_piece() {
                Ok(Some(b)) => {
                    total += b.len();
                    most = most.max(b.len());
                }
                Ok(None) => return (total, most, Ok(())),
                Err(e) => return (total, most, Err(e)),
            }
        }
    }

    #[test]
    fn a_decompression_bomb_is_cut_off_after_bounded_work() {
        let zeros = vec![b'a'; 64 << 20];
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let mut p = coded_pipeline(None, coding, false);
            let (total, most, end) = pieces(&mut p, compress(coding, &zeros));
            let e = end.expect_err("a bomb must not pass");
            assert!(e.get_ref().is_some_and(|e| e.is::<Expanded>()), "{coding:?}: {e}");
            assert!(
                total as u64 <= RATIO_GRACE + 3 * PIECE as u64,
                "{coding:?}: {total} bytes out"
            );
            assert!(most <= 3 * PIECE + 1024, "{coding:?}: a piece of {most} bytes");
        }
        // The size bound, whatever the ratio.
        let page: Vec<u8> = (0..4_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut p = coded_pipeline(None, Coding::Gzip, false).with_expansion(Expansion {
            max_bytes: 2 << 20,
            max_ratio: u64::MAX,
        });
        let (total, _, end) = pieces(&mut p, compress(Coding::Gzip, &page));
        assert!(
            end.is_err() && total as u64 <= (2 << 20) + 3 * PIECE as u64,
            "{total}"
        );
        // Small, very repetitive pages are fine; so is anything uncompressed.
        let mut p = coded_pipeline(None, Coding::Brotli, false);
        let (total, _, end) = pieces(&mut p, compress(Coding::Brotli, &zeros[..900 << 10]));
        assert!(end.is_ok() && total == 900 << 10);
        let mut p = coded_pipeline(None, Coding::Identity, false);
        let (total, most, end) = pieces(&mut p, zeros.clone());
        assert!(end.is_ok() && total == zeros.len() && most <= PIECE + 1024);
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
