//! `certs client`, `certs dev` and `dpop keygen` as a user runs them: the built binary in a
//! temporary directory, every file checked for its mode, parsed by x509-parser and by the
//! `openssl` command line, and the DPoP thumbprint recomputed independently (RFC 7638).
//! Whatever a command prints must never contain a private key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;
use x509_parser::prelude::*;

use tango_gateway::auth::dpop::DpopKey;
use tango_gateway::certs::{load_client_identity, load_dpop_key};

const DAY_SECS: i64 = 24 * 3600;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the gateway binary; whatever it prints must not contain a private key.
fn gateway(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tango-gateway"))
        .args(args)
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains("PRIVATE KEY"),
            "{args:?} printed a key:\n{text}"
        );
    }
    run
}

fn ok(args: &[&str]) -> Run {
    let run = gateway(args);
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    run
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The DER inside the first PEM block of a file.
fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD.decode(body).unwrap()
}

fn with_cert<T>(path: &Path, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let der = pem_der(path);
    let (rest, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(rest.is_empty());
    f(&cert)
}

fn validity_secs(path: &Path) -> i64 {
    with_cert(path, |c| {
        c.validity().not_after.timestamp() - c.validity().not_before.timestamp()
    })
}

fn assert_no_key_body_in(output: &str, key_file: &Path) {
    let text = std::fs::read_to_string(key_file).unwrap();
    for line in text.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!output.contains(line), "output contains key material");
    }
}

fn client_args<'a>(out: &'a str, subject: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["certs", "client", "--subject", subject, "--out", out];
    args.extend_from_slice(extra);
    args
}

#[test]
fn certs_client_writes_key_csr_and_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/mtls");
    let run = ok(&client_args(s(&dir), "svc", &[]));
    let (key, csr, pem) = (
        dir.join("client.key"),
        dir.join("client.csr"),
        dir.join("client.pem"),
    );
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&csr) & 0o022, 0);
    assert_eq!(mode(&pem) & 0o022, 0);
    for file in ["client.key", "client.csr", "client.pem"] {
        assert!(run.stdout.contains(file), "{}", run.stdout);
    }
    assert!(
        run.stdout.contains("never send client.key"),
        "{}",
        run.stdout
    );
    assert_no_key_body_in(&run.stdout, &key);

    let shown = openssl(&["x509", "-in", s(&pem), "-noout", "-subject", "-dates"]);
    assert!(shown.contains("CN") && shown.contains("svc"), "{shown}");
    assert!(shown.contains("notAfter="), "{shown}");
    openssl(&["req", "-in", s(&csr), "-noout", "-verify"]);
    openssl(&["pkey", "-in", s(&key), "-noout"]);

    // Defaults: ECDSA P-256, 365 days in all; self-signed, for client authentication.
    assert_eq!(validity_secs(&pem), 365 * DAY_SECS);
    with_cert(&pem, |c| {
        assert_eq!(c.subject(), c.issuer());
        assert_eq!(
            c.public_key().algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        assert!(c.extended_key_usage().unwrap().unwrap().value.client_auth);
    });
    // The gateway accepts the pair as an mTLS identity (key matches, validity within limits).
    let id = load_client_identity(&pem, &key, false, SystemTime::now()).unwrap();
    assert_eq!(id.summary.subject, "CN=svc");
}

#[test]
fn certs_client_rsa_2048_and_custom_days() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(&client_args(
        s(dir),
        "rsa-svc",
        &["--key-type", "rsa-2048", "--days", "30"],
    ));
    let pem = dir.join("client.pem");
    assert_eq!(validity_secs(&pem), 30 * DAY_SECS);
    with_cert(&pem, |c| match c.public_key().parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(k) => assert_eq!(k.key_size(), 2048),
        other => panic!("not RSA: {other:?}"),
    });
    assert_eq!(mode(&dir.join("client.key")), 0o600);
    openssl(&["pkey", "-in", s(&dir.join("client.key")), "-noout"]);
    openssl(&[
        "req",
        "-in",
        s(&dir.join("client.csr")),
        "-noout",
        "-verify",
    ]);
    load_client_identity(&pem, &dir.join("client.key"), false, SystemTime::now()).unwrap();
}

