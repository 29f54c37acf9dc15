//! Automatic containment (`[containment]`): harvested addresses are spammed
//! in bursts, weeks after the harvest, and waiting for the owner to read
//! `trace` lets the burst through. When the evidence that a visitor-day was
//! harvested is plain, the resolver adds the narrowest rule that cuts it
//! off: `--ip V --day D` of the visitor it was served to, or `--address`
//! for a crawler's (anyone may have copied that from the search results;
//! the crawler's IP is never cut off).
//!
//! The evidence, one RCPT at a time: mail to a munged address from a
//! client blocked for mailing a trap; mail to a mangled copy of it (no
//! person cuts an address like that); mail to it from clients in N
//! distinct /24 (IPv6 /48) networks within 24 hours. Never for a visitor in
//! `[traps] never_block`, whose clients do not count as networks either;
//! never more than `max_rules_per_day` rules a UTC day, so a flood cannot
//! expire the whole site. Counted per resolver process: with several MX
//! hosts, each counts the mail it receives.

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use ipnet::IpNet;

use super::Judgement;
use crate::check::Status;
use crate::config::ContainmentSettings;
use crate::day::Day;
use crate::rules::{AUTOMATIC, RuleSet, Scope, Subject};
use crate::token::Kind;

/// Munged addresses whose sending networks are remembered, at most.
const TRACKED: usize = 10_000;

/// One recipient at RCPT, as containment sees it.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// How the recipient was judged.
    pub judgement: Arc<Judgement>,
    /// The sending client.
    pub client: IpAddr,
    /// Whether the client is blocked (it mailed a trap).
    pub blocked: bool,
}

/// What an observation leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Add this rule, for this reason.
    Cut(Scope, String),
    /// This rule was due, but today's rules are used up.
    Capped(Scope, String),
}

/// The networks seen mailing each munged address, and the rules made.
pub struct Tracker {
    seen: lru::LruCache<String, Vec<(IpNet, i64)>>,
    /// Scopes this process cut off: never added again by it, so an
    /// owner's `unexpire` stands.
    added: HashSet<Scope>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            seen: lru::LruCache::new(NonZeroUsize::new(TRACKED).expect("not zero")),
            added: HashSet::new(),
        }
    }
}

impl Tracker {
    /// Takes one RCPT into account; `rules` are the rules in force (the
    /// day's automatic ones among them), `now` Unix seconds.
    pub fn observe(
        &mut self,
        c: &ContainmentSettings,
        never_block: &[IpNet],
        sight: &Sighting,
        rules: &RuleSet,
        now: i64,
    ) -> Option<Outcome> {
        let spared = |ip: IpAddr| never_block.iter().any(|n| n.contains(&ip));
        let (scope, harvested) = target(&sight.judgement, rules)?;
        if self.added.contains(&scope) || scope_visitor(&scope).is_some_and(spared) {
            return None;
        }
        let reason = if sight.blocked && c.blocked_clients {
            format!(
                "{AUTOMATIC}mail to {harvested} from {}, blocked for mailing a trap",
                sight.client
            )
        } else if sight.judgement.verdict.status == Status::Mangled && c.mangled {
            format!(
                "{AUTOMATIC}mail to {}, a mangled copy of {harvested}, from {}",
                sight.judgement.address, sight.client
            )
        } else if c.networks > 0 && !spared(sight.client) {
            let nets = self.networks(&harvested, sight.client, now);
            if nets.len() < c.networks {
                return None;
            }
            let list: Vec<String> = nets.iter().map(IpNet::to_string).collect();
            format!(
                "{AUTOMATIC}mail to {harvested} from {} networks ({}) within a day",
                nets.len(),
                list.join(", ")
            )
        } else {
            return None;
        };
        if automatic_today(rules, now) >= c.max_rules_per_day {
            return Some(Outcome::Capped(scope, reason));
        }
        if self.added.len() >= TRACKED {
            self.added.clear();
        }
        self.added.insert(scope.clone());
        self.seen.pop(&harvested);
        Some(Outcome::Cut(scope, reason))
    }

    /// Notes `client`'s network as mailing `address`; the distinct
    /// networks seen within 24 hours.
    fn networks(&mut self, address: &str, client: IpAddr, now: i64) -> Vec<IpNet> {
        let net = network(client);
        let list = self.seen.get_or_insert_mut(address.to_owned(), Vec::new);
        list.retain(|&(n, t)| now - t < 86_400 && n != net);
        list.push((net, now));
        list.iter().map(|&(n, _)| n).collect()
    }
}

