//! The runner: which routes and paths, and the order and skipping of steps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use super::*;

/// A configuration whose routes are `(name, prefix, url)`, loaded as `run` loads one.
fn config(routes: &[(&str, &str, &str)]) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("routes:\n");
    for (name, prefix, url) in routes {
        yaml += &format!(
            "  - name: {name}\n    match: {{ path_prefix: \"{prefix}\" }}\n    \
             upstream: {{ url: \"{url}\", connect_timeout: 2s }}\n    auth: none\n"
        );
    }
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    crate::config::load_with_env(&file, &HashMap::new()).unwrap()
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn the_default_path_is_the_prefix_joined_with_catalogs() {
    let config = config(&[
        ("raas", "/raas/v2/", "https://api.example"),
        ("all", "/", "https://api.example"),
    ]);
    let path = |i: usize| call_path(&config.routes[i], None).unwrap().to_string();
    assert_eq!(path(0), "/raas/v2/catalogs");
    assert_eq!(path(1), "/raas/v2/catalogs");
}

#[test]
fn a_given_path_must_lie_under_the_route() {
    let config = config(&[("raas", "/raas/v2", "https://api.example")]);
    let route = &config.routes[0];
    let path = |p: &str| call_path(route, Some(p)).map(|p| p.to_string());
    assert_eq!(
        path("/raas/v2/customers?x=1").unwrap(),
        "/raas/v2/customers?x=1"
    );
    for bad in [
        "raas/v2/catalogs",
        "/raas/v1/catalogs",
        "/raas/v2/../v1/x",
        "/raas/v2x",
    ] {
        assert!(
            matches!(path(bad), Err(DoctorError::BadPath { .. })),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn an_unknown_route_lists_the_known_ones() {
    let config = config(&[
        ("raas", "/raas/v2", "https://api.example"),
        ("v1", "/raas/v1", "https://api.example"),
    ]);
    let options = Options {
        route: Some("nope".to_owned()),
        path: None,
    };
    let err = run(&config, &options).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "--route nope: no such route (routes: raas, v1)"
    );
}

#[tokio::test]
async fn steps_after_a_failed_tcp_connect_are_skipped_naming_it() {
    let url = format!("https://127.0.0.1:{}", closed_port());
    let config = config(&[("raas", "/raas/v2", &url)]);
    let mut seen = Vec::new();
    let report = run_with(&config, &Options::default(), |event| {
        if let Progress::Step(step) = event {
            seen.push(step.step);
        }
    })
    .await
    .unwrap();
    assert_eq!(seen, Step::ALL);
    let route = report.route("raas").unwrap();
    let outcome = |step| route.step(step).unwrap().outcome;
    assert_eq!(outcome(Step::Dns), Outcome::Pass);
    assert_eq!(outcome(Step::Tcp), Outcome::Fail);
    assert_eq!(route.step(Step::Tcp).unwrap().hint, Some(Hint::TcpFailed));
    for step in [Step::Tls, Step::ClientCert, Step::Call] {
        assert_eq!(route.step(step).unwrap().detail, "after TCP failed");
    }
    assert_eq!(
        route.step(Step::Token).unwrap().detail,
        "not an OAuth route (auth: none)"
    );
    assert_eq!(report.summary(), "doctor: 1 passed, 1 failed, 4 skipped");
    assert!(!report.is_ok());
}

#[test]
fn the_probe_goes_where_the_gateway_would_send_the_call() {
    let config = config(&[("raas", "/raas/v2", "https://api.example/base")]);
    assert_eq!(
        upstream_target(&config.routes[0], "/raas/v2/catalogs"),
        "/base/raas/v2/catalogs"
    );
}
