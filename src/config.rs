//! The TOML configuration: loading, validation with errors that name the
//! file, the key and the fix, and defaults.
//!
//! Two stages, as in ripgrep: [`RawConfig`] is exactly what the file says
//! (serde, unknown keys refused); [`Config`] is validated and derived, with
//! paths resolved against the config file's folder and the protection rules
//! built once.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::address::{self, Glob, MAX_LOCAL, Protect, Protection};

/// Where the config is read from when neither `--config` nor
/// `ADDRMUNGE_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/addrmunge/addrmunge.toml";
/// The default separator between a base local part and its ID (Dominus's).
pub const DEFAULT_SEPARATOR: &str = "-id-";

/// A configuration that cannot be used, with where and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read config {path}: {source}\n  pass --config PATH or set ADDRMUNGE_CONFIG; fixtures/addrmunge.toml is a commented example"
    )]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line, column and the offending key.
        message: String,
    },
    /// A value that parses but cannot be used.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The key, e.g. `protect[1].domain`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The key file (one 64-hex-digit key per line; the first encodes).
    pub key_file: Option<PathBuf>,
    /// The SQLite file holding rules, visit log, arrivals and blocks.
    pub state: Option<PathBuf>,
    /// Put between the base local part and the ID; `[a-z0-9-]`, 1–16 octets.
    pub separator: Option<String>,
    /// The addresses to protect.
    #[serde(default)]
    pub protect: Vec<RawProtect>,
    /// The rewriting proxy.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// The Postfix socketmap and policy service.
    #[serde(default)]
    pub resolver: ResolverConfig,
    /// How harvesters are recognised.
    #[serde(default)]
    pub harvesters: HarvestersConfig,
    /// What happens to mail sent to trap addresses.
    #[serde(default)]
    pub traps: TrapsConfig,
    /// The bait page served by the proxy.
    #[serde(default)]
    pub bait: BaitConfig,
    /// How long the visit log and mail arrivals are kept: `180d`.
    pub retention: Option<String>,
}

/// `[bait]`: a page only harvesters visit, listing trap addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaitConfig {
    /// The page's path, e.g. `/contact-archive/`; empty = no bait page.
    pub path: String,
    /// How many trap addresses it lists (1 to 20).
    pub addresses: usize,
    /// An HTML file with `{{addresses}}` where the list goes; a plain
    /// staff-directory page when unset.
    pub template: Option<PathBuf>,
    /// Insert an invisible link to the bait page at the end of every HTML page.
    pub link: bool,
}

impl Default for BaitConfig {
    fn default() -> Self {
        BaitConfig {
            path: String::new(),
            addresses: 5,
            template: None,
            link: false,
        }
    }
}

/// What the proxy does for a harvester User-Agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentAction {
    /// Serve trap addresses (mail to them is discarded, the sender blocked).
    Trap,
    /// Rewrite protected addresses to another domain (`domain = "..."`).
    Domain,
    /// Serve the bait page instead of the content.
    Bait,
}

/// One `[[harvesters.agent]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRule {
    /// Case-insensitive substring of the User-Agent.
    pub pattern: String,
    /// What to do.
    pub action: AgentAction,
    /// For `action = "domain"`: the domain the addresses are rewritten to.
    pub domain: Option<String>,
}

/// One `[[protect]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProtect {
    /// The domain, e.g. `plover.com`.
    pub domain: String,
    /// Glob over local parts; default `*` (every address at the domain).
    #[serde(default = "star")]
    pub local: String,
    /// Globs over local parts never munged, e.g. `["*-subscribe"]`.
    #[serde(default)]
    pub exempt: Vec<String>,
    /// Where valid munged addresses are delivered instead of the base address.
    pub deliver_to: Option<String>,
}

fn star() -> String {
    "*".into()
}

