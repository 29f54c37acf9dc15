//! Addresses a script puts together from its variables: the `@` in a
//! string literal of its own, joined to names whose values the page set
//! just before, as the e-mail "protection" snippets of many older sites do:
//!
//! ```text
//! var user = "mjd", site = "plover.com";
//! document.write(user + '@' + site);   // or `${user}@${site}`
//! ```
//!
//! or `['mjd', 'plover.com'].join('@')`. A browser running the script, and
//! a harvester that runs it, shows `mjd@plover.com`; the page's bytes hold
//! no such address. The ID goes where it always does, just before the `@`
//! (`user + '-id-TOKEN@' + site`), so the script shows the munged address.
//!
//! # How, and what is not taken
//!
//! Asked only of an `@` whose main reading found no address and that ends
//! or starts a literal (a quote or a template's `}` before it, a quote or
//! `${` after it). Each side is then either read as the main scanner reads
//! it (the local part's characters just before the `@`; the domain's just
//! after it) or is a join: `+` and a name (`user`, `e.user`), or a
//! literal, or a template's `${name}`. A name's value is the literal last
//! assigned to it before (`name = '…'`, `name: '…'` in an object, `"name":
//! "…"` in JSON) within the bytes the scanner keeps ([`super::HISTORY`]).
//! A name whose last assignment is anything else (`user += …`, a call) is
//! not guessed at. At least one side must be a join of a name: literals
//! alone (`'mjd' + '@' + 'plover.com'`) are the spelled-out reader's. An
//! `@` that is all of a `join`'s argument joins an array of two elements
//! (literals or names), or a name last assigned such an array.
//! Not taken: values built by calls (`String.fromCharCode`, `reverse()`),
//! arrays of more than the two parts, names set further back than the kept
//! bytes, a value with escapes in it.

use std::ops::Range;

use memchr::memmem::FinderRev;

use super::spelled::{Reading, Stop, is_quote, is_space, skip_spaces_fwd, trim_end_spaces};
use super::{HISTORY, Part, Scratch, in_url_authority, plain_local, protected_entry};
use crate::address::{MAX_LOCAL, Protection, is_domain_char, is_local_char};

/// The longest name (with its object path: `contact.email.user`) read.
const MAX_NAME: usize = 64;
/// The longest value a name is taken to have.
const MAX_VALUE: usize = 256;
/// The most pieces a domain is joined from (`b + '.' + c`: three).
const MAX_PIECES: usize = 8;

/// Whether the `@` spelled by `buf[p..p + at_len]` can be part of a
/// script's join: it ends or starts a literal. One or two loads, asked of
/// `@`s that are no address.
#[inline]
pub(super) fn may_join(buf: &[u8], p: usize, at_len: usize) -> bool {
    let before = p > 0 && JOIN[usize::from(buf[p - 1])] & BEFORE != 0;
    before
        || buf
            .get(p + at_len)
            .is_some_and(|&c| JOIN[usize::from(c)] & AFTER != 0)
}

/// Bytes that may end a literal just before an `@` (a quote, a template's
/// `}`) and start a join just after it (a quote, a template's `$`).
const JOIN: [u8; 256] = {
    let mut t = [0; 256];
    t[b'\'' as usize] = BEFORE | AFTER;
    t[b'"' as usize] = BEFORE | AFTER;
    t[b'`' as usize] = BEFORE | AFTER;
    t[b'}' as usize] = BEFORE;
    t[b'$' as usize] = AFTER;
    t
};
const BEFORE: u8 = 1;
const AFTER: u8 = 2;

/// What the sides of a join decided.
pub(super) enum Joined {
    /// A protected address by this entry, decoded into the scratch buffers;
    /// `domain_joined` when its domain came from the join (it cannot be
    /// replaced in the page's bytes).
    Found {
        entry: usize,
        domain_joined: bool,
    },
    No,
    NeedMore,
}

