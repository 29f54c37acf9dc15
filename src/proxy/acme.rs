//! Certificates from an ACME CA (`[proxy.acme]`, Let's Encrypt by default):
//! the account and the certificate are kept in the ACME folder (0700,
//! files 0600) and reused across restarts; a certificate is ordered at
//! start when there is none for every domain, and again `renew_before` its
//! end. Challenges are answered by the proxy's own listeners: TLS-ALPN-01
//! by a challenge certificate on the TLS listener, HTTP-01 by a file under
//! `/.well-known/acme-challenge/` on the plain one. A failed order is
//! logged, counted and tried again later, with the old certificate still
//! served.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;

use super::tls::{Certificates, Loaded};
use crate::config::{AcmeChallenge, AcmeSettings};
use crate::store::now_unix;

/// The ACME part of the proxy's metrics.
#[derive(Debug, Default)]
pub struct Counts {
    /// Certificates issued (first ones and renewals).
    pub issued: AtomicU64,
    /// Orders that failed.
    pub failed: AtomicU64,
    /// When the ACME certificate in use ends, Unix seconds (0: none yet).
    pub not_after: AtomicI64,
}

/// How long after a failed order the next is tried: growing, at most an hour.
const RETRY: [u64; 4] = [60, 300, 900, 3600];

/// The shortest wait between two orders, even when `renew_before` is
/// longer than the certificates the CA gives.
const MIN_INTERVAL: Duration = Duration::from_secs(3600);

/// One domain set's certificate, made and renewed.
pub struct Acme {
    settings: AcmeSettings,
    certs: Arc<Certificates>,
    /// HTTP-01 answers by token.
    tokens: Mutex<HashMap<String, String>>,
    counts: Arc<Counts>,
}

/// Why an order failed.
#[derive(Debug, thiserror::Error)]
enum AcmeError {
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("{0}")]
    Other(String),
    #[error("{path}: {source}")]
    File { path: String, source: std::io::Error },
}

impl Acme {
    /// The certificate maker for `settings`, serving through `certs`.
    pub fn new(settings: AcmeSettings, certs: Arc<Certificates>, counts: Arc<Counts>) -> Arc<Acme> {
        Arc::new(Acme {
            settings,
            certs,
            tokens: Mutex::default(),
            counts,
        })
    }

