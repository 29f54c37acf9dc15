//! The config file exactly as written: the serde schema, with every key's
//! default. Unknown keys are refused. Nothing here is validated; the
//! section constructors beside this file turn it into typed settings.

use std::path::PathBuf;

use serde::Deserialize;

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The key file (one 64-hex-digit key per line; the first encodes).
    pub key_file: Option<PathBuf>,
    /// The SQLite file holding rules, visit log, arrivals and blocks.
    pub state: Option<String>,
    /// Put between the base local part and the ID; `[a-z0-9-]`, 1–16 octets.
    pub separator: Option<String>,
    /// The addresses to protect.
    #[serde(default)]
    pub protect: Vec<RawProtect>,
    /// The rewriting proxy.
    #[serde(default)]
    pub proxy: RawProxy,
    /// The Postfix socketmap and policy service.
    #[serde(default)]
    pub resolver: RawResolver,
    /// How harvesters are recognised.
    #[serde(default)]
    pub harvesters: RawHarvesters,
    /// What happens to mail sent to trap addresses.
    #[serde(default)]
    pub traps: RawTraps,
    /// The bait page served by the proxy.
    #[serde(default)]
    pub bait: RawBait,
    /// Search engines' crawlers.
    #[serde(default)]
    pub crawlers: RawCrawlers,
    /// How the owner's own spelled-out addresses are written.
    #[serde(default)]
    pub spelled: RawSpelled,
    /// Automatic containment by the resolver; off when the section is absent.
    pub containment: Option<RawContainment>,
    /// How long the visit log and mail arrivals are kept: `180d`.
    pub retention: Option<String>,
}

/// `[spelled]`: addresses the owner's pages spell out for people
/// (`john [at] plover [dot] com`); the proxy gives them IDs too.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpelled {
    /// Recognise them at all (default true).
    pub enabled: Option<bool>,
    /// Words for `@` (default: at, arroba, chez, klammeraffe, ät).
    pub at: Option<Vec<String>>,
    /// Words for `.` (default: dot, period, punkt, punto, point).
    pub dot: Option<Vec<String>>,
}

/// `[containment]`: the resolver expires a harvested visitor-day by itself
/// when the evidence is plain, without waiting for the owner to read
/// `trace`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawContainment {
    /// Mail to one munged address from clients in this many distinct /24
    /// (IPv6 /48) networks within 24 hours cuts off its harvest; 0 = never.
    pub networks: usize,
    /// Mail to a munged address from a client blocked for mailing a trap
    /// cuts off its harvest.
    pub blocked_clients: bool,
    /// Mail to a mangled copy (its front cut off by a harvester) cuts off
    /// the harvest of the address it was cut from.
    pub mangled: bool,
    /// Rules made automatically per UTC day at most, so a flood cannot
    /// expire the whole site.
    pub max_rules_per_day: usize,
}

impl Default for RawContainment {
    fn default() -> Self {
        RawContainment {
            networks: 3,
            blocked_clients: true,
            mangled: true,
            max_rules_per_day: 20,
        }
    }
}

/// `[crawlers]`: who is a search engine's crawler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCrawlers {
    /// Files of the crawlers' networks: the engines' published JSON
    /// (googlebot.json, bingbot.json) or one network per line.
    pub ranges: Vec<PathBuf>,
    /// Case-insensitive substrings of User-Agents that claim to be a
    /// crawler; only visitors claiming so are looked up in the DNS.
    pub agents: Vec<String>,
    /// Host-name suffixes of the engines' crawlers: a claimant whose
    /// reverse DNS name ends in one, and whose name resolves back to its
    /// address, is a crawler. Empty turns the DNS check off.
    pub suffixes: Vec<String>,
    /// Name servers asked (`"127.0.0.1:53"`); the system's
    /// (/etc/resolv.conf) when empty.
    pub nameservers: Vec<String>,
}

/// User-Agent substrings of the search engines' crawlers.
pub const DEFAULT_CRAWLER_AGENTS: &[&str] = &[
    "Googlebot",
    "Google-InspectionTool",
    "bingbot",
    "Applebot",
    "YandexBot",
    "Baiduspider",
    "Slurp",
];

/// Where the engines say their crawlers' reverse DNS names end.
pub const DEFAULT_CRAWLER_SUFFIXES: &[&str] = &[
    ".googlebot.com",
    ".google.com",
    ".search.msn.com",
    ".applebot.apple.com",
    ".yandex.ru",
    ".yandex.net",
    ".yandex.com",
    ".crawl.baidu.com",
    ".crawl.baidu.jp",
    ".crawl.yahoo.net",
];

impl Default for RawCrawlers {
    fn default() -> Self {
        RawCrawlers {
            ranges: Vec::new(),
            agents: DEFAULT_CRAWLER_AGENTS.iter().map(|s| s.to_string()).collect(),
            suffixes: DEFAULT_CRAWLER_SUFFIXES.iter().map(|s| s.to_string()).collect(),
            nameservers: Vec::new(),
        }
    }
}

/// `[bait]`: a page only harvesters visit, listing trap addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBait {
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

