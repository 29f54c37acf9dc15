//! [`Pipeline`]: one response body, a bounded piece at a time.

use std::borrow::Cow;
use std::cell::Cell;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::codec::{Coding, Decoder, PIECE};
use super::compress::{Compress, Encoder};
use super::{GzipCache, LinkInserter, VisitorMunger, charset};
use crate::scan::{Found, LeftAlone, Munger, Scanner, Written};

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
pub struct Pipeline<M: Munger = VisitorMunger> {
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
    /// Bytes held back until the charset is known: from the first ESC or
    /// byte past ASCII on (see `charset::ascii_safe`), so that pages do not
    /// wait for 1024 bytes to stream.
    pending: Vec<u8>,
    declared: Option<&'static encoding_rs::Encoding>,
    html: bool,
    transcoder: Option<charset::Transcoder>,
    /// A single-byte body read as bytes so far (see [`charset::Watch`]).
    watch: Option<charset::Watch>,
    /// The declared charset was UTF-16 and the bytes were not.
    charset_mismatch: bool,
    /// The body's type is unknown: its first bytes tell text from binary.
    untyped: bool,
    /// They told binary: the body goes through as it is, unscanned.
    binary: bool,
    link: Option<LinkInserter>,
    scanner: Scanner,
    munger: M,
    encoder: Option<Encoder>,
    scanned: Vec<u8>,
    /// Where the scanner inserted IDs in `scanned`.
    ids: Vec<Range<usize>>,
    /// For each of `ids`, how many of the page's bytes it took the place of
    /// (a base64 string written anew; none for an insertion).
    replaced: Vec<usize>,
    /// The compressor was given bytes since it last flushed.
    unflushed: bool,
}

