//! Finding protected addresses in raw bytes, streaming, in every encoding a
//! harvester would undo, and inserting `SEP TOKEN` just before the `@`.
//!
//! # Why bytes, and why context-free
//!
//! The text inserted is only `[a-z0-9-]`, which needs no escaping in any HTML,
//! URL, JavaScript, CSS or JSON context, so the scanner never needs to know
//! where in a document it is. Working on bytes keeps every other byte
//! identical (an HTML parser would normalise invalid UTF-8 and still hand us
//! raw entities), works the same for HTML, XML feeds, JSON, JS, CSS and plain
//! text, and runs near memory speed.
//!
//! # How
//!
//! A `memchr` prefilter finds the bytes every spelling of `@` starts with
//! (`@`, `&`, `%`, `\\`, and UTF-8's `0xEF`): `@`, `&#64;`, `&#x40;`, `&#064`,
//! `&amp;#64;`, `&commat;`, `%40`, `\\u0040`, `\\x40`, and the fullwidth `＠`
//! and small `﹫` (Japanese and Chinese pages write them, and harvesters
//! normalise them) in any of those spellings. `memchr3` covers the first
//! three in one SIMD pass; the rarer two get their own pass whose result is
//! cached, so each byte is looked at a bounded number of times. For each real `@`, the domain is decoded forwards
//! and the local part backwards, each character in any of: literal (any
//! case), numeric or named character reference, `%HH`, `\xHH`, `\uHHHH`,
//! `\u{HH}`, and its fullwidth form (`ｍ`, `．`, and the ideographic full stop `。`).
//! Characters that render as nothing (a soft hyphen, zero-width spaces and
//! joiners, direction marks, a word joiner, in any spelling; at most [`MAX_INVISIBLE`] in a
//! part) are skipped, as a reader's copy and a harvester's clean-up skip
//! them. The decoded domain must be a
//! whole protected domain (the next character is not `[a-z0-9-]`, and a `.`
//! only ends it when no label follows); the local part is the run of
//! `[a-z0-9._+-]` before the `@` (leading dots dropped), at most 64 octets.
//! When a `[[protect]]` entry protects it and no exemption matches, the
//! [`Munger`] writes the insertion just before the first byte of the `@` form.
//! Spelled-out addresses (`john [at] plover [dot] com`, a script's join of
//! literals) are `spelled`'s; an `@` a script joins to names (`user + '@' +
//! site`) is `script`'s.
//!
//! # Streaming and memory
//!
//! A [`Scanner`] keeps at most [`HISTORY`] already-emitted bytes (enough to
//! decode any local part backwards) plus the bytes after a candidate that
//! is not decided yet: for an `@`, bounded by the longest protected domain
//! times the longest character spelling; for a script's character codes or
//! a base64 string, by the longest read (`char_codes::MAX_CALL`,
//! `base64::MAX_AHEAD`). Output for any split of the input into
//! chunks equals the one-shot output, and memory per stream is a constant
//! independent of the input's size.

mod base64;
mod cfemail;
mod char_codes;
mod international;
mod reversed;
mod rot13;
mod script;
mod spelled;

use std::ops::Range;
use std::sync::Arc;

use memchr::{memchr2, memchr3};

use self::base64::Read;
use self::char_codes::{Coded, Codes};
use self::international::{Unicode, unicode_domain};
use self::reversed::Reversed;
use self::rot13::Rot13;
use self::script::Joined;
use self::spelled::{MAX_SEARCHES, Reading, Spelled, Spelt, Stop};
use crate::address::{Class, MAX_LOCAL, Protection, is_domain_char, is_local_char};

/// What a script's `fromCharCode` is called on.
const STRING: &[u8] = b"String.";

/// Elements whose tags do not break a word in rendered text: an address
/// split by them reads whole (`john<span></span>@plover.com`).
pub const INLINE: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd", "mark", "q",
    "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var", "wbr",
];

/// The longest spelling of one character we decode, in bytes: a numeric
/// reference with leading zeros, possibly double-encoded (`&amp;#x0040;`).
const MAX_FORM: usize = 16;
/// The longest single character reference we accept (`&#x0000040;`).
const MAX_ENTITY: usize = 12;
/// Characters that render as nothing skipped in one part of an address
/// (its local part, its domain); more, and it is not taken for one.
const MAX_INVISIBLE: usize = 8;
/// How far back from an `@` a local part can reach, in bytes.
const BACK: usize = (MAX_LOCAL + 1 + MAX_INVISIBLE) * MAX_FORM;
/// How far back from an `@` the scanner looks for the `scheme://` of a URL
/// whose userinfo it may be: a local part's worth, a password's and a
/// user name's, the `//` and a scheme, spelled literally or in short forms.
/// Further back than this, an address is an address.
const AUTHORITY_BACK: usize = 2 * BACK;
/// Already-emitted bytes a scanner keeps for looking backwards.
pub const HISTORY: usize = AUTHORITY_BACK;
/// The longest URL scheme recognised before `://`.
const MAX_SCHEME: usize = 32;
/// Bytes held back at a chunk's end because an `@` spelling may start there
/// (the longest spelling the prefilter must see whole, `&commat;`, minus one).
const HOLD: usize = 7;
/// Dots tolerated after a domain before we stop looking for its end.
const TRAILING_DOTS: usize = 8;
/// A value for a decoded character that is not ASCII.
const NON_ASCII: u8 = 0xff;
/// A value for a decoded character that renders as nothing: U+00AD (soft
/// hyphen), U+200B-U+200F (zero-width space, non-joiner, joiner, left-to-right
/// and right-to-left marks), U+2060 (word joiner), U+FEFF (zero-width
/// no-break space).
const INVISIBLE: u8 = 0xfe;
/// The lead bytes of the raw UTF-8 characters [`to_char`] reads: U+00AD
/// (`0xC2`), U+200B-U+2060 (`0xE2`), U+3002 (`0xE3`), U+FE6B-U+FF61 (`0xEF`).
const UTF8_LEADS: [u8; 4] = [0xc2, 0xe2, 0xe3, 0xef];

/// A protected address the scanner found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found<'a> {
    /// The decoded base local part, lowercase.
    pub local: &'a str,
    /// The decoded domain, lowercase.
    pub domain: &'a str,
    /// The index of the `[[protect]]` entry that protects it.
    pub entry: usize,
    /// Where its ID goes in the stream, in bytes: where its `@` (in
    /// whatever spelling) starts, or the closing quote of a quoted local
    /// part (`"mjd"@plover.com`), or for a spelled-out address
    /// (`john [at] plover [dot] com`) where its local part ends, or for
    /// one in base64 where the group of four characters its `@` is in
    /// starts.
    pub offset: u64,
}

/// Why a protected `local@domain` was left alone: it is not an e-mail
/// address but something a visitor copies and runs, which an ID would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftAlone {
    /// The userinfo of a URL authority: `scheme://user[:password]@host`.
    UrlUserinfo,
    /// An scp-style remote: `user@host:path` (git, scp, rsync).
    Remote,
}

impl std::fmt::Display for LeftAlone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeftAlone::UrlUserinfo => {
                "the user info of a URL (scheme://user[:password]@host), not an address"
            }
            LeftAlone::Remote => "an scp-style remote (user@host:path), not an address",
        })
    }
}

/// Writes what is inserted before the `@` of a found address: the
/// separator and a token. Writing nothing leaves the address alone.
pub trait Munger {
    /// Appends the insertion for `found` to `out`.
    fn munge(&mut self, found: &Found<'_>, out: &mut Vec<u8>);

    /// Appends the insertion for `found` written as the text around it is
    /// (`written`): as character codes for an address a script's
    /// `String.fromCharCode` call spells. A munger that notes where
    /// insertions land overrides it to see the whole of what is written.
    fn munge_as(&mut self, found: &Found<'_>, out: &mut Vec<u8>, written: Written) {
        if written == Written::Plain {
            return self.munge(found, out);
        }
        let start = out.len();
        self.munge(found, out);
        let plain = out.split_off(start);
        written.write(&plain, out);
    }

    /// A domain written instead of the found one (Dominus's plan for
    /// EmailSiphon: send its addresses elsewhere); `None` keeps it. A
    /// spelled-out address keeps its domain as spelled.
    fn domain(&self, _found: &Found<'_>) -> Option<&str> {
        None
    }

    /// Told of a protected `local@domain` that was left as written
    /// because it is not an address (for `check-config --scan`).
    fn left_alone(&mut self, _found: &Found<'_>, _why: LeftAlone) {}

    /// Appends the insertion for `found` as it reads, for the scanner to
    /// encode with the text around it where that is no insertion (base64:
    /// see [`Munger::rewritten`]). Appending nothing leaves it alone.
    fn id(&mut self, found: &Found<'_>, id: &mut Vec<u8>) {
        self.munge(found, id);
    }

    /// Told that `out[written]` was written in place of `replaced` bytes of
    /// the page: an encoded text written anew around IDs from
    /// [`Munger::id`] (every base64 character after an ID changes).
    fn rewritten(&mut self, _written: Range<usize>, _replaced: usize) {}
}

/// How the text an insertion goes into is written, so how the insertion
/// is written too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// As it reads.
    Plain,
    /// As the codes of a script's `String.fromCharCode(…)` call, each
    /// followed by a comma (`45,105,100,…,`).
    CharCodes,
    /// In ROT13, for a script to turn back (`-vq-…`).
    Rot13,
    /// Backwards, for a script or stylesheet to turn round (`…-di-`).
    Reversed,
    /// As Cloudflare's obfuscation: the hex of each byte XORed with this
    /// key.
    CloudflareHex(u8),
}

impl Written {
    /// Appends `plain` (an insertion: ASCII) written this way.
    pub fn write(self, plain: &[u8], out: &mut Vec<u8>) {
        match self {
            Written::Plain => out.extend_from_slice(plain),
            Written::CharCodes => char_codes::write_codes(plain, out),
            Written::Rot13 => out.extend(plain.iter().map(|&c| rot13::rotate(c))),
            Written::Reversed => out.extend(plain.iter().rev()),
            Written::CloudflareHex(key) => cfemail::write_hex(plain, key, out),
        }
    }
}

impl<F: FnMut(&Found<'_>, &mut Vec<u8>)> Munger for F {
    fn munge(&mut self, found: &Found<'_>, out: &mut Vec<u8>) {
        self(found, out)
    }
}

/// The prebuilt, shareable part of scanning: the protection rules and the
/// derived limits. Build once, share through an `Arc`.
#[derive(Debug)]
pub struct Matcher {
    protection: Arc<Protection>,
    /// Recognises spelled-out addresses, unless they are not to be.
    spelled: Option<Spelled>,
    /// The bytes a protected domain can start with after an `@`.
    domain_starts: DomainStarts,
    /// The letters a protected domain in ROT13 starts with (see `rot13`);
    /// looked for with spelled-out addresses.
    rot13_starts: Option<DomainStarts>,
    /// The letters a protected domain written backwards ends with, just
    /// before its `@` (see `reversed`); looked for with spelled-out
    /// addresses.
    reversed_ends: Option<DomainStarts>,
}

/// The bytes a protected domain's spelling can start with: its first
/// letter in either case, or a byte that starts a spelled character. Most
/// `@`s on a page are other domains', and this tells them with one load
/// instead of decoding their domain.
#[derive(Debug)]
struct DomainStarts([bool; 256]);

impl DomainStarts {
    fn new(protection: &Protection) -> DomainStarts {
        let mut t = [false; 256];
        // `<`: tags may come between an `@` and its domain.
        for c in [b'&', b'%', b'\\', 0xc2, 0xe2, 0xef, b'<'] {
            t[usize::from(c)] = true;
        }
        let unicode = protection.unicode_domains().map(|(u, _, _)| u);
        let domains = protection.entries().iter().map(|e| e.domain.as_bytes());
        first_letters(&mut t, domains.chain(unicode), |c| c);
        DomainStarts(t)
    }

