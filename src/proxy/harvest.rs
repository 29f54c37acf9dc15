//! Harvester defence in the proxy: the visit log queue and its writer
//! thread, the set of visitors caught by the bait page, User-Agent rules,
//! the bait page itself and the robots.txt that hides it from honest
//! crawlers.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::address::Protection;
use crate::config::{AgentRule, Bait};
use crate::day::Day;
use crate::rewrite::ServedLog;
use crate::store::{
    FaultLog, Harvester, Location, Pinned, Store, StoreError, StoreSource, VisitEvent, batch,
    retention_cutoff,
};
use crate::token::{Claims, KeyRing, Kind};

/// The proxy's side of the visit log: a [`batch::Queue`] in front of a
/// writer thread that takes what has queued every 200 ms. Recording never
/// blocks a response; when the disk falls behind and the queue is full,
/// records are dropped and counted.
pub struct VisitLog {
    queue: batch::Queue<VisitEvent>,
}

impl VisitLog {
    /// Opens the store, creating it at the first start (so a bad path
    /// fails at startup), and starts the writer, which stores what
    /// `served` noted with each batch.
    pub fn start(
        source: &Arc<StoreSource>,
        queue: usize,
        retention_days: u32,
        metrics: &super::metrics::Metrics,
        served: Arc<ServedLog>,
    ) -> anyhow::Result<VisitLog> {
        let store = Pinned::start(Arc::clone(source))?;
        let shape = batch::Shape {
            name: "visit-log",
            queue,
            max: 20_000,
            // Polled, not woken: recording costs a request no system call.
            every: Some(Duration::from_millis(200)),
            retry_after: None,
            hold: queue,
            lost: "visit records are dropped until it is back",
        };
        let faults = FaultLog::new("writing the visit log", Arc::clone(&metrics.store_faults));
        let sink = Visits {
            served,
            told_denied: false,
            retention_days,
            last_prune: None,
            may_prune: true,
        };
        let dropped = Arc::clone(&metrics.visits_dropped);
        Ok(VisitLog {
            queue: batch::Queue::start(shape, store, sink, dropped, faults)?,
        })
    }

    /// Queues one record, or counts it as dropped.
    pub fn record(&self, event: VisitEvent) {
        self.queue.push(event);
    }
}

/// Writes visit records, and prunes what is past `retention` at start and
/// hourly. Relaxed durability: the visit log may lose its last batch in a
/// power cut; it need not pay an fsync per batch for rules' durability,
/// and WAL stays consistent.
struct Visits {
    /// Base addresses munged, stored before each batch's visits (a
    /// munged address always ends in a visit record).
    served: Arc<ServedLog>,
    /// True once a refusal to record them was logged.
    told_denied: bool,
    retention_days: u32,
    last_prune: Option<Instant>,
    /// False once the store refused a prune for want of a grant.
    may_prune: bool,
}

impl Visits {
    /// Stores the base addresses noted since the last batch; kept for the
    /// next one when the store fails.
    fn write_served(&mut self, store: &mut Store) -> Result<(), StoreError> {
        let served = self.served.take();
        if served.is_empty() {
            return Ok(());
        }
        match store.record_served(&served) {
            Ok(()) => Ok(()),
            // A role granted before `served` existed: the visit log must
            // not stop for it. Said once; mangled copies then decode
            // against the literal [[protect]] local parts only.
            Err(e) if e.is_denied() => {
                if !self.told_denied {
                    tracing::warn!(error = %e, "cannot record the base addresses served (mangled copies need them); run `addrmunge store grants` again");
                    self.told_denied = true;
                }
                Ok(())
            }
            Err(e) => {
                self.served.put_back(served);
                Err(e)
            }
        }
    }
}

impl batch::Sink for Visits {
    type Item = VisitEvent;

    fn write(&mut self, store: &mut Store, batch: &[VisitEvent]) -> Result<(), StoreError> {
        store.relax_durability()?;
        // First: unlike the visits, written again when a batch is retried
        // no harm is done.
        self.write_served(store)?;
        store.record_visits(batch)
    }

    fn between(&mut self, store: &mut Pinned) {
        if !self.may_prune
            || self
                .last_prune
                .is_some_and(|t| t.elapsed() < Duration::from_secs(3600))
        {
            return;
        }
        let days = self.retention_days;
        let (cutoff_day, cutoff_time) = retention_cutoff(days);
        let pruned = store.with(|s| {
            s.relax_durability()?;
            s.prune(cutoff_day, cutoff_time)
        });
        // Hourly, or never again when this role may not delete: with a
        // shared database, least privilege leaves pruning to the owner.
        self.last_prune = Some(Instant::now());
        match pruned {
            Ok(n) if n > 0 => tracing::info!(rows = n, retention_days = days, "pruned the visit log"),
            Ok(_) => {}
            Err(e) if e.is_denied() => {
                tracing::info!(
                    "this role may not prune the store; run `addrmunge store prune` as the owner (daily, from a timer)"
                );
                self.may_prune = false;
            }
            Err(e) => tracing::warn!(error = %e, "pruning the visit log failed"),
        }
    }
}

