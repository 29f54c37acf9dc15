//! Text a script writes from character codes, as e-mail "encoders" hand
//! site owners to paste:
//!
//! ```text
//! document.write(String.fromCharCode(60, 97, 32, 104, 114, 101, 102, 61, …));
//! ```
//!
//! A browser running it, and a harvester that runs it, shows the link and
//! its `mjd@plover.com`; the page's bytes hold only numbers. The call's
//! codes are read into the text they spell, that text is scanned as any
//! other (so it may hold several addresses, in any spelling the scanner
//! reads), and each ID is written where its address's codes are, as codes
//! too (`…, 100, 45, 105, 100, 45, …, 64, …`: `d`, then `-id-…`, then `@`).
//!
//! The codes may also come as an array literal through `.apply`
//! (`String.fromCharCode.apply(null, [109, 106, …])`), as other encoders
//! write them. Only codes that are all number literals (decimal or `0x`
//! hex) are read; codes built by arithmetic, an array named rather than
//! written out, codes that spell another call's codes, or a call of more
//! than [`MAX_CALL`] bytes are not.

use std::io::Write;
use std::sync::Arc;

use super::script;
use super::spelled::{Reading, Stop, skip_spaces_fwd};
use super::{Found, LeftAlone, Matcher, Munger, Written};

/// The function's name, as scripts write it after `String.`: what the
/// scanner searches for.
pub(super) const CALL: &[u8] = b"fromCharCode";
/// How an array of codes is passed to it instead of arguments.
const APPLY: &[u8] = b".apply(";
/// The longest call read, from its name to its `)`: a long link in codes
/// (six bytes or so per character).
pub(super) const MAX_CALL: usize = 4096;
/// The most digits a code is written with (`0x0000040`).
const MAX_DIGITS: usize = 8;

/// A call's codes, read.
#[derive(Debug, Default)]
pub(super) struct Codes {
    /// The text they spell, as UTF-8.
    pub text: Vec<u8>,
    /// For each code: where it starts in the page, and where its character
    /// starts in `text`.
    pub starts: Vec<(usize, usize)>,
    /// Where the call ends in the page: past its `)`.
    pub end: usize,
}

impl Codes {
    /// Where in the page the code of the character at `at` in `text`
    /// starts: where an insertion before that character goes.
    pub(super) fn page_position(&self, at: usize) -> Option<usize> {
        let k = self.starts.binary_search_by_key(&at, |&(_, t)| t).ok()?;
        Some(self.starts[k].0)
    }
}

/// The protected addresses a text decoded from the page holds (a call's
/// codes, Cloudflare's hex), scanned as a page is.
pub(super) fn addresses(text: &[u8], matcher: &Arc<Matcher>) -> Vec<Coded> {
    let mut coded = AllCoded(Vec::new());
    if matcher.may_hold_address(text) {
        matcher.rewrite(text, &mut coded);
    }
    coded.0
}

/// A protected address a decoded text (a call's codes) spells.
#[derive(Debug)]
pub(super) struct Coded {
    /// Where its ID goes in the text.
    pub at: usize,
    pub local: String,
    pub entry: usize,
    /// Why it is to be left as written, when it is.
    pub left_alone: Option<LeftAlone>,
}

impl Coded {
    /// It as found at `offset` in the stream, by the entry of `prot`.
    pub(super) fn found<'a>(&'a self, prot: &'a crate::address::Protection, offset: u64) -> Found<'a> {
        Found {
            local: &self.local,
            domain: &prot.entries()[self.entry].domain,
            entry: self.entry,
            offset,
        }
    }
}

/// Notes what scanning a decoded text finds, writing nothing.
struct AllCoded(Vec<Coded>);

impl AllCoded {
    fn note(&mut self, found: &Found<'_>, left_alone: Option<LeftAlone>) {
        self.0.push(Coded {
            // The text is a few KiB at most.
            at: usize::try_from(found.offset).unwrap_or(usize::MAX),
            local: found.local.to_owned(),
            entry: found.entry,
            left_alone,
        });
    }
}

impl Munger for AllCoded {
    fn munge(&mut self, found: &Found<'_>, _out: &mut Vec<u8>) {
        self.note(found, None);
    }

    /// A decoded text that itself encodes an address (codes that spell
    /// another call's codes): its ID would have to be encoded twice. No
    /// encoder writes that; not taken.
    fn munge_as(&mut self, found: &Found<'_>, _out: &mut Vec<u8>, written: Written) {
        if written == Written::Plain {
            self.note(found, None);
        }
    }

    fn left_alone(&mut self, found: &Found<'_>, why: LeftAlone) {
        self.note(found, Some(why));
    }

