//! Charsets the scanner cannot read as bytes. UTF-8 is scanned as it is.
//! The others are decoded to UTF-8 for the scanner (encoding_rs), so that
//! the visitor gets the charset the server declared:
//! - UTF-16 and ISO-2022-JP are encoded back whole: UTF-16 interleaves zero
//!   bytes, and ISO-2022-JP's two-byte JIS sequences use bytes that look
//!   like `@` and letters. The inserted text is ASCII, which every one of
//!   them can carry, so re-encoding never loses anything.
//! - The multi-byte charsets that keep ASCII as it is (Shift_JIS, EUC-JP,
//!   Big5, GBK, gb18030, EUC-KR) are spliced: the output is the page's own
//!   bytes with the IDs inserted. Read as bytes, their second bytes include
//!   ASCII letters (`ス` is `0x83 0x58`, an `X`), which would join the local
//!   part of an address written right after one; and their fullwidth `＠`
//!   would not be seen. Re-encoding would change bytes the scanner did not
//!   (characters with two codes, malformed input), so it is not done.
//! - The single-byte charsets (windows-1252, ISO-8859-x, KOI8, …) are
//!   spliced too, one byte a character, so that a raw no-break space
//!   (`0xA0` in Latin-1) is a space, a soft hyphen (`0xAD`) is invisible and
//!   `b\xFCcher.example` is the international domain it shows. Where their
//!   bytes are well-formed UTF-8 they are read as UTF-8 ([`SingleByte`]):
//!   a page labelled Latin-1 that is in fact UTF-8 is read as a harvester
//!   that takes its bytes for UTF-8 reads it.
//!
//! Which charset applies is decided, as a browser does ([`settle`]), from a
//! byte-order mark, else the `Content-Type` charset, else (HTML) a `<meta
//! charset>` or `<meta http-equiv content="…; charset=…">` in the first
//! 1024 bytes, else the guess a browser makes from those bytes.

use std::ops::Range;

use encoding_rs::{BIG5, EUC_JP, EUC_KR, Encoding, GB18030, GBK, ISO_2022_JP, SHIFT_JIS, UTF_16BE, UTF_16LE};

/// How many bytes a browser looks at for a `<meta>` charset.
pub const SNIFF: usize = 1024;

/// The charset from a `Content-Type` value, if it names one encoding_rs knows.
pub fn from_content_type(value: &str) -> Option<&'static Encoding> {
    value
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .and_then(|(_, v)| Encoding::for_label(v.trim().trim_matches('"').as_bytes()))
}

/// Whether the first bytes of a body of unknown type hold a byte no text
/// holds (the WHATWG MIME sniffing standard's binary data bytes), as a
/// browser decides to show it or not. A byte-order mark makes it text.
pub fn looks_binary(head: &[u8]) -> bool {
    from_bom(head).is_none()
        && head
            .iter()
            .any(|&b| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f))
}

/// A byte-order mark's encoding.
pub fn from_bom(head: &[u8]) -> Option<&'static Encoding> {
    Encoding::for_bom(head).map(|(e, _)| e)
}

/// The charset a `<meta>` in `head` declares (the HTML prescan, simplified:
/// `charset=` inside a `<meta` tag). A declared UTF-16 means UTF-8, as the
/// HTML standard says, since a page that can say so in ASCII is not UTF-16.
pub fn from_meta(head: &[u8]) -> Option<&'static Encoding> {
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&lower[from..], b"<meta") {
        let start = from + i;
        // A tag cut off by the end of what was seen says nothing yet (a
        // browser's prescan gives up on it too): `charset=shift_jis` may
        // go on.
        let Some(end) = memchr::memchr(b'>', &lower[start..]).map(|e| start + e) else {
            break;
        };
        let tag = &lower[start..end];
        if let Some(c) = memchr::memmem::find(tag, b"charset") {
            let rest = &tag[c + 7..];
            let rest = rest.trim_ascii_start();
            if let Some(rest) = rest.strip_prefix(b"=") {
                let rest = rest.trim_ascii_start();
                let rest = rest
                    .strip_prefix(b"\"")
                    .or_else(|| rest.strip_prefix(b"'"))
                    .unwrap_or(rest);
                let len = rest
                    .iter()
                    .position(|&b| matches!(b, b'"' | b'\'' | b';' | b' ' | b'/' | b'\t' | b'\n'))
                    .unwrap_or(rest.len());
                if let Some(e) = Encoding::for_label(&rest[..len]) {
                    return Some(if e == UTF_16LE || e == UTF_16BE {
                        encoding_rs::UTF_8
                    } else {
                        e
                    });
                }
            }
        }
        from = end.max(start + 5);
    }
    None
}