/// Visitors remembered as caught by the bait page per day, at most.
const CAUGHT_MAX: usize = 100_000;

/// Visitors caught by the bait page, per day; they get trap IDs for the
/// rest of that day. Loaded from the visit log at start, so a restart
/// does not forgive them.
#[derive(Default)]
pub struct Caught {
    // Per day, so a lookup borrows the visitor instead of building a key.
    by_day: Mutex<HashMap<Day, HashSet<String>>>,
}

impl Caught {
    /// Today's and yesterday's harvesters from the store.
    pub fn load(state: &Location) -> Caught {
        let caught = Caught::default();
        let today = Day::today();
        let from = today.checked_sub(1).unwrap_or(today);
        match Store::open_existing(state).and_then(|mut s| s.harvesters(from, today)) {
            Ok(list) => {
                for v in list
                    .into_iter()
                    .filter(|v| v.harvester.as_deref().and_then(Harvester::parse) == Some(Harvester::Bait))
                {
                    caught.mark(&v.visitor, v.day);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read past harvesters from the visit log"),
        }
        caught
    }

    /// Whether `visitor` fetched the bait page on `day`.
    pub fn contains(&self, visitor: &str, day: Day) -> bool {
        let by_day = self.by_day.lock().unwrap_or_else(|e| e.into_inner());
        by_day.get(&day).is_some_and(|set| set.contains(visitor))
    }

    /// Marks `visitor` for `day`; forgets days before yesterday.
    pub fn mark(&self, visitor: &str, day: Day) {
        let mut by_day = self.by_day.lock().unwrap_or_else(|e| e.into_inner());
        let keep_from = day.checked_sub(1).unwrap_or(day);
        by_day.retain(|d, _| *d >= keep_from);
        let today = by_day.entry(day).or_default();
        // An attacker with many addresses (an IPv6 /48 holds 65,536
        // visitors) must not grow it without bound; past the cap, more bait
        // fetchers get visitor IDs, and the visit log still names them.
        if today.len() < CAUGHT_MAX {
            today.insert(visitor.to_owned());
        }
    }
}

/// The first rule whose pattern the User-Agent contains.
pub fn match_agent<'a>(rules: &'a [AgentRule], user_agent: &str) -> Option<&'a AgentRule> {
    if user_agent.is_empty() {
        return None;
    }
    let ua = user_agent.to_ascii_lowercase();
    rules.iter().find(|r| ua.contains(r.pattern.as_str()))
}

const FIRST: &[&str] = &[
    "james",
    "mary",
    "robert",
    "patricia",
    "john",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "william",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "daniel",
    "lisa",
    "matthew",
    "nancy",
    "anthony",
    "betty",
    "mark",
    "sandra",
    "paul",
    "ashley",
    "steven",
    "emily",
    "andrew",
    "donna",
    "kenneth",
    "michelle",
    "peter",
    "carol",
    "george",
    "amanda",
    "edward",
    "melissa",
    "brian",
    "deborah",
    "ronald",
    "laura",
    "kevin",
    "rebecca",
    "jason",
    "helen",
];
const LAST: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "wilson",
    "anderson",
    "taylor",
    "thomas",
    "moore",
    "jackson",
    "martin",
    "lee",
    "thompson",
    "white",
    "harris",
    "clark",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "hill",
    "green",
    "adams",
    "baker",
    "nelson",
    "carter",
    "mitchell",
    "roberts",
    "turner",
    "phillips",
    "campbell",
    "parker",
    "evans",
    "edwards",
    "collins",
    "stewart",
    "morris",
    "murphy",
];

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The bait page's `(name, trap address)` list for a visitor and day:
/// ordinary-looking names at the protected domains, the same on every
/// reload that day, different for every visitor, unguessable without the key.
pub fn bait_addresses(
    bait: &Bait,
    keys: &KeyRing,
    prot: &Protection,
    ip: IpAddr,
    day: Day,
) -> Vec<(String, String)> {
    let claims = Claims::visit(Kind::Trap, day, ip);
    // A keyed, per-visitor-day seed: a token for a fixed pseudo-address.
    let seed = keys.encode(&format!("bait@{}", bait.domains[0]), "", &claims);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut locals = HashSet::new();
    let mut i = 0u32;
    while out.len() < bait.addresses && i < 1000 {
        let h = Sha256::new()
            .chain_update(seed.as_bytes())
            .chain_update(i.to_be_bytes())
            .finalize();
        i += 1;
        let first = FIRST[usize::from(u16::from_be_bytes([h[0], h[1]])) % FIRST.len()];
        let last = LAST[usize::from(u16::from_be_bytes([h[2], h[3]])) % LAST.len()];
        let local = match h[4] % 4 {
            0 => format!("{first}.{last}"),
            1 => format!("{}{last}", &first[..1]),
            2 => format!("{first}_{last}"),
            _ => format!("{first}{}", &last[..1]),
        };
        let domain = &bait.domains[usize::from(h[5]) % bait.domains.len()];
        if !locals.insert(local.clone()) {
            continue;
        }
        let token = keys.encode(&format!("{local}@{domain}"), "", &claims);
        let address = prot.munge(&local, domain, "", &token);
        out.push((format!("{} {}", capitalised(first), capitalised(last)), address));
    }
    out
}

