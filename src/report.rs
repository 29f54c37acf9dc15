//! Forensics over the store: `addrmunge trace` (who harvested one address,
//! when, what mail it drew, how to cut it off) and `addrmunge report` (the
//! picture of the last N days, as text, JSON or one self-contained HTML
//! file with inline SVG charts), plus the recipients of a message or mbox.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::address::{Parsed, Protection};
use crate::check::{Status, Verdict, check};
use crate::day::Day;
use crate::rules::{Printable, Rule, RuleSet, Subject};
use crate::store::{Arrival, Block, Store, StoreError, Visit};
use crate::token::{KeyRing, Kind};

/// `2026-11-20 16:14:03 UTC`.
pub fn fmt_time(secs: i64) -> String {
    let day = Day::from_unix(secs);
    let s = secs.rem_euclid(86_400);
    format!("{day} {:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// `3d 4h`, `9h 6m`, `12m 5s`.
pub fn fmt_span(secs: i64) -> String {
    let (sign, s) = if secs < 0 { ("-", -secs) } else { ("", secs) };
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d {h}h")
    } else if h > 0 {
        format!("{sign}{h}h {m}m")
    } else {
        format!("{sign}{m}m {sec}s")
    }
}

fn day_start(day: Day) -> i64 {
    i64::from(day.number()) * 86_400
}

/// When an ID was harvested: the first page that carried an address to its
/// visitor that day, else their first request, else (no visit logged) the
/// start of the day.
fn harvest_time(visit: Option<&Visit>, day: Day) -> i64 {
    visit
        .map(|v| v.first_munged.unwrap_or(v.first_seen))
        .unwrap_or_else(|| day_start(day))
}

/// One `addrmunge expire` command and what else it would cut off.
#[derive(Debug, Clone, Serialize)]
pub struct CutOff {
    /// The command line.
    pub command: String,
    /// What it covers besides this address.
    pub collateral: String,
}

/// Everything `trace` knows about one address.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// What `decode` says.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The visitor's day in the visit log, if the proxy logged it.
    pub harvest: Option<Visit>,
    /// The ID was a trap ID: the visitor was a known harvester when it was served.
    pub trap: bool,
    /// Mail that arrived for it, oldest first.
    pub arrivals: Vec<Arrival>,
    /// Seconds from harvest (the first page with an address) to the first arrival.
    pub harvest_to_first_mail: Option<i64>,
    /// Rules that cover it now.
    pub rules: Vec<Rule>,
    /// Commands that would cut it off, least collateral first.
    pub cut_off: Vec<CutOff>,
}

/// Traces one address.
pub fn trace(
    keys: &KeyRing,
    protection: &Protection,
    store: &Store,
    rules: &RuleSet,
    address: &str,
) -> Result<Trace, StoreError> {
    let verdict = check(keys, protection, rules, address, Day::today());
    let lower = address.trim().to_ascii_lowercase();
    let arrivals = store.arrivals_for(&lower)?;
    let mut t = Trace {
        harvest: None,
        trap: verdict.kind == Some(Kind::Trap),
        arrivals,
        harvest_to_first_mail: None,
        rules: Vec::new(),
        cut_off: Vec::new(),
        verdict,
    };
    let (Some(ip), Some(day)) = (t.verdict.ip.clone(), t.verdict.date) else {
        return Ok(t);
    };
    t.harvest = store.visit(day, &ip)?;
    let harvested_at = harvest_time(t.harvest.as_ref(), day);
    t.harvest_to_first_mail = t.arrivals.first().map(|a| a.time - harvested_at);
    // Every rule that covers it, not only the one that decides its status.
    if let Some(claims) = t.verdict.claims {
        let base = t.verdict.original.clone().unwrap_or_default();
        let subject = Subject {
            claims: &claims,
            base: &base,
            munged: &lower,
        };
        t.rules = rules
            .rules()
            .iter()
            .filter(|r| r.scope.covers(&subject))
            .cloned()
            .collect();
    }
    let served = t.harvest.as_ref().map(|v| v.munged).unwrap_or(0);
    let net = match ip.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(v4)) => format!(
            "{}/24",
            ipnet::Ipv4Net::new(v4, 24).expect("24 is valid").trunc().addr()
        ),
        Some(IpAddr::V6(v6)) => format!(
            "{}/48",
            ipnet::Ipv6Net::new(v6, 48).expect("48 is valid").trunc().addr()
        ),
        None => String::new(),
    };
    t.cut_off = vec![
        CutOff {
            command: format!("addrmunge expire --address {lower}"),
            collateral: "nothing else: only this address".into(),
        },
        CutOff {
            command: format!("addrmunge expire --ip {} --day {day}", ip.trim_end_matches("/64")),
            collateral: if served > 0 {
                format!("every address this visitor was served on {day} ({served} served)")
            } else {
                format!("every address this visitor was served on {day}")
            },
        },
        CutOff {
            command: format!("addrmunge expire --ip {}", ip.trim_end_matches("/64")),
            collateral: "every address this visitor was ever served".into(),
        },
    ];
    if !net.is_empty() {
        t.cut_off.push(CutOff {
            command: format!("addrmunge expire --cidr {net}"),
            collateral: format!("every address served to anyone in {net}"),
        });
    }
    Ok(t)
}

