//! Tests for identity and CA loading, with certificates made by rcgen at test time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};
use tempfile::TempDir;

use super::*;

const DAY: u64 = 86_400;

/// 2025-06-01T00:00:00Z, the "now" of every test.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_748_736_000)
}

/// Certificate valid from `start_days` (relative to `now()`, may be negative) for `days`.
pub(crate) fn make_cert(key: &KeyPair, start_days: i64, days: u64) -> String {
    let mut params = CertificateParams::new(vec!["client.example".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gateway-client");
    let start = rcgen::date_time_ymd(2025, 6, 1);
    params.not_before = if start_days >= 0 {
        start + Duration::from_secs(start_days.unsigned_abs() * DAY)
    } else {
        start - Duration::from_secs(start_days.unsigned_abs() * DAY)
    };
    params.not_after = params.not_before + Duration::from_secs(days * DAY);
    params.self_signed(key).unwrap().pem()
}

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn ident(alg: &'static SignatureAlgorithm, start: i64, days: u64) -> (TempDir, PathBuf, PathBuf) {
    let dir = TempDir::new().unwrap();
    let key = KeyPair::generate_for(alg).unwrap();
    let cert = write(&dir, "c.pem", &make_cert(&key, start, days));
    let keyp = write(&dir, "k.pem", &key.serialize_pem());
    (dir, cert, keyp)
}

/// The inner key of a PKCS#8 document (SEC1 for EC, PKCS#1 for RSA), re-wrapped as PEM.
fn pkcs8_inner_pem(pkcs8_der: &[u8], label: &str) -> String {
    fn tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
        let (len, hdr) = if b[1] & 0x80 == 0 {
            (b[1] as usize, 2)
        } else {
            let n = (b[1] & 0x7f) as usize;
            (
                b[2..2 + n].iter().fold(0, |a, x| (a << 8) | *x as usize),
                2 + n,
            )
        };
        (b[0], &b[hdr..hdr + len], &b[hdr + len..])
    }
    let (_, seq, _) = tlv(pkcs8_der);
    let (_, _version, rest) = tlv(seq);
    let (_, _alg, rest) = tlv(rest);
    let (tag, inner, _) = tlv(rest);
    assert_eq!(tag, 0x04);
    let b64 = base64::engine::general_purpose::STANDARD.encode(inner);
    format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
}

#[test]
fn ecdsa_p256_pkcs8_identity_loads_and_is_summarised() {
    let (_d, c, k) = ident(&rcgen::PKCS_ECDSA_P256_SHA256, -10, 365);
    let id = load_client_identity(&c, &k, false, now()).unwrap();
    assert_eq!(id.chain.len(), 1);
    assert_eq!(id.summary.key_type, "ECDSA P-256");
    assert_eq!(id.summary.key_bits, 256);
    assert!(id.summary.subject.contains("CN=gateway-client"));
    assert_eq!(id.summary.days_left(now()), 355);
    assert!(!format!("{id:?}").contains("PRIVATE"));
}

#[test]
fn ecdsa_sec1_key_loads() {
    let dir = TempDir::new().unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let c = write(&dir, "c.pem", &make_cert(&key, -1, 30));
    let sec1 = pkcs8_inner_pem(&key.serialize_der(), "EC PRIVATE KEY");
    let k = write(&dir, "k.pem", &sec1);
    let id = load_client_identity(&c, &k, false, now()).unwrap();
    assert_eq!(id.summary.key_type, "ECDSA P-384");
    assert!(matches!(id.private_key(), PrivateKeyDer::Sec1(_)));
}

#[test]
fn rsa_2048_pkcs1_and_pkcs8_keys_load() {
    let dir = TempDir::new().unwrap();
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let c = write(&dir, "c.pem", &make_cert(&key, -1, 30));
    let k8 = write(&dir, "k8.pem", &key.serialize_pem());
    let id = load_client_identity(&c, &k8, false, now()).unwrap();
    assert_eq!(
        (id.summary.key_type.as_str(), id.summary.key_bits),
        ("RSA", 2048)
    );
    let k1 = write(
        &dir,
        "k1.pem",
        &pkcs8_inner_pem(&key.serialize_der(), "RSA PRIVATE KEY"),
    );
    let id = load_client_identity(&c, &k1, false, now()).unwrap();
    assert!(matches!(id.private_key(), PrivateKeyDer::Pkcs1(_)));
}

#[test]
fn ed25519_identity_loads() {
    let (_d, c, k) = ident(&rcgen::PKCS_ED25519, -1, 30);
    let id = load_client_identity(&c, &k, false, now()).unwrap();
    assert_eq!(id.summary.key_type, "Ed25519");
}

#[test]
fn key_of_another_certificate_is_refused() {
    let (_d, c, _k) = ident(&rcgen::PKCS_ECDSA_P256_SHA256, -1, 30);
    let (_d2, _c2, k2) = ident(&rcgen::PKCS_ECDSA_P256_SHA256, -1, 30);
    let err = load_client_identity_detailed(&c, &k2, false, now()).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!(err[0].file, IdentityFile::Key);
    assert!(err[0].message.contains("does not match"));
}

#[test]
fn expired_certificate_is_refused() {
    let (_d, c, k) = ident(&rcgen::PKCS_ECDSA_P256_SHA256, -40, 30);
    let err = load_client_identity_detailed(&c, &k, false, now()).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!(err[0].file, IdentityFile::Cert);
    assert!(err[0].message.contains("expired"));
}

#[test]
fn not_yet_valid_certificate_is_refused() {
    let (_d, c, k) = ident(&rcgen::PKCS_ECDSA_P256_SHA256, 2, 30);
    let err = load_client_identity(&c, &k, false, now()).unwrap_err();
    assert!(err[0].contains("not valid before"), "{err:?}");
}

#[test]
fn long_validity_needs_the_allow_flag() {
    let (_d, c, k) = ident(&rcgen::PKCS_ECDSA_P256_SHA256, -1, 400);
    let err = load_client_identity(&c, &k, false, now()).unwrap_err();
    assert!(err[0].contains("allow_long_validity"), "{err:?}");
    assert!(load_client_identity(&c, &k, true, now()).is_ok());
    // A leap year's worth is still accepted without the flag.
    let (_d, c, k) = ident(&rcgen::PKCS_ECDSA_P256_SHA256, -1, 366);
    assert!(load_client_identity(&c, &k, false, now()).is_ok());
}

#[test]
fn missing_and_garbage_files_are_reported_per_file_without_content() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope.pem");
    let garbage = write(
        &dir,
        "g.pem",
        "-----BEGIN PRIVATE KEY-----\nSECRETSTUFF!!\n",
    );
    let err = load_client_identity_detailed(&missing, &garbage, false, now()).unwrap_err();
    assert_eq!(err.len(), 2, "{err:?}");
    assert_eq!(err[0].file, IdentityFile::Cert);
    assert!(err[0].message.contains("nope.pem"));
    assert_eq!(err[1].file, IdentityFile::Key);
    assert!(!err[1].message.contains("SECRETSTUFF"));
}

