//! The owner's own spelled-out addresses: `john [at] plover [dot] com`,
//! `john(at)plover.com`, `john at plover dot com`, `john<span></span>@plover.com`,
//! `john@<!-- -->plover.com`, an address split by inline tags (even inside a
//! label: `john@plo<!-- -->ver.com`), or by a script joining string literals
//! (`'john' + '@' + 'plover.com'`). A harvester
//! reassembles each into `john@plover.com`, so each gets an ID where the
//! reassembled address gets it: at the end of the local part
//! (`john-id-TOKEN [at] plover [dot] com`).
//!
//! # How, and why nothing else is touched
//!
//! These spellings have no `@` for the main scanner to find (or one whose
//! domain it reads only up to the markup inside a label: it hands those
//! over), so a second
//! kind of candidate is the first label of a protected domain (`plover`,
//! `Plover`, `PLOVER`), found by SIMD searches. From there the domain is
//! read forwards (labels joined by `.`, `&#46;`, `[dot]`, `(dot)`, `{dot}`, `<dot>` or ` dot `)
//! and must be a whole protected domain; backwards come the word for `@`
//! and the local part. Only the whole shape counts:
//! - the `@` itself (`@`, `&#64;`, `&commat;`) with inline tags or comments
//!   beside it but no space (`follow us @plover.com` is a handle, not an
//!   address), or a domain spelled with a word for `.`;
//! - a bracketed word or sign (`[at]`, `(at)`, `{at}`, `<at>` or `&lt;at&gt;`, `[@]`;
//!   `[.]` for a dot), spaces allowed around it;
//! - a bare word between spaces (`john at plover dot com`) only for a local
//!   part a `[[protect]]` entry names literally, or when the word for `@`
//!   is in capitals and the domain is not (`john AT plover DOT com`, written
//!   so on purpose; `WRITE US AT PLOVER.COM` is all capitals): under
//!   `local = "*"`, "find us at plover dot com" is a web address read aloud.
//!
//! A domain followed by a possessive (`plover.com's`) is prose. Gaps may
//! hold spaces, `&nbsp;`, a join of string literals (`' + '`, which a
//! browser running the script removes), comments and tags of inline elements (those that
//! do not break a word when rendered, the same list the audit's `tags`
//! reading uses), and an inline element that is not rendered, with its
//! text (`<span style="display:none">null</span>`, a decoy); a `<p>` or
//! `<td>` between two words separates them.

use aho_corasick::{AhoCorasick, MatchKind};

use super::international::{self, Spelling};
use super::{Ahead, INLINE, Scratch};
use super::{base64, cfemail, char_codes};
use crate::address::{Class, MAX_LOCAL, Protection, is_local_char};

/// The most bytes between the end of a local part and the start of its
/// domain: the word for `@`, and spaces, tags or comments around it.
pub(super) const GAP: usize = 256;

/// The recogniser, built once per [`super::Matcher`] from the protection.
#[derive(Debug)]
pub(super) struct Spelled {
    /// Finds the protected domains' first labels, a script's
    /// `fromCharCode`, Cloudflare's mark and base64's searches.
    searches: Searches,
    /// Tells where the `@` of a base64 match (see [`base64`]) is; none
    /// for text a reader has already decoded.
    base64: Option<base64::Needles>,
    /// Words for `@` and `.`, lowercase.
    at: Vec<Box<[u8]>>,
    dot: Vec<Box<[u8]>>,
    /// What may stand between brackets for them: the words, and the sign
    /// itself (`john[@]plover[.]com`, as security write-ups defang it).
    at_bracketed: Vec<Box<[u8]>>,
    dot_bracketed: Vec<Box<[u8]>>,
    /// How far before a candidate its insertion point can be.
    reach: usize,
    /// The longest label's length.
    max_label: usize,
}

/// The fullwidth `＠` and the small `﹫` in UTF-8. The scanner's own search
/// for their first byte finds them already; they are among the literals
/// for the search's sake: with literals of three bytes it tells candidates
/// by three-byte fingerprints instead of four, 17-19% fewer of its
/// instructions per byte of text (the load and site pages; 5% fewer per
/// request through the proxy), though 7.7% more for the whole scan of
/// address-dense HTML, where it starts anew after every address.
const WIDE_AT_SIGNS: [&[u8]; 2] = ["＠".as_bytes(), "﹫".as_bytes()];

/// The most searches there are: one for every literal a candidate starts
/// with, and one for labels in any case.
pub(super) const MAX_SEARCHES: usize = 2;

/// The searches every byte of every page goes through, for the literals
/// a candidate other than `@`'s spellings starts with: the protected
/// domains' first labels, a script's `fromCharCode` (see [`char_codes`]),
/// Cloudflare's mark (see [`cfemail`]) and `@` with a protected domain in
/// base64 (see [`base64`]). They must cost next to nothing where there is
/// none, so all go into one SIMD search ([`Literals`]) that looks for all
/// at once (separate searches cost one pass over the page each: 2.3-2.8x
/// the time). A match only says where a candidate is: the scanner then
/// asks each reading at that byte, so which of two literals starting
/// there is reported does not matter.
#[derive(Debug)]
struct Searches {
    /// The few labels in the forms pages write them, and the other literals.
    literals: Literals,
    /// Many labels, or a one-letter one, in any case: base64's searches
    /// are case-sensitive, so these have an automaton of their own.
    labels_any_case: Option<AhoCorasick>,
    /// The longest literal's length.
    longest: usize,
}

impl Searches {
    /// Up to this many labels are searched in the forms pages write them
    /// in; more, in any case.
    const FEW: usize = 4;

