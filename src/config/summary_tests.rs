//! The summary names what `check` must show and never a secret.
#![allow(clippy::unwrap_used)]

use std::time::SystemTime;

use super::super::test_support::Fixture;
use super::summary;

#[test]
fn summary_shows_routes_and_certificates_but_no_secret() {
    let f = Fixture::new().env("CLIENT_SECRET", "cs-very-secret");
    let (cert, key) = f.identity("client", -1, 90);
    let api_key = f.file("api-key", "api-key-very-secret\n");
    let yaml = format!(
        r#"
token_cache: {{ store: redis, url: "redis://user:redis-very-secret@redis:6379/0" }}
routes:
  - name: raas
    match: {{ path_prefix: /raas/v2/ }}
    upstream:
      url: "https://integration-api.tangocard.com"
      tls: {{ client_cert_file: "{cert}", client_key_file: "{key}" }}
    auth: {{ basic: {{ username: acme, password_file: "{api_key}" }} }}
  - name: oauth
    match: {{ path_prefix: /oauth }}
    upstream: {{ url: "https://h.example" }}
    auth:
      oauth2:
        token_url: "https://h.example/oauth/token"
        grant: password
        client_id: cid
        client_secret: "${{CLIENT_SECRET}}"
        username: svc
        password: pw-very-secret
        audience: "https://api.tangocard.com/"
        scope: raas.all
"#
    );
    let c = f.ok(&yaml);
    let s = summary(&c, SystemTime::now());
    for want in [
        "route raas",
        "/raas/v2",
        "https://integration-api.tangocard.com",
        "basic (username acme)",
        "CN=gw-client",
        "ECDSA P-256 (256 bits)",
        "days left",
        "route oauth",
        "https://h.example/oauth/token",
        "grant: password",
        "https://api.tangocard.com/",
        "raas.all",
        "dpop: off",
        "redis redis://***@redis:6379/0",
        "max 3 attempts",
        "x-forwarded-for: peer",
        "listen: 127.0.0.1:8080",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
    assert!(!s.contains("very-secret"), "secret in:\n{s}");
    assert!(
        !format!("{c:?}").contains("very-secret"),
        "secret in Debug of Config"
    );
}

#[test]
fn summary_shows_the_dpop_key_thumbprint_not_the_key() {
    let f = Fixture::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_file = f.file("dpop.pem", &key.serialize_pem());
    let yaml = format!(
        r#"
routes:
  - name: oauth
    match: {{ path_prefix: /raas }}
    upstream: {{ url: "https://h.example" }}
    auth:
      oauth2:
        token_url: "https://h.example/oauth/token"
        client_id: cid
        client_secret: cs-very-secret
        dpop: {{ key_file: "{key_file}" }}
"#
    );
    let c = f.ok(&yaml);
    let s = summary(&c, SystemTime::now());
    let expected = crate::auth::dpop::DpopKey::from_pkcs8_der(&key.serialize_der()).unwrap();
    assert!(
        s.contains(&format!("JWK thumbprint {}", expected.thumbprint())),
        "no thumbprint in:\n{s}"
    );
    assert!(!s.contains("PRIVATE KEY") && !s.contains("very-secret"));
}