/// How a body in a charset is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// As its bytes: UTF-8, and the `replacement` charset (ISO-2022-KR and
    /// kin, which a browser shows as one U+FFFD but a harvester reads as
    /// bytes).
    Bytes,
    /// Decoded to UTF-8, scanned, encoded back: UTF-16 and ISO-2022-JP.
    Transcoded,
    /// Decoded to UTF-8, scanned, the page's own bytes written back with
    /// the IDs spliced in: the charsets that keep ASCII as it is.
    Spliced,
}

/// How a body in `e` is read.
pub fn reading(e: &'static Encoding) -> Reading {
    if is_utf16(e) || e == ISO_2022_JP {
        Reading::Transcoded
    } else if e.is_single_byte() || [SHIFT_JIS, EUC_JP, BIG5, GBK, GB18030, EUC_KR].contains(&e) {
        Reading::Spliced
    } else {
        Reading::Bytes
    }
}

/// The charset a browser guesses for an HTML page that names none, from
/// its first bytes (`last`: all of them), as Firefox does (chardetng): an
/// unlabelled Shift_JIS page is read as Shift_JIS, a windows-1252 one as
/// windows-1252. Bytes that are UTF-8 (a character cut at the end aside)
/// leave the page read as bytes.
pub fn guess(head: &[u8], last: bool) -> Option<&'static Encoding> {
    match std::str::from_utf8(head) {
        Ok(_) => return None,
        Err(e) if e.error_len().is_none() && !last => return None,
        Err(_) => {}
    }
    let mut d = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    d.feed(head, last);
    let e = d.guess(None, chardetng::Utf8Detection::Deny);
    (reading(e) == Reading::Spliced).then_some(e)
}

/// The charset of a body whose first bytes are `head` (`last`: all of
/// them), in a browser's order: a byte-order mark, the `declared` one
/// (`Content-Type`), and for HTML a `<meta>` in the first [`SNIFF`] bytes,
/// else a guess from them.
pub fn settle(
    head: &[u8],
    declared: Option<&'static Encoding>,
    html: bool,
    last: bool,
) -> Option<&'static Encoding> {
    let head = &head[..head.len().min(SNIFF)];
    from_bom(head).or(declared).or_else(|| {
        if html {
            from_meta(head).or_else(|| guess(head, last))
        } else {
            None
        }
    })
}

/// How many of `bytes` read the same in every charset a body may turn out
/// to be in (before its `<meta>` is seen): up to the first ESC, before
/// which ISO-2022-JP is ASCII, or byte past ASCII, where the multi-byte
/// charsets differ.
pub fn ascii_safe(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| b == 0x1b || b >= 0x80)
        .unwrap_or(bytes.len())
}

/// False when bytes said to be UTF-16 (by a header, without a byte-order
/// mark) cannot be: markup, digits and `@` in UTF-16 each carry a zero
/// byte, and 16 bytes without one are ASCII-compatible text that lies
/// about its charset. A harvester reads such bytes as they are, so they
/// must be scanned as they are. Only the first 16 bytes are looked at, so
/// that the answer does not depend on how many had come.
pub fn could_be_utf16(e: &'static Encoding, head: &[u8]) -> bool {
    !is_utf16(e) || head.len() < 16 || head[..16].contains(&0)
}

/// UTF-16 in either byte order.
pub fn is_utf16(e: &'static Encoding) -> bool {
    e == UTF_16LE || e == UTF_16BE
}

