//! `tango-gateway doctor` against the fake Tango, in its good state and in each broken state a
//! deployment meets: every step's verdict and hint, the exit code, and no secret printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::process::Output;

use support::{Harness, OAuth, Setup, Tls};
use tango_gateway::doctor::{self, Hint, Options, Outcome, Report, RouteReport, Step};
use tango_sandbox::fake::rejections::CannedAnswer;
use tango_sandbox::fake::Fault;

/// Runs doctor on the harness's own config file, loaded as the command loads it.
async fn doctor(h: &Harness) -> Report {
    doctor_with(h, Options::default()).await
}

async fn doctor_with(h: &Harness, options: Options) -> Report {
    let config = tango_gateway::config::load_with_env(&h.config_file, &HashMap::new()).unwrap();
    let report = doctor::run(&config, &options).await.unwrap();
    assert_no_secret(h, &report.to_string());
    report
}

fn raas(report: &Report) -> &RouteReport {
    report.route("raas").expect("route raas is reported")
}

fn outcomes(route: &RouteReport) -> Vec<(Step, Outcome)> {
    route.steps.iter().map(|s| (s.step, s.outcome)).collect()
}

/// The step failed with `hint`; every step after it that needs it is skipped.
fn assert_failed(report: &Report, step: Step, hint: Hint) {
    let route = raas(report);
    let result = route.step(step).unwrap();
    assert_eq!(result.outcome, Outcome::Fail, "{report}");
    assert_eq!(result.hint.as_ref(), Some(&hint), "{report}");
    assert!(!report.is_ok());
    let call = route.step(Step::Call).unwrap();
    if step != Step::Call {
        assert_eq!(call.outcome, Outcome::Skip, "{report}");
        assert_eq!(call.detail, format!("after {} failed", step.name()));
    }
}