/// Decides the `@` at `r.q` (spelled in `at_len` bytes) as part of a
/// script's join; on a match the address is left in `sc`, its ID to go at
/// the `@`.
pub(super) fn decide(
    prot: &Protection,
    r: Reading<'_>,
    at_len: usize,
    budget: &mut Budget,
    sc: &mut Scratch,
) -> Joined {
    let p = r.q;
    // Names are looked up no further back than the bytes the scanner keeps.
    let mut names = Names {
        buf: r.buf,
        lo: p.saturating_sub(HISTORY),
        budget,
    };
    let (local_joined, domain_joined) = match sides(r, at_len, &mut names, sc) {
        Ok(Some(sides)) => sides,
        Ok(None) | Err(Stop::TooFar) => return Joined::No,
        Err(Stop::Short) => return Joined::NeedMore,
    };
    if !(local_joined || domain_joined) {
        return Joined::No;
    }
    let Some(entry) = protected_entry(prot, sc) else {
        return Joined::No;
    };
    // `'https://joe@' + host`: a URL's user name, not an address.
    let authority = || in_url_authority(r.buf, sc.walked, sc.domain_end, p.saturating_sub(HISTORY), r.eof);
    if !local_joined && authority() {
        return Joined::No;
    }
    sc.insert_at = p;
    Joined::Found { entry, domain_joined }
}

/// Decides a script's `fromCharCode(64)`, spanning `call` (from its
/// `String.` to past its `)`), as the `@` of a join: `user +
/// String.fromCharCode(64) + site`, `'mjd' + String.fromCharCode(64) +
/// 'plover.com'`, or `parts.join(String.fromCharCode(64))`. On a match the
/// address is left in `sc`; its ID goes into the call, before the code.
pub(super) fn decide_call(
    prot: &Protection,
    r: Reading<'_>,
    call: Range<usize>,
    budget: &mut Budget,
    sc: &mut Scratch,
) -> Joined {
    let mut names = Names {
        buf: r.buf,
        lo: call.start.saturating_sub(HISTORY),
        budget,
    };
    let read = match array_join(r, call.clone(), &mut names, sc) {
        Ok(true) => Ok(Some(true)),
        Ok(false) => call_sides(r, call, &mut names, sc),
        Err(stop) => Err(stop),
    };
    match read {
        Ok(Some(_)) => {}
        Ok(None) | Err(Stop::TooFar) => return Joined::No,
        Err(Stop::Short) => return Joined::NeedMore,
    }
    match protected_entry(prot, sc) {
        Some(entry) => Joined::Found {
            entry,
            domain_joined: true,
        },
        None => Joined::No,
    }
}

/// The local part joined before a call spelling the `@` (`user +`,
/// `'mjd' +`) and the domain joined after it, into `sc`.
fn call_sides<'b>(
    r: Reading<'b>,
    call: Range<usize>,
    names: &mut Names<'_, 'b>,
    sc: &mut Scratch,
) -> Result<Option<bool>, Stop> {
    let lo = names.lo;
    let value = joined_before(r.buf, call.start, lo, names);
    if !value.is_some_and(|(v, _)| set_local(v, sc)) {
        return Ok(None);
    }
    domain(r, call.end, false, names, sc)
}

/// Reads the local part and the domain around the `@` at `r.q` into `sc`:
/// whether each came from a join; `None` when a side is no part of an
/// address.
fn sides<'b>(
    r: Reading<'b>,
    at_len: usize,
    names: &mut Names<'_, 'b>,
    sc: &mut Scratch,
) -> Result<Option<(bool, bool)>, Stop> {
    let (buf, p) = (r.buf, r.q);
    // `join('@')`: the `@` in its quotes is all of the argument.
    if let Some(&q) = p.checked_sub(1).map(|i| &buf[i]).filter(|&&c| is_quote(c))
        && r.peek(p + at_len)? == Some(q)
        && array_join(r, p - 1..p + at_len + 1, names, sc)?
    {
        return Ok(Some((true, true)));
    }
    let Some(local_joined) = local(buf, p, r.lo, names, sc) else {
        return Ok(None);
    };
    Ok(domain(r, p + at_len, true, names, sc)?.map(|domain_joined| (local_joined, domain_joined)))
}