#[test]
fn full_dn_subject_lands_in_certificate_and_csr() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let subject = "CN=svc,OU=Payments,O=Acme,L=Portland,ST=Oregon,C=US";
    ok(&client_args(s(dir), subject, &[]));
    let pem = dir.join("client.pem");
    let expect = [
        (x509_parser::oid_registry::OID_X509_COMMON_NAME, "svc"),
        (
            x509_parser::oid_registry::OID_X509_ORGANIZATIONAL_UNIT,
            "Payments",
        ),
        (
            x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME,
            "Acme",
        ),
        (
            x509_parser::oid_registry::OID_X509_LOCALITY_NAME,
            "Portland",
        ),
        (
            x509_parser::oid_registry::OID_X509_STATE_OR_PROVINCE_NAME,
            "Oregon",
        ),
        (x509_parser::oid_registry::OID_X509_COUNTRY_NAME, "US"),
    ];
    with_cert(&pem, |c| {
        for (oid, value) in &expect {
            let attrs: Vec<&str> = c
                .subject()
                .iter_attributes()
                .filter(|a| a.attr_type() == oid)
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(attrs, [*value], "{oid}");
        }
        assert_eq!(c.subject().iter_attributes().count(), expect.len());
    });
    // openssl prints it back in RFC 2253 order exactly as it was typed.
    let shown = openssl(&[
        "x509",
        "-in",
        s(&pem),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert_eq!(shown.trim(), format!("subject={subject}"));
    let shown = openssl(&[
        "req",
        "-in",
        s(&dir.join("client.csr")),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert_eq!(shown.trim(), format!("subject={subject}"));
}

#[test]
fn csr_public_key_equals_certificate_public_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(&client_args(s(dir), "CN=svc,O=Acme,C=US", &[]));
    let csr_der = pem_der(&dir.join("client.csr"));
    let (_, csr) = X509CertificationRequest::from_der(&csr_der).unwrap();
    let info = &csr.certification_request_info;
    with_cert(&dir.join("client.pem"), |c| {
        assert_eq!(info.subject_pki.raw, c.public_key().raw);
        assert_eq!(info.subject, *c.subject());
    });
    // And the same key pair as client.key, by openssl's reckoning.
    let from_key = openssl(&["pkey", "-in", s(&dir.join("client.key")), "-pubout"]);
    let from_csr = openssl(&[
        "req",
        "-in",
        s(&dir.join("client.csr")),
        "-noout",
        "-pubkey",
    ]);
    assert_eq!(from_key, from_csr);
}

#[test]
fn days_over_365_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let run = gateway(&client_args(s(&dir), "svc", &["--days", "400"]));
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--days 400"), "{}", run.stderr);
    assert!(run.stderr.contains("365"), "{}", run.stderr);
    assert!(!dir.exists());
    assert_eq!(
        gateway(&client_args(s(&dir), "svc", &["--days", "0"])).code,
        2
    );
    assert_eq!(
        gateway(&client_args(s(&dir), "svc", &["--days", "366"])).code,
        2
    );
    assert!(!dir.exists());
}

#[test]
fn unparseable_subjects_are_usage_errors_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    for (subject, reason) in [
        ("CN=svc,Acme", "`Acme` is not KEY=VALUE"),
        ("CN=svc,EMAIL=a@b.example", "unknown attribute `EMAIL`"),
        ("CN=svc,C=USA", "two-letter country code"),
        ("O=Acme", "needs a CN"),
        ("CN=a,CN=b", "CN is given twice"),
        ("", "empty"),
    ] {
        let run = gateway(&client_args(s(&dir), subject, &[]));
        assert_eq!(run.code, 2, "{subject}");
        assert!(run.stderr.contains("--subject"), "{}", run.stderr);
        assert!(run.stderr.contains(reason), "{subject}: {}", run.stderr);
    }
    assert!(!dir.exists());
    // Unknown key types are refused by the argument parser, also with exit 2.
    let run = gateway(&client_args(s(&dir), "svc", &["--key-type", "dsa"]));
    assert_eq!(run.code, 2);
}

#[test]
fn certs_client_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(&client_args(s(dir), "first", &[]));
    let before = std::fs::read(dir.join("client.pem")).unwrap();
    let run = gateway(&client_args(s(dir), "second", &[]));
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("client.key"), "{}", run.stderr);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(std::fs::read(dir.join("client.pem")).unwrap(), before);

    // One existing file is enough to refuse the whole set.
    std::fs::remove_file(dir.join("client.key")).unwrap();
    std::fs::remove_file(dir.join("client.csr")).unwrap();
    let run = gateway(&client_args(s(dir), "second", &[]));
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("client.pem"), "{}", run.stderr);
    assert!(!dir.join("client.key").exists());

    // Forced: replaced, and the key is 0600 again even if it had been loosened.
    ok(&client_args(s(dir), "second", &["--force"]));
    assert_ne!(std::fs::read(dir.join("client.pem")).unwrap(), before);
    std::fs::set_permissions(
        dir.join("client.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    ok(&client_args(s(dir), "third", &["--force"]));
    assert_eq!(mode(&dir.join("client.key")), 0o600);
    let shown = openssl(&[
        "x509",
        "-in",
        s(&dir.join("client.pem")),
        "-noout",
        "-subject",
    ]);
    assert!(shown.contains("third"), "{shown}");
    load_client_identity(
        &dir.join("client.pem"),
        &dir.join("client.key"),
        false,
        SystemTime::now(),
    )
    .unwrap();
}

const DEV_FILES: [&str; 6] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
];