/// Decodes a body to UTF-8 and writes the scanned UTF-8 back in the body's
/// charset, streaming: encoded ([`Reading::Transcoded`]) or spliced into
/// the page's own bytes ([`Reading::Spliced`]).
pub struct Transcoder {
    encoding: &'static Encoding,
    decoder: Decoder,
    encoder: Option<encoding_rs::Encoder>,
    /// Scanned UTF-8 that ends inside a character, kept for the next chunk.
    carry: Vec<u8>,
    /// While splicing: the page's bytes not yet written back.
    splice: Option<Splice>,
    /// Made to splice (it may have fallen back to encoding since).
    spliced: bool,
}

impl Transcoder {
    /// For a body in `encoding` whose [`reading`] is [`Reading::Transcoded`].
    pub fn new(encoding: &'static Encoding) -> Transcoder {
        Transcoder {
            encoding,
            decoder: Decoder::new(encoding),
            // encoding_rs writes UTF-16 only as UTF-8 (the Encoding Standard
            // has no UTF-16 encoder), so UTF-16 is encoded by hand below.
            encoder: (encoding == ISO_2022_JP).then(|| encoding.new_encoder()),
            carry: Vec::new(),
            splice: None,
            spliced: false,
        }
    }

    /// For a body in `encoding` whose [`reading`] is [`Reading::Spliced`];
    /// `ahead` bytes of ASCII the scanner was given before the charset was
    /// known come out of it first, and are written as they are.
    pub fn splicing(encoding: &'static Encoding, ahead: usize) -> Transcoder {
        Transcoder {
            splice: Some(Splice {
                multi: Multi::of(encoding),
                page: Vec::new(),
                ahead,
                accent: false,
            }),
            spliced: true,
            ..Transcoder::new(encoding)
        }
    }

    /// Made by [`splicing`](Self::splicing): the page's bytes are read
    /// before they are decoded.
    pub fn is_spliced(&self) -> bool {
        self.spliced
    }

    /// Decodes one chunk (malformed input becomes U+FFFD, as a browser shows it).
    pub fn decode(&mut self, data: &[u8], last: bool) -> Vec<u8> {
        if let Some(s) = &mut self.splice {
            s.page.extend_from_slice(data);
        }
        self.decoder.decode(data, last)
    }

    /// Replaces `scanned` (the scanner's UTF-8, with IDs at `ids`) with the
    /// same in the body's charset. True when the result is the page's own
    /// bytes with the IDs inserted, `ids` moved to where they now are;
    /// false when it was encoded (`ids` then mark nothing). Each ID took
    /// the place of `replaced` (one for each) ASCII bytes of the page: none
    /// for an insertion, a base64 string's for one written anew.
    pub fn write_back(
        &mut self,
        scanned: &mut Vec<u8>,
        ids: &mut [Range<usize>],
        replaced: &[usize],
        renamed: bool,
        last: bool,
    ) -> bool {
        let mut out = Vec::with_capacity(scanned.len() + 64);
        match &mut self.splice {
            // A replaced domain is not the page's bytes: encoded from here on.
            Some(s) if !renamed => {
                // Whole characters only (the scanner's output may end inside
                // one): the rest waits in `carry`, before the next output.
                let held = self.carry.len();
                self.carry.extend_from_slice(scanned);
                let text: Vec<u8> = self.carry.drain(..whole_chars(&self.carry, last)).collect();
                for id in ids.iter_mut() {
                    *id = id.start + held..id.end + held;
                }
                match s.write(&text, ids, replaced, &mut out) {
                    Ok(()) => {
                        *scanned = out;
                        return true;
                    }
                    Err(from) => {
                        // Out of step with the page (malformed bytes the
                        // decoder read otherwise than `width` did): the rest
                        // is encoded.
                        self.carry.splice(..0, text[from..].iter().copied());
                        self.stop_splicing();
                    }
                }
            }
            Some(_) => {
                self.stop_splicing();
                self.carry.extend_from_slice(scanned);
            }
            None => self.carry.extend_from_slice(scanned),
        }
        out.extend(self.encode(last));
        *scanned = out;
        false
    }