    /// The letters the protected domains start with, as `spell` writes
    /// them (in ROT13, or as they are).
    fn letters(protection: &Protection, spell: fn(u8) -> u8) -> DomainStarts {
        let mut t = [false; 256];
        let domains = protection.entries().iter().map(|e| e.domain.as_bytes());
        first_letters(&mut t, domains, spell);
        DomainStarts(t)
    }

    /// False when the domain spelled from `buf[i]` on cannot be protected;
    /// true when it may be, or when `buf[i]` has not arrived.
    fn may_start(&self, buf: &[u8], i: usize) -> bool {
        buf.get(i).is_none_or(|&c| self.0[usize::from(c)])
    }
}

/// Marks in `t` each domain's first letter, in either case, as `spell`
/// writes it.
fn first_letters<'d>(t: &mut [bool; 256], domains: impl Iterator<Item = &'d [u8]>, spell: fn(u8) -> u8) {
    for c in domains.filter_map(|d| d.first()) {
        t[usize::from(spell(c.to_ascii_lowercase()))] = true;
        t[usize::from(spell(c.to_ascii_uppercase()))] = true;
    }
}

impl Matcher {
    /// Builds the matcher for a protection.
    pub fn new(protection: Arc<Protection>) -> Arc<Matcher> {
        Matcher::build(protection, true)
    }

    /// The matcher for text a reader has already decoded (the audit's
    /// readings, ROT13 and Cloudflare's among them): it does not undo
    /// ROT13 itself, which would turn a rotated page's munged addresses
    /// back into clear ones, nor Cloudflare's obfuscation, so that the
    /// reading that reveals an address is the one credited, nor read text
    /// backwards, which the readings it serves do not.
    pub fn for_decoded(protection: Arc<Protection>) -> Arc<Matcher> {
        Matcher::build(protection, false)
    }

    /// `undo` reads the encodings a reader may have undone already.
    fn build(protection: Arc<Protection>, undo: bool) -> Arc<Matcher> {
        let spelled = Spelled::new(&protection, undo);
        let domain_starts = DomainStarts::new(&protection);
        let starts = |spell| {
            spelled
                .as_ref()
                .filter(|_| undo)
                .map(|_| DomainStarts::letters(&protection, spell))
        };
        let (rot13_starts, reversed_ends) = (starts(rot13::rotate), starts(|c| c));
        Arc::new(Matcher {
            protection,
            spelled,
            domain_starts,
            rot13_starts,
            reversed_ends,
        })
    }

    /// Bytes after a candidate's first byte that deciding it can need: its
    /// `@` spelling, the longest protected domain (and trailing dots) in the
    /// longest spellings, and the characters after it.
    fn lookahead(&self) -> usize {
        // +3: the `@`, and after the domain the two characters that tell a
        // remote (`:path`) from an address.
        (self.protection.max_domain_len() + TRAILING_DOTS + 3 + MAX_INVISIBLE) * MAX_FORM
    }

    /// What a candidate at `q` is read from: the bytes a local part and the
    /// gap before its domain can take before it, and a domain after.
    fn reading<'b>(&self, buf: &'b [u8], q: usize, eof: bool) -> Reading<'b> {
        Reading {
            buf,
            q,
            lo: q.saturating_sub(spelled::GAP + BACK),
            hi: q + self.lookahead(),
            eof,
        }
    }

    /// How far before a candidate an ID can go: bytes not to write out
    /// ahead of an undecided one.
    fn reach(&self) -> usize {
        // A quoted local part's ID goes before its closing quote.
        self.spelled.as_ref().map_or(0, Spelled::reach).max(MAX_FORM)
    }

    /// How close to the end of what arrived a candidate must wait for
    /// more: the longest search's length less one. A match that starts
    /// before it, or a longer one at the same byte, may not be whole yet.
    fn pending(&self) -> usize {
        self.spelled.as_ref().map_or(0, Spelled::pending)
    }

    /// Bytes held back at the end of what arrived: an `@` spelling may
    /// start there, or a spelled-out address's ID go there.
    fn hold(&self) -> usize {
        HOLD.max(self.reach())
    }

    /// The protection this matcher applies.
    pub fn protection(&self) -> &Protection {
        &self.protection
    }

    /// A new streaming scanner.
    pub fn scanner(self: &Arc<Self>) -> Scanner {
        Scanner {
            buf: Vec::new(),
            cur: Cursor::default(),
            decider: Decider {
                matcher: Arc::clone(self),
                munged: 0,
                left_alone: 0,
                budget: script::Budget::new(),
                scratch: Box::new(Scratch {
                    domain: vec![0; self.protection.max_domain_len() + TRAILING_DOTS].into(),
                    domain_len: 0,
                    domain_end: 0,
                    local: [0; MAX_LOCAL + 1],
                    local_len: 0,
                    walked: Walked::default(),
                    insert_at: 0,
                }),
            },
        }
    }

    /// Whether `bytes` hold a byte an `@` spelling starts with, a
    /// protected domain's first label or a script's character codes: only
    /// then can scanning them change anything (a quick test for short
    /// inputs such as header values).
    pub fn may_hold_address(&self, bytes: &[u8]) -> bool {
        memchr3(b'@', b'&', b'%', bytes).is_some()
            || memchr2(b'\\', 0xef, bytes).is_some()
            || self.spelled.as_ref().is_some_and(|s| s.any(bytes))
    }

    /// Rewrites a whole input at once.
    pub fn rewrite(self: &Arc<Self>, input: &[u8], munger: &mut impl Munger) -> Vec<u8> {
        let mut s = self.scanner();
        let mut out = Vec::with_capacity(input.len() + 64);
        s.feed(input, &mut out, munger);
        s.finish(&mut out, munger);
        out
    }
}

/// A streaming scanner: feed chunks, get output.
#[derive(Debug)]
pub struct Scanner {
    /// Kept history, then bytes not yet emitted (the carry between chunks).
    buf: Vec<u8>,
    /// Where scanning stands in `buf`.
    cur: Cursor,
    decider: Decider,
}

/// What every pass shares, whichever bytes it looks at.
#[derive(Debug)]
struct Decider {
    matcher: Arc<Matcher>,
    munged: u64,
    left_alone: u64,
    scratch: Box<Scratch>,
    /// What looking up a script's names may still cost.
    budget: script::Budget,
}

/// Positions in the bytes being scanned (the carry, or a chunk scanned in place).
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    /// `data[..emitted]` has been written out.
    emitted: usize,
    /// Candidates before this index have been dealt with.
    scan_from: usize,
    /// The next `@`, `&` or `%`, searched once for many candidates when
    /// spelled-out addresses' candidates come between.
    common: Ahead,
    /// The next `\\` or `0xEF` (a fullwidth `＠` starts with it), searched
    /// once for many candidates.
    rare: Ahead,
    /// The next literal a candidate starts with (a protected domain's
    /// first label, `fromCharCode`, Cloudflare's mark, base64's), likewise.
    literal: LiteralsAhead,
    /// No literal before this is a candidate: it starts (or lies inside)
    /// the domain of the last address munged. (A protected domain's text
    /// holds no script call, Cloudflare's mark or base64 but by an owner's
    /// design: those searches skip it with the labels'.)
    literals_from: usize,
    /// Where `data[0]` is in the stream.
    base: u64,
}

/// The next match of a search that is rarer than the candidates it is
/// merged with, kept so that the bytes are searched once.
#[derive(Debug, Clone, Copy, Default)]
struct Ahead {
    /// The next match at or after some earlier `scan_from`, if one was
    /// found before `searched_to`.
    next: Option<usize>,
    /// `data[..searched_to]` holds no unreported match that ends there.
    searched_to: usize,
}

impl Ahead {
    /// The next match at or after `from`; `overlap` is how many bytes
    /// before `searched_to` a match found only now may start (a pattern's
    /// length less one).
    // Inlined into each search's memo: asked for every candidate.
    #[inline(always)]
    fn find(
        &mut self,
        data: &[u8],
        from: usize,
        overlap: usize,
        search: impl Fn(&[u8]) -> Option<usize>,
    ) -> Option<usize> {
        if let Some(b) = self.next.filter(|&b| b >= from) {
            // A match found near the end of what was searched may yet be
            // preceded by a longer pattern's that only now came whole
            // (`mail` after `ai` was found in `mai`): search again there.
            if b < self.searched_to.saturating_sub(overlap) || data.len() == self.searched_to {
                return Some(b);
            }
            self.next = None;
        }
        if self.next.is_none() && self.searched_to == data.len() {
            return None; // searched to the end, and no bytes came since
        }
        let start = if self.next.is_some() {
            from
        } else {
            from.max(self.searched_to.saturating_sub(overlap))
        };
        // Nothing new to search (the usual case) costs no call.
        self.next = if start < data.len() {
            search(&data[start..]).map(|i| start + i)
        } else {
            None
        };
        self.searched_to = data.len();
        self.next
    }
}

/// The next literal a candidate starts with: a memo for each search, so
/// that one that never comes is not searched for again at every other
/// one's match, and their earliest, so that a candidate before it costs
/// one comparison.
#[derive(Debug, Clone, Copy, Default)]
struct LiteralsAhead {
    each: [Ahead; MAX_SEARCHES],
    /// The earliest of `each`'s matches at or after some earlier `from`,
    /// found while `data` was `len` bytes long.
    next: Option<usize>,
    len: usize,
}

impl LiteralsAhead {
    /// The next literal at or after `from` (which never goes back).
    fn find(&mut self, data: &[u8], from: usize, s: &Spelled) -> Option<usize> {
        if self.len != data.len() || self.next.is_some_and(|b| b < from) {
            self.next = s.next(&mut self.each, data, from);
            self.len = data.len();
        }
        self.next
    }
}

impl Cursor {
    /// The cursor for the same bytes seen from `shift` bytes further on
    /// (`shift` at most `emitted`). The memos are dropped: they are
    /// only an optimisation, and searching again is bounded.
    fn shifted(self, shift: usize) -> Cursor {
        Cursor {
            emitted: self.emitted - shift,
            scan_from: self.scan_from - shift,
            common: Ahead::default(),
            rare: Ahead::default(),
            literal: Default::default(),
            literals_from: self.literals_from.saturating_sub(shift),
            base: self.base + shift as u64,
        }
    }

    /// Goes past the address at `p` whose ID was written before `insert`,
    /// its domain (decoded into `sc`) staying in the page as spelled.
    fn past_munged(&mut self, insert: usize, p: usize, at_len: usize, sc: &Scratch) {
        self.emitted = insert;
        self.scan_from = p + at_len;
        // This domain's first label is no spelled-out address's. Nor is any
        // other label inside a literal domain: it follows a domain
        // character, which ends no gap before one. In a spelled domain
        // (`plover&#46;com`) a `;` may end such a gap. The other literals
        // are skipped with them (see `literals_from`).
        let literal = at_len == 1 && sc.domain_end - (p + 1) == sc.domain_len;
        self.literals_from = if literal { sc.domain_end } else { p + at_len + 1 };
    }

    /// Writes `data[emitted..limit]` (nothing when `limit` is not past
    /// `emitted`): those bytes are decided.
    fn emit_to(&mut self, data: &[u8], limit: usize, out: &mut Vec<u8>) {
        let limit = limit.max(self.emitted);
        out.extend_from_slice(&data[self.emitted..limit]);
        self.emitted = limit;
        self.scan_from = self.scan_from.max(limit);
    }