#[test]
fn certs_dev_writes_a_verifiable_throwaway_pki() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let run = ok(&["certs", "dev", "--out", s(&dir)]);
    for name in DEV_FILES {
        let path = dir.join(name);
        assert!(run.stdout.contains(name), "{}", run.stdout);
        if name.ends_with(".key") {
            assert_eq!(mode(&path), 0o600, "{name}");
            openssl(&["pkey", "-in", s(&path), "-noout"]);
            assert_no_key_body_in(&run.stdout, &path);
        } else {
            assert_eq!(mode(&path) & 0o022, 0, "{name}");
            openssl(&["x509", "-in", s(&path), "-noout", "-subject", "-dates"]);
            assert!(validity_secs(&path) <= 365 * DAY_SECS, "{name}");
        }
    }
    let verified = openssl(&[
        "verify",
        "-CAfile",
        s(&dir.join("ca.pem")),
        s(&dir.join("server.pem")),
        s(&dir.join("client.pem")),
    ]);
    assert_eq!(verified.matches(": OK").count(), 2, "{verified}");
    load_client_identity(
        &dir.join("client.pem"),
        &dir.join("client.key"),
        false,
        SystemTime::now(),
    )
    .unwrap();
}

#[test]
fn certs_dev_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(&["certs", "dev", "--out", s(dir)]);
    let before = std::fs::read(dir.join("ca.pem")).unwrap();
    let run = gateway(&["certs", "dev", "--out", s(dir)]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("ca.pem"), "{}", run.stderr);
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), before);
    ok(&["certs", "dev", "--out", s(dir), "--force"]);
    assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), before);
    for name in DEV_FILES.iter().filter(|n| n.ends_with(".key")) {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    openssl(&[
        "verify",
        "-CAfile",
        s(&dir.join("ca.pem")),
        s(&dir.join("server.pem")),
        s(&dir.join("client.pem")),
    ]);
}

/// The public JWK and thumbprint printed by `dpop keygen`.
fn printed_jwk_and_thumbprint(stdout: &str) -> (Value, String) {
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{stdout}"))
            .trim()
            .to_string()
    };
    let jwk = serde_json::from_str(&field("public JWK:")).unwrap();
    (jwk, field("JWK SHA-256 thumbprint (RFC 7638):"))
}

/// RFC 7638 §3.2: the required members in lexicographic order, no whitespace, SHA-256,
/// base64url without padding.
fn rfc7638_thumbprint(jwk: &Value) -> String {
    let member = |name: &str| jwk[name].as_str().unwrap().to_string();
    let canonical = format!(
        r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
        member("crv"),
        member("kty"),
        member("x"),
        member("y")
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[test]
fn dpop_keygen_writes_a_p256_key_and_prints_its_jwk_and_thumbprint() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("secrets/dpop.key");
    let run = ok(&["dpop", "keygen", "--out", s(&key)]);
    assert_eq!(mode(&key), 0o600);
    assert_no_key_body_in(&run.stdout, &key);
    openssl(&["pkey", "-in", s(&key), "-noout"]);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 PEM"
    );
    let curve = openssl(&["pkey", "-in", s(&key), "-noout", "-text"]);
    assert!(
        curve.contains("prime256v1") || curve.contains("P-256"),
        "{curve}"
    );

    let (jwk, thumbprint) = printed_jwk_and_thumbprint(&run.stdout);
    let mut members: Vec<&String> = jwk.as_object().unwrap().keys().collect();
    members.sort();
    assert_eq!(members, ["crv", "kty", "x", "y"]);
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    for coord in ["x", "y"] {
        let bytes = URL_SAFE_NO_PAD
            .decode(jwk[coord].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 32, "{coord}");
    }
    assert_eq!(thumbprint, rfc7638_thumbprint(&jwk));

    // The key in the file is the key whose JWK was printed.
    let der = pem_der(&key);
    let dpop = DpopKey::from_pkcs8_der(&der).unwrap();
    assert_eq!(dpop.thumbprint(), thumbprint);
    let loaded = load_dpop_key(&key).unwrap();
    assert_eq!(loaded.secret_der(), der.as_slice());
    // The public key openssl derives from the file has the printed coordinates.
    let public_pem = tmp.path().join("dpop.pub");
    openssl(&["pkey", "-in", s(&key), "-pubout", "-out", s(&public_pem)]);
    let spki = pem_der(&public_pem);
    let mut point = vec![0x04];
    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    assert!(
        spki.ends_with(&point),
        "openssl's public key differs from the JWK"
    );
}

#[test]
fn dpop_keygen_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("dpop.key");
    let first = ok(&["dpop", "keygen", "--out", s(&key)]);
    let before = std::fs::read(&key).unwrap();
    let run = gateway(&["dpop", "keygen", "--out", s(&key)]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("dpop.key"), "{}", run.stderr);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(std::fs::read(&key).unwrap(), before);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let second = ok(&["dpop", "keygen", "--out", s(&key), "--force"]);
    assert_ne!(std::fs::read(&key).unwrap(), before);
    assert_eq!(mode(&key), 0o600);
    let (_, t1) = printed_jwk_and_thumbprint(&first.stdout);
    let (_, t2) = printed_jwk_and_thumbprint(&second.stdout);
    assert_ne!(t1, t2);
    let dpop = DpopKey::from_pkcs8_der(load_dpop_key(&key).unwrap().secret_der()).unwrap();
    assert_eq!(dpop.thumbprint(), t2);

    // A directory is not a key file.
    let run = gateway(&["dpop", "keygen", "--out", s(tmp.path())]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is a directory"), "{}", run.stderr);
}
