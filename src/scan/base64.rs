//! Addresses in base64, as scripts decode them and data URLs carry them:
//!
//! ```text
//! document.write(atob('PGEgaHJlZj0ibWFpbHRvOm1qZEBwbG92ZXIuY29tIj4…'));
//! <iframe src="data:text/html;base64,PGEgaHJlZj0ibWFpbHRvOm1qZEBw…">
//! ```
//!
//! A browser shows the link and its `mjd@plover.com`, and harvesters
//! decode every long base64 string they meet (the audit's `base64`
//! reading). The page's bytes hold neither an `@` nor the domain.
//!
//! # How
//!
//! A byte takes one of three places in base64's groups of three bytes
//! (four characters), and each place spells it differently. So `@` and each
//! protected domain, in each of the three places, is a search: the
//! characters that depend on those bytes alone (`QHBsb3Zlci5jb2` for
//! `@plover.com` at a group's start). One SIMD pass looks for all of them.
//!
//! A match tells where the `@`'s group starts. From there the string is
//! read: back a bounded way in whole groups (for the local part and what
//! comes before it), and forwards to its end. Its text is decoded and
//! scanned as any other, and each ID goes into the text before its `@`.
//!
//! # Written anew, not inserted
//!
//! An ID in base64 is no insertion: unless its length is a multiple of
//! three, every character after it changes. So the string is encoded again
//! from the group of its first ID to its end, padded unless it lacked
//! padding it needed (`atob()` takes both), and the munger is told of that
//! stretch ([`super::Munger::rewritten`]). Before it, not a byte changes.
//!
//! # Not read
//!
//! - The domain in capitals or any case but lowercase: base64 is
//!   case-sensitive, so each spelling would be a search of its own.
//! - base64url (`-` and `_`, as JSON Web Tokens use), and a string
//!   between two `.`s (a token's payload): an ID would break its
//!   signature, and `atob()` reads neither.
//! - A string wrapped across lines (as mail writes base64), or running on
//!   more than [`MAX_AHEAD`] characters past its address's group, or whose
//!   last character has bits left over that are not zero (a string cut
//!   short: written anew, they would not come back).
//! - Base64 inside another encoding (a script's character codes).

use aho_corasick::{AhoCorasick, Anchored, Input, MatchKind, StartKind};
use data_encoding::BASE64_NOPAD;

use super::spelled::{Reading, Stop};
use crate::address::Protection;

/// The most characters read back from the `@`'s group: a local part of
/// [`crate::address::MAX_LOCAL`] bytes and what may come before it
/// (`mailto:`, a URL's scheme), in whole groups.
const MAX_BACK: usize = 4 * 100;

/// The most characters read from the `@`'s group to the string's end: a
/// page of text a script writes (`document.write(atob(…))`).
pub(super) const MAX_AHEAD: usize = 16 * 1024;

/// The searches for `@` and each protected domain in base64.
#[derive(Debug)]
pub(super) struct Needles {
    /// The searches, for the scanner's own automaton to look for.
    patterns: Vec<Vec<u8>>,
    /// The same, for an anchored search at a match.
    searcher: AhoCorasick,
    /// For each search: how many characters of its `@`'s group come before
    /// its first (those depend on the bytes before the `@` too).
    lead: Vec<usize>,
    /// The bytes a search starts with: most candidates of the other
    /// searches (a label's first letter) are told from these by one load.
    firsts: [bool; 256],
}

impl Needles {
    /// The searches for `prot`'s domains, ASCII and as pages write
    /// international ones (UTF-8).
    pub(super) fn new(prot: &Protection) -> Needles {
        let unicode = prot.unicode_domains().map(|(u, _, _)| u);
        let domains = prot.entries().iter().map(|e| e.domain.as_bytes()).chain(unicode);
        let mut searches: Vec<(Vec<u8>, usize)> = domains
            .flat_map(|d| (0..3).map(move |place| in_place(d, place)))
            .collect();
        searches.sort_unstable();
        searches.dedup();
        let mut firsts = [false; 256];
        for (s, _) in &searches {
            firsts[usize::from(s[0])] = true;
        }
        let (patterns, lead): (Vec<_>, Vec<_>) = searches.into_iter().unzip();
        let searcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .start_kind(StartKind::Anchored)
            .build(&patterns)
            .expect("a handful of short searches build");
        Needles {
            patterns,
            searcher,
            lead,
            firsts,
        }
    }