    /// The HTTP-01 answer for `token`, while one is pending.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// Serves the stored certificate if it covers every domain, then keeps
    /// one in force for good, in a task of its own.
    pub fn start(self: &Arc<Self>) {
        if let Some(stored) = self.stored() {
            self.install(stored);
        }
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run().await });
    }

    async fn run(self: Arc<Self>) {
        let mut failures = 0usize;
        loop {
            let wait = self.until_due();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            match self.order().await {
                Ok(cert) => {
                    failures = 0;
                    self.counts.issued.fetch_add(1, Ordering::Relaxed);
                    self.install(cert);
                    if !self.until_due().is_zero() {
                        continue;
                    }
                    tracing::warn!(renew_before = ?self.settings.renew_before,
                        "the new certificate is due for renewal already: renew_before is longer than the CA's certificates last; ordering again in an hour");
                    tokio::time::sleep(MIN_INTERVAL).await;
                }
                Err(e) => {
                    self.counts.failed.fetch_add(1, Ordering::Relaxed);
                    let retry = Duration::from_secs(RETRY[failures.min(RETRY.len() - 1)]);
                    failures += 1;
                    let serving = self.certs.acme().map(|c| c.not_after);
                    tracing::error!(error = %e, domains = %self.settings.domains.join(", "), retry_in = ?retry,
                        serving_until = ?serving.map(crate::report::fmt_time),
                        "ACME: ordering a certificate failed; the one in use (if any) is still served");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// How long until the certificate in use is due (zero: now, or none).
    fn until_due(&self) -> Duration {
        let Some(cert) = self.certs.acme() else {
            return Duration::ZERO;
        };
        let due = cert.not_after - self.settings.renew_before.as_secs() as i64;
        Duration::from_secs(due.saturating_sub(now_unix()).max(0) as u64)
    }

    fn install(&self, cert: Loaded) {
        self.counts.not_after.store(cert.not_after, Ordering::Relaxed);
        self.certs.set_acme(cert);
    }

    /// The certificate in the folder, if it loads and covers every domain.
    fn stored(&self) -> Option<Loaded> {
        let (cert, key) = (
            self.settings.dir.join("cert.pem"),
            self.settings.dir.join("key.pem"),
        );
        if !cert.exists() {
            return None;
        }
        match Loaded::from_files(&crate::config::CertFiles { cert, key }) {
            Ok(c) if self.settings.domains.iter().all(|d| c.serves(d)) => Some(c),
            Ok(_) => {
                tracing::info!(
                    "ACME: the stored certificate does not cover every domain; ordering a new one"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "ACME: the stored certificate cannot be used; ordering a new one");
                None
            }
        }
    }

    /// Orders, proves and fetches a certificate, and stores it.
    async fn order(&self) -> Result<Loaded, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .settings
            .domains
            .iter()
            .cloned()
            .map(Identifier::Dns)
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let answered = self.answer_challenges(&mut order).await;
        let result = match answered {
            Ok(()) => self.finish(&mut order).await,
            Err(e) => Err(e),
        };
        self.clear_challenges();
        let (chain, key) = result?;
        let dir = &self.settings.dir;
        write_private(&dir.join("key.pem"), key.as_bytes())?;
        write_private(&dir.join("cert.pem"), chain.as_bytes())?;
        Loaded::from_pem(
            chain.as_bytes(),
            key.as_bytes(),
            &dir.join("cert.pem"),
            &dir.join("key.pem"),
        )
        .map_err(|e| AcmeError::Other(format!("the CA's certificate cannot be used: {e}")))
    }

    /// Sets every pending authorization's challenge up and says it is ready.
    async fn answer_challenges(&self, order: &mut instant_acme::Order) -> Result<(), AcmeError> {
        let kind = match self.settings.challenge {
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Http01 => ChallengeType::Http01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(AcmeError::Other(format!("an authorization is {other:?}"))),
            }
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| AcmeError::Other(format!("the CA offers no {kind:?} challenge")))?;
            let Identifier::Dns(domain) = challenge.identifier().identifier.clone() else {
                return Err(AcmeError::Other("an identifier that is not a DNS name".into()));
            };
            let key_auth = challenge.key_authorization();
            match self.settings.challenge {
                AcmeChallenge::TlsAlpn01 => {
                    let cert = alpn_certificate(&domain, key_auth.digest().as_ref())?;
                    self.certs.set_challenge(&domain, Some(cert));
                }
                AcmeChallenge::Http01 => {
                    let token = challenge.token.clone();
                    let answer = key_auth.as_str().to_owned();
                    self.tokens
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(token, answer);
                }
            }
            challenge.set_ready().await?;
        }
        Ok(())
    }

    /// Waits for the order, finalizes it and fetches the chain: `(chain
    /// PEM, key PEM)`.
    async fn finish(&self, order: &mut instant_acme::Order) -> Result<(String, String), AcmeError> {
        let retries = RetryPolicy::default().timeout(Duration::from_secs(120));
        let status = order.poll_ready(&retries).await?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Other(format!(
                "the order is {status:?}: the CA could not validate every domain (does {} reach this proxy?)",
                self.settings.domains.join(", ")
            )));
        }
        let key = order.finalize().await?;
        let chain = order.poll_certificate(&retries).await?;
        Ok((chain, key))
    }

    fn clear_challenges(&self) {
        for d in &self.settings.domains {
            self.certs.set_challenge(d, None);
        }
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The account in the folder, or a new one (stored there, 0600).
    async fn account(&self) -> Result<Account, AcmeError> {
        let dir = &self.settings.dir;
        make_private_dir(dir)?;
        let builder = match &self.settings.directory_ca {
            Some(ca) => Account::builder_with_root(ca)?,
            None => Account::builder()?,
        };
        let path = dir.join("account.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let creds: AccountCredentials = serde_json::from_str(&text).map_err(|e| {
                AcmeError::Other(format!(
                    "{}: {e}; remove it to make a new account",
                    path.display()
                ))
            })?;
            return Ok(builder.from_credentials(creds).await?);
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let new = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, creds) = builder
            .create(&new, self.settings.directory.clone(), None)
            .await?;
        let text = serde_json::to_string(&creds).map_err(|e| AcmeError::Other(e.to_string()))?;
        write_private(&path, text.as_bytes())?;
        tracing::info!(directory = %self.settings.directory, "ACME: made an account");
        Ok(account)
    }
}

/// A self-signed certificate for `domain` carrying the acmeIdentifier
/// extension (RFC 8737) with the key authorization's digest.
fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let other = |e: rcgen::Error| AcmeError::Other(format!("making the challenge certificate: {e}"));
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(other)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(other)?;
    let cert = params.self_signed(&key).map_err(other)?;
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| AcmeError::Other(e.to_string()))?;
    // Not CertifiedKey::from_der: its key check parses the certificate
    // with webpki, which refuses the critical acmeIdentifier extension.
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
}

fn make_private_dir(dir: &Path) -> Result<(), AcmeError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| AcmeError::File {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Writes `path` whole (a temporary file renamed into place), mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| AcmeError::File {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("new");
    // Made here, so made 0600: never one left by someone else.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
