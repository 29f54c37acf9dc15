//! HTTPS at the proxy: the certificates (`[[proxy.tls]]` files, and the one
//! ACME made), chosen by the name the visitor asks for (SNI), swapped whole
//! on SIGHUP or when their files change (a file that does not load keeps
//! the old set, and says why); the rustls server configuration (TLS 1.2
//! and 1.3 with rustls' modern suites, ALPN `h2` and `http/1.1`, session
//! tickets and a session cache); and a clear answer to plain HTTP sent to
//! the TLS port.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::CertFiles;

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// How often the certificate files are checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No PEM certificate in the file.
    #[error("{0}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----, leaf first)")]
    NoCertificate(PathBuf),
    /// No usable private key in the file.
    #[error(
        "{path}: no usable private key in it ({why}); give the PEM key (PKCS#8, PKCS#1 or SEC1) of the certificate"
    )]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The key is not the certificate's.
    #[error("{key} is not the key of {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate is not X.509 this build can read.
    #[error("{0}: the first certificate cannot be parsed as X.509")]
    Unparsable(PathBuf),
}

/// One certificate ready to serve: the key rustls signs with, the names it
/// is for and when it ends.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The chain and key.
    pub key: Arc<CertifiedKey>,
    /// Its DNS names, lowercase (`*.example.com` for a wildcard).
    pub names: Vec<String>,
    /// Its last valid second, Unix time.
    pub not_after: i64,
    /// Where it came from, for the log.
    pub source: String,
}

impl Loaded {
    /// From PEM text of a chain and a key; `source` names it in errors.
    pub fn from_pem(chain: &[u8], key: &[u8], cert_path: &Path, key_path: &Path) -> Result<Loaded, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
            .filter_map(Result::ok)
            .collect();
        let Some(leaf) = certs.first() else {
            return Err(TlsError::NoCertificate(cert_path.to_owned()));
        };
        let (names, not_after) =
            names_and_end(leaf).ok_or_else(|| TlsError::Unparsable(cert_path.to_owned()))?;
        let key_der = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::BadKey {
            path: key_path.to_owned(),
            why: e.to_string(),
        })?;
        let provider = rustls::crypto::ring::default_provider();
        let key = CertifiedKey::from_der(certs, key_der, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            },
            other => TlsError::BadKey {
                path: key_path.to_owned(),
                why: other.to_string(),
            },
        })?;
        Ok(Loaded {
            key: Arc::new(key),
            names,
            not_after,
            source: cert_path.display().to_string(),
        })
    }

    /// From a `[[proxy.tls]]` pair of files.
    pub fn from_files(f: &CertFiles) -> Result<Loaded, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.to_owned(),
                source,
            })
        };
        Loaded::from_pem(&read(&f.cert)?, &read(&f.key)?, &f.cert, &f.key)
    }

    /// Whether it serves `name` (lowercase): exactly, or one label under a
    /// wildcard.
    pub fn serves(&self, name: &str) -> bool {
        self.names.iter().any(|n| match n.strip_prefix("*.") {
            Some(parent) => name
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => n == name,
        })
    }
}

/// The leaf's DNS names (subjectAltName, else the subject's CN) and its
/// notAfter.
fn names_and_end(leaf: &CertificateDer<'_>) -> Option<(Vec<String>, i64)> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Some((names, cert.validity().not_after.timestamp()))
}

/// A file's modification time and length: what says it changed.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The files' certificates, as last loaded whole.
struct FileSet {
    files: Vec<CertFiles>,
    certs: Vec<Loaded>,
    stamps: Vec<Stamp>,
}

/// Every certificate the TLS listeners serve; rustls asks it at each
/// handshake.
pub struct Certificates {
    files: RwLock<Arc<FileSet>>,
    acme: RwLock<Option<Loaded>>,
    /// TLS-ALPN-01 challenge certificates, by domain.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads every file; any that fails fails the start.
    pub fn load(files: &[CertFiles]) -> Result<Certificates, TlsError> {
        let set = load_set(files)?;
        for c in &set.certs {
            log_loaded(c);
        }
        Ok(Certificates {
            files: RwLock::new(Arc::new(set)),
            acme: RwLock::new(None),
            challenges: Mutex::default(),
        })
    }

    /// Loads `files` again (SIGHUP, or a change seen): all of them or, if
    /// one fails, none; the set in use is kept and the error logged.
    pub fn reload(&self, files: &[CertFiles]) {
        match load_set(files) {
            Ok(set) => {
                for c in &set.certs {
                    log_loaded(c);
                }
                *self.files.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
            }
            Err(e) => {
                tracing::error!(error = %e, "certificates not reloaded; still serving the ones loaded before")
            }
        }
    }

    /// Reloads when a file changed since the last load.
    fn reload_if_changed(&self) {
        let set = Arc::clone(&self.files.read().unwrap_or_else(|e| e.into_inner()));
        let now: Vec<Stamp> = set
            .files
            .iter()
            .flat_map(|f| [stamp(&f.cert), stamp(&f.key)])
            .collect();
        if now != set.stamps {
            tracing::info!("a certificate file changed; reloading");
            self.reload(&set.files);
            // A bad file is not retried every few seconds, only once changed again.
            let mut cur = self.files.write().unwrap_or_else(|e| e.into_inner());
            if cur.stamps != now {
                *cur = Arc::new(FileSet {
                    files: cur.files.clone(),
                    certs: cur.certs.clone(),
                    stamps: now,
                });
            }
        }
    }

