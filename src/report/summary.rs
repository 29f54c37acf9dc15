//! `addrmunge report`: the picture of the last N days (addresses drawing
//! mail, harvesters, traps, blocks, harvest-to-mail delays) as a value, and
//! as text.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::{day_start, fmt_time, harvest_time};
use crate::check::Status;
use crate::day::Day;
use crate::rules::{Printable, Rule};
use crate::store::{Arrival, Block, Store, StoreError, Visit};
use crate::token::Kind;

/// A munged address that drew mail.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The munged address.
    pub address: String,
    /// Its base address.
    pub base: Option<String>,
    /// The visitor it was made for.
    pub visitor: Option<String>,
    /// The day it was made.
    pub day: Option<Day>,
    /// Trap, visitor or minted.
    pub kind: Option<Kind>,
    /// Messages.
    pub arrivals: usize,
    /// Distinct sending clients.
    pub clients: usize,
}

/// The picture of the last N days.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// First day covered.
    pub from: Day,
    /// Last day covered (today).
    pub to: Day,
    /// Munged addresses that drew mail, most distinct clients first.
    pub targets: Vec<Target>,
    /// Visitors caught by the bait page or a User-Agent rule.
    pub harvesters: Vec<Visit>,
    /// Mail to trap addresses.
    pub trap_hits: usize,
    /// Distinct clients that mailed a trap.
    pub trap_clients: usize,
    /// Mail to mangled copies of munged addresses (fronts cut off by a harvester).
    pub mangled_hits: usize,
    /// Distinct mangled copies mailed.
    pub mangled_addresses: usize,
    /// Blocks made in the period or still in force.
    pub blocks: Vec<Block>,
    /// Rules `[containment]` made in the period (still in force).
    pub contained: Vec<Rule>,
    /// Harvest-to-first-mail delays: `(bucket label, count)`.
    pub delays: Vec<(String, usize)>,
    /// Per day: `(day, visitors served addresses, addresses served, mail arrivals)`.
    pub by_day: Vec<(Day, i64, i64, usize)>,
}

const DELAY_BUCKETS: &[(&str, i64)] = &[
    ("< 1 h", 3600),
    ("1-6 h", 6 * 3600),
    ("6-24 h", 86_400),
    ("1-7 d", 7 * 86_400),
    ("1-4 w", 28 * 86_400),
    ("> 4 w", i64::MAX),
];

/// What the arrivals of the period add up to.
#[derive(Default)]
struct Tally<'a> {
    /// Per recipient: the target, its clients, its first arrival.
    per: BTreeMap<&'a str, (Target, HashSet<&'a str>, i64)>,
    trap_hits: usize,
    trap_clients: HashSet<&'a str>,
    mangled_hits: usize,
    mangled: HashSet<&'a str>,
    mail_by_day: HashMap<Day, usize>,
}

/// Adds up `arrivals` (oldest first).
fn tally(arrivals: &[Arrival]) -> Tally<'_> {
    let mut t = Tally::default();
    for a in arrivals {
        *t.mail_by_day.entry(Day::from_unix(a.time)).or_default() += 1;
        if a.kind == Some(Kind::Trap) {
            t.trap_hits += 1;
            t.trap_clients.insert(a.client_ip.as_str());
        }
        if a.status == Status::Mangled {
            t.mangled_hits += 1;
            t.mangled.insert(a.recipient.as_str());
        }
        let e = t.per.entry(a.recipient.as_str()).or_insert_with(|| {
            (
                Target {
                    address: a.recipient.clone(),
                    base: a.base.clone(),
                    visitor: a.visitor.clone(),
                    day: a.day,
                    kind: a.kind,
                    arrivals: 0,
                    clients: 0,
                },
                HashSet::new(),
                a.time,
            )
        });
        e.0.arrivals += 1;
        e.1.insert(a.client_ip.as_str());
    }
    t
}

/// Builds the report of the last `days` days (today included).
pub fn report(store: &mut Store, days: u16) -> Result<Report, StoreError> {
    let to = Day::today();
    // More days than since 1970: all of them, not (as checked_sub's None
    // would have it) just today.
    let from = to
        .checked_sub(days.saturating_sub(1))
        .unwrap_or(Day::from_number(0));
    let since = day_start(from);
    let arrivals = store.arrivals_since(since)?;
    let t = tally(&arrivals);
    let (targets, delays) = targets(store, t.per)?;
    let by_day = by_day(store, from, to, &t.mail_by_day)?;
    let blocks = store
        .all_blocks()?
        .into_iter()
        .filter(|b| b.created >= since || b.until > crate::store::now_unix())
        .collect();
    let contained = store
        .rules()?
        .into_iter()
        .filter(|r| r.is_automatic() && r.created >= since)
        .collect();
    Ok(Report {
        from,
        to,
        contained,
        targets,
        harvesters: store.harvesters(from, to)?,
        trap_hits: t.trap_hits,
        trap_clients: t.trap_clients.len(),
        mangled_hits: t.mangled_hits,
        mangled_addresses: t.mangled.len(),
        blocks,
        delays: DELAY_BUCKETS
            .iter()
            .zip(delays)
            .map(|((l, _), n)| ((*l).to_owned(), n))
            .collect(),
        by_day,
    })
}