/// The rule that cuts off the harvest `j` came from, and the munged address
/// harvested; `None` when there is nothing to cut off (no visitor or
/// crawler ID, refused already, or covered by a rule).
fn target(j: &Judgement, rules: &RuleSet) -> Option<(Scope, String)> {
    let v = &j.verdict;
    if !matches!(v.status, Status::Valid | Status::Mangled) {
        return None;
    }
    let claims = v.claims?;
    let harvested = v.copy_of.clone().unwrap_or_else(|| j.address.clone());
    let subject = Subject {
        claims: &claims,
        base: v.original.as_deref().unwrap_or_default(),
        munged: &harvested,
    };
    if rules.matching(&subject).is_some() {
        return None;
    }
    let scope = match claims.kind {
        Kind::Visitor => Scope::IpDay(claims.visitor?, claims.day),
        Kind::Crawler => Scope::Address(harvested.clone()),
        Kind::Trap | Kind::Minted => return None,
    };
    Some((scope, harvested))
}

fn scope_visitor(scope: &Scope) -> Option<IpAddr> {
    match scope {
        Scope::IpDay(v, _) => Some(v.ip()),
        _ => None,
    }
}

/// The /24 of an IPv4 client, the /48 of an IPv6 one.
fn network(ip: IpAddr) -> IpNet {
    let prefix = if ip.is_ipv4() { 24 } else { 48 };
    IpNet::new(ip, prefix).expect("a valid prefix").trunc()
}