    /// From here on the body is encoded back, not spliced.
    fn stop_splicing(&mut self) {
        self.splice = None;
        self.encoder = Some(self.encoding.new_encoder());
    }

    /// Encodes the scanned UTF-8 in `carry` back into the body's charset
    /// (all but an incomplete character at the end, unless `last`).
    fn encode(&mut self, last: bool) -> Vec<u8> {
        let whole = whole_chars(&self.carry, last);
        let text = String::from_utf8_lossy(&self.carry[..whole]).into_owned();
        self.carry.drain(..whole);
        let mut out = Vec::with_capacity(text.len() * 2);
        match &mut self.encoder {
            Some(enc) => {
                let mut buf = vec![
                    0u8;
                    enc.max_buffer_length_from_utf8_if_no_unmappables(text.len())
                        .unwrap_or(text.len() * 8)
                        + 16
                ];
                let mut src = text.as_str();
                loop {
                    let (res, read, written, _) = enc.encode_from_utf8(src, &mut buf, last);
                    out.extend_from_slice(&buf[..written]);
                    src = &src[read..];
                    if res == encoding_rs::CoderResult::InputEmpty {
                        break;
                    }
                }
            }
            None => {
                let be = self.encoding == UTF_16BE;
                for u in text.encode_utf16() {
                    out.extend_from_slice(&if be { u.to_be_bytes() } else { u.to_le_bytes() });
                }
            }
        }
        out
    }
}

/// How a body is decoded for the scanner.
enum Decoder {
    /// As the Encoding Standard decodes it, a BOM kept as U+FEFF so that it
    /// is written back where it was.
    Standard(encoding_rs::Decoder),
    Single(SingleByte),
}

impl Decoder {
    fn new(encoding: &'static Encoding) -> Decoder {
        if encoding.is_single_byte() {
            Decoder::Single(SingleByte::new(encoding))
        } else {
            Decoder::Standard(encoding.new_decoder_without_bom_handling())
        }
    }

    fn decode(&mut self, data: &[u8], last: bool) -> Vec<u8> {
        match self {
            Decoder::Standard(d) => {
                let mut out = String::with_capacity(
                    d.max_utf8_buffer_length(data.len())
                        .unwrap_or(data.len() * 3 + 16),
                );
                let _ = d.decode_to_string(data, &mut out, last);
                out.into_bytes()
            }
            Decoder::Single(d) => d.decode(data, last),
        }
    }
}

/// A whole body in `encoding` as the proxy's scanner reads it: UTF-8.
pub fn decode_whole(encoding: &'static Encoding, body: &[u8]) -> Vec<u8> {
    Decoder::new(encoding).decode(body, true)
}

/// A single-byte charset's decoder that reads well-formed UTF-8 as UTF-8:
/// each other byte past ASCII is the charset's character. A page labelled
/// Latin-1 that is in fact UTF-8 (a server's default charset, a template
/// and its database disagreeing) is read as a harvester that takes its
/// bytes for UTF-8 reads it; a true Latin-1 page as a browser shows it, as
/// its bytes seldom make UTF-8 (`Ã©`, where an address is not).
struct SingleByte {
    high: &'static HighHalf,
    /// A UTF-8 sequence cut at the end of the last chunk.
    carry: Vec<u8>,
}

impl SingleByte {
    fn new(encoding: &'static Encoding) -> SingleByte {
        SingleByte {
            high: HighHalf::of(encoding),
            carry: Vec::new(),
        }
    }

