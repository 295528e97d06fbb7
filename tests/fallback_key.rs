//! Two active API keys end to end (§11), through real sockets to the fake Tango: a primary
//! key Tango no longer accepts costs one `401` and every call succeeds on the fallback, which
//! stays in use for `fallback_hold`; both keys refused pass Tango's `401` to the caller after
//! one resend; a POST without `externalRefID` goes out at most twice; a new fallback key
//! arrives by a file rename with no restart.
//!
//! Each test names its route differently: the metrics are process-wide and tests run in
//! parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use http::{Method, StatusCode};
use support::process::Process;
use support::{Harness, Setup, Staged, PLATFORM};
use tango_sandbox::pki::{write_new_file, KEY_FILE_MODE};

/// A gateway whose route `route` has the harness's key as its primary and `fallback` (in
/// the file `fallback-key`) as its fallback, with `hold`; `prepare` sets up the fake first.
async fn start(
    route: &str,
    fallback: &str,
    hold: &str,
    prepare: impl FnOnce(&tango_sandbox::fake::FakeTango, &str),
) -> Harness {
    stage(Setup::new(), route, fallback, hold, prepare)
        .await
        .start()
        .await
}

/// The PKI, fake and config file of [`start`], without a gateway.
async fn stage(
    setup: Setup,
    route: &str,
    fallback: &str,
    hold: &str,
    prepare: impl FnOnce(&tango_sandbox::fake::FakeTango, &str),
) -> Staged {
    let staged = setup.stage_with(|_| {}).await;
    prepare(&staged.fake, &staged.api_key);
    let file = staged.dir.path().join("fallback-key");
    write_new_file(&file, fallback.as_bytes(), KEY_FILE_MODE, false).unwrap();
    let yaml = std::fs::read_to_string(&staged.config_file).unwrap();
    let primary = staged.dir.path().join("tango-api-key");
    let password_line = format!("        password_file: \"{}\"\n", primary.display());
    assert!(yaml.contains(&password_line), "{yaml}");
    let yaml = yaml
        .replace(
            &password_line,
            &format!(
                "{password_line}        fallback_password_file: \"{}\"\n        fallback_hold: {hold}\n",
                file.display()
            ),
        )
        .replace("  - name: raas\n", &format!("  - name: {route}\n"));
    std::fs::write(&staged.config_file, yaml).unwrap();
    staged
}

fn basic_header(password: &str) -> String {
    let pair = format!("{PLATFORM}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Which key each request the fake received carried: `P` primary, `F` fallback, `?` other.
fn keys_seen(h: &Harness, fallback: &str) -> String {
    h.fake
        .received()
        .iter()
        .map(|r| match r.header("authorization") {
            Some(v) if v == basic_header(&h.api_key) => 'P',
            Some(v) if v == basic_header(fallback) => 'F',
            _ => '?',
        })
        .collect()
}

/// The value of the series `name{route="route"}` in `/metrics` (`None` if absent).
async fn series(h: &Harness, name: &str, route: &str) -> Option<f64> {
    let text = h.admin_text("/metrics").await;
    let prefix = format!("{name}{{route=\"{route}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
}

/// Accepts only `fallback` (the primary deactivated at Tango).
fn only_fallback(fallback: &'static str) -> impl FnOnce(&tango_sandbox::fake::FakeTango, &str) {
    move |fake, primary| {
        fake.accept_basic(PLATFORM, fallback);
        fake.revoke_basic(primary);
    }
}

#[tokio::test]
async fn with_the_primary_deactivated_every_call_succeeds_on_the_fallback() {
    const FALLBACK: &str = "fallback-key-switch";
    let route = "raas-switch";
    let h = start(route, FALLBACK, "5m", only_fallback(FALLBACK)).await;
    assert_eq!(
        series(&h, "tango_gateway_basic_key_in_use", route).await,
        Some(0.0)
    );
    for _ in 0..5 {
        let answer = h.get("/raas/v2/catalogs").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.is_from_fake());
    }
    assert_eq!(
        keys_seen(&h, FALLBACK),
        "PFFFFF",
        "the primary once, then the fallback"
    );
    assert_eq!(
        series(&h, "tango_gateway_basic_key_fallbacks_total", route).await,
        Some(1.0)
    );
    assert_eq!(
        series(&h, "tango_gateway_basic_key_in_use", route).await,
        Some(1.0)
    );
    let metrics = h.admin_text("/metrics").await;
    assert!(!metrics.contains(FALLBACK) && !metrics.contains(&h.api_key));

    let (status, body) = h.admin_get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let warnings = body["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{body}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.starts_with(&format!("route {route}: ")),
        "{warning}"
    );
    assert!(warning.contains("fallback"), "{warning}");
    assert!(!warning.contains(FALLBACK) && !warning.contains(&h.api_key));
}

#[tokio::test]
async fn when_the_hold_ends_the_primary_is_tried_again() {
    const FALLBACK: &str = "fallback-key-hold";
    let route = "raas-hold";
    let h = start(route, FALLBACK, "1s", only_fallback(FALLBACK)).await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, StatusCode::OK);
    // Tango accepts the primary again; within the hold the fallback is still used.
    h.fake.accept_basic(PLATFORM, &h.api_key);
    assert_eq!(h.get("/raas/v2/catalogs").await.status, StatusCode::OK);
    assert_eq!(keys_seen(&h, FALLBACK), "PFF");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = h.admin_get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("warnings").is_none(), "the hold is over: {body}");
    h.fake.clear();
    for _ in 0..2 {
        assert_eq!(h.get("/raas/v2/catalogs").await.status, StatusCode::OK);
    }
    assert_eq!(keys_seen(&h, FALLBACK), "PP");
    assert_eq!(
        series(&h, "tango_gateway_basic_key_in_use", route).await,
        Some(0.0)
    );
    assert_eq!(
        series(&h, "tango_gateway_basic_key_fallbacks_total", route).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_post_without_external_ref_id_goes_out_at_most_twice() {
    const FALLBACK: &str = "fallback-key-post";
    let route = "raas-post";
    let order =
        r#"{"accountIdentifier":"a1","customerIdentifier":"c1","amount":5,"utid":"U000001"}"#;
    let headers = [("content-type", "application/json")];
    let h = start(route, FALLBACK, "5m", only_fallback(FALLBACK)).await;
    let answer = h
        .call(Method::POST, "/raas/v2/orders", &headers, order)
        .await;
    assert!(answer.status.is_success(), "{answer:?}");
    assert_eq!(keys_seen(&h, FALLBACK), "PF");
    let bodies: Vec<_> = h.fake.received().iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies[0], bodies[1], "the same body both times");
    assert_eq!(h.fake.orders_created(), 1);

    // Both keys refused now: one resend, then Tango's 401 to the caller; no order.
    h.fake.revoke_basic(FALLBACK);
    h.fake.clear();
    let answer = h
        .call(Method::POST, "/raas/v2/orders", &headers, order)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.is_from_fake(), "Tango's own 401");
    assert_eq!(
        keys_seen(&h, FALLBACK),
        "FP",
        "the key in use, then the other, no more"
    );
    assert_eq!(h.fake.orders_created(), 1);
}

