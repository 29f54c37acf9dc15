//! Which addresses are protected, which are exempt, and how a munged address
//! is spelled and taken apart again.
//!
//! A munged address is `BASE-LOCAL SEP [LABEL -] TOKEN @ DOMAIN`, all
//! lowercase: `guitar-perl-diff-id-k3f9q2mzt7x0a5c8dw4eh1nb@plover.com`. The
//! label only appears on minted addresses (`addrmunge mint --label shop`).

use std::collections::HashMap;

use crate::token;

/// The longest local part RFC 5321 allows.
pub const MAX_LOCAL: usize = 64;
/// The longest domain name, in octets.
pub const MAX_DOMAIN: usize = 253;
/// The longest label a minted address may carry.
pub const MAX_LABEL: usize = 16;

/// A case-insensitive glob over a local part: `*` any run, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// How to match quickly: the scanner classifies every candidate address.
    shape: Shape,
}

/// The common shapes of a glob, matched without the general algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `*`
    Any,
    /// No wildcard.
    Literal,
    /// `text*`: the text is the pattern without its last byte.
    Prefix,
    /// `*text`: the text is the pattern without its first byte.
    Suffix,
    /// Anything else.
    General,
}

impl Shape {
    fn of(pattern: &str) -> Shape {
        let stars = pattern.matches('*').count();
        if pattern.contains('?') {
            Shape::General
        } else if pattern == "*" {
            Shape::Any
        } else if stars == 0 {
            Shape::Literal
        } else if stars == 1 && pattern.ends_with('*') {
            Shape::Prefix
        } else if stars == 1 && pattern.starts_with('*') {
            Shape::Suffix
        } else {
            Shape::General
        }
    }
}

/// Why a local-part pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// Nothing to match.
    #[error("an empty pattern matches nothing; use \"*\" for every local part")]
    Empty,
    /// A character no local part has.
    #[error(
        "'{0}' cannot appear here: use letters, digits, '.', '_', '+', '-' and the wildcards '*' and '?'"
    )]
    Character(char),
}

impl Glob {
    /// Builds a glob; the pattern may only use local-part characters
    /// (`a-z 0-9 . _ + -`) and `*`, `?`.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let pattern = pattern.to_ascii_lowercase();
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if let Some(c) = pattern
            .chars()
            .find(|&c| !(is_local_char(c as u32) || c == '*' || c == '?'))
        {
            return Err(GlobError::Character(c));
        }
        let shape = Shape::of(&pattern);
        Ok(Glob { pattern, shape })
    }

    /// True when the (lowercase) text matches.
    pub fn matches(&self, text: &str) -> bool {
        self.matches_bytes(text.as_bytes())
    }

    /// True when the (lowercase) bytes match. Inlined: the scanner asks
    /// for every protected address, and the usual shapes are one compare.
    #[inline]
    pub fn matches_bytes(&self, text: &[u8]) -> bool {
        let p = self.pattern.as_bytes();
        match self.shape {
            Shape::Any => true,
            Shape::Literal => p == text,
            Shape::Prefix => text.starts_with(&p[..p.len() - 1]),
            Shape::Suffix => text.ends_with(&p[1..]),
            Shape::General => glob_match(p, text),
        }
    }

    /// True when the pattern has no wildcard.
    pub fn is_literal(&self) -> bool {
        !self.pattern.contains(['*', '?'])
    }

    /// The shortest text it matches, in octets.
    pub fn min_len(&self) -> usize {
        self.pattern.bytes().filter(|&c| c != b'*').count()
    }

    /// The pattern as written (lowercased).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