    fn new(labels: &[&str], others: &[&[u8]]) -> Searches {
        let mut literals: Vec<Vec<u8>> = others.iter().map(|o| o.to_vec()).collect();
        let many = labels.len() > Self::FEW || labels.iter().any(|l| l.len() < 2);
        let labels_any_case = many.then(|| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostFirst)
                .build(labels)
                .expect("short labels make a small automaton")
        });
        if !many {
            literals.extend(labels.iter().flat_map(|l| written_forms(l.as_bytes())));
        }
        literals.sort_unstable();
        literals.dedup();
        let longest = (literals.iter().map(Vec::len))
            .chain(labels.iter().map(|l| l.len()))
            .max()
            .unwrap_or(0);
        let literals = Literals::new(&literals);
        Searches {
            literals,
            labels_any_case,
            longest,
        }
    }

    /// The next candidate at or after `from` in `data`, each search
    /// remembered in its own memo.
    // Out of line: `next_candidate`, which every candidate runs, keeps only
    // the one comparison with the earliest memo.
    #[inline(never)]
    fn next(&self, memos: &mut [Ahead; MAX_SEARCHES], data: &[u8], from: usize) -> Option<usize> {
        let [literal, any_case] = memos;
        let overlap = self.longest.saturating_sub(1);
        let found = literal.find(data, from, overlap, |d| self.literals.find(d));
        let label = self
            .labels_any_case
            .as_ref()
            .and_then(|ac| any_case.find(data, from, overlap, |d| ac.find(d).map(|m| m.start())));
        super::earliest(found, label)
    }

    /// Whether `hay` holds a candidate.
    fn any(&self, hay: &[u8]) -> bool {
        self.literals.find(hay).is_some() || self.labels_any_case.as_ref().is_some_and(|ac| ac.is_match(hay))
    }
}

/// One search for many literals: SIMD's packed search alone where the CPU
/// has it (an automaton's own search adds its prefilter's bookkeeping to
/// every call, and the scanner calls it at every candidate), else an
/// automaton.
#[derive(Debug)]
enum Literals {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

impl Literals {
    fn new(literals: &[Vec<u8>]) -> Literals {
        let mut packed = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .builder();
        match packed.extend(literals).build() {
            Some(p) => Literals::Packed(p),
            None => Literals::automaton(literals),
        }
    }

    /// The automaton, where the packed search cannot be had.
    fn automaton(literals: &[Vec<u8>]) -> Literals {
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(literals)
            .expect("a few short literals make a small automaton");
        Literals::Automaton(ac)
    }

    /// Where the first literal in `hay` starts.
    fn find(&self, hay: &[u8]) -> Option<usize> {
        match self {
            Literals::Packed(p) => p.find(hay).map(|m| m.start()),
            Literals::Automaton(ac) => ac.find(hay).map(|m| m.start()),
        }
    }
}

/// A label as pages write it: as it is or in capitals, its first letter
/// in either case (`plover`, `Plover`, `PLOVER`, `pLOVER`).
fn written_forms(label: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let upper = label.to_ascii_uppercase();
    let forms = [label.to_vec(), upper.clone()];
    forms.into_iter().flat_map(|f| {
        let mut other = f.clone();
        other[0] = if f[0].is_ascii_uppercase() {
            f[0].to_ascii_lowercase()
        } else {
            f[0].to_ascii_uppercase()
        };
        [f, other]
    })
}

/// Whether `word` is written in capitals (`AT`, `PLOVER`).
fn in_capitals(word: &[u8]) -> bool {
    word.iter().any(u8::is_ascii_uppercase) && !word.iter().any(u8::is_ascii_lowercase)
}

/// What a candidate turned out to be.
pub(super) enum Spelt {
    /// A protected address: its ID goes at `insert`; its spelling ends at `end`.
    Match {
        entry: usize,
        insert: usize,
        end: usize,
    },
    NoMatch,
    /// Bytes past the end of the buffer are needed to tell.
    NeedMore,
}

/// How `@` or `.` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The sign itself (`@` also as `&#64;`, `&#x40;`, `&commat;`).
    Sign,
    /// A word in brackets: `[at]`, `(dot)`, `{at}`.
    Bracketed,
    /// A word between spaces: ` at `, ` dot `.
    Word,
}

/// What reading backwards from a domain found in front of it.
struct Front {
    /// How the `@` is written.
    at: Form,
    /// Where the local part ends: where the ID goes.
    insert: usize,
    /// It is no plain `local@`: a tag or comment in a gap or inside the
    /// local part, or a space after the word for `@` (`mjd @ plover.com`).
    unplain: bool,
    /// The word for `@` is in capitals and the domain is not (`AT`:
    /// spelled out on purpose, not prose).
    shouted: bool,
}

/// A `.` or a word for one between two labels.
struct Dot {
    /// Where the next label would start.
    next: usize,
    /// It is no plain `.`: a word, spaces or a tag beside it.
    unplain: bool,
    /// A `.` itself with spaces around it.
    spaced: bool,
}

/// Why the forward reading stopped short of an answer.
pub(super) enum Stop {
    /// The buffer ends first.
    Short,
    /// Further than any spelled domain reaches: not one.
    TooFar,
}

/// Spaces, `&nbsp;`, comments and inline tags between two parts.
#[derive(Debug, Clone, Copy, Default)]
struct Gap {
    /// Where the gap ends (reading forwards) or starts (backwards).
    at: usize,
    spaced: bool,
    /// Markup that renders as nothing, or a script's join of two string
    /// literals (`' + '`): no plain `local@domain`.
    tagged: bool,
}

impl Spelled {
    /// The recogniser for a protection; `None` when spelled-out addresses
    /// are not to be recognised. `undo` reads the encodings a reader may
    /// have undone already: Cloudflare's obfuscation and base64.
    pub(super) fn new(prot: &Protection, undo: bool) -> Option<Spelled> {
        let words = &prot.spellings();
        if !words.enabled || prot.entries().is_empty() {
            return None;
        }
        // An international domain's first label as pages write it too.
        let unicode = prot
            .unicode_domains()
            .filter_map(|(u, _, _)| std::str::from_utf8(u).ok());
        let mut labels: Vec<&str> = prot
            .entries()
            .iter()
            .map(|e| e.domain.as_str())
            .chain(unicode)
            .filter_map(|d| d.split('.').next())
            .collect();
        labels.sort_unstable();
        labels.dedup();
        let max_label = labels.iter().map(|l| l.len()).max().unwrap_or(0);
        let base64 = undo.then(|| base64::Needles::new(prot));
        let mut others = vec![char_codes::CALL];
        others.extend(undo.then_some(cfemail::MARK));
        others.extend(WIDE_AT_SIGNS);
        others.extend(base64.iter().flat_map(base64::Needles::patterns));
        let searches = Searches::new(&labels, &others);
        let lower = |w: &[String]| -> Vec<Box<[u8]>> {
            w.iter().map(|s| s.to_lowercase().into_bytes().into()).collect()
        };
        let (at, dot) = (lower(&words.at), lower(&words.dot));
        let with = |words: &[Box<[u8]>], sign: &[u8]| {
            [sign.into()].into_iter().chain(words.iter().cloned()).collect()
        };
        Some(Spelled {
            searches,
            base64,
            at_bracketed: with(&at, b"@"),
            dot_bracketed: with(&dot, b"."),
            at,
            dot,
            reach: GAP + max_label,
            max_label,
        })
    }

