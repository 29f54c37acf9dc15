//! `separator`, `[[protect]]` and `[bait]`: what is protected and how, and
//! the bait page that lists trap addresses.

use std::fs;
use std::path::{Path, PathBuf};

use super::schema::{RawBait, RawProtect, RawSpelled};
use super::values::{Problem, problem};
use crate::address::{self, Glob, MAX_LOCAL, Protect, Protection, Spellings};

/// The default separator between a base local part and its ID (Dominus's).
pub const DEFAULT_SEPARATOR: &str = "-id-";

/// The protection rules, and notes for `check-config` about addresses
/// that are protected but whose munged form may pass 64 octets.
pub fn protection(separator: Option<&str>, raw: &[RawProtect]) -> Result<(Protection, Vec<String>), Problem> {
    let separator = separator.unwrap_or(DEFAULT_SEPARATOR);
    if separator.is_empty()
        || separator.len() > 16
        || !separator
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err(problem(
            "separator",
            format!("'{separator}' must be 1 to 16 characters of [a-z0-9-], e.g. \"-id-\""),
        ));
    }
    if raw.is_empty() {
        return Err(problem(
            "protect",
            "nothing is protected; add at least one\n  [[protect]]\n  domain = \"example.com\"",
        ));
    }
    let growth = separator.len() + crate::token::LONG_LEN;
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let entry = protect(i, p, separator, growth)?;
        if !entry.local.is_literal() {
            warnings.push(format!(
                "protect[{i}]: local parts longer than {} octets at {} are still munged, but their munged form passes {MAX_LOCAL} octets for IPv6 visitors",
                MAX_LOCAL - growth,
                entry.domain
            ));
        }
        entries.push(entry);
    }
    Ok((Protection::new(entries, separator), warnings))
}

/// `[spelled]`: the words standing for `@` and `.` in spelled-out addresses.
pub fn spellings(raw: &RawSpelled) -> Result<Spellings, Problem> {
    let default = Spellings::default();
    let words = |key: &str, given: &Option<Vec<String>>, default: Vec<String>| {
        let Some(given) = given else {
            return Ok(default);
        };
        given
            .iter()
            .map(|w| spelled_word(w).map_err(|m| problem(format!("spelled.{key}"), m)))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Spellings {
        enabled: raw.enabled.unwrap_or(default.enabled),
        at: words("at", &raw.at, default.at)?,
        dot: words("dot", &raw.dot, default.dot)?,
    })
}

/// One word for `@` or `.`, lowercase.
fn spelled_word(w: &str) -> Result<String, String> {
    let ok = !w.is_empty() && w.len() <= 32 && w.chars().all(char::is_alphabetic);
    if ok {
        Ok(w.to_lowercase())
    } else {
        Err(format!(
            "'{w}' must be one word of 1 to 32 letters, as written between brackets or spaces (\"at\" for `john [at] plover.com`)"
        ))
    }
}

/// One `[[protect]]` entry; `growth` is what munging adds to a local part.
fn protect(i: usize, p: &RawProtect, separator: &str, growth: usize) -> Result<Protect, Problem> {
    let key = |k: &str| format!("protect[{i}].{k}");
    let domain = address::check_domain(&p.domain).map_err(|m| problem(key("domain"), m))?;
    let local = Glob::new(&p.local).map_err(|m| problem(key("local"), m))?;
    let exempt = p
        .exempt
        .iter()
        .map(|g| Glob::new(g).map_err(|m| problem(key("exempt"), m)))
        .collect::<Result<Vec<_>, _>>()?;
    let deliver_to = p
        .deliver_to
        .as_deref()
        .map(|d| deliver_to(d, key("deliver_to")))
        .transpose()?;
    let min = local.min_len();
    if min + growth > MAX_LOCAL {
        return Err(problem(
            key("local"),
            format!(
                "'{}' is {min} octets; with the separator '{separator}' and an ID of up to {} characters it cannot stay within {MAX_LOCAL} octets; shorten the separator or the local part (at most {} octets)",
                local.as_str(),
                crate::token::LONG_LEN,
                MAX_LOCAL.saturating_sub(growth)
            ),
        ));
    }
    Ok(Protect {
        domain,
        local,
        exempt,
        deliver_to,
    })
}