/// Automatic rules made on `now`'s UTC day.
fn automatic_today(rules: &RuleSet, now: i64) -> usize {
    let today = Day::from_unix(now);
    rules
        .rules()
        .iter()
        .filter(|r| r.is_automatic() && Day::from_unix(r.created) == today)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Glob, Protect, Protection};
    use crate::check::{Served, check};
    use crate::rules::Rule;
    use crate::token::{Claims, KeyRing};

    const NOW: i64 = 1_800_000_000;

    fn settings() -> ContainmentSettings {
        ContainmentSettings {
            networks: 3,
            blocked_clients: true,
            mangled: true,
            max_rules_per_day: 2,
        }
    }

    struct World {
        keys: KeyRing,
        protection: Protection,
        rules: RuleSet,
    }

    fn world() -> World {
        World {
            keys: KeyRing::new(&[[5u8; 32]]),
            protection: Protection::new(
                vec![Protect {
                    domain: "plover.com".into(),
                    local: Glob::new("*").unwrap(),
                    exempt: vec![],
                    deliver_to: None,
                }],
                "-id-",
            ),
            rules: RuleSet::default(),
        }
    }

    impl World {
        fn munged(&self, kind: Kind, ip: &str, local: &str) -> String {
            let claims = Claims::visit(kind, Day::from_unix(NOW), ip.parse().unwrap());
            let base = format!("{local}@plover.com");
            let token = self.keys.encode(&base, "", &claims);
            self.protection.munge(local, "plover.com", "", &token)
        }

        fn sight(&self, address: &str, client: &str, blocked: bool) -> Sighting {
            let served = Served::new(["mjd@plover.com".to_owned()]);
            let v = check(
                &self.keys,
                &self.protection,
                &self.rules,
                &served,
                address,
                Day::from_unix(NOW),
            );
            Sighting {
                judgement: Arc::new(Judgement {
                    address: address.to_owned(),
                    verdict: v,
                }),
                client: client.parse().unwrap(),
                blocked,
            }
        }
    }

    fn cut(o: Option<Outcome>) -> Scope {
        match o {
            Some(Outcome::Cut(scope, _)) => scope,
            other => panic!("no cut: {other:?}"),
        }
    }

    #[test]
    fn three_networks_in_a_day_cut_off_the_visitor_day() {
        let w = world();
        let mut t = Tracker::default();
        let a = w.munged(Kind::Visitor, "203.0.113.9", "mjd");
        let never = ["192.0.2.0/24".parse().unwrap()];
        let mut see =
            |client: &str, at: i64| t.observe(&settings(), &never, &w.sight(&a, client, false), &w.rules, at);
        // Two from one /24, one spared, one a day too early: not yet.
        assert_eq!(see("198.51.100.1", NOW - 90_000), None);
        assert_eq!(see("198.51.100.7", NOW), None);
        assert_eq!(see("198.51.100.8", NOW), None);
        assert_eq!(see("192.0.2.1", NOW), None);
        assert_eq!(see("2001:db8:1:2::1", NOW), None);
        assert_eq!(see("2001:db8:1:3::1", NOW), None, "the same /48");
        let day = Day::from_unix(NOW);
        let visitor = crate::token::Visitor::from_ip("203.0.113.9".parse().unwrap());
        match see("2001:db8:2::1", NOW) {
            Some(Outcome::Cut(scope, reason)) => {
                assert_eq!(scope, Scope::IpDay(visitor, day));
                assert!(reason.starts_with("auto: mail to mjd-id-"), "{reason}");
                assert!(
                    reason.contains("3 networks (198.51.100.0/24, 2001:db8:1::/48, 2001:db8:2::/48)"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Not again from this process (an unexpire stands).
        assert_eq!(see("203.0.113.1", NOW), None);
    }

    #[test]
    fn blocked_clients_and_mangled_copies_cut_at_once() {
        let w = world();
        let mut t = Tracker::default();
        let c = settings();
        let a = w.munged(Kind::Visitor, "203.0.113.9", "mjd");
        let day = Day::from_unix(NOW);
        let v = |ip: &str| crate::token::Visitor::from_ip(ip.parse().unwrap());
        let scope = cut(t.observe(&c, &[], &w.sight(&a, "198.51.100.1", true), &w.rules, NOW));
        assert_eq!(scope, Scope::IpDay(v("203.0.113.9"), day));
        let b = w.munged(Kind::Visitor, "203.0.113.10", "mjd");
        let copy = b.replacen("mjd-id-", "", 1);
        let sight = w.sight(&copy, "198.51.100.1", false);
        assert_eq!(sight.judgement.verdict.status, Status::Mangled);
        let scope = cut(t.observe(&c, &[], &sight, &w.rules, NOW));
        assert_eq!(scope, Scope::IpDay(v("203.0.113.10"), day));
        // A crawler's address: cut off by address, never by the crawler's IP.
        let crawled = w.munged(Kind::Crawler, "66.249.64.1", "mjd");
        let scope = cut(t.observe(&c, &[], &w.sight(&crawled, "198.51.100.1", true), &w.rules, NOW));
        assert_eq!(scope, Scope::Address(crawled));
        // Traps, and the owner's own network: never.
        let trap = w.munged(Kind::Trap, "203.0.113.11", "mjd");
        assert_eq!(
            t.observe(&c, &[], &w.sight(&trap, "198.51.100.1", true), &w.rules, NOW),
            None
        );
        let own = w.munged(Kind::Visitor, "192.0.2.5", "mjd");
        let never = ["192.0.2.0/24".parse().unwrap()];
        assert_eq!(
            t.observe(&c, &never, &w.sight(&own, "198.51.100.1", true), &w.rules, NOW),
            None
        );
        // Evidence the settings leave out.
        let off = ContainmentSettings {
            blocked_clients: false,
            mangled: false,
            networks: 0,
            ..c
        };
        let other = w.munged(Kind::Visitor, "203.0.113.12", "mjd");
        assert_eq!(
            t.observe(&off, &[], &w.sight(&other, "198.51.100.1", true), &w.rules, NOW),
            None
        );
    }

    #[test]
    fn a_day_holds_at_most_max_rules_per_day() {
        let mut w = world();
        let mut t = Tracker::default();
        let made = |n: i64, reason: &str, created: i64| Rule {
            id: n,
            scope: Scope::Day(Day::from_number(n as u16)),
            reason: reason.into(),
            created,
        };
        // Two automatic rules today; yesterday's and the owner's do not count.
        w.rules = RuleSet::new(vec![
            made(1, "auto: x", NOW),
            made(2, "auto: y", NOW - 60),
            made(3, "auto: z", NOW - 86_400),
            made(4, "spam", NOW),
        ]);
        let a = w.munged(Kind::Visitor, "203.0.113.9", "mjd");
        match t.observe(
            &settings(),
            &[],
            &w.sight(&a, "198.51.100.1", true),
            &w.rules,
            NOW,
        ) {
            Some(Outcome::Capped(Scope::IpDay(..), reason)) => {
                assert!(reason.contains("blocked"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
