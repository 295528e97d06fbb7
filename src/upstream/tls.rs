//! The rustls client configuration of one upstream.
//!
//! Invariants: the server is always verified (system roots plus the configured extra trust
//! anchors, hostname checked); TLS 1.2 and 1.3 only; one crypto provider (aws-lc-rs); the
//! client certificate is presented when configured, and its absence is never papered over.

use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("no trust anchor: the system has no CA certificates and no ca_file is configured")]
    NoTrustAnchors,
    #[error("the client certificate or key is not usable: {0}")]
    ClientIdentity(rustls::Error),
    #[error("TLS settings refused: {0}")]
    Settings(rustls::Error),
}

/// The process's crypto provider. Installed once as the default, too, so nothing else in
/// the process ever picks another provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            // Fails only if a default is already installed, which is then fine to keep.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            Arc::new(rustls::crypto::aws_lc_rs::default_provider())
        })
        .clone()
}

/// The system's CA certificates, read once per process (reading them costs milliseconds
/// and the set does not change while we run).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        if !loaded.errors.is_empty() {
            tracing::warn!(
                errors = loaded.errors.len(),
                "some system CA certificates could not be read"
            );
        }
        loaded.certs
    })
}

/// Builds the client config; ALPN is set by the connector (h2, http/1.1).
pub fn client_config(tls: &TlsConfig) -> Result<ClientConfig, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    // Invalid system certificates are skipped (as every TLS client does); the extra ones
    // were parsed and checked at load.
    let (_added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    let (_added, _ignored) = roots.add_parsable_certificates(tls.extra_roots.iter().cloned());
    if roots.is_empty() {
        return Err(TlsSetupError::NoTrustAnchors);
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsSetupError::Settings)?
        .with_root_certificates(roots);
    let config = match &tls.client_identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.private_key())
            .map_err(TlsSetupError::ClientIdentity)?,
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}