impl<M: Munger> Pipeline<M> {
    /// A pipeline undoing `from` and compressing the output with `to`.
    pub fn new(scanner: Scanner, munger: M, from: Coding, to: Option<Compress>) -> Pipeline<M> {
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
            watch: None,
            charset_mismatch: false,
            untyped: false,
            binary: false,
            link: None,
            scanner,
            munger,
            encoder: to.map(Encoder::new),
            scanned: Vec::new(),
            ids: Vec::new(),
            replaced: Vec::new(),
            unflushed: false,
        }
    }

    /// Bounds the expansion of a compressed body (default [`Expansion::default`]).
    pub fn with_expansion(mut self, expansion: Expansion) -> Self {
        self.expansion = expansion;
        self
    }

    /// Decides the body's charset as a browser does (byte-order mark, then
    /// `declared` from the `Content-Type`, then for HTML a `<meta>` in the
    /// first 1024 bytes) and reads the body as [`charset::reading`] says.
    pub fn with_charset(mut self, declared: Option<&'static encoding_rs::Encoding>, html: bool) -> Self {
        self.head = Some(Vec::new());
        self.declared = declared;
        self.html = html;
        self
    }

    /// The body came with no usable `Content-Type` (Apache sends none for a
    /// file whose extension it does not know): as a browser does, its first
    /// 1024 bytes decide. Text is scanned (and read as HTML for its charset);
    /// a body with a byte no text holds goes through as it is. Nothing goes
    /// out until they are seen.
    pub fn sniffing_type(mut self) -> Self {
        self.head.get_or_insert_with(Vec::new);
        self.untyped = true;
        self.html = true;
        self
    }

    /// gzip output reuses stretches compressed for earlier responses (see
    /// `gzip.rs`).
    pub fn with_gzip_cache(mut self, cache: Arc<GzipCache>) -> Self {
        if let Some(e) = &mut self.encoder {
            e.reuse_through(cache);
        }
        self
    }

    /// Also inserts a link into the HTML (the bait link).
    pub fn with_link(mut self, link: LinkInserter) -> Self {
        self.link = Some(link);
        self
    }

    /// The coding of the output (its `Content-Encoding`), until it ends.
    pub fn compressed_as(&self) -> Option<Compress> {
        self.encoder.as_ref().map(Encoder::coding)
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
        let decided = if self.untyped {
            last || seen >= charset::SNIFF
        } else {
            last || (seen >= 3
                && checkable
                && (bom || !sniffing_meta || meta_found || seen >= charset::SNIFF))
        };
        if decided {
            self.decide(last);
        }
        // What may go on now: everything once decided; while undecided only
        // what every candidate charset reads as ASCII, and nothing before
        // the byte-order mark could be seen, while a header's UTF-16 is
        // neither believed nor refused, or while the type is unknown.
        // Bytes are copied only when some are already held.
        let hold_all = seen < 3 || self.untyped || !checkable;
        let cut = if decided {
            plain.len()
        } else if hold_all {
            0
        } else {
            charset::ascii_safe(plain)
        };
        if self.pending.is_empty() {
            self.pending.extend_from_slice(&plain[cut..]);
            return self.rest(&plain[..cut], last);
        }
        self.pending.extend_from_slice(plain);
        let cut = if decided {
            self.pending.len()
        } else if hold_all {
            0
        } else {
            charset::ascii_safe(&self.pending)
        };
        let ready: Vec<u8> = self.pending.drain(..cut).collect();
        self.rest(&ready, last)
    }

    /// Settles the charset from the first bytes (`last`: all there are).
    fn decide(&mut self, last: bool) {
        let head = self.head.take().unwrap_or_default();
        if self.untyped && charset::looks_binary(&head) {
            self.binary = true;
            return;
        }
        let bom = charset::from_bom(&head);
        let Some(e) = charset::settle(&head, self.declared, self.html, last) else {
            return;
        };
        match charset::reading(e) {
            charset::Reading::Bytes => {}
            charset::Reading::Spliced if e.is_single_byte() => {
                let international = self.scanner.protection().has_unicode_domains();
                self.watch = Some(charset::Watch::new(e, international));
            }
            // What the scanner still holds was given to it as ASCII.
            charset::Reading::Spliced => {
                self.transcoder = Some(charset::Transcoder::splicing(e, self.scanner.unwritten()));
            }
            charset::Reading::Transcoded if bom.is_none() && !charset::could_be_utf16(e, &head) => {
                // Scanned as the bytes they are, which is how a harvester reads them.
                self.charset_mismatch = true;
            }
            charset::Reading::Transcoded => self.transcoder = Some(charset::Transcoder::new(e)),
        }
    }

    /// True (once) when the body's declared charset was found to be false
    /// and its bytes were scanned as they are instead.
    pub fn take_charset_mismatch(&mut self) -> bool {
        std::mem::take(&mut self.charset_mismatch)
    }

    /// Everything after decompression and sniffing.
    fn rest(&mut self, data: &[u8], last: bool) -> std::io::Result<Bytes> {
        if self.binary {
            self.scanned.clear();
            self.scanned.extend_from_slice(data);
            self.ids.clear();
            self.replaced.clear();
            return self.encode(last, false);
        }
        if let Some(w) = self.watch.take_if(|w| w.sees(data)) {
            // What the scanner still holds it was given as bytes, and they
            // are written as they came.
            self.transcoder = Some(charset::Transcoder::splicing(
                w.encoding(),
                self.scanner.unwritten(),
            ));
        }
        // A spliced page gets the link in its own bytes (lol_html reads an
        // ASCII-compatible charset as bytes), a transcoded one in UTF-8.
        let splices = self
            .transcoder
            .as_ref()
            .is_some_and(charset::Transcoder::is_spliced);
        let mut input = Cow::Borrowed(data);
        if splices {
            input = self.linked(input, last)?;
        }
        if let Some(t) = &mut self.transcoder {
            input = Cow::Owned(t.decode(&input, last));
        }
        if !splices {
            input = self.linked(input, last)?;
        }
        self.scanned.clear();
        self.ids.clear();
        self.replaced.clear();
        // Room for the chunk and a few tokens: no regrowth (and copy) while scanning.
        self.scanned.reserve(input.len() + input.len() / 16 + 256);
        let mut marking = Marking {
            inner: &mut self.munger,
            ids: &mut self.ids,
            replaced: &mut self.replaced,
            renamed: Cell::new(false),
        };
        self.scanner.feed(&input, &mut self.scanned, &mut marking);
        if last {
            self.scanner.finish(&mut self.scanned, &mut marking);
        }
        // Bytes other requests do not share, or IDs no longer where marked.
        let renamed = marking.renamed.get();
        let steady = match &mut self.transcoder {
            Some(t) => t.write_back(&mut self.scanned, &mut self.ids, &self.replaced, renamed, last),
            None => !renamed,
        };
        self.encode(last, steady)
    }

    /// `data` with the bait link, if there is one to insert.
    fn linked<'a>(&mut self, data: Cow<'a, [u8]>, last: bool) -> std::io::Result<Cow<'a, [u8]>> {
        let Some(l) = &mut self.link else {
            return Ok(data);
        };
        let mut v = l.push(&data)?;
        if last {
            v.extend(l.finish()?);
        }
        Ok(Cow::Owned(v))
    }

    fn encode(&mut self, last: bool, steady: bool) -> std::io::Result<Bytes> {
        let Some(e) = &mut self.encoder else {
            // Hand the buffer over instead of copying it; the next chunk
            // allocates its own.
            return Ok(Bytes::from(std::mem::take(&mut self.scanned)));
        };
        if !steady {
            e.stop_reusing()?;
        }
        e.write(&self.scanned, &self.ids)?;
        self.unflushed |= !self.scanned.is_empty();
        if last {
            let e = self.encoder.take().expect("checked");
            return Ok(Bytes::from(e.finish()?));
        }
        // No flush here: blocks end when the body does or when the web
        // server keeps the rest waiting (see `flush`).
        Ok(Bytes::from(e.take()))
    }

    /// The compressor holds bytes the client cannot decode yet.
    pub fn holds(&self) -> bool {
        self.unflushed && !self.finished
    }

    /// Makes everything given so far decodable by the client; called when
    /// the web server makes it wait, so a slow page still streams.
    pub fn flush(&mut self) -> std::io::Result<Bytes> {
        match &mut self.encoder {
            Some(e) if !self.finished => {
                self.unflushed = false;
                e.flush()?;
                Ok(Bytes::from(e.take()))
            }
            _ => Ok(Bytes::new()),
        }
    }
}

