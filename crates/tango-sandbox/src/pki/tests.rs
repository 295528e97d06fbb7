#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;

use secrecy::ExposeSecret;
use x509_parser::prelude::*;

use super::*;

const MAX_VALIDITY_SECS: i64 = 365 * 24 * 3600;

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).expect("parses as X.509");
    assert!(rest.is_empty());
    cert
}

fn validity_secs(cert: &X509Certificate<'_>) -> i64 {
    cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()
}

fn cn(cert: &X509Certificate<'_>) -> String {
    let attr = cert.subject().iter_common_name().next().unwrap();
    attr.as_str().unwrap().to_string()
}

#[test]
fn dev_pki_parses_with_expected_shape() {
    let pki = DevPki::generate().unwrap();
    let ca = parse(&pki.ca.cert().cert_der);
    assert!(ca.is_ca());
    let server = parse(&pki.server.cert_der);
    let client = parse(&pki.client.cert_der);
    for cert in [&ca, &server, &client] {
        assert!(validity_secs(cert) <= MAX_VALIDITY_SECS);
        assert!(cert.validity().is_valid());
        assert!(
            cert.public_key().algorithm.algorithm
                == x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
    }
    assert_eq!(server.issuer(), ca.subject());
    assert_eq!(client.issuer(), ca.subject());
    assert_eq!(cn(&client), DEV_CLIENT_CN);
    let eku = client.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
}

#[test]
fn server_cert_has_localhost_sans() {
    let pki = DevPki::generate().unwrap();
    let server = parse(&pki.server.cert_der);
    let san = server.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
            },
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["localhost", "127.0.0.1", "::1"]);
}

#[test]
fn bad_material_helpers() {
    let ca = Ca::new("test CA").unwrap();
    let expired = parse_owned(&ca.issue_client(&ClientSpec::new("old").expired()).unwrap());
    assert!(!expired.1);
    let long = ca
        .issue_client(&ClientSpec::new("long").valid_for_days(730))
        .unwrap();
    assert!(validity_secs(&parse(&long.cert_der)) > MAX_VALIDITY_SECS);
    let other = ca.issue_server(&["other.example"]).unwrap();
    assert_eq!(cn(&parse(&other.cert_der)), "other.example");
    let foreign_ca = Ca::new("foreign CA").unwrap();
    let foreign = foreign_ca.issue_client(&ClientSpec::new("x")).unwrap();
    assert_ne!(
        parse(&foreign.cert_der).issuer(),
        parse(&ca.cert().cert_der).subject()
    );
}

fn parse_owned(m: &CertifiedMaterial) -> (String, bool) {
    let c = parse(&m.cert_der);
    (cn(&c), c.validity().is_valid())
}

#[test]
fn rsa_2048_client_cert() {
    let ca = Ca::new("test CA").unwrap();
    let rsa = ca
        .issue_client(&ClientSpec::new("rsa").key_kind(KeyKind::Rsa2048))
        .unwrap();
    let cert = parse(&rsa.cert_der);
    match cert.public_key().parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(k) => assert_eq!(k.key_size(), 2048),
        other => panic!("not RSA: {other:?}"),
    }
    assert!(rsa.key_pem.expose_secret().contains("PRIVATE KEY"));
}

#[test]
fn self_signed_client_with_csr() {
    let (material, csr) = self_signed_client(&ClientSpec::new("acme-client")).unwrap();
    let cert = parse(&material.cert_der);
    assert_eq!(cert.subject(), cert.issuer());
    assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
}

#[test]
fn debug_redacts_keys() {
    let pki = DevPki::generate().unwrap();
    let printed = format!("{pki:?}");
    assert!(printed.contains("[redacted]"));
    assert!(!printed.contains("PRIVATE KEY"));
    let key_b64 = pki
        .client
        .key_pem
        .expose_secret()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(!printed.contains(&key_b64));
}

#[test]
fn writes_files_with_key_mode_0600_and_refuses_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let written = pki.write_to(dir.path(), false).unwrap();
    assert_eq!(written.len(), DEV_FILE_NAMES.len());
    for name in DEV_FILE_NAMES {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        if name.ends_with(".key") {
            assert_eq!(mode, KEY_FILE_MODE, "{name}");
        } else {
            assert_eq!(mode & 0o077 & !0o044, 0, "{name}");
        }
    }
    let before = std::fs::read_to_string(dir.path().join("client.pem")).unwrap();
    let again = DevPki::generate().unwrap();
    match again.write_to(dir.path(), false) {
        Err(PkiError::Exists { path }) => assert!(path.ends_with("ca.pem")),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("client.pem")).unwrap(),
        before
    );
    // Forced: replaced, and a key that had loose permissions comes back as 0600.
    let key = dir.path().join("client.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    again.write_to(dir.path(), true).unwrap();
    assert_ne!(
        std::fs::read_to_string(dir.path().join("client.pem")).unwrap(),
        before
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, KEY_FILE_MODE);
}

#[test]
fn full_subject_lands_in_certificate_and_csr() {
    let subject = Subject::parse("CN=svc,OU=Payments,O=Acme,C=US").unwrap();
    let spec = ClientSpec::for_subject(subject);
    assert_eq!(spec.common_name, "svc");
    let (material, csr_pem) = self_signed_client(&spec).unwrap();
    let cert = parse(&material.cert_der);
    assert_eq!(
        cert.subject().to_string(),
        "C=US, O=Acme, OU=Payments, CN=svc"
    );
    assert_eq!(cert.subject(), cert.issuer());
    let csr_der = rustls_pki_types::pem::PemObject::from_pem_slice(csr_pem.as_bytes())
        .map(|d: rustls_pki_types::CertificateSigningRequestDer<'_>| d.as_ref().to_vec())
        .unwrap();
    let (_, csr) = X509CertificationRequest::from_der(&csr_der).unwrap();
    assert_eq!(csr.certification_request_info.subject, *cert.subject());
}

#[test]
fn common_name_spec_is_unchanged_by_the_subject_field() {
    let (material, _) = self_signed_client(&ClientSpec::new("plain")).unwrap();
    assert_eq!(parse(&material.cert_der).subject().to_string(), "CN=plain");
}

#[test]
fn total_days_counts_the_backdated_hour() {
    let spec = ClientSpec::new("x").valid_for_total_days(365);
    let cert = ca_free_cert(&spec);
    assert_eq!(validity_secs(&parse(&cert.cert_der)), MAX_VALIDITY_SECS);
    // `valid_for_days` counts from now, so its window is an hour longer.
    let longer = ca_free_cert(&ClientSpec::new("x").valid_for_days(365));
    assert_eq!(
        validity_secs(&parse(&longer.cert_der)),
        MAX_VALIDITY_SECS + 3600
    );
}

fn ca_free_cert(spec: &ClientSpec) -> CertifiedMaterial {
    self_signed_client(spec).unwrap().0
}