/// Iterative glob matching with single-star backtracking: linear in practice,
/// never exponential.
#[inline(never)]
fn glob_match(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The characters the scanner accepts in a local part (after decoding):
/// what address harvesters take, `[a-z0-9._+-]`. Wider RFC 5322 characters
/// such as `=` or `/` would swallow `?cc=` and URL paths into local parts.
pub fn is_local_char(c: u32) -> bool {
    c < 0x80 && CHAR_CLASS[c as usize] & LOCAL != 0
}

/// The characters of a domain name, `[a-z0-9.-]`.
pub fn is_domain_char(c: u32) -> bool {
    c < 0x80 && CHAR_CLASS[c as usize] & DOMAIN != 0
}

const LOCAL: u8 = 1;
const DOMAIN: u8 = 2;

/// Which ASCII characters are local-part and domain characters: one load
/// per byte in the scanner's loops instead of a chain of range tests.
const CHAR_CLASS: [u8; 128] = {
    let mut t = [0; 128];
    let mut c = 0;
    while c < 128 {
        let ch = c as u8;
        if ch.is_ascii_alphanumeric() || ch == b'.' || ch == b'-' {
            t[c] = LOCAL | DOMAIN;
        } else if ch == b'_' || ch == b'+' {
            t[c] = LOCAL;
        }
        c += 1;
    }
    t
};

/// One `[[protect]]` entry, validated.
#[derive(Debug, Clone)]
pub struct Protect {
    /// The domain, lowercase.
    pub domain: String,
    /// Which local parts are protected.
    pub local: Glob,
    /// Local parts left alone even though `local` matches.
    pub exempt: Vec<Glob>,
    /// Where valid munged addresses are delivered; `None` = the base address.
    pub deliver_to: Option<String>,
}

/// How an address relates to the configured protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Protected by entry `n`.
    Protected(usize),
    /// On a protected domain and matching an entry, but exempt.
    Exempt(usize),
    /// Not ours.
    Unprotected,
}

/// A munged address taken apart (not yet authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Munged {
    /// The base address, lowercase: `guitar-perl-diff@plover.com`.
    pub base: String,
    /// The label of a minted address, or empty.
    pub label: String,
    /// The token, lowercase.
    pub token: String,
    /// The protect entry of the base address.
    pub entry: usize,
}

impl Munged {
    /// A reading of `BASE_LOCAL SEP [LABEL-] TOKEN @ DOMAIN` (lowercase parts).
    fn new(base_local: &str, domain: &str, label: &str, token: &str, entry: usize) -> Munged {
        Munged {
            base: format!("{base_local}@{domain}"),
            label: label.to_owned(),
            token: token.to_owned(),
            entry,
        }
    }
}

/// What an address is, by its shape and the configuration alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Looks munged; candidates to authenticate, most likely first (a
    /// separator inside the base local part can make more than one reading).
    Munged(Vec<Munged>),
    /// A protected address without an ID.
    Bare(usize),
    /// A protected-domain address that is exempt.
    Exempt(usize),
    /// Not a protected address.
    Unprotected,
    /// Not an address at all.
    NotAnAddress,
}

/// All `[[protect]]` entries plus the separator: the rules of what to munge.
#[derive(Debug, Clone)]
pub struct Protection {
    entries: Vec<Protect>,
    /// Domains with their entries, in config order. A site has a handful of
    /// domains: comparing bytes beats hashing them on the scanner's hot path.
    domains: Vec<DomainEntries>,
    /// The same, hashed, for configs with many domains.
    by_domain: HashMap<Box<[u8]>, usize>,
    /// International domains as pages show them (`bücher.example`,
    /// lowercase UTF-8), each with its slot in `domains` (`xn--bcher-kva.example`).
    unicode: Vec<(Box<[u8]>, usize)>,
    separator: String,
    max_domain_len: usize,
    spellings: Spellings,
}

/// A protected domain (lowercase) and its entries' indexes, in config order.
pub type DomainEntries = (Box<[u8]>, Vec<usize>);

/// How the owner's own spelled-out addresses are written (`john [at]
/// plover [dot] com`): the words standing for `@` and `.`, lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spellings {
    /// Whether the proxy recognises spelled-out addresses at all.
    pub enabled: bool,
    /// Words for `@`: `[at]`, `(at)`, `{at}`, and ` at ` between spaces.
    pub at: Vec<String>,
    /// Words for `.`, in the same forms.
    pub dot: Vec<String>,
}

impl Default for Spellings {
    /// The words the harvesters we know of undo (English, Spanish,
    /// German, French, Italian).
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect();
        Spellings {
            enabled: true,
            at: words(&["at", "arroba", "chez", "klammeraffe", "\u{e4}t"]),
            dot: words(&["dot", "period", "punkt", "punto", "point"]),
        }
    }
}