/// An array of the local part and the domain joined by the `@`:
/// `['mjd', 'plover.com'].join('@')`, or `parts.join('@')` after `parts =
/// [user, 'plover.com']` (names or literals), the `@` spanning `arg` (in
/// its quotes, or a call spelling it). True with both in `sc`; false when
/// `arg` is not all of a `join`'s argument.
fn array_join<'b>(
    r: Reading<'b>,
    arg: Range<usize>,
    names: &mut Names<'_, 'b>,
    sc: &mut Scratch,
) -> Result<bool, Stop> {
    let buf = r.buf;
    let open = skip_spaces_back(buf, arg.start, r.lo);
    let call = skip_spaces_back(buf, open.saturating_sub(1), r.lo);
    if open == r.lo || buf[open - 1] != b'(' || !buf[r.lo..call].ends_with(b".join") {
        return Ok(false);
    }
    if r.peek(skip_spaces_fwd(r, arg.end)?)? != Some(b')') {
        return Ok(false);
    }
    let array = skip_spaces_back(buf, call - 5, r.lo);
    let start = match buf[..array].last() {
        Some(b']') => memchr::memrchr(b'[', &buf[r.lo.max(array.saturating_sub(4 * MAX_VALUE))..array])
            .map(|k| r.lo.max(array.saturating_sub(4 * MAX_VALUE)) + k),
        _ => name_ending(buf, array, r.lo)
            .and_then(|(name, s)| names.assignment(name, s))
            .filter(|&v| buf.get(v) == Some(&b'[')),
    };
    let Some(start) = start else {
        return Ok(false);
    };
    let Some([local, domain]) = two_elements(buf, start + 1, arg.start, names) else {
        return Ok(false);
    };
    if !set_local(local, sc)
        || domain.len() > sc.domain.len()
        || !domain.iter().all(|&c| is_domain_char(c.into()))
    {
        return Ok(false);
    }
    for (d, &c) in sc.domain.iter_mut().zip(domain) {
        *d = c.to_ascii_lowercase();
    }
    sc.domain_len = domain.len();
    sc.domain_end = arg.end;
    Ok(true)
}

/// The values of an array literal's two elements, from `i` (past its
/// `[`) on, before `hi`: string literals or names.
fn two_elements<'b>(
    buf: &'b [u8],
    mut i: usize,
    hi: usize,
    names: &mut Names<'_, 'b>,
) -> Option<[&'b [u8]; 2]> {
    let mut values: [&[u8]; 2] = [&[], &[]];
    for (k, value) in values.iter_mut().enumerate() {
        i = skip_spaces(buf, i, hi);
        let c = *buf.get(i).filter(|_| i < hi)?;
        let end = if is_quote(c) {
            *value = literal_at(buf, i, hi)?;
            i + value.len() + 2
        } else {
            let e = i + buf[i..hi].iter().position(|&c| !is_name_char(c) && c != b'.')?;
            let name = &buf[i..e];
            let name = last_part(name);
            *value = names.value(name, i).filter(|_| starts_name(name))?;
            e
        };
        i = skip_spaces(buf, end, hi);
        let want = if k == 0 { b',' } else { b']' };
        if buf.get(i) != Some(&want) || i >= hi {
            return None;
        }
        i += 1;
    }
    Some(values)
}

/// The local part before the `@` at `p`, into `sc.local`: a name joined
/// to the literal the `@` starts (`user + '@…'`, `${user}@…`; true), or
/// literal characters (`'mjd@' + site`; false). Reads no byte before `lo`.
fn local<'b>(
    buf: &'b [u8],
    p: usize,
    lo: usize,
    names: &mut Names<'_, 'b>,
    sc: &mut Scratch,
) -> Option<bool> {
    let value = match buf[..p].last() {
        // Literals joined to the `@`'s are the spelled-out reader's.
        Some(&c) if is_quote(c) => match joined_before(buf, p - 1, lo, names)? {
            (value, Source::Name) => value,
            (_, Source::Literal) => return None,
        },
        Some(b'}') => {
            substitution_before(buf, p - 1, lo).and_then(|(name, start)| names.value(name, start))?
        }
        _ => {
            return matches!(plain_local(buf, p, lo, sc), Some(Part::Found)).then_some(false);
        }
    };
    set_local(value, sc).then_some(true)
}

/// Puts `value` in `sc.local` when it is a whole local part.
fn set_local(value: &[u8], sc: &mut Scratch) -> bool {
    if value.is_empty() || value.len() > MAX_LOCAL || !value.iter().all(|&c| is_local_char(c.into())) {
        return false;
    }
    for (d, &c) in sc.local.iter_mut().zip(value) {
        *d = c.to_ascii_lowercase();
    }
    sc.local_len = value.len();
    true
}

/// What a value joined by `+` came from.
enum Source {
    Name,
    Literal,
}

