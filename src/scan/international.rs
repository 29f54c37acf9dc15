//! The protected international domains as a page writes them: in Unicode
//! (`mjd@bücher.example` for `xn--bcher-kva.example`), raw or with its
//! characters spelled as references (`b&uuml;cher`, `b&#252;cher`, as older
//! editors write every letter outside ASCII) or percent-encoded UTF-8
//! (`mailto:mjd@b%C3%BCcher.example`). Harvesters decode all of these.
//! The spelled-out reader takes its labels from here too (`mjd [at]
//! bücher [dot] example`).

use super::{Fwd, Pair, Scratch, decode_fwd, hex_pair, percent_utf8};
use crate::address::Protection;

/// What the bytes after an `@` are as an international domain in Unicode.
pub(super) enum Unicode<'p> {
    /// A protected one: the entries.
    Found(&'p [usize]),
    NeedMore,
    No,
}

/// The protected international domain written at `buf[start..]`, whatever
/// the number of domains. The scratch gets its ASCII form: the ID is made
/// for the address as mail carries it.
#[cold]
pub(super) fn unicode_domain<'p>(
    prot: &'p Protection,
    buf: &[u8],
    start: usize,
    eof: bool,
    sc: &mut Scratch,
) -> Unicode<'p> {
    for (uni, ascii, ids) in prot.unicode_domains() {
        let end = match spelled_as(buf, start, uni, eof) {
            Spelling::EndsAt(end) => end,
            Spelling::NeedMore => return Unicode::NeedMore,
            Spelling::Not => continue,
        };
        // Dots may end a sentence; a label after them is another domain's.
        let dots = buf
            .get(end..)
            .map_or(0, |r| r.iter().take_while(|&&c| c == b'.').count());
        match decode_fwd(buf, end + dots, eof) {
            Fwd::Char(c, _) if c.is_ascii_alphanumeric() || c == b'-' || c == b'.' => continue,
            Fwd::Char(..) => {}
            Fwd::NeedMore if !eof => return Unicode::NeedMore,
            Fwd::NeedMore => {}
        }
        let Some(d) = sc.domain.get_mut(..ascii.len()) else {
            continue;
        };
        d.copy_from_slice(ascii);
        sc.domain_len = ascii.len();
        sc.domain_end = end;
        return Unicode::Found(ids);
    }
    Unicode::No
}

/// Whether a domain is spelled at a place.
pub(super) enum Spelling {
    /// It is, up to here.
    EndsAt(usize),
    /// The spelling may continue past the end of the buffer.
    NeedMore,
    Not,
}

/// Whether `buf[start..]` spells `uni` (in any case).
pub(super) fn spelled_as(buf: &[u8], start: usize, uni: &[u8], eof: bool) -> Spelling {
    let Ok(uni) = std::str::from_utf8(uni) else {
        return Spelling::Not;
    };
    let mut at = start;
    for want in uni.chars() {
        match char_fwd(buf, at, eof) {
            Uni::Char(c, n) if c == want || c.to_lowercase().eq([want]) => at += n,
            Uni::NeedMore if !eof => return Spelling::NeedMore,
            _ => return Spelling::Not,
        }
    }
    Spelling::EndsAt(at)
}

/// One character going forwards.
enum Uni {
    /// The character and how many bytes spell it.
    Char(char, usize),
    /// The spelling may continue past the end of the buffer.
    NeedMore,
    /// None a domain holds.
    Not,
}

/// The character spelled at `buf[i..]`: raw UTF-8, a reference to one
/// outside ASCII (`&#252;`, `&#xFC;`, a letter's name), percent-encoded
/// UTF-8, or ASCII in any spelling [`decode_fwd`] reads.
fn char_fwd(buf: &[u8], i: usize, eof: bool) -> Uni {
    let Some(&c) = buf.get(i) else {
        return Uni::NeedMore;
    };
    let rest = &buf[i..];
    let spelled = match c {
        0x80.. => Some(raw_fwd(rest, eof)),
        b'&' => reference_fwd(rest, eof),
        // An ASCII byte percent-encoded is decode_fwd's.
        b'%' => match hex_pair(rest, 1, eof) {
            Pair::Value(lead @ 0x80.., at) => Some(match percent_utf8(rest, lead, at, eof) {
                Pair::Value(v, end) => char::from_u32(v).map_or(Uni::Not, |c| Uni::Char(c, end)),
                Pair::NeedMore => Uni::NeedMore,
                Pair::Not => Uni::Not,
            }),
            Pair::NeedMore => Some(Uni::NeedMore),
            _ => None,
        },
        _ => None,
    };
    match spelled {
        Some(u) => u,
        None => match decode_fwd(buf, i, eof) {
            Fwd::Char(v, n) if v.is_ascii() => Uni::Char(char::from(v), n),
            Fwd::Char(..) => Uni::Not,
            Fwd::NeedMore => Uni::NeedMore,
        },
    }
}

/// One raw UTF-8 character outside ASCII at the start of `rest`.
fn raw_fwd(rest: &[u8], eof: bool) -> Uni {
    let len = match rest[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Uni::Not,
    };
    match rest.get(..len) {
        Some(s) => match std::str::from_utf8(s).ok().and_then(|s| s.chars().next()) {
            Some(c) => Uni::Char(c, len),
            None => Uni::Not,
        },
        None if eof => Uni::Not,
        None => Uni::NeedMore,
    }
}

