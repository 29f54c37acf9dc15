//! TLS to the database with rustls: the server's certificate verified
//! (chain and name) against the URL's `sslrootcert`, or the system's roots.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{Location, StoreError};

/// The connector for one connection.
pub fn connector(at: &Location, roots: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let bad = |why: String| StoreError::Tls { at: at.clone(), why };
    let mut store = rustls::RootCertStore::empty();
    let certs = match roots {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                bad(format!(
                    "cannot read the CA certificates in sslrootcert={}: {e}",
                    path.display()
                ))
            })?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad(match roots {
            Some(path) => format!("sslrootcert={} holds no CA certificate (PEM)", path.display()),
            None => {
                "no CA certificates in the system's store; give the server's CA as sslrootcert=PATH".into()
            }
        }));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