/// `[proxy]`: the rewriting HTTP proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Addresses to listen on, e.g. `["127.0.0.1:8080", "[::1]:8080"]`.
    pub listen: Vec<String>,
    /// The web server behind the proxy, `http://host:port`.
    pub upstream: String,
    /// Peers (CIDRs) whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<String>,
    /// Content types whose bodies are rewritten (without parameters).
    pub rewrite_types: Vec<String>,
    /// Seconds to connect to the upstream before answering 504.
    pub connect_timeout: u64,
    /// Seconds to wait for the upstream's response headers before answering 504.
    pub header_timeout: u64,
    /// Seconds the upstream body may stall before the response is cut off.
    pub body_idle_timeout: u64,
    /// The largest request head accepted, in bytes (larger ones get 431).
    pub max_header_bytes: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Where Prometheus metrics are served (`/metrics`), e.g. "127.0.0.1:9100"; none when unset.
    pub admin_listen: Option<String>,
    /// Rewrite even responses marked `Cache-Control: no-transform` (the
    /// addresses are the owner's, the proxy is the owner's); false passes them untouched.
    pub rewrite_no_transform: bool,
    /// Visit-log records waiting for the disk at most; more are dropped and counted.
    pub visit_queue: usize,
    /// The `Host` header sent to the web server instead of the visitor's
    /// (e.g. when the web server only answers to its internal name); unset
    /// passes the visitor's `Host` as received.
    pub upstream_host: Option<String>,
    /// Every connection to `listen` starts with a PROXY protocol header
    /// (HAProxy v1 or v2) naming the visitor, sent by a load balancer in
    /// `trusted_proxies`; connections from anyone else are closed.
    pub proxy_protocol: bool,
    /// Seconds a visitor has to send a whole request head, from its first
    /// byte; then the connection is closed (slowloris).
    pub request_timeout: u64,
    /// Seconds an idle keep-alive connection is kept between requests.
    pub keepalive_timeout: u64,
    /// Seconds a visitor may leave response bytes unread; then the
    /// connection is closed.
    pub send_timeout: u64,
    /// Seconds a request body may take before `upload_min_rate` applies.
    pub upload_timeout: u64,
    /// Bytes per second a request body must average after `upload_timeout`
    /// (each such many bytes buy one more second); slower uploads get 408.
    pub upload_min_rate: u64,
    /// Concurrent HTTP/2 streams per visitor connection.
    pub max_streams: u32,
    /// Connections to the web server at once; more requests wait up to
    /// `connect_timeout` for one, then get 503.
    pub max_upstream_connections: usize,
    /// Bytes a compressed body may decode to at most; a rewritten body past
    /// it is cut off.
    pub max_decoded_bytes: u64,
    /// How many times its compressed size a body may decode to (once past
    /// 1 MiB); a rewritten body past it is cut off.
    pub max_decoded_ratio: u64,
    /// Bytes the per-visitor token cache may hold (read at start).
    pub token_cache_bytes: usize,
}

/// The content types rewritten by default.
pub const DEFAULT_REWRITE_TYPES: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "text/plain",
    "text/xml",
    "application/xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/json",
    "application/ld+json",
    "text/javascript",
    "application/javascript",
    "text/css",
];

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: Vec::new(),
            upstream: String::new(),
            trusted_proxies: Vec::new(),
            rewrite_types: DEFAULT_REWRITE_TYPES.iter().map(|s| s.to_string()).collect(),
            connect_timeout: 5,
            header_timeout: 30,
            body_idle_timeout: 30,
            admin_listen: None,
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            rewrite_no_transform: true,
            visit_queue: 10_000,
            upstream_host: None,
            proxy_protocol: false,
            request_timeout: 20,
            keepalive_timeout: 60,
            send_timeout: 60,
            upload_timeout: 20,
            upload_min_rate: 500,
            max_streams: 100,
            max_upstream_connections: 1024,
            max_decoded_bytes: 256 << 20,
            max_decoded_ratio: 100,
            token_cache_bytes: crate::rewrite::CACHE_BYTES,
        }
    }
}

/// What the resolver answers for a protected address without an ID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bare {
    /// Deliver it (DUNNO): the address was public before addrmunge.
    #[default]
    Accept,
    /// Refuse it at RCPT with `bare_text`.
    Reject,
}

