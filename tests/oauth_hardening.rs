//! OAuth hardening end to end (PRODUCT.md §5, §12), against the fake Tango over real mTLS:
//! a `401` makes a credential fetch at most once per 10 s, and a Bearer token is never used
//! where DPoP is configured, whether the token endpoint answers one or a token store holds
//! one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use http::StatusCode;
use support::{Harness, OAuth, Setup};
use tango_sandbox::fake::RecordedRequest;

const TOKEN_PATH: &str = "/oauth/token";
const API_PATH: &str = "/raas/v2/catalogs";
/// What `/readyz` must name when the token endpoint answers Bearer to a DPoP credential.
const BEARER_REASON: &str =
    "the token endpoint answered token_type Bearer; this route requires DPoP-bound tokens";

async fn start(oauth: OAuth) -> Harness {
    Setup::new().oauth(oauth).start().await
}

fn api_requests(h: &Harness) -> Vec<RecordedRequest> {
    h.fake
        .received()
        .into_iter()
        .filter(|r| !r.path_and_query.starts_with(TOKEN_PATH))
        .collect()
}

/// The scheme of an API request's `Authorization` (`DPoP` or `Bearer`).
fn scheme(request: &RecordedRequest) -> String {
    let value = request.header("authorization").expect("an Authorization");
    value
        .split_once(' ')
        .expect("scheme and token")
        .0
        .to_owned()
}

/// Asserts that every API request the fake saw carried a DPoP-bound token with a proof.
fn assert_all_dpop(h: &Harness) {
    for request in api_requests(h) {
        assert_eq!(scheme(&request), "DPoP", "never Bearer on a DPoP route");
        assert!(
            request.header("dpop").is_some(),
            "every attempt has a proof"
        );
    }
}

/// Polls `/readyz` (at most 15 s: patience for a busy machine, not a limit under test) until
/// its body mentions `needle`; returns status and body.
async fn readyz_mentioning(h: &Harness, needle: &str) -> (StatusCode, String) {
    for _ in 0..300 {
        let (status, body) = h.admin_get("/readyz").await;
        let body = body.to_string();
        if body.contains(needle) {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = h.admin_get("/readyz").await;
    panic!("/readyz never mentioned {needle:?}: {status} {body}");
}

#[tokio::test]
async fn ten_sequential_401s_make_at_most_one_token_request() {
    let h = start(OAuth::default()).await;
    h.wait_ready().await;
    assert_eq!(h.fake.token_requests(), 1, "the start-up token");
    h.fake.set_refuse_all_tokens(true);
    for call in 0..10 {
        let answer = h.get(API_PATH).await;
        assert_eq!(
            answer.status, 401,
            "call {call}: Tango's answer goes through"
        );
        assert!(
            answer.is_from_fake(),
            "call {call}: not a gateway-made error"
        );
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("invalid_token"),
            "call {call}: {challenge}"
        );
    }
    assert_eq!(
        h.fake.token_requests(),
        2,
        "one 401 refresh beyond the start-up token, whatever the number of 401s"
    );
    assert_eq!(
        api_requests(&h).len(),
        11,
        "the first call was resent once with the new token; the others were not resent"
    );
    assert_eq!(h.fake.api_auth_failures(), 11);
    assert_eq!(
        h.admin_get("/readyz").await.0,
        200,
        "a refused token does not make the gateway unready"
    );
    // Tango accepts the current token again: it is still in use, no fetch needed.
    h.fake.set_refuse_all_tokens(false);
    assert_eq!(h.get(API_PATH).await.status, 200);
    assert_eq!(h.fake.token_requests(), 2);
}

#[tokio::test]
async fn within_the_401_window_a_nonce_challenge_is_still_answered() {
    let h = start(OAuth {
        api_nonce: true,
        ..OAuth::default()
    })
    .await;
    assert_eq!(h.get(API_PATH).await.status, 200);
    h.fake.set_refuse_all_tokens(true);
    assert_eq!(h.get(API_PATH).await.status, 401);
    assert_eq!(h.fake.token_requests(), 2, "the 401 refreshed once");
    // Within the 10 s that follow, a nonce challenge is the nonce rule (same token, new
    // proof), not the refresh rule: it is answered, and needs no token request.
    h.fake.set_refuse_all_tokens(false);
    h.fake.rotate_nonce();
    h.fake.clear();
    let answer = h.get(API_PATH).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = api_requests(&h);
    assert_eq!(seen.len(), 2, "challenged, then resent with the nonce");
    assert_eq!(
        seen[0].header("authorization"),
        seen[1].header("authorization")
    );
    assert_eq!(h.fake.token_requests(), 2);
    assert_all_dpop(&h);
}

#[tokio::test]
async fn a_bearer_answer_is_never_used_when_dpop_is_configured() {
    let h = start(OAuth {
        bearer_only: true,
        ..OAuth::default()
    })
    .await;
    let (status, body) = readyz_mentioning(&h, BEARER_REASON).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("route raas: OAuth"), "{body}");
    assert!(!body.contains(&h.client_secret));
    h.get(API_PATH)
        .await
        .assert_gateway_error(503, "gateway.credentials_unavailable");
    assert!(api_requests(&h).is_empty(), "nothing reached the API");
    assert_eq!(h.fake.tokens_issued(), 1, "the fake issued one, unused");
    assert_eq!(
        h.fake.token_requests(),
        1,
        "treated like a refusal of the client: retried slowly"
    );
}