    fn decode(&mut self, data: &[u8], last: bool) -> Vec<u8> {
        let mut joined = std::mem::take(&mut self.carry);
        let page = if joined.is_empty() {
            data
        } else {
            joined.extend_from_slice(data);
            &joined[..]
        };
        let mut out = Vec::with_capacity(page.len() + page.len() / 4 + 16);
        let mut i = 0;
        while i < page.len() {
            // ASCII as it is, a word at a time where it is a word of it.
            if let Some(w) = page.get(i..i + 8)
                && u64::from_ne_bytes(w.try_into().expect("8 bytes")) & 0x8080_8080_8080_8080 == 0
            {
                out.extend_from_slice(w);
                i += 8;
                continue;
            }
            let b = page[i];
            if b < 0x80 {
                out.push(b);
                i += 1;
                continue;
            }
            match page.get(i..i + utf8_len(b)) {
                Some(s) if is_utf8_char(s) => {
                    out.extend_from_slice(s);
                    i += s.len();
                }
                // The start of one, cut by the chunk's end.
                None if !last && std::str::from_utf8(&page[i..]).is_err_and(|e| e.error_len().is_none()) => {
                    self.carry.extend_from_slice(&page[i..]);
                    break;
                }
                _ => {
                    let (utf8, len) = &self.high.utf8[usize::from(b - 0x80)];
                    out.extend_from_slice(&utf8[..usize::from(*len)]);
                    i += 1;
                }
            }
        }
        out
    }
}

/// Whether `s` is one well-formed UTF-8 character past ASCII.
fn is_utf8_char(s: &[u8]) -> bool {
    match s {
        // What most bytes past ASCII in a single-byte page are followed by.
        [_, c, ..] if c & 0xc0 != 0x80 => false,
        _ => std::str::from_utf8(s).is_ok(),
    }
}

/// A single-byte body read as its bytes until a chunk holds a byte whose
/// decoding the scanner reads otherwise: a space or punctuation past ASCII
/// (a no-break space, a soft hyphen, a typographic quote or space), `0xFE`
/// or `0xFF`, or, where an international domain is protected, any byte
/// past ASCII. Until then its bytes and its decoding hold the same
/// addresses, and bytes cost a fraction as much: a Latin-1 page whose only
/// bytes past ASCII are letters is never decoded.
pub struct Watch {
    high: &'static HighHalf,
    international: bool,
}

impl Watch {
    /// For a body in `encoding`, a single-byte charset; `international`:
    /// an international domain is protected.
    pub fn new(encoding: &'static Encoding, international: bool) -> Watch {
        Watch {
            high: HighHalf::of(encoding),
            international,
        }
    }

    /// The body's charset.
    pub fn encoding(&self) -> &'static Encoding {
        self.high.encoding
    }

    /// Whether `data` holds such a byte.
    pub fn sees(&self, data: &[u8]) -> bool {
        let words = data.chunks_exact(8);
        let tail = words.remainder();
        let seen = |b: u8| b >= 0x80 && (self.international || self.high.marks[usize::from(b - 0x80)]);
        for w in words {
            // The bytes past ASCII of each word, by their top bits.
            let mut high = u64::from_le_bytes(w.try_into().expect("8 bytes")) & 0x8080_8080_8080_8080;
            while high != 0 {
                if seen(w[high.trailing_zeros() as usize / 8]) {
                    return true;
                }
                high &= high - 1;
            }
        }
        tail.iter().any(|&b| seen(b))
    }
}

/// What a single-byte charset's bytes past ASCII are, worked out once per
/// charset for the life of the process (there are a few dozen).
struct HighHalf {
    encoding: &'static Encoding,
    /// Each one's character in UTF-8 (all are in the BMP), and its length.
    utf8: [([u8; 3], u8); 128],
    /// Those whose decoding the scanner may read otherwise than the raw
    /// byte (see [`Watch`]).
    marks: [bool; 128],
}

