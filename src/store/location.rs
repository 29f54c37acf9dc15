//! Where the store is, as `state` in the config says: a path to a SQLite
//! file (one host), or a libpq-style `postgresql://` URL (several hosts
//! sharing one database).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The store's location.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(PgUrl),
}

/// A PostgreSQL connection URL, checked. Shown (in logs, errors and
/// `check-config`) without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    /// What the client parses: libpq's `sslrootcert` taken out, the
    /// verifying `sslmode`s as `require` (TLS here always verifies).
    url: String,
    shown: String,
    tls: Tls,
}

/// Whether the connection is TLS, as `sslmode` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// `disable`, `allow`, `prefer` or none: plain.
    Off,
    /// `require`, `verify-ca` or `verify-full`: TLS, the server's
    /// certificate verified (chain and name) against `sslrootcert`, or the
    /// system's roots without it.
    Verified {
        /// The CA certificates file (PEM).
        roots: Option<PathBuf>,
    },
}

/// A `state` that names a database but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{shown}' is not a PostgreSQL URL ({why}); write it like postgresql://addrmunge@db.example:5432/addrmunge?sslmode=require"
)]
pub struct BadUrl {
    shown: String,
    why: String,
}

impl Location {
    /// `text` as written in the config: a `postgresql://` or `postgres://`
    /// URL, or a path, relative to `base` (the config's folder) unless
    /// absolute.
    pub fn parse(text: &str, base: &Path) -> Result<Location, BadUrl> {
        if text.starts_with("postgresql://") || text.starts_with("postgres://") {
            return PgUrl::parse(text).map(Location::Postgres);
        }
        let path = Path::new(text);
        Ok(Location::Sqlite(if path.is_absolute() {
            path.to_owned()
        } else {
            base.join(path)
        }))
    }

    /// The SQLite file, if it is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => Some(p),
            Location::Postgres(_) => None,
        }
    }
}

impl From<&Location> for Location {
    fn from(at: &Location) -> Location {
        at.clone()
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Location {
        Location::Sqlite(path.to_owned())
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Location {
        Location::Sqlite(path.clone())
    }
}

impl PgUrl {
    /// Checks `url` with the client's own parser.
    pub fn parse(url: &str) -> Result<PgUrl, BadUrl> {
        let shown = redact(url);
        let bad = |why: String| BadUrl {
            shown: shown.clone(),
            why,
        };
        let (client_url, tls) = split_tls(url).map_err(bad)?;
        let config = postgres::Config::from_str(&client_url).map_err(|e| bad(e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(BadUrl {
                shown,
                why: "no host".into(),
            });
        }
        Ok(PgUrl {
            url: client_url,
            shown,
            tls,
        })
    }

    /// Whether and how the connection is TLS.
    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// The client's configuration.
    pub fn config(&self) -> postgres::Config {
        postgres::Config::from_str(&self.url).expect("checked when parsed")
    }
}

/// The URL the client parses, and the TLS it asks for: `sslrootcert`
/// (which the client does not know) taken out, and a verifying `sslmode`
/// given to it as `require`.
fn split_tls(url: &str) -> Result<(String, Tls), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Tls::Off));
    };
    let mut roots = None;
    let mut verified = false;
    let mut kept = Vec::new();
    for kv in query.split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match (k, v) {
            ("sslrootcert", path) => roots = Some(PathBuf::from(path)),
            ("sslmode", "require" | "verify-ca" | "verify-full") => {
                verified = true;
                kept.push("sslmode=require".to_owned());
            }
            _ => kept.push(kv.to_owned()),
        }
    }
    if roots.is_some() && !verified {
        return Err("sslrootcert needs sslmode=require, verify-ca or verify-full".into());
    }
    let tls = if verified {
        Tls::Verified { roots }
    } else {
        Tls::Off
    };
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, tls))
}

/// `url` with the password, in its authority or in a `password=`
/// parameter, replaced by `***`.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(u) => f.write_str(&u.shown),
        }
    }
}

/// Never the password: a location may be logged.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls() {
        let base = Path::new("/etc/addrmunge");
        assert_eq!(
            Location::parse("state.sqlite", base).unwrap(),
            Location::Sqlite("/etc/addrmunge/state.sqlite".into())
        );
        assert_eq!(
            Location::parse("/var/lib/s.sqlite", base).unwrap(),
            Location::Sqlite("/var/lib/s.sqlite".into())
        );
        for url in [
            "postgresql://am@db.test:5432/am?sslmode=disable",
            "postgres://am@127.0.0.1/am",
        ] {
            let l = Location::parse(url, base).unwrap();
            assert!(matches!(l, Location::Postgres(_)), "{url}");
            assert_eq!(l.to_string(), url);
        }
        let e = Location::parse("postgresql://am@db.test/am?sslmode=sometimes", base).unwrap_err();
        assert!(e.to_string().contains("sslmode"), "{e}");
        let e = Location::parse("postgresql://am@db.test/am?sslrootcert=/ca.pem", base).unwrap_err();
        assert!(e.to_string().contains("sslmode=require"), "{e}");
    }

    #[test]
    fn sslmode_chooses_tls() {
        let tls = |url: &str| match Location::parse(url, Path::new("/")).unwrap() {
            Location::Postgres(u) => u.tls().clone(),
            Location::Sqlite(_) => unreachable!(),
        };
        assert_eq!(tls("postgresql://a@h/d"), Tls::Off);
        assert_eq!(tls("postgresql://a@h/d?sslmode=prefer"), Tls::Off);
        assert_eq!(
            tls("postgresql://a@h/d?sslmode=require"),
            Tls::Verified { roots: None }
        );
        assert_eq!(
            tls("postgresql://a@h/d?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3"),
            Tls::Verified {
                roots: Some("/etc/ca.pem".into())
            }
        );
    }

    #[test]
    fn passwords_are_never_shown() {
        for (url, shown) in [
            (
                "postgresql://am:s3cret@db.test/am",
                "postgresql://am:***@db.test/am",
            ),
            (
                "postgresql://am@db.test/am?password=s3cret&sslmode=require",
                "postgresql://am@db.test/am?password=***&sslmode=require",
            ),
        ] {
            let l = Location::parse(url, Path::new("/")).unwrap();
            assert_eq!(l.to_string(), shown);
            assert!(!format!("{l:?}").contains("s3cret"));
        }
        let e = Location::parse("postgresql://am:s3cret@db.test/am?sslmode=x", Path::new("/")).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