impl Protection {
    /// Builds the protection from validated entries.
    pub fn new(entries: Vec<Protect>, separator: &str) -> Protection {
        let mut domains: Vec<DomainEntries> = Vec::new();
        let mut by_domain: HashMap<Box<[u8]>, usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let key: Box<[u8]> = e.domain.as_bytes().into();
            let slot = *by_domain.entry(key.clone()).or_insert_with(|| {
                domains.push((key, Vec::new()));
                domains.len() - 1
            });
            domains[slot].1.push(i);
        }
        let unicode: Vec<(Box<[u8]>, usize)> = domains
            .iter()
            .enumerate()
            .filter_map(|(slot, (d, _))| Some((unicode_form(std::str::from_utf8(d).ok()?)?, slot)))
            .collect();
        let max_domain_len = (entries.iter().map(|e| e.domain.len()))
            .chain(unicode.iter().map(|(u, _)| u.len()))
            .max()
            .unwrap_or(0);
        Protection {
            entries,
            domains,
            by_domain,
            unicode,
            separator: separator.to_ascii_lowercase(),
            max_domain_len,
            spellings: Spellings::default(),
        }
    }

    /// The same rules with other spelled-out forms recognised.
    pub fn with_spellings(mut self, spellings: Spellings) -> Protection {
        self.spellings = spellings;
        self
    }

    /// How spelled-out addresses are written.
    pub fn spellings(&self) -> &Spellings {
        &self.spellings
    }

    /// The entries, in config order.
    pub fn entries(&self) -> &[Protect] {
        &self.entries
    }

    /// The separator put between base local part and token.
    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// The length of the longest protected domain.
    pub fn max_domain_len(&self) -> usize {
        self.max_domain_len
    }

    /// True when some entry protects this (lowercase) domain.
    pub fn has_domain(&self, domain: &str) -> bool {
        self.domain_entries(domain.as_bytes()).is_some()
    }

    /// The entries for a lowercase domain, in config order.
    pub fn domain_entries(&self, domain: &[u8]) -> Option<&[usize]> {
        if let Some(few) = self.few_domains() {
            return few
                .iter()
                .find(|(d, _)| **d == *domain)
                .map(|(_, ids)| ids.as_slice());
        }
        self.by_domain
            .get(domain)
            .map(|&slot| self.domains[slot].1.as_slice())
    }

    /// The protected international domains as pages show them: each
    /// Unicode form (lowercase UTF-8), its ASCII form and its entries.
    pub fn unicode_domains(&self) -> impl Iterator<Item = (&[u8], &[u8], &[usize])> {
        self.unicode.iter().map(|(u, slot)| {
            let (ascii, ids) = &self.domains[*slot];
            (&u[..], &ascii[..], &ids[..])
        })
    }

    /// Whether an international domain is protected (most sites' is not).
    pub fn has_unicode_domains(&self) -> bool {
        !self.unicode.is_empty()
    }

    /// A protected domain's ASCII form for its Unicode one
    /// (`bücher.example` -> `xn--bcher-kva.example`); any other as it is.
    pub fn ascii_domain<'a>(&'a self, domain: &'a str) -> &'a str {
        self.unicode_domains()
            .find(|(u, _, _)| *u == domain.as_bytes())
            .and_then(|(_, ascii, _)| std::str::from_utf8(ascii).ok())
            .unwrap_or(domain)
    }

    /// Whether the (lowercase) bytes are the start of a protected domain
    /// but not all of it (nothing at all is the start of every one).
    pub fn starts_domain(&self, partial: &[u8]) -> bool {
        self.domains
            .iter()
            .any(|(d, _)| d.len() > partial.len() && d.starts_with(partial))
    }

    /// The protected domains (lowercase) with their entries, in config
    /// order, when there are few enough to compare one by one.
    pub fn few_domains(&self) -> Option<&[DomainEntries]> {
        (self.domains.len() <= 8).then_some(&self.domains[..])
    }

    /// Classifies a lowercase local part on a lowercase domain. The first
    /// entry whose `local` glob matches decides.
    pub fn classify(&self, local: &str, domain: &str) -> Class {
        match self.domain_entries(domain.as_bytes()) {
            Some(ids) => self.classify_among(ids, local.as_bytes()),
            None => Class::Unprotected,
        }
    }

    /// Classifies a lowercase local part among the entries of its domain.
    pub fn classify_among(&self, ids: &[usize], local: &[u8]) -> Class {
        for &i in ids {
            let e = &self.entries[i];
            if e.local.matches_bytes(local) {
                if e.exempt.iter().any(|g| g.matches_bytes(local)) {
                    return Class::Exempt(i);
                }
                return Class::Protected(i);
            }
        }
        Class::Unprotected
    }

    /// Spells a munged address.
    pub fn munge(&self, base_local: &str, domain: &str, label: &str, token: &str) -> String {
        let mut s = String::with_capacity(base_local.len() + domain.len() + label.len() + 40);
        s.push_str(&base_local.to_ascii_lowercase());
        s.push_str(&self.separator);
        if !label.is_empty() {
            s.push_str(label);
            s.push('-');
        }
        s.push_str(token);
        s.push('@');
        s.push_str(&domain.to_ascii_lowercase());
        s
    }

    /// Takes an address apart by shape: munged, bare, exempt or not ours.
    /// Case-insensitive; the result is lowercase.
    pub fn parse(&self, address: &str) -> Parsed {
        let address = address.trim().to_ascii_lowercase();
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Parsed::NotAnAddress;
        };
        // An MTA speaking SMTPUTF8 passes an international domain as
        // written: the ID was made for its ASCII form.
        let domain = self.ascii_domain(domain.trim_end_matches('.'));
        // `"mjd-id-…"@plover.com`, as a quoted local part is munged: the
        // same mailbox (an MTA may pass it on quoted).
        let local = local
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or(local);
        if local.is_empty() || domain.is_empty() || !local.bytes().all(|c| is_local_char(c.into())) {
            return Parsed::NotAnAddress;
        }
        if !self.has_domain(domain) {
            return Parsed::Unprotected;
        }
        let candidates = self.munged_readings(local, domain);
        if !candidates.is_empty() {
            return Parsed::Munged(candidates);
        }
        match self.classify(local, domain) {
            Class::Protected(i) => Parsed::Bare(i),
            Class::Exempt(i) => Parsed::Exempt(i),
            Class::Unprotected => Parsed::Unprotected,
        }
    }

    /// Every way `local` reads as `BASE SEP [LABEL-] TOKEN` with a protected
    /// base, rightmost separator first.
    fn munged_readings(&self, local: &str, domain: &str) -> Vec<Munged> {
        let sep = self.separator.as_str();
        let mut out = Vec::new();
        let mut end = local.len();
        while let Some(i) = local[..end].rfind(sep) {
            end = i + sep.len() - 1;
            let (base_local, rest) = (&local[..i], &local[i + sep.len()..]);
            if base_local.is_empty() {
                continue;
            }
            let (label, token) = match rest.rsplit_once('-') {
                Some((label, token)) => (label, token),
                None => ("", rest),
            };
            let label_ok = label.is_empty() || is_label(label);
            if label_ok
                && token::looks_like_token(token)
                && let Class::Protected(entry) = self.classify(base_local, domain)
            {
                out.push(Munged::new(base_local, domain, label, token, entry));
            }
        }
        out
    }

    /// Every way `local` reads as a munged local part whose front a
    /// harvester cut off (`diff-id-TOKEN`, `id-TOKEN`, `TOKEN`; a minted
    /// address's `shop-TOKEN`), for each candidate base local part on
    /// `domain`: the literal `local` patterns of its entries, then
    /// `served` (the base local parts the proxies munged). Only protected
    /// bases, and only readings where what is left of the front is the end
    /// of `BASE SEP [LABEL-]`; whether one is real is for the token to say.
    pub fn mangled_readings<'a>(
        &self,
        local: &str,
        domain: &str,
        served: impl IntoIterator<Item = &'a str>,
    ) -> Vec<Munged> {
        let token = local.rsplit('-').next().unwrap_or(local);
        let Some(ids) = self.domain_entries(domain.as_bytes()) else {
            return Vec::new();
        };
        if !token::looks_like_token(token) {
            return Vec::new();
        }
        // What is left of the front: "" or text ending in '-'.
        let kept = &local[..local.len() - token.len()];
        // Read without a label, and (for a minted address cut no further
        // than its label) with the word before the token as the label.
        let mut shapes = vec![("", kept)];
        if let Some(rest) = kept.strip_suffix('-') {
            let label = rest.rsplit('-').next().unwrap_or(rest);
            if is_label(label) {
                shapes.push((label, &rest[..rest.len() - label.len()]));
            }
        }
        let mut candidates: Vec<&str> = ids
            .iter()
            .map(|&i| &self.entries[i].local)
            .filter(|g| g.is_literal())
            .map(Glob::as_str)
            .collect();
        for local in served {
            candidates.push(local);
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for base_local in candidates {
            let Class::Protected(entry) = self.classify_among(ids, base_local.as_bytes()) else {
                continue;
            };
            if !seen.insert(base_local) {
                continue;
            }
            let front = format!("{base_local}{}", self.separator);
            for &(label, rest) in &shapes {
                // Shorter than the whole front: the whole is a munged
                // address, judged as one already.
                if rest.len() < front.len() && front.ends_with(rest) {
                    out.push(Munged::new(base_local, domain, label, token, entry));
                }
            }
        }
        out
    }

    /// True when a local part the scanner found already carries an ID, so
    /// that a page quoting a munged address is not munged twice.
    pub fn is_munged_local(&self, local: &[u8], domain: &[u8]) -> bool {
        let sep = self.separator.as_bytes();
        if !local.windows(sep.len()).any(|w| w == sep) {
            return false;
        }
        match (std::str::from_utf8(local), std::str::from_utf8(domain)) {
            (Ok(l), Ok(d)) => !self.munged_readings(l, d).is_empty(),
            _ => false,
        }
    }
}