impl HighHalf {
    fn of(encoding: &'static Encoding) -> &'static HighHalf {
        static KNOWN: std::sync::Mutex<Vec<&'static HighHalf>> = std::sync::Mutex::new(Vec::new());
        let mut known = KNOWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = known.iter().find(|h| h.encoding == encoding) {
            return h;
        }
        let h: &'static HighHalf = Box::leak(Box::new(HighHalf::new(encoding)));
        known.push(h);
        h
    }

    fn new(encoding: &'static Encoding) -> HighHalf {
        let bytes: Vec<u8> = (0x80..=0xff).collect();
        let (chars, _) = encoding.decode_without_bom_handling(&bytes);
        let mut h = HighHalf {
            encoding,
            utf8: [([0; 3], 0); 128],
            marks: [false; 128],
        };
        // A single-byte decoder makes one character of each byte.
        for (k, c) in chars.chars().take(128).enumerate() {
            h.utf8[k].1 = c.encode_utf8(&mut h.utf8[k].0).len() as u8;
            h.marks[k] = !c.is_alphanumeric();
        }
        // Read raw, these two are the scanner's marks for a decoded
        // character that renders as nothing and one past ASCII.
        h.marks[0x7e] = true;
        h.marks[0x7f] = true;
        h
    }
}

/// How many bytes of `utf8` are whole characters: all of them when `last`,
/// else all but a character cut at the end.
fn whole_chars(utf8: &[u8], last: bool) -> usize {
    let n = utf8.len();
    if last {
        return n;
    }
    for k in 1..=n.min(4) {
        match utf8[n - k] {
            0x00..=0x7f => return n,
            b @ 0xc0.. => return if utf8_len(b) > k { n - k } else { n },
            _ => {}
        }
    }
    n
}

/// The length of a UTF-8 character from its first byte.
fn utf8_len(b: u8) -> usize {
    match b {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    }
}

/// A spliced body's bytes, walked in step with their decoding.
struct Splice {
    multi: Multi,
    /// The page's bytes whose decoding has not been written back yet.
    page: Vec<u8>,
    /// Scanned bytes still to come that are not the page's decoding.
    ahead: usize,
    /// The last character past ASCII was a Big5 code for `Ê` or `ê` that
    /// decodes to it and a combining accent (only they make one).
    accent: bool,
}

/// The spliced charsets, by how their characters are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Multi {
    ShiftJis,
    EucJp,
    /// GBK and gb18030 (four-byte sequences too).
    Gb,
    /// Big5 (HKSCS), EUC-KR (windows-949).
    Other,
    /// One byte a character, but well-formed UTF-8 (see [`SingleByte`]).
    Single,
}

impl Multi {
    fn of(e: &'static Encoding) -> Multi {
        match e {
            e if e == SHIFT_JIS => Multi::ShiftJis,
            e if e == EUC_JP => Multi::EucJp,
            e if e == GBK || e == GB18030 => Multi::Gb,
            e if e.is_single_byte() => Multi::Single,
            _ => Multi::Other,
        }
    }

    /// Whether `b` starts a character of more than one byte.
    fn is_lead(self, b: u8) -> bool {
        match self {
            Multi::ShiftJis => matches!(b, 0x81..=0x9f | 0xe0..=0xfc),
            Multi::EucJp => matches!(b, 0x8e | 0x8f | 0xa1..=0xfe),
            Multi::Gb | Multi::Other => (0x81..=0xfe).contains(&b),
            Multi::Single => false,
        }
    }
}