    /// The searches, for the scanner to look for with its other literals.
    pub(super) fn patterns(&self) -> impl Iterator<Item = &[u8]> {
        self.patterns.iter().map(Vec::as_slice)
    }

    /// Where the group of the `@` whose search matches at `p` starts;
    /// `None` when none matches there, or that group's characters before
    /// `p` are not all base64's.
    pub(super) fn group_at(&self, data: &[u8], p: usize) -> Option<usize> {
        if !self.firsts[usize::from(data[p])] {
            return None;
        }
        let m = self
            .searcher
            .find(Input::new(&data[p..]).anchored(Anchored::Yes))?;
        let g = p.checked_sub(self.lead[m.pattern().as_usize()])?;
        data[g..p].iter().all(|&c| is_alphabet(c)).then_some(g)
    }
}

/// The search for `@domain` when the `@` is byte `place` (0, 1 or 2) of
/// its group: the characters that depend on those bytes alone, and how
/// many characters of the group come before them.
fn in_place(domain: &[u8], place: usize) -> (Vec<u8>, usize) {
    let mut bytes = vec![0; place];
    bytes.push(b'@');
    bytes.extend_from_slice(domain);
    let spelled = BASE64_NOPAD.encode(&bytes).into_bytes();
    // Character i holds bits 6i..6i+6: those after the `place` bytes
    // before the `@`, up to the last whole character.
    let (first, end) = ((8 * place).div_ceil(6), 8 * bytes.len() / 6);
    (spelled[first..end].to_vec(), first)
}