#[tokio::test]
async fn a_bearer_answer_to_a_refresh_is_not_used_either() {
    let h = start(OAuth::default()).await;
    assert_eq!(h.get(API_PATH).await.status, 200);
    h.fake.set_bearer_only(true);
    h.fake.revoke_tokens();
    // The 401 drops the revoked token; its replacement is a Bearer token, never sent.
    h.get(API_PATH)
        .await
        .assert_gateway_error(503, "gateway.credentials_unavailable");
    assert_eq!(h.fake.token_requests(), 2);
    assert_eq!(h.fake.tokens_issued(), 2);
    assert_eq!(api_requests(&h).len(), 2, "no resend with the Bearer token");
    assert_all_dpop(&h);
    let (status, body) = readyz_mentioning(&h, BEARER_REASON).await;
    assert_eq!(status, 503, "{body}");
    h.get(API_PATH)
        .await
        .assert_gateway_error(503, "gateway.credentials_unavailable");
    assert_eq!(api_requests(&h).len(), 2);
}

#[tokio::test]
async fn a_bearer_token_in_the_file_store_is_never_served_on_a_dpop_route() {
    let mut h = start(OAuth {
        file_store: true,
        ..OAuth::default()
    })
    .await;
    assert_eq!(h.get(API_PATH).await.status, 200);
    // The store writes the token after the call could use it: wait for the file (replaced
    // atomically, so once there it holds the token).
    let file = h.dir.path().join("tokens.json");
    for _ in 0..750 {
        if file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        file.exists(),
        "the token was never saved to {}",
        file.display()
    );
    // Relabel the stored token as Bearer (what a gateway that followed a Bearer answer
    // would have kept). Written in place, so the file keeps its 0600 mode.
    let mut stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let tokens = stored["tokens"].as_object_mut().expect("a tokens map");
    assert_eq!(tokens.len(), 1);
    for entry in tokens.values_mut() {
        assert_eq!(entry["token_type"], "DPoP");
        entry["token_type"] = "Bearer".into();
    }
    std::fs::write(&file, stored.to_string()).unwrap();

    h.restart_gateway().await;
    h.wait_ready().await;
    assert_eq!(h.get(API_PATH).await.status, 200);
    assert_eq!(
        h.fake.token_requests(),
        2,
        "the stored Bearer token was ignored and a DPoP-bound one fetched"
    );
    assert_eq!(
        h.fake.api_auth_failures(),
        0,
        "the stored token was never sent"
    );
    assert_all_dpop(&h);
}