impl Default for RawBait {
    fn default() -> Self {
        RawBait {
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
pub struct RawAgent {
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
pub struct RawProxy {
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
    /// Bytes of compressed page stretches kept for gzip (read at start;
    /// 0: none kept, every gzip body compressed whole).
    pub gzip_cache_bytes: usize,
    /// Addresses to serve HTTPS on (TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1
    /// by ALPN), e.g. `["0.0.0.0:443", "[::]:443"]`.
    pub tls_listen: Vec<String>,
    /// Certificates for `tls_listen`, chosen by the name the visitor asks
    /// for (SNI); the first when it asks for none or another.
    pub tls: Vec<RawTlsCert>,
    /// The plain `listen` addresses answer every request with a redirect
    /// to HTTPS, but ACME HTTP-01 challenges.
    pub https_redirect: bool,
    /// Certificates from an ACME CA (Let's Encrypt), made and renewed by
    /// the proxy itself.
    pub acme: Option<RawAcme>,
}

/// One `[[proxy.tls]]` entry: a certificate and its key, PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsCert {
    /// The certificate chain, leaf first (`fullchain.pem`).
    pub cert: PathBuf,
    /// Its private key (`privkey.pem`): PKCS#8, PKCS#1 or SEC1.
    pub key: PathBuf,
}

/// The ACME challenge the proxy answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum AcmeChallenge {
    /// On the TLS listener itself (port 443): nothing else to open.
    #[default]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// A file on the plain listener (port 80).
    #[serde(rename = "http-01")]
    Http01,
}

/// `[proxy.acme]`: certificates from an ACME CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    /// The names the certificate is for; the CA must reach the proxy at each.
    pub domains: Vec<String>,
    /// Contact addresses for the account (`mailto:owner@example.com`).
    #[serde(default)]
    pub contact: Vec<String>,
    /// The CA's directory URL; Let's Encrypt's when unset.
    #[serde(default = "lets_encrypt")]
    pub directory: String,
    /// Which challenge to answer.
    #[serde(default)]
    pub challenge: AcmeChallenge,
    /// Where the account key and certificates are kept (mode 0700, files
    /// 0600); `acme/` beside the state file when unset.
    pub dir: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the directory's own HTTPS: for
    /// a private ACME server; the system's roots otherwise.
    pub directory_ca: Option<PathBuf>,
    /// Renew this long before the certificate expires: `30d`.
    #[serde(default = "thirty_days")]
    pub renew_before: String,
}

fn lets_encrypt() -> String {
    "https://acme-v02.api.letsencrypt.org/directory".into()
}

fn thirty_days() -> String {
    "30d".into()
}

/// The content types rewritten by default.
pub const DEFAULT_REWRITE_TYPES: &[&str] = &[
    // Pages, plain text, stylesheets, scripts, and what a contact page
    // links to: vCards (text/vcard), calendars (text/calendar), Markdown.
    "text/*",
    // RSS, Atom, SVG, XHTML; JSON-LD, web app manifests, JSON feeds.
    "*/*+xml",
    "*/*+json",
    "application/xml",
    "application/json",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
];

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
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
            gzip_cache_bytes: crate::rewrite::GZIP_CACHE_BYTES,
            tls_listen: Vec::new(),
            tls: Vec::new(),
            https_redirect: false,
            acme: None,
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

/// What the resolver does with mail to a mangled copy of a munged address
/// (its front cut off by a harvester: `TOKEN@plover.com`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mangled {
    /// As for a trap: `[traps] action`, and the sending client blocked.
    #[default]
    Trap,
    /// Refuse it at RCPT with `reject_text`.
    Reject,
    /// Deliver it to the base address.
    Accept,
}

/// `[resolver]`: the Postfix socketmap and policy service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawResolver {
    /// Socketmap listeners in Postfix notation: `unix:/path` or `inet:host:port`.
    pub socketmap: Vec<String>,
    /// Policy-delegation listeners, same notation.
    pub policy: Vec<String>,
    /// Line-protocol listeners for Exim's `${readsocket}` (router and RCPT ACL), same notation.
    pub exim: Vec<String>,
    /// Permissions of unix sockets (octal), e.g. "0660".
    pub socket_mode: String,
    /// Owner of unix sockets (name or uid); unchanged when unset.
    pub socket_owner: Option<String>,
    /// Group of unix sockets (name or gid), e.g. "postfix"; unchanged when unset.
    pub socket_group: Option<String>,
    /// `accept` or `reject` mail to a protected address without an ID.
    pub bare: Bare,
    /// `trap`, `reject` or `accept` mail to a mangled copy of a munged address.
    pub mangled: Mangled,
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

impl Default for RawResolver {
    fn default() -> Self {
        RawResolver {
            socketmap: Vec::new(),
            policy: Vec::new(),
            exim: Vec::new(),
            socket_mode: "0660".into(),
            socket_owner: None,
            socket_group: None,
            bare: Bare::Accept,
            mangled: Mangled::Trap,
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
pub struct RawHarvesters {
    /// Case-insensitive substrings of User-Agents that get trap addresses.
    pub user_agents: Vec<String>,
    /// Patterns with their own action (checked before `user_agents`).
    pub agent: Vec<RawAgent>,
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

impl Default for RawHarvesters {
    fn default() -> Self {
        RawHarvesters {
            user_agents: DEFAULT_HARVESTER_AGENTS.iter().map(|s| s.to_string()).collect(),
            agent: Vec::new(),
        }
    }
}

/// `[traps]`: what happens to mail sent to trap addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTraps {
    /// How long a client that mailed a trap stays blocked: `7d`, `12h`, `30m`.
    pub block_for: String,
    /// Clients never blocked (CIDRs); loopback by default.
    pub never_block: Vec<String>,
    /// The policy answer to mail for a trap (`DISCARD` or e.g. `HOLD`).
    pub action: String,
}

impl Default for RawTraps {
    fn default() -> Self {
        RawTraps {
            block_for: "7d".into(),
            never_block: vec!["127.0.0.0/8".into(), "::1/128".into()],
            action: "DISCARD".into(),
        }
    }
}
