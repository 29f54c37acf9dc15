//! `[proxy]` and `[harvesters]`, validated into the typed settings the
//! rewriting proxy runs on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::header::HeaderValue;
use ipnet::IpNet;

use super::media::TypePattern;
use super::schema::{AgentAction, RawHarvesters, RawProxy};
use super::tls::TlsSettings;
use super::upstream::UpstreamAddr;
use super::values::{
    Problem, admin_listen, at_least, at_least_usize, listen_addrs, nets, off_or_at_least, problem, timeout,
};
use crate::address;
use crate::rewrite::Expansion;
use crate::store::Location;

/// The proxy's validated `[proxy]` section.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The web server; `None` when unset (the proxy refuses to start).
    pub upstream: Option<UpstreamAddr>,
    /// The `Host` header sent to the web server instead of the visitor's.
    pub upstream_host: Option<HeaderValue>,
    /// Peers whose forwarded-for headers (and PROXY headers) are believed.
    pub trusted: Vec<IpNet>,
    /// Content types rewritten.
    pub rewrite_types: Vec<TypePattern>,
    /// Rewrite responses marked `Cache-Control: no-transform` too.
    pub rewrite_no_transform: bool,
    /// Every connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Where metrics are served.
    pub admin_listen: Option<SocketAddr>,
    /// Connecting to the upstream.
    pub connect_timeout: Duration,
    /// The upstream's response headers, from the request body's last progress.
    pub header_timeout: Duration,
    /// An upstream body's longest stall.
    pub body_idle_timeout: Duration,
    /// A visitor's whole request head, from its first byte.
    pub request_timeout: Duration,
    /// An idle keep-alive connection.
    pub keepalive_timeout: Duration,
    /// Response bytes left unread.
    pub send_timeout: Duration,
    /// A request body before `upload_min_rate` applies.
    pub upload_timeout: Duration,
    /// Bytes per second a request body must average after `upload_timeout`.
    pub upload_min_rate: u64,
    /// The largest request head, in bytes.
    pub max_header_bytes: usize,
    /// Visitor connections at once.
    pub max_connections: usize,
    /// HTTP/2 streams per connection.
    pub max_streams: u32,
    /// Upstream connections at once.
    pub max_upstream_connections: usize,
    /// What a compressed body may decode to.
    pub expansion: Expansion,
    /// Visit-log records queued at most.
    pub visit_queue: usize,
    /// Bytes the token cache may hold.
    pub token_cache_bytes: usize,
    /// Bytes the gzip stretch cache may hold; 0: none.
    pub gzip_cache_bytes: usize,
    /// HTTPS at the proxy.
    pub tls: TlsSettings,
}

impl ProxySettings {
    /// Validates `[proxy]`; paths resolve with `resolve`, and `state` says
    /// where ACME's files go by default.
    pub fn from_raw(
        p: &RawProxy,
        resolve: &impl Fn(&Path) -> PathBuf,
        state: &Location,
    ) -> Result<ProxySettings, Problem> {
        let listen = listen_addrs("proxy.listen", &p.listen, 8080)?;
        let t = |key: &str, secs| timeout(&format!("proxy.{key}"), secs);
        let n = |key: &str, value: usize, min| at_least_usize(&format!("proxy.{key}"), value, min);
        Ok(ProxySettings {
            listen,
            connect_timeout: t("connect_timeout", p.connect_timeout)?,
            header_timeout: t("header_timeout", p.header_timeout)?,
            body_idle_timeout: t("body_idle_timeout", p.body_idle_timeout)?,
            request_timeout: t("request_timeout", p.request_timeout)?,
            keepalive_timeout: t("keepalive_timeout", p.keepalive_timeout)?,
            send_timeout: t("send_timeout", p.send_timeout)?,
            upload_timeout: t("upload_timeout", p.upload_timeout)?,
            token_cache_bytes: n("token_cache_bytes", p.token_cache_bytes, 1 << 20)?,
            gzip_cache_bytes: off_or_at_least("proxy.gzip_cache_bytes", p.gzip_cache_bytes, 1 << 20)?,
            max_header_bytes: n("max_header_bytes", p.max_header_bytes, 8192)?,
            max_connections: n("max_connections", p.max_connections, 1)?,
            upload_min_rate: at_least("proxy.upload_min_rate", p.upload_min_rate, 1)?,
            max_streams: at_least("proxy.max_streams", p.max_streams, 1)?,
            max_upstream_connections: n("max_upstream_connections", p.max_upstream_connections, 1)?,
            expansion: Expansion {
                max_bytes: at_least("proxy.max_decoded_bytes", p.max_decoded_bytes, 1 << 20)?,
                max_ratio: at_least("proxy.max_decoded_ratio", p.max_decoded_ratio, 2)?,
            },
            admin_listen: admin_listen("proxy.admin_listen", p.admin_listen.as_deref())?,
            upstream: upstream(&p.upstream)?,
            upstream_host: upstream_host(p.upstream_host.as_deref())?,
            proxy_protocol: p.proxy_protocol,
            trusted: trusted(p)?,
            rewrite_types: p
                .rewrite_types
                .iter()
                .enumerate()
                .map(|(i, t)| TypePattern::parse(&format!("proxy.rewrite_types[{i}]"), t))
                .collect::<Result<_, _>>()?,
            rewrite_no_transform: p.rewrite_no_transform,
            visit_queue: p.visit_queue,
            tls: TlsSettings::from_raw(p, resolve, state)?,
        })
    }
}