    /// The next byte at or after `scan_from` that can start a spelling of
    /// `@`, a protected domain's first label, or a script's character codes.
    fn next_candidate(&mut self, data: &[u8], spelled: Option<&Spelled>) -> Option<usize> {
        let from = self.scan_from;
        let common = match spelled {
            // Labels may come between: search each stretch once.
            Some(_) => self.common.find(data, from, 0, |d| memchr3(b'@', b'&', b'%', d)),
            None => memchr3(b'@', b'&', b'%', &data[from..]).map(|i| from + i),
        };
        let bs = self.rare.find(data, from, 0, |d| memchr2(b'\\', 0xef, d));
        let literal = spelled.and_then(|s| self.literal.find(data, from.max(self.literals_from), s));
        // Not `[..].into_iter().flatten().min()`: that goes through memory
        // the compiler does not keep in registers, and this runs for every
        // candidate.
        earliest(earliest(common, bs), literal)
    }
}

/// The earlier of two positions, either of which may be missing.
fn earliest(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

enum Decision {
    /// Protected by this entry; the address is in the scratch buffers.
    Match(usize),
    /// Protected by this entry, but not an address.
    LeftAlone(usize, LeftAlone),
    /// The domain runs into markup after the start of a protected one
    /// (`plo<!-- -->ver.com`), or the local part starts after markup
    /// inside a word (`<b>mj</b>d@`): the spelled-out reader reads across it.
    Split,
    NoMatch,
    NeedMore,
}

/// What an `@` candidate is, all readings asked.
enum AtSign {
    /// A protected `local@domain` by this entry (in the scratch buffers),
    /// left alone when it is no address, its ID to be `written` as the
    /// text around it is; `keep_domain` when its domain is not in the
    /// page's bytes to be replaced (a script joined it from names) or not
    /// as it reads (ROT13).
    Found {
        entry: usize,
        left_alone: Option<LeftAlone>,
        keep_domain: bool,
        written: Written,
    },
    /// The spelled-out reader reads across markup from after the `@`.
    Split,
    NoMatch,
    NeedMore,
}

impl AtSign {
    fn found(entry: usize, left_alone: Option<LeftAlone>, keep_domain: bool) -> AtSign {
        AtSign::Found {
            entry,
            left_alone,
            keep_domain,
            written: Written::Plain,
        }
    }

    /// A protected address read from text written another way (ROT13,
    /// backwards): its domain is not as it reads, so it is kept.
    fn decoded(entry: usize, written: Written) -> AtSign {
        AtSign::Found {
            entry,
            left_alone: None,
            keep_domain: true,
            written,
        }
    }
}

/// Reused buffers for the decoded parts of a candidate address, so deciding
/// neither allocates nor clears memory.
#[derive(Debug)]
struct Scratch {
    /// As long as the longest protected domain with its trailing dots:
    /// a domain that does not fit is longer than any we protect.
    domain: Box<[u8]>,
    domain_len: usize,
    /// Where the domain's spelling ends in the buffer (trailing dots excluded).
    domain_end: usize,
    local: [u8; MAX_LOCAL + 1],
    local_len: usize,
    /// What decoding the local part walked over, leading dots included.
    walked: Walked,
    /// Where the ID goes: the `@`, or the closing quote of a quoted local
    /// part (`"mjd"@plover.com`).
    insert_at: usize,
}

impl Decider {
    /// One pass over `data`: decides every candidate from `cur.scan_from`
    /// up to (not including) `stop`, writing the bytes before each match
    /// and its insertion to `out`. Returns how far bytes can be written
    /// out when a candidate cannot be decided without bytes past the end
    /// of `data` (unless `eof`).
    fn scan(
        &mut self,
        data: &[u8],
        cur: &mut Cursor,
        stop: usize,
        eof: bool,
        out: &mut Vec<u8>,
        munger: &mut impl Munger,
    ) -> Option<usize> {
        let reach = self.matcher.reach();
        while cur.scan_from < stop {
            let p = cur
                .next_candidate(data, self.matcher.spelled.as_ref())
                .filter(|&p| p < stop)?;
            let decided = match data[p] {
                b'@' | b'&' | b'%' | b'\\' | 0xef => self.at_sign(data, cur, p, eof, out, munger),
                // A label or call that started earlier may not have come
                // whole yet (`a` in `fromCha`, `ai` in `mai`), nor a longer
                // match at this byte (base64's, at a label `A`): one-shot,
                // the search would have found that one first.
                _ if !eof && p + self.matcher.pending() >= data.len() => false,
                _ => self.searched(data, cur, p, eof, out, munger),
            };
            if !decided {
                // A later candidate's ID may go up to `reach` bytes before it.
                return Some(p.saturating_sub(reach));
            }
        }
        None
    }

    /// Decides the candidate at `p` that a search for a word found (a
    /// label, a call's name, a mark, base64); false when that needs bytes
    /// past the end of `data`.
    fn searched(
        &mut self,
        data: &[u8],
        cur: &mut Cursor,
        p: usize,
        eof: bool,
        out: &mut Vec<u8>,
        munger: &mut impl Munger,
    ) -> bool {
        // base64's searches start with any letter or digit: asked first.
        if let Some(decided) = self.base64(data, cur, p, eof, out, munger) {
            return decided;
        }
        match data[p] {
            c if c == char_codes::CALL[0] => self.char_codes(data, cur, p, eof, out, munger),
            c if c == cfemail::MARK[0] => self.cloudflare(data, cur, p, eof, out, munger),
            _ => self.spelled(data, cur, p, eof, out, munger),
        }
    }

    /// Decides the candidate at `p`, a byte that can start a spelling of
    /// `@`; false when that needs bytes past the end of `data`.
    fn at_sign(
        &mut self,
        data: &[u8],
        cur: &mut Cursor,
        p: usize,
        eof: bool,
        out: &mut Vec<u8>,
        munger: &mut impl Munger,
    ) -> bool {
        // A literal `@`, the usual candidate, needs no decoding.
        let at = match data[p] {
            b'@' => Fwd::Char(b'@', 1),
            _ => decode_fwd(data, p, eof),
        };
        let at_len = match at {
            Fwd::NeedMore => return false,
            Fwd::Char(b'@', n) => n,
            Fwd::Char(..) => {
                cur.scan_from = p + 1;
                return true;
            }
        };
        let (entry, left_alone, keep_domain, written) = match self.decide_at(data, cur.base, p, at_len, eof) {
            AtSign::NeedMore => return false,
            AtSign::NoMatch => {
                cur.scan_from = p + at_len;
                return true;
            }
            AtSign::Split => return self.spelled(data, cur, p + at_len, eof, out, munger),
            AtSign::Found {
                entry,
                left_alone,
                keep_domain,
                written,
            } => (entry, left_alone, keep_domain, written),
        };
        let (prot, sc) = (&self.matcher.protection, &mut self.scratch);
        let insert = sc.insert_at;
        let found = Found {
            local: ascii_str(&sc.local[..sc.local_len]),
            // The decoded domain equals the entry's: no need to check
            // the decoded bytes are text.
            domain: &prot.entries()[entry].domain,
            entry,
            offset: cur.base + insert as u64,
        };
        if let Some(why) = left_alone {
            munger.left_alone(&found, why);
            self.left_alone += 1;
        }
        // A closing quote already written out (after an address whose
        // domain was replaced) cannot take an ID.
        if left_alone.is_some() || insert < cur.emitted {
            cur.scan_from = p + at_len;
            return true;
        }
        out.extend_from_slice(&data[cur.emitted..insert]);
        munger.munge_as(&found, out, written);
        self.munged += 1;
        // A domain a script joins from names is not in the page's bytes
        // to be replaced: it keeps it, as a spelled-out one does.
        if let Some(d) = munger.domain(&found).filter(|_| !keep_domain) {
            // Keep the `@` (and a closing quote) as spelled, replace the
            // domain's spelling.
            out.extend_from_slice(&data[insert..p + at_len]);
            out.extend_from_slice(d.as_bytes());
            cur.emitted = sc.domain_end;
            cur.scan_from = sc.domain_end;
        } else {
            cur.past_munged(insert, p, at_len, sc);
        }
        true
    }

    /// What the `@` spelled by `data[p..p + at_len]` is: an address after
    /// the main path's reading, or else in ROT13, or else a script's join
    /// of names; `base` is `data`'s offset in the stream.
    fn decide_at(&mut self, data: &[u8], base: u64, p: usize, at_len: usize, eof: bool) -> AtSign {
        let (m, sc) = (&self.matcher, &mut self.scratch);
        let prot = &m.protection;
        if m.domain_starts.may_start(data, p + at_len) {
            match decide(prot, data, p, at_len, eof, sc) {
                Decision::NoMatch => {}
                Decision::NeedMore => return AtSign::NeedMore,
                Decision::Split => return AtSign::Split,
                Decision::Match(entry) => return AtSign::found(entry, None, false),
                Decision::LeftAlone(entry, why) => return AtSign::found(entry, Some(why), false),
            }
        }
        let rotated = m.rot13_starts.as_ref().filter(|_| at_len == 1);
        if rotated.is_some_and(|starts| starts.may_start(data, p + 1)) {
            match rot13::decide(prot, data, p, eof, sc) {
                Rot13::No => {}
                Rot13::NeedMore => return AtSign::NeedMore,
                Rot13::Found(entry) => return AtSign::decoded(entry, Written::Rot13),
            }
        }
        let backwards = m.reversed_ends.as_ref().filter(|_| at_len == 1 && p > 0);
        if backwards.is_some_and(|ends| ends.may_start(data, p - 1)) {
            match reversed::decide(prot, data, p, eof, base == 0, sc) {
                Reversed::No => {}
                Reversed::NeedMore => return AtSign::NeedMore,
                Reversed::Found(entry) => return AtSign::decoded(entry, Written::Reversed),
            }
        }
        // Most `@`s of other domains end here, told by a load or two.
        if !script::may_join(data, p, at_len) || !prot.spellings().enabled {
            return AtSign::NoMatch;
        }
        // Spent only when the decision stands (see `script::Budget`).
        let mut budget = self.budget.at(base + p as u64);
        let joined = script::decide(prot, m.reading(data, p, eof), at_len, &mut budget, sc);
        let verdict = match joined {
            Joined::NeedMore => return AtSign::NeedMore,
            Joined::No => AtSign::NoMatch,
            Joined::Found { entry, domain_joined } => AtSign::found(entry, None, domain_joined),
        };
        self.budget = budget;
        verdict
    }

    /// Decides the candidate at `q`, where a protected domain's first label
    /// starts (or the domain after an `@` that runs into markup): a
    /// spelled-out address (`john [at] plover [dot] com`) gets its ID after
    /// its local part. False when that needs bytes past the end.
    fn spelled(
        &mut self,
        data: &[u8],
        cur: &mut Cursor,
        q: usize,
        eof: bool,
        out: &mut Vec<u8>,
        munger: &mut impl Munger,
    ) -> bool {
        let m = &self.matcher;
        let Some(spelled) = m.spelled.as_ref() else {
            cur.scan_from = q + 1;
            return true;
        };
        let reading = m.reading(data, q, eof);
        let sc = &mut self.scratch;
        let (entry, insert, end) = match spelled.recognise(&m.protection, reading, sc) {
            Spelt::NeedMore => return false,
            // An ID already written after it (`a@plover.com [at] plover.com`)
            // leaves no place for this one.
            Spelt::Match { entry, insert, end } if insert >= cur.emitted => (entry, insert, end),
            Spelt::Match { .. } | Spelt::NoMatch => {
                cur.scan_from = q + 1;
                return true;
            }
        };
        let found = Found {
            local: ascii_str(&sc.local[..sc.local_len]),
            domain: &m.protection.entries()[entry].domain,
            entry,
            offset: cur.base + insert as u64,
        };
        out.extend_from_slice(&data[cur.emitted..insert]);
        munger.munge(&found, out);
        self.munged += 1;
        cur.emitted = insert;
        cur.scan_from = end;
        true
    }

    /// Decides the candidate at `q`, where a script's `fromCharCode` may
    /// start (else a protected domain's first label): each address its
    /// codes spell gets its ID, as codes, before its `@`'s code. False
    /// when that needs bytes past the end of `data`.
    fn char_codes(
        &mut self,
        data: &[u8],
        cur: &mut Cursor,
        q: usize,
        eof: bool,
        out: &mut Vec<u8>,
        munger: &mut impl Munger,
    ) -> bool {
        let r = Reading::ahead(data, q, char_codes::MAX_CALL, eof);
        match r.starts(q, char_codes::CALL) {
            Ok(true) => {}
            Ok(false) | Err(Stop::TooFar) => return self.spelled(data, cur, q, eof, out, munger),
            Err(Stop::Short) => return false,
        }
        let codes = match char_codes::read(r) {
            Ok(Some(codes)) => codes,
            Err(Stop::Short) => return false,
            Ok(None) | Err(Stop::TooFar) => {
                cur.scan_from = q + 1;
                return true;
            }
        };
        let mut coded = char_codes::addresses(&codes.text, &self.matcher);
        if coded.is_empty() && codes.text == b"@" {
            match self.call_joined(data, cur.base, q, &codes, eof) {
                Some(joined) => coded.extend(joined),
                None => return false,
            }
        }
        let placed = coded
            .into_iter()
            .filter_map(|c| Some((codes.page_position(c.at)?, c)));
        self.write_decoded(data, cur, placed, Written::CharCodes, out, munger);
        cur.scan_from = codes.end;
        true
    }

    /// Decides the candidate at `q`, where Cloudflare's obfuscation may be
    /// marked (else a protected domain's first label starts): each
    /// address its bytes hold gets its ID, obfuscated with the same key,
    /// before its `@`'s. False when that needs bytes past the end of
    /// `data`.
    fn cloudflare(
        &mut self,
        data: &[u8],
        cur: &mut Cursor,
        q: usize,
        eof: bool,
        out: &mut Vec<u8>,
        munger: &mut impl Munger,
    ) -> bool {
        let r = Reading::ahead(data, q, cfemail::MAX_FORM, eof);
        let hexed = match cfemail::read(r) {
            Ok(Some(hexed)) => hexed,
            Err(Stop::Short) => return false,
            Ok(None) | Err(Stop::TooFar) => return self.spelled(data, cur, q, eof, out, munger),
        };
        let coded = char_codes::addresses(&hexed.text, &self.matcher);
        let placed = coded.into_iter().map(|c| (hexed.page_position(c.at), c));
        let written = Written::CloudflareHex(hexed.key);
        self.write_decoded(data, cur, placed, written, out, munger);
        cur.scan_from = hexed.end;
        true
    }

    /// Decides the candidate at `p` when `@` and a protected domain start
    /// there in base64: every address the string holds gets its ID in its
    /// text, and the string is written anew from the first ID's group to
    /// its end. `None` when no search for base64 matches there (the
    /// candidate is another search's); false when that needs bytes past
    /// the end of `data`.
    fn base64(
        &mut self,
        data: &[u8],
        cur: &mut Cursor,
        p: usize,
        eof: bool,
        out: &mut Vec<u8>,
        munger: &mut impl Munger,
    ) -> Option<bool> {
        let group = self.matcher.spelled.as_ref()?.base64()?.group_at(data, p)?;
        // A string not read is skipped whole: its other matches would be
        // answered alike, and no other candidate starts inside a run of
        // letters and digits, `+` and `/` (a label needs a gap before it,
        // a call a `(` after its name).
        let run = match base64::read(data, group, eof) {
            Ok(Read::Run(run)) => run,
            Ok(Read::Not { end }) => {
                cur.scan_from = end;
                return Some(true);
            }
            Err(Stop::Short) => return Some(false),
            Err(Stop::TooFar) => {
                cur.scan_from = group + base64::MAX_AHEAD;
                return Some(true);
            }
        };
        let placed = char_codes::addresses(&run.text, &self.matcher)
            .into_iter()
            .map(|c| (run.group_start(c.at), c));
        let mut ids = Vec::new();
        for (pos, coded) in self.taken(cur, placed, munger) {
            let found = coded.found(&self.matcher.protection, cur.base + pos as u64);
            let mut id = Vec::new();
            munger.id(&found, &mut id);
            if !id.is_empty() {
                self.munged += 1;
                ids.push((coded.at, id));
            }
        }
        if let Some(&(first, _)) = ids.first() {
            let from = run.group_start(first);
            out.extend_from_slice(&data[cur.emitted..from]);
            let start = out.len();
            run.write(&ids, out);
            munger.rewritten(start..out.len(), run.end - from);
            cur.emitted = run.end;
        }
        cur.scan_from = run.end;
        Some(true)
    }

    /// Writes the IDs of the addresses a text decoded from the page holds,
    /// each `placed` where its ID goes in the page, `written` as the text
    /// is encoded there.
    fn write_decoded(
        &mut self,
        data: &[u8],
        cur: &mut Cursor,
        placed: impl Iterator<Item = (usize, Coded)>,
        written: Written,
        out: &mut Vec<u8>,
        munger: &mut impl Munger,
    ) {
        for (pos, coded) in self.taken(cur, placed, munger) {
            let found = coded.found(&self.matcher.protection, cur.base + pos as u64);
            out.extend_from_slice(&data[cur.emitted..pos]);
            munger.munge_as(&found, out, written);
            self.munged += 1;
            cur.emitted = pos;
        }
    }

    /// The addresses a text decoded from the page holds that take an ID,
    /// each `placed` (ascending) where its ID goes in the page: not those
    /// whose place was written out already, nor those left alone (the
    /// munger is told).
    fn taken(
        &mut self,
        cur: &Cursor,
        placed: impl Iterator<Item = (usize, Coded)>,
        munger: &mut impl Munger,
    ) -> Vec<(usize, Coded)> {
        let prot = &self.matcher.protection;
        let left_alone = &mut self.left_alone;
        placed
            .filter(|(pos, coded)| {
                if *pos < cur.emitted {
                    return false;
                }
                let Some(why) = coded.left_alone else {
                    return true;
                };
                munger.left_alone(&coded.found(prot, cur.base + *pos as u64), why);
                *left_alone += 1;
                false
            })
            .collect()
    }

    /// What a call that spells only `@` (`String.fromCharCode(64)`, its
    /// name at `q`, after `String.` as scripts write it) joins in a script: the protected address, if one;
    /// `None` when that needs bytes past the end of `data`.
    fn call_joined(
        &mut self,
        data: &[u8],
        base: u64,
        q: usize,
        codes: &Codes,
        eof: bool,
    ) -> Option<Option<Coded>> {
        let start = q - if data[..q].ends_with(STRING) {
            STRING.len()
        } else {
            0
        };
        let m = &self.matcher;
        let r = m.reading(data, start, eof);
        // Spent only when the decision stands, as for other joins.
        let mut budget = self.budget.at(base + q as u64);
        let sc = &mut self.scratch;
        let joined = match script::decide_call(&m.protection, r, start..codes.end, &mut budget, sc) {
            Joined::NeedMore => return None,
            Joined::No => None,
            Joined::Found { entry, .. } => Some(Coded {
                at: 0,
                local: ascii_str(&sc.local[..sc.local_len]).to_owned(),
                entry,
                left_alone: None,
            }),
        };
        self.budget = budget;
        Some(joined)
    }
}

impl Scanner {
    /// How many addresses were munged so far.
    pub fn munged(&self) -> u64 {
        self.decider.munged
    }

    /// How many protected `local@domain` were left alone as not addresses.
    pub fn left_alone(&self) -> u64 {
        self.decider.left_alone
    }

    /// Bytes currently held (history and undecided input): bounded by a
    /// constant plus the last chunk.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// What it protects.
    pub fn protection(&self) -> &Protection {
        self.decider.matcher.protection()
    }

    /// Bytes given and not yet written out (the undecided tail): what
    /// comes out of the scanner next, apart from insertions.
    pub fn unwritten(&self) -> usize {
        self.buf.len() - self.cur.emitted
    }

    /// Scans a chunk; writes to `out` everything that can be decided now.
    ///
    /// A large chunk is scanned where it lies, not copied into the carry:
    /// only its first bytes join the carry (the seam, where a candidate may
    /// need bytes from both), and only its last bytes are kept. Output is
    /// the same as copying it all; this saves a copy of every page.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>, munger: &mut impl Munger) {
        let m = &self.decider.matcher;
        let (hold, reach) = (m.hold(), m.reach());
        let seam = HISTORY + m.lookahead() + hold;
        if chunk.len() < 2 * seam {
            self.buf.extend_from_slice(chunk);
            self.process(false, out, munger);
            return;
        }
        // The seam: every candidate in the carry and the chunk's first
        // HISTORY bytes, with enough bytes after each to decide it.
        let carry = self.buf.len();
        self.buf.extend_from_slice(&chunk[..seam]);
        let stop = carry + HISTORY;
        if self
            .decider
            .scan(&self.buf, &mut self.cur, stop, false, out, munger)
            .is_some()
        {
            // Undecided within the seam (cannot happen with the lookahead
            // above, but correctness must not depend on that): the copying way.
            self.buf.extend_from_slice(&chunk[seam..]);
            self.process(false, out, munger);
            return;
        }
        // Not up to `stop`: an ID may go up to `reach` bytes before a
        // candidate after it.
        self.cur.emit_to(&self.buf, stop - reach, out);
        self.cur.scan_from = self.cur.scan_from.max(stop);
        // The rest in place: every candidate from here on has its HISTORY
        // bytes inside the chunk.
        let mut cur = self.cur.shifted(carry);
        let undecided = self
            .decider
            .scan(chunk, &mut cur, chunk.len(), false, out, munger);
        cur.emit_to(chunk, undecided.unwrap_or(chunk.len() - hold), out);
        // The new carry: HISTORY bytes before `emitted`, then what is held.
        let keep = cur.emitted.saturating_sub(HISTORY);
        self.buf.clear();
        self.buf.extend_from_slice(&chunk[keep..]);
        self.cur = cur.shifted(keep);
    }

    /// Ends the stream: writes everything still held.
    pub fn finish(&mut self, out: &mut Vec<u8>, munger: &mut impl Munger) {
        self.process(true, out, munger);
        self.buf.clear();
        self.cur = Cursor::default();
    }

    /// Scans the carry.
    fn process(&mut self, eof: bool, out: &mut Vec<u8>, munger: &mut impl Munger) {
        let len = self.buf.len();
        let undecided = self.decider.scan(&self.buf, &mut self.cur, len, eof, out, munger);
        let limit = match undecided {
            Some(p) => p,
            None if eof => len,
            None => len.saturating_sub(self.decider.matcher.hold()),
        };
        self.cur.emit_to(&self.buf, limit, out);
        // Keep HISTORY bytes before `emitted` for backward decoding; drop the rest.
        let drop = self.cur.emitted.saturating_sub(HISTORY);
        if drop > 0 && (drop >= 4096 || drop * 2 >= self.buf.len()) {
            self.buf.drain(..drop);
            self.cur = self.cur.shifted(drop);
        }
    }
}

