//! OAuth 2.0 and DPoP end to end (PRODUCT.md §5): the gateway against the fake's token
//! endpoint and API over real mTLS.
//!
//! Proofs are checked with the fake's verifier (`tango_sandbox::fake::dpop_verify`: hand-split
//! JWS, aws-lc-rs ECDSA), which shares no code with the gateway's signer (`jsonwebtoken`), and
//! the key thumbprint is recomputed here from the key file's public point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::Method;
use serde_json::Value;
use support::{Harness, OAuth, Setup, AUDIENCE, CLIENT_ID, SERVICE_ACCOUNT};
use tango_sandbox::fake::dpop_verify::{verify_proof, ProofCheck};
use tango_sandbox::fake::{Fault, RecordedRequest, TokenFault};
use tokio::time::Instant;

const TOKEN_PATH: &str = "/oauth/token";
/// How long a test waits for something the gateway does within a second or two: generous,
/// so a busy machine cannot fail it. Tests wait for events, never for a fixed time; how long
/// the cache takes to do things is measured exactly by its unit tests (paused time).
const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `done` holds, polling; panics after [`PATIENCE`] naming `what`.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `/readyz` until its body mentions `needle`; returns status and body.
async fn readyz_mentioning(h: &Harness, needle: &str) -> (http::StatusCode, String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = h.admin_get("/readyz").await;
        let body = body.to_string();
        if body.contains(needle) {
            return (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never mentioned {needle:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the token file holds a token (it is replaced atomically: never half written).
fn holds_a_token(file: &Path) -> bool {
    std::fs::read(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|stored| {
            stored["tokens"]
                .as_object()
                .map(|tokens| !tokens.is_empty())
        })
        .unwrap_or(false)
}

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

fn token_requests(h: &Harness) -> Vec<RecordedRequest> {
    h.fake
        .received()
        .into_iter()
        .filter(|r| r.path_and_query.starts_with(TOKEN_PATH))
        .collect()
}

/// RFC 7638 thumbprint of the DPoP key file, from its public point (not from the gateway).
fn key_file_thumbprint(h: &Harness) -> String {
    let pem = std::fs::read_to_string(h.dir.path().join("dpop.key")).unwrap();
    let key = rcgen::KeyPair::from_pem(&pem).unwrap();
    let point = key.public_key_raw();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..65])
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The access token of an API request (`Authorization: DPoP <token>`).
fn presented_token(request: &RecordedRequest) -> (String, String) {
    let value = request
        .header("authorization")
        .expect("an Authorization header");
    let (scheme, token) = value.split_once(' ').expect("scheme and token");
    (scheme.to_owned(), token.to_owned())
}

/// The claims of a compact JWS (the fake's access token, or a DPoP proof), unverified.
fn jws_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT-shaped token");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Verifies the DPoP proof of a recorded API request as the fake's edge would, for the URL
/// the fake is reached at; returns the proof's claims.
fn verified_claims(h: &Harness, request: &RecordedRequest) -> Value {
    let (scheme, token) = presented_token(request);
    assert_eq!(scheme, "DPoP", "a DPoP-bound token is never sent as Bearer");
    let path = request.path_and_query.split('?').next().unwrap().to_owned();
    let htu = format!("{}{path}", h.fake.url());
    let proof = request.header("dpop").expect("a DPoP proof");
    let verified = verify_proof(
        proof,
        &ProofCheck {
            method: request.method.as_str(),
            htu: &htu,
            access_token: Some(&token),
            nonce: None,
            now: SystemTime::now(),
        },
    )
    .unwrap_or_else(|e| panic!("proof of {} {htu} does not verify: {e:?}", request.method));
    assert_eq!(
        verified.jkt,
        key_file_thumbprint(h),
        "proof signed by the key file's key"
    );
    assert_eq!(
        jws_claims(&token)["cnf"]["jkt"],
        verified.jkt.as_str(),
        "the token is bound to the proof's key"
    );
    verified.claims
}

#[tokio::test]
async fn a_hundred_concurrent_calls_on_a_cold_cache_make_one_token_request() {
    let h = start(OAuth {
        // The first token takes a while, so every call below arrives before it exists.
        first_token_delay: Some(Duration::from_millis(500)),
        ..OAuth::default()
    })
    .await;
    let calls = (0..100).map(|_| h.get("/raas/v2/catalogs"));
    let answers = futures_util::future::join_all(calls).await;
    for answer in &answers {
        assert_eq!(
            answer.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(answer.is_from_fake());
    }
    assert_eq!(h.fake.token_requests(), 1);
    assert_eq!(h.fake.tokens_issued(), 1);
    assert_eq!(api_requests(&h).len(), 100);
    assert_eq!(h.fake.api_auth_failures(), 0);
}

#[tokio::test]
async fn the_first_token_is_fetched_at_start_and_readyz_waits_for_it() {
    // The token endpoint holds the first token back until this test lets it go, so /readyz
    // is asked while there is none, however long the start took. (While a first fetch is
    // still in flight /readyz says "no token yet": the cache's unit test.)
    let h = start(OAuth {
        token_endpoint_down: true,
        ..OAuth::default()
    })
    .await;
    wait_until("the start-up token request", || h.fake.token_requests() > 0).await;
    let (status, body) = h.admin_get("/readyz").await;
    assert_eq!(status, 503, "not ready before the first token: {body}");
    assert!(body.to_string().contains("OAuth"), "{body}");
    h.fake.set_token_endpoint_down(false);
    h.wait_ready().await;
    // Fetched without any call having been made.
    assert_eq!(h.fake.tokens_issued(), 1);
    assert!(api_requests(&h).is_empty());
}

#[tokio::test]
async fn dpop_proofs_verify_on_a_get_with_a_query_and_on_a_post() {
    let h = start(OAuth::default()).await;
    let answer = h.get("/raas/v2/catalogs?verbose=true&x=%20y").await;
    assert_eq!(answer.status, 200);
    let order = r#"{"externalRefID":"o-1","customerIdentifier":"c","accountIdentifier":"a","amount":5,"utid":"U1"}"#;
    let answer = h
        .call(
            Method::POST,
            "/raas/v2/orders",
            &[("content-type", "application/json")],
            order,
        )
        .await;
    assert!(answer.status.is_success(), "{answer:?}");
    let seen = api_requests(&h);
    assert_eq!(seen.len(), 2);
    let get = verified_claims(&h, &seen[0]);
    assert_eq!(get["htm"], "GET");
    assert_eq!(get["htu"], format!("{}/raas/v2/catalogs", h.fake.url()));
    let post = verified_claims(&h, &seen[1]);
    assert_eq!(post["htm"], "POST");
    assert_eq!(post["htu"], format!("{}/raas/v2/orders", h.fake.url()));
    assert_ne!(get["jti"], post["jti"]);
    // The token request carried a proof too: no `ath` there.
    let token_request = &token_requests(&h)[0];
    let proof = verify_proof(
        token_request
            .header("dpop")
            .expect("a proof on the token request"),
        &ProofCheck {
            method: "POST",
            htu: &h.fake.token_endpoint_url(),
            access_token: None,
            nonce: None,
            now: SystemTime::now(),
        },
    )
    .unwrap();
    assert!(proof.claims.get("ath").is_none());
    assert_eq!(proof.jkt, key_file_thumbprint(&h));
}

#[tokio::test]
async fn the_token_request_follows_section_5() {
    let h = start(OAuth::default()).await;
    h.wait_ready().await;
    let request = &token_requests(&h)[0];
    assert_eq!(request.method, Method::POST);
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(String, String)> = form_urlencoded::parse(&request.body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("grant_type"), Some("client_credentials"));
    assert_eq!(field("client_id"), Some(CLIENT_ID));
    assert_eq!(field("client_secret"), Some(h.client_secret.as_str()));
    assert_eq!(field("audience"), Some(AUDIENCE));
    assert_eq!(field("scope"), Some("raas.all"));
    assert_eq!(
        request.client_cn.as_deref(),
        Some(tango_sandbox::pki::DEV_CLIENT_CN),
        "the route's client certificate is presented to the token endpoint"
    );
}

#[tokio::test]
async fn password_grant_with_basic_client_auth() {
    let h = start(OAuth {
        grant: "password",
        client_auth: "basic",
        ..OAuth::default()
    })
    .await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    let request = &token_requests(&h)[0];
    let form: Vec<(String, String)> = form_urlencoded::parse(&request.body).into_owned().collect();
    let names: HashSet<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        !names.contains("client_secret"),
        "secret only in the Basic header"
    );
    assert!(form.contains(&("grant_type".into(), "password".into())));
    assert!(form.contains(&("username".into(), SERVICE_ACCOUNT.into())));
    assert!(form.contains(&("password".into(), h.service_password.clone())));
    let basic = request.header("authorization").unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("{CLIENT_ID}:{}", h.client_secret)
    );
}

#[tokio::test]
async fn a_retried_attempt_carries_a_new_proof() {
    let h = start(OAuth::default()).await;
    h.wait_ready().await;
    h.fake.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
        times: 1,
    });
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    let seen = api_requests(&h);
    assert_eq!(seen.len(), 2);
    let jtis: HashSet<String> = seen
        .iter()
        .map(|r| verified_claims(&h, r)["jti"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(jtis.len(), 2, "each attempt signs its own proof");
}

#[tokio::test]
async fn a_401_drops_the_token_and_the_call_succeeds_with_a_new_one() {
    let h = start(OAuth::default()).await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    h.fake.revoke_tokens();
    // A POST without externalRefID: never retried for a failure, but a 401 is safe to resend.
    let answer = h
        .call(
            Method::POST,
            "/raas/v2/orders",
            &[("content-type", "application/json")],
            r#"{"customerIdentifier":"c","accountIdentifier":"a","amount":5,"utid":"U1"}"#,
        )
        .await;
    assert!(answer.status.is_success(), "{answer:?}");
    assert_eq!(
        h.fake.orders_created(),
        1,
        "the refused attempt created nothing"
    );
    assert_eq!(h.fake.tokens_issued(), 2);
    let seen = api_requests(&h);
    assert_eq!(seen.len(), 3);
    let (_, first) = presented_token(&seen[1]);
    let (_, second) = presented_token(&seen[2]);
    assert_ne!(first, second, "the retry carries the new token");
    assert_eq!(seen[1].body, seen[2].body, "the same body is resent");
}

#[tokio::test]
async fn fifty_concurrent_401s_cause_one_refresh() {
    let h = start(OAuth::default()).await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    h.fake.revoke_tokens();
    let calls = (0..50).map(|_| h.get("/raas/v2/catalogs"));
    for answer in futures_util::future::join_all(calls).await {
        assert_eq!(answer.status, 200);
    }
    assert_eq!(h.fake.tokens_issued(), 2, "one token at start, one refresh");
}

#[tokio::test]
async fn a_second_401_is_passed_through() {
    let h = start(OAuth::default()).await;
    h.wait_ready().await;
    h.fake.push_fault(Fault::Status {
        status: 401,
        retry_after: None,
        times: 2,
    });
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 401);
    assert!(answer.is_from_fake());
    assert_eq!(api_requests(&h).len(), 2, "one resend after a 401, no more");
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed_in_the_background() {
    let h = start(OAuth {
        token_lifetime: Duration::from_secs(3),
        refresh_at: Some(0.5),
        ..OAuth::default()
    })
    .await;
    h.wait_ready().await;
    // Calls keep coming until two background refreshes have happened (a 3 s token is
    // refreshed at 1.5 s), however long that takes on this machine.
    let deadline = Instant::now() + PATIENCE;
    let mut calls = 0;
    while h.fake.tokens_issued() < 3 {
        assert!(
            Instant::now() < deadline,
            "a 3 s token refreshed at 1.5 s: {} issued",
            h.fake.tokens_issued()
        );
        let answer = h.get("/raas/v2/catalogs").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.fake.api_auth_failures(),
        0,
        "no call met an expired token"
    );
    // Every token request happened in the background: none was followed by a 401 resend.
    assert_eq!(api_requests(&h).len(), calls);
}

#[tokio::test]
async fn token_endpoint_down_with_a_valid_token_keeps_serving() {
    let h = start(OAuth {
        token_lifetime: Duration::from_secs(30),
        refresh_at: Some(0.05),
        ..OAuth::default()
    })
    .await;
    h.wait_ready().await;
    h.fake.set_token_endpoint_down(true);
    // The refresh is due after 1.5 s and fails; the current token is usable for 27 s.
    wait_until("a refresh attempt", || h.fake.token_requests() >= 2).await;
    for _ in 0..5 {
        assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    }
    assert_eq!(h.fake.tokens_issued(), 1);
    assert_eq!(h.admin_get("/readyz").await.0, 200, "a usable token: ready");
}

#[tokio::test]
async fn no_token_at_all_answers_503_at_once() {
    let h = start(OAuth {
        token_endpoint_down: true,
        ..OAuth::default()
    })
    .await;
    // Once the first fetch has failed (/readyz names the failure), every call is refused
    // without waiting.
    readyz_mentioning(&h, "no usable token").await;
    let answer = h.get("/raas/v2/catalogs").await;
    answer.assert_gateway_error(503, "gateway.credentials_unavailable");
    assert!(api_requests(&h).is_empty(), "nothing reached the API");
    let (status, body) = h.admin_get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.to_string().contains("route raas: OAuth"), "{body}");
    // The token endpoint recovers: the next fetch (after its backoff) makes it ready.
    h.fake.set_token_endpoint_down(false);
    h.wait_ready().await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
}

#[tokio::test]
async fn a_refused_client_is_not_ready_and_says_why() {
    let h = start(OAuth {
        wrong_secret: true,
        ..OAuth::default()
    })
    .await;
    let (status, body) = readyz_mentioning(&h, "invalid_client").await;
    assert_eq!(status, 503);
    assert!(!body.contains("not-the-secret"));
    h.get("/raas/v2/catalogs")
        .await
        .assert_gateway_error(503, "gateway.credentials_unavailable");
    assert_eq!(h.fake.token_requests(), 1, "a refusal is retried slowly");
}

#[tokio::test]
async fn token_endpoint_nonce_round_trip() {
    let h = start(OAuth {
        token_nonce: true,
        ..OAuth::default()
    })
    .await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    assert_eq!(
        h.fake.token_requests(),
        2,
        "challenge, then the request with the nonce"
    );
    assert_eq!(h.fake.tokens_issued(), 1);
    let second = &token_requests(&h)[1];
    let proof = verify_proof(
        second.header("dpop").unwrap(),
        &ProofCheck {
            method: "POST",
            htu: &h.fake.token_endpoint_url(),
            access_token: None,
            nonce: h.fake.current_nonce().as_deref(),
            now: SystemTime::now(),
        },
    )
    .unwrap();
    assert_eq!(
        proof.claims["nonce"].as_str(),
        h.fake.current_nonce().as_deref()
    );
}

#[tokio::test]
async fn api_nonce_round_trip_keeps_the_token() {
    let h = start(OAuth {
        api_nonce: true,
        ..OAuth::default()
    })
    .await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    h.fake.rotate_nonce();
    h.fake.clear();
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = api_requests(&h);
    assert_eq!(seen.len(), 2, "challenged once, then accepted");
    assert_eq!(
        presented_token(&seen[0]),
        presented_token(&seen[1]),
        "same token"
    );
    let nonce = h.fake.current_nonce();
    let claims = |r: &RecordedRequest| jws_claims(r.header("dpop").unwrap());
    assert_ne!(claims(&seen[0])["nonce"].as_str(), nonce.as_deref());
    assert_eq!(claims(&seen[1])["nonce"].as_str(), nonce.as_deref());
    assert_eq!(
        h.fake.tokens_issued(),
        1,
        "a nonce challenge is not a refresh"
    );
    // The nonce is kept: the next call needs no challenge.
    h.fake.clear();
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    assert_eq!(api_requests(&h).len(), 1);
}

#[tokio::test]
async fn plain_bearer_without_dpop() {
    let h = start(OAuth {
        dpop: None,
        ..OAuth::default()
    })
    .await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    let seen = api_requests(&h);
    assert_eq!(presented_token(&seen[0]).0, "Bearer");
    assert!(seen[0].header("dpop").is_none());
    assert!(token_requests(&h)[0].header("dpop").is_none());
}

#[tokio::test]
async fn the_callers_credentials_and_proof_never_reach_tango() {
    let h = start(OAuth::default()).await;
    let answer = h
        .call(
            Method::GET,
            "/raas/v2/catalogs",
            &[
                ("authorization", "DPoP caller-token"),
                ("dpop", "caller.proof.value"),
            ],
            "",
        )
        .await;
    assert_eq!(answer.status, 200);
    let seen = api_requests(&h);
    assert_ne!(presented_token(&seen[0]).1, "caller-token");
    assert_ne!(seen[0].header("dpop"), Some("caller.proof.value"));
    verified_claims(&h, &seen[0]);
}

#[tokio::test]
async fn the_file_store_survives_a_restart_without_a_token_request() {
    let mut h = start(OAuth {
        file_store: true,
        ..OAuth::default()
    })
    .await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    assert_eq!(h.fake.token_requests(), 1);
    let file = h.dir.path().join("tokens.json");
    wait_until("the token saved to the file", || holds_a_token(&file)).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&h.client_secret),
        "secrets never go to the store"
    );
    h.restart_gateway().await;
    h.wait_ready().await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    assert_eq!(h.fake.token_requests(), 1, "the stored token was reused");
}