/// A [`Munger`] noting where the IDs it writes land in the output.
struct Marking<'a, M> {
    inner: &'a mut M,
    ids: &'a mut Vec<Range<usize>>,
    /// How many of the page's bytes each ID took the place of.
    replaced: &'a mut Vec<usize>,
    /// A domain was replaced: those bytes are not the page's.
    renamed: Cell<bool>,
}

impl<M> Marking<'_, M> {
    fn note(&mut self, id: Range<usize>, replaced: usize) {
        self.ids.push(id);
        self.replaced.push(replaced);
    }
}

impl<M: Munger> Munger for Marking<'_, M> {
    fn munge(&mut self, found: &Found<'_>, out: &mut Vec<u8>) {
        let start = out.len();
        self.inner.munge(found, out);
        self.note(start..out.len(), 0);
    }

    fn munge_as(&mut self, found: &Found<'_>, out: &mut Vec<u8>, written: Written) {
        let start = out.len();
        self.inner.munge_as(found, out, written);
        self.note(start..out.len(), 0);
    }

    fn domain(&self, found: &Found<'_>) -> Option<&str> {
        let d = self.inner.domain(found);
        self.renamed.set(self.renamed.get() || d.is_some());
        d
    }

    fn left_alone(&mut self, found: &Found<'_>, why: LeftAlone) {
        self.inner.left_alone(found, why);
    }

    fn id(&mut self, found: &Found<'_>, id: &mut Vec<u8>) {
        self.inner.id(found, id);
    }

    /// The stretch is the visitor's, as an ID is, in place of the page's
    /// bytes it was written from.
    fn rewritten(&mut self, written: Range<usize>, replaced: usize) {
        self.inner.rewritten(written.clone(), replaced);
        self.note(written, replaced);
    }
}