/// `trusted_proxies`, which `proxy_protocol` needs.
fn trusted(p: &RawProxy) -> Result<Vec<IpNet>, Problem> {
    if p.proxy_protocol && p.trusted_proxies.is_empty() {
        return Err(problem(
            "proxy.proxy_protocol",
            "needs the load balancer in trusted_proxies, e.g. trusted_proxies = [\"10.0.0.5/32\"]; a PROXY header from anyone else would let them choose their address",
        ));
    }
    nets("proxy.trusted_proxies", &p.trusted_proxies, "10.0.0.0/8")
}

fn upstream(text: &str) -> Result<Option<UpstreamAddr>, Problem> {
    if text.is_empty() {
        return Ok(None);
    }
    UpstreamAddr::parse(text)
        .map(Some)
        .map_err(|m| problem("proxy.upstream", m))
}

fn upstream_host(text: Option<&str>) -> Result<Option<HeaderValue>, Problem> {
    let Some(h) = text else { return Ok(None) };
    match HeaderValue::from_str(h) {
        Ok(v) if !h.is_empty() && !h.contains(['/', ' ']) => Ok(Some(v)),
        _ => Err(problem(
            "proxy.upstream_host",
            format!("'{h}' is not a host name; write e.g. \"www.example.com\" or \"localhost:8081\""),
        )),
    }
}

/// A User-Agent rule, lowercased for matching.
#[derive(Debug, Clone)]
pub struct AgentRule {
    /// The lowercase substring.
    pub pattern: String,
    /// What to do.
    pub action: AgentAction,
    /// For [`AgentAction::Domain`]: the domain, lowercase.
    pub domain: Option<String>,
}

/// `[harvesters]` in matching order: `[[harvesters.agent]]` first, then
/// `user_agents` (trap). `has_bait` says whether `action = "bait"` can work.
pub fn agent_rules(h: &RawHarvesters, has_bait: bool) -> Result<Vec<AgentRule>, Problem> {
    for (i, a) in h.agent.iter().enumerate() {
        let key = format!("harvesters.agent[{i}]");
        if a.pattern.trim().is_empty() {
            return Err(problem(key, "pattern is empty; write a User-Agent substring"));
        }
        match (a.action, &a.domain) {
            (AgentAction::Domain, None) => {
                return Err(problem(
                    key,
                    "action = \"domain\" needs domain = \"...\", the domain to rewrite to",
                ));
            }
            (AgentAction::Domain, Some(d)) => {
                address::check_domain(d).map_err(|m| problem(format!("{key}.domain"), m))?;
            }
            (AgentAction::Bait, _) if !has_bait => {
                return Err(problem(
                    key,
                    "action = \"bait\" needs a bait page: set [bait] path = \"/contact-archive/\"",
                ));
            }
            _ => {}
        }
    }
    let own = h.agent.iter().map(|a| AgentRule {
        pattern: a.pattern.to_ascii_lowercase(),
        action: a.action,
        domain: a.domain.as_ref().map(|d| d.to_ascii_lowercase()),
    });
    let known = h.user_agents.iter().map(|p| AgentRule {
        pattern: p.to_ascii_lowercase(),
        action: AgentAction::Trap,
        domain: None,
    });
    Ok(own
        .chain(known)
        .filter(|a| !a.pattern.trim().is_empty())
        .collect())
}
