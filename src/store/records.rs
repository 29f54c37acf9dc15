//! What the store holds, as every backend reads and writes it: arrivals,
//! visits, blocks, and how a rule's scope maps onto its stored columns.
//! Backends differ in SQL and connections only; these shapes are shared.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::check::Status;
use crate::day::Day;
use crate::rules::Scope;
use crate::token::{Kind, Visitor};

/// One message's arrival for a munged address, as the policy service saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Arrival {
    /// Unix seconds.
    pub time: i64,
    /// The sending client's IP.
    pub client_ip: String,
    /// Its HELO name.
    pub helo: String,
    /// The envelope sender.
    pub sender: String,
    /// The recipient, lowercase.
    pub recipient: String,
    /// The base address, if the ID authenticated.
    pub base: Option<String>,
    /// The ID's kind.
    pub kind: Option<Kind>,
    /// The ID's visitor.
    pub visitor: Option<String>,
    /// The ID's day.
    pub day: Option<Day>,
    /// Valid, expired or invalid.
    pub status: Status,
}

/// One request as the proxy saw it, queued for the visit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitEvent {
    /// Unix seconds.
    pub time: i64,
    /// The UTC day of the IDs it was served.
    pub day: Day,
    /// The visitor (`203.0.113.9`, or `2001:db8:1:2::/64`).
    pub visitor: String,
    /// Its User-Agent.
    pub user_agent: String,
    /// The path and query requested.
    pub path: String,
    /// Protected addresses munged in the response.
    pub munged: u64,
    /// Why it counts as a harvester from now on.
    pub harvester: Option<Harvester>,
}

/// Why a visitor counts as a harvester; stored as `bait` or
/// `agent PATTERN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Harvester {
    /// It fetched the bait page.
    Bait,
    /// Its User-Agent contains this `[harvesters]` pattern.
    Agent(String),
}

impl Harvester {
    /// The reason as stored; `None` for text this build did not write.
    pub fn parse(stored: &str) -> Option<Harvester> {
        match stored.strip_prefix("agent ") {
            Some(pattern) => Some(Harvester::Agent(pattern.to_owned())),
            None => (stored == "bait").then_some(Harvester::Bait),
        }
    }
}

impl std::fmt::Display for Harvester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Harvester::Bait => f.write_str("bait"),
            Harvester::Agent(pattern) => write!(f, "agent {pattern}"),
        }
    }
}

/// A visitor's day in the visit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Visit {
    /// The UTC day.
    pub day: Day,
    /// The visitor.
    pub visitor: String,
    /// First request that day, Unix seconds.
    pub first_seen: i64,
    /// Last request that day, Unix seconds.
    pub last_seen: i64,
    /// The User-Agent of the first page that carried an address (or of the first request).
    pub user_agent: String,
    /// The first page that carried a munged address.
    pub first_page: Option<String>,
    /// When that page was served, Unix seconds.
    pub first_munged: Option<i64>,
    /// Requests that day.
    pub requests: i64,
    /// Addresses munged for it that day.
    pub munged: i64,
    /// Why it is a harvester, if it is one.
    pub harvester: Option<String>,
    /// Since when, Unix seconds.
    pub harvester_at: Option<i64>,
}

/// A batch's events of one visitor-day, summed.
pub(crate) struct Folded<'a> {
    pub(crate) day: Day,
    pub(crate) visitor: &'a str,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) user_agent: &'a str,
    pub(crate) first_page: Option<&'a str>,
    pub(crate) first_munged: Option<i64>,
    pub(crate) requests: i64,
    pub(crate) munged: i64,
    pub(crate) harvester: Option<&'a Harvester>,
    pub(crate) harvester_at: Option<i64>,
}

impl<'a> Folded<'a> {
    fn new(v: &'a VisitEvent) -> Folded<'a> {
        let carried = v.munged > 0;
        Folded {
            day: v.day,
            visitor: &v.visitor,
            first_seen: v.time,
            last_seen: v.time,
            user_agent: &v.user_agent,
            first_page: carried.then_some(v.path.as_str()),
            first_munged: carried.then_some(v.time),
            requests: 1,
            munged: v.munged as i64,
            harvester: v.harvester.as_ref(),
            harvester_at: v.harvester.as_ref().map(|_| v.time),
        }
    }

    fn add(&mut self, v: &'a VisitEvent) {
        self.first_seen = self.first_seen.min(v.time);
        self.last_seen = self.last_seen.max(v.time);
        if self.first_page.is_none() && v.munged > 0 {
            self.first_page = Some(&v.path);
            self.first_munged = Some(v.time);
            self.user_agent = &v.user_agent;
        }
        self.requests += 1;
        self.munged += v.munged as i64;
        if self.harvester.is_none() && v.harvester.is_some() {
            self.harvester = v.harvester.as_ref();
            self.harvester_at = Some(v.time);
        }
    }
}

/// A batch's events folded into one entry per visitor-day, in the order
/// each visitor-day first appears: a busy visitor costs a backend one upsert
/// per batch, not one per request.
pub(crate) fn fold(events: &[VisitEvent]) -> Vec<Folded<'_>> {
    let mut days: Vec<Folded> = Vec::new();
    let mut index: HashMap<(Day, &str), usize> = HashMap::new();
    for v in events {
        match index.get(&(v.day, v.visitor.as_str())) {
            Some(&i) => days[i].add(v),
            None => {
                index.insert((v.day, v.visitor.as_str()), days.len());
                days.push(Folded::new(v));
            }
        }
    }
    days
}

