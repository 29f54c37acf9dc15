//! gzip for rewritten bodies, made mostly of pieces compressed once.
//!
//! Two visitors of a page get the same bytes except for the IDs the
//! scanner inserted. So each stretch between IDs is compressed as a deflate
//! stream of its own (reset, ended by a sync flush, so it is byte-aligned)
//! and kept in a [`GzipCache`]; the IDs go out as stored (uncompressed)
//! blocks. Deflate blocks can follow one another whatever made them (as
//! pigz splices its threads' output), so a body is a gzip header, those
//! blocks, an empty final block and the CRC-32 and length of the whole,
//! which CRC-32's combination makes from the stretches' own.
//!
//! A stretch is compressed with the kept stretch before it and the gap
//! since (IDs, short stretches) as its dictionary, so it may refer back as
//! a stream would: an address-dense page comes out about as small as one
//! stream. The IDs' bytes in that dictionary are a byte the stretch does
//! not contain, so no reference can reach into them (it would copy that
//! byte), and the form is right for every visitor's IDs of those lengths.
//! A form is kept under the stretch, the stretch before it and the gap.
//!
//! A stretch is reused only when every request cuts it in the same place:
//! at an ID, at the body's start or end, or [`MAX_STRETCH`] bytes into a
//! stretch. A flush while the web server is slow cuts where the timing
//! fell, so the stretch around it is compressed and not kept.

mod cache;

use std::ops::Range;
use std::sync::Arc;

pub use cache::GzipCache;
use cache::{After, Form, Stretch};
use flate2::{Compress, Compression, FlushCompress};

/// How hard stretches are compressed. zlib-rs's level 1 keeps the fixed
/// Huffman codes, so a 45 KB page that `gzip -1` makes 15.0 KB comes out
/// 19.3 KB; level 2 builds codes per block: 14.8 KB, in ~170 us.
const LEVEL: Compression = Compression::new(2);

/// A stretch is cut after this many bytes, so what is held for one stays
/// bounded and a long page without IDs still goes out in reusable pieces.
pub const MAX_STRETCH: usize = 32 * 1024;

/// Shorter stretches go out stored with the IDs: compressing and looking
/// up a few bytes costs more than it saves.
const MIN_DEFLATED: usize = 64;

/// A gap longer than this (IDs and short stretches in a row) ends the
/// context: its description would weigh more than it is worth.
const MAX_GAP: usize = 4096;

/// What deflate can refer back to.
const WINDOW: usize = 32 * 1024;

/// The bytes a [`GzipCache`] holds by default (`[proxy] gzip_cache_bytes`).
pub const GZIP_CACHE_BYTES: usize = 32 << 20;

/// gzip's header: deflate, no name, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty final block with fixed codes (RFC 1951 3.2.6): BFINAL 1,
/// BTYPE 01, end-of-block 0000000, padded.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// A gzip stream written from the scanner's output and where it inserted
/// IDs.
pub(super) struct GzipWriter {
    /// `None`: nothing is reused; the body is one deflate stream, as any
    /// gzip encoder makes it.
    cache: Option<Arc<GzipCache>>,
    deflate: Compress,
    /// Compressed bytes ready to go.
    out: Vec<u8>,
    /// The stretch being gathered (reusing only).
    stretch: Vec<u8>,
    /// The stretch began where every request begins it.
    steady: bool,
    /// IDs and short stretches waiting to go out as a stored block.
    stored: Vec<u8>,
    /// The kept stretch the next one follows, and the gap since.
    context: Option<Context>,
    /// Reused for dictionaries.
    dictionary: Vec<u8>,
    crc: crc32fast::Hasher,
}

/// What came before the stretch being gathered.
struct Context {
    after: Arc<Stretch>,
    gap: Vec<Gap>,
    gap_len: usize,
}

/// A piece of the gap after a kept stretch.
enum Gap {
    /// An ID this long: its bytes are the visitor's own.
    Id(usize),
    /// A short stretch: the page's bytes.
    Text(Vec<u8>),
}