/// `deliver_to`, lowercased: an address with a local part and a valid domain.
fn deliver_to(d: &str, key: String) -> Result<String, Problem> {
    let (l, dom) = d.rsplit_once('@').ok_or_else(|| {
        problem(
            &key,
            format!("'{d}' is not an address; write it like owner@example.com"),
        )
    })?;
    if l.is_empty() {
        return Err(problem(key, format!("'{d}' has an empty local part")));
    }
    let dom = address::check_domain(dom).map_err(|e| problem(key, e))?;
    Ok(format!("{}@{dom}", l.to_ascii_lowercase()))
}

/// A validated `[bait]` section.
#[derive(Debug, Clone)]
pub struct Bait {
    /// The page's path, starting and ending with `/` or naming a file.
    pub path: String,
    /// How many trap addresses it lists.
    pub addresses: usize,
    /// The page, with `{{addresses}}` where the list goes.
    pub template: String,
    /// Whether HTML pages get an invisible link to it.
    pub link: bool,
    /// The protected domains whose local-part glob admits ordinary names:
    /// the bait addresses are made there.
    pub domains: Vec<String>,
}

/// The bait page when `[bait] template` is unset.
pub const DEFAULT_BAIT_TEMPLATE: &str = include_str!("../bait.html");

impl Bait {
    /// Validates `[bait]`; `None` when it has no path. `resolve` makes the
    /// template's path absolute.
    pub fn from_raw(
        raw: &RawBait,
        protection: &Protection,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Option<Bait>, Problem> {
        if raw.path.is_empty() {
            return Ok(None);
        }
        if !raw.path.starts_with('/')
            || raw.path == "/"
            || raw.path.contains(['?', '#', ' ', '%'])
            || raw.path.split('/').any(|s| s == "..")
        {
            return Err(problem(
                "bait.path",
                format!(
                    "'{}' must be a plain path below / like \"/contact-archive/\"",
                    raw.path
                ),
            ));
        }
        if !(1..=20).contains(&raw.addresses) {
            return Err(problem("bait.addresses", "must be 1 to 20"));
        }
        let template = match &raw.template {
            None => DEFAULT_BAIT_TEMPLATE.to_owned(),
            Some(t) => template(&resolve(t))?,
        };
        let domains = ordinary_domains(protection);
        if domains.is_empty() {
            return Err(problem(
                "bait.path",
                "the bait page makes trap addresses with ordinary names (jane.doe@...), but no [[protect]] entry protects such names; add local = \"*\" to one",
            ));
        }
        Ok(Some(Bait {
            path: raw.path.clone(),
            addresses: raw.addresses,
            template,
            link: raw.link,
            domains,
        }))
    }
}

/// The template at `p`, which must hold the placeholder.
fn template(p: &Path) -> Result<String, Problem> {
    let bad = |m: String| problem("bait.template", m);
    let text = fs::read_to_string(p).map_err(|e| bad(format!("cannot read {}: {e}", p.display())))?;
    if !text.contains("{{addresses}}") {
        return Err(bad(format!(
            "{} has no {{{{addresses}}}} placeholder for the list",
            p.display()
        )));
    }
    Ok(text)
}

/// The protected domains where an ordinary name (`jane.doe`) is protected,
/// each once although several entries may share it.
fn ordinary_domains(protection: &Protection) -> Vec<String> {
    let mut domains: Vec<String> = Vec::new();
    for e in protection.entries() {
        let ordinary = matches!(
            protection.classify("jane.doe", &e.domain),
            address::Class::Protected(_)
        );
        if ordinary && !domains.contains(&e.domain) {
            domains.push(e.domain.clone());
        }
    }
    domains
}
