//! Cloudflare's e-mail obfuscation, in pages saved or mirrored from a site
//! it served:
//!
//! ```text
//! <a href="/cdn-cgi/l/email-protection#3d5057597d4d5152...">
//! <span class="__cf_email__" data-cfemail="3d5057597d4d5152...">[email&#160;protected]</span>
//! ```
//!
//! The hex is a key byte, then the address's bytes each XORed with the key.
//! Cloudflare's script turns it back in the browser, and harvesters undo it
//! without running anything (the audit's `cfemail` reading). The bytes are
//! read into their text, that text is scanned as any other, and each ID
//! is written where its address's `@` is, XORed with the same key and in
//! hex too: an insertion, as every other.

use super::spelled::{Reading, Stop, skip_spaces_fwd};

/// What the scanner searches for: the word both forms share
/// (`data-cfemail=`, `email-protection#`).
pub(super) const MARK: &[u8] = b"email";
/// The link's form, from `MARK` to its hex.
const LINK: &[u8] = b"email-protection#";
/// The attribute's form: `cf` before `MARK`.
const ATTRIBUTE: &[u8] = b"cf";
/// The most bytes read from `MARK` to the hex's end: the form, spaces
/// around its `=`, and 512 hex digits (a key and a 255-byte text).
pub(super) const MAX_FORM: usize = 576;

/// An obfuscated text, read.
#[derive(Debug)]
pub(super) struct Hexed {
    pub key: u8,
    pub text: Vec<u8>,
    /// Where the hex of `text` starts in the page (after the key's).
    pub start: usize,
    /// Where the hex ends in the page.
    pub end: usize,
}

impl Hexed {
    /// Where in the page the hex of the byte at `at` in `text` starts:
    /// where an insertion before that byte goes.
    pub(super) fn page_position(&self, at: usize) -> usize {
        self.start + 2 * at
    }
}

/// Reads the obfuscated text whose form's `MARK` is at `r.q`: `None` when
/// it is no form of it, or its hex is not a key and whole bytes.
pub(super) fn read(r: Reading<'_>) -> Result<Option<Hexed>, Stop> {
    let Some(hex) = hex_start(r)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    let mut i = hex;
    while let Some(hi) = r.peek(i)?.and_then(digit) {
        let Some(lo) = r.peek(i + 1)?.and_then(digit) else {
            return Ok(None); // half a byte
        };
        bytes.push(hi << 4 | lo);
        i += 2;
    }
    let Some((&key, rest)) = bytes.split_first().filter(|(_, rest)| !rest.is_empty()) else {
        return Ok(None);
    };
    Ok(Some(Hexed {
        key,
        text: rest.iter().map(|b| b ^ key).collect(),
        start: hex + 2,
        end: i,
    }))
}

/// Where the hex starts after the form whose `MARK` is at `r.q`.
fn hex_start(r: Reading<'_>) -> Result<Option<usize>, Stop> {
    if r.starts(r.q, LINK)? {
        return Ok(Some(r.q + LINK.len()));
    }
    let attribute = r.q >= ATTRIBUTE.len() && r.buf[r.q - ATTRIBUTE.len()..].starts_with(ATTRIBUTE);
    if !attribute || !r.starts(r.q, MARK)? {
        return Ok(None);
    }
    let i = skip_spaces_fwd(r, r.q + MARK.len())?;
    if r.peek(i)? != Some(b'=') {
        return Ok(None);
    }
    let i = skip_spaces_fwd(r, i + 1)?;
    Ok(Some(match r.peek(i)? {
        Some(b'"' | b'\'') => i + 1,
        _ => i,
    }))
}

fn digit(c: u8) -> Option<u8> {
    // A hex digit is at most 15.
    char::from(c).to_digit(16).map(|d| d as u8)
}

/// Writes `plain` (an ID: ASCII) as the hex of its bytes XORed with `key`.
pub(super) fn write_hex(plain: &[u8], key: u8, out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &c in plain {
        let b = c ^ key;
        out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(buf: &[u8], q: usize, eof: bool) -> Reading<'_> {
        Reading::ahead(buf, q, MAX_FORM, eof)
    }

    fn hex(key: u8, text: &[u8]) -> String {
        let mut out = vec![];
        write_hex(&[0], key, &mut out);
        write_hex(text, key, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn both_forms_are_read_into_their_text() {
        let h = hex(0x3d, b"mjd@plover.com");
        for page in [
            format!("<a href=\"/cdn-cgi/l/email-protection#{h}\">"),
            format!("<span data-cfemail=\"{h}\">"),
            format!("<span data-cfemail = '{}'>", h.to_uppercase()),
            format!("<span data-cfemail={h}>"),
        ] {
            let q = page.find("email").unwrap();
            let read = read(reading(page.as_bytes(), q, true)).ok().flatten().unwrap();
            assert_eq!(read.key, 0x3d, "{page}");
            assert_eq!(read.text, b"mjd@plover.com", "{page}");
            let at = &page[read.page_position(3)..][..2];
            assert!(at.eq_ignore_ascii_case("7d"), "{page}");
            let hex_end = page.rfind(|c: char| c.is_ascii_hexdigit()).unwrap() + 1;
            assert_eq!(read.end, hex_end, "{page}");
        }
    }

    #[test]
    fn other_text_is_not() {
        for page in [
            &b"email us"[..],
            b"data-email=\"3d50\"",
            b"cfemail=\"3d\"",
            b"cfemail=\"3d505\"",
            b"email-protection#zz",
            b"cfemail:3d50",
        ] {
            let q = memchr::memmem::find(page, b"email").unwrap();
            assert!(matches!(read(reading(page, q, true)), Ok(None)), "{page:?}");
        }
        assert!(matches!(
            read(reading(b"cfemail=\"3d5", 2, false)),
            Err(Stop::Short)
        ));
    }

    #[test]
    fn ids_are_written_as_hex() {
        let mut out = Vec::new();
        write_hex(b"-id-", 0x3d, &mut out);
        // `-` is 0x2d, `i` 0x69, `d` 0x64.
        assert_eq!(out, b"10545910");
    }
}