    /// base64 inside a decoded text: likewise not taken.
    fn id(&mut self, _found: &Found<'_>, _id: &mut Vec<u8>) {}
}

/// Reads the call starting at `r.q` (at its name): `None` when it is no
/// call (or `.apply` of an array literal), a code is not a number literal,
/// or one is not a character.
pub(super) fn read(r: Reading<'_>) -> Result<Option<Codes>, Stop> {
    let Some((mut i, close)) = codes_start(r)? else {
        return Ok(None);
    };
    let mut codes = Codes::default();
    loop {
        i = skip_spaces_fwd(r, i)?;
        let Some((code, e)) = number(r, i)? else {
            return Ok(None);
        };
        let Some(c) = char::from_u32(code) else {
            return Ok(None);
        };
        codes.starts.push((i, codes.text.len()));
        let mut utf8 = [0; 4];
        codes.text.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        i = skip_spaces_fwd(r, e)?;
        match r.peek(i)? {
            Some(b',') => i += 1,
            Some(c) if c == close => {
                let Some(end) = call_end(r, i + 1, close)? else {
                    return Ok(None);
                };
                codes.end = end;
                return Ok(Some(codes));
            }
            _ => return Ok(None),
        }
    }
}

/// Where the first code starts after the name at `r.q`, and the byte that
/// closes the codes: `)` for arguments, `]` for `.apply`'s array, whose
/// first argument (`null`, `this`, `String`) is a name.
fn codes_start(r: Reading<'_>) -> Result<Option<(usize, u8)>, Stop> {
    let i = r.q + CALL.len();
    if r.peek(i)? == Some(b'(') {
        return Ok(Some((i + 1, b')')));
    }
    if !r.starts(i, APPLY)? {
        return Ok(None);
    }
    let (this, e) = script::name_fwd(r, skip_spaces_fwd(r, i + APPLY.len())?)?;
    let i = skip_spaces_fwd(r, e)?;
    if !script::starts_name(this) || r.peek(i)? != Some(b',') {
        return Ok(None);
    }
    let i = skip_spaces_fwd(r, i + 1)?;
    Ok((r.peek(i)? == Some(b'[')).then_some((i + 1, b']')))
}

/// Where the call ends (past its `)`), the codes closed at `after - 1`.
fn call_end(r: Reading<'_>, after: usize, close: u8) -> Result<Option<usize>, Stop> {
    if close == b')' {
        return Ok(Some(after));
    }
    let i = skip_spaces_fwd(r, after)?;
    Ok((r.peek(i)? == Some(b')')).then_some(i + 1))
}

/// The number literal at `i` (`64`, `0x40`) and where it ends; `None` when
/// there is none or it is more than a UTF-16 code unit.
fn number(r: Reading<'_>, i: usize) -> Result<Option<(u32, usize)>, Stop> {
    let hex = r.peek(i)? == Some(b'0') && matches!(r.peek(i + 1)?, Some(b'x' | b'X'));
    let (radix, start) = if hex { (16, i + 2) } else { (10, i) };
    let (mut value, mut e) = (0u32, start);
    while let Some(d) = r.peek(e)?.and_then(|c| char::from(c).to_digit(radix)) {
        if e - start == MAX_DIGITS {
            return Ok(None);
        }
        value = value * radix + d;
        e += 1;
    }
    // `fromCharCode` takes UTF-16 code units: larger values wrap, which
    // no encoder writes.
    Ok((e > start && value <= 0xffff).then_some((value, e)))
}

/// Writes `plain` (an ID: ASCII) as a `fromCharCode` call's codes, each
/// followed by a comma, to go before another code of the call.
pub(super) fn write_codes(plain: &[u8], out: &mut Vec<u8>) {
    for &c in plain {
        // Writing to a `Vec` cannot fail.
        let _ = write!(out, "{c},");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(buf: &[u8], eof: bool) -> Reading<'_> {
        Reading::ahead(buf, 0, MAX_CALL, eof)
    }

    #[test]
    fn calls_are_read_into_their_text() {
        let call = b"fromCharCode(109, 0x6a,100 ,\n64, 0X70)+x";
        let codes = read(reading(call, true)).ok().flatten().unwrap();
        assert_eq!(codes.text, b"mjd@p");
        assert_eq!(codes.end, call.len() - 2);
        assert_eq!(codes.page_position(3), Some(29));
        assert_eq!(&call[29..31], b"64");
        let apply = b"fromCharCode.apply( null ,[109, 0x6a,100] ) ;";
        let codes = read(reading(apply, true)).ok().flatten().unwrap();
        assert_eq!(codes.text, b"mjd");
        assert_eq!(codes.end, apply.len() - 2);
        assert_eq!(codes.page_position(1), Some(32));
        for bad in [
            &b"fromCharCode()"[..],
            b"fromCharCode",
            b"fromCharCode.call(null, 64)",
            b"fromCharCode.apply(null, codes)",
            b"fromCharCode.apply([64])",
            b"fromCharCode.apply(null, [64]",
            b"fromCharCode.apply(null, [64], 1)",
            b"fromCharCode(a)",
            b"fromCharCode(64;",
            b"fromCharCode(70000)",
        ] {
            assert!(matches!(read(reading(bad, true)), Ok(None)), "{bad:?}");
        }
        assert!(matches!(
            read(reading(b"fromCharCode(64, 6", false)),
            Err(Stop::Short)
        ));
        assert!(matches!(read(reading(b"fromCharCode(64, 6", true)), Ok(None)));
    }

    #[test]
    fn ids_are_written_as_codes() {
        let mut out = Vec::new();
        write_codes(b"-id-a0z", &mut out);
        assert_eq!(out, b"45,105,100,45,97,48,122,");
    }
}