/// The entry protecting the address decoded into `sc`, when one does and
/// it is no munged address already.
fn protected_entry(prot: &Protection, sc: &Scratch) -> Option<usize> {
    let (local, domain) = (&sc.local[..sc.local_len], &sc.domain[..sc.domain_len]);
    match prot.classify_among(prot.domain_entries(domain)?, local) {
        Class::Protected(entry) if !prot.is_munged_local(local, domain) => Some(entry),
        _ => None,
    }
}

/// Decides whether the `@` spelled by `buf[p..p + at_len]` belongs to a
/// protected address; on a match the decoded parts are left in `sc`.
fn decide(prot: &Protection, buf: &[u8], p: usize, at_len: usize, eof: bool, sc: &mut Scratch) -> Decision {
    let ids = match protected_domain(prot, buf, p + at_len, eof, sc) {
        Ok(ids) => ids,
        Err(decision) => return decision,
    };
    let dlen = sc.domain_len;
    let lo = p.saturating_sub(BACK);
    sc.insert_at = p;
    let local = match plain_local(buf, p, lo, sc) {
        Some(part) => part,
        None => spelled_local(buf, p, lo, sc),
    };
    let local = match local {
        Part::NotAddress => quoted_local(buf, p, lo, sc),
        part => part,
    };
    if !matches!(local, Part::Found) {
        return Decision::NoMatch;
    }
    if split_local(buf, sc.walked.from, lo) && prot.spellings().enabled {
        return Decision::Split;
    }
    let local = &sc.local[..sc.local_len];
    let entry = match prot.classify_among(ids, local) {
        Class::Protected(entry) if !prot.is_munged_local(local, &sc.domain[..dlen]) => entry,
        _ => return Decision::NoMatch,
    };
    // Only now, for the few protected candidates: what surrounds it.
    match followed_by_path(buf, sc.domain_end, eof) {
        None => return Decision::NeedMore,
        Some(true) => return Decision::LeftAlone(entry, LeftAlone::Remote),
        Some(false) => {}
    }
    if in_url_authority(
        buf,
        sc.walked,
        sc.domain_end,
        p.saturating_sub(AUTHORITY_BACK),
        eof,
    ) {
        return Decision::LeftAlone(entry, LeftAlone::UrlUserinfo);
    }
    Decision::Match(entry)
}

