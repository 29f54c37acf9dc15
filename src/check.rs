//! Judging one address: take it apart, authenticate its ID, apply the
//! expiry rules. Shared by `addrmunge decode`, the resolver and `trace`, so
//! they can never disagree about an address.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::address::{Munged, Parsed, Protection};
use crate::day::Day;
use crate::rules::{Rule, RuleSet, Subject};
use crate::token::{Claims, KeyRing, Kind, TokenError};

/// The outcome for one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A munged address that authenticates and no rule expires.
    Valid,
    /// Authentic, but a rule or its validity ended it.
    Expired,
    /// Forged, altered, malformed, or not an address of ours.
    Invalid,
    /// A protected address without an ID (or an exempt one).
    Bare,
    /// What is left of a munged address whose front a harvester cut off
    /// (`id-TOKEN@…`, `TOKEN@…`): authentic, so it says who it was
    /// served to, and no person would write it.
    Mangled,
}

impl Status {
    /// The lowercase name, as in JSON and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Expired => "expired",
            Status::Invalid => "invalid",
            Status::Bare => "bare",
            Status::Mangled => "mangled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of the five statuses.
#[derive(Debug, Clone, thiserror::Error)]
#[error("'{0}' is not a status; valid, expired, invalid, bare or mangled")]
pub struct UnknownStatus(String);

impl std::str::FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Status, UnknownStatus> {
        [
            Status::Valid,
            Status::Expired,
            Status::Invalid,
            Status::Bare,
            Status::Mangled,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Everything known about one address; serialises to the `decode --json`
/// line.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The address as given.
    pub address: String,
    /// The outcome.
    pub status: Status,
    /// The base address it stands for, when known.
    pub original: Option<String>,
    /// The kind of ID.
    pub kind: Option<Kind>,
    /// The visitor: an IPv4 address or an IPv6 `/64`.
    pub ip: Option<String>,
    /// The UTC day the ID was issued.
    pub date: Option<Day>,
    /// A minted address's label.
    pub label: Option<String>,
    /// The last day a dated minted address is accepted.
    pub expires: Option<Day>,
    /// The rule that expired it.
    pub rule: Option<String>,
    /// Why it is invalid or expired, in words.
    pub error: Option<String>,
    /// The protect entry of its base address.
    pub entry: Option<usize>,
    /// True for exempt addresses (status `bare`).
    pub exempt: bool,
    /// True when the address is, or claims to be, one of the owner's: a
    /// protected base address bare, exempt, or with an ID (forged ones
    /// too). False for everything else, other users of a protected
    /// domain included: those are none of our business.
    pub protected: bool,
    /// The decoded fields.
    pub claims: Option<Claims>,
    /// The expiring rule itself.
    pub rule_detail: Option<Rule>,
    /// For a mangled copy: the munged address it was cut from.
    pub copy_of: Option<String>,
}

/// The `decode --json` line: the fields a user reads, and `valid`, which
/// is derived from the status rather than kept beside it.
impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut j = s.serialize_struct("Verdict", 12)?;
        j.serialize_field("address", &self.address)?;
        j.serialize_field("valid", &self.valid())?;
        j.serialize_field("status", &self.status)?;
        j.serialize_field("original", &self.original)?;
        j.serialize_field("kind", &self.kind)?;
        j.serialize_field("ip", &self.ip)?;
        j.serialize_field("date", &self.date)?;
        j.serialize_field("label", &self.label)?;
        j.serialize_field("expires", &self.expires)?;
        j.serialize_field("rule", &self.rule)?;
        j.serialize_field("error", &self.error)?;
        if self.copy_of.is_some() {
            j.serialize_field("copy_of", &self.copy_of)?;
        } else {
            j.skip_field("copy_of")?;
        }
        j.end()
    }
}

impl Verdict {
    /// Whether mail to it is delivered (status `valid`).
    pub fn valid(&self) -> bool {
        self.status == Status::Valid
    }