/// What retention keeps, `days` long: visits from this day on, arrivals
/// and ended blocks from this time (Unix seconds) on.
pub fn retention_cutoff(days: u32) -> (Day, i64) {
    let day = Day::today()
        .checked_sub(u16::try_from(days).unwrap_or(u16::MAX))
        .unwrap_or_else(|| Day::from_number(0));
    (day, super::now_unix() - i64::from(days) * 86_400)
}

/// Base addresses a store lists in `served` at most: the candidates a
/// mangled copy is decoded against (each a key derivation per lookup of a
/// mangled-looking address), so a page listing thousands of addresses
/// cannot make every such lookup slow. A batch that finds the table full
/// adds no new base (so it holds at most this and one batch).
pub const SERVED_MAX: usize = 10_000;

/// A base address the proxies munged, and the days they first and last
/// did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServedBase {
    /// The base address, lowercase.
    pub base: String,
    /// The first day it was served munged.
    pub first_day: Day,
    /// The last day it was.
    pub last_day: Day,
}

/// Everything a store holds, to copy it into another.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// The expiry rules.
    pub rules: Vec<crate::rules::Rule>,
    /// The client blocks, current or past.
    pub blocks: Vec<Block>,
    /// The mail arrivals.
    pub arrivals: Vec<Arrival>,
    /// The visit log.
    pub visits: Vec<Visit>,
    /// The base addresses served.
    pub served: Vec<ServedBase>,
}

/// Rows of each kind, as a copy added them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Expiry rules.
    pub rules: usize,
    /// Client blocks (added or lengthened).
    pub blocks: usize,
    /// Mail arrivals.
    pub arrivals: usize,
    /// Visitor-days.
    pub visits: usize,
    /// Base addresses served (added or widened).
    pub served: usize,
}

/// A blocked client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Block {
    /// Its IP.
    pub ip: String,
    /// Blocked until, Unix seconds.
    pub until: i64,
    /// Why.
    pub reason: String,
    /// Since, Unix seconds.
    pub created: i64,
}

/// How a scope is stored: its name and its three columns.
impl Scope {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Scope::Day(_) => "day",
            Scope::Ip(_) => "ip",
            Scope::IpDay(..) => "ip-day",
            Scope::Cidr(_) => "cidr",
            Scope::CidrDay(..) => "cidr-day",
            Scope::Address(_) => "address",
            Scope::Base(_) => "base",
            Scope::Before(_) => "before",
        }
    }

    pub(crate) fn columns(&self) -> (Option<i64>, Option<String>, Option<String>) {
        match self {
            Scope::Day(d) | Scope::Before(d) => (Some(d.number().into()), None, None),
            Scope::Ip(v) => (None, Some(v.to_string()), None),
            Scope::IpDay(v, d) => (Some(d.number().into()), Some(v.to_string()), None),
            Scope::Cidr(n) => (None, Some(n.to_string()), None),
            Scope::CidrDay(n, d) => (Some(d.number().into()), Some(n.to_string()), None),
            Scope::Address(a) | Scope::Base(a) => (None, None, Some(a.clone())),
        }
    }

    pub(crate) fn from_columns(
        scope: &str,
        day: Option<i64>,
        net: Option<String>,
        address: Option<String>,
    ) -> Option<Scope> {
        let day = || day.and_then(|d| u16::try_from(d).ok()).map(Day::from_number);
        let visitor = || net.as_deref().and_then(parse_visitor);
        let cidr = || net.as_deref().and_then(|n| n.parse::<IpNet>().ok());
        Some(match scope {
            "day" => Scope::Day(day()?),
            "before" => Scope::Before(day()?),
            "ip" => Scope::Ip(visitor()?),
            "ip-day" => Scope::IpDay(visitor()?, day()?),
            "cidr" => Scope::Cidr(cidr()?),
            "cidr-day" => Scope::CidrDay(cidr()?, day()?),
            "address" => Scope::Address(address?),
            "base" => Scope::Base(address?),
            _ => return None,
        })
    }
}

fn parse_visitor(s: &str) -> Option<Visitor> {
    let ip = s.strip_suffix("/64").unwrap_or(s).parse::<IpAddr>().ok()?;
    Some(Visitor::from_ip(ip))
}