#[tokio::test]
async fn a_corrupt_token_file_is_ignored() {
    let mut h = start(OAuth {
        file_store: true,
        ..OAuth::default()
    })
    .await;
    h.wait_ready().await;
    // /readyz turns 200 as soon as the token is in memory; the store's write of it may come
    // later and would replace the corruption below: wait for it first.
    let file = h.dir.path().join("tokens.json");
    wait_until("the token saved to the file", || holds_a_token(&file)).await;
    std::fs::write(&file, b"{ corrupt").unwrap();
    h.restart_gateway().await;
    h.wait_ready().await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    assert_eq!(
        h.fake.token_requests(),
        2,
        "a new token instead of the corrupt file"
    );
}

#[tokio::test]
async fn an_ephemeral_key_works_too() {
    let h = start(OAuth {
        dpop: Some(true),
        ..OAuth::default()
    })
    .await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    let seen = api_requests(&h);
    let (scheme, token) = presented_token(&seen[0]);
    assert_eq!(scheme, "DPoP");
    assert!(jws_claims(&token)["cnf"]["jkt"].is_string());
}

#[tokio::test]
async fn a_malformed_token_answer_is_transient_and_retried_soon() {
    let h = Setup::new()
        .oauth(OAuth::default())
        .start_with(|fake| fake.push_token_fault(TokenFault::Malformed { times: 1 }))
        .await;
    h.wait_ready().await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    assert_eq!(
        h.fake.token_requests(),
        2,
        "the malformed answer, then a good one"
    );
    assert_eq!(h.fake.tokens_issued(), 1);
}