    fn new(address: &str, status: Status) -> Verdict {
        Verdict {
            address: address.to_owned(),
            status,
            original: None,
            kind: None,
            ip: None,
            date: None,
            label: None,
            expires: None,
            rule: None,
            error: None,
            entry: None,
            exempt: false,
            protected: false,
            claims: None,
            rule_detail: None,
            copy_of: None,
        }
    }

    fn bare(address: &str, entry: usize, exempt: bool) -> Verdict {
        let mut v = Verdict::new(address, Status::Bare);
        v.original = Some(address.trim().to_ascii_lowercase());
        v.entry = Some(entry);
        v.exempt = exempt;
        v.protected = true;
        v
    }

    /// What an authentic ID says, under `status`.
    fn authentic(address: &str, status: Status, m: &Munged, claims: Claims) -> Verdict {
        let mut v = Verdict::new(address, status);
        v.protected = true;
        v.original = Some(m.base.clone());
        v.kind = Some(claims.kind);
        v.ip = claims.visitor.map(|x| x.to_string());
        v.date = Some(claims.day);
        v.label = (!m.label.is_empty()).then(|| m.label.clone());
        v.expires = claims.last_valid_day();
        v.entry = Some(m.entry);
        v.claims = Some(claims);
        v
    }

    fn invalid(address: &str, error: impl Into<String>) -> Verdict {
        let mut v = Verdict::new(address, Status::Invalid);
        v.error = Some(error.into());
        v
    }
}

/// The base addresses the proxies munged, as the store lists them: the
/// candidates a mangled copy may have been cut from, besides the literal
/// local parts of `[[protect]]`. Bounded by what the store keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// Base local parts by domain, lowercase.
    by_domain: HashMap<String, Vec<String>>,
    len: usize,
}

impl Served {
    /// From base addresses (`local@domain`, any case).
    pub fn new(bases: impl IntoIterator<Item = String>) -> Served {
        let mut s = Served::default();
        for base in bases {
            let base = base.to_ascii_lowercase();
            if let Some((local, domain)) = base.rsplit_once('@') {
                s.by_domain
                    .entry(domain.to_owned())
                    .or_default()
                    .push(local.to_owned());
                s.len += 1;
            }
        }
        s
    }