/// A reference to a character outside ASCII at the start of `rest`;
/// `None` for any other, which [`decode_fwd`] reads.
fn reference_fwd(rest: &[u8], eof: bool) -> Option<Uni> {
    let body = &rest[1..];
    let end = body.iter().take(MAX_NAME + 2).position(|&c| c == b';');
    let Some(end) = end else {
        let open = body.len() <= MAX_NAME + 1 && body.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'#');
        return (open && !eof).then_some(Uni::NeedMore);
    };
    let name = std::str::from_utf8(&body[..end]).ok()?;
    let c = match name.strip_prefix('#') {
        Some(num) => {
            // Digits only: Rust's parsers take a leading `+`, which no
            // browser reads in a reference (`&#x+DC;` is text).
            let (digits, radix) = match num.strip_prefix(['x', 'X']) {
                Some(hex) => (hex, 16),
                None => (num, 10),
            };
            if !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            let v = u32::from_str_radix(digits, radix).ok()?;
            char::from_u32(v)?
        }
        None => LETTERS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?.1,
    };
    (!c.is_ascii()).then_some(Uni::Char(c, end + 2))
}

/// The longest name in [`LETTERS`], and more than any number's digits.
const MAX_NAME: usize = 8;

/// HTML's names for the letters of Latin-1 and Latin Extended-A, in lower
/// case (a domain is read in any case): the letters of European
/// international domains.
const LETTERS: &[(&str, char)] = &[
    ("aacute", 'á'),
    ("abreve", 'ă'),
    ("acirc", 'â'),
    ("aelig", 'æ'),
    ("agrave", 'à'),
    ("amacr", 'ā'),
    ("angst", 'å'),
    ("aogon", 'ą'),
    ("aring", 'å'),
    ("atilde", 'ã'),
    ("auml", 'ä'),
    ("cacute", 'ć'),
    ("ccaron", 'č'),
    ("ccedil", 'ç'),
    ("ccirc", 'ĉ'),
    ("cdot", 'ċ'),
    ("dcaron", 'ď'),
    ("dstrok", 'đ'),
    ("eacute", 'é'),
    ("ecaron", 'ě'),
    ("ecirc", 'ê'),
    ("edot", 'ė'),
    ("egrave", 'è'),
    ("emacr", 'ē'),
    ("eng", 'ŋ'),
    ("eogon", 'ę'),
    ("eth", 'ð'),
    ("euml", 'ë'),
    ("gbreve", 'ğ'),
    ("gcedil", 'ģ'),
    ("gcirc", 'ĝ'),
    ("gdot", 'ġ'),
    ("hcirc", 'ĥ'),
    ("hstrok", 'ħ'),
    ("iacute", 'í'),
    ("icirc", 'î'),
    ("igrave", 'ì'),
    ("ijlig", 'ĳ'),
    ("imacr", 'ī'),
    ("imath", 'ı'),
    ("inodot", 'ı'),
    ("iogon", 'į'),
    ("itilde", 'ĩ'),
    ("iuml", 'ï'),
    ("jcirc", 'ĵ'),
    ("kcedil", 'ķ'),
    ("kgreen", 'ĸ'),
    ("lacute", 'ĺ'),
    ("lcaron", 'ľ'),
    ("lcedil", 'ļ'),
    ("lmidot", 'ŀ'),
    ("lstrok", 'ł'),
    ("nacute", 'ń'),
    ("napos", 'ŉ'),
    ("ncaron", 'ň'),
    ("ncedil", 'ņ'),
    ("ntilde", 'ñ'),
    ("oacute", 'ó'),
    ("ocirc", 'ô'),
    ("odblac", 'ő'),
    ("oelig", 'œ'),
    ("ograve", 'ò'),
    ("omacr", 'ō'),
    ("oslash", 'ø'),
    ("otilde", 'õ'),
    ("ouml", 'ö'),
    ("racute", 'ŕ'),
    ("rcaron", 'ř'),
    ("rcedil", 'ŗ'),
    ("sacute", 'ś'),
    ("scaron", 'š'),
    ("scedil", 'ş'),
    ("scirc", 'ŝ'),
    ("szlig", 'ß'),
    ("tcaron", 'ť'),
    ("tcedil", 'ţ'),
    ("thorn", 'þ'),
    ("tstrok", 'ŧ'),
    ("uacute", 'ú'),
    ("ubreve", 'ŭ'),
    ("ucirc", 'û'),
    ("udblac", 'ű'),
    ("ugrave", 'ù'),
    ("umacr", 'ū'),
    ("uogon", 'ų'),
    ("uring", 'ů'),
    ("utilde", 'ũ'),
    ("uuml", 'ü'),
    ("wcirc", 'ŵ'),
    ("yacute", 'ý'),
    ("ycirc", 'ŷ'),
    ("yuml", 'ÿ'),
    ("zacute", 'ź'),
    ("zcaron", 'ž'),
    ("zdot", 'ż'),
];
