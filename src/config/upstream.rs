//! `[proxy] upstream`: where the web server is, `http://host:port` or a
//! unix socket (`unix:/run/nginx/site.sock`). Only the address; the proxy's
//! connector (`proxy::upstream`) turns it into connections.

use std::fmt;
use std::path::PathBuf;

use hyper::Uri;

/// The web server the proxy forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// `http://host:port`: the authority requests are addressed to.
    Http(String),
    /// `unix:/absolute/path`.
    Unix(PathBuf),
}

/// An upstream that is neither `http://host:port` nor `unix:/absolute`;
/// carries the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not an upstream; write http://127.0.0.1:8081 or unix:/run/nginx/site.sock (https upstreams are not supported)"
)]
pub struct UpstreamError(String);

impl UpstreamAddr {
    /// Parses `http://host:port` or `unix:/absolute/path`.
    pub fn parse(text: &str) -> Result<UpstreamAddr, UpstreamError> {
        let bad = || UpstreamError(text.to_owned());
        if let Some(path) = text.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            return if path.is_absolute() {
                Ok(UpstreamAddr::Unix(path))
            } else {
                Err(bad())
            };
        }
        let uri: Uri = text.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") || uri.path().len() > 1 || uri.query().is_some() {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?.to_string();
        Ok(UpstreamAddr::Http(authority))
    }
}

/// As written in the config.
impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAddr::Http(a) => write!(f, "http://{a}"),
            UpstreamAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_and_unix_upstreams() {
        assert_eq!(
            UpstreamAddr::parse("http://127.0.0.1:8081").unwrap(),
            UpstreamAddr::Http("127.0.0.1:8081".into())
        );
        assert_eq!(
            UpstreamAddr::parse("unix:/run/a.sock").unwrap(),
            UpstreamAddr::Unix("/run/a.sock".into())
        );
        for bad in ["unix:run/a.sock", "https://x", "http://x/path", "127.0.0.1:8081"] {
            assert!(
                UpstreamAddr::parse(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("unix:/run"),
                "{bad}"
            );
        }
    }
}