/// Whether `c` is a character of base64's alphabet (padding aside).
fn is_alphabet(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// A base64 string around an address, read.
#[derive(Debug)]
pub(super) struct Run {
    /// The text of its groups read, decoded.
    pub text: Vec<u8>,
    /// Where in the page the first group read starts.
    start: usize,
    /// Where the string ends in the page, padding included.
    pub end: usize,
    /// It ends in `=` padding, or needed none: written anew, it is padded.
    padded: bool,
}

impl Run {
    /// Where in the page the group holding the byte at `at` of `text`
    /// starts.
    pub(super) fn group_start(&self, at: usize) -> usize {
        self.start + at / 3 * 4
    }

    /// Writes the string from the group holding `text[ids[0].0]` to its
    /// end, with each `(at, id)` (ascending) inserted before `text[at]`,
    /// padded unless it lacked padding it needed.
    pub(super) fn write(&self, ids: &[(usize, Vec<u8>)], out: &mut Vec<u8>) {
        let Some(&(first, _)) = ids.first() else {
            return;
        };
        let from = first / 3 * 3;
        let mut plain =
            Vec::with_capacity(self.text.len() - from + ids.iter().map(|(_, id)| id.len()).sum::<usize>());
        let mut at = from;
        for (to, id) in ids {
            plain.extend_from_slice(&self.text[at..*to]);
            plain.extend_from_slice(id);
            at = *to;
        }
        plain.extend_from_slice(&self.text[at..]);
        let (start, len) = (out.len(), BASE64_NOPAD.encode_len(plain.len()));
        out.resize(start + len, 0);
        BASE64_NOPAD.encode_mut(&plain, &mut out[start..]);
        if self.padded {
            out.resize(start + len.next_multiple_of(4), b'=');
        }
    }
}

/// What reading a string found.
#[derive(Debug)]
pub(super) enum Read {
    /// A string `atob()` decodes, read.
    Run(Run),
    /// No string `atob()` decodes to an address here (see the module's
    /// "Not read"); what looked like one ends at `end`.
    Not { end: usize },
}

/// Reads the base64 string whose group at `g` holds an `@` a search found.
pub(super) fn read(buf: &[u8], g: usize, eof: bool) -> Result<Read, Stop> {
    let start = groups_back(buf, g);
    let r = Reading::ahead(buf, g, MAX_AHEAD, eof);
    let mut i = g;
    while r.peek(i)?.is_some_and(is_alphabet) {
        i += 1;
    }
    let chars = i - start;
    let mut pad = 0;
    while pad < 2 && r.peek(i)? == Some(b'=') {
        (i, pad) = (i + 1, pad + 1);
    }
    let whole = if pad > 0 {
        (chars + pad).is_multiple_of(4)
    } else {
        chars % 4 != 1
    };
    let ends = before_ends(buf, start) && after_ends(r, i, pad)? && !token_payload(buf, start, r, i)?;
    // Strictly: bits left over in the last character that are not zero
    // (a string cut short) would not come back as they were.
    let text = match BASE64_NOPAD.decode(&buf[start..start + chars]) {
        Ok(text) if whole && ends => text,
        _ => return Ok(Read::Not { end: i }),
    };
    Ok(Read::Run(Run {
        text,
        start,
        end: i,
        // A whole number of groups may have been padded: most encoders pad.
        padded: pad > 0 || chars.is_multiple_of(4),
    }))
}

/// Where reading back from the group at `g` stops: at most [`MAX_BACK`]
/// characters, in whole groups of the alphabet.
fn groups_back(buf: &[u8], g: usize) -> usize {
    let mut start = g;
    while g - start < MAX_BACK && start >= 4 && buf[start - 4..start].iter().all(|&c| is_alphabet(c)) {
        start -= 4;
    }
    start
}

/// Whether what comes before the groups read from `start` is no
/// base64url: the characters of the alphabet left over, then anything but
/// `-` or `_`.
fn before_ends(buf: &[u8], start: usize) -> bool {
    let i = string_start(buf, start);
    i == 0 || !matches!(buf[i - 1], b'-' | b'_')
}

/// Where the string starts, seen from the groups read from `start`: up to
/// three characters of the alphabet before them, which make no whole group.
/// (Where reading back stopped at [`MAX_BACK`], that is inside the string,
/// with a character of the alphabet before it.)
fn string_start(buf: &[u8], start: usize) -> usize {
    let mut i = start;
    while i > 0 && start - i < 3 && is_alphabet(buf[i - 1]) {
        i -= 1;
    }
    i
}

/// Whether the string ends at `i` (after `pad` `=`): nothing of base64 or
/// base64url follows, nor a line of it (a wrapped string).
fn after_ends(r: Reading<'_>, i: usize, pad: usize) -> Result<bool, Stop> {
    match r.peek(i)? {
        Some(c) if is_alphabet(c) || matches!(c, b'-' | b'_' | b'=') => Ok(false),
        Some(b'\r' | b'\n') if pad == 0 => {
            let mut j = i;
            while matches!(r.peek(j)?, Some(b'\r' | b'\n')) {
                j += 1;
            }
            Ok(!r.peek(j)?.is_some_and(is_alphabet))
        }
        _ => Ok(true),
    }
}

/// Whether the string is a token's payload: a `.` before and after it.
fn token_payload(buf: &[u8], start: usize, r: Reading<'_>, end: usize) -> Result<bool, Stop> {
    let i = string_start(buf, start);
    Ok(i > 0 && buf[i - 1] == b'.' && r.peek(end)? == Some(b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_place_spells_the_domain_its_own_way() {
        // `mjd@plover.com` puts the `@` first in its group.
        let s = BASE64_NOPAD.encode(b"mjd@plover.com");
        let (at_first, lead) = in_place(b"plover.com", 0);
        assert_eq!(lead, 0);
        assert!(s.contains(std::str::from_utf8(&at_first).unwrap()), "{s}");
        for local in ["d", "jd", "mjd", "john.smith"] {
            let place = local.len() % 3;
            let s = BASE64_NOPAD.encode(format!("{local}@plover.com").as_bytes());
            let (search, lead) = in_place(b"plover.com", place);
            let at = s.find(std::str::from_utf8(&search).unwrap()).unwrap();
            assert_eq!((at - lead) % 4, 0, "{local}: a group's start");
        }
    }
}