    /// How many bytes before a candidate its insertion point can be, so how
    /// many bytes the scanner must not write out ahead of one.
    pub(super) fn reach(&self) -> usize {
        self.reach
    }

    /// The next candidate at or after `from` in `data`; `memos` remember
    /// each search's next match.
    pub(super) fn next(&self, memos: &mut [Ahead; MAX_SEARCHES], data: &[u8], from: usize) -> Option<usize> {
        self.searches.next(memos, data, from)
    }

    /// Whether `hay` holds a candidate.
    pub(super) fn any(&self, hay: &[u8]) -> bool {
        self.searches.any(hay)
    }

    /// How many bytes before the end of what arrived any search's match
    /// may start that it cannot find yet: the longest one's length less one.
    pub(super) fn pending(&self) -> usize {
        self.searches.longest.saturating_sub(1)
    }

    /// The searches for addresses in base64, when they are read.
    pub(super) fn base64(&self) -> Option<&base64::Needles> {
        self.base64.as_ref()
    }

    /// Decides the candidate at `r.q`, where a protected domain's first
    /// label starts. On a match the decoded parts are left in `sc`.
    pub(super) fn recognise(&self, prot: &Protection, r: Reading<'_>, sc: &mut Scratch) -> Spelt {
        let r = match past_markup(r) {
            Ok(Some(r)) => r,
            Ok(None) | Err(Stop::TooFar) => return Spelt::NoMatch,
            Err(Stop::Short) => return Spelt::NeedMore,
        };
        let q = r.q;
        if q <= r.lo || !may_end_gap(r.buf[q - 1]) {
            return Spelt::NoMatch;
        }
        let Some(front) = self.back(r, sc) else {
            return Spelt::NoMatch;
        };
        let (end, unplain) = match self.domain(prot, r, sc) {
            Ok(Some(found)) => found,
            Ok(None) | Err(Stop::TooFar) => return Spelt::NoMatch,
            Err(Stop::Short) => return Spelt::NeedMore,
        };
        if front.at == Form::Sign && !front.unplain && !unplain {
            return Spelt::NoMatch; // a plain address: the main scanner's
        }
        let domain = &sc.domain[..sc.domain_len];
        let Some(ids) = prot.domain_entries(domain) else {
            return Spelt::NoMatch;
        };
        let local = &sc.local[..sc.local_len];
        let entry = match prot.classify_among(ids, local) {
            Class::Protected(e) if !prot.is_munged_local(local, domain) => e,
            _ => return Spelt::NoMatch,
        };
        if front.at == Form::Word && !front.shouted && !prot.entries()[entry].local.is_literal() {
            return Spelt::NoMatch;
        }
        Spelt::Match {
            entry,
            insert: front.insert,
            end,
        }
    }

    /// Backwards from the domain: the gap, the word for `@`, the gap, the
    /// local part (into `sc.local`).
    fn back(&self, r: Reading<'_>, sc: &mut Scratch) -> Option<Front> {
        let floor = r.q.saturating_sub(GAP).max(r.lo);
        let after = gap_back(r.buf, r.q, floor);
        let (at, start) = self.at_back(r.buf, after.at, floor)?;
        let before = gap_back(r.buf, start, floor);
        let spaced_right = match at {
            // `follow us @plover.com` is a handle; `mjd @ plover.com` and
            // `mjd@ plover.com` are addresses with the spaces taken out.
            Form::Sign => after.spaced || !before.spaced,
            Form::Word => after.spaced && before.spaced,
            Form::Bracketed => bracket_spaced(r.buf[start], before, after),
        };
        if !spaced_right {
            return None;
        }
        let split = self.local_back(r.buf, before.at, r.lo, sc)?;
        let word = &r.buf[start..after.at];
        Some(Front {
            at,
            insert: before.at,
            unplain: after.tagged || before.tagged || split || after.spaced,
            // In text all in capitals (`WRITE US AT PLOVER.COM`) the word's
            // case says nothing.
            shouted: at == Form::Word && in_capitals(word) && !in_capitals(self.label_at(r.buf, r.q)),
        })
    }