/// The value joined by `+` just before `e` (the opening quote of a
/// literal, or a call): a name's (`user + '`) or a literal's (`'mjd' +`).
fn joined_before<'b>(
    buf: &'b [u8],
    e: usize,
    lo: usize,
    names: &mut Names<'_, 'b>,
) -> Option<(&'b [u8], Source)> {
    let e = skip_spaces_back(buf, e, lo);
    let plus = e.checked_sub(1).filter(|&i| i >= lo && buf[i] == b'+')?;
    let end = skip_spaces_back(buf, plus, lo);
    match end.checked_sub(1).map(|i| buf[i]) {
        Some(q) if is_quote(q) && end - 1 > lo => {
            let floor = lo.max(end.saturating_sub(MAX_VALUE + 2));
            let open = floor + memchr::memrchr(q, &buf[floor..end - 1])?;
            Some((literal_at(buf, open, end)?, Source::Literal))
        }
        _ => {
            let (name, start) = name_ending(buf, end, lo)?;
            Some((names.value(name, start)?, Source::Name))
        }
    }
}

/// The name in the template substitution whose `}` is at `close`
/// (`${user}`), and where the `${` starts.
fn substitution_before(buf: &[u8], close: usize, lo: usize) -> Option<(&[u8], usize)> {
    let e = skip_spaces_back(buf, close, lo);
    let (name, s) = name_ending(buf, e, lo)?;
    let open = skip_spaces_back(buf, s, lo);
    (open >= lo + 2 && &buf[open - 2..open] == b"${").then(|| (name, open - 2))
}

/// The name (the last part of a path: `user` of `contact.user`) ending at
/// `e`, and where its path starts.
fn name_ending(buf: &[u8], e: usize, lo: usize) -> Option<(&[u8], usize)> {
    let floor = lo.max(e.saturating_sub(MAX_NAME + 1));
    let s = buf[floor..e]
        .iter()
        .rposition(|&c| !(is_name_char(c) || c == b'.'))
        .map_or(floor, |i| floor + i + 1);
    let path = &buf[s..e];
    if path.len() > MAX_NAME || (s == floor && floor > lo) {
        return None; // longer than any name we read
    }
    let name = last_part(path);
    starts_name(name).then_some((name, s))
}

/// The domain after the `@`, from `start` on, into `sc.domain`: the
/// literal's domain characters (when `start` is inside one), then pieces
/// joined by `+` (names and literals) or substituted in a template
/// (`${site}`), until a character that is not a domain's or the end of
/// the join. Whether a name's value went into it;
/// `None` when it is longer than any protected domain.
fn domain(
    r: Reading<'_>,
    start: usize,
    mut in_literal: bool,
    names: &mut Names<'_, '_>,
    sc: &mut Scratch,
) -> Result<Option<bool>, Stop> {
    let mut i = start;
    let mut d = Domain { n: 0, joined: false };
    // `in_literal`: whether `i` is inside a literal (its characters are
    // the domain's) or just after a name or a call (only a join can go on
    // from there).
    for _ in 0..MAX_PIECES {
        if in_literal {
            while let Some(c) = r.peek(i)?.filter(|&c| is_domain_char(c.into())) {
                if !d.push(c, sc) {
                    return Ok(None);
                }
                i += 1;
            }
        }
        let piece = match r.peek(i)? {
            Some(b'$') if in_literal && r.peek(i + 1)? == Some(b'{') => substituted(r, i + 2)?,
            Some(c) if in_literal && is_quote(c) => joined_after(r, i + 1)?,
            Some(_) | None if !in_literal => joined_after(r, i)?,
            _ => None,
        };
        let (name, end) = match piece {
            Some(Piece::Literal(start)) => {
                (i, in_literal) = (start, true);
                continue;
            }
            Some(Piece::Name(name, end)) => (name, end),
            Some(Piece::Substituted(name, end)) => (name, end),
            None => break,
        };
        let Some(value) = names.value(name, r.q) else {
            return Ok(None);
        };
        d.joined = true;
        let n = value
            .iter()
            .position(|&c| !is_domain_char(c.into()))
            .unwrap_or(value.len());
        for &c in &value[..n] {
            if !d.push(c, sc) {
                return Ok(None);
            }
        }
        if n < value.len() {
            break; // the value ends the domain
        }
        // A template's text goes on after its substitution; a join after
        // a name.
        in_literal = matches!(piece, Some(Piece::Substituted(..)));
        i = end;
    }
    sc.domain_len = d.n;
    // Where the domain's spelling ends: a joined one has none after the
    // `@` (the labels after it are the next candidates).
    sc.domain_end = if d.joined { start } else { i };
    Ok((d.n > 0).then_some(d.joined))
}

/// A domain being read into the scratch buffer.
struct Domain {
    n: usize,
    joined: bool,
}