/// Neither the configured secrets nor anything the fake saw in a credential header.
fn assert_no_secret(h: &Harness, text: &str) {
    let mut secrets = vec![
        h.api_key.clone(),
        h.client_secret.clone(),
        h.service_password.clone(),
        "not-the-key".to_owned(),
        "not-the-secret".to_owned(),
        "PRIVATE KEY".to_owned(),
    ];
    for request in h.fake.received() {
        for name in ["authorization", "dpop"] {
            for value in request.header_all(name) {
                let credential = value.split_once(' ').map_or(value, |(_, v)| v);
                secrets.push(credential.to_owned());
            }
        }
    }
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !text.contains(secret.as_str()),
            "a secret was printed:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_good_basic_route_passes_every_step() {
    let h = Harness::start().await;
    let report = doctor(&h).await;
    let route = raas(&report);
    let expected = [
        (Step::Dns, Outcome::Pass),
        (Step::Tcp, Outcome::Pass),
        (Step::Tls, Outcome::Pass),
        (Step::ClientCert, Outcome::Pass),
        (Step::Token, Outcome::Skip),
        (Step::Call, Outcome::Pass),
    ];
    assert_eq!(outcomes(route), expected, "{report}");
    assert!(report.is_ok());
    assert_eq!(report.summary(), "doctor: 5 passed, 0 failed, 1 skipped");
    let tls = route.step(Step::Tls).unwrap();
    assert!(tls.detail.contains("TLS 1.3"), "{}", tls.detail);
    assert!(tls.notes[0].starts_with("chain[0]: subject: "), "{tls:?}");
    let call = route.step(Step::Call).unwrap();
    assert!(call.detail.starts_with("GET /raas/v2/catalogs"), "{call:?}");
    // The call went through the gateway's stack: Basic credentials and a bare-IP XFF.
    let api_call = h.fake.received().into_iter().last().unwrap();
    assert!(api_call
        .header("authorization")
        .unwrap()
        .starts_with("Basic "));
    assert_eq!(api_call.header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_good_oauth_dpop_route_passes_every_step() {
    let h = Setup::new()
        .oauth(OAuth {
            token_nonce: true,
            api_nonce: true,
            ..OAuth::default()
        })
        .start()
        .await;
    let report = doctor(&h).await;
    let route = raas(&report);
    assert!(
        route.steps.iter().all(|s| s.outcome == Outcome::Pass),
        "{report}"
    );
    assert_eq!(report.summary(), "doctor: 6 passed, 0 failed, 0 skipped");
    let token = route.step(Step::Token).unwrap();
    assert!(token.detail.starts_with("DPoP token from"), "{token:?}");
    assert!(token.detail.contains("lifetime 1day"), "{token:?}");
    assert!(token.detail.contains("thumbprint"), "{token:?}");
}

#[tokio::test]
async fn no_client_certificate_configured_fails_its_step_with_the_hint() {
    let h = Setup::new().tls(Tls::NoClientCert).start().await;
    let report = doctor(&h).await;
    // TLS 1.3: the handshake completes; the refusal comes at the first read.
    assert_eq!(
        raas(&report).step(Step::Tls).unwrap().outcome,
        Outcome::Pass
    );
    assert_failed(&report, Step::ClientCert, Hint::ClientCertMissing);
    let text = report.to_string();
    assert!(
        text.contains(
            "hint: configure upstream.tls.client_cert_file/client_key_file; Tango's mTLS \
             endpoint requires a certificate"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_server_ca_fails_the_handshake_pointing_at_ca_file() {
    let h = Setup::new().tls(Tls::ForeignServerCa).start().await;
    let report = doctor(&h).await;
    assert_failed(&report, Step::Tls, Hint::UnknownServerCa);
    assert_eq!(
        raas(&report).step(Step::ClientCert).unwrap().detail,
        "after TLS handshake failed"
    );
}

#[tokio::test]
async fn an_xff_rejected_by_the_alb_is_not_blamed_on_credentials() {
    let h = Harness::start().await;
    h.fake.set_port_appending_proxy(true);
    let report = doctor(&h).await;
    // The certificate was accepted: the ALB answered the probe (with its 403).
    assert_eq!(
        raas(&report).step(Step::ClientCert).unwrap().outcome,
        Outcome::Pass
    );
    assert_failed(&report, Step::Call, Hint::XffRejected);
    let text = report.to_string();
    assert!(text.contains("403 Forbidden: alb_xff: "), "{text}");
    assert!(text.contains("awselb/2.0"), "{text}");
    assert!(text.contains("this is not a credentials problem"), "{text}");
}

#[tokio::test]
async fn a_wrong_basic_password_is_a_credentials_problem() {
    let h = Setup::new().wrong_key().start().await;
    let report = doctor(&h).await;
    assert_failed(&report, Step::Call, Hint::CredentialsRefused);
    let text = report.to_string();
    assert!(text.contains("401 Unauthorized: unauthorized: "), "{text}");
    assert!(text.contains("deactivated"), "{text}");
}

/// Each refusal the fake can word, named by the cause the gateway's metrics and log use, with
/// its own hint.
#[tokio::test]
async fn each_refusal_is_named_by_its_cause_with_its_fix() {
    let h = Harness::start().await;
    for (answer, cause, hint) in [
        (CannedAnswer::alb_forbidden(), "alb_xff", Hint::XffRejected),
        (
            CannedAnswer::alb_bad_gateway(),
            "alb_other",
            Hint::AlbRefused,
        ),
        (
            CannedAnswer::browser_refused(),
            "browser_refused",
            Hint::BrowserRefused,
        ),
        (
            CannedAnswer::unauthorized(),
            "unauthorized",
            Hint::CredentialsRefused,
        ),
        (
            CannedAnswer::dpop_challenge("invalid_dpop_proof"),
            "dpop_invalid",
            Hint::DpopInvalid,
        ),
        (
            CannedAnswer::rate_limited(30),
            "rate_limited",
            Hint::RateLimited,
        ),
    ] {
        // Enough for every attempt the route's retry policy makes; the probe (step 4) takes
        // one, the call the rest; what is left is cleared for the next case.
        h.fake.push_fault(Fault::Answer { answer, times: 8 });
        let report = doctor(&h).await;
        h.fake.clear_faults();
        assert_failed(&report, Step::Call, hint);
        let call = raas(&report).step(Step::Call).unwrap();
        assert!(call.detail.contains(&format!(": {cause}: ")), "{report}");
    }
}

#[tokio::test]
async fn a_wrong_client_secret_fails_the_token_step() {
    let h = Setup::new()
        .oauth(OAuth {
            wrong_secret: true,
            ..OAuth::default()
        })
        .start()
        .await;
    let report = doctor(&h).await;
    assert_failed(&report, Step::Token, Hint::OAuthClientRefused);
    let token = raas(&report).step(Step::Token).unwrap();
    assert!(token.detail.contains("invalid_client"), "{token:?}");
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_fails_the_token_step() {
    let h = Setup::new()
        .oauth(OAuth {
            token_endpoint_down: true,
            ..OAuth::default()
        })
        .start()
        .await;
    let report = doctor(&h).await;
    assert_failed(&report, Step::Token, Hint::TokenEndpointDown);
    assert!(report
        .to_string()
        .contains("hint: token endpoint down or unreachable"));
}

#[tokio::test]
async fn route_and_path_options_choose_what_is_checked() {
    let h = Setup::new()
        .extra_route("v1", "/raas/v1/", None)
        .start()
        .await;
    let options = Options {
        route: Some("raas".to_owned()),
        path: Some("/raas/v2/customers".to_owned()),
    };
    let report = doctor_with(&h, options).await;
    assert_eq!(report.routes.len(), 1, "{report}");
    assert!(report.is_ok(), "{report}");
    let last = h.fake.received().into_iter().last().unwrap();
    assert_eq!(last.path_and_query, "/raas/v2/customers");
}

/// The binary on the harness's config file, run off the runtime so the fake keeps serving.
async fn doctor_binary(h: &Harness, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tango-gateway"));
    command.arg("doctor").arg("--config").arg(&h.config_file);
    command.args(args).env_clear();
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    for stream in [&output.stdout, &output.stderr] {
        assert_no_secret(h, &String::from_utf8_lossy(stream));
    }
    output
}

#[tokio::test]
async fn the_command_prints_each_step_and_exits_0_when_all_pass() {
    let h = Harness::start().await;
    let output = doctor_binary(&h, &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("route raas: https://localhost:"),
        "{stdout}"
    );
    for prefix in [
        "  [PASS] DNS: localhost → ",
        "  [PASS] TCP: connected to ",
        "  [PASS] TLS handshake: TLS 1.3, ALPN h2, server certificate verified for localhost",
        "  [PASS] client certificate: client certificate ",
        "  [SKIP] token fetch: not an OAuth route (auth: basic)",
        "  [PASS] authenticated call: GET /raas/v2/catalogs",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "no line starts with {prefix:?}:\n{stdout}"
        );
    }
    assert_eq!(lines.last(), Some(&"doctor: 5 passed, 0 failed, 1 skipped"));
}

#[tokio::test]
async fn the_command_exits_1_with_the_hint_when_a_step_fails() {
    let h = Harness::start().await;
    h.fake.set_port_appending_proxy(true);
    let output = doctor_binary(&h, &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let fail = stdout
        .lines()
        .position(|l| l.starts_with("  [FAIL] authenticated call: GET /raas/v2/catalogs"))
        .unwrap_or_else(|| panic!("no FAIL line for the call:\n{stdout}"));
    let hint = stdout.lines().nth(fail + 1).unwrap();
    assert!(
        hint.starts_with("         hint: Tango's AWS ALB refused X-Forwarded-For"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("doctor: 4 passed, 1 failed, 1 skipped\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn usage_and_configuration_errors_exit_2() {
    let h = Harness::start().await;
    let output = doctor_binary(&h, &["--route", "nope"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--route nope: no such route (routes: raas)"),
        "{stderr}"
    );

    std::fs::write(&h.config_file, "routes: [\n").unwrap();
    let output = doctor_binary(&h, &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}
