//! Expiry rules as values: what a rule covers ([`Scope`]), a stored rule
//! ([`Rule`]), and the indexed set of them that every judgement consults
//! ([`RuleSet`]). Pure logic; the store only saves and loads them.

use std::collections::HashMap;
use std::fmt;

use ipnet::IpNet;

use crate::day::Day;
use crate::token::{Claims, Visitor};

/// An IPv6 CIDR rule narrower than a visitor (a /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}: IPv6 visitors are identified by their /64; use a prefix of /64 or shorter, or --ip")]
pub struct PrefixTooLong(pub IpNet);

/// What an expiry rule covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every ID issued on this day.
    Day(Day),
    /// Every ID of this visitor (IPv4 address or IPv6 /64).
    Ip(Visitor),
    /// Every ID of this visitor issued on this day.
    IpDay(Visitor, Day),
    /// Every ID of visitors in this network.
    Cidr(IpNet),
    /// Every ID of visitors in this network issued on this day.
    CidrDay(IpNet, Day),
    /// One munged address (lowercase).
    Address(String),
    /// Every ID of one base address (lowercase).
    Base(String),
    /// Every ID issued before this day.
    Before(Day),
}

impl Scope {
    /// Whether this rule covers the ID. `RuleSet::matching` answers the
    /// same through its indexes; this is for listing every rule that applies.
    pub fn covers(&self, s: &Subject<'_>) -> bool {
        let c = s.claims;
        let in_net = |n: &IpNet| c.visitor.is_some_and(|v| n.contains(&v.ip()));
        match self {
            Scope::Day(d) => c.day == *d,
            Scope::Ip(v) => c.visitor == Some(*v),
            Scope::IpDay(v, d) => c.visitor == Some(*v) && c.day == *d,
            Scope::Cidr(n) => in_net(n),
            Scope::CidrDay(n, d) => in_net(n) && c.day == *d,
            Scope::Address(a) => s.munged == a,
            Scope::Base(a) => s.base == a,
            Scope::Before(d) => c.day < *d,
        }
    }

    /// Builds a CIDR scope, refusing IPv6 prefixes longer than /64 (IPv6
    /// visitors are only known by their /64).
    pub fn cidr(net: IpNet, day: Option<Day>) -> Result<Scope, PrefixTooLong> {
        if let IpNet::V6(v6) = net
            && v6.prefix_len() > 64
        {
            return Err(PrefixTooLong(net));
        }
        let net = net.trunc();
        Ok(match day {
            Some(d) => Scope::CidrDay(net, d),
            None => Scope::Cidr(net),
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Day(d) => write!(f, "day {d}"),
            Scope::Ip(v) => write!(f, "ip {v}"),
            Scope::IpDay(v, d) => write!(f, "ip {v} on {d}"),
            Scope::Cidr(n) => write!(f, "cidr {n}"),
            Scope::CidrDay(n, d) => write!(f, "cidr {n} on {d}"),
            Scope::Address(a) => write!(f, "address {a}"),
            Scope::Base(a) => write!(f, "base {a}"),
            Scope::Before(d) => write!(f, "issued before {d}"),
        }
    }
}

/// A stored expiry rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    /// Its number, for `unexpire --rule`.
    pub id: i64,
    /// What it covers.
    #[serde(serialize_with = "display")]
    pub scope: Scope,
    /// Why (free text).
    pub reason: String,
    /// When it was made, Unix seconds.
    pub created: i64,
}

/// How the reason of every rule `[containment]` makes starts.
pub const AUTOMATIC: &str = "auto: ";

impl Rule {
    /// True for a rule `[containment]` made.
    pub fn is_automatic(&self) -> bool {
        self.reason.starts_with(AUTOMATIC)
    }
}

fn display<S: serde::Serializer>(v: &Scope, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.id, self.scope)?;
        if !self.reason.is_empty() {
            write!(f, " ({})", Printable(&self.reason))?;
        }
        Ok(())
    }
}

/// Free text shown on a terminal with its control characters escaped
/// (`\u{1b}`): a reason pasted from a spam's subject line must not move
/// the cursor, recolour or retitle the owner's terminal. Stored as given.
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.chars().any(char::is_control) {
            return f.pad(self.0); // the usual case, widths kept
        }
        let mut escaped = String::with_capacity(self.0.len() + 8);
        for c in self.0.chars() {
            if c.is_control() {
                escaped.extend(c.escape_default());
            } else {
                escaped.push(c);
            }
        }
        f.pad(&escaped)
    }
}

/// What a decoded ID is checked against: the claims and the addresses.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The decoded fields.
    pub claims: &'a Claims,
    /// The base address, lowercase.
    pub base: &'a str,
    /// The munged address, lowercase.
    pub munged: &'a str,
}

/// An in-memory snapshot of all rules, indexed for lookups.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    days: HashMap<Day, usize>,
    ips: HashMap<Visitor, usize>,
    ip_days: HashMap<(Visitor, Day), usize>,
    addresses: HashMap<String, usize>,
    bases: HashMap<String, usize>,
    cidrs: Vec<(IpNet, Option<Day>, usize)>,
    before: Option<(Day, usize)>,
}

impl RuleSet {
    /// Indexes a list of rules.
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let mut set = RuleSet::default();
        for (i, r) in rules.iter().enumerate() {
            match &r.scope {
                Scope::Day(d) => {
                    set.days.entry(*d).or_insert(i);
                }
                Scope::Ip(v) => {
                    set.ips.entry(*v).or_insert(i);
                }
                Scope::IpDay(v, d) => {
                    set.ip_days.entry((*v, *d)).or_insert(i);
                }
                Scope::Address(a) => {
                    set.addresses.entry(a.clone()).or_insert(i);
                }
                Scope::Base(a) => {
                    set.bases.entry(a.clone()).or_insert(i);
                }
                Scope::Cidr(n) => set.cidrs.push((*n, None, i)),
                Scope::CidrDay(n, d) => set.cidrs.push((*n, Some(*d), i)),
                Scope::Before(d) => {
                    if set.before.is_none_or(|(b, _)| *d > b) {
                        set.before = Some((*d, i));
                    }
                }
            }
        }
        set.rules = rules;
        set
    }

    /// All rules, oldest first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule (in order of the checks below) that expires this ID.
    pub fn matching(&self, s: &Subject<'_>) -> Option<&Rule> {
        let c = s.claims;
        let hit = self
            .addresses
            .get(s.munged)
            .or_else(|| self.bases.get(s.base))
            .copied()
            .or_else(|| c.visitor.and_then(|v| self.ip_days.get(&(v, c.day)).copied()))
            .or_else(|| c.visitor.and_then(|v| self.ips.get(&v).copied()))
            .or_else(|| self.days.get(&c.day).copied())
            .or_else(|| {
                let ip = c.visitor?.ip();
                self.cidrs
                    .iter()
                    .find(|(n, d, _)| n.contains(&ip) && d.is_none_or(|d| d == c.day))
                    .map(|&(_, _, i)| i)
            })
            .or_else(|| self.before.filter(|(b, _)| c.day < *b).map(|(_, i)| i))?;
        self.rules.get(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_shown_without_their_control_characters() {
        let r = Rule {
            id: 3,
            scope: Scope::Day("2026-01-01".parse().unwrap()),
            reason: "spam \x1b[2J\x1b]0;pwned\x07 here\n".into(),
            created: 0,
        };
        let shown = r.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(
            shown.contains("spam \\u{1b}[2J") && shown.contains("here\\n"),
            "{shown}"
        );
    }
}