impl Splice {
    /// Writes the page's bytes for each stretch of `scanned` outside `ids`
    /// and the IDs between them, each in place of its `replaced` bytes of
    /// the page (ASCII: as many bytes as the scanner was given). `Err(i)`:
    /// `scanned[i..]` was not written, the page's bytes for it could not
    /// be told.
    fn write(
        &mut self,
        scanned: &[u8],
        ids: &mut [Range<usize>],
        replaced: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<(), usize> {
        let mut at = 0;
        let mut from = 0;
        for (id, &gone) in ids.iter_mut().zip(replaced) {
            self.stretch(&scanned[from..id.start], &mut at, out)
                .map_err(|i| from + i)?;
            from = id.end;
            let start = out.len();
            out.extend_from_slice(&scanned[id.clone()]);
            *id = start..out.len();
            // What the scanner was given ahead of the page's bytes first.
            let ahead = gone.min(self.ahead);
            self.ahead -= ahead;
            at = (at + gone - ahead).min(self.page.len());
        }
        let end = self.stretch(&scanned[from..], &mut at, out);
        self.page.drain(..at);
        end.map_err(|i| from + i)
    }

    /// Writes the page's bytes from `at` that decoded to `text`, up to
    /// where they cannot be told (`Err`).
    fn stretch(&mut self, text: &[u8], at: &mut usize, out: &mut Vec<u8>) -> Result<(), usize> {
        let mut i = self.ahead.min(text.len());
        out.extend_from_slice(&text[..i]);
        self.ahead -= i;
        let (page, start) = (&self.page[..], *at);
        let mut j = start;
        let end = 'walk: loop {
            // ASCII is one byte of the page, itself: eight at a time, then
            // one at a time up to the next other character.
            while let (Some(t), Some(p)) = (text.get(i..i + 8), page.get(j..j + 8)) {
                let t = u64::from_ne_bytes(t.try_into().expect("8 bytes"));
                if t != u64::from_ne_bytes(p.try_into().expect("8 bytes")) || t & 0x8080_8080_8080_8080 != 0 {
                    break;
                }
                (i, j) = (i + 8, j + 8);
            }
            while i < text.len() && text[i] < 0x80 {
                if page.get(j) != Some(&text[i]) {
                    break 'walk Err(i);
                }
                (i, j) = (i + 1, j + 1);
            }
            let Some(&c) = text.get(i) else {
                break Ok(());
            };
            if self.accent && matches!(text.get(i..i + 2), Some([0xcc, 0x84 | 0x8c])) {
                // Big5's four codes for a letter and its combining accent:
                // the accent's bytes are the letter's.
                (i, self.accent) = (i + 2, false);
                continue;
            }
            let Some(w) = width(self.multi, &page[j..], &text[i..]) else {
                break Err(i);
            };
            self.accent = self.multi == Multi::Other
                && w == 2
                && page[j] == 0x88
                && matches!(text.get(i..i + 2), Some([0xc3, 0x8a | 0xaa]));
            (i, j) = (i + utf8_len(c), j + w);
        };
        out.extend_from_slice(&page[start..j]);
        *at = j;
        end
    }
}

