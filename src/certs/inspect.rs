//! X.509 inspection of a leaf certificate: names, key type and size, validity window.
//!
//! Invariant: these functions only read public certificate data; a `CertSummary` built here
//! carries nothing secret, so it may be printed by `check` and logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_SIG_ED25519, OID_SIG_ED448,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::CertSummary;

/// Tango rejects client certificates valid for longer than a year; 366 days admits leap years.
pub const MAX_VALIDITY_DAYS: u64 = 366;
const SECS_PER_DAY: u64 = 86_400;

/// The kind of public key a certificate carries, as far as strength rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    Ecdsa { curve_bits: u32 },
    Ed25519,
    Ed448,
    Other,
}

impl CertSummary {
    /// Whole days until `not_after` (negative once expired).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        signed_secs(self.not_after, now).div_euclid(SECS_PER_DAY as i64)
    }
}

/// Seconds from `to` to `from` (`from - to`), negative when `from` is earlier.
fn signed_secs(from: SystemTime, to: SystemTime) -> i64 {
    match from.duration_since(to) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `None` when the key is strong enough, else why not. Pure, so the RSA floor is testable
/// without having to generate a weak key.
pub fn key_strength_problem(kind: KeyKind, bits: u32) -> Option<String> {
    match kind {
        KeyKind::Rsa if bits < 2048 => Some(format!(
            "RSA key of {bits} bits is too weak: at least 2048 bits required"
        )),
        KeyKind::Ecdsa { curve_bits } if curve_bits < 256 => Some(format!(
            "ECDSA key on a {curve_bits}-bit curve is too weak: P-256 or stronger required"
        )),
        KeyKind::Other => Some("unsupported public key algorithm".to_string()),
        _ => None,
    }
}

/// Key type name and size in bits from a SubjectPublicKeyInfo.
pub(super) fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> (KeyKind, String, u32) {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION || *alg == OID_PKCS1_RSASSAPSS {
        let bits = spki
            .parsed()
            .map(|k| u32::try_from(k.key_size()).unwrap_or(0))
            .unwrap_or(0);
        return (KeyKind::Rsa, "RSA".to_string(), bits);
    }
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let (name, bits) = match curve {
            Some(c) if c == OID_EC_P256 => ("ECDSA P-256", 256),
            Some(c) if c == OID_NIST_EC_P384 => ("ECDSA P-384", 384),
            Some(c) if c == OID_NIST_EC_P521 => ("ECDSA P-521", 521),
            // Unknown or explicit curves: treat as weak rather than guess.
            _ => ("ECDSA (unknown curve)", 0),
        };
        return (KeyKind::Ecdsa { curve_bits: bits }, name.to_string(), bits);
    }
    if *alg == OID_SIG_ED25519 {
        return (KeyKind::Ed25519, "Ed25519".to_string(), 256);
    }
    if *alg == OID_SIG_ED448 {
        return (KeyKind::Ed448, "Ed448".to_string(), 456);
    }
    (KeyKind::Other, format!("unknown ({alg})"), 0)
}

fn to_system_time(ts: i64) -> SystemTime {
    if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

/// A parsed leaf: its summary, its key kind and its raw SubjectPublicKeyInfo.
pub(super) struct Leaf {
    pub summary: CertSummary,
    pub kind: KeyKind,
    pub spki: Vec<u8>,
}

/// Parses a DER certificate into a [`Leaf`].
pub(super) fn inspect(der: &[u8]) -> Result<Leaf, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("certificate cannot be parsed: {e}"))?;
    let spki = cert.public_key();
    let (kind, key_type, key_bits) = key_kind(spki);
    let validity = cert.validity();
    Ok(Leaf {
        summary: CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            key_type,
            key_bits,
            not_before: to_system_time(validity.not_before.timestamp()),
            not_after: to_system_time(validity.not_after.timestamp()),
        },
        kind,
        spki: spki.raw.to_vec(),
    })
}

/// Time-window problems: not yet valid, expired, valid for longer than Tango accepts.
pub(super) fn validity_problems(s: &CertSummary, allow_long: bool, now: SystemTime) -> Vec<String> {
    let mut problems = Vec::new();
    let ts = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    if now < s.not_before {
        problems.push(format!(
            "certificate is not valid before {}",
            ts(s.not_before)
        ));
    }
    if now > s.not_after {
        problems.push(format!("certificate expired at {}", ts(s.not_after)));
    }
    let span = signed_secs(s.not_after, s.not_before);
    let max = (MAX_VALIDITY_DAYS * SECS_PER_DAY) as i64;
    if span > max && !allow_long {
        problems.push(format!(
            "certificate is valid for {} days, more than {MAX_VALIDITY_DAYS} (Tango rejects it); \
             set allow_long_validity: true in this tls block to accept it",
            span / SECS_PER_DAY as i64
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_floor_is_2048_bits() {
        assert!(key_strength_problem(KeyKind::Rsa, 1024).is_some());
        assert!(key_strength_problem(KeyKind::Rsa, 2047).is_some());
        assert!(key_strength_problem(KeyKind::Rsa, 2048).is_none());
        assert!(key_strength_problem(KeyKind::Rsa, 4096).is_none());
    }

    #[test]
    fn ecdsa_floor_is_p256_and_eddsa_is_fine() {
        assert!(key_strength_problem(KeyKind::Ecdsa { curve_bits: 0 }, 0).is_some());
        assert!(key_strength_problem(KeyKind::Ecdsa { curve_bits: 224 }, 224).is_some());
        assert!(key_strength_problem(KeyKind::Ecdsa { curve_bits: 256 }, 256).is_none());
        assert!(key_strength_problem(KeyKind::Ecdsa { curve_bits: 384 }, 384).is_none());
        assert!(key_strength_problem(KeyKind::Ed25519, 256).is_none());
        assert!(key_strength_problem(KeyKind::Other, 0).is_some());
    }

    #[test]
    fn days_left_counts_whole_days_and_goes_negative() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut s = CertSummary {
            subject: String::new(),
            issuer: String::new(),
            key_type: String::new(),
            key_bits: 0,
            not_before: now,
            not_after: now + Duration::from_secs(10 * SECS_PER_DAY + 5),
        };
        assert_eq!(s.days_left(now), 10);
        s.not_after = now - Duration::from_secs(1);
        assert_eq!(s.days_left(now), -1);
    }
}