/// The entries of the protected domain after an `@` (its ASCII form left
/// in `sc`), or what the candidate is when there is none: the literal
/// domain first (the usual address), then an international one in
/// Unicode, then the domain decoded from any spelling.
fn protected_domain<'p>(
    prot: &'p Protection,
    buf: &[u8],
    start: usize,
    eof: bool,
    sc: &mut Scratch,
) -> Result<&'p [usize], Decision> {
    if let Some(ids) = literal_domain(prot, buf, start, sc) {
        return Ok(ids);
    }
    if prot.has_unicode_domains() {
        match unicode_domain(prot, buf, start, eof, sc) {
            Unicode::Found(ids) => return Ok(ids),
            Unicode::NeedMore => return Err(Decision::NeedMore),
            Unicode::No => {}
        }
    }
    match decode_domain(buf, start, eof, sc) {
        Part::Found => {}
        Part::NotAddress => return Err(Decision::NoMatch),
        Part::NeedMore => return Err(Decision::NeedMore),
    }
    let domain = &sc.domain[..sc.domain_len];
    match prot.domain_entries(domain) {
        Some(ids) => Ok(ids),
        // `plo<!-- -->ver.com`: the spelled-out reader reads across it.
        None if buf.get(sc.domain_end) == Some(&b'<') && prot.starts_domain(domain) => Err(Decision::Split),
        None => Err(Decision::NoMatch),
    }
}

/// Whether the local part spelled from `from` on is the end of a word
/// split by markup (`<b>mj</b>d@plover.com` is mjd's, which the spelled-out
/// reader reads across the tags; `d` alone would get an ID not mjd's).
/// Asked of every candidate, so a tag that cannot end inside a word is told
/// by one byte: `<a href="mailto:…">joe@…` ends in `">`, `</b>` in a name's
/// last letter, a comment in `-`, `<wbr/>` in `/`. A script's join of
/// string literals (`'mj' + 'd@plover.com'`) ends in a quote.
fn split_local(buf: &[u8], from: usize, lo: usize) -> bool {
    from >= lo + 2
        && match buf[from - 1] {
            b'>' => matches!(buf[from - 2], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'/'),
            c => spelled::is_quote(c) && matches!(buf[from - 2], b' ' | b'+'),
        }
        && spelled::markup_in_word(buf, from, lo).is_some()
}

/// Whether the domain ending at `end` is followed by `:` and a path
/// character, as in `git@plover.com:mjd/addrmunge.git` (scp's, git's and
/// rsync's remote form); `None` when the bytes to tell have not arrived.
/// `mjd@plover.com: he answers` and a `:` at the end of the text are
/// addresses.
fn followed_by_path(buf: &[u8], end: usize, eof: bool) -> Option<bool> {
    if buf.get(end).is_some_and(|&c| c != b':' && !starts_spelling(c)) {
        return Some(false); // the usual case, told without decoding
    }
    let n = match decode_fwd(buf, end, eof) {
        Fwd::NeedMore if end >= buf.len() && eof => return Some(false),
        Fwd::NeedMore => return None,
        Fwd::Char(b':', n) => n,
        Fwd::Char(..) => return Some(false),
    };
    match decode_fwd(buf, end + n, eof) {
        Fwd::NeedMore if end + n >= buf.len() && eof => Some(false),
        Fwd::NeedMore => None,
        Fwd::Char(c, _) => Some(c.is_ascii_alphanumeric() || matches!(c, b'/' | b'~' | b'.' | b'_' | b'-')),
    }
}

/// The longest userinfo looked at before an `@`.
const MAX_USERINFO: usize = 192;

/// Words that, before a colon, label the address that follows
/// (`"Email:joe@…"`): never taken for a user name.
const LABELS: &[&[u8]] = &[
    b"mailto",
    b"email",
    b"e-mail",
    b"mail",
    b"contact",
    b"to",
    b"from",
    b"cc",
    b"bcc",
    b"reply-to",
    b"sender",
    b"address",
];

/// The stretch before a candidate's `@` that deciding its local part
/// already decoded: where its spelling starts, and how many characters it
/// holds. Local characters are all userinfo characters, so the walk back
/// over a URL's userinfo goes on from there.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Walked {
    from: usize,
    chars: usize,
}

/// Whether the candidate whose local part was `walked` ends the userinfo
/// of a URL authority: `scheme://user[:password]@host` (in any spelling
/// the scanner decodes, and with JSON's `\/`), or, as documentation writes
/// an authority on its own, a quoted `"user:password@host"`. Reads no byte
/// before `lo`. `mailto:` is an address scheme and has no `//`.
fn in_url_authority(buf: &[u8], walked: Walked, domain_end: usize, lo: usize, eof: bool) -> bool {
    let (from, room) = (walked.from, MAX_USERINFO.saturating_sub(walked.chars));
    // The usual case first: a run of literal userinfo characters that no
    // spelling reaches into, ended by a byte that can neither start an
    // authority nor end a spelling (` `, `>`, `=`): an address, decided
    // without decoding anything.
    // One byte past the room, to tell a run that does not fit.
    let limit = lo.max(from.saturating_sub(room + 1));
    let s = buf[limit..from]
        .iter()
        .rposition(|&c| !is_plain_userinfo(c))
        .map_or(limit, |i| limit + i + 1);
    let before = (s > lo).then(|| buf[s - 1]);
    // A run longer than any userinfo may still end in a spelling that
    // shortens it: the careful way decides that too.
    if from - s > room || before.is_some_and(|c| ends_spelling_before(c) || c == b'&') {
        let mut info = [0u8; MAX_USERINFO];
        return match spelled_userinfo(buf, from, lo, &mut info[..room]) {
            Some((n, e)) => authority_ends_at(buf, e, lo, &info[..n], domain_end, eof),
            None => false,
        };
    }
    if matches!(before, Some(b'/' | b'"' | b'`')) || buf.get(s) == Some(&b'\'') {
        return authority_ends_at(buf, s, lo, &buf[s..from], domain_end, eof);
    }
    false
}

/// Whether the userinfo `info` (the part of it before the local part),
/// spelled from `e` on, follows `scheme://` or a quote.
fn authority_ends_at(buf: &[u8], e: usize, lo: usize, info: &[u8], domain_end: usize, eof: bool) -> bool {
    after_scheme(buf, e, lo) || quoted_authority(buf, e, lo, info, domain_end, eof)
}

/// Userinfo characters that are no part of any spelling: letters, digits
/// and the RFC 3986 punctuation except `&` and `;` (entities) and `%`.
fn is_plain_userinfo(c: u8) -> bool {
    PLAIN_USERINFO[usize::from(c)]
}

/// [`is_plain_userinfo`] as a table: one load per byte on the walk back.
const PLAIN_USERINFO: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let ch = c as u8;
        t[c] = ch.is_ascii_alphanumeric()
            || matches!(
                ch,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            );
        c += 1;
    }
    t
};

/// RFC 3986's userinfo characters (pct-encoded ones arrive decoded; `@`
/// too, which a password may hold percent-encoded).
fn is_userinfo(c: u8) -> bool {
    is_plain_userinfo(c) || matches!(c, b'&' | b';')
}

/// The userinfo that ends at `e`, decoded character by character in any
/// spelling into `info` (at most its length); how many characters, and
/// where their spelling starts. `None` when it is longer than `info`.
fn spelled_userinfo(buf: &[u8], mut e: usize, lo: usize, info: &mut [u8]) -> Option<(usize, usize)> {
    let mut n = 0;
    while let Some((c, start)) = decode_back(buf, e, lo) {
        if !is_userinfo(c) {
            break;
        }
        *info.get_mut(n)? = c;
        n += 1;
        e = start;
    }
    info[..n].reverse();
    Some((n, e))
}

/// Whether `scheme://` ends just before `e`.
fn after_scheme(buf: &[u8], mut e: usize, lo: usize) -> bool {
    for want in [b'/', b'/', b':'] {
        match decode_back(buf, e, lo) {
            Some((c, start)) if c == want => e = start,
            _ => return false,
        }
    }
    // A letter, then letters, digits, `+`, `-`, `.`.
    let mut scheme = [0u8; MAX_SCHEME];
    let mut n = 0;
    while let Some((c, start)) = decode_back(buf, e, lo) {
        if !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')) || n == MAX_SCHEME {
            break;
        }
        scheme[n] = c.to_ascii_lowercase();
        n += 1;
        e = start;
    }
    let scheme = &mut scheme[..n];
    scheme.reverse();
    scheme.first().is_some_and(u8::is_ascii_alphabetic) && scheme != b"mailto"
}

/// `"user:password@host"` in quotes (`"`, `'`, a backtick; spelled as
/// entities too), closed right after the host or followed by a path: how
/// documentation shows an authority with credentials. A label before the
/// colon (`"Email:joe@…"`) makes it an address again.
fn quoted_authority(buf: &[u8], e: usize, lo: usize, info: &[u8], domain_end: usize, eof: bool) -> bool {
    // The usual case, told without decoding: the address is followed by a
    // byte that closes no quote and starts no path or spelling.
    let closes = |c: u8| matches!(c, b'"' | b'\'' | b'`' | b'/');
    if buf
        .get(domain_end)
        .is_some_and(|&c| !closes(c) && !starts_spelling(c))
    {
        return false;
    }
    // An apostrophe is a userinfo character too: the walk back took it in.
    let (quote, info) = match info.split_first() {
        Some((b'\'', rest)) => (b'\'', rest),
        _ => match decode_back(buf, e, lo) {
            Some((q @ (b'"' | b'\'' | b'`'), _)) => (q, info),
            _ => return false,
        },
    };
    if !matches!(decode_fwd(buf, domain_end, eof), Fwd::Char(c, _) if c == quote || c == b'/') {
        return false;
    }
    let Some(colon) = info.iter().position(|&c| c == b':') else {
        return false;
    };
    let user = &info[..colon];
    !user.is_empty() && !LABELS.iter().any(|l| l.eq_ignore_ascii_case(user))
}

