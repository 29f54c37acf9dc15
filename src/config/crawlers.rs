//! `[crawlers]`: the networks of search engines' crawlers, from the IP
//! range files the engines publish (Google's `googlebot.json`, Bing's
//! `bingbot.json`: `{"prefixes": [{"ipv4Prefix": …}, {"ipv6Prefix": …}]}`)
//! or plain lists of networks, one per line. A visitor from one of them
//! gets crawler IDs ([`crate::token::Kind::Crawler`]): anyone may copy an
//! address from the search results, so `trace` points at the address,
//! never at the crawler.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::{Problem, problem};

/// Networks loaded at most, over all files.
const MAX_NETS: usize = 100_000;

/// The crawlers' networks.
#[derive(Debug, Clone, Default)]
pub struct Crawlers {
    nets: Vec<IpNet>,
}

impl Crawlers {
    /// Reads every file in `ranges` (resolved by `resolve`).
    pub fn from_raw(ranges: &[PathBuf], resolve: &impl Fn(&Path) -> PathBuf) -> Result<Crawlers, Problem> {
        let mut nets = Vec::new();
        for r in ranges {
            let path = resolve(r);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                problem(
                    "crawlers.ranges",
                    format!(
                        "cannot read {}: {e}; download the engine's published ranges there",
                        path.display()
                    ),
                )
            })?;
            let found = parse(&text)
                .map_err(|why| problem("crawlers.ranges", format!("{}: {why}", path.display())))?;
            nets.extend(found);
            if nets.len() > MAX_NETS {
                return Err(problem(
                    "crawlers.ranges",
                    format!("more than {MAX_NETS} networks in all"),
                ));
            }
        }
        Ok(Crawlers { nets })
    }

    /// True when `ip` is in a crawler's network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // A few hundred networks: a scan is as fast as anything cleverer.
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// How many networks are known.
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// True when none are.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// The networks in one file: the engines' JSON, or one network (or
/// address) per line with `#` comments.
fn parse(text: &str) -> Result<Vec<IpNet>, String> {
    if text.trim_start().starts_with('{') {
        return parse_json(text);
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(
            net(line)
                .ok_or_else(|| format!("line {}: '{line}' is not a network (write 66.249.64.0/27)", n + 1))?,
        );
    }
    Ok(out)
}

fn parse_json(text: &str) -> Result<Vec<IpNet>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let prefixes = v
        .get("prefixes")
        .and_then(|p| p.as_array())
        .ok_or("no \"prefixes\" list (the format of googlebot.json and bingbot.json)")?;
    prefixes
        .iter()
        .map(|p| {
            let s = p
                .get("ipv4Prefix")
                .or_else(|| p.get("ipv6Prefix"))
                .and_then(|s| s.as_str())
                .ok_or_else(|| format!("{p} has no ipv4Prefix or ipv6Prefix"))?;
            net(s).ok_or_else(|| format!("'{s}' is not a network"))
        })
        .collect()
}

fn net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_engines_json_and_plain_lists() {
        let json = r#"{"creationTime": "2026-12-01T00:00:00", "prefixes": [
            {"ipv6Prefix": "2001:4860:4801:10::/64"}, {"ipv4Prefix": "66.249.64.0/27"}]}"#;
        let c = Crawlers {
            nets: parse(json).unwrap(),
        };
        assert!(c.contains("66.249.64.31".parse().unwrap()));
        assert!(!c.contains("66.249.64.32".parse().unwrap()));
        assert!(c.contains("2001:4860:4801:10::99".parse().unwrap()));
        let plain = parse("# ours\n157.55.39.0/24\n\n207.46.13.1  # one address\n").unwrap();
        assert_eq!(plain.len(), 2);
        assert!(parse("66.249.64.0/33").unwrap_err().contains("line 1"));
        assert!(
            parse(r#"{"prefixes": [{"ip": "x"}]}"#)
                .unwrap_err()
                .contains("ipv4Prefix")
        );
        assert!(parse("{ not json").unwrap_err().contains("not JSON"));
    }
}