/// `[resolver]`: the Postfix socketmap and policy service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    /// Socketmap listeners in Postfix notation: `unix:/path` or `inet:host:port`.
    pub socketmap: Vec<String>,
    /// Policy-delegation listeners, same notation.
    pub policy: Vec<String>,
    /// Permissions of unix sockets (octal), e.g. "0660".
    pub socket_mode: String,
    /// Owner of unix sockets (name or uid); unchanged when unset.
    pub socket_owner: Option<String>,
    /// Group of unix sockets (name or gid), e.g. "postfix"; unchanged when unset.
    pub socket_group: Option<String>,
    /// `accept` or `reject` mail to a protected address without an ID.
    pub bare: Bare,
    /// Answer to an expired or forged ID (`REJECT` + this); may start with an enhanced status code.
    pub reject_text: String,
    /// Answer to a bare address when `bare = "reject"`.
    pub bare_text: String,
    /// Answer to a blocked client.
    pub block_text: String,
    /// Postfix's `recipient_delimiter` (e.g. "+"): extensions are stripped before judging.
    pub recipient_delimiter: String,
    /// The largest request accepted, in bytes; larger ones close the connection.
    pub max_request: usize,
    /// Seconds a connection may stay idle.
    pub idle_timeout: u64,
    /// Connections served at once; at the cap the idlest is closed to make
    /// room (Postfix reconnects), and past that new ones wait.
    pub max_connections: usize,
    /// Where Prometheus metrics are served (`/metrics`), e.g. "127.0.0.1:9101"; none when unset.
    pub admin_listen: Option<String>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            socketmap: Vec::new(),
            policy: Vec::new(),
            socket_mode: "0660".into(),
            socket_owner: None,
            socket_group: None,
            bare: Bare::Accept,
            reject_text:
                "5.1.1 This address has expired. It was made for one visitor of the web site on one day; \
                          please take the address shown on the site today. Sorry for the trouble."
                    .into(),
            bare_text: "5.1.1 This address does not take mail; please use the address shown on the web site."
                .into(),
            block_text: "5.7.1 Your server sent mail to a spam trap and is blocked for a while.".into(),
            recipient_delimiter: String::new(),
            max_request: 10_000,
            idle_timeout: 300,
            max_connections: 1000,
            admin_listen: None,
        }
    }
}

/// `[harvesters]`: how harvesters are recognised.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HarvestersConfig {
    /// Case-insensitive substrings of User-Agents that get trap addresses.
    pub user_agents: Vec<String>,
    /// Patterns with their own action (checked before `user_agents`).
    pub agent: Vec<AgentRule>,
}

/// User-Agent substrings of known address harvesters.
pub const DEFAULT_HARVESTER_AGENTS: &[&str] = &[
    "EmailSiphon",
    "EmailCollector",
    "EmailWolf",
    "ExtractorPro",
    "WebEMailExtrac",
    "EmailHarvest",
    "Email Extractor",
    "CherryPicker",
    "Crescent Internet ToolPak",
    "WebBandit",
    "NICErsPRO",
    "Atomic_Email_Hunter",
    "Advanced Email Extractor",
    "Mail Sweeper",
    "EmailReaper",
];

impl Default for HarvestersConfig {
    fn default() -> Self {
        HarvestersConfig {
            user_agents: DEFAULT_HARVESTER_AGENTS.iter().map(|s| s.to_string()).collect(),
            agent: Vec::new(),
        }
    }
}

/// `[traps]`: what happens to mail sent to trap addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrapsConfig {
    /// How long a client that mailed a trap stays blocked: `7d`, `12h`, `30m`.
    pub block_for: String,
    /// Clients never blocked (CIDRs); loopback by default.
    pub never_block: Vec<String>,
    /// The policy answer to mail for a trap (`DISCARD` or e.g. `HOLD`).
    pub action: String,
}

impl Default for TrapsConfig {
    fn default() -> Self {
        TrapsConfig {
            block_for: "7d".into(),
            never_block: vec!["127.0.0.0/8".into(), "::1/128".into()],
            action: "DISCARD".into(),
        }
    }
}

/// Parses `192.0.2.0/24` or a bare address (as its /32 or /128).
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Parses `7d`, `12h`, `30m`, `45s` into seconds.
pub fn parse_span(text: &str) -> Option<u64> {
    let t = text.trim();
    // The unit is the last character, which need not be one byte.
    let unit = t.chars().next_back()?;
    let n: u64 = t[..t.len() - unit.len_utf8()].parse().ok()?;
    let mult = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&s| s > 0)
}