#[test]
fn certificate_file_given_as_key_file_is_refused() {
    let (_d, c, _k) = ident(&rcgen::PKCS_ECDSA_P256_SHA256, -1, 30);
    let err = load_client_identity(&c, &c, false, now()).unwrap_err();
    assert!(err[0].contains("no private key"), "{err:?}");
}

#[test]
fn ca_file_needs_at_least_one_parseable_certificate() {
    let (d, c, k) = ident(&rcgen::PKCS_ECDSA_P256_SHA256, -1, 30);
    assert_eq!(load_ca_file(&c).unwrap().len(), 1);
    assert!(load_ca_file(&k).unwrap_err().contains("no certificate"));
    let bad = write(
        &d,
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    assert!(load_ca_file(&bad).unwrap_err().contains("cannot be parsed"));
}

#[test]
fn dpop_key_must_be_p256_pkcs8() {
    let dir = TempDir::new().unwrap();
    let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let good = write(&dir, "good.pem", &p256.serialize_pem());
    assert!(load_dpop_key(&good).is_ok());
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let k384 = write(&dir, "p384.pem", &p384.serialize_pem());
    assert!(load_dpop_key(&k384).unwrap_err().contains("P-256"));
    let sec1 = write(
        &dir,
        "sec1.pem",
        &pkcs8_inner_pem(&p256.serialize_der(), "EC PRIVATE KEY"),
    );
    assert!(load_dpop_key(&sec1).unwrap_err().contains("PKCS#8"));
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ked = write(&dir, "ed.pem", &ed.serialize_pem());
    assert!(load_dpop_key(&ked).is_err());
    assert!(load_dpop_key(&dir.path().join("missing.pem")).is_err());
}