impl Context {
    /// The gap, described: what a form compressed after it depends on.
    fn key(&self) -> After {
        let mut gap = Vec::new();
        for g in &self.gap {
            match g {
                Gap::Id(n) => {
                    gap.push(0);
                    gap.extend_from_slice(&(*n as u32).to_le_bytes());
                }
                Gap::Text(t) => {
                    gap.push(1);
                    gap.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    gap.extend_from_slice(t);
                }
            }
        }
        After {
            stretch: self.after.id,
            gap: gap.into(),
        }
    }

    /// The bytes before the stretch as a dictionary, the IDs written as
    /// `filler`, at most a window's worth.
    fn dictionary(&self, filler: u8, dict: &mut Vec<u8>) {
        dict.clear();
        let before = &self.after.bytes;
        dict.extend_from_slice(&before[before.len().saturating_sub(WINDOW)..]);
        for g in &self.gap {
            match g {
                Gap::Id(n) => dict.resize(dict.len() + n, filler),
                Gap::Text(t) => dict.extend_from_slice(t),
            }
        }
        let extra = dict.len().saturating_sub(WINDOW);
        dict.drain(..extra);
    }
}

/// A byte value `data` does not contain, if any.
fn absent_byte(data: &[u8]) -> Option<u8> {
    let mut seen = [false; 256];
    for &b in data {
        seen[b as usize] = true;
    }
    (0..=255u8).find(|&b| !seen[b as usize])
}

impl GzipWriter {
    pub(super) fn new() -> GzipWriter {
        GzipWriter {
            cache: None,
            deflate: Compress::new(LEVEL, false),
            out: HEADER.to_vec(),
            stretch: Vec::new(),
            steady: true,
            stored: Vec::new(),
            context: None,
            dictionary: Vec::new(),
            crc: crc32fast::Hasher::new(),
        }
    }

    /// Reuses stretches through `cache`; before anything is written.
    pub(super) fn reuse_through(&mut self, cache: Arc<GzipCache>) {
        debug_assert!(self.crc.total_len() == 0, "reuse chosen after writing");
        self.cache = Some(cache);
    }

    /// Takes `data`, in which `ids` (ascending, within it) were inserted.
    pub(super) fn write(&mut self, data: &[u8], ids: &[Range<usize>]) -> std::io::Result<()> {
        if self.cache.is_none() {
            self.crc.update(data);
            return deflate(&mut self.deflate, data, &mut self.out, FlushCompress::None);
        }
        let mut at = 0;
        for r in ids {
            self.gather(&data[at..r.start])?;
            self.end_stretch(true)?;
            let id = &data[r.clone()];
            self.crc.update(id);
            self.stored.extend_from_slice(id);
            self.note_gap(Gap::Id(id.len()));
            at = r.end;
        }
        self.gather(&data[at..])
    }

    /// From now on nothing is reused: what comes is not cut where other
    /// requests cut it (a transcoded body, a domain replaced).
    pub(super) fn stop_reusing(&mut self) -> std::io::Result<()> {
        if self.cache.take().is_some() {
            self.end_stretch(false)?;
            self.emit_stored();
            self.context = None;
            // What comes may refer only to what this stream compressed.
            self.deflate.reset();
        }
        Ok(())
    }

    fn gather(&mut self, mut plain: &[u8]) -> std::io::Result<()> {
        while !plain.is_empty() {
            let n = plain.len().min(MAX_STRETCH - self.stretch.len());
            self.stretch.extend_from_slice(&plain[..n]);
            plain = &plain[n..];
            if self.stretch.len() == MAX_STRETCH {
                // As steady as where the stretch began.
                self.end_stretch(self.steady)?;
            }
        }
        Ok(())
    }

    fn note_gap(&mut self, g: Gap) {
        let Some(c) = &mut self.context else { return };
        c.gap_len += match &g {
            Gap::Id(n) => *n,
            Gap::Text(t) => t.len(),
        };
        c.gap.push(g);
        if c.gap_len > MAX_GAP {
            self.context = None;
        }
    }