#[tokio::test]
async fn both_keys_refused_tangos_401_reaches_the_caller() {
    const FALLBACK: &str = "fallback-key-refused";
    let route = "raas-refused";
    let h = start(route, FALLBACK, "5m", |fake, primary| {
        fake.revoke_basic(primary)
    })
    .await;
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.is_from_fake());
    assert!(answer.error_code().is_none(), "not a gateway error");
    assert_eq!(keys_seen(&h, FALLBACK), "PF");
    assert_eq!(
        series(&h, "tango_gateway_basic_key_fallbacks_total", route).await,
        Some(0.0),
        "no switch"
    );
    assert_eq!(
        series(&h, "tango_gateway_basic_key_in_use", route).await,
        Some(0.0)
    );
    let (status, body) = h.admin_get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("warnings").is_none(), "{body}");
}

/// Replaces `path` atomically (write aside, rename), as an orchestrator would.
fn replace_file(path: &Path, content: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test]
async fn a_new_fallback_key_arrives_by_file_rename_without_a_restart() {
    let route = "raas-rename";
    let h = start(route, "fallback-key-old", "5m", |_, _| {}).await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, StatusCode::OK);
    // The reloader takes its first look at the files once it runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Tango issues a second key; the operator puts it in the fallback file.
    let next = "fallback-key-next";
    h.fake.accept_basic(PLATFORM, next);
    replace_file(&h.dir.path().join("fallback-key"), next);
    let start = tokio::time::Instant::now();
    while h.gateway.generation() < 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "no reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Then the primary is deactivated: the next call costs one 401 and succeeds.
    h.fake.revoke_basic(&h.api_key);
    h.fake.clear();
    for _ in 0..3 {
        assert_eq!(h.get("/raas/v2/catalogs").await.status, StatusCode::OK);
    }
    assert_eq!(keys_seen(&h, next), "PFFF");
    assert_eq!(
        series(&h, "tango_gateway_basic_key_in_use", route).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn the_binary_logs_one_warn_line_per_switch_and_never_a_key() {
    const FALLBACK: &str = "fallback-key-logged";
    let staged = stage(
        Setup::new().log("json", "info"),
        "raas-logged",
        FALLBACK,
        "5m",
        only_fallback(FALLBACK),
    )
    .await;
    let gateway = Process::start_with_env(&staged.config_file, &[("RUST_LOG", "debug")]).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for _ in 0..3 {
        let uri = format!("http://{}/raas/v2/catalogs", gateway.listen);
        let request = http::Request::get(uri)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        assert_eq!(
            client.request(request).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let start = tokio::time::Instant::now();
    let switches = loop {
        let switches: Vec<serde_json::Value> = gateway
            .output()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| {
                event["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("accepted the fallback key"))
            })
            .collect();
        if !switches.is_empty() || start.elapsed() > Duration::from_secs(5) {
            break switches;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(switches.len(), 1, "one line per switch: {switches:?}");
    assert_eq!(switches[0]["level"], "WARN", "{}", switches[0]);
    assert_eq!(switches[0]["route"], "raas-logged", "{}", switches[0]);
    let secrets = [
        staged.api_key.clone(),
        FALLBACK.to_owned(),
        basic_header(&staged.api_key),
        basic_header(FALLBACK),
    ];
    for line in gateway.output() {
        for secret in &secrets {
            let encoded = secret.strip_prefix("Basic ").unwrap_or(secret);
            assert!(!line.contains(encoded), "a key in the log: {line}");
        }
    }
}