/// What decoding one part of a candidate address gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Decoded into the scratch buffers.
    Found,
    /// It cannot be (part of) an address we protect.
    NotAddress,
    /// The spelling may continue past the end of the buffer.
    NeedMore,
}

/// Bytes that can start a spelled character going forwards.
fn starts_spelling(c: u8) -> bool {
    matches!(c, b'&' | b'%' | b'\\' | 0xc2 | 0xe2 | 0xe3 | 0xef)
}

/// Bytes just before a run of literal local characters that could make
/// its first characters part of a spelled one (`%6a`, `\x6a`, `\u006a`,
/// `&#106`, `&#x6a`), or end a character reference or escape that decodes
/// to a local character (`&period;`, `&#106;`, `\u{6a}`), or end a raw
/// UTF-8 character the local part goes on past (an invisible one, a
/// fullwidth letter: any continuation byte).
fn ends_spelling_before(c: u8) -> bool {
    matches!(c, b'%' | b'\\' | b'#' | b';' | b'}' | 0x80..=0xbf)
}

/// The usual domain, told without decoding it: one of a site's few
/// protected domains spelled literally from `buf[start]` on, then a byte
/// that continues no domain and starts no spelling. Its entries, with the
/// domain left in `sc`; `None` when it cannot tell ([`decode_domain`]
/// then decides). Comparing with the few domains goes the same way for
/// every address, where finding the end of a run of domain characters
/// mispredicts the branch that ends it.
fn literal_domain<'p>(
    prot: &'p Protection,
    buf: &[u8],
    start: usize,
    sc: &mut Scratch,
) -> Option<&'p [usize]> {
    let tail = &buf[start..];
    let (domain, ids) = prot.few_domains()?.iter().find(|(d, _)| {
        // Pages write domains in lower case: one `memcmp` first.
        tail.len() > d.len() && (tail[..d.len()] == **d || tail[..d.len()].eq_ignore_ascii_case(d))
    })?;
    let next = tail[domain.len()];
    if is_domain_char(next.into()) || starts_spelling(next) {
        return None;
    }
    sc.domain.get_mut(..domain.len())?.copy_from_slice(domain);
    sc.domain_len = domain.len();
    sc.domain_end = start + domain.len();
    Some(ids)
}

/// Decodes the domain after the `@` at `start`. The run of literal domain
/// characters is taken in one go (the usual case: it is ended by a byte that
/// starts no spelling, and it is the whole domain); decoding goes on
/// character by character only where a spelled character follows it.
fn decode_domain(buf: &[u8], start: usize, eof: bool, sc: &mut Scratch) -> Part {
    let tail = &buf[start..];
    let mut run = 0;
    for (d, &c) in sc.domain.iter_mut().zip(tail) {
        if !is_domain_char(c.into()) {
            break;
        }
        *d = c.to_ascii_lowercase();
        run += 1;
    }
    let end = start
        + sc.domain[..run]
            .iter()
            .rposition(|&c| c != b'.')
            .map_or(0, |i| i + 1);
    match tail.get(run) {
        // Only past a full buffer of literal domain characters: longer than
        // any we protect.
        Some(&c) if is_domain_char(c.into()) => Part::NotAddress,
        Some(&c) if !starts_spelling(c) => {
            sc.domain_len = end - start;
            sc.domain_end = end;
            Part::Found
        }
        _ => spelled_domain(buf, start + run, run, end, eof, sc),
    }
}

/// Decodes a domain character by character, in any spelling, from
/// `buf[i]` on; `sc.domain[..dlen]` holds what was decoded before `i` and
/// `end` is where its last character other than a dot ends.
fn spelled_domain(
    buf: &[u8],
    mut i: usize,
    mut dlen: usize,
    mut end: usize,
    eof: bool,
    sc: &mut Scratch,
) -> Part {
    let mut hidden = 0;
    loop {
        // Fast path: a plain domain character needs no decoding.
        let (c, n) = match buf.get(i) {
            Some(&c) if !starts_spelling(c) => (c, 1),
            _ => match decode_fwd(buf, i, eof) {
                Fwd::NeedMore if i >= buf.len() && eof => break,
                Fwd::NeedMore => return Part::NeedMore,
                Fwd::Char(c, n) => (c, n),
            },
        };
        if c == INVISIBLE {
            hidden += 1;
            if hidden > MAX_INVISIBLE {
                return Part::NotAddress;
            }
            i += n;
            continue;
        }
        if !is_domain_char(c.into()) {
            break;
        }
        if dlen == sc.domain.len() {
            return Part::NotAddress;
        }
        sc.domain[dlen] = c.to_ascii_lowercase();
        dlen += 1;
        i += n;
        if c != b'.' {
            end = i;
        }
    }
    while dlen > 0 && sc.domain[dlen - 1] == b'.' {
        dlen -= 1;
    }
    sc.domain_len = dlen;
    sc.domain_end = end;
    Part::Found
}

/// The quick way to the local part before the `@` at `p`: a run of literal
/// local characters that no spelled character can reach into is the
/// decoded local part. `None` when it cannot tell; [`spelled_local`]
/// then decides.
#[inline(always)]
fn plain_local(buf: &[u8], p: usize, lo: usize, sc: &mut Scratch) -> Option<Part> {
    let limit = lo.max(p.saturating_sub(sc.local.len() + 1));
    let s = buf[limit..p]
        .iter()
        .rposition(|&c| !is_local_char(c.into()))
        .map_or(limit, |i| limit + i + 1);
    if p - s > sc.local.len() {
        return None; // longer than the buffer: let the careful way count
    }
    if s > lo && ends_spelling_before(buf[s - 1]) {
        return None;
    }
    let run = &buf[s..p];
    let run = &run[run.iter().position(|&c| c != b'.').unwrap_or(run.len())..];
    if run.is_empty() || run.len() > MAX_LOCAL {
        return Some(Part::NotAddress);
    }
    for (d, &c) in sc.local.iter_mut().zip(run) {
        *d = c.to_ascii_lowercase();
    }
    sc.local_len = run.len();
    sc.walked = Walked {
        from: s,
        chars: p - s,
    };
    Some(Part::Found)
}

/// A quoted local part before the `@` at `p` (`"mjd"@plover.com`, in any
/// spelling of the quotes: `&quot;mjd&quot;@`): mail to it goes to `mjd`,
/// so a harvester that reads quoted local parts takes it. Its ID goes
/// inside the quotes (`insert_at`). Only quotes around local-part
/// characters count, and only when the opening one follows no local-part
/// character or quote: `"a"+"@plover.com"` is code joining two strings.
fn quoted_local(buf: &[u8], p: usize, lo: usize, sc: &mut Scratch) -> Part {
    let quote = |e: usize| decode_back(buf, e, lo).filter(|&(c, _)| c == b'"');
    let Some((_, close)) = quote(p) else {
        return Part::NotAddress;
    };
    if !matches!(spelled_local(buf, close, lo, sc), Part::Found)
        || !sc.local[..sc.local_len].iter().any(u8::is_ascii_alphanumeric)
    {
        return Part::NotAddress;
    }
    let Some((_, open)) = quote(sc.walked.from) else {
        return Part::NotAddress;
    };
    match decode_back(buf, open, lo) {
        Some((c, _)) if c == b'"' || is_local_char(c.into()) => Part::NotAddress,
        _ => {
            sc.insert_at = close;
            Part::Found
        }
    }
}

/// Decodes the local part before the `@` at `p` backwards, character by
/// character in any spelling, reading no byte before `lo`.
fn spelled_local(buf: &[u8], p: usize, lo: usize, sc: &mut Scratch) -> Part {
    // Into `sc.local` reversed.
    let (mut n, mut hidden) = (0, 0);
    let mut e = p;
    while let Some((c, start)) = decode_back(buf, e, lo) {
        if c == INVISIBLE && hidden < MAX_INVISIBLE {
            hidden += 1;
            e = start;
            continue;
        }
        if !is_local_char(c.into()) {
            break;
        }
        if n == sc.local.len() {
            return Part::NotAddress; // longer than any local part
        }
        sc.local[n] = c.to_ascii_lowercase();
        n += 1;
        e = start;
    }
    sc.walked = Walked { from: e, chars: n };
    while n > 0 && sc.local[n - 1] == b'.' {
        n -= 1; // leading dots are sentence punctuation, not the address
    }
    if n == 0 || n > MAX_LOCAL {
        return Part::NotAddress;
    }
    sc.local[..n].reverse();
    sc.local_len = n;
    Part::Found
}

fn ascii_str(b: &[u8]) -> &str {
    // Only ASCII address characters are ever stored in these buffers.
    std::str::from_utf8(b).unwrap_or("")
}

/// One decoded character going forwards.
#[derive(Debug, PartialEq, Eq)]
enum Fwd {
    /// The character (or [`NON_ASCII`]) and how many bytes spell it.
    Char(u8, usize),
    /// The spelling may continue past the end of the buffer.
    NeedMore,
}

fn hex_val(c: u8) -> Option<u32> {
    (c as char).to_digit(16)
}

/// The value of hex digits already checked to be hex digits (at most 8).
fn hex_number(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |acc, &c| acc * 16 + hex_val(c).unwrap_or(0))
}

/// What a decoded code point is to the scanner: ASCII as it is; the
/// fullwidth forms of ASCII (`＠`, `ｍ`, `．`, U+FF01-U+FF5E), the small `﹫`
/// and the ideographic full stops (`。`, `｡`) as the ASCII a harvester
/// normalises them to (Japanese and Chinese pages write addresses so); the
/// characters that render as nothing as [`INVISIBLE`]; anything else as
/// [`NON_ASCII`].
fn to_char(v: u32) -> u8 {
    match v {
        0..0x80 => v as u8,
        0xad | 0x200b..=0x200f | 0x2060 | 0xfeff => INVISIBLE,
        // In range, so the difference is ASCII.
        0xff01..=0xff5e => (v - 0xfee0) as u8,
        0xfe6b => b'@',
        0x3002 | 0xff61 => b'.',
        _ => NON_ASCII,
    }
}

/// Decodes the character starting at `buf[i]`. With `eof`, an unfinished
/// spelling at the end counts as its literal first byte.
fn decode_fwd(buf: &[u8], i: usize, eof: bool) -> Fwd {
    let Some(&c) = buf.get(i) else {
        return Fwd::NeedMore;
    };
    let rest = &buf[i..];
    match c {
        // `&amp;#64;` is what a page shows as `&#64;` inside an attribute
        // that holds HTML (`srcdoc`): a harvester decoding twice sees `@`.
        b'&' if rest.starts_with(b"&amp;#") => match parse_entity(&rest[4..]) {
            Entity::Char(v, n) => Fwd::Char(v, n + 4),
            Entity::NeedMore if !eof => Fwd::NeedMore,
            _ => Fwd::Char(NON_ASCII, 5),
        },
        b'&' if !eof && b"&amp;#".starts_with(rest) && rest.len() >= 2 && rest[1] == b'a' => Fwd::NeedMore,
        b'&' => match parse_entity(rest) {
            Entity::Char(b'%', n) => percent_fwd(rest, n, eof),
            Entity::Char(v, n) => Fwd::Char(v, n),
            Entity::NeedMore if !eof => Fwd::NeedMore,
            _ => Fwd::Char(b'&', 1),
        },
        // JavaScript's `unescape` reads `%u0040` as `@`.
        b'%' if rest.get(1) == Some(&b'u') => hex_escape_fwd(rest, 4, eof),
        b'%' => percent_fwd(rest, 1, eof),
        b'\\' if rest.get(2) == Some(&b'{') && rest[1] == b'u' => braced_fwd(rest, eof),
        b'\\' => match rest.get(1) {
            // An escaped `@` (Perl's "mjd\@plover.com", a JavaScript
            // string's): what the string holds is the `@`.
            Some(b'@') => Fwd::Char(b'@', 2),
            Some(b'x') => hex_escape_fwd(rest, 2, eof),
            Some(b'u') => hex_escape_fwd(rest, 4, eof),
            Some(_) => Fwd::Char(b'\\', 1),
            None if !eof => Fwd::NeedMore,
            None => Fwd::Char(b'\\', 1),
        },
        0xc2 | 0xe2 | 0xe3 | 0xef => utf8_fwd(rest, eof),
        _ => Fwd::Char(c, 1),
    }
}

