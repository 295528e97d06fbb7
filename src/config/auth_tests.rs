//! `auth.basic`'s second key (§11): exactly one of `fallback_password` / `_file` or neither,
//! `fallback_hold` only with one, its file watched for reloads, its value never in a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use secrecy::ExposeSecret;

use super::super::model::{AuthConfig, BasicAuthConfig, DEFAULT_FALLBACK_HOLD};
use super::super::test_support::{Fixture, ROUTE};

fn with_basic(extra: &str) -> String {
    ROUTE.replace(
        "auth: none",
        &format!("auth: {{ basic: {{ username: u, password: primary-key{extra} }} }}"),
    )
}

fn basic(f: &Fixture, yaml: &str) -> BasicAuthConfig {
    match &f.ok(yaml).routes[0].auth {
        AuthConfig::Basic(b) => b.clone(),
        other => panic!("basic expected, got {}", other.kind()),
    }
}

#[test]
fn no_fallback_by_default() {
    let f = Fixture::new();
    assert!(basic(&f, &with_basic("")).fallback.is_none());
}

#[test]
fn a_fallback_key_with_the_default_hold() {
    let f = Fixture::new();
    let b = basic(&f, &with_basic(", fallback_password: second-key"));
    let fallback = b.fallback.expect("a fallback");
    assert_eq!(fallback.password.expose_secret(), "second-key");
    assert_eq!(fallback.hold, DEFAULT_FALLBACK_HOLD);
    assert_eq!(DEFAULT_FALLBACK_HOLD, Duration::from_secs(300));
}

#[test]
fn a_fallback_key_from_a_file_trimmed_with_its_hold() {
    let f = Fixture::new();
    let file = f.file("fallback-key", "  second-key\n");
    let b = basic(
        &f,
        &with_basic(&format!(
            ", fallback_password_file: \"{file}\", fallback_hold: 90s"
        )),
    );
    let fallback = b.fallback.expect("a fallback");
    assert_eq!(fallback.password.expose_secret(), "second-key");
    assert_eq!(fallback.hold, Duration::from_secs(90));
}

#[test]
fn the_fallback_given_twice_is_refused_at_its_key() {
    let f = Fixture::new();
    let message = f.problem_at(
        &with_basic(", fallback_password: a, fallback_password_file: /x"),
        "routes[0].auth.basic.fallback_password",
    );
    assert!(message.contains("not both"), "{message}");
}

#[test]
fn a_hold_without_a_fallback_is_refused_at_its_key() {
    let f = Fixture::new();
    let message = f.problem_at(
        &with_basic(", fallback_hold: 5m"),
        "routes[0].auth.basic.fallback_hold",
    );
    assert!(message.contains("fallback_password"), "{message}");
}

#[test]
fn a_bad_or_zero_hold_is_refused_at_its_key() {
    let f = Fixture::new();
    for hold in ["soon", "0s"] {
        f.problem_at(
            &with_basic(&format!(", fallback_password: b, fallback_hold: {hold}")),
            "routes[0].auth.basic.fallback_hold",
        );
    }
}

#[test]
fn an_empty_or_unreadable_fallback_names_its_key_never_a_value() {
    let f = Fixture::new();
    f.problem_at(
        &with_basic(", fallback_password: \"  \""),
        "routes[0].auth.basic.fallback_password",
    );
    let missing = f.path("missing-fallback");
    let errors = f.err(&with_basic(&format!(
        ", fallback_password_file: \"{missing}\""
    )));
    let text = errors.to_string();
    assert!(
        text.contains("routes[0].auth.basic.fallback_password_file"),
        "{text}"
    );
    assert!(!text.contains("primary-key"), "{text}");
}

#[test]
fn the_fallback_file_is_watched_for_reloads() {
    let f = Fixture::new();
    let primary = f.file("primary-key", "primary-key");
    let fallback = f.file("fallback-key", "second-key");
    let yaml = ROUTE.replace(
        "auth: none",
        &format!(
            "auth: {{ basic: {{ username: u, password_file: \"{primary}\", fallback_password_file: \"{fallback}\" }} }}"
        ),
    );
    let config = f.file("gateway.yaml", &yaml);
    let watched = super::super::watched_files(std::path::Path::new(&config), &f.env);
    let watched: Vec<String> = watched.iter().map(|p| p.display().to_string()).collect();
    assert!(watched.contains(&primary), "{watched:?}");
    assert!(watched.contains(&fallback), "{watched:?}");
}

#[test]
fn debug_never_shows_the_fallback_key() {
    let f = Fixture::new();
    let b = basic(&f, &with_basic(", fallback_password: second-key"));
    let text = format!("{b:?}");
    assert!(!text.contains("second-key"), "{text}");
    assert!(!text.contains("primary-key"), "{text}");
}