/// How many bytes at the start of `page` decoded to the non-ASCII character
/// at the start of `text`, by the Encoding Standard's decoders: a lead byte
/// and the bytes after it are one character, except that a malformed
/// sequence is U+FFFD for the lead byte alone when an ASCII byte follows
/// (the decoder reads it again); in a single-byte charset, a well-formed
/// UTF-8 sequence or one byte. `None` when `page` cannot have made it.
fn width(multi: Multi, page: &[u8], text: &[u8]) -> Option<usize> {
    let (&b, next) = (page.first()?, page.get(1).copied());
    if b < 0x80 {
        return None;
    }
    if multi == Multi::Single {
        let n = utf8_len(b);
        let utf8 = page.get(..n).is_some_and(is_utf8_char);
        return Some(if utf8 { n } else { 1 });
    }
    let w = match next {
        _ if !multi.is_lead(b) => 1,
        None => 1,
        Some(n) if text.starts_with("\u{fffd}".as_bytes()) => 1 + usize::from(n >= 0x80),
        Some(0x30..=0x39) if multi == Multi::Gb => 4,
        Some(_) if multi == Multi::EucJp && b == 0x8f => 3,
        Some(_) => 2,
    };
    (w <= page.len()).then_some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsets_from_headers_boms_and_meta() {
        assert_eq!(from_content_type("text/html; charset=UTF-16LE"), Some(UTF_16LE));
        assert_eq!(
            from_content_type("text/html;charset=\"iso-2022-jp\""),
            Some(ISO_2022_JP)
        );
        assert_eq!(from_content_type("text/html"), None);
        assert_eq!(from_bom(b"\xff\xfe<\x00"), Some(UTF_16LE));
        assert_eq!(from_bom(b"\xfe\xff\x00<"), Some(UTF_16BE));
        assert_eq!(
            from_meta(b"<html><head><META CHARSET=\"ISO-2022-JP\">"),
            Some(ISO_2022_JP)
        );
        assert_eq!(
            from_meta(b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-2022-jp\">"),
            Some(ISO_2022_JP)
        );
        assert_eq!(from_meta(b"<meta charset=utf-16>"), Some(encoding_rs::UTF_8));
        assert_eq!(from_meta(b"<meta name=x content=y><p>charset=koi8"), None);
        assert_eq!(from_meta(b"<meta charset=shift_jis"), None);
    }

    /// The scanner's output may end inside a character, a U+FFFD among
    /// them (whose width depends on its being one): the page's bytes come
    /// back wherever it is cut.
    #[test]
    fn spliced_output_cut_anywhere_is_the_page() {
        let page = b"\x81\x04 \x83\x58mjd \xff\x81 x\x88\x62\xc3\xa9\xe2\x82\xac\x81";
        let (latin, cyrillic) = (encoding_rs::WINDOWS_1252, encoding_rs::KOI8_R);
        for e in [SHIFT_JIS, EUC_JP, BIG5, GBK, GB18030, EUC_KR, latin, cyrillic] {
            let utf8 = Transcoder::splicing(e, 0).decode(page, true);
            for cut in 0..=utf8.len() {
                let mut t = Transcoder::splicing(e, 0);
                t.decode(page, true);
                let mut back = Vec::new();
                for (part, last) in [(&utf8[..cut], false), (&utf8[cut..], true)] {
                    let mut part = part.to_vec();
                    assert!(
                        t.write_back(&mut part, &mut [], &[], false, last),
                        "{} cut {cut}",
                        e.name()
                    );
                    back.extend(part);
                }
                assert_eq!(back, page, "{} cut {cut}", e.name());
            }
        }
    }

    /// A single-byte charset's decoder reads well-formed UTF-8 as UTF-8,
    /// every other byte as the charset's, however the bytes are cut; the
    /// page comes back from it byte for byte.
    #[test]
    fn single_byte_pages_read_utf8_where_it_is_well_formed() {
        use encoding_rs::{KOI8_R, WINDOWS_1252};
        // é in UTF-8, a lone lead byte, a cut-short sequence before ASCII,
        // an overlong, a no-break space, ü in UTF-8, and a lead at the end.
        let page = b"caf\xc3\xa9 \xc3 x\xe2\x82y \xc0\xaf \xa0 b\xc3\xbccher \xf0\x9f\x98\x80\xe2";
        let whole = Transcoder::splicing(WINDOWS_1252, 0).decode(page, true);
        assert_eq!(
            String::from_utf8(whole.clone()).unwrap(),
            "café Ã xâ\u{201a}y À¯ \u{a0} bücher 😀â"
        );
        for e in [WINDOWS_1252, KOI8_R] {
            let whole = Transcoder::splicing(e, 0).decode(page, true);
            for cut in 0..=page.len() {
                let mut t = Transcoder::splicing(e, 0);
                let mut utf8 = t.decode(&page[..cut], false);
                utf8.extend(t.decode(&page[cut..], true));
                assert_eq!(utf8, whole, "{} cut {cut}", e.name());
            }
        }
    }

    #[test]
    fn round_trips_byte_for_byte_in_any_chunking() {
        let text = "\u{feff}日本語のページ: mjd@plover.com です。";
        for e in [UTF_16LE, UTF_16BE, ISO_2022_JP] {
            let (bytes, _, _) = e.encode(text);
            let bytes: Vec<u8> = if e == UTF_16LE {
                text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
            } else if e == UTF_16BE {
                text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
            } else {
                bytes.into_owned()
            };
            for cut in 1..bytes.len() {
                let mut t = Transcoder::new(e);
                let mut utf8 = t.decode(&bytes[..cut], false);
                utf8.extend(t.decode(&bytes[cut..], true));
                let mut back = Vec::new();
                // Split the UTF-8 side too, inside a character where possible.
                let mid = cut.min(utf8.len());
                for (part, last) in [(&utf8[..mid], false), (&utf8[mid..], true)] {
                    let mut part = part.to_vec();
                    t.write_back(&mut part, &mut [], &[], false, last);
                    back.extend(part);
                }
                assert_eq!(back, bytes, "{} cut {cut}", e.name());
            }
        }
    }
}
