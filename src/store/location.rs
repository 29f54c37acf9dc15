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
    url: String,
    shown: String,
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
        let config = postgres::Config::from_str(url).map_err(|e| BadUrl {
            shown: shown.clone(),
            why: e.to_string(),
        })?;
        if config.get_hosts().is_empty() {
            return Err(BadUrl {
                shown,
                why: "no host".into(),
            });
        }
        Ok(PgUrl {
            url: url.to_owned(),
            shown,
        })
    }

    /// The client's configuration.
    pub fn config(&self) -> postgres::Config {
        postgres::Config::from_str(&self.url).expect("checked when parsed")
    }
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
