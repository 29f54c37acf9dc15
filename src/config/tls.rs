//! `[proxy] tls_listen`, `[[proxy.tls]]`, `https_redirect` and
//! `[proxy.acme]`: HTTPS at the proxy itself, with certificate files or
//! certificates from an ACME CA, validated into [`TlsSettings`]. The files
//! are read by the proxy (and `check-config`), not here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::schema::{AcmeChallenge, RawAcme, RawProxy};
use super::values::{Problem, listen_addrs, parse_span, problem};
use crate::address::check_domain;
use crate::store::Location;

/// A certificate and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// The validated `[proxy.acme]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names the certificate is for, lowercase.
    pub domains: Vec<String>,
    /// The account's contacts (`mailto:`).
    pub contact: Vec<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// The challenge answered.
    pub challenge: AcmeChallenge,
    /// Where the account and certificates are kept.
    pub dir: PathBuf,
    /// A CA certificate to trust for the directory's HTTPS.
    pub directory_ca: Option<PathBuf>,
    /// How long before expiry a certificate is renewed.
    pub renew_before: Duration,
}

/// HTTPS at the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Addresses serving HTTPS.
    pub listen: Vec<SocketAddr>,
    /// Certificate files, in SNI preference order (the first is the default).
    pub certs: Vec<CertFiles>,
    /// The plain listeners redirect to HTTPS.
    pub https_redirect: bool,
    /// Certificates from an ACME CA.
    pub acme: Option<AcmeSettings>,
}

impl TlsSettings {
    /// Validates the TLS keys of `[proxy]`; paths resolve with `resolve`,
    /// the ACME folder defaults to `acme/` beside a SQLite `state`.
    pub fn from_raw(
        p: &RawProxy,
        resolve: &impl Fn(&Path) -> PathBuf,
        state: &Location,
    ) -> Result<TlsSettings, Problem> {
        let listen = listen_addrs("proxy.tls_listen", &p.tls_listen, 443)?;
        let certs: Vec<CertFiles> = p
            .tls
            .iter()
            .map(|t| CertFiles {
                cert: resolve(&t.cert),
                key: resolve(&t.key),
            })
            .collect();
        let acme = p.acme.as_ref().map(|a| acme(a, resolve, state)).transpose()?;
        let has_certs = !certs.is_empty() || acme.is_some();
        if listen.is_empty() && (has_certs || p.https_redirect) {
            return Err(problem(
                "proxy.tls_listen",
                "certificates or https_redirect need HTTPS listeners: add tls_listen = [\"0.0.0.0:443\", \"[::]:443\"]",
            ));
        }
        if !listen.is_empty() && !has_certs {
            return Err(problem(
                "proxy.tls",
                "tls_listen needs a certificate: add [[proxy.tls]] cert = \"fullchain.pem\" key = \"privkey.pem\", or [proxy.acme]",
            ));
        }
        if p.https_redirect && p.listen.is_empty() {
            return Err(problem(
                "proxy.https_redirect",
                "redirects are answered on the plain listeners: add listen = [\"0.0.0.0:80\"]",
            ));
        }
        if acme
            .as_ref()
            .is_some_and(|a| a.challenge == AcmeChallenge::Http01)
            && p.listen.is_empty()
        {
            return Err(problem(
                "proxy.acme.challenge",
                "http-01 is answered on the plain listeners (the CA asks on port 80): add listen = [\"0.0.0.0:80\"], or use challenge = \"tls-alpn-01\"",
            ));
        }
        Ok(TlsSettings {
            listen,
            certs,
            https_redirect: p.https_redirect,
            acme,
        })
    }
}

fn acme(a: &RawAcme, resolve: &impl Fn(&Path) -> PathBuf, state: &Location) -> Result<AcmeSettings, Problem> {
    if a.domains.is_empty() {
        return Err(problem(
            "proxy.acme.domains",
            "name at least one domain the certificate is for, e.g. domains = [\"plover.com\", \"www.plover.com\"]",
        ));
    }
    let domains = a
        .domains
        .iter()
        .map(|d| check_domain(d).map_err(|e| problem("proxy.acme.domains", e)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(c) = a.contact.iter().find(|c| !c.starts_with("mailto:")) {
        return Err(problem(
            "proxy.acme.contact",
            format!("'{c}': write contacts as \"mailto:owner@example.com\""),
        ));
    }
    if !a.directory.starts_with("https://") {
        return Err(problem(
            "proxy.acme.directory",
            format!("'{}' is not an https:// URL of an ACME directory", a.directory),
        ));
    }
    let renew_before = parse_span(&a.renew_before)
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            problem(
                "proxy.acme.renew_before",
                format!("'{}' is not a duration; write e.g. \"30d\"", a.renew_before),
            )
        })?;
    let dir = match (&a.dir, state.file()) {
        (Some(d), _) => resolve(d),
        (None, Some(f)) => f.parent().unwrap_or(Path::new(".")).join("acme"),
        (None, None) => {
            return Err(problem(
                "proxy.acme.dir",
                "with a database for state, say where this host keeps its ACME account and certificates: dir = \"/var/lib/addrmunge/acme\"",
            ));
        }
    };
    Ok(AcmeSettings {
        domains,
        contact: a.contact.clone(),
        directory: a.directory.clone(),
        challenge: a.challenge,
        dir,
        directory_ca: a.directory_ca.as_deref().map(resolve),
        renew_before,
    })
}