/// An escape of two bytes (`\x`, `\u`, `%u`) and `digits` hex digits at
/// the start of `rest`; its first byte alone when no such digits follow.
fn hex_escape_fwd(rest: &[u8], digits: usize, eof: bool) -> Fwd {
    let total = 2 + digits;
    let avail = &rest[2..rest.len().min(total)];
    if !avail.iter().all(|c| c.is_ascii_hexdigit()) {
        return Fwd::Char(rest[0], 1);
    }
    if avail.len() < digits {
        return if eof { Fwd::Char(rest[0], 1) } else { Fwd::NeedMore };
    }
    Fwd::Char(to_char(hex_number(avail)), total)
}

/// A percent-encoding whose `%` is the first `n` bytes of `rest`: `%40`,
/// or with the `%` or digits as character references (`&#37;&#52;&#48;`,
/// as Sphinx writes the `@` of every `mailto:` link), which a harvester
/// decoding the references and then the URL reads as `@`; or encoded twice
/// (`%2540`, a `mailto:` inside another URL's query), which a harvester
/// decoding until nothing changes reads so too. A `%` when no two hex
/// digits follow.
fn percent_fwd(rest: &[u8], n: usize, eof: bool) -> Fwd {
    match hex_pair(rest, n, eof) {
        Pair::Value(0x25, at) => match hex_pair(rest, at, eof) {
            Pair::Value(v, end) => Fwd::Char(to_char(v), end),
            Pair::NeedMore => Fwd::NeedMore,
            Pair::Not => Fwd::Char(b'%', at),
        },
        // A byte that does not continue it leaves the first alone.
        Pair::Value(v @ 0xc2..=0xf4, at) => match percent_utf8(rest, v, at, eof) {
            Pair::Value(c, end) => Fwd::Char(to_char(c), end),
            Pair::NeedMore => Fwd::NeedMore,
            Pair::Not => Fwd::Char(NON_ASCII, at),
        },
        Pair::Value(v, at) => Fwd::Char(to_char(v), at),
        Pair::NeedMore => Fwd::NeedMore,
        Pair::Not => Fwd::Char(b'%', n),
    }
}

/// The rest of a character percent-encoded in UTF-8 whose first byte,
/// `lead`, ended at `rest[at]` (`%EF%BC%A0`, a fullwidth `＠`, as a URL
/// encoder writes it): its code point and where it ends. `Not` when a
/// byte does not continue it, or it is overlong or a surrogate.
fn percent_utf8(rest: &[u8], lead: u32, mut at: usize, eof: bool) -> Pair {
    let (more, mut v) = match lead {
        0xc2..=0xdf => (1, lead & 0x1f),
        0xe0..=0xef => (2, lead & 0x0f),
        0xf0..=0xf4 => (3, lead & 0x07),
        _ => return Pair::Not,
    };
    for _ in 0..more {
        match rest.get(at) {
            None if eof => return Pair::Not,
            None => return Pair::NeedMore,
            Some(b'%') => {}
            Some(_) => return Pair::Not,
        }
        match hex_pair(rest, at + 1, eof) {
            Pair::Value(c @ 0x80..=0xbf, end) => (v, at) = (v << 6 | (c & 0x3f), end),
            Pair::NeedMore => return Pair::NeedMore,
            _ => return Pair::Not,
        }
    }
    match char::from_u32(v) {
        Some(c) if c.len_utf8() == more + 1 => Pair::Value(v, at),
        _ => Pair::Not,
    }
}

/// Two hex digits at `rest[at..]`, literal or as references.
enum Pair {
    /// Their value, and where they end.
    Value(u32, usize),
    /// They may continue past the end of the buffer.
    NeedMore,
    Not,
}

fn hex_pair(rest: &[u8], mut at: usize, eof: bool) -> Pair {
    let mut v = 0;
    for _ in 0..2 {
        let (c, len) = match rest.get(at) {
            None if eof => return Pair::Not,
            None => return Pair::NeedMore,
            Some(b'&') => match parse_entity(&rest[at..]) {
                Entity::Char(c, len) => (c, len),
                Entity::NeedMore if !eof => return Pair::NeedMore,
                _ => return Pair::Not,
            },
            Some(&c) => (c, 1),
        };
        let Some(h) = hex_val(c) else {
            return Pair::Not;
        };
        v = v * 16 + h;
        at += len;
    }
    Pair::Value(v, at)
}

/// The longest JavaScript code point escape we decode, `\\u{00000040}`.
const MAX_BRACED: usize = 12;

/// JavaScript's code point escape `\\u{40}` (any number of hex digits, up
/// to [`MAX_BRACED`] bytes in all) at the start of `rest`.
fn braced_fwd(rest: &[u8], eof: bool) -> Fwd {
    let digits = rest[3..]
        .iter()
        .take(MAX_BRACED - 4)
        .take_while(|c| c.is_ascii_hexdigit())
        .count();
    match rest.get(3 + digits) {
        Some(b'}') if digits > 0 => Fwd::Char(to_char(hex_number(&rest[3..3 + digits])), 4 + digits),
        None if !eof && 3 + digits < MAX_BRACED => Fwd::NeedMore,
        _ => Fwd::Char(b'\\', 1),
    }
}

/// `\\u{HH…}` ending `win`: the character and its length.
fn braced_back(win: &[u8]) -> Option<(u8, usize)> {
    let w = win.len();
    let digits = win[..w - 1]
        .iter()
        .rev()
        .take(MAX_BRACED - 4)
        .take_while(|c| c.is_ascii_hexdigit())
        .count();
    let len = digits + 4;
    if digits == 0 || w < len || &win[w - len..w - 1 - digits] != b"\\u{" {
        return None;
    }
    Some((to_char(hex_number(&win[w - 1 - digits..w - 1])), len))
}

/// A raw UTF-8 character at the start of `rest` (whose first byte is one
/// of [`UTF8_LEADS`]) that [`to_char`] reads, else its first byte as it is.
fn utf8_fwd(rest: &[u8], eof: bool) -> Fwd {
    let len = if rest[0] < 0xe0 { 2 } else { 3 };
    let have = rest.len().min(len);
    if !rest[1..have].iter().all(|&c| is_continuation(c)) {
        return Fwd::Char(rest[0], 1);
    }
    if have < len {
        return if eof { Fwd::Char(rest[0], 1) } else { Fwd::NeedMore };
    }
    match utf8_value(&rest[..len]) {
        c if c == NON_ASCII => Fwd::Char(rest[0], 1),
        c => Fwd::Char(c, len),
    }
}

/// A raw UTF-8 character that [`to_char`] reads ending just before `buf[e]`
/// and starting at or after `lo`: what it decodes to and where it starts.
fn utf8_back(buf: &[u8], e: usize, lo: usize) -> Option<(u8, usize)> {
    let from = e.saturating_sub(3).max(lo);
    let s = from + buf[from..e].iter().rposition(|&c| !is_continuation(c))?;
    let len = if buf[s] < 0xe0 { 2 } else { 3 };
    if e - s != len || !UTF8_LEADS.contains(&buf[s]) {
        return None;
    }
    Some((utf8_value(&buf[s..e]), s)).filter(|&(c, _)| c != NON_ASCII)
}

fn is_continuation(c: u8) -> bool {
    c & 0xc0 == 0x80
}

/// The scanner's value ([`to_char`]) of one whole two- or three-byte UTF-8
/// character.
fn utf8_value(ch: &[u8]) -> u8 {
    std::str::from_utf8(ch)
        .ok()
        .and_then(|s| s.chars().next())
        .map_or(NON_ASCII, |c| to_char(c.into()))
}

enum Entity {
    Char(u8, usize),
    NeedMore,
    Not,
}

/// Named references that spell address characters (HTML's are
/// case-sensitive).
const NAMED: &[(&[u8], u8)] = &[
    (b"commat", b'@'),
    (b"period", b'.'),
    (b"lowbar", b'_'),
    (b"UnderBar", b'_'),
    (b"plus", b'+'),
    (b"hyphen", NON_ASCII),
    (b"shy", INVISIBLE),
    (b"zwnj", INVISIBLE),
    (b"zwj", INVISIBLE),
    (b"lrm", INVISIBLE),
    (b"rlm", INVISIBLE),
    (b"NoBreak", INVISIBLE),
    // Not address characters, but quotes around an authority (`&quot;`).
    (b"quot", b'"'),
    (b"apos", b'\''),
];

/// Parses a character reference at the start of `s`: `s[0]` is its `&`, or
/// the `;` of a leading `&amp;` whose tail is parsed the same way.
fn parse_entity(s: &[u8]) -> Entity {
    let limit = s.len().min(MAX_ENTITY);
    match s.get(1) {
        None => return Entity::NeedMore,
        Some(b'#') => {}
        Some(c) if c.is_ascii_alphabetic() => {
            let mut j = 1;
            while j < limit && s[j].is_ascii_alphanumeric() {
                j += 1;
            }
            if j == s.len() {
                return Entity::NeedMore;
            }
            if s[j] != b';' {
                return Entity::Not;
            }
            let name = &s[1..j];
            return match NAMED.iter().find(|(n, _)| *n == name) {
                Some(&(_, v)) => Entity::Char(v, j + 1),
                None => Entity::Char(NON_ASCII, j + 1),
            };
        }
        Some(_) => return Entity::Not,
    }
    let (radix, start) = match s.get(2) {
        None => return Entity::NeedMore,
        Some(b'x' | b'X') => (16, 3),
        Some(_) => (10, 2),
    };
    let mut j = start;
    let mut v: u32 = 0;
    while j < limit {
        let Some(d) = (s[j] as char).to_digit(radix) else {
            break;
        };
        v = v.saturating_mul(radix).saturating_add(d);
        j += 1;
    }
    if j == s.len() {
        return Entity::NeedMore;
    }
    if j == start || j == limit {
        return Entity::Not;
    }
    let n = if s[j] == b';' { j + 1 } else { j };
    Entity::Char(to_char(v), n)
}

/// Decodes the character that ends just before `buf[e]`, reading no byte
/// before `lo`. Returns the character and where its spelling starts.
fn decode_back(buf: &[u8], e: usize, lo: usize) -> Option<(u8, usize)> {
    if e <= lo {
        return None;
    }
    let last = buf[e - 1];
    if last == b'/' && e - 1 > lo && buf[e - 2] == b'\\' {
        // JSON's escaped slash: `https:\/\/joe@…`.
        return Some((b'/', e - 2));
    }
    let spelled = if last == b';' {
        reference_back(buf, e, lo)
    } else if last.is_ascii_hexdigit() {
        let win = &buf[lo..e];
        escape_back(win)
            .or_else(|| unterminated_back(win))
            .map(|(c, n)| (c, e - n))
    } else if last >= 0x80 {
        utf8_back(buf, e, lo)
    } else if last == b'}' {
        braced_back(&buf[lo..e]).map(|(c, n)| (c, e - n))
    } else {
        None
    };
    Some(spelled.unwrap_or((last, e - 1)))
}

