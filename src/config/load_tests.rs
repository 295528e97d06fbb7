//! Loading: defaults, unknown keys, env overrides, interpolation, secrets, error shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use secrecy::ExposeSecret;

use super::super::model::*;
use super::super::test_support::{Fixture, ROUTE};

const BASIC: &str = r#"
routes:
  - name: raas
    match: { path_prefix: /raas/v2/ }
    upstream: { url: "https://integration-api.tangocard.com" }
    auth:
      basic:
        username: "${TANGO_PLATFORM_NAME}"
        password_file: "${KEY_FILE}"
"#;

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = Fixture::new().ok(ROUTE);
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9901");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.inbound.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(c.inbound.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
    assert!(c.inbound.reject_browser_requests);
    assert_eq!(c.inbound.allow.len(), 2);
    assert_eq!(c.forwarded_for, ForwardedForMode::Peer);
    assert_eq!(c.token_cache, TokenCacheConfig::Memory);
    assert_eq!(c.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    let r = &c.routes[0];
    assert_eq!(r.path_prefix, "/raas/v2");
    assert_eq!(r.upstream.timeout, DEFAULT_UPSTREAM_TIMEOUT);
    assert_eq!(r.upstream.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(r.upstream.body_timeout, DEFAULT_BODY_TIMEOUT);
    assert_eq!(r.upstream.deadline, None);
    assert_eq!(r.retry, RetryConfig::default());
    assert_eq!(r.auth.kind(), "none");
}

#[test]
fn unknown_keys_are_errors_with_their_key_path() {
    let f = Fixture::new();
    let e = f.err(&format!("lisen: \"0.0.0.0:1\"\n{ROUTE}"));
    assert!(e.to_string().contains("lisen"), "{e}");
    let yaml = ROUTE.replace("auth: none", "auth: { basic: { username: u, pasword: x } }");
    let e = f.err(&yaml);
    // The typo, and then what it leaves missing: validation goes on past an unknown key.
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(
        e.problems[0].path.starts_with("routes[0].auth.basic"),
        "{e}"
    );
    assert!(e.problems[0].message.contains("pasword"), "{e}");
    assert_eq!(e.problems[1].path, "routes[0].auth.basic.password", "{e}");
    let yaml = ROUTE.replace("url:", "tiemout: 1s, url:");
    assert!(f.err(&yaml).problems[0]
        .path
        .starts_with("routes[0].upstream"));
}

#[test]
fn keys_are_not_case_folded() {
    // The config crate must not lowercase YAML keys into a valid spelling.
    let e = Fixture::new().err(&format!("Listen: \"0.0.0.0:1\"\n{ROUTE}"));
    assert!(e.to_string().contains("Listen"), "{e}");
    let yaml = ROUTE.replace("path_prefix", "Path_Prefix");
    assert!(Fixture::new().load(&yaml).is_err());
}

#[test]
fn env_overrides_any_key_including_lists() {
    let f = Fixture::new()
        .env("TANGO_GATEWAY__ADMIN__LISTEN", "127.0.0.1:9999")
        .env("TANGO_GATEWAY__INBOUND__ALLOW", "10.0.0.0/8,127.0.0.0/8")
        .env("TANGO_GATEWAY__INBOUND__MAX_BODY_BYTES", "2048")
        .env("TANGO_GATEWAY__INBOUND__REJECT_BROWSER_REQUESTS", "false")
        .env("TANGO_GATEWAY__RETRY__RETRY_ON", "429")
        .env("TANGO_GATEWAY__LOG__LEVEL", "debug")
        .env("UNRELATED", "x");
    let c = f.ok(&format!("admin: {{ listen: \"127.0.0.1:1\" }}\n{ROUTE}"));
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9999");
    let allow: Vec<String> = c.inbound.allow.iter().map(|n| n.to_string()).collect();
    assert_eq!(allow, ["10.0.0.0/8", "127.0.0.0/8"]);
    assert_eq!(c.inbound.max_body_bytes, 2048);
    assert!(!c.inbound.reject_browser_requests);
    assert_eq!(c.routes[0].retry.retry_on.statuses, [429]);
    assert!(!c.routes[0].retry.retry_on.timeout);
    assert_eq!(c.log.level, "debug");
}

#[test]
fn env_override_with_a_typo_is_an_error() {
    let f = Fixture::new().env("TANGO_GATEWAY__ADMIN__LISTN", "127.0.0.1:1");
    let problem = &f.err(ROUTE).problems[0];
    assert!(problem.path.starts_with("admin"));
    assert!(
        problem.message.contains("TANGO_GATEWAY__ADMIN__LISTN"),
        "{}",
        problem.message
    );
}

#[test]
fn a_bad_value_from_an_override_names_the_variable_not_the_file() {
    let f = Fixture::new().env("TANGO_GATEWAY__INBOUND__MAX_CONNECTIONS", "0");
    let message = f.problem_at(ROUTE, "inbound.max_connections");
    assert!(
        message.contains("environment variable TANGO_GATEWAY__INBOUND__MAX_CONNECTIONS"),
        "{message}"
    );
    // A problem of the file itself is not blamed on the environment.
    let message = Fixture::new().problem_at(
        &format!("inbound: {{ max_connections: 0 }}\n{ROUTE}"),
        "inbound.max_connections",
    );
    assert!(!message.contains("environment"), "{message}");
}

#[test]
fn interpolation_and_secret_file_with_trimming() {
    let f = Fixture::new().env("TANGO_PLATFORM_NAME", "acme");
    let key = f.file("api-key", "  s3cret-key\n");
    let f = f.env("KEY_FILE", &key);
    let c = f.ok(BASIC);
    let AuthConfig::Basic(b) = &c.routes[0].auth else {
        panic!("basic expected")
    };
    assert_eq!(b.username, "acme");
    assert_eq!(b.password.expose_secret(), "s3cret-key");
}

#[test]
fn unset_variable_names_its_key_path() {
    let f = Fixture::new().env("KEY_FILE", "/nonexistent");
    let msg = f.problem_at(BASIC, "routes[0].auth.basic.username");
    assert!(msg.contains("TANGO_PLATFORM_NAME"));
}

#[test]
fn secret_given_twice_or_not_at_all() {
    let f = Fixture::new();
    let both = ROUTE.replace(
        "auth: none",
        "auth: { basic: { username: u, password: p, password_file: /x } }",
    );
    f.problem_at(&both, "routes[0].auth.basic.password");
    let neither = ROUTE.replace("auth: none", "auth: { basic: { username: u } }");
    f.problem_at(&neither, "routes[0].auth.basic.password");
}

#[test]
fn unreadable_secret_file_names_key_and_file_not_content() {
    let f = Fixture::new();
    let missing = f.path("missing-secret");
    let yaml = ROUTE.replace(
        "auth: none",
        &format!("auth: {{ basic: {{ username: u, password_file: \"{missing}\" }} }}"),
    );
    let msg = f.problem_at(&yaml, "routes[0].auth.basic.password_file");
    assert!(msg.contains("missing-secret"), "{msg}");
    let empty = f.file("empty", " \n");
    let yaml = yaml.replace(&missing, &empty);
    f.problem_at(&yaml, "routes[0].auth.basic.password_file");
}

#[test]
fn secret_values_never_appear_in_messages() {
    let f = Fixture::new().env("API_KEY", "hunter2-very-secret");
    // A secret interpolated into a field of the wrong type: serde would quote it.
    let yaml = format!("inbound: {{ max_body_bytes: \"${{API_KEY}}\" }}\n{ROUTE}");
    let e = f.err(&yaml);
    assert!(e.has("inbound.max_body_bytes"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let yaml = format!("log: {{ format: \"${{API_KEY}}\" }}\n{ROUTE}");
    assert!(!f.err(&yaml).to_string().contains("hunter2"));
    let yaml = ROUTE.replace(
        "https://integration-api.tangocard.com",
        "http://u:${API_KEY}@h",
    );
    assert!(!f.err(&yaml).to_string().contains("hunter2"));
}

#[test]
fn invalid_yaml_is_one_problem_without_the_text() {
    let f = Fixture::new();
    let e = f.err("listen: [unclosed\n  password: hunter2\n");
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let missing = Fixture::new();
    let e = super::load_with_env(&missing.dir.path().join("nope.yaml"), &missing.env).unwrap_err();
    assert!(e.to_string().contains("nope.yaml"));
}

#[test]
fn every_problem_is_reported_one_per_line() {
    let yaml = "listen: nope\nlog: { format: xml }\ninbound: { allow: [\"10.0.0.0/33\"] }\n\
                routes:\n  - name: a\n    match: { path_prefix: raas }\n    \
                upstream: { url: \"http://h\" }\n    auth: none\n";
    let e = Fixture::new().err(yaml);
    for path in [
        "listen",
        "log.format",
        "inbound.allow[0]",
        "routes[0].match.path_prefix",
        "routes[0].upstream.url",
    ] {
        assert!(e.has(path), "missing {path} in:\n{e}");
    }
    let text = e.to_string();
    assert_eq!(text.lines().count(), e.problems.len());
    assert!(text.lines().all(|l| l.contains("gateway.yaml: ")));
    assert!(text.contains("gateway.yaml: listen: "));
}

#[test]
fn durations_are_human() {
    let yaml = ROUTE.replace(
        "url:",
        "timeout: 250ms, connect_timeout: 2s, deadline: 1m, url:",
    );
    let c = Fixture::new().ok(&format!("shutdown_grace: 5s\n{yaml}"));
    assert_eq!(c.routes[0].upstream.timeout, Duration::from_millis(250));
    assert_eq!(c.routes[0].upstream.deadline, Some(Duration::from_secs(60)));
    assert_eq!(c.shutdown_grace, Duration::from_secs(5));
    let bad = ROUTE.replace("url:", "timeout: 15, url:");
    Fixture::new().problem_at(&bad, "routes[0].upstream.timeout");
}

#[test]
fn a_log_level_typo_is_refused_with_its_key_path() {
    let message =
        Fixture::new().problem_at(&format!("log: {{ level: infoo }}\n{ROUTE}"), "log.level");
    assert!(message.contains("not a log level"), "{message}");
    let c = Fixture::new().ok(&format!(
        "log: {{ level: \"warn,tango_gateway=debug\" }}\n{ROUTE}"
    ));
    assert_eq!(c.log.level, "warn,tango_gateway=debug");
}
