//! Judging one address: take it apart, authenticate its ID, apply the
//! expiry rules. Shared by `addrmunge decode`, the resolver and `trace`, so
//! they can never disagree about an address.

use std::fmt;

use serde::Serialize;

use crate::address::{Parsed, Protection};
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
}

impl Status {
    /// The lowercase name, as in JSON and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Expired => "expired",
            Status::Invalid => "invalid",
            Status::Bare => "bare",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of the four statuses.
#[derive(Debug, Clone, thiserror::Error)]
#[error("'{0}' is not a status; valid, expired, invalid or bare")]
pub struct UnknownStatus(String);

impl std::str::FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Status, UnknownStatus> {
        [Status::Valid, Status::Expired, Status::Invalid, Status::Bare]
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
}

/// The `decode --json` line: the fields a user reads, and `valid`, which
/// is derived from the status rather than kept beside it.
impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut j = s.serialize_struct("Verdict", 11)?;
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
        }
    }

    fn invalid(address: &str, error: impl Into<String>) -> Verdict {
        let mut v = Verdict::new(address, Status::Invalid);
        v.error = Some(error.into());
        v
    }
}

/// Judges `address` on `today`.
pub fn check(keys: &KeyRing, protection: &Protection, rules: &RuleSet, address: &str, today: Day) -> Verdict {
    let candidates = match protection.parse(address) {
        Parsed::NotAnAddress => return Verdict::invalid(address, "not an e-mail address"),
        Parsed::Unprotected => {
            return Verdict::invalid(
                address,
                "not a protected address (no [[protect]] entry covers it)",
            );
        }
        parsed @ (Parsed::Bare(entry) | Parsed::Exempt(entry)) => {
            let mut v = Verdict::new(address, Status::Bare);
            v.original = Some(address.trim().to_ascii_lowercase());
            v.entry = Some(entry);
            v.exempt = matches!(parsed, Parsed::Exempt(_));
            v.protected = true;
            return v;
        }
        Parsed::Munged(c) => c,
    };
    let mut last_err = TokenError::Forged;
    for m in &candidates {
        let decoded = match keys.decode(&m.base, &m.label, &m.token) {
            Ok(d) => d,
            Err(e) => {
                last_err = e;
                continue;
            }
        };
        let claims = decoded.claims;
        let (base_local, domain) = m.base.rsplit_once('@').unwrap_or((&m.base, ""));
        let munged = protection.munge(base_local, domain, &m.label, &m.token);
        let mut v = Verdict::new(address, Status::Valid);
        v.protected = true;
        v.original = Some(m.base.clone());
        v.kind = Some(claims.kind);
        v.ip = claims.visitor.map(|x| x.to_string());
        v.date = Some(claims.day);
        v.label = (!m.label.is_empty()).then(|| m.label.clone());
        v.expires = claims.last_valid_day();
        v.entry = Some(m.entry);
        v.claims = Some(claims);
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
        return v;
    }
    let mut v = Verdict::invalid(address, last_err.to_string());
    v.protected = true;
    v
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
    address: &str,
    today: Day,
    delimiters: &str,
) -> Verdict {
    let address = normalize_recipient(address);
    let v = check(keys, protection, rules, &address, today);
    if v.claims.is_none() && !delimiters.is_empty() {
        if let Some(stripped) = strip_extension(&address, delimiters) {
            let v2 = check(keys, protection, rules, &stripped, today);
            if v2.claims.is_some() || v2.status == Status::Bare {
                return v2;
            }
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