    /// Writes out the stretch gathered so far; `steady` when it ends where
    /// every request ends it.
    fn end_stretch(&mut self, steady: bool) -> std::io::Result<()> {
        if self.stretch.is_empty() {
            // Cut where the last one was: the next begins after an ID if
            // this cut is at one, else where the last cut left it.
            self.steady |= steady;
            return Ok(());
        }
        let reusable = std::mem::replace(&mut self.steady, steady) && steady;
        let plain = std::mem::take(&mut self.stretch);
        if plain.len() < MIN_DEFLATED {
            self.crc.update(&plain);
            self.stored.extend_from_slice(&plain);
            if reusable {
                self.note_gap(Gap::Text(plain.clone()));
            } else {
                self.context = None;
            }
        } else {
            let mut h = crc32fast::Hasher::new();
            h.update(&plain);
            self.crc.combine(&h);
            self.emit_stored();
            let key = (h.finalize(), plain.len() as u32);
            self.deflated(&plain, key, reusable)?;
        }
        self.stretch = plain;
        self.stretch.clear();
        Ok(())
    }

    /// Appends `plain` compressed: a kept form when there is one.
    fn deflated(&mut self, plain: &[u8], key: (u32, u32), reusable: bool) -> std::io::Result<()> {
        let context = self.context.take();
        let Some(cache) = self.cache.clone().filter(|_| reusable) else {
            return self.compress(plain, None);
        };
        let stretch = cache.stretch(key, plain);
        let form = Form {
            stretch: stretch.id,
            after: context.as_ref().map(Context::key),
        };
        if let Some(d) = cache.form(&form) {
            self.out.extend_from_slice(&d);
        } else {
            let start = self.out.len();
            self.compress(plain, context.as_ref())?;
            cache.keep_form(form, &self.out[start..]);
        }
        self.context = Some(Context {
            after: stretch,
            gap: Vec::new(),
            gap_len: 0,
        });
        Ok(())
    }

    /// Appends `plain` as a deflate stream of its own, with what came
    /// before as its dictionary when given.
    fn compress(&mut self, plain: &[u8], context: Option<&Context>) -> std::io::Result<()> {
        self.deflate.reset();
        if let Some((c, filler)) = context.zip(absent_byte(plain)) {
            c.dictionary(filler, &mut self.dictionary);
            self.deflate
                .set_dictionary(&self.dictionary)
                .map_err(std::io::Error::other)?;
        }
        deflate(&mut self.deflate, plain, &mut self.out, FlushCompress::Sync)
    }

    /// Writes the waiting raw bytes as stored blocks (RFC 1951 3.2.4),
    /// which begin on a byte boundary as every block here does.
    fn emit_stored(&mut self) {
        for block in self.stored.chunks(u16::MAX as usize) {
            let n = block.len() as u16;
            self.out.push(0); // BFINAL 0, BTYPE 00, padding
            self.out.extend_from_slice(&n.to_le_bytes());
            self.out.extend_from_slice(&(!n).to_le_bytes());
            self.out.extend_from_slice(block);
        }
        self.stored.clear();
    }

    /// Makes everything given so far decodable by the client.
    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        if self.cache.is_none() {
            return deflate(&mut self.deflate, &[], &mut self.out, FlushCompress::Sync);
        }
        // Cut where the timing fell: neither side is reused.
        self.end_stretch(false)?;
        self.emit_stored();
        Ok(())
    }

    /// The compressed bytes made so far.
    pub(super) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Ends the stream; the rest of the compressed bytes.
    pub(super) fn finish(mut self) -> std::io::Result<Vec<u8>> {
        if self.cache.is_some() {
            self.end_stretch(true)?;
            self.emit_stored();
        } else {
            deflate(&mut self.deflate, &[], &mut self.out, FlushCompress::Sync)?;
        }
        self.out.extend_from_slice(&FINAL_BLOCK);
        let len = self.crc.total_len() as u32; // ISIZE is the length mod 2^32
        self.out
            .extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
        self.out.extend_from_slice(&len.to_le_bytes());
        Ok(std::mem::take(&mut self.out))
    }
}