impl Domain {
    /// Appends `c`; false when the domain is longer than any protected one.
    fn push(&mut self, c: u8, sc: &mut Scratch) -> bool {
        match sc.domain.get_mut(self.n) {
            Some(d) => {
                *d = c.to_ascii_lowercase();
                self.n += 1;
                true
            }
            None => false,
        }
    }
}

/// What a join of a literal to the next piece, from after its closing
/// quote, leads to.
enum Piece<'b> {
    /// A name, and where its path ends.
    Name(&'b [u8], usize),
    /// Another literal, whose characters start here.
    Literal(usize),
    /// A template's substitution of a name, and where it ends (past `}`).
    Substituted(&'b [u8], usize),
}

/// After a literal's closing quote or a name, from `i` on: `+` and a name
/// or another literal, or `None` (the join ends).
fn joined_after(r: Reading<'_>, i: usize) -> Result<Option<Piece<'_>>, Stop> {
    let plus = skip_spaces_fwd(r, i)?;
    if r.peek(plus)? != Some(b'+') {
        return Ok(None);
    }
    let s = skip_spaces_fwd(r, plus + 1)?;
    match r.peek(s)? {
        Some(c) if is_quote(c) => Ok(Some(Piece::Literal(s + 1))),
        Some(c) if is_name_char(c) => {
            let (name, end) = name_fwd(r, s)?;
            Ok(starts_name(name).then_some(Piece::Name(name, end)))
        }
        _ => Ok(None),
    }
}

/// The name in a template substitution whose name starts at or after
/// `i` (past `${`), as a piece; `None` when it is not a bare name.
fn substituted(r: Reading<'_>, i: usize) -> Result<Option<Piece<'_>>, Stop> {
    let s = skip_spaces_fwd(r, i)?;
    let (name, e) = name_fwd(r, s)?;
    let close = skip_spaces_fwd(r, e)?;
    Ok((r.peek(close)? == Some(b'}') && starts_name(name)).then_some(Piece::Substituted(name, close + 1)))
}

/// The name (the last part of the path) starting at `s`, and where the
/// path ends.
pub(super) fn name_fwd(r: Reading<'_>, s: usize) -> Result<(&[u8], usize), Stop> {
    let mut e = s;
    while r.peek(e)?.is_some_and(|c| is_name_char(c) || c == b'.') {
        e += 1;
        if e - s > MAX_NAME {
            return Ok((&[], e));
        }
    }
    Ok((last_part(&r.buf[s..e]), e))
}

/// The last part of a path (`user` of `contact.user`): the name looked up.
fn last_part(path: &[u8]) -> &[u8] {
    &path[path.iter().rposition(|&c| c == b'.').map_or(0, |i| i + 1)..]
}

/// How much looking names up may cost a stream, so that a page of joins
/// (`'@' + a + '@' + a …`, each name looked for in the kept bytes) is not
/// scanned over and over: [`PER_BYTE`] bytes searched are earned for each
/// byte of the stream, up to [`BURST`]; a lookup the budget cannot pay for
/// finds nothing. Spent only on decisions that stand, at increasing
/// positions, so a stream cut anywhere spends it the same.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    left: u64,
    /// The stream offset it was last topped up at.
    at: u64,
}

/// Bytes of lookups earned per byte of the stream.
const PER_BYTE: u64 = 8;
/// The most lookup bytes saved up: a page's few joins at once.
const BURST: u64 = 64 * 1024;
/// What checking one occurrence of a name costs, in bytes searched.
const OCCURRENCE: u64 = 64;

impl Budget {
    pub(super) const fn new() -> Budget {
        Budget { left: BURST, at: 0 }
    }

    /// The budget at stream offset `pos`, topped up for the bytes since.
    pub(super) fn at(self, pos: u64) -> Budget {
        let earned = pos.saturating_sub(self.at).saturating_mul(PER_BYTE);
        Budget {
            left: self.left.saturating_add(earned).min(BURST),
            at: pos.max(self.at),
        }
    }

    /// Pays `cost`; false, and nothing left, when it cannot.
    fn pay(&mut self, cost: u64) -> bool {
        let paid = self.left >= cost;
        self.left = if paid { self.left - cost } else { 0 };
        paid
    }
}

/// The page's names, looked up in the bytes before an `@` from `lo` on.
struct Names<'a, 'b> {
    buf: &'b [u8],
    lo: usize,
    budget: &'a mut Budget,
}

impl<'b> Names<'_, 'b> {
    /// The value of the literal last assigned to `name` before `hi`:
    /// `name = '…'`, or in an object `name: '…'` (`{user: 'mjd'}`, JSON's
    /// `"user": "mjd"`). `None` when the last assignment is not of a
    /// literal, or the budget does not stretch to finding it.
    fn value(&mut self, name: &[u8], hi: usize) -> Option<&'b [u8]> {
        let v = self.assignment(name, hi)?;
        literal_at(self.buf, v, hi)
    }

    /// Where the value last assigned to `name` before `hi` starts.
    fn assignment(&mut self, name: &[u8], hi: usize) -> Option<usize> {
        let (buf, lo) = (self.buf, self.lo);
        if name.is_empty() || hi <= lo {
            return None;
        }
        let finder = FinderRev::new(name);
        let mut end = hi;
        loop {
            let found = finder.rfind(&buf[lo..end]).map(|k| lo + k);
            let searched = end - found.unwrap_or(lo);
            if !self.budget.pay(searched as u64 + OCCURRENCE) {
                return None;
            }
            let at = found?;
            end = at;
            let before = (at > lo).then(|| buf[at - 1]);
            if at == lo || before.is_some_and(is_name_char) {
                continue; // part of a longer name, or cannot tell
            }
            let quoted = before.filter(|&c| c == b'"' || c == b'\'');
            match assigned(buf, at, at + name.len(), quoted, lo, hi) {
                Assigned::Value(v) => return Some(v),
                Assigned::Other => return None,
                Assigned::Not => {}
            }
        }
    }
}

