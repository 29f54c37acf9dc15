//! `[crawlers]`: the networks of search engines' crawlers, from the IP
//! range files the engines publish (Google's `googlebot.json`, Bing's
//! `bingbot.json`: `{"prefixes": [{"ipv4Prefix": …}, {"ipv6Prefix": …}]}`)
//! or plain lists of networks, one per line; and what the proxy needs to
//! verify a visitor claiming to be a crawler in the DNS (the User-Agents
//! that claim it, the engines' host-name suffixes, the name servers). A
//! crawler gets crawler IDs ([`crate::token::Kind::Crawler`]): anyone may
//! copy an address from the search results, so `trace` points at the
//! address, never at the crawler.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::schema::RawCrawlers;
use super::{Problem, problem};

/// Networks loaded at most, over all files.
const MAX_NETS: usize = 100_000;

/// The crawlers' networks, and how to verify a claimed crawler.
#[derive(Debug, Clone, Default)]
pub struct Crawlers {
    nets: Vec<IpNet>,
    /// User-Agent substrings (lowercase) that claim to be a crawler.
    pub agents: Vec<String>,
    /// Host-name suffixes (lowercase, starting with a dot) of crawlers;
    /// empty when the DNS is not asked.
    pub suffixes: Vec<String>,
    /// The name servers to ask; the system's when empty.
    pub nameservers: Vec<SocketAddr>,
}

impl Crawlers {
    /// Reads every file in `ranges` (resolved by `resolve`) and checks the
    /// rest.
    pub fn from_raw(raw: &RawCrawlers, resolve: &impl Fn(&Path) -> PathBuf) -> Result<Crawlers, Problem> {
        let lower = |list: &[String]| {
            list.iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        let suffixes = lower(&raw.suffixes)
            .into_iter()
            .map(|s| if s.starts_with('.') { s } else { format!(".{s}") })
            .collect::<Vec<_>>();
        if let Some(bad) = suffixes.iter().find(|s| s.len() < 4 || !s[1..].contains('.')) {
            return Err(problem(
                "crawlers.suffixes",
                format!("'{bad}' would take far more than one engine's hosts; write e.g. \".googlebot.com\""),
            ));
        }
        let nameservers = raw
            .nameservers
            .iter()
            .map(|n| {
                n.parse::<SocketAddr>()
                    .or_else(|_| n.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| {
                        problem(
                            "crawlers.nameservers",
                            format!("'{n}' is not an address; write e.g. \"127.0.0.1:53\""),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Crawlers {
            nets: read_ranges(&raw.ranges, resolve)?,
            agents: lower(&raw.agents).into_iter().filter(|a| !a.is_empty()).collect(),
            suffixes,
            nameservers,
        })
    }

    /// True when `ip` is in a crawler's network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // A few hundred networks: a scan is as fast as anything cleverer.
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// True when a visitor with this User-Agent claims to be a crawler and
    /// the DNS is to be asked whether it is one.
    pub fn claims(&self, user_agent: &str) -> bool {
        if self.suffixes.is_empty() || user_agent.is_empty() {
            return false;
        }
        let ua = user_agent.to_ascii_lowercase();
        self.agents.iter().any(|a| ua.contains(a.as_str()))
    }

    /// True when `host` (a reverse DNS name) is one of the engines'.
    pub fn is_crawler_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
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

/// The networks in every file of `ranges`.
fn read_ranges(ranges: &[PathBuf], resolve: &impl Fn(&Path) -> PathBuf) -> Result<Vec<IpNet>, Problem> {
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
        let found =
            parse(&text).map_err(|why| problem("crawlers.ranges", format!("{}: {why}", path.display())))?;
        nets.extend(found);
        if nets.len() > MAX_NETS {
            return Err(problem(
                "crawlers.ranges",
                format!("more than {MAX_NETS} networks in all"),
            ));
        }
    }
    Ok(nets)
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
            ..Crawlers::default()
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
