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

/// `[proxy]`: filled in by the proxy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {}

/// `[resolver]`: filled in by the resolver.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {}

/// `[harvesters]`: filled in by the proxy's harvester detection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarvestersConfig {}

/// `[traps]`: filled in by the resolver's trap handling.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrapsConfig {}

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
        Ok(Config {
            path: path.to_owned(),
            key_file,
            state,
            protection: Arc::new(Protection::new(entries, &separator)),
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