/// Compresses all of `input` onto `out`, with `flush` at its end.
fn deflate(c: &mut Compress, input: &[u8], out: &mut Vec<u8>, flush: FlushCompress) -> std::io::Result<()> {
    let start = c.total_in();
    loop {
        out.reserve(input.len() / 2 + 64);
        let done = (c.total_in() - start) as usize;
        c.compress_vec(&input[done..], out, flush)
            .map_err(std::io::Error::other)?;
        // Room left over means the flush is complete too.
        if (c.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use proptest::prelude::*;

    use super::*;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz).read_to_end(&mut out).unwrap();
        out
    }

    /// A page: `parts` of text, each followed by an ID of `id` bytes.
    fn page(parts: &[&[u8]], id: &[u8]) -> (Vec<u8>, Vec<Range<usize>>) {
        let (mut data, mut ids) = (Vec::new(), Vec::new());
        for p in parts {
            data.extend_from_slice(p);
            ids.push(data.len()..data.len() + id.len());
            data.extend_from_slice(id);
        }
        (data, ids)
    }

    /// `data` written in pieces cut at `cuts`, each piece with its IDs,
    /// flushing after the pieces in `flushes`.
    fn written(
        cache: Option<&Arc<GzipCache>>,
        data: &[u8],
        ids: &[Range<usize>],
        cuts: &[usize],
        flushes: &[usize],
    ) -> Vec<u8> {
        let mut w = GzipWriter::new();
        if let Some(c) = cache {
            w.reuse_through(Arc::clone(c));
        }
        let mut out = Vec::new();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        bounds.extend([0, data.len()]);
        bounds.sort_unstable();
        for (i, pair) in bounds.windows(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            let mine: Vec<Range<usize>> = ids
                .iter()
                .filter(|r| r.start >= a && r.end <= b)
                .map(|r| r.start - a..r.end - a)
                .collect();
            w.write(&data[a..b], &mine).unwrap();
            if flushes.contains(&i) {
                w.flush().unwrap();
            }
            out.extend(w.take());
        }
        out.extend(w.finish().unwrap());
        out
    }

    /// `n` bytes of prose-like HTML, different for each seed, compressing
    /// about as a page does.
    fn text(n: usize, seed: u8) -> Vec<u8> {
        let words = [
            "<p>", "some", "words", "and", "more", "</p>\n", "plover", "mail", "page", "of",
        ];
        let mut x = u64::from(seed) + 1;
        let mut t = Vec::with_capacity(n + 8);
        while t.len() < n {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            t.extend_from_slice(words[(x >> 60) as usize % words.len()].as_bytes());
            t.push(b' ');
        }
        t.truncate(n);
        t
    }

    #[test]
    fn a_second_visitor_gets_the_stretches_compressed_for_the_first() {
        let cache = Arc::new(GzipCache::default());
        let (a, b, c) = (text(5000, 1), text(40, 2), text(70_000, 3));
        let parts: [&[u8]; 3] = [&a, &b, &c];
        let (first, ids) = page(&parts, b"-id-AAAAAAAA");
        let one = written(Some(&cache), &first, &ids, &[], &[]);
        assert_eq!(gunzip(&one), first);
        // a (1), b (stored, under MIN_DEFLATED), c cut at MAX_STRETCH (3).
        assert_eq!(cache.counts(), (0, 4));
        let (second, ids) = page(&parts, b"-id-BBBBBBBB");
        // Other IDs of the same length, cut elsewhere by the network: the
        // same stretches after the same gaps.
        let two = written(Some(&cache), &second, &ids, &[3, 4000, 9000, 60_000], &[]);
        assert_eq!(gunzip(&two), second);
        assert_eq!(cache.counts(), (4, 4));
        // About as small as one stream, since each stretch refers back.
        let whole = written(None, &second, &ids, &[], &[]);
        let most = whole.len() + whole.len() / 20 + 100;
        assert!(two.len() < most, "{} against {}", two.len(), whole.len());
        // IDs of another length: what follows them is compressed anew.
        let (third, ids) = page(&parts, b"-id-CCCCCCCCCCCC");
        assert_eq!(gunzip(&written(Some(&cache), &third, &ids, &[], &[])), third);
        assert_eq!(cache.counts(), (7, 5));
    }

    #[test]
    fn a_stretch_with_every_byte_value_is_compressed_on_its_own() {
        let cache = Arc::new(GzipCache::default());
        let every: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let (data, ids) = page(&[&text(3000, 1), &every, &text(3000, 2)], b"-id-Z");
        for _ in 0..2 {
            assert_eq!(gunzip(&written(Some(&cache), &data, &ids, &[], &[])), data);
        }
        assert_eq!(cache.counts(), (3, 3));
    }

    #[test]
    fn a_stretch_cut_by_a_flush_is_not_kept() {
        let cache = Arc::new(GzipCache::default());
        let (a, b) = (text(5000, 1), text(6000, 2));
        let (data, ids) = page(&[&a, &b], b"-id-X");
        let out = written(Some(&cache), &data, &ids, &[1000], &[0]);
        assert_eq!(gunzip(&out), data);
        // Only `b`, after the ID, begins and ends where every request cuts
        // it; compressed on its own, `a` being no kept stretch.
        assert_eq!(cache.counts(), (0, 1));
        // Not flushed: `a`, and `b` after `a`.
        for counts in [(0, 3), (2, 3)] {
            let again = written(Some(&cache), &data, &ids, &[], &[]);
            assert_eq!(gunzip(&again), data);
            assert_eq!(cache.counts(), counts);
        }
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let cache = Arc::new(GzipCache::new(1 << 20));
        for seed in 0..200u32 {
            let mut t = text(20_000, 0);
            t.extend_from_slice(&seed.to_le_bytes());
            let out = written(Some(&cache), &t, &[], &[], &[]);
            assert_eq!(gunzip(&out), t);
            let most = (1 << 20) + 2 * (MAX_STRETCH + 1024);
            assert!(cache.held() <= most, "{}", cache.held());
        }
        assert_eq!(cache.counts().1, 200);
    }

    #[test]
    fn a_body_that_stops_reusing_midway_still_decodes() {
        let cache = Arc::new(GzipCache::default());
        let (data, ids) = page(&[&text(3000, 1), &text(3000, 2)], b"-id-Y");
        let mut w = GzipWriter::new();
        w.reuse_through(Arc::clone(&cache));
        w.write(&data[..4000], &ids[..1]).unwrap();
        w.stop_reusing().unwrap();
        w.write(&data[4000..], &[]).unwrap();
        let mut out = w.take();
        out.extend(w.finish().unwrap());
        assert_eq!(gunzip(&out), data);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_cuts_ids_and_flushes_decode_to_the_input(
            parts in proptest::collection::vec((0usize..3000, any::<u8>()), 0..8),
            id_len in 0usize..40,
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
            flushes in proptest::collection::vec(0usize..8, 0..3),
            reuse in any::<bool>(),
        ) {
            let texts: Vec<Vec<u8>> = parts.iter().map(|&(n, s)| text(n, s)).collect();
            let refs: Vec<&[u8]> = texts.iter().map(|t| &t[..]).collect();
            let (data, ids) = page(&refs, &vec![b'z'; id_len]);
            let cache = Arc::new(GzipCache::default());
            let cache = reuse.then_some(&cache);
            let out = written(cache, &data, &ids, &cuts, &flushes);
            prop_assert_eq!(gunzip(&out), data.clone());
            // Reused the second time, and still the same bytes.
            let again = written(cache, &data, &ids, &cuts, &flushes);
            prop_assert_eq!(gunzip(&again), data);
        }
    }
}