    /// The label that starts at `q`, as far as a protected one can reach.
    fn label_at<'b>(&self, buf: &'b [u8], q: usize) -> &'b [u8] {
        let rest = &buf[q..buf.len().min(q + self.max_label)];
        let n = rest
            .iter()
            .position(|&c| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        &rest[..n]
    }

    /// The word for `@` that ends at `e`, and where it starts.
    fn at_back(&self, buf: &[u8], e: usize, floor: usize) -> Option<(Form, usize)> {
        let win = &buf[floor..e];
        match *win.last()? {
            b'@' => Some((Form::Sign, e - 1)),
            b';' | 0xa0 | 0xab => AT_SIGNS
                .iter()
                .find(|s| ends_with_ci(win, s))
                .map(|s| (Form::Sign, e - s.len()))
                .or_else(|| bracketed_back(win, &self.at_bracketed).map(|n| (Form::Bracketed, e - n))),
            b']' | b')' | b'}' | b'>' | b'_' | b'-' => {
                bracketed_back(win, &self.at_bracketed).map(|n| (Form::Bracketed, e - n))
            }
            _ => word_back(win, &self.at).map(|n| (Form::Word, e - n)),
        }
    }

    /// Reads the local part ending at `e` backwards into `sc.local`:
    /// address characters, bracketed words for `.` between them
    /// (`john [dot] smith`), and comments and inline tags inside it
    /// (`<b>jo</b>hn`: one word as rendered). Whether it crossed markup;
    /// `None` when there is none, or it is too long or is the end of a
    /// path or a query.
    fn local_back(&self, buf: &[u8], mut e: usize, lo: usize, sc: &mut Scratch) -> Option<bool> {
        let (mut n, mut crossed) = (0, false);
        loop {
            while e > lo && is_local_char(buf[e - 1].into()) {
                *sc.local.get_mut(n)? = buf[e - 1].to_ascii_lowercase();
                n += 1;
                e -= 1;
            }
            if let Some(start) = markup_in_word(buf, e, lo).filter(|_| n > 0) {
                (e, crossed) = (start, true);
                continue;
            }
            let Some(w) = self.dot_in_local(&buf[lo..e]) else {
                break;
            };
            *sc.local.get_mut(n)? = b'.';
            n += 1;
            e -= w;
        }
        while n > 0 && sc.local[n - 1] == b'.' {
            n -= 1;
        }
        if n == 0 || n > MAX_LOCAL || !starts_local(buf, e, lo) {
            return None;
        }
        sc.local[..n].reverse();
        sc.local_len = n;
        Some(crossed)
    }

    /// The length of a bracketed word for `.` (with spaces around) ending
    /// `win`, when a local character comes before it.
    fn dot_in_local(&self, win: &[u8]) -> Option<usize> {
        let trimmed = trim_end_spaces(win);
        let n = bracketed_back(trimmed, &self.dot_bracketed)?;
        let before = trim_end_spaces(&trimmed[..trimmed.len() - n]);
        let c = *before.last()?;
        is_local_char(c.into()).then_some(win.len() - before.len())
    }

    /// Reads the domain forwards from `r.q` into `sc.domain`: labels joined
    /// by words for `.`. Returns where it ends and whether a word stood for
    /// a dot, or a tag stood beside one (`plover<b></b>.com`) or inside a
    /// label (`plo<!-- -->ver.com`); `None` when it is no domain we could
    /// protect. A `.` with spaces around it (`plover . com`) joins labels
    /// only until they make a protected domain: after one it ends a
    /// sentence (`mjd [at] plover.com . Next`).
    fn domain(
        &self,
        prot: &Protection,
        r: Reading<'_>,
        sc: &mut Scratch,
    ) -> Result<Option<(usize, bool)>, Stop> {
        if prot.has_unicode_domains()
            && let Some(found) = self.unicode_domain(prot, r, sc)?
        {
            return Ok(Some(found));
        }
        let (mut i, mut n, mut unplain) = (r.q, 0, false);
        loop {
            let start = i;
            loop {
                while let Some(c) = r.peek(i)? {
                    if !is_label_char(c) {
                        break;
                    }
                    if n == sc.domain.len() {
                        return Ok(None);
                    }
                    sc.domain[n] = c.to_ascii_lowercase();
                    n += 1;
                    i += 1;
                }
                // Comments or inline tags inside a label render as nothing:
                // a harvester that strips them joins its two halves.
                if i == start || r.peek(i)? != Some(b'<') {
                    break;
                }
                let g = gap_fwd(r, i)?;
                if g.spaced || !r.peek(g.at)?.is_some_and(is_label_char) {
                    break;
                }
                i = g.at;
                unplain = true;
            }
            if i == start {
                return Ok(None);
            }
            let end = i;
            let dot = self.dot_fwd(r, end)?;
            let dot = dot.filter(|d| !d.spaced || prot.domain_entries(&sc.domain[..n]).is_none());
            match dot {
                Some(Dot {
                    next, unplain: word, ..
                }) if r.peek(next)?.is_some_and(is_label_char) => {
                    if n == sc.domain.len() {
                        return Ok(None);
                    }
                    sc.domain[n] = b'.';
                    n += 1;
                    unplain |= word;
                    i = next;
                }
                _ => {
                    if possessive(r, end)? || remote_after(r, end)? {
                        return Ok(None);
                    }
                    sc.domain_len = n;
                    sc.domain_end = end;
                    return Ok(Some((end, unplain)));
                }
            }
        }
    }

    /// A protected international domain in Unicode from `r.q`, its labels
    /// joined as [`domain`](Self::domain) joins them (`bücher [dot]
    /// example`); `sc` gets its ASCII form, for which the ID is made.
    #[cold]
    fn unicode_domain(
        &self,
        prot: &Protection,
        r: Reading<'_>,
        sc: &mut Scratch,
    ) -> Result<Option<(usize, bool)>, Stop> {
        // Read no further than the reader may.
        let (buf, eof) = match r.buf.get(..r.hi) {
            Some(b) => (b, false),
            None => (r.buf, r.eof),
        };
        'domains: for (uni, ascii, _) in prot.unicode_domains() {
            let (mut i, mut unplain) = (r.q, false);
            let mut labels = uni.split(|&c| c == b'.').peekable();
            while let Some(label) = labels.next() {
                i = match international::spelled_as(buf, i, label, eof) {
                    Spelling::EndsAt(end) => end,
                    Spelling::NeedMore if r.buf.len() < r.hi => return Err(Stop::Short),
                    Spelling::NeedMore => return Err(Stop::TooFar),
                    Spelling::Not => continue 'domains,
                };
                if labels.peek().is_none() {
                    break;
                }
                match self.dot_fwd(r, i)? {
                    Some(dot) => (i, unplain) = (dot.next, unplain || dot.unplain),
                    None => continue 'domains,
                }
            }
            // Another label after it makes another domain; a spaced `.`
            // ends a sentence.
            let more = match self.dot_fwd(r, i)? {
                Some(dot) if !dot.spaced => r.peek(dot.next)?.is_some_and(is_label_char),
                _ => false,
            };
            if more || r.peek(i)?.is_some_and(is_label_char) || possessive(r, i)? || remote_after(r, i)? {
                continue;
            }
            let Some(d) = sc.domain.get_mut(..ascii.len()) else {
                continue;
            };
            d.copy_from_slice(ascii);
            sc.domain_len = ascii.len();
            sc.domain_end = i;
            return Ok(Some((i, unplain)));
        }
        Ok(None)
    }

    /// A `.` or a word for one at `i`, with its gaps. A `.` takes spaces on
    /// both sides or none (`plover . com`, not `plover. Com`), a bare word
    /// needs them on both sides.
    fn dot_fwd(&self, r: Reading<'_>, i: usize) -> Result<Option<Dot>, Stop> {
        let g = gap_fwd(r, i)?;
        let Some(c) = r.peek(g.at)? else {
            return Ok(None);
        };
        let (after, form) = match c {
            b'.' => (Some(g.at + 1), Form::Sign),
            b'&' => match one_of_fwd(r, g.at, &DOT_REFERENCES)? {
                Some(n) => (Some(g.at + n), Form::Sign),
                None => (self.bracketed_fwd(r, g.at)?, Form::Bracketed),
            },
            b'[' | b'(' | b'{' | b'<' | b'_' | b'-' => (self.bracketed_fwd(r, g.at)?, Form::Bracketed),
            c if c.is_ascii_alphabetic() || !c.is_ascii() => (word_fwd(r, g.at, &self.dot)?, Form::Word),
            _ => return Ok(None),
        };
        let Some(after) = after else {
            return Ok(None);
        };
        let g2 = gap_fwd(r, after)?;
        let spaced_right = match form {
            Form::Sign => g.spaced == g2.spaced,
            Form::Word => g.spaced && g2.spaced,
            Form::Bracketed => bracket_spaced(c, g, g2),
        };
        let spaced = form == Form::Sign && g.spaced;
        Ok(spaced_right.then_some(Dot {
            next: g2.at,
            unplain: form != Form::Sign || spaced || g.tagged || g2.tagged,
            spaced,
        }))
    }

    /// `[dot]` (spaces allowed inside) starting at `i`; where it ends.
    fn bracketed_fwd(&self, r: Reading<'_>, i: usize) -> Result<Option<usize>, Stop> {
        for (open, close) in BRACKETS {
            if !r.starts_ci(i, open)? {
                continue;
            }
            let j = skip_spaces_fwd(r, i + open.len())?;
            let Some(after) = word_fwd(r, j, &self.dot_bracketed)? else {
                return Ok(None);
            };
            let j = skip_spaces_fwd(r, after)?;
            return Ok(r.starts_ci(j, close)?.then_some(j + close.len()));
        }
        Ok(None)
    }
}