/// Per day of `from..=to`: visitors served addresses, addresses served,
/// mail.
fn by_day(
    store: &mut Store,
    from: Day,
    to: Day,
    mail: &HashMap<Day, usize>,
) -> Result<Vec<(Day, i64, i64, usize)>, StoreError> {
    let served: HashMap<Day, (i64, i64)> = store
        .visits_by_day(from, to)?
        .into_iter()
        .map(|(d, v, m)| (d, (v, m)))
        .collect();
    Ok(days_between(from, to)
        .map(|d| {
            let (v, m) = served.get(&d).copied().unwrap_or((0, 0));
            (d, v, m, mail.get(&d).copied().unwrap_or(0))
        })
        .collect())
}

/// Every day from `from` to `to`, both included.
fn days_between(from: Day, to: Day) -> impl Iterator<Item = Day> {
    std::iter::successors(Some(from), move |&d| {
        (d < to).then(|| d.checked_add(1).unwrap_or(to))
    })
}

/// The targets, most clients first, with their client counts, and how many
/// drew their first mail within each of [`DELAY_BUCKETS`] of the harvest.
fn targets(
    store: &mut Store,
    per: BTreeMap<&str, (Target, HashSet<&str>, i64)>,
) -> Result<(Vec<Target>, Vec<usize>), StoreError> {
    let mut delays = vec![0usize; DELAY_BUCKETS.len()];
    let mut targets = Vec::new();
    for (_, (mut t, clients, first)) in per {
        t.clients = clients.len();
        if let (Some(v), Some(d)) = (&t.visitor, t.day) {
            let harvest = harvest_time(store.visit(d, v)?.as_ref(), d);
            let delay = (first - harvest).max(0);
            let i = DELAY_BUCKETS
                .iter()
                .position(|(_, max)| delay < *max)
                .unwrap_or(DELAY_BUCKETS.len() - 1);
            delays[i] += 1;
        }
        targets.push(t);
    }
    targets.sort_by(|a, b| b.clients.cmp(&a.clients).then(b.arrivals.cmp(&a.arrivals)));
    Ok((targets, delays))
}

/// The report for a person at a terminal.
pub fn write_report(out: &mut impl std::io::Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "addrmunge report {} .. {}", r.from, r.to)?;
    writeln!(out)?;
    write_targets(out, r)?;
    writeln!(out)?;
    write_harvesters_and_blocks(out, r)?;
    writeln!(out)?;
    writeln!(out, "Harvest to first mail:")?;
    for (label, n) in &r.delays {
        writeln!(out, "  {label:<8} {n}")?;
    }
    writeln!(out)?;
    writeln!(out, "By day (visitors served addresses, addresses served, mail):")?;
    for (d, v, m, a) in &r.by_day {
        if *v > 0 || *a > 0 {
            writeln!(out, "  {d} {v:>6} {m:>8} {a:>6}")?;
        }
    }
    Ok(())
}

/// The addresses that drew mail, and the mangled copies.
fn write_targets(out: &mut impl std::io::Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "Munged addresses that drew mail (most distinct clients first):"
    )?;
    if r.targets.is_empty() {
        writeln!(out, "  none")?;
    }
    for t in r.targets.iter().take(20) {
        writeln!(
            out,
            "  {:>3} clients {:>4} messages  {}  [{} {} {}]",
            t.clients,
            t.arrivals,
            t.address,
            t.kind.map_or("?", Kind::as_str),
            t.visitor.as_deref().unwrap_or("-"),
            t.day.map(|d| d.to_string()).unwrap_or_default()
        )?;
    }
    if r.targets.iter().take(20).any(|t| t.kind == Some(Kind::Crawler)) {
        writeln!(
            out,
            "  (crawler: served to a search engine's crawler, so anyone may have copied it from the\n   \
             search results: `addrmunge expire --address` it, never the crawler's IP)"
        )?;
    }
    if r.mangled_hits > 0 {
        writeln!(
            out,
            "  Mangled copies (a harvester cut the front off; `trace` says whose): {} messages to {} addresses",
            r.mangled_hits, r.mangled_addresses
        )?;
    }
    Ok(())
}

/// Harvesters, trap hits and blocks, and the rules containment made.
fn write_harvesters_and_blocks(out: &mut impl std::io::Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "Harvesters seen:")?;
    if r.harvesters.is_empty() {
        writeln!(out, "  none")?;
    }
    for h in &r.harvesters {
        writeln!(
            out,
            "  {} {:<20} {:<24} {}",
            h.day,
            h.visitor,
            Printable(h.harvester.as_deref().unwrap_or("")),
            Printable(&h.user_agent)
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Trap hits: {} messages from {} clients; blocks: {}",
        r.trap_hits,
        r.trap_clients,
        r.blocks.len()
    )?;
    for b in &r.blocks {
        writeln!(
            out,
            "  {:<40} until {}  {}",
            b.ip,
            fmt_time(b.until),
            Printable(&b.reason)
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Cut off automatically ([containment]; `addrmunge unexpire --rule N` undoes one): {}",
        r.contained.len()
    )?;
    for rule in &r.contained {
        writeln!(out, "  {} at {}", rule, fmt_time(rule.created))?;
    }
    Ok(())
}