    /// Watches the files, reloading on change, until `self` is gone.
    pub fn watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let Some(me) = weak.upgrade() else { return };
                // Reading files: off the runtime's worker threads.
                let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
            }
        });
    }

    /// Serves the certificate ACME made (besides the files).
    pub fn set_acme(&self, cert: Loaded) {
        log_loaded(&cert);
        *self.acme.write().unwrap_or_else(|e| e.into_inner()) = Some(cert);
    }

    /// The ACME certificate in use, if any.
    pub fn acme(&self) -> Option<Loaded> {
        self.acme.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answers TLS-ALPN-01 for `domain` with `key` (or stops, with `None`).
    pub fn set_challenge(&self, domain: &str, key: Option<Arc<CertifiedKey>>) {
        let mut c = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
        match key {
            Some(k) => c.insert(domain.to_ascii_lowercase(), k),
            None => c.remove(&domain.to_ascii_lowercase()),
        };
    }

    /// The certificate for `name` (`None`: no SNI): the ACME one, then the
    /// files in order; the first file's (or ACME's) when none serves it.
    fn choose(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let files = Arc::clone(&self.files.read().unwrap_or_else(|e| e.into_inner()));
        let acme = self.acme.read().unwrap_or_else(|e| e.into_inner()).clone();
        let all = || acme.iter().chain(files.certs.iter());
        let name = name.map(str::to_ascii_lowercase);
        name.and_then(|n| all().find(|c| c.serves(&n)))
            .or_else(|| files.certs.first().or(acme.as_ref()))
            .map(|c| Arc::clone(&c.key))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme_challenge = hello.alpn().is_some_and(|mut p| p.any(|p| p == ACME_TLS_ALPN));
        if acme_challenge {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
        }
        self.choose(hello.server_name())
    }
}

fn load_set(files: &[CertFiles]) -> Result<FileSet, TlsError> {
    let stamps = files
        .iter()
        .flat_map(|f| [stamp(&f.cert), stamp(&f.key)])
        .collect();
    let certs = files.iter().map(Loaded::from_files).collect::<Result<_, _>>()?;
    Ok(FileSet {
        files: files.to_vec(),
        certs,
        stamps,
    })
}

fn log_loaded(c: &Loaded) {
    let left = (c.not_after - crate::store::now_unix()) / 86_400;
    tracing::info!(certificate = %c.source, names = %c.names.join(", "), days_left = left, "serving a certificate");
    if left < 14 {
        tracing::warn!(certificate = %c.source, days_left = left, "a certificate ends soon; renew it");
    }
}

/// The TLS listeners' configuration: TLS 1.2 and 1.3 only, rustls' ring
/// suites (no legacy ciphers), `h2` and `http/1.1` (and `acme-tls/1` when
/// ACME answers TLS-ALPN-01), resumption by tickets and by a session cache.
pub fn server_config(
    certs: Arc<Certificates>,
    acme_alpn: bool,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme_alpn {
        c.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    c.session_storage = ServerSessionMemoryCache::new(4096);
    c.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(c))
}

/// True when what waits on a new TLS connection is not a TLS handshake
/// (whose first byte is 22) but looks like plain HTTP; then it has been
/// answered with a 400 saying to use https://, and the connection is done.
pub async fn refused_plain_http(stream: &mut TcpStream) -> bool {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0].is_ascii_uppercase() => {}
        _ => return false,
    }
    let body = "This port speaks HTTPS: use https:// in the address.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn loaded(names: &[&str]) -> Loaded {
        let (c, k) = pair(names);
        Loaded::from_pem(c.as_bytes(), k.as_bytes(), Path::new("c.pem"), Path::new("k.pem")).unwrap()
    }

    #[test]
    fn names_exact_and_one_label_under_a_wildcard() {
        let c = loaded(&["plover.com", "*.plover.com"]);
        assert_eq!(c.names, ["plover.com", "*.plover.com"]);
        assert!(c.serves("plover.com") && c.serves("www.plover.com"));
        assert!(!c.serves("a.b.plover.com") && !c.serves("xplover.com") && !c.serves(".plover.com"));
        assert!(c.not_after > crate::store::now_unix());
    }

    #[test]
    fn bad_pairs_say_what_is_wrong() {
        let (c, _) = pair(&["plover.com"]);
        let (_, other_key) = pair(&["plover.com"]);
        let p = (Path::new("c.pem"), Path::new("k.pem"));
        let e = |c: &str, k: &str| {
            Loaded::from_pem(c.as_bytes(), k.as_bytes(), p.0, p.1)
                .unwrap_err()
                .to_string()
        };
        assert!(e(&c, &other_key).contains("k.pem is not the key of c.pem"));
        assert!(e("", &other_key).contains("no PEM certificate"));
        assert!(e(&c, "").contains("no usable private key"));
    }
}