/// What a candidate is read from.
#[derive(Clone, Copy)]
pub(super) struct Reading<'a> {
    pub buf: &'a [u8],
    /// Where the candidate (a domain's first label) starts.
    pub q: usize,
    /// Nothing before this is read.
    pub lo: usize,
    /// Nothing at or after this is read.
    pub hi: usize,
    /// The buffer ends the stream.
    pub eof: bool,
}

impl<'a> Reading<'a> {
    /// Reads at most `len` bytes of `buf` from `q` on, nothing before it.
    pub(super) fn ahead(buf: &'a [u8], q: usize, len: usize, eof: bool) -> Reading<'a> {
        Reading {
            buf,
            q,
            lo: q,
            hi: q + len,
            eof,
        }
    }

    /// The byte at `i`: `None` past the end of the stream.
    pub(super) fn peek(&self, i: usize) -> Result<Option<u8>, Stop> {
        if i >= self.hi {
            return Err(Stop::TooFar);
        }
        match self.buf.get(i) {
            Some(&c) => Ok(Some(c)),
            None if self.eof => Ok(None),
            None => Err(Stop::Short),
        }
    }

    /// Whether the bytes at `i` start with `s`.
    pub(super) fn starts(&self, i: usize, s: &[u8]) -> Result<bool, Stop> {
        for (k, &want) in s.iter().enumerate() {
            if self.peek(i + k)? != Some(want) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the bytes at `i` start with `s` (ASCII case ignored).
    fn starts_ci(&self, i: usize, s: &[u8]) -> Result<bool, Stop> {
        for (k, &want) in s.iter().enumerate() {
            match self.peek(i + k)? {
                Some(c) if c.eq_ignore_ascii_case(&want) => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// Bytes a gap or a word for `@` can end with, just before a domain.
fn may_end_gap(c: u8) -> bool {
    matches!(
        c,
        b'@' | b']'
            | b')'
            | b'}'
            | b'>'
            | b'_'
            | b'-'
            | b';'
            | b' '
            | b'\t'
            | b'\n'
            | b'\r'
            | b'\''
            | b'"'
            | b'`'
            // The last bytes of the SPACES and AT_SIGNS outside ASCII.
            | 0xa0
            | 0xab
            | 0x82
            | 0x83
            | 0x89
            | 0xaf
    )
}

pub(super) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// Whether a local part read back to `e` starts there: not after a
/// character reference or escape that spells one more character of it
/// (`&#109;jd`, whose ID would not be mjd's), nor in a path or a query.
fn starts_local(buf: &[u8], e: usize, lo: usize) -> bool {
    let Some((c, _)) = super::decode_back(buf, e, lo) else {
        return true;
    };
    if is_local_char(c.into()) || ends_path(buf[e - 1]) {
        return false;
    }
    // Highlighted code splits `https://git@…` into spans: look past tags.
    let mut k = e;
    while let Some(start) = markup_back(&buf[lo..k]) {
        k = lo + start;
    }
    k == e || k == lo || !(is_local_char(buf[k - 1].into()) || ends_path(buf[k - 1]))
}

/// Where the comments and inline tags ending at `e` start, when a local
/// part's character comes before them: markup inside a word
/// (`<b>mj</b>d`, `m<!-- -->jd`), which a harvester reading the rendered
/// text or stripping tags joins; likewise a script's join of two string
/// literals (`'mj' + 'd'`). Spaces end a word.
#[cold]
pub(super) fn markup_in_word(buf: &[u8], e: usize, lo: usize) -> Option<usize> {
    if e <= lo || !(buf[e - 1] == b'>' || is_quote(buf[e - 1])) {
        return None;
    }
    let g = gap_back(buf, e, lo);
    (!g.spaced && g.at < e && g.at > lo && is_local_char(buf[g.at - 1].into())).then_some(g.at)
}

/// Bytes after which a run of letters is part of a URL, a path or a query.
fn ends_path(c: u8) -> bool {
    b"/\\@=?#%&".contains(&c)
}

/// Whether the domain ending at `end` is followed by `:` and a path
/// character, inline tags aside (`git@plover.com:mjd/x.git` in highlighted
/// code): a remote, which an ID would break.
fn remote_after(r: Reading<'_>, end: usize) -> Result<bool, Stop> {
    let i = tags_fwd(r, end)?;
    if r.peek(i)? != Some(b':') {
        return Ok(false);
    }
    let j = tags_fwd(r, i + 1)?;
    Ok(r.peek(j)?
        .is_some_and(|c| c.is_ascii_alphanumeric() || b"/~._-".contains(&c)))
}

/// The reading from past the markup at its candidate, if it starts with
/// some: an `@` the main path handed over may be followed by tags before
/// its domain (`@<span>plo</span><span>ver</span>.com`). `None` when a
/// space comes before the domain.
fn past_markup(r: Reading<'_>) -> Result<Option<Reading<'_>>, Stop> {
    if r.peek(r.q)? != Some(b'<') {
        return Ok(Some(r));
    }
    let g = gap_fwd(r, r.q)?;
    Ok((!g.spaced).then_some(Reading { q: g.at, ..r }))
}

/// Past the comments and inline tags starting at `i`.
fn tags_fwd(r: Reading<'_>, mut i: usize) -> Result<usize, Stop> {
    while r.peek(i)? == Some(b'<') {
        match markup_fwd(r, i)? {
            Some(end) => i = end,
            None => break,
        }
    }
    Ok(i)
}

/// Spaces other than ASCII whitespace, as a page writes them around
/// `[at]`: a no-break space, the typographic ones (thin, en, em, narrow
/// no-break) and a space written as a reference, each in every spelling.
const SPACES: [&[u8]; 21] = [
    b"&nbsp;",
    b"&#160;",
    b"&#xa0;",
    "\u{a0}".as_bytes(),
    b"&thinsp;",
    b"&#8201;",
    b"&#x2009;",
    "\u{2009}".as_bytes(),
    b"&ensp;",
    b"&#8194;",
    b"&#x2002;",
    "\u{2002}".as_bytes(),
    b"&emsp;",
    b"&#8195;",
    b"&#x2003;",
    "\u{2003}".as_bytes(),
    b"&#8239;",
    b"&#x202f;",
    "\u{202f}".as_bytes(),
    b"&#32;",
    b"&#x20;",
];

/// `@` as a reference or a fullwidth or small sign (`mjd ＠ plover.com`).
const AT_SIGNS: [&[u8]; 5] = [
    b"&#64;",
    b"&#x40;",
    b"&commat;",
    "\u{ff20}".as_bytes(),
    "\u{fe6b}".as_bytes(),
];

/// Character references for `.` (`plover&#46;com`).
const DOT_REFERENCES: [&[u8]; 3] = [b"&#46;", b"&#x2e;", b"&period;"];

fn ends_with_ci(win: &[u8], s: &[u8]) -> bool {
    win.len() >= s.len() && win[win.len() - s.len()..].eq_ignore_ascii_case(s)
}

pub(super) fn trim_end_spaces(win: &[u8]) -> &[u8] {
    let n = win.iter().rposition(|&c| !is_space(c)).map_or(0, |i| i + 1);
    &win[..n]
}

/// One of the [`SPACES`] ending `win`: its spelling. Told first by the
/// last byte, as most gaps end in a letter.
fn space_back(win: &[u8]) -> Option<&'static [u8]> {
    let last = *win.last()?;
    if !matches!(last, b';' | 0xa0 | 0x82 | 0x83 | 0x89 | 0xaf) {
        return None;
    }
    SPACES.iter().copied().find(|s| ends_with_ci(win, s))
}

/// The length of one of the [`SPACES`] starting at `i`, whose byte is `c`.
fn space_fwd(r: Reading<'_>, i: usize, c: u8) -> Result<Option<usize>, Stop> {
    if !matches!(c, b'&' | 0xc2 | 0xe2) {
        return Ok(None);
    }
    one_of_fwd(r, i, &SPACES)
}

/// The gap ending at `e`, read backwards to no earlier than `floor`.
fn gap_back(buf: &[u8], mut e: usize, floor: usize) -> Gap {
    let mut g = Gap::default();
    while e > floor {
        let win = &buf[floor..e];
        if is_space(win[win.len() - 1]) {
            e -= 1;
            g.spaced = true;
        } else if let Some(s) = space_back(win) {
            e -= s.len();
            g.spaced = true;
        } else if let Some(start) = markup_back(win) {
            e = floor + hidden_back(win, start).unwrap_or(start);
            g.tagged = true;
        } else if let Some(start) = join_back(win) {
            e = floor + start;
            g.tagged = true;
        } else {
            break;
        }
    }
    g.at = e;
    g
}

/// Quotes that delimit a script's string literals.
pub(super) fn is_quote(c: u8) -> bool {
    matches!(c, b'\'' | b'"' | b'`')
}

/// Where a join of two string literals ending `win` starts: the closing
/// quote of one, `+`, the opening quote of the next (any quote: a script
/// may mix them), spaces allowed around the `+`. A script that builds an address from
/// pieces (`'mjd' + '@' + 'plover.com'`) shows a browser, and a harvester
/// that runs it, the whole address.
fn join_back(win: &[u8]) -> Option<usize> {
    let (&open, rest) = win.split_last()?;
    if !is_quote(open) {
        return None;
    }
    let rest = trim_end_spaces(trim_end_spaces(rest).strip_suffix(b"+")?);
    rest.last().is_some_and(|&c| is_quote(c)).then(|| rest.len() - 1)
}

/// Where a join of two string literals (`' + '`, see [`join_back`])
/// starting at `i`, whose byte is `c`, ends.
fn join_fwd(r: Reading<'_>, i: usize, c: u8) -> Result<Option<usize>, Stop> {
    if !is_quote(c) {
        return Ok(None);
    }
    let plus = skip_spaces_fwd(r, i + 1)?;
    if r.peek(plus)? != Some(b'+') {
        return Ok(None);
    }
    let open = skip_spaces_fwd(r, plus + 1)?;
    Ok(r.peek(open)?.is_some_and(is_quote).then_some(open + 1))
}

/// When the inline tag at `close` ending `win` closes an element that is
/// not rendered, where that element starts: `<span style="display:none">`
/// in `mjd<span style="display:none">null</span>@plover.com`, a decoy that
/// a browser (and a harvester reading what it renders) does not show.
fn hidden_back(win: &[u8], close: usize) -> Option<usize> {
    let name = win.get(close + 2..).filter(|_| win[close + 1] == b'/')?;
    let open = memchr::memrchr(b'<', &win[..close])?;
    let open_end = open + memchr::memchr(b'>', &win[open..close])?;
    let tag = &win[open..=open_end];
    (same_name(tag, &name[..name.len() - 1]) && hides(tag)).then_some(open)
}

/// Past an inline element that is not rendered, with its text, starting
/// at `i` (see [`hidden_back`]).
fn hidden_fwd(r: Reading<'_>, i: usize) -> Result<Option<usize>, Stop> {
    let Some(open_end) = markup_fwd(r, i)? else {
        return Ok(None);
    };
    let tag = &r.buf[i..open_end];
    if !hides(tag) {
        return Ok(None);
    }
    let mut j = open_end;
    while r.peek(j)?.is_some_and(|c| c != b'<') {
        if j - i > GAP {
            return Ok(None);
        }
        j += 1;
    }
    if !r.starts_ci(j, b"</")? {
        return Ok(None);
    }
    let Some(end) = markup_fwd(r, j)? else {
        return Ok(None);
    };
    Ok(same_name(tag, &r.buf[j + 2..end - 1]).then_some(end))
}

/// Whether the tag `tag` (from its `<`) is of the element named at the
/// start of `name`.
fn same_name(tag: &[u8], name: &[u8]) -> bool {
    let of = |t: &[u8]| {
        t.iter()
            .position(|c| !c.is_ascii_alphanumeric())
            .unwrap_or(t.len())
    };
    let (a, b) = (&tag[1..1 + of(&tag[1..])], &name[..of(name)]);
    !a.is_empty() && a.eq_ignore_ascii_case(b)
}

/// Whether an opening tag keeps its element from being rendered: a
/// `style` with `display: none` or `visibility: hidden`, or the `hidden`
/// attribute.
fn hides(tag: &[u8]) -> bool {
    if tag.get(1) == Some(&b'/') {
        return false;
    }
    let squeezed: Vec<u8> = tag
        .iter()
        .filter(|c| !c.is_ascii_whitespace())
        .map(u8::to_ascii_lowercase)
        .collect();
    let has = |s: &[u8]| memchr::memmem::find(&squeezed, s).is_some();
    has(b"display:none") || has(b"visibility:hidden") || hidden_attribute(tag)
}

/// Whether `tag` has an attribute named `hidden` (outside quoted values).
fn hidden_attribute(tag: &[u8]) -> bool {
    let mut quote = None;
    let mut k = 0;
    while k < tag.len() {
        let c = tag[k];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c.is_ascii_whitespace()
                && tag.len() > k + 7
                && tag[k + 1..k + 7].eq_ignore_ascii_case(b"hidden")
                && matches!(tag[k + 7], b'>' | b'/' | b'=' | b' ' | b'\t' | b'\n' | b'\r') =>
            {
                return true;
            }
            None => {}
        }
        k += 1;
    }
    false
}

/// Where a comment or an inline element's tag ending `win` starts.
fn markup_back(win: &[u8]) -> Option<usize> {
    if !win.ends_with(b">") {
        return None;
    }
    if win.ends_with(b"-->") {
        return memchr::memmem::rfind(&win[..win.len() - 3], b"<!--");
    }
    let start = memchr::memrchr2(b'<', b'>', &win[..win.len() - 1])?;
    (win[start] == b'<' && is_inline_tag(&win[start..])).then_some(start)
}

/// Whether `tag` (from its `<`) opens or closes an element that does not
/// break a word.
fn is_inline_tag(tag: &[u8]) -> bool {
    let name = tag[1..].strip_prefix(b"/").unwrap_or(&tag[1..]);
    let len = name
        .iter()
        .position(|c| !c.is_ascii_alphanumeric())
        .unwrap_or(name.len());
    len > 0
        && INLINE
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(&name[..len]))
}

/// The gap starting at `i`, read forwards.
fn gap_fwd(r: Reading<'_>, mut i: usize) -> Result<Gap, Stop> {
    let mut g = Gap::default();
    while let Some(c) = r.peek(i)? {
        if is_space(c) {
            i += 1;
            g.spaced = true;
        } else if let Some(s) = space_fwd(r, i, c)? {
            i += s;
            g.spaced = true;
        } else if c == b'<' {
            let end = match hidden_fwd(r, i)? {
                Some(end) => end,
                None => match markup_fwd(r, i)? {
                    Some(end) => end,
                    None => break,
                },
            };
            i = end;
            g.tagged = true;
        } else if let Some(end) = join_fwd(r, i, c)? {
            i = end;
            g.tagged = true;
        } else {
            break;
        }
    }
    g.at = i;
    Ok(g)
}

/// The length of the one of `forms` that starts at `i` (ASCII case ignored).
fn one_of_fwd(r: Reading<'_>, i: usize, forms: &[&[u8]]) -> Result<Option<usize>, Stop> {
    for s in forms {
        if r.starts_ci(i, s)? {
            return Ok(Some(s.len()));
        }
    }
    Ok(None)
}

/// Where a comment or an inline element's tag starting at `i` ends.
fn markup_fwd(r: Reading<'_>, i: usize) -> Result<Option<usize>, Stop> {
    let comment = r.starts_ci(i, b"<!--")?;
    let mut j = i + 1;
    loop {
        if j - i > GAP {
            return Ok(None);
        }
        if comment {
            if r.starts_ci(j, b"-->")? {
                return Ok(Some(j + 3));
            }
        } else {
            match r.peek(j)? {
                Some(b'>') => return Ok(is_inline_tag(&r.buf[i..=j]).then_some(j + 1)),
                Some(b'<') => return Ok(None),
                _ => {}
            }
        }
        if r.peek(j)?.is_none() {
            return Ok(None);
        }
        j += 1;
    }
}

/// The length of one of `words` between [`BRACKETS`] (spaces allowed
/// inside) ending `win`.
fn bracketed_back(win: &[u8], words: &[Box<[u8]>]) -> Option<usize> {
    let (open, close) = BRACKETS.iter().find(|(_, close)| ends_with_ci(win, close))?;
    let inner = trim_end_spaces(&win[..win.len() - close.len()]);
    let w = words.iter().find(|w| ends_with_ci(inner, w))?;
    let before = trim_end_spaces(&inner[..inner.len() - w.len()]);
    ends_with_ci(before, open).then(|| win.len() - before.len() + open.len())
}

/// What a word for `@` or `.` may stand between: `[at]`, `(at)`, `{at}`,
/// `<at>` (`&lt;at&gt;` in HTML's source), the brackets as references
/// (`&#91;at&#93;`), `_at_` and `-at-`.
const BRACKETS: [(&[u8], &[u8]); 18] = [
    (b"[", b"]"),
    (b"(", b")"),
    (b"{", b"}"),
    (b"&lt;", b"&gt;"),
    (b"<", b">"),
    (b"_", b"_"),
    (b"-", b"-"),
    (b"&#91;", b"&#93;"),
    (b"&#x5b;", b"&#x5d;"),
    (b"&lsqb;", b"&rsqb;"),
    (b"&lbrack;", b"&rbrack;"),
    (b"&#40;", b"&#41;"),
    (b"&#x28;", b"&#x29;"),
    (b"&lpar;", b"&rpar;"),
    (b"&#123;", b"&#125;"),
    (b"&#x7b;", b"&#x7d;"),
    (b"&lcub;", b"&rcub;"),
    (b"&lbrace;", b"&rbrace;"),
];

/// Whether a bracketed word for `@` or `.` whose first byte is `open` has
/// the spaces it needs around it: any for most brackets, but `-at-`
/// only between spaces (`mjd-at-plover.com` is a host name).
fn bracket_spaced(open: u8, before: Gap, after: Gap) -> bool {
    open != b'-' || (before.spaced && after.spaced)
}

/// The length of one of `words` ending `win` as a whole word.
fn word_back(win: &[u8], words: &[Box<[u8]>]) -> Option<usize> {
    let w = words.iter().find(|w| ends_with_ci(win, w))?;
    let before = win.len() - w.len();
    (before == 0 || !win[before - 1].is_ascii_alphanumeric()).then_some(w.len())
}

/// One of `words` starting at `i` as a whole word; where it ends.
fn word_fwd(r: Reading<'_>, i: usize, words: &[Box<[u8]>]) -> Result<Option<usize>, Stop> {
    for w in words {
        if r.starts_ci(i, w)? && !r.peek(i + w.len())?.is_some_and(|c| c.is_ascii_alphanumeric()) {
            return Ok(Some(i + w.len()));
        }
    }
    Ok(None)
}

pub(super) fn skip_spaces_fwd(r: Reading<'_>, mut i: usize) -> Result<usize, Stop> {
    while r.peek(i)?.is_some_and(is_space) {
        i += 1;
    }
    Ok(i)
}

/// Whether the domain ending at `end` is followed by a possessive
/// (`plover.com's`, `plover.com’s`, `plover.com&#39;s`): prose.
fn possessive(r: Reading<'_>, end: usize) -> Result<bool, Stop> {
    for s in [
        &b"'"[..],
        "\u{2019}".as_bytes(),
        b"&#39;",
        b"&#x27;",
        b"&apos;",
        b"&rsquo;",
    ] {
        if r.starts_ci(end, s)? {
            return Ok(r.peek(end + s.len())?.is_some_and(|c| c.is_ascii_alphabetic()));
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_searched_in_the_forms_pages_write() {
        let forms: Vec<Vec<u8>> = written_forms(b"plover").collect();
        assert_eq!(forms, [&b"plover"[..], b"Plover", b"PLOVER", b"pLOVER"]);
        // A label without letters after its first reads the same in capitals.
        let mut forms: Vec<Vec<u8>> = written_forms(b"x42").collect();
        forms.sort();
        forms.dedup();
        assert_eq!(forms, [&b"X42"[..], b"x42"]);
    }

    /// The packed search and the automaton (where the CPU has no SIMD)
    /// find the same first literal from every offset, short haystacks too.
    #[test]
    fn the_packed_search_finds_what_the_automaton_finds() {
        let literals: Vec<Vec<u8>> = [
            &b"plover"[..],
            b"Plover",
            b"PLOVER",
            b"pLOVER",
            b"fromCharCode",
            b"email",
            b"QHBsb3Zlci5jb2",
            b"ai",
            b"mail",
        ]
        .iter()
        .map(|l| l.to_vec())
        .collect();
        let packed = Literals::new(&literals);
        #[cfg(target_arch = "x86_64")]
        assert!(
            matches!(packed, Literals::Packed(_)),
            "SIMD here: the path benchmarks measure"
        );
        let automaton = Literals::automaton(&literals);
        let mut hay = Vec::new();
        let mut x = 7u32;
        for i in 0..4000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            match (x >> 16) % 23 {
                0 => hay.extend_from_slice(&literals[i % literals.len()]),
                1 => hay.extend_from_slice(b"mai"),
                n => hay.push(b"plovrem aiQHBsFC@."[n as usize % 18]),
            }
        }
        for from in 0..hay.len() {
            assert_eq!(
                packed.find(&hay[from..]),
                automaton.find(&hay[from..]),
                "from {from}"
            );
        }
    }
}
