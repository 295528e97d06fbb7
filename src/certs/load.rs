//! Reading client identities (certificate chain + private key) and CA bundles from PEM files.
//!
//! Invariant: a `ClientIdentity` is only returned when every check passed (chain present and
//! parseable, key loadable and matching the leaf, key strong enough, certificate currently valid
//! and not longer than a year unless allowed). No message ever contains key material: PEM
//! errors are mapped to our own wording because some of them carry the offending line.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::inspect::{inspect, key_strength_problem, validity_problems};
use super::ClientIdentity;

/// Which of the two files of an identity a problem is about, so the config loader can name
/// the right key (`client_cert_file` or `client_key_file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityFile {
    Cert,
    Key,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityProblem {
    pub file: IdentityFile,
    pub message: String,
}

/// Loads and checks a client identity; messages do not name the config key (the caller
/// prefixes it) and never contain key bytes.
pub fn load_client_identity(
    cert_file: &Path,
    key_file: &Path,
    allow_long_validity: bool,
    now: SystemTime,
) -> Result<ClientIdentity, Vec<String>> {
    load_client_identity_detailed(cert_file, key_file, allow_long_validity, now)
        .map_err(|ps| ps.into_iter().map(|p| p.message).collect())
}

/// As [`load_client_identity`], each problem tagged with the file it concerns.
pub fn load_client_identity_detailed(
    cert_file: &Path,
    key_file: &Path,
    allow_long_validity: bool,
    now: SystemTime,
) -> Result<ClientIdentity, Vec<IdentityProblem>> {
    let mut problems = Vec::new();
    let cert = |message: String| IdentityProblem {
        file: IdentityFile::Cert,
        message,
    };
    let key_p = |message: String| IdentityProblem {
        file: IdentityFile::Key,
        message,
    };

    let chain = match read_certs(cert_file) {
        Ok(chain) => Some(chain),
        Err(e) => {
            problems.push(cert(e));
            None
        }
    };
    let leaf = chain.as_ref().and_then(|c| c.first()).and_then(|der| {
        inspect(der.as_ref())
            .map_err(|e| problems.push(cert(format!("leaf {e}"))))
            .ok()
    });
    if let Some(leaf) = &leaf {
        if let Some(p) = key_strength_problem(leaf.kind, leaf.summary.key_bits) {
            problems.push(cert(p));
        }
        let window = validity_problems(&leaf.summary, allow_long_validity, now);
        problems.extend(window.into_iter().map(cert));
    }

    let key = match read_key(key_file) {
        Ok(key) => Some(key),
        Err(e) => {
            problems.push(key_p(e));
            None
        }
    };
    if let Some(key) = &key {
        match public_spki(key) {
            Ok(spki) if leaf.as_ref().is_some_and(|l| l.spki != spki) => problems.push(key_p(
                "private key does not match the certificate (the first certificate of the chain)"
                    .to_string(),
            )),
            Ok(_) => {}
            Err(e) => problems.push(key_p(e)),
        }
    }

    match (chain, key, leaf) {
        (Some(chain), Some(key), Some(leaf)) if problems.is_empty() => Ok(ClientIdentity {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            chain,
            key: Arc::new(key),
            summary: leaf.summary,
        }),
        _ => Err(problems),
    }
}

/// The SubjectPublicKeyInfo derived from the private key, using the same provider that will
/// sign the TLS handshakes (so "loads here" means "works there"); compared with the leaf's.
fn public_spki(key: &PrivateKeyDer<'static>) -> Result<Vec<u8>, String> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|_| {
            "private key cannot be used (unsupported algorithm, too weak, or corrupt)".to_string()
        })?;
    let public = signing
        .public_key()
        .ok_or_else(|| "cannot derive the public key of the private key".to_string())?;
    Ok(public.as_ref().to_vec())
}

fn pem_problem(what: &str, path: &Path, e: pem::Error) -> String {
    match e {
        pem::Error::Io(io) => format!("cannot read {}: {io}", path.display()),
        pem::Error::NoItemsFound => format!("no {what} found in {}", path.display()),
        // Other variants may quote a line of the file: never echo it.
        _ => format!("malformed PEM in {}", path.display()),
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| pem_problem("private key (PKCS#8, PKCS#1 or SEC1 PEM)", path, e))
}

/// Reads every certificate of a PEM file, checking each parses as X.509.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter =
        CertificateDer::pem_file_iter(path).map_err(|e| pem_problem("certificate", path, e))?;
    let mut certs = Vec::new();
    for (i, item) in iter.enumerate() {
        let der = item.map_err(|e| pem_problem("certificate", path, e))?;
        if let Err(e) = X509Certificate::from_der(der.as_ref()) {
            return Err(format!(
                "certificate #{} in {} cannot be parsed: {e}",
                i + 1,
                path.display()
            ));
        }
        certs.push(der);
    }
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", path.display()));
    }
    Ok(certs)
}

/// Reads a CA bundle: at least one certificate, each parseable.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    read_certs(path)
}

/// Reads a DPoP signing key: a P-256 private key in PKCS#8 PEM (what `dpop keygen` writes),
/// checked by loading it with the aws-lc-rs provider that will sign the proofs.
pub fn load_dpop_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let key = PrivateKeyDer::from_pem_file(path)
        .map_err(|e| pem_problem("private key (PKCS#8 PEM)", path, e))?;
    if !matches!(key, PrivateKeyDer::Pkcs8(_)) {
        return Err("DPoP key must be PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)".into());
    }
    let signing = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&key)
        .map_err(|_| "DPoP key must be an ECDSA P-256 key".to_string())?;
    // Only a P-256 key can offer ES256 (ECDSA_NISTP256_SHA256).
    signing
        .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
        .ok_or_else(|| "DPoP key must be on curve P-256 (ES256)".to_string())?;
    Ok(key)
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