/// A minted address's label: 1 to 16 of `[a-z0-9]`.
pub fn is_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_LABEL && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Why a domain name was refused; each carries the name as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Empty, too long, or a bad label.
    #[error("'{0}' is not a domain name; write it like example.com")]
    Malformed(String),
    /// An international domain name that IDNA refuses.
    #[error(
        "'{0}' is no valid international domain name (IDNA); write it as in a browser's address bar, or in its xn-- form"
    )]
    NotIdna(String),
}

/// The Unicode form of an international domain (`xn--bcher-kva.example`
/// -> `bücher.example`), as a page shows it; `None` for any other.
fn unicode_form(ascii: &str) -> Option<Box<[u8]>> {
    if !ascii.split('.').any(|l| l.starts_with("xn--")) {
        return None;
    }
    let (u, ok) = idna::domain_to_unicode(ascii);
    (ok.is_ok() && u != ascii).then(|| u.into_bytes().into())
}

/// Checks a domain name: lowercase letters, digits, hyphens and dots, labels
/// of 1 to 63 octets, 253 octets at most. An international domain name may
/// be written in Unicode (`bücher.example`): it is returned in its ASCII
/// form (`xn--bcher-kva.example`), as DNS and SMTP carry it.
pub fn check_domain(domain: &str) -> Result<String, DomainError> {
    let mut d = domain.trim_end_matches('.').to_ascii_lowercase();
    if !d.is_ascii() {
        d = idna::domain_to_ascii(&d).map_err(|_| DomainError::NotIdna(domain.to_owned()))?;
    }
    if d.is_empty() || d.len() > MAX_DOMAIN {
        return Err(DomainError::Malformed(domain.to_owned()));
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|c| is_domain_char(c.into()) && c != b'.');
        if !ok {
            return Err(DomainError::Malformed(domain.to_owned()));
        }
    }
    Ok(d)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// plover.com, every local part but `*-subscribe`: for other modules'
    /// tests too.
    pub(crate) fn prot() -> Protection {
        Protection::new(
            vec![Protect {
                domain: "plover.com".into(),
                local: Glob::new("*").unwrap(),
                exempt: vec![Glob::new("*-subscribe").unwrap()],
                deliver_to: None,
            }],
            "-id-",
        )
    }

    #[test]
    fn globs() {
        let g = Glob::new("mjd-*").unwrap();
        assert!(g.matches("mjd-x"));
        assert!(!g.matches("mj"));
        assert!(Glob::new("a*b*c").unwrap().matches("axxbyyc"));
        assert!(!Glob::new("a*b*c").unwrap().matches("axxbyy"));
        assert!(Glob::new("?oe").unwrap().matches("joe"));
        assert!(Glob::new("a b").is_err());
        assert_eq!(Glob::new("ab*c").unwrap().min_len(), 3);
    }

    proptest::proptest! {
        /// The quick shapes (`*`, literal, `x*`, `*x`) match exactly what
        /// the general algorithm matches.
        #[test]
        fn every_shape_matches_as_the_general_glob(
            pattern in "[ab*?-]{1,6}",
            text in "[ab-]{0,8}",
        ) {
            let g = Glob::new(&pattern).unwrap();
            proptest::prop_assert_eq!(
                g.matches(&text),
                glob_match(pattern.as_bytes(), text.as_bytes()),
                "shape {:?}", g.shape
            );
        }
    }

    #[test]
    fn character_classes() {
        let local: Vec<u32> = (0..0x200).filter(|&c| is_local_char(c)).collect();
        let domain: Vec<u32> = (0..0x200).filter(|&c| is_domain_char(c)).collect();
        let expect = |extra: &str| -> Vec<u32> {
            let mut v: Vec<u32> = ('0'..='9')
                .chain('A'..='Z')
                .chain('a'..='z')
                .chain(extra.chars())
                .map(u32::from)
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(local, expect("._+-"));
        assert_eq!(domain, expect(".-"));
    }

    #[test]
    fn the_common_globs_get_their_quick_shape() {
        let shape = |p: &str| Glob::new(p).unwrap().shape;
        assert_eq!(shape("*"), Shape::Any);
        assert_eq!(shape("mjd"), Shape::Literal);
        assert_eq!(shape("mjd-*"), Shape::Prefix);
        assert_eq!(shape("*-subscribe"), Shape::Suffix);
        assert_eq!(shape("a*b"), Shape::General);
        assert_eq!(shape("?oe*"), Shape::General);
    }

    #[test]
    fn classify_and_exempt() {
        let p = prot();
        assert_eq!(p.classify("mjd", "plover.com"), Class::Protected(0));
        assert_eq!(p.classify("list-subscribe", "plover.com"), Class::Exempt(0));
        assert_eq!(p.classify("mjd", "example.com"), Class::Unprotected);
    }

    /// An international domain reads the same in Unicode and in its
    /// xn-- form: the ID is the ASCII form's.
    #[test]
    fn international_domains_read_the_same_in_either_form() {
        let domain = check_domain("Bücher.example").unwrap();
        let p = Protection::new(
            vec![Protect {
                domain,
                local: Glob::new("*").unwrap(),
                exempt: vec![],
                deliver_to: None,
            }],
            "-id-",
        );
        assert_eq!(p.ascii_domain("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(p.ascii_domain("plover.com"), "plover.com");
        let token = "a".repeat(24);
        for shown in [
            "bücher.example",
            "xn--bcher-kva.example",
            "XN--BCHER-KVA.example.",
        ] {
            let Parsed::Munged(c) = p.parse(&format!("mjd-id-{token}@{shown}")) else {
                panic!("{shown}")
            };
            assert_eq!(c[0].base, "mjd@xn--bcher-kva.example");
            assert_eq!(p.parse(&format!("mjd@{shown}")), Parsed::Bare(0));
        }
        assert_eq!(p.parse("mjd@bücherei.example"), Parsed::Unprotected);
        assert!(p.max_domain_len() >= "xn--bcher-kva.example".len());
    }

    #[test]
    fn parse_munged_with_separator_inside_the_base() {
        let p = prot();
        let token = "a".repeat(24);
        let addr = format!("Mr-ID-Card-id-{token}@Plover.COM");
        let Parsed::Munged(c) = p.parse(&addr) else {
            panic!()
        };
        assert_eq!(c[0].base, "mr-id-card@plover.com");
        assert_eq!(c[0].token, token);
        let labelled = format!("joe-id-shop-{token}@plover.com");
        let Parsed::Munged(c) = p.parse(&labelled) else {
            panic!()
        };
        assert_eq!(
            (c[0].base.as_str(), c[0].label.as_str()),
            ("joe@plover.com", "shop")
        );
        assert_eq!(p.parse("joe@plover.com"), Parsed::Bare(0));
        // A quoted local part is the same mailbox; quotes inside are not.
        let Parsed::Munged(q) = p.parse(&format!("\"joe-id-{token}\"@plover.com")) else {
            panic!()
        };
        assert_eq!(q[0].base, "joe@plover.com");
        assert_eq!(p.parse("\"joe@plover.com"), Parsed::NotAnAddress);
        assert_eq!(p.parse("\"j\"oe\"@plover.com"), Parsed::NotAnAddress);
        assert_eq!(p.parse("x-subscribe@plover.com"), Parsed::Exempt(0));
        assert_eq!(p.parse("joe@example.com"), Parsed::Unprotected);
        assert_eq!(p.parse("nonsense"), Parsed::NotAnAddress);
    }

    #[test]
    fn domains() {
        assert_eq!(check_domain("Plover.COM.").unwrap(), "plover.com");
        assert!(check_domain("-bad.com").is_err());
        assert!(check_domain("bad..com").is_err());
        // International domains in Unicode are taken in their ASCII form.
        assert_eq!(check_domain("Bücher.de").unwrap(), "xn--bcher-kva.de");
        assert_eq!(check_domain("xn--bcher-kva.de").unwrap(), "xn--bcher-kva.de");
        assert!(check_domain("bü cher.de").is_err());
    }
}