/// The bait page's HTML.
pub fn bait_page(bait: &Bait, addresses: &[(String, String)]) -> String {
    let list: String = addresses
        .iter()
        .map(|(name, a)| format!("<li>{name} &lt;<a href=\"mailto:{a}\">{a}</a>&gt;</li>\n"))
        .collect();
    bait.template.replace("{{addresses}}", list.trim_end())
}

/// The upstream's robots.txt (if it has one) with a group that keeps
/// honest crawlers off the bait page.
pub fn robots_txt(upstream: Option<&str>, bait_path: &str) -> String {
    let mut out = String::new();
    if let Some(text) = upstream {
        out.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            out.push('\n');
        }
        if !text.is_empty() {
            out.push('\n');
        }
    }
    // A group of its own: RFC 9309 crawlers merge groups for the same agent.
    out.push_str("User-agent: *\nDisallow: ");
    out.push_str(bait_path);
    out.push('\n');
    out
}

/// The link inserted into HTML pages: invisible to people and to assistive
/// technology, followed by harvesters that ignore robots.txt.
pub fn bait_link(path: &str) -> String {
    format!(
        "<a href=\"{path}\" style=\"display:none\" aria-hidden=\"true\" tabindex=\"-1\" rel=\"nofollow\">archive</a>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentAction, Config};
    use std::path::Path;

    fn config(extra: &str) -> Config {
        Config::from_toml(
            Path::new("/x/a.toml"),
            &format!(
                "key_file = \"k\"\nstate = \"s\"\n[[protect]]\ndomain = \"plover.com\"\n[[protect]]\ndomain = \"other.test\"\nlocal = \"mjd\"\n{extra}"
            ),
        )
        .unwrap()
    }

    #[test]
    fn the_caught_set_is_bounded() {
        let c = Caught::default();
        let day: Day = "2026-11-20".parse().unwrap();
        for i in 0..CAUGHT_MAX + 10 {
            c.mark(&format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff), day);
        }
        assert!(c.contains("2001:db8:0:0::/64", day));
        assert!(!c.contains(
            &format!(
                "2001:db8:{:x}:{:x}::/64",
                (CAUGHT_MAX + 5) >> 16,
                (CAUGHT_MAX + 5) & 0xffff
            ),
            day
        ));
        assert_eq!(c.by_day.lock().unwrap()[&day].len(), CAUGHT_MAX);
    }

    #[test]
    fn bait_addresses_are_stable_per_visitor_day_and_decode_as_traps() {
        let c = config("[bait]\npath = \"/contact-archive/\"\naddresses = 6\n");
        let bait = c.bait.as_ref().unwrap();
        assert_eq!(bait.domains, vec!["plover.com".to_string()]);
        let keys = KeyRing::new(&[[7u8; 32]]);
        let day: Day = "2026-11-20".parse().unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let a = bait_addresses(bait, &keys, &c.protection, ip, day);
        assert_eq!(a.len(), 6);
        assert_eq!(a, bait_addresses(bait, &keys, &c.protection, ip, day));
        let other = bait_addresses(bait, &keys, &c.protection, "192.0.2.8".parse().unwrap(), day);
        assert_ne!(a, other);
        for (_, addr) in &a {
            let v = crate::check(
                &keys,
                &c.protection,
                &crate::RuleSet::default(),
                &crate::Served::default(),
                addr,
                day,
            );
            assert!(v.valid(), "{addr}: {v:?}");
            assert_eq!(v.kind, Some(Kind::Trap), "{addr}");
            assert_eq!(v.ip.as_deref(), Some("192.0.2.7"));
        }
        let page = bait_page(bait, &a);
        assert!(page.contains(&a[0].1) && !page.contains("{{addresses}}"));
    }

    #[test]
    fn agent_rules_come_before_the_plain_list() {
        let c = config(
            "[[harvesters.agent]]\npattern = \"EmailSiphon\"\naction = \"domain\"\ndomain = \"siphon.invalid\"\n",
        );
        let rules = c.agents;
        let m = match_agent(&rules, "Mozilla/4.0 (EmailSiphon)").unwrap();
        assert_eq!(m.action, AgentAction::Domain);
        assert_eq!(
            match_agent(&rules, "EmailWolf 1.0").unwrap().action,
            AgentAction::Trap
        );
        assert!(match_agent(&rules, "Mozilla/5.0 Firefox").is_none());
        assert!(match_agent(&rules, "").is_none());
    }

    #[test]
    fn robots_gets_a_disallow_group() {
        assert_eq!(robots_txt(None, "/b/"), "User-agent: *\nDisallow: /b/\n");
        let r = robots_txt(Some("User-agent: *\nDisallow: /private/"), "/b/");
        assert_eq!(
            r,
            "User-agent: *\nDisallow: /private/\n\nUser-agent: *\nDisallow: /b/\n"
        );
    }
}
