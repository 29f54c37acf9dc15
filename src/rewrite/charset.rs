//! Charsets the scanner cannot read as bytes. ASCII-compatible charsets
//! (UTF-8, Latin-1, Shift_JIS for our purposes, …) are scanned as they are:
//! an address is ASCII in all of them. UTF-16 and ISO-2022-JP are not: UTF-16
//! interleaves zero bytes, and ISO-2022-JP's two-byte JIS sequences use bytes
//! that look like `@` and letters. Those bodies are decoded to UTF-8
//! (encoding_rs), scanned, and encoded back into their own charset, so the
//! visitor gets the charset the server declared. The inserted text is ASCII,
//! which every one of them can carry, so re-encoding never loses anything.
//!
//! Which charset applies is decided, as a browser does, from a byte-order
//! mark, else the `Content-Type` charset, else (HTML) a `<meta charset>` or
//! `<meta http-equiv content="…; charset=…">` in the first 1024 bytes.

use encoding_rs::{Encoding, ISO_2022_JP, UTF_16BE, UTF_16LE};

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
        let end = memchr::memchr(b'>', &lower[start..]).map_or(lower.len(), |e| start + e);
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

/// Whether a body in `e` must be transcoded to be scanned.
pub fn needs_transcoding(e: &'static Encoding) -> bool {
    e == UTF_16LE || e == UTF_16BE || e == ISO_2022_JP
}

/// False when bytes said to be UTF-16 (by a header, without a byte-order
/// mark) cannot be: markup, digits and `@` in UTF-16 each carry a zero
/// byte, and 16 bytes without one are ASCII-compatible text that lies
/// about its charset. A harvester reads such bytes as they are, so they
/// must be scanned as they are.
pub fn could_be_utf16(e: &'static Encoding, head: &[u8]) -> bool {
    !is_utf16(e) || head.len() < 16 || head.contains(&0)
}

/// UTF-16 in either byte order.
pub fn is_utf16(e: &'static Encoding) -> bool {
    e == UTF_16LE || e == UTF_16BE
}

/// Decodes a body to UTF-8 and encodes the scanned UTF-8 back, streaming.
pub struct Transcoder {
    encoding: &'static Encoding,
    decoder: encoding_rs::Decoder,
    encoder: Option<encoding_rs::Encoder>,
    /// Scanned UTF-8 that ends inside a character, kept for the next chunk.
    carry: Vec<u8>,
}

impl Transcoder {
    /// For a body in `encoding` (one of [`needs_transcoding`]'s).
    pub fn new(encoding: &'static Encoding) -> Transcoder {
        Transcoder {
            encoding,
            // Keep a BOM as U+FEFF so it is written back where it was.
            decoder: encoding.new_decoder_without_bom_handling(),
            // encoding_rs writes UTF-16 only as UTF-8 (the Encoding Standard
            // has no UTF-16 encoder), so UTF-16 is encoded by hand below.
            encoder: (encoding == ISO_2022_JP).then(|| encoding.new_encoder()),
            carry: Vec::new(),
        }
    }

    /// Decodes one chunk (malformed input becomes U+FFFD, as a browser shows it).
    pub fn decode(&mut self, data: &[u8], last: bool) -> Vec<u8> {
        let mut out = String::with_capacity(
            self.decoder
                .max_utf8_buffer_length(data.len())
                .unwrap_or(data.len() * 3 + 16),
        );
        let _ = self.decoder.decode_to_string(data, &mut out, last);
        out.into_bytes()
    }

    /// Encodes scanned UTF-8 back into the body's charset.
    pub fn encode(&mut self, utf8: &[u8], last: bool) -> Vec<u8> {
        self.carry.extend_from_slice(utf8);
        let whole = match std::str::from_utf8(&self.carry) {
            Ok(_) => self.carry.len(),
            // An incomplete character at the end waits for the next chunk.
            Err(e) if e.error_len().is_none() && !last => e.valid_up_to(),
            Err(e) => e.valid_up_to(),
        };
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
                back.extend(t.encode(&utf8[..mid], false));
                back.extend(t.encode(&utf8[mid..], true));
                assert_eq!(back, bytes, "{} cut {cut}", e.name());
            }
        }
    }
}
