//! Clock skew end to end (PRODUCT.md §11): a fake Tango whose clock is 90 s ahead of the
//! gateway's host. Its `Date` headers say so and its DPoP verifier judges `iat` by that clock
//! (±60 s), so proofs signed on the local clock are refused, and proofs signed with
//! `dpop.clock: server` (the offset read from `Date`) are accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, SystemTime};

use support::{Harness, OAuth, Setup};
use tango_sandbox::fake::dpop_verify::{verify_proof, ProofCheck};
use tango_sandbox::fake::RecordedRequest;
use tokio::time::Instant;

const TOKEN_PATH: &str = "/oauth/token";
const AHEAD: Duration = Duration::from_secs(90);
/// How long a test waits for something the gateway does within a second or two.
const PATIENCE: Duration = Duration::from_secs(20);

async fn start(clock: &'static str) -> Harness {
    Setup::new()
        .oauth(OAuth {
            dpop_clock: Some(clock),
            ..OAuth::default()
        })
        .start_with(|fake| fake.set_clock_offset(90))
        .await
}

/// `https://localhost:PORT` with the port written out, as the gauge's label has it.
fn origin(h: &Harness) -> String {
    format!("https://localhost:{}", h.fake.addr().port())
}

/// The clock skew gauge of the fake's origin, once it has one.
async fn skew_gauge(h: &Harness) -> f64 {
    let prefix = format!(
        "tango_gateway_clock_skew_seconds{{origin=\"{}\"}} ",
        origin(h)
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = h.admin_text("/metrics").await;
        if let Some(value) = text.lines().find_map(|l| l.strip_prefix(&prefix)) {
            return value.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no skew gauge for {prefix:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `/readyz` until it lists the clock skew warning; returns status and the warning.
async fn readyz_skew_warning(h: &Harness) -> (http::StatusCode, String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = h.admin_get("/readyz").await;
        let warning = body["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str())
            .find(|w| w.starts_with("clock skew"));
        if let Some(warning) = warning {
            return (status, warning.to_owned());
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never warned of clock skew: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn requests(h: &Harness, token: bool) -> Vec<RecordedRequest> {
    h.fake
        .received()
        .into_iter()
        .filter(|r| r.path_and_query.starts_with(TOKEN_PATH) == token)
        .collect()
}

/// The `iat` of a recorded API request's proof, verified as an edge whose clock is `at`.
fn verified_iat(h: &Harness, request: &RecordedRequest, at: SystemTime) -> i64 {
    let token = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("DPoP "))
        .expect("a DPoP-bound token");
    let path = request.path_and_query.split('?').next().unwrap();
    let htu = format!("{}{path}", h.fake.url());
    let check = ProofCheck {
        method: request.method.as_str(),
        htu: &htu,
        access_token: Some(token),
        nonce: None,
        now: at,
    };
    verify_proof(request.header("dpop").unwrap(), &check)
        .unwrap_or_else(|e| panic!("proof refused at {at:?}: {e:?}"))
        .iat
}

fn unix(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

#[tokio::test]
async fn with_the_local_clock_proofs_are_refused_and_the_skew_is_reported() {
    let h = start("local").await;
    // The token request's proof is 90 s behind the fake's clock: refused, and the refusal's
    // Date tells the offset.
    let (status, warning) = readyz_skew_warning(&h).await;
    assert_eq!(status, 503, "no token: not ready ({warning})");
    assert!(warning.contains(&origin(&h)), "{warning}");
    // The offset is read from a Date with 1 s resolution and reads low by the answer's
    // latency: a few seconds below +90 on a busy machine, never above +92.
    let said: i64 = warning
        .split(" is +")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no +N s in {warning}"));
    assert!((85..=92).contains(&said), "{warning}");
    let skew = skew_gauge(&h).await;
    assert!((85.0..=92.0).contains(&skew), "gauge {skew}");
    assert_eq!(h.fake.tokens_issued(), 0);
    let refusal = h.fake.last_proof_error().unwrap_or_default();
    assert!(refusal.contains("iat"), "{refusal}");

    let answer = h.get("/raas/v2/catalogs").await;
    answer.assert_gateway_error(503, "gateway.credentials_unavailable");
    assert!(requests(&h, false).is_empty(), "nothing reached the API");
}

#[tokio::test]
async fn with_the_server_clock_proofs_are_accepted_after_the_first_answer() {
    let h = start("server").await;
    h.wait_ready().await;
    // The first token request was signed before any Date was seen and refused; its answer
    // gave the offset and the request was signed again at once.
    let token_requests = requests(&h, true);
    assert_eq!(token_requests.len(), 2, "refused once, then accepted");
    assert_eq!(h.fake.tokens_issued(), 1);
    // Ready, and still warned: the clocks are 90 s apart whatever the gateway signs with.
    let (status, warning) = readyz_skew_warning(&h).await;
    assert_eq!(status, 200, "{warning}");
    let skew = skew_gauge(&h).await;
    assert!((85.0..=92.0).contains(&skew), "gauge {skew}");

    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(answer.is_from_fake());
    let api = requests(&h, false);
    assert_eq!(api.len(), 1, "accepted at the first attempt");
    // The proof's iat is on the fake's clock (±2 s: the Date's resolution and latency), and
    // would be refused by an edge on the local clock.
    let iat = verified_iat(&h, &api[0], SystemTime::now() + AHEAD);
    let expected = unix(SystemTime::now() + AHEAD);
    assert!(
        (iat - expected).abs() <= 2,
        "iat {iat}, fake's now {expected}"
    );
}

#[tokio::test]
async fn a_refused_proof_is_signed_again_when_the_server_clock_jumped() {
    let h = start("server").await;
    h.wait_ready().await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    let tokens_before = requests(&h, true).len();
    // The fake's clock jumps from 90 s ahead to 90 s behind: the next proof, signed with the
    // known +90 s, is 180 s off. The refusal's Date gives the new offset, and the same
    // request is signed again with it: same token, no token request.
    h.fake.set_clock_offset(-90);
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let api = requests(&h, false);
    assert_eq!(api.len(), 3, "one refused, one resent");
    assert_eq!(h.fake.api_auth_failures(), 1);
    assert_eq!(
        requests(&h, true).len(),
        tokens_before,
        "no token request for a refused proof"
    );
    assert_eq!(
        api[1].header("authorization"),
        api[2].header("authorization"),
        "the same token"
    );
    let skew = skew_gauge(&h).await;
    assert!((-95.0..=-88.0).contains(&skew), "gauge {skew}");
}
