//! `dpop keygen`: a P-256 private key for DPoP (RFC 9449), written as PKCS#8 PEM with mode
//! 0600, and its public JWK and RFC 7638 thumbprint for printing.
//!
//! Invariant: the JWK and thumbprint reported are those of the key the gateway will load from
//! the file (both come from [`DpopKey`], the type that signs the proofs), and the JWK holds
//! the public key alone (`kty`, `crv`, `x`, `y`).

use std::fmt;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::AlgorithmParameters;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use secrecy::zeroize::Zeroizing;
use tango_sandbox::pki::{write_new_file, PkiError, KEY_FILE_MODE};

use super::{create_out_dir, ToolError};
use crate::auth::dpop::{DpopError, DpopKey};

/// What `dpop keygen` wrote and what it prints.
#[derive(Debug, Clone)]
pub struct DpopKeygenOutcome {
    pub path: PathBuf,
    /// Compact JSON: `{"kty":"EC","crv":"P-256","x":"…","y":"…"}`.
    pub public_jwk: String,
    /// RFC 7638 JWK SHA-256 thumbprint, base64url without padding.
    pub thumbprint: String,
}

/// Makes a new P-256 key and writes it to `out` (creating its directory when missing).
pub fn keygen(out: &Path, force: bool) -> Result<DpopKeygenOutcome, ToolError> {
    if out.is_dir() {
        return Err(ToolError::IsDirectory {
            path: out.to_path_buf(),
        });
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(PkiError::from)?;
    let der = Zeroizing::new(key.serialize_der());
    let pem = Zeroizing::new(key.serialize_pem());
    let dpop = DpopKey::from_pkcs8_der(&der)?;
    let public_jwk = public_jwk_json(&dpop)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_out_dir(dir)?;
    }
    write_new_file(out, pem.as_bytes(), KEY_FILE_MODE, force)?;
    Ok(DpopKeygenOutcome {
        path: out.to_path_buf(),
        public_jwk,
        thumbprint: dpop.thumbprint().to_string(),
    })
}

/// The EC parameters alone serialise to exactly `kty`, `crv`, `x`, `y`.
fn public_jwk_json(key: &DpopKey) -> Result<String, DpopError> {
    match &key.public_jwk().algorithm {
        AlgorithmParameters::EllipticCurve(ec) => {
            serde_json::to_string(ec).map_err(|_| DpopError::InvalidKey)
        }
        _ => Err(DpopError::InvalidKey),
    }
}

impl fmt::Display for DpopKeygenOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "wrote {}  DPoP private key (ECDSA P-256, PKCS#8 PEM, mode 0600)",
            self.path.display()
        )?;
        writeln!(f, "public JWK: {}", self.public_jwk)?;
        writeln!(f, "JWK SHA-256 thumbprint (RFC 7638): {}", self.thumbprint)?;
        writeln!(
            f,
            "next: set dpop.key_file to {} in the route's auth.oauth2 block and run \
             `tango-gateway check`; tokens bound to this key carry the thumbprint as cnf.jkt. \
             Share the public JWK or the thumbprint if asked; never the key file.",
            self.path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwk_has_the_public_members_only() {
        let key = DpopKey::generate().ok();
        let json = key.as_ref().map(public_jwk_json);
        let value: serde_json::Value = match json {
            Some(Ok(text)) => serde_json::from_str(&text).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        let mut members: Vec<&str> = value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        members.sort_unstable();
        assert_eq!(members, ["crv", "kty", "x", "y"]);
        assert_eq!(value["kty"], "EC");
        assert_eq!(value["crv"], "P-256");
    }

    #[test]
    fn a_directory_is_refused_as_a_usage_error() {
        let dir = std::env::temp_dir();
        assert!(keygen(&dir, true).is_err_and(|e| e.is_usage()));
    }
}