/// Text that goes into a protocol answer as is: not empty, and no line
/// break or other control character that could end the answer early.
fn is_one_line(text: &str) -> bool {
    !text.trim().is_empty() && !text.chars().any(char::is_control)
}

/// The longest timeout accepted: a year. Longer ones overflow clocks,
/// and no connection should wait that long anyway.
const MAX_TIMEOUT: u64 = 365 * 86_400;

/// Every timeout and cap in range: a zero timeout would time everything
/// out at once (every request a 504), a zero cap admit nothing.
fn check_limits(raw: &RawConfig) -> Result<(), (&'static str, String)> {
    let (p, r) = (&raw.proxy, &raw.resolver);
    let timeouts = [
        ("proxy.connect_timeout", p.connect_timeout),
        ("proxy.header_timeout", p.header_timeout),
        ("proxy.body_idle_timeout", p.body_idle_timeout),
        ("proxy.request_timeout", p.request_timeout),
        ("proxy.keepalive_timeout", p.keepalive_timeout),
        ("proxy.send_timeout", p.send_timeout),
        ("proxy.upload_timeout", p.upload_timeout),
        ("resolver.idle_timeout", r.idle_timeout),
    ];
    for (key, secs) in timeouts {
        if !(1..=MAX_TIMEOUT).contains(&secs) {
            return Err((
                key,
                format!("{secs} is not a timeout; give 1 to {MAX_TIMEOUT} seconds"),
            ));
        }
    }
    let mins: [(&'static str, u64, u64); 9] = [
        ("proxy.token_cache_bytes", p.token_cache_bytes as u64, 1 << 20),
        ("proxy.max_header_bytes", p.max_header_bytes as u64, 8192),
        ("proxy.max_connections", p.max_connections as u64, 1),
        ("proxy.upload_min_rate", p.upload_min_rate, 1),
        ("proxy.max_streams", u64::from(p.max_streams), 1),
        (
            "proxy.max_upstream_connections",
            p.max_upstream_connections as u64,
            1,
        ),
        ("proxy.max_decoded_bytes", p.max_decoded_bytes, 1 << 20),
        ("proxy.max_decoded_ratio", p.max_decoded_ratio, 2),
        ("resolver.max_connections", r.max_connections as u64, 1),
    ];
    for (key, value, min) in mins {
        if value < min {
            return Err((key, format!("{value} is too small; it must be at least {min}")));
        }
    }
    Ok(())
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
pub const DEFAULT_BAIT_TEMPLATE: &str = include_str!("bait.html");

impl Bait {
    fn from_raw(
        raw: &BaitConfig,
        protection: &Protection,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Option<Bait>, (&'static str, String)> {
        if raw.path.is_empty() {
            return Ok(None);
        }
        if !raw.path.starts_with('/')
            || raw.path == "/"
            || raw.path.contains(['?', '#', ' ', '%'])
            || raw.path.split('/').any(|s| s == "..")
        {
            return Err((
                "bait.path",
                format!(
                    "'{}' must be a plain path below / like \"/contact-archive/\"",
                    raw.path
                ),
            ));
        }
        if !(1..=20).contains(&raw.addresses) {
            return Err(("bait.addresses", "must be 1 to 20".into()));
        }
        let template = match &raw.template {
            None => DEFAULT_BAIT_TEMPLATE.to_owned(),
            Some(t) => {
                let p = resolve(t);
                let text = fs::read_to_string(&p)
                    .map_err(|e| ("bait.template", format!("cannot read {}: {e}", p.display())))?;
                if !text.contains("{{addresses}}") {
                    return Err((
                        "bait.template",
                        format!(
                            "{} has no {{{{addresses}}}} placeholder for the list",
                            p.display()
                        ),
                    ));
                }
                text
            }
        };
        let mut domains: Vec<String> = Vec::new();
        for e in protection.entries() {
            let ordinary = matches!(
                protection.classify("jane.doe", &e.domain),
                address::Class::Protected(_)
            );
            // Several entries may share a domain: list it once.
            if ordinary && !domains.contains(&e.domain) {
                domains.push(e.domain.clone());
            }
        }
        if domains.is_empty() {
            return Err((
                "bait.path",
                "the bait page makes trap addresses with ordinary names (jane.doe@...), but no [[protect]] entry protects such names; add local = \"*\" to one".into(),
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

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The key file, resolved.
    pub key_file: PathBuf,
    /// The SQLite state file, resolved.
    pub state: PathBuf,
    /// What is protected, and the separator.
    pub protection: Arc<Protection>,
    /// Days the visit log and arrivals are kept.
    pub retention_days: u32,
    /// The bait page, when configured.
    pub bait: Option<Bait>,
    /// Notes for `check-config` about addresses that are protected but whose
    /// munged form may pass 64 octets.
    pub warnings: Vec<String>,
    /// The raw sections, for the components that read them.
    pub raw: RawConfig,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(path, &text)
    }

    /// Validates config text as if read from `path` (relative paths resolve
    /// against `path`'s folder).
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                dir.join(p)
            }
        };
        let key_file = raw.key_file.as_deref().map(resolve).ok_or_else(|| {
            invalid(
                "key_file",
                "missing; add `key_file = \"/etc/addrmunge/addrmunge.key\"` and create it with `addrmunge keygen --out PATH`".into(),
            )
        })?;
        let state = raw.state.as_deref().map(resolve).ok_or_else(|| {
            invalid(
                "state",
                "missing; add `state = \"/var/lib/addrmunge/state.sqlite\"` (created on first use)".into(),
            )
        })?;
        let separator = raw.separator.clone().unwrap_or_else(|| DEFAULT_SEPARATOR.into());
        if separator.is_empty()
            || separator.len() > 16
            || !separator
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        {
            return Err(invalid(
                "separator",
                format!("'{separator}' must be 1 to 16 characters of [a-z0-9-], e.g. \"-id-\""),
            ));
        }
        if raw.protect.is_empty() {
            return Err(invalid(
                "protect",
                "nothing is protected; add at least one\n  [[protect]]\n  domain = \"example.com\"".into(),
            ));
        }
        let growth = separator.len() + crate::token::LONG_LEN;
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        for (i, p) in raw.protect.iter().enumerate() {
            let key = |k: &str| format!("protect[{i}].{k}");
            let domain = address::check_domain(&p.domain).map_err(|m| invalid(&key("domain"), m))?;
            let local = Glob::new(&p.local).map_err(|m| invalid(&key("local"), m))?;
            let exempt = p
                .exempt
                .iter()
                .map(|g| Glob::new(g).map_err(|m| invalid(&key("exempt"), m)))
                .collect::<Result<Vec<_>, _>>()?;
            let deliver_to = match &p.deliver_to {
                None => None,
                Some(d) => {
                    let (l, dom) = d.rsplit_once('@').ok_or_else(|| {
                        invalid(
                            &key("deliver_to"),
                            format!("'{d}' is not an address; write it like owner@example.com"),
                        )
                    })?;
                    if l.is_empty() {
                        return Err(invalid(
                            &key("deliver_to"),
                            format!("'{d}' has an empty local part"),
                        ));
                    }
                    let dom = address::check_domain(dom).map_err(|m| invalid(&key("deliver_to"), m))?;
                    Some(format!("{}@{dom}", l.to_ascii_lowercase()))
                }
            };
            let min = local.min_len();
            if min + growth > MAX_LOCAL {
                return Err(invalid(
                    &key("local"),
                    format!(
                        "'{}' is {min} octets; with the separator '{separator}' and an ID of up to {} characters it cannot stay within {MAX_LOCAL} octets; shorten the separator or the local part (at most {} octets)",
                        local.as_str(),
                        crate::token::LONG_LEN,
                        MAX_LOCAL.saturating_sub(growth)
                    ),
                ));
            }
            if !local.is_literal() {
                warnings.push(format!(
                    "protect[{i}]: local parts longer than {} octets at {domain} are still munged, but their munged form passes {MAX_LOCAL} octets for IPv6 visitors",
                    MAX_LOCAL - growth
                ));
            }
            entries.push(Protect {
                domain,
                local,
                exempt,
                deliver_to,
            });
        }
        let p = &raw.proxy;
        for l in &p.listen {
            l.parse::<std::net::SocketAddr>().map_err(|_| {
                invalid(
                    "proxy.listen",
                    format!("'{l}' is not an address; write e.g. \"127.0.0.1:8080\" or \"[::]:8080\""),
                )
            })?;
        }
        check_limits(&raw).map_err(|(k, m)| invalid(k, m))?;
        for (key, admin) in [
            ("proxy.admin_listen", &p.admin_listen),
            ("resolver.admin_listen", &raw.resolver.admin_listen),
        ] {
            if let Some(a) = admin.as_deref().filter(|a| !a.is_empty()) {
                a.parse::<std::net::SocketAddr>().map_err(|_| {
                    invalid(
                        key,
                        format!("'{a}' is not an address; write e.g. \"127.0.0.1:9100\""),
                    )
                })?;
            }
        }
        if !p.upstream.is_empty() {
            crate::proxy::Upstream::parse(&p.upstream).map_err(|m| invalid("proxy.upstream", m))?;
        }
        if let Some(h) = &p.upstream_host
            && (h.is_empty() || hyper::header::HeaderValue::from_str(h).is_err() || h.contains(['/', ' ']))
        {
            return Err(invalid(
                "proxy.upstream_host",
                format!("'{h}' is not a host name; write e.g. \"www.example.com\" or \"localhost:8081\""),
            ));
        }
        if p.proxy_protocol && p.trusted_proxies.is_empty() {
            return Err(invalid(
                "proxy.proxy_protocol",
                "needs the load balancer in trusted_proxies, e.g. trusted_proxies = [\"10.0.0.5/32\"]; a PROXY header from anyone else would let them choose their address".into(),
            ));
        }
        for n in &p.trusted_proxies {
            parse_net(n).ok_or_else(|| {
                invalid(
                    "proxy.trusted_proxies",
                    format!("'{n}' is not an address or network like 10.0.0.0/8"),
                )
            })?;
        }
        let r = &raw.resolver;
        for (k, list) in [
            ("resolver.socketmap", &r.socketmap),
            ("resolver.policy", &r.policy),
        ] {
            for l in list {
                crate::listen::Listen::parse(l).map_err(|m| invalid(k, m))?;
            }
        }
        if u32::from_str_radix(&r.socket_mode, 8).is_err() {
            return Err(invalid(
                "resolver.socket_mode",
                format!("'{}' is not an octal mode; write e.g. \"0660\"", r.socket_mode),
            ));
        }
        for (k, t) in [
            ("resolver.reject_text", &r.reject_text),
            ("resolver.bare_text", &r.bare_text),
            ("resolver.block_text", &r.block_text),
        ] {
            if !is_one_line(t) {
                return Err(invalid(k, "must be one non-empty line of text".into()));
            }
        }
        if r.max_request < 100 {
            return Err(invalid(
                "resolver.max_request",
                "must be at least 100 bytes; the default is 10000".into(),
            ));
        }
        if parse_span(&raw.traps.block_for).is_none() {
            return Err(invalid(
                "traps.block_for",
                format!(
                    "'{}' is not a duration; write e.g. \"7d\", \"12h\" or \"30m\"",
                    raw.traps.block_for
                ),
            ));
        }
        for n in &raw.traps.never_block {
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        "traps.never_block",
                        format!("'{n}' is not an address or network like 192.0.2.0/24"),
                    )
                })?;
        }
        // One line: the action goes into the policy reply as is, and a
        // newline in it would inject a second answer into the protocol.
        if !is_one_line(&raw.traps.action)
            || !matches!(
                raw.traps.action.split_whitespace().next(),
                Some("DISCARD" | "HOLD" | "REJECT" | "DUNNO")
            )
        {
            return Err(invalid(
                "traps.action",
                format!(
                    "{:?}: use DISCARD, HOLD, REJECT text or DUNNO, on one line",
                    raw.traps.action
                ),
            ));
        }
        let retention_days = match &raw.retention {
            None => 180,
            Some(r) => parse_span(r)
                .filter(|s| s % 86_400 == 0)
                .map(|s| (s / 86_400) as u32)
                .ok_or_else(|| {
                    invalid(
                        "retention",
                        format!("'{r}' is not a number of days; write e.g. \"180d\""),
                    )
                })?,
        };
        let protection = Arc::new(Protection::new(entries, &separator));
        let bait = Bait::from_raw(&raw.bait, &protection, &resolve).map_err(|(k, m)| invalid(k, m))?;
        for (i, a) in raw.harvesters.agent.iter().enumerate() {
            let key = format!("harvesters.agent[{i}]");
            if a.pattern.trim().is_empty() {
                return Err(invalid(
                    &key,
                    "pattern is empty; write a User-Agent substring".into(),
                ));
            }
            match (a.action, &a.domain) {
                (AgentAction::Domain, None) => {
                    return Err(invalid(
                        &key,
                        "action = \"domain\" needs domain = \"...\", the domain to rewrite to".into(),
                    ));
                }
                (AgentAction::Domain, Some(d)) => {
                    address::check_domain(d).map_err(|m| invalid(&format!("{key}.domain"), m))?;
                }
                (AgentAction::Bait, _) if bait.is_none() => {
                    return Err(invalid(
                        &key,
                        "action = \"bait\" needs a bait page: set [bait] path = \"/contact-archive/\"".into(),
                    ));
                }
                _ => {}
            }
        }
        Ok(Config {
            path: path.to_owned(),
            key_file,
            state,
            protection,
            retention_days,
            bait,
            warnings,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("/etc/x/addrmunge.toml"), text)
    }

    const OK: &str = r#"
key_file = "k.key"
state = "/var/lib/s.sqlite"
[[protect]]
domain = "Plover.com"
exempt = ["*-subscribe"]
"#;

    #[test]
    fn spans_with_any_last_character_parse_or_fail_cleanly() {
        assert_eq!(parse_span(" 7d "), Some(7 * 86_400));
        assert_eq!(parse_span("45s"), Some(45));
        // Found by the config fuzzer: a multi-byte last character panicked.
        for bad in ["180\u{fffd}", "\u{e9}", "d", "", "0s", "7w", "-1d"] {
            assert_eq!(parse_span(bad), None, "{bad:?}");
        }
        let e = load(&format!("retention = \"180\u{e9}\"\n{OK}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = load(OK).unwrap();
        assert_eq!(c.key_file, Path::new("/etc/x/k.key"));
        assert_eq!(c.state, Path::new("/var/lib/s.sqlite"));
        assert_eq!(c.protection.entries()[0].domain, "plover.com");
        assert_eq!(c.protection.separator(), "-id-");
    }

    #[test]
    fn unknown_keys_name_the_file_and_key() {
        let e = load(&format!("{OK}\n[proxy]\nlisten_on = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/x/addrmunge.toml") && e.contains("listen_on"),
            "{e}"
        );
        let e = load(&OK.replace("exempt", "exmept")).unwrap_err().to_string();
        assert!(e.contains("exmept") && e.contains("exempt"), "{e}");
    }

    #[test]
    fn holes_are_closed() {
        // A newline in the trap action would inject a second policy answer.
        let e = load(&format!("{OK}[traps]\naction = \"DISCARD\\naction=OK\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("traps.action") && e.contains("one line"), "{e}");
        // A zero timeout would time every request out.
        for key in [
            "header_timeout",
            "connect_timeout",
            "request_timeout",
            "keepalive_timeout",
        ] {
            let e = load(&format!("{OK}[proxy]\n{key} = 0\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("proxy.{key}")) && e.contains("1 to"), "{e}");
        }
        let e = load(&format!("{OK}[resolver]\nidle_timeout = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("resolver.idle_timeout"), "{e}");
        let e = load(&format!("{OK}[proxy]\nmax_decoded_ratio = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("proxy.max_decoded_ratio") && e.contains("at least 2"),
            "{e}"
        );
        let e = load(&format!("{OK}[proxy]\nsend_timeout = 18446744073709551615\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("proxy.send_timeout"), "{e}");
    }

    #[test]
    fn bad_values_say_how_to_fix_them() {
        let e = load(&OK.replace("Plover.com", "plover com"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("protect[0].domain") && e.contains("example.com"),
            "{e}"
        );
        let e = load(&format!("separator = \"+\"\n{OK}")).unwrap_err().to_string();
        assert!(e.contains("separator") && e.contains("[a-z0-9-]"), "{e}");
        let long = "a".repeat(30);
        let e = load(&format!("{OK}local = \"{long}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("protect[0].local") && e.contains("64 octets"), "{e}");
        let e = load("state = \"s\"\n[[protect]]\ndomain = \"a.b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_file") && e.contains("keygen"), "{e}");
    }
}