/// Writes a trace for a person.
pub fn write_trace(out: &mut impl std::io::Write, t: &Trace) -> std::io::Result<()> {
    let v = &t.verdict;
    writeln!(out, "{}", v.address)?;
    match v.status {
        Status::Invalid => {
            writeln!(
                out,
                "  not one of ours: {}",
                v.error.as_deref().unwrap_or("invalid")
            )?;
        }
        Status::Bare => writeln!(out, "  a protected address without an ID: nothing to trace")?,
        Status::Valid | Status::Expired => {
            let kind = v.kind.map(|k| k.to_string()).unwrap_or_default();
            writeln!(
                out,
                "  stands for   {} ({kind} ID, {})",
                v.original.as_deref().unwrap_or("?"),
                v.status
            )?;
        }
    }
    if let (Some(ip), Some(day)) = (&v.ip, v.date) {
        match &t.harvest {
            Some(h) => {
                writeln!(
                    out,
                    "  harvested   by {ip} on {day}: first seen {}, User-Agent \"{}\", first page with an address {} ({} requests that day)",
                    fmt_time(h.first_seen),
                    Printable(&h.user_agent),
                    Printable(h.first_page.as_deref().unwrap_or("(none logged)")),
                    h.requests
                )?;
            }
            None => writeln!(
                out,
                "  harvested   by {ip} on {day} (no visit log entry: logged elsewhere, or pruned)"
            )?,
        }
        if t.trap {
            let why = t
                .harvest
                .as_ref()
                .and_then(|h| h.harvester.as_ref().map(|r| (r, h.harvester_at)))
                .map(|(r, at)| {
                    format!(
                        " ({r}{})",
                        at.map(|a| format!(" at {}", fmt_time(a))).unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            writeln!(
                out,
                "  served as   a trap address: the visitor was a known harvester{why}"
            )?;
        } else {
            writeln!(out, "  served as   an ordinary visitor address")?;
        }
    }
    if let Some(label) = &v.label {
        writeln!(out, "  minted      for \"{label}\"")?;
    }
    writeln!(out, "  arrivals    {}", t.arrivals.len())?;
    for a in &t.arrivals {
        writeln!(
            out,
            "    {} from {} (HELO {}) sender <{}>: {}",
            fmt_time(a.time),
            a.client_ip,
            Printable(if a.helo.is_empty() { "-" } else { &a.helo }),
            Printable(&a.sender),
            match (a.kind, a.status) {
                (Some(Kind::Trap), _) => "trap: discarded, client blocked",
                (_, Status::Valid) => "delivered",
                (_, Status::Expired) => "refused (expired)",
                _ => "refused",
            }
        )?;
    }
    if let Some(d) = t.harvest_to_first_mail {
        writeln!(out, "  first mail  {} after harvest", fmt_span(d))?;
    }
    if t.rules.is_empty() {
        if matches!(v.status, Status::Valid) && t.trap {
            writeln!(
                out,
                "  rules       none; mail to it is discarded and its sender blocked (a trap)"
            )?;
        } else if matches!(v.status, Status::Valid) {
            writeln!(out, "  rules       none: mail to it is delivered")?;
        }
    } else {
        for r in &t.rules {
            writeln!(out, "  rule        {r}")?;
        }
    }
    if !t.cut_off.is_empty() {
        writeln!(out, "  to cut it off, least collateral first:")?;
        for c in &t.cut_off {
            writeln!(out, "    {:<62} # {}", c.command, c.collateral)?;
        }
    }
    Ok(())
}

/// The munged recipients of a message (RFC 5322) or an mbox: addresses in
/// To, Cc, Delivered-To and X-Original-To that are munged addresses of ours,
/// in order of appearance, without repeats.
pub fn message_recipients(text: &str, protection: &Protection) -> Vec<String> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut in_headers = true;
    let mut current: Option<String> = None;
    let mut headers: Vec<String> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        // An mbox separator starts the next message's headers.
        if line.starts_with("From ") && (!in_headers || headers.is_empty()) {
            in_headers = true;
            continue;
        }
        if !in_headers {
            continue;
        }
        if line.is_empty() {
            headers.extend(current.take());
            in_headers = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(c) = &mut current {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        headers.extend(current.take());
        current = Some(line.to_owned());
    }
    headers.extend(current);
    for h in headers {
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if !matches!(name.as_str(), "to" | "cc" | "delivered-to" | "x-original-to") {
            continue;
        }
        for word in value.split(|c: char| c.is_whitespace() || "<>,;\"()".contains(c)) {
            let w = word.trim_matches(|c: char| c == '.' || c == ':' || c == '\'');
            if !w.contains('@') {
                continue;
            }
            let lower = w.to_ascii_lowercase();
            if matches!(protection.parse(&lower), Parsed::Munged(_)) && seen.insert(lower.clone()) {
                found.push(lower);
            }
        }
    }
    found
}

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
    /// Blocks made in the period or still in force.
    pub blocks: Vec<Block>,
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

/// Builds the report of the last `days` days (today included).
pub fn report(store: &Store, days: u16) -> Result<Report, StoreError> {
    let to = Day::today();
    // More days than since 1970: all of them, not (as checked_sub's None
    // would have it) just today.
    let from = to
        .checked_sub(days.saturating_sub(1))
        .unwrap_or(Day::from_number(0));
    let since = day_start(from);
    let arrivals = store.arrivals_since(since)?;
    // Per recipient: the target, its clients, its first arrival (arrivals come oldest first).
    let mut per: BTreeMap<&str, (Target, HashSet<&str>, i64)> = BTreeMap::new();
    let mut trap_hits = 0;
    let mut trap_clients = HashSet::new();
    let mut mail_by_day: HashMap<Day, usize> = HashMap::new();
    for a in &arrivals {
        *mail_by_day.entry(Day::from_unix(a.time)).or_default() += 1;
        if a.kind == Some(Kind::Trap) {
            trap_hits += 1;
            trap_clients.insert(a.client_ip.as_str());
        }
        let e = per.entry(a.recipient.as_str()).or_insert_with(|| {
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
    let served: HashMap<Day, (i64, i64)> = store
        .visits_by_day(from, to)?
        .into_iter()
        .map(|(d, v, m)| (d, (v, m)))
        .collect();
    let mut by_day = Vec::new();
    let mut d = from;
    loop {
        let (v, m) = served.get(&d).copied().unwrap_or((0, 0));
        by_day.push((d, v, m, mail_by_day.get(&d).copied().unwrap_or(0)));
        if d >= to {
            break;
        }
        d = d.checked_add(1).unwrap_or(to);
    }
    let blocks = store
        .all_blocks()?
        .into_iter()
        .filter(|b| b.created >= since || b.until > crate::store::now_unix())
        .collect();
    Ok(Report {
        from,
        to,
        targets,
        harvesters: store.harvesters(from, to)?,
        trap_hits,
        trap_clients: trap_clients.len(),
        blocks,
        delays: DELAY_BUCKETS
            .iter()
            .zip(delays)
            .map(|((l, _), n)| ((*l).to_owned(), n))
            .collect(),
        by_day,
    })
}

/// The report for a person at a terminal.
pub fn write_report(out: &mut impl std::io::Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "addrmunge report {} .. {}", r.from, r.to)?;
    writeln!(out)?;
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
    writeln!(out)?;
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A vertical bar chart as inline SVG; `series` share the x axis.
fn bar_chart(id: &str, title: &str, labels: &[String], series: &[(&str, &str, Vec<f64>)]) -> String {
    let (w, h, left, bottom, top) = (720.0, 260.0, 48.0, 56.0, 28.0);
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let n = labels.len().max(1) as f64;
    let slot = (w - left - 10.0) / n;
    let bar = (slot * 0.8 / series.len().max(1) as f64).clamp(1.0, 40.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="{id}" class="chart" role="img" aria-label="{t}" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><title>{t}</title>"#,
        t = esc(title)
    );
    let _ = write!(
        s,
        r##"<text x="{left}" y="18" font-size="14" font-weight="bold" fill="#222">{}</text>"##,
        esc(title)
    );
    let base = h - bottom;
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{base}" x2="{}" y2="{base}" stroke="#888"/>"##,
        w - 10.0
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#555">{}</text>"##,
        left - 4.0,
        top + 4.0,
        max
    );
    for (k, (name, colour, values)) in series.iter().enumerate() {
        for (i, v) in values.iter().enumerate() {
            let bh = (v / max) * (base - top);
            let group = bar * series.len() as f64;
            let x = left + i as f64 * slot + (slot - group) / 2.0 + k as f64 * bar;
            let _ = write!(
                s,
                r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{colour}"><title>{}: {}</title></rect>"#,
                base - bh,
                esc(name),
                v
            );
        }
    }
    let every = (labels.len() / 10).max(1);
    for (i, l) in labels.iter().enumerate() {
        if i % every == 0 {
            let x = left + i as f64 * slot + slot / 2.0;
            let _ = write!(
                s,
                r##"<text x="{x:.1}" y="{}" font-size="10" text-anchor="end" fill="#555" transform="rotate(-40 {x:.1} {})">{}</text>"##,
                base + 14.0,
                base + 14.0,
                esc(l)
            );
        }
    }
    for (k, (name, colour, _)) in series.iter().enumerate() {
        let x = w - 200.0 + k as f64 * 100.0;
        let _ = write!(
            s,
            r##"<rect x="{x}" y="8" width="10" height="10" fill="{colour}"/><text x="{}" y="17" font-size="11" fill="#333">{}</text>"##,
            x + 14.0,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

/// The report as one self-contained HTML page: inline CSS and SVG, no
/// script, nothing fetched.
pub fn html_report(r: &Report) -> String {
    let days: Vec<String> = r.by_day.iter().map(|(d, ..)| d.to_string()).collect();
    let served: Vec<f64> = r.by_day.iter().map(|(_, _, m, _)| *m as f64).collect();
    let mail: Vec<f64> = r.by_day.iter().map(|(.., a)| *a as f64).collect();
    let delay_labels: Vec<String> = r.delays.iter().map(|(l, _)| l.clone()).collect();
    let delay_counts: Vec<f64> = r.delays.iter().map(|(_, n)| *n as f64).collect();
    let top: Vec<&Target> = r.targets.iter().take(15).collect();
    // Rotated labels must fit in the margin: the start of the address is enough
    // to find it in the table below.
    let top_labels: Vec<String> = top
        .iter()
        .map(|t| {
            let short: String = t.address.chars().take(14).collect();
            if t.address.len() > 14 {
                format!("{short}…")
            } else {
                short
            }
        })
        .collect();
    let top_clients: Vec<f64> = top.iter().map(|t| t.clients as f64).collect();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>addrmunge report {from} .. {to}</title>
<style>
body {{ font: 14px/1.45 sans-serif; margin: 2em; color: #222; max-width: 800px; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }}
.num {{ text-align: right; }} .chart {{ display: block; margin: 1em 0; }}
.summary span {{ display: inline-block; margin-right: 2em; }}
</style></head><body>
<h1>addrmunge report, {from} to {to}</h1>
<p class="summary"><span id="trap-hits"><b>{trap}</b> trap hits</span><span><b>{tc}</b> trap clients</span><span id="harvester-count"><b>{hv}</b> harvesters</span><span><b>{bl}</b> blocks</span><span><b>{tg}</b> addresses drew mail</span></p>
"#,
        from = r.from,
        to = r.to,
        trap = r.trap_hits,
        tc = r.trap_clients,
        hv = r.harvesters.len(),
        bl = r.blocks.len(),
        tg = r.targets.len(),
    );
    h.push_str(&bar_chart(
        "by-day",
        "Addresses served and mail received, by day",
        &days,
        &[("served", "#2d5a88", served), ("mail", "#c0392b", mail)],
    ));
    h.push_str(&bar_chart(
        "delays",
        "Harvest to first mail",
        &delay_labels,
        &[("addresses", "#8e44ad", delay_counts)],
    ));
    if !top.is_empty() {
        h.push_str(&bar_chart(
            "targets",
            "Distinct clients per munged address (top 15)",
            &top_labels,
            &[("clients", "#d35400", top_clients)],
        ));
    }
    h.push_str("<h2>Munged addresses that drew mail</h2>\n<table id=\"targets-table\"><tr><th>address</th><th>kind</th><th>visitor</th><th>day</th><th class=\"num\">clients</th><th class=\"num\">messages</th></tr>\n");
    for t in r.targets.iter().take(100) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&t.address),
            esc(t.kind.map_or("", Kind::as_str)),
            esc(t.visitor.as_deref().unwrap_or("")),
            t.day.map(|d| d.to_string()).unwrap_or_default(),
            t.clients,
            t.arrivals
        );
    }
    h.push_str("</table>\n<h2>Harvesters</h2>\n<table id=\"harvesters-table\"><tr><th>day</th><th>visitor</th><th>why</th><th>User-Agent</th><th>first page</th></tr>\n");
    for v in &r.harvesters {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            v.day,
            esc(&v.visitor),
            esc(v.harvester.as_deref().unwrap_or("")),
            esc(&v.user_agent),
            esc(v.first_page.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table>\n<h2>Blocked clients</h2>\n<table id=\"blocks-table\"><tr><th>client</th><th>since</th><th>until</th><th>why</th></tr>\n");
    for b in &r.blocks {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&b.ip),
            fmt_time(b.created),
            fmt_time(b.until),
            esc(&b.reason)
        );
    }
    h.push_str("</table>\n<p>Made by <code>addrmunge report --html</code>.</p>\n</body></html>\n");
    h
}

/// The block list in a format other tools read.
pub fn write_blocks(
    out: &mut impl std::io::Write,
    blocks: &[(IpAddr, i64)],
    format: BlockFormat,
    text: &str,
) -> std::io::Result<usize> {
    let mut skipped = 0;
    match format {
        BlockFormat::Plain => {
            for (ip, _) in blocks {
                writeln!(out, "{ip}")?;
            }
        }
        BlockFormat::PostfixCidr => {
            writeln!(
                out,
                "# addrmunge blocks: a Postfix cidr table (check_client_access cidr:/path)"
            )?;
            for (ip, until) in blocks {
                let len = if ip.is_ipv4() { 32 } else { 128 };
                // cidr tables only take whole-line comments.
                writeln!(out, "# until {}", fmt_time(*until))?;
                writeln!(out, "{ip}/{len}\tREJECT {text}")?;
            }
        }
        BlockFormat::Rbldnsd => {
            // An ip4set dataset; rbldnsd keeps IPv6 in separate ip6trie datasets.
            writeln!(out, "# addrmunge blocks: rbldnsd ip4set data")?;
            writeln!(out, ":127.0.0.2:{text}")?;
            for (ip, _) in blocks {
                if ip.is_ipv4() {
                    writeln!(out, "{ip}")?;
                } else {
                    skipped += 1;
                }
            }
        }
    }
    Ok(skipped)
}

/// Output formats of `addrmunge blocks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// One IP per line.
    Plain,
    /// A Postfix `cidr:` table.
    PostfixCidr,
    /// rbldnsd ip4set data.
    Rbldnsd,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--days` past 1970 covers everything since, not just today.
    #[test]
    fn more_days_than_there_are_cover_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        for days in [20_790, 30_000, u16::MAX] {
            let r = report(&store, days).unwrap();
            assert_eq!((r.from, r.to), (Day::from_number(0), Day::today()), "{days}");
        }
        assert_eq!(
            report(&store, 2).unwrap().from,
            Day::today().checked_sub(1).unwrap()
        );
    }

    #[test]
    fn times_and_spans() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_time(86_400 + 3723), "1970-01-02 01:02:03 UTC");
        assert_eq!(fmt_span(9 * 3600 + 6 * 60), "9h 6m");
        assert_eq!(fmt_span(3 * 86_400 + 4 * 3600), "3d 4h");
        assert_eq!(fmt_span(65), "1m 5s");
    }

    #[test]
    fn recipients_from_a_message_and_an_mbox() {
        let prot = Protection::new(
            vec![crate::address::Protect {
                domain: "plover.com".into(),
                local: crate::address::Glob::new("*").unwrap(),
                exempt: vec![],
                deliver_to: None,
            }],
            "-id-",
        );
        let msg = "From spammer@x.test Fri Nov 20 16:14:03 2026\r\nReturn-Path: <spammer@x.test>\r\nDelivered-To: mjd-id-m37zeg5dtbfcd59x57rca4c8@plover.com\r\nTo: \"Mark\" <MJD-id-zxpv745h78nrzysvv8y5c07g@plover.com>,\r\n\tother@x.test\r\nCc: mjd@plover.com\r\nSubject: hi\r\n\r\nTo: mjd-id-body@plover.com\r\n\nFrom someone Fri Nov 20 17:00:00 2026\nX-Original-To: jane.doe-id-snmmtxs8y4en3wn536yhfxdg@plover.com\n\nbody\n";
        assert_eq!(
            message_recipients(msg, &prot),
            vec![
                "mjd-id-m37zeg5dtbfcd59x57rca4c8@plover.com",
                "mjd-id-zxpv745h78nrzysvv8y5c07g@plover.com",
                "jane.doe-id-snmmtxs8y4en3wn536yhfxdg@plover.com"
            ]
        );
    }

    #[test]
    fn block_formats() {
        let b = vec![
            ("192.0.2.66".parse().unwrap(), 86_400),
            ("2001:db8::1".parse().unwrap(), 86_400),
        ];
        let mut o = Vec::new();
        write_blocks(&mut o, &b, BlockFormat::PostfixCidr, "5.7.1 blocked").unwrap();
        let t = String::from_utf8(o).unwrap();
        assert!(t.contains("192.0.2.66/32\tREJECT 5.7.1 blocked"), "{t}");
        assert!(t.contains("2001:db8::1/128\tREJECT"), "{t}");
        let mut o = Vec::new();
        assert_eq!(
            write_blocks(&mut o, &b, BlockFormat::Rbldnsd, "blocked").unwrap(),
            1
        );
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "# addrmunge blocks: rbldnsd ip4set data\n:127.0.0.2:blocked\n192.0.2.66\n"
        );
    }
}