    /// The base local parts served at `domain`.
    pub fn locals<'a>(&'a self, domain: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.by_domain
            .get(domain)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// How many base addresses it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Judges `address` on `today`; `served` lists the bases a mangled copy
/// may come from.
pub fn check(
    keys: &KeyRing,
    protection: &Protection,
    rules: &RuleSet,
    served: &Served,
    address: &str,
    today: Day,
) -> Verdict {
    let mangled = || mangled(keys, protection, served, address);
    let candidates = match protection.parse(address) {
        Parsed::NotAnAddress => return Verdict::invalid(address, "not an e-mail address"),
        Parsed::Unprotected => {
            return mangled().unwrap_or_else(|| {
                Verdict::invalid(
                    address,
                    "not a protected address (no [[protect]] entry covers it)",
                )
            });
        }
        Parsed::Exempt(entry) => return Verdict::bare(address, entry, true),
        Parsed::Bare(entry) => return mangled().unwrap_or_else(|| Verdict::bare(address, entry, false)),
        Parsed::Munged(c) => c,
    };
    let mut last_err = TokenError::Forged;
    for m in &candidates {
        match keys.decode(&m.base, &m.label, &m.token) {
            Ok(d) => return judged(protection, rules, address, m, d.claims, today),
            Err(e) => last_err = e,
        }
    }
    mangled().unwrap_or_else(|| {
        let mut v = Verdict::invalid(address, last_err.to_string());
        v.protected = true;
        v
    })
}

/// A munged address whose ID authenticated, against the rules.
fn judged(
    protection: &Protection,
    rules: &RuleSet,
    address: &str,
    m: &Munged,
    claims: Claims,
    today: Day,
) -> Verdict {
    let mut v = Verdict::authentic(address, Status::Valid, m, claims);
    let (base_local, domain) = m.base.rsplit_once('@').unwrap_or((&m.base, ""));
    let munged = protection.munge(base_local, domain, &m.label, &m.token);
    let subject = Subject {
        claims: &claims,
        base: &m.base,
        munged: &munged,
    };
    if let Some(rule) = rules.matching(&subject) {
        v.status = Status::Expired;
        v.rule = Some(rule.to_string());
        v.error = Some(format!("expired by rule {rule}"));
        v.rule_detail = Some(rule.clone());
    } else if let Some(last) = v.expires.filter(|&last| last < today) {
        v.status = Status::Expired;
        v.error = Some(format!("this minted address was valid until {last}"));
    }
    v
}

/// The verdict on a mangled copy, when `address` is one: the tail of a
/// munged address served at its domain, whose token authenticates with
/// one of the candidate bases. A real local part never does (the token
/// must authenticate), so it is judged as before.
fn mangled(keys: &KeyRing, protection: &Protection, served: &Served, address: &str) -> Option<Verdict> {
    let lower = address.trim().to_ascii_lowercase();
    let (local, domain) = lower.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    protection
        .mangled_readings(local, domain, served.locals(domain))
        .into_iter()
        .find_map(|m| {
            let claims = keys.decode(&m.base, &m.label, &m.token).ok()?.claims;
            let mut v = Verdict::authentic(address, Status::Mangled, &m, claims);
            let (base_local, domain) = m.base.rsplit_once('@').unwrap_or((&m.base, ""));
            v.copy_of = Some(protection.munge(base_local, domain, &m.label, &m.token));
            Some(v)
        })
}

/// Judges a mail recipient the way the MTA asks about it: angle brackets,
/// surrounding space and case dropped; when the whole address carries no
/// ID, judged again with its recipient-delimiter extension (`+news`, any
/// character of `delimiters`) stripped. The resolver and `addrmunge decode`
/// both judge through here, so they can never disagree. The verdict's
/// `address` is the address judged (lowercase, maybe stripped).
pub fn check_recipient(
    keys: &KeyRing,
    protection: &Protection,
    rules: &RuleSet,
    served: &Served,
    address: &str,
    today: Day,
    delimiters: &str,
) -> Verdict {
    let address = normalize_recipient(address);
    let v = check(keys, protection, rules, served, &address, today);
    if v.claims.is_none()
        && !delimiters.is_empty()
        && let Some(stripped) = strip_extension(&address, delimiters)
    {
        let v2 = check(keys, protection, rules, served, &stripped, today);
        if v2.claims.is_some() || v2.status == Status::Bare {
            return v2;
        }
    }
    v
}

/// `<Joe@Plover.COM>` -> `joe@plover.com`.
pub fn normalize_recipient(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_ascii_lowercase()
}

/// Strips `+ext` (any delimiter character) from the local part.
fn strip_extension(address: &str, delimiters: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    let cut = local.find(|c| delimiters.contains(c))?;
    (cut > 0).then(|| format!("{}@{domain}", &local[..cut]))
}

/// Role accounts that must always take mail at a domain: RFC 5321 requires
/// `postmaster`, RFC 2142 names `abuse`. They may be munged on pages, but
/// are never refused bare and their senders never blocked.
pub fn is_role_account(base_address: &str) -> bool {
    let local = base_address.split('@').next().unwrap_or("");
    local.eq_ignore_ascii_case("postmaster") || local.eq_ignore_ascii_case("abuse")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Glob, Protect};

    fn protection() -> Protection {
        let entry = |domain: &str, local: &str| Protect {
            domain: domain.into(),
            local: Glob::new(local).unwrap(),
            exempt: vec![Glob::new("*-subscribe").unwrap()],
            deliver_to: None,
        };
        Protection::new(vec![entry("plover.com", "*"), entry("other.test", "mjd")], "-id-")
    }

