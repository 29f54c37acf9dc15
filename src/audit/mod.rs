//! `addrmunge audit`: is every page covered? Crawls a site through the
//! proxy as a harvester would ([`crawl`]), reads each page in every way
//! today's harvesters do ([`decode`]), and says what it found ([`find`]):
//! protected addresses in clear (leaks), munged addresses (each decoded:
//! they must be valid, today's, and the auditor's), exempt ones.

pub mod crawl;
pub mod decode;
pub mod find;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use crate::check::{Served, Status, check};
use crate::day::Day;
use crate::rules::RuleSet;
use crate::scan::Matcher;
use crate::token::{KeyRing, Kind};
pub use decode::Decoding;

/// An address found somewhere.
#[derive(Debug, Clone, Serialize)]
pub struct Located {
    /// The address, lowercase.
    pub address: String,
    /// The page or script.
    pub url: String,
    /// The first decoding that revealed it there.
    pub decoding: Decoding,
    /// Bytes from the start of the body (or of the rendered DOM).
    pub offset: usize,
    /// Found in the DOM after scripts ran, not in the body as served.
    pub rendered: bool,
}

/// A munged address found, and what it stands for.
#[derive(Debug, Clone, Serialize)]
pub struct MungedSeen {
    /// Where.
    #[serde(flatten)]
    pub at: Located,
    /// `valid`, `expired`, `invalid`...
    pub status: Status,
    /// The visitor it was made for.
    pub ip: Option<String>,
    /// The day it was made on.
    pub date: Option<Day>,
    /// Its kind (visitor, trap, crawler...).
    pub kind: Option<Kind>,
    /// Valid, made today, for a visitor, and for the auditor when the
    /// proxy said who that is: what the auditor must be shown.
    pub ok: bool,
}

/// One page or script fetched.
#[derive(Debug, Clone, Serialize)]
pub struct PageSeen {
    /// Where.
    pub url: String,
    /// HTTP status (0: no answer).
    pub status: u16,
    /// Media type.
    pub media_type: String,
    /// What went wrong, if anything.
    pub problem: Option<String>,
}

/// Everything an audit found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Pages and scripts fetched.
    pub pages: Vec<PageSeen>,
    /// Protected addresses in clear.
    pub leaks: Vec<Located>,
    /// Munged addresses.
    pub munged: Vec<MungedSeen>,
    /// Exempt addresses (listed, not leaks).
    pub exempt: Vec<Located>,
}

impl Report {
    /// Whether the site is covered: no leak, every munged address fine.
    pub fn clean(&self) -> bool {
        self.leaks.is_empty() && self.munged.iter().all(|m| m.ok)
    }

    /// The visitors the munged addresses were made for (one: the auditor).
    pub fn visitors(&self) -> BTreeSet<&str> {
        self.munged.iter().filter_map(|m| m.ip.as_deref()).collect()
    }
}

/// What judging a page needs.
pub struct Judge<'a> {
    /// The scanner's rules.
    pub matcher: Arc<Matcher>,
    /// The key ring.
    pub keys: &'a KeyRing,
    /// Expiry rules (an expired munged address is a finding too).
    pub rules: &'a RuleSet,
    /// Bases munged (for mangled copies).
    pub served: &'a Served,
    /// Today.
    pub today: Day,
}

impl Judge<'_> {
    /// Adds what a fetched page holds to `report`.
    pub fn page(&self, page: &crawl::Page, report: &mut Report) {
        report.pages.push(PageSeen {
            url: page.url.to_string(),
            status: page.status,
            media_type: page.media_type.clone(),
            problem: page.problem.clone(),
        });
        let bodies = [(Some(&page.body), false), (page.rendered.as_ref(), true)];
        for (body, rendered) in bodies {
            let Some(body) = body else { continue };
            for f in find::page(&self.matcher, body) {
                let at = Located {
                    address: f.address,
                    url: page.url.to_string(),
                    decoding: f.decoding,
                    offset: f.offset,
                    rendered,
                };
                self.add(at, f.kind, page.visitor.as_deref(), report);
            }
        }
    }

    /// Adds one finding; `visitor` is who the proxy took the auditor for.
    fn add(&self, at: Located, kind: find::Kind, visitor: Option<&str>, report: &mut Report) {
        let same = |a: &Located| a.address == at.address && a.url == at.url;
        match kind {
            // Rendering shows what the body showed: each once a page.
            find::Kind::Leak
                if !report
                    .leaks
                    .iter()
                    .any(|l| same(l) && l.offset == at.offset || same(l) && at.rendered) =>
            {
                report.leaks.push(at)
            }
            find::Kind::Exempt if !report.exempt.iter().any(same) => report.exempt.push(at),
            find::Kind::Munged if !report.munged.iter().any(|m| same(&m.at)) => {
                let v = check(
                    self.keys,
                    self.matcher.protection(),
                    self.rules,
                    self.served,
                    &at.address,
                    self.today,
                );
                let kind = v.kind;
                // Through a proxy that does not say (an older one, or a
                // CDN that drops the header): any visitor's.
                let mine = visitor.is_none_or(|me| v.ip.as_deref() == Some(me));
                let ok = v.status == Status::Valid
                    && v.date == Some(self.today)
                    && kind == Some(Kind::Visitor)
                    && mine;
                report.munged.push(MungedSeen {
                    at,
                    status: v.status,
                    ip: v.ip,
                    date: v.date,
                    kind,
                    ok,
                });
            }
            _ => {}
        }
    }
}