/// What follows a name's occurrence.
enum Assigned {
    /// An assignment of the value starting here.
    Value(usize),
    /// A compound assignment (`+=`): the value cannot be told.
    Other,
    /// A use of the name, not an assignment.
    Not,
}

/// Whether the name at `buf[at..e]` (after `quote`, a JSON key's) is
/// assigned there, and where its value starts.
fn assigned(buf: &[u8], at: usize, mut e: usize, quote: Option<u8>, lo: usize, hi: usize) -> Assigned {
    if let Some(q) = quote {
        if buf.get(e) != Some(&q) {
            return Assigned::Not;
        }
        e += 1;
    }
    let op = skip_spaces(buf, e, hi);
    let next = |k: usize| buf.get(k).copied().filter(|_| k < hi);
    match next(op) {
        Some(b'=') if !matches!(next(op + 1), Some(b'=' | b'>')) => {}
        Some(b':') if in_object(buf, at - usize::from(quote.is_some()), lo) => {}
        Some(b'+' | b'-' | b'*' | b'/' | b'|' | b'&') if next(op + 1) == Some(b'=') => {
            return Assigned::Other;
        }
        _ => return Assigned::Not,
    }
    Assigned::Value(skip_spaces(buf, op + 1, hi))
}

/// The contents of the string literal starting at `v`, before `hi`, when
/// it is one without escapes or substitutions.
fn literal_at(buf: &[u8], v: usize, hi: usize) -> Option<&[u8]> {
    let q = *buf.get(v).filter(|&&c| v < hi && is_quote(c))?;
    let window = &buf[v + 1..hi.min(v + 2 + MAX_VALUE)];
    let n = window
        .iter()
        .position(|&c| c == q || c == b'\\' || c == b'\n' || c == b'$')?;
    (window[n] == q).then(|| &window[..n])
}

/// Whether a key starting at `at` is one of an object's (`{user: …`,
/// `, user: …`), not the name before a ternary's `:`.
fn in_object(buf: &[u8], at: usize, lo: usize) -> bool {
    matches!(
        buf[lo..at].iter().rev().find(|&&c| !is_space(c)),
        Some(b'{' | b',')
    )
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

/// Whether `name` can be a script's name: not empty, not starting with a
/// digit.
pub(super) fn starts_name(name: &[u8]) -> bool {
    name.first()
        .is_some_and(|&c| is_name_char(c) && !c.is_ascii_digit())
}

fn skip_spaces(buf: &[u8], mut i: usize, hi: usize) -> usize {
    while i < hi && buf.get(i).is_some_and(|&c| is_space(c)) {
        i += 1;
    }
    i
}

fn skip_spaces_back(buf: &[u8], e: usize, lo: usize) -> usize {
    if e <= lo {
        return e;
    }
    lo + trim_end_spaces(&buf[lo..e]).len()
}