    /// Dominus's harvesters cut at a `-` and kept the rest, any case; each
    /// cut of a served address's front is a mangled copy of it, and says
    /// who it was served to. What decodes with no candidate is judged as
    /// before.
    #[test]
    fn every_cut_of_the_front_is_a_mangled_copy() {
        let (keys, p) = (KeyRing::new(&[[3u8; 32]]), protection());
        let today = Day::today();
        let served = Served::new(["guitar-perl-diff@plover.com".to_owned()]);
        let rules = RuleSet::default();
        let claims = Claims::visit(Kind::Visitor, today, "203.0.113.9".parse().unwrap());
        let base = "guitar-perl-diff@plover.com";
        let full = p.munge(
            "guitar-perl-diff",
            "plover.com",
            "",
            &keys.encode(base, "", &claims),
        );
        let local = full.split('@').next().unwrap();
        let cuts: Vec<&str> = local.match_indices('-').map(|(i, _)| &local[i + 1..]).collect();
        assert_eq!(cuts.len(), 4, "{cuts:?}");
        for cut in cuts {
            for spelled in [cut.to_owned(), cut.to_uppercase()] {
                let v = check(
                    &keys,
                    &p,
                    &rules,
                    &served,
                    &format!("{spelled}@Plover.com"),
                    today,
                );
                assert_eq!(v.status, Status::Mangled, "{spelled}: {v:?}");
                assert_eq!(v.original.as_deref(), Some(base));
                assert_eq!(v.copy_of.as_deref(), Some(full.as_str()));
                assert_eq!(v.ip.as_deref(), Some("203.0.113.9"));
                assert!(v.protected);
            }
        }
        // The whole address is no copy; without the served base, nothing
        // decodes the cut-down token, and it is bare (or forged) as before.
        assert_eq!(
            check(&keys, &p, &rules, &served, &full, today).status,
            Status::Valid
        );
        let token = local.rsplit('-').next().unwrap();
        let none = Served::default();
        let bare = check(&keys, &p, &rules, &none, &format!("{token}@plover.com"), today);
        assert_eq!(bare.status, Status::Bare);
        let forged = check(
            &keys,
            &p,
            &rules,
            &none,
            &format!("diff-id-{token}@plover.com"),
            today,
        );
        assert_eq!(forged.status, Status::Invalid);
        // Moved to another domain: not a copy of anything there.
        let moved = check(&keys, &p, &rules, &served, &format!("{token}@other.test"), today);
        assert_eq!(moved.status, Status::Invalid);
        assert!(!moved.protected);
    }

    /// Candidates: literal local parts of [[protect]] always, and a minted
    /// address cut no further than its label.
    #[test]
    fn literal_local_parts_and_minted_labels_are_candidates_too() {
        let (keys, p) = (KeyRing::new(&[[3u8; 32]]), protection());
        let (today, none, rules) = (Day::today(), Served::default(), RuleSet::default());
        let claims = Claims::visit(Kind::Trap, today, "2001:db8::1".parse().unwrap());
        let token = keys.encode("mjd@other.test", "", &claims);
        let v = check(&keys, &p, &rules, &none, &format!("id-{token}@other.test"), today);
        assert_eq!((v.status, v.kind), (Status::Mangled, Some(Kind::Trap)));
        assert_eq!(v.ip.as_deref(), Some("2001:db8::/64"));
        let minted = keys.encode("mjd@other.test", "shop", &Claims::minted(today, 0));
        let v = check(
            &keys,
            &p,
            &rules,
            &none,
            &format!("shop-{minted}@other.test"),
            today,
        );
        assert_eq!((v.status, v.label.as_deref()), (Status::Mangled, Some("shop")));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["status"], "mangled");
        assert_eq!(json["original"], "mjd@other.test");
        assert_eq!(json["copy_of"], format!("mjd-id-shop-{minted}@other.test"));
    }

    #[test]
    fn extensions() {
        assert_eq!(
            strip_extension("joe+tag@x.test", "+").as_deref(),
            Some("joe@x.test")
        );
        assert_eq!(strip_extension("+tag@x.test", "+"), None);
        assert_eq!(strip_extension("joe@x.test", "+"), None);
        assert_eq!(normalize_recipient(" <Joe@X.Test> "), "joe@x.test");
    }
}
