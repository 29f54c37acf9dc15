//! The TOML configuration: loading, validation with errors that name the
//! file, the key and the fix, and defaults.
//!
//! Two stages, as in ripgrep: `schema` is exactly what the file says
//! (serde, unknown keys refused); one constructor per section turns it into
//! typed settings ([`ProxySettings`], [`ResolverSettings`], [`TrapSettings`],
//! [`Crawlers`], the protection rules, the bait page), so nothing is parsed again after
//! [`Config::load`] and no component sees the raw text.

mod crawlers;
mod media;
mod protect;
mod proxy;
mod resolver;
mod schema;
mod tls;
mod upstream;
mod values;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::address::Protection;
use crate::store::Location;

pub use crawlers::Crawlers;
pub use media::TypePattern;
pub use protect::{Bait, DEFAULT_BAIT_TEMPLATE, DEFAULT_SEPARATOR};
pub use proxy::{AgentRule, ProxySettings};
pub use resolver::{ContainmentSettings, ResolverSettings, TrapAction, TrapSettings, TrapVerb};
pub use schema::{
    AcmeChallenge, AgentAction, Bare, DEFAULT_HARVESTER_AGENTS, DEFAULT_REWRITE_TYPES, Mangled,
};
pub use tls::{AcmeSettings, CertFiles, TlsSettings};
pub use upstream::UpstreamAddr;
use values::parse_span;

use schema::RawConfig;
use values::{Problem, problem};

/// Where the config is read from when neither `--config` nor
/// `ADDRMUNGE_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/addrmunge/addrmunge.toml";

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

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The key file, resolved.
    pub key_file: PathBuf,
    /// The state store: a SQLite file (resolved) or a PostgreSQL database.
    pub state: Location,
    /// What is protected, and the separator.
    pub protection: Arc<Protection>,
    /// Days the visit log and arrivals are kept.
    pub retention_days: u32,
    /// The bait page, when configured.
    pub bait: Option<Bait>,
    /// `[proxy]`.
    pub proxy: ProxySettings,
    /// `[harvesters]`: User-Agent rules in matching order.
    pub agents: Vec<AgentRule>,
    /// `[resolver]`.
    pub resolver: ResolverSettings,
    /// `[traps]`.
    pub traps: TrapSettings,
    /// `[crawlers]`: search engines' networks.
    pub crawlers: Crawlers,
    /// `[containment]`; `None` when off.
    pub containment: Option<ContainmentSettings>,
    /// Notes for `check-config` about addresses that are protected but whose
    /// munged form may pass 64 octets.
    pub warnings: Vec<String>,
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
        Config::from_raw(path, &raw).map_err(|p| ConfigError::Invalid {
            path: path.to_owned(),
            key: p.key,
            message: p.message,
        })
    }

    fn from_raw(path: &Path, raw: &RawConfig) -> Result<Config, Problem> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                dir.join(p)
            }
        };
        let key_file = raw.key_file.as_deref().map(resolve).ok_or_else(|| {
            problem(
                "key_file",
                "missing; add `key_file = \"/etc/addrmunge/addrmunge.key\"` and create it with `addrmunge keygen --out PATH`",
            )
        })?;
        let state = raw.state.as_deref().ok_or_else(|| {
            problem(
                "state",
                "missing; add `state = \"/var/lib/addrmunge/state.sqlite\"` (created on first use)",
            )
        })?;
        let state = Location::parse(state, dir).map_err(|e| problem("state", e))?;
        let (protection, warnings) = protect::protection(raw.separator.as_deref(), &raw.protect)?;
        let protection = protection.with_spellings(protect::spellings(&raw.spelled)?);
        let proxy = ProxySettings::from_raw(&raw.proxy, &resolve, &state)?;
        let resolver = ResolverSettings::from_raw(&raw.resolver)?;
        let traps = TrapSettings::from_raw(&raw.traps)?;
        let retention_days = retention(raw.retention.as_deref())?;
        let bait = Bait::from_raw(&raw.bait, &protection, &resolve)?;
        let agents = proxy::agent_rules(&raw.harvesters, bait.is_some())?;
        let crawlers = Crawlers::from_raw(&raw.crawlers, &resolve)?;
        let containment = raw
            .containment
            .as_ref()
            .map(ContainmentSettings::from_raw)
            .transpose()?;
        Ok(Config {
            path: path.to_owned(),
            key_file,
            state,
            protection: Arc::new(protection),
            retention_days,
            bait,
            proxy,
            agents,
            resolver,
            traps,
            crawlers,
            containment,
            warnings,
        })
    }
}

/// `retention`: whole days, 180 when unset.
fn retention(text: Option<&str>) -> Result<u32, Problem> {
    let Some(r) = text else { return Ok(180) };
    parse_span(r)
        .filter(|s| s % 86_400 == 0)
        .and_then(|s| u32::try_from(s / 86_400).ok())
        .ok_or_else(|| {
            problem(
                "retention",
                format!("'{r}' is not a number of days; write e.g. \"180d\""),
            )
        })
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
    fn a_retention_ending_in_a_multibyte_character_is_an_error() {
        // Found by the config fuzzer: a multi-byte last character panicked.
        let e = load(&format!("retention = \"180\u{e9}\"\n{OK}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = load(OK).unwrap();
        assert_eq!(c.key_file, Path::new("/etc/x/k.key"));
        assert_eq!(c.state, Location::Sqlite("/var/lib/s.sqlite".into()));
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
    fn spelled_words_are_configurable_and_checked() {
        let c = load(OK).unwrap();
        assert_eq!(c.protection.spellings(), &crate::address::Spellings::default());
        let c = load(&format!("{OK}[spelled]\nat = [\"AT\", \"\u{e4}t\"]\ndot = []\n")).unwrap();
        let s = c.protection.spellings();
        assert_eq!(
            (s.enabled, s.at.clone(), s.dot.len()),
            (true, vec!["at".into(), "\u{e4}t".into()], 0)
        );
        assert!(
            !load(&format!("{OK}[spelled]\nenabled = false\n"))
                .unwrap()
                .protection
                .spellings()
                .enabled
        );
        for bad in ["\"\"", "\"at sign\"", "\"[at]\""] {
            let e = load(&format!("{OK}[spelled]\nat = [{bad}]\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("spelled.at") && e.contains("one word"), "{e}");
        }
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
        let e = load(&format!(
            "{OK}[proxy]\nrewrite_types = [\"text/html\", \"text/html; charset=utf-8\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("proxy.rewrite_types[1]") && e.contains("has parameters"),
            "{e}"
        );
    }
}