/// A character reference ending in `;` just before `buf[e]` (`&#106;`,
/// `&period;`, `&amp;#106;`): the character and where it starts.
fn reference_back(buf: &[u8], e: usize, lo: usize) -> Option<(u8, usize)> {
    let from = e.saturating_sub(MAX_FORM).max(lo);
    let a = from + buf[from..e - 1].iter().rposition(|&c| c == b'&')?;
    // `&amp;#106;` ends the same way as `&#106;`.
    let inner = if buf[a..e].starts_with(b"&amp;#") {
        a + 4
    } else {
        a
    };
    match parse_entity(&buf[inner..e]) {
        Entity::Char(v, n) if inner + n == e => Some((v, a)),
        _ => None,
    }
}

/// `%HH`, `\\xHH`, `\\uHHHH` or `%uHHHH` ending `win`: the character and its length.
fn escape_back(win: &[u8]) -> Option<(u8, usize)> {
    let w = win.len();
    let hex = |r: std::ops::Range<usize>| -> Option<u32> {
        win[r]
            .iter()
            .try_fold(0u32, |acc, &c| Some(acc * 16 + hex_val(c)?))
    };
    let forms: [(&[u8], usize); 4] = [(b"%", 2), (b"\\x", 2), (b"\\u", 4), (b"%u", 4)];
    forms.into_iter().find_map(|(prefix, digits)| {
        let len = prefix.len() + digits;
        if w < len || &win[w - len..w - digits] != prefix {
            return None;
        }
        hex(w - digits..w).map(|v| (to_char(v), len))
    })
}

/// `&#106` / `&#x6a` (and `&amp;#106`) without the semicolon, ending
/// `win`: the character and its length.
fn unterminated_back(win: &[u8]) -> Option<(u8, usize)> {
    let w = win.len();
    for (radix, prefix) in [(10u32, &b"&#"[..]), (16, &b"&#x"[..])] {
        let max_digits = MAX_ENTITY - prefix.len();
        let mut k = 0;
        while k < max_digits && k < w && (win[w - 1 - k] as char).is_digit(radix) {
            k += 1;
            let d = w - k;
            let before = &win[..d];
            let tail = &prefix[1..]; // "#" or "#x"
            let ends = |p: &[u8]| before.len() >= p.len() && before[d - p.len()..].eq_ignore_ascii_case(p);
            let start = if ends(prefix) {
                d - prefix.len()
            } else if before.len() > 4 + tail.len()
                && ends(tail)
                && before[..d - tail.len()].ends_with(b"&amp;")
            {
                d - tail.len() - 5
            } else {
                continue;
            };
            let v = win[d..w].iter().fold(0u32, |acc, &c| {
                acc.saturating_mul(radix)
                    .saturating_add((c as char).to_digit(radix).unwrap_or(0))
            });
            return Some((to_char(v), w - start));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(cap: usize) -> Scratch {
        Scratch {
            domain: vec![0; cap].into(),
            domain_len: 0,
            domain_end: 0,
            local: [0; MAX_LOCAL + 1],
            local_len: 0,
            walked: Walked::default(),
            insert_at: 0,
        }
    }

    fn ihatespam() -> Protection {
        let glob = |g| crate::address::Glob::new(g).unwrap();
        let entry = |domain: &str| crate::address::Protect {
            domain: domain.into(),
            local: glob("*"),
            exempt: vec![],
            deliver_to: None,
        };
        // One a prefix of the other: the shorter must not be taken for it.
        Protection::new(vec![entry("ihatespam.test"), entry("ihatespam.test.x")], "-id-")
    }

    fn domain_of(sc: &Scratch) -> (&[u8], usize) {
        (&sc.domain[..sc.domain_len], sc.domain_end)
    }

    /// Pieces that make the quick paths' edge cases likely: spellings that
    /// reach into a run of literal characters, runs at the length caps.
    fn tricky() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let pieces: Vec<&'static [u8]> = vec![
            b"joe",
            b"e",
            b"6a",
            b"x",
            b"u",
            b"0",
            b".",
            b"-",
            b"_",
            b"+",
            b"&",
            b"#",
            b";",
            b"%",
            b"\\",
            b"@",
            b"&#64;",
            b"&#106;",
            b"&#x6A",
            b"&#106",
            b"&amp;#106;",
            b"%6a",
            b"%2e",
            b"\\x6a",
            b"\\u006a",
            b"%u006a",
            b"%u0040",
            b"&period;",
            b"&hyphen;",
            b"ihatespam",
            b".test",
            b"ihatespam.test",
            b"IHateSpam.TEST",
            b" ",
            b"<",
            b"\xc3\xa9",
            b"&shy;",
            b"\xc2\xad",
            b"\xe2\x80\x8b",
            b"\xef\xbc\xa0",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ];
        prop::collection::vec(prop::sample::select(pieces), 0..40).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The quick paths answer what decoding character by character
        /// answers.
        #[test]
        fn the_plain_paths_agree_with_the_spelled_paths(
            buf in tricky(),
            cap in 1usize..24,
            lo_back in 0usize..80,
        ) {
            let prot = ihatespam();
            for at in 0..=buf.len() {
                let (mut a, mut b) = (scratch(cap), scratch(cap));
                if let Some(ids) = literal_domain(&prot, &buf, at, &mut a) {
                    let careful = spelled_domain(&buf, at, 0, at, false, &mut b);
                    proptest::prop_assert_eq!(careful, Part::Found, "literal domain at {}", at);
                    proptest::prop_assert_eq!(domain_of(&a), domain_of(&b), "literal domain at {}", at);
                    proptest::prop_assert_eq!(prot.domain_entries(domain_of(&b).0), Some(ids));
                }
                for eof in [false, true] {
                    let quick = decode_domain(&buf, at, eof, &mut a);
                    let careful = spelled_domain(&buf, at, 0, at, eof, &mut b);
                    proptest::prop_assert_eq!(quick, careful, "domain at {}", at);
                    if quick == Part::Found {
                        proptest::prop_assert_eq!(domain_of(&a), domain_of(&b), "domain at {}", at);
                    }
                }
                for lo in [at.saturating_sub(BACK), at.saturating_sub(lo_back)] {
                    if let Some(quick) = plain_local(&buf, at, lo, &mut a) {
                        let careful = spelled_local(&buf, at, lo, &mut b);
                        proptest::prop_assert_eq!(quick, careful, "local before {} from {}", at, lo);
                        if quick == Part::Found {
                            proptest::prop_assert_eq!(&a.local[..a.local_len], &b.local[..b.local_len]);
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The literal-run way to the userinfo answers what decoding
        /// character by character answers, whether it starts at the `@`
        /// or past a local part already walked over.
        #[test]
        fn the_plain_userinfo_path_agrees_with_the_spelled_one(
            pre in tricky(),
            form in proptest::sample::select(vec![
                &b"http://"[..], b"ssh://git", b"https://joe:", b"\"", b"'", b"`", b"\"joe:", b"'mailto:",
                b"https:\\/\\/", b"http:&#47;&#47;", b"http%3A%2F%2F", b" ", b">", b"&quot;Joe:", b"\"EMail:",
            ]),
            local in "[a-z0-9.:'!]{0,12}|[a-z]{185,200}",
            walked in 0usize..14,
            post in proptest::sample::select(vec![&b"\""[..], b"/x", b"'", b" ", b"", b":x"]),
        ) {
            let buf = [&pre[..], form, local.as_bytes(), b"@ihatespam.test", post].concat();
            let at = pre.len() + form.len() + local.len();
            let end = at + 15;
            let local_chars = local.bytes().rev().take_while(|&c| is_local_char(c.into())).count();
            let k = walked.min(local_chars);
            for eof in [false, true] {
                let quick = in_url_authority(&buf, Walked { from: at - k, chars: k }, end, 0, eof);
                let mut info = [0u8; MAX_USERINFO];
                let careful = spelled_userinfo(&buf, at, 0, &mut info)
                    .is_some_and(|(n, e)| authority_ends_at(&buf, e, 0, &info[..n], end, eof));
                proptest::prop_assert_eq!(quick, careful, "{:?}", String::from_utf8_lossy(&buf));
            }
        }
    }

    #[test]
    fn the_usual_addresses_take_the_plain_paths() {
        let mut sc = scratch(30);
        for page in [
            &b"mailto:Joe.Bloggs@ihatespam.test?subject=x"[..],
            b">joe@ihatespam.test.</a>",
            b"(joe@x.test)",
        ] {
            let at = page.iter().position(|&c| c == b'@').unwrap();
            assert_eq!(plain_local(page, at, 0, &mut sc), Some(Part::Found));
        }
        assert_eq!(plain_local(b"&#106;oe@", 8, 0, &mut sc), None);
    }

    #[test]
    fn entities_forwards() {
        assert_eq!(decode_fwd(b"&#64;x", 0, false), Fwd::Char(b'@', 5));
        assert_eq!(decode_fwd(b"&#x40;x", 0, false), Fwd::Char(b'@', 6));
        assert_eq!(decode_fwd(b"&#X040;", 0, false), Fwd::Char(b'@', 7));
        assert_eq!(decode_fwd(b"&#64x", 0, false), Fwd::Char(b'@', 4));
        assert_eq!(decode_fwd(b"&commat;", 0, false), Fwd::Char(b'@', 8));
        assert_eq!(decode_fwd(b"&#6", 0, false), Fwd::NeedMore);
        assert_eq!(decode_fwd(b"&#6", 0, true), Fwd::Char(b'&', 1));
        assert_eq!(decode_fwd(b"%40", 0, false), Fwd::Char(b'@', 3));
        assert_eq!(decode_fwd(b"%4", 0, false), Fwd::NeedMore);
        assert_eq!(decode_fwd(b"%zz", 0, false), Fwd::Char(b'%', 1));
        assert_eq!(decode_fwd(b"\\u0040", 0, false), Fwd::Char(b'@', 6));
        assert_eq!(decode_fwd(b"\\x40", 0, false), Fwd::Char(b'@', 4));
        assert_eq!(decode_fwd(b"\\u00", 0, false), Fwd::NeedMore);
        assert_eq!(decode_fwd(b"&amp;x", 0, false), Fwd::Char(NON_ASCII, 5));
    }

    #[test]
    fn entities_backwards() {
        assert_eq!(decode_back(b"x&#106;", 7, 0), Some((b'j', 1)));
        assert_eq!(decode_back(b"x&#x6A;", 7, 0), Some((b'j', 1)));
        assert_eq!(decode_back(b"x&#106", 6, 0), Some((b'j', 1)));
        assert_eq!(decode_back(b"x%6a", 4, 0), Some((b'j', 1)));
        assert_eq!(decode_back(b"x\\u006a", 7, 0), Some((b'j', 1)));
        assert_eq!(decode_back(b"x\\x6a", 5, 0), Some((b'j', 1)));
        assert_eq!(decode_back(b"x&period;", 9, 0), Some((b'.', 1)));
        assert_eq!(decode_back(b"joe123", 6, 0), Some((b'3', 5)));
        assert_eq!(decode_back(b"ab", 2, 2), None);
        assert_eq!(decode_back(b"x&amp;#106;", 11, 0), Some((b'j', 1)));
        assert_eq!(decode_back(b"x&amp;#106", 10, 0), Some((b'j', 1)));
        assert_eq!(decode_fwd(b"&amp;#64;", 0, false), Fwd::Char(b'@', 9));
        assert_eq!(decode_fwd(b"&amp;", 0, false), Fwd::NeedMore);
    }
}
