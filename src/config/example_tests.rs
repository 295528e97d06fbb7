//! `config/gateway.example.yaml` must pass validation once its secrets are provided (§3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::test_support::Fixture;

const EXAMPLE: &str = include_str!("../../config/gateway.example.yaml");

/// The example with its `/run/secrets/` files moved into the fixture's temp dir.
fn example_with_secrets(f: &Fixture) -> String {
    f.file("tango-api-key", "api-key\n");
    f.file("tango-client-secret", "client-secret\n");
    f.file("tango-service-password", "service-password\n");
    let dir = format!("{}/", f.dir.path().display());
    EXAMPLE.replace("/run/secrets/", &dir)
}

#[test]
fn example_config_passes() {
    let f = Fixture::new().env("TANGO_PLATFORM_NAME", "acme");
    let c = f.ok(&example_with_secrets(&f));
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].auth.kind(), "basic");
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
}

#[test]
fn example_oauth2_routes_pass_when_uncommented() {
    // Uncomment the oauth2 route (lines starting with `  # ` after the marker, but not the
    // doubly commented optional keys).
    let f = Fixture::new()
        .env("TANGO_PLATFORM_NAME", "acme")
        .env("TANGO_CLIENT_ID", "cid")
        .env("TANGO_SERVICE_ACCOUNT", "svc");
    let text = example_with_secrets(&f);
    let start = text
        .find("  # - name: raas-oauth")
        .expect("oauth2 route in the example");
    let (head, tail) = text.split_at(start);
    let tail: String = tail
        .lines()
        .map(|l| match l.strip_prefix("  # ") {
            Some(rest) if !rest.trim_start().starts_with('#') => format!("  {rest}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let c = f.ok(&format!("{head}{tail}"));
    assert_eq!(c.routes.len(), 3);
    assert_eq!(c.routes[1].auth.kind(), "oauth2");
    assert_eq!(c.routes[2].auth.kind(), "oauth2");
}

#[test]
fn example_without_its_environment_names_the_missing_variable() {
    let f = Fixture::new();
    let e = f.err(&example_with_secrets(&f));
    assert!(e.has("routes[0].auth.basic.username"), "{e}");
}
