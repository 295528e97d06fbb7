//! Certificate material read from disk: client identities (mTLS) and extra trust anchors.
//!
//! Invariant: a `ClientIdentity` holds a chain whose leaf matches its key, with a key at least
//! as strong as RSA-2048 / ECDSA P-256, currently valid, and valid ≤ 1 year unless allowed.

pub mod expiry;
mod inspect;
mod load;

pub use inspect::{key_strength_problem, KeyKind, MAX_VALIDITY_DAYS};
pub use load::{
    load_ca_file, load_client_identity, load_client_identity_detailed, load_dpop_key, IdentityFile,
    IdentityProblem,
};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What `check` prints about a certificate (no secret in here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// e.g. `ECDSA P-256`, `RSA`, `Ed25519`.
    pub key_type: String,
    pub key_bits: u32,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// A checked client certificate chain and its private key.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    pub summary: CertSummary,
}

impl ClientIdentity {
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("subject", &self.summary.subject)
            .field("key", &"[redacted]")
            .finish()
    }
}
