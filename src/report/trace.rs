//! `addrmunge trace`: who harvested one address, when, what mail it drew,
//! and the `expire` commands that would cut it off.

use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use super::{fmt_span, fmt_time, harvest_time};
use crate::address::Protection;
use crate::check::{Served, Status, Verdict, check};
use crate::day::Day;
use crate::rules::{Printable, Rule, RuleSet, Subject};
use crate::store::{Arrival, Store, StoreError, Visit};
use crate::token::{KeyRing, Kind};

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
    store: &mut Store,
    (rules, served): (&RuleSet, &Served),
    address: &str,
) -> Result<Trace, StoreError> {
    let verdict = check(keys, protection, rules, served, address, Day::today());
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
    let (Some(visitor), Some(day)) = (t.verdict.claims.and_then(|c| c.visitor), t.verdict.date) else {
        return Ok(t);
    };
    let ip = visitor.to_string();
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
    // A mangled copy is refused by [resolver] mangled already: what is
    // left to cut off is the address it was cut from.
    let harvested = t.verdict.copy_of.clone().unwrap_or(lower);
    t.cut_off = cut_offs(
        &harvested,
        visitor.ip(),
        day,
        served,
        t.verdict.kind == Some(Kind::Crawler),
    );
    Ok(t)
}

/// The commands that cut off `address` (served to `ip` on `day`, with
/// `served` addresses that day), least collateral first.
fn cut_offs(address: &str, ip: IpAddr, day: Day, served: i64, crawler: bool) -> Vec<CutOff> {
    let only_this = CutOff {
        command: format!("addrmunge expire --address {address}"),
        collateral: "nothing else: only this address".into(),
    };
    if crawler {
        // Anyone may have copied it from the search results: cutting off
        // the crawler's IP would cut off every one of them, and the
        // crawler's next visit too.
        return vec![only_this];
    }
    let net = match ip {
        IpAddr::V4(v4) => format!(
            "{}/24",
            ipnet::Ipv4Net::new(v4, 24).expect("24 is valid").trunc().addr()
        ),
        IpAddr::V6(v6) => format!(
            "{}/48",
            ipnet::Ipv6Net::new(v6, 48).expect("48 is valid").trunc().addr()
        ),
    };
    vec![
        only_this,
        CutOff {
            command: format!("addrmunge expire --ip {ip} --day {day}"),
            collateral: if served > 0 {
                format!("every address this visitor was served on {day} ({served} served)")
            } else {
                format!("every address this visitor was served on {day}")
            },
        },
        CutOff {
            command: format!("addrmunge expire --ip {ip}"),
            collateral: "every address this visitor was ever served".into(),
        },
        CutOff {
            command: format!("addrmunge expire --cidr {net}"),
            collateral: format!("every address served to anyone in {net}"),
        },
    ]
}

/// Writes a trace for a person.
pub fn write_trace(out: &mut impl Write, t: &Trace) -> io::Result<()> {
    let v = &t.verdict;
    write_verdict(out, v)?;
    if let (Some(ip), Some(day)) = (&v.ip, v.date) {
        write_harvest(out, t, ip, day)?;
    }
    if let Some(label) = &v.label {
        writeln!(out, "  minted      for \"{label}\"")?;
    }
    write_arrivals(out, t)?;
    write_rules(out, t)?;
    if !t.cut_off.is_empty() {
        writeln!(out, "  to cut it off, least collateral first:")?;
        for c in &t.cut_off {
            writeln!(out, "    {:<62} # {}", c.command, c.collateral)?;
        }
    }
    Ok(())
}

/// What the address is.
fn write_verdict(out: &mut impl Write, v: &Verdict) -> io::Result<()> {
    writeln!(out, "{}", v.address)?;
    match v.status {
        Status::Invalid => writeln!(
            out,
            "  not one of ours: {}",
            v.error.as_deref().unwrap_or("invalid")
        ),
        Status::Bare => writeln!(out, "  a protected address without an ID: nothing to trace"),
        Status::Mangled => writeln!(
            out,
            "  mangled copy of {}, served to {} on {} ({} ID): a harvester cut its front off",
            v.copy_of.as_deref().unwrap_or("?"),
            v.ip.as_deref().unwrap_or("?"),
            v.date.map(|d| d.to_string()).unwrap_or_default(),
            v.kind.map(|k| k.to_string()).unwrap_or_default(),
        ),
        Status::Valid | Status::Expired => {
            let kind = v.kind.map(|k| k.to_string()).unwrap_or_default();
            writeln!(
                out,
                "  stands for   {} ({kind} ID, {})",
                v.original.as_deref().unwrap_or("?"),
                v.status
            )
        }
    }
}

/// Who harvested it, and whether they got a trap.
fn write_harvest(out: &mut impl Write, t: &Trace, ip: &str, day: Day) -> io::Result<()> {
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
    if t.verdict.kind == Some(Kind::Crawler) {
        return writeln!(
            out,
            "  served to   a search engine's crawler: others may have copied it from the search results;\n              \
             cut off the address, never the crawler's IP"
        );
    }
    if !t.trap {
        return writeln!(out, "  served as   an ordinary visitor address");
    }
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
    )
}

/// The mail it drew.
fn write_arrivals(out: &mut impl Write, t: &Trace) -> io::Result<()> {
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
                (_, Status::Mangled) => "a mangled copy: as [resolver] mangled says",
                _ => "refused",
            }
        )?;
    }
    if let Some(d) = t.harvest_to_first_mail {
        writeln!(out, "  first mail  {} after harvest", fmt_span(d))?;
    }
    Ok(())
}

/// The rules that expire it, or what happens to its mail without one.
fn write_rules(out: &mut impl Write, t: &Trace) -> io::Result<()> {
    for r in &t.rules {
        writeln!(out, "  rule        {r}")?;
    }
    match t.verdict.status {
        _ if !t.rules.is_empty() => Ok(()),
        Status::Valid if t.trap => writeln!(
            out,
            "  rules       none; mail to it is discarded and its sender blocked (a trap)"
        ),
        Status::Valid => writeln!(out, "  rules       none: mail to it is delivered"),
        _ => Ok(()),
    }
}
