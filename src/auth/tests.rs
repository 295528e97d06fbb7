//! The credential step's resends, through the `Authorize` layer with a `service_fn` upstream
//! that records what each attempt carried, and a token source on a fake fetch under paused
//! time: one resend with a new token after a `401`, one with the same token and a new proof
//! after a DPoP nonce challenge, never more, and none within the 401 refresh window.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Method, StatusCode};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use super::*;
use crate::auth::dpop::DpopKey;
use crate::auth::oauth::cache::REFRESH_ON_401_INTERVAL;
use crate::auth::oauth::fake_fetch::FakeFetch;
use crate::auth::oauth::nonce::DPOP_NONCE;
use crate::auth::oauth::token::TokenKind;
use crate::auth::oauth::OAuthCredentials;
use crate::body::full;

const ORDER: &[u8] = br#"{"customerIdentifier":"c","amount":5}"#;

/// What one attempt carried to the upstream.
#[derive(Debug, Clone)]
struct Seen {
    authorization: Option<String>,
    proof: Option<String>,
    body: Option<Bytes>,
}

impl Seen {
    /// A claim of this attempt's DPoP proof (read, not verified: `auth::dpop` tests that).
    fn proof_claim(&self, name: &str) -> Option<String> {
        let payload = self.proof.as_deref()?.split('.').nth(1)?;
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        claims.get(name)?.as_str().map(str::to_owned)
    }
}

/// The upstream's answers, in order (200 once the script runs out).
#[derive(Debug, Clone, Copy)]
enum Answer {
    Ok,
    /// `401` refusing the token.
    InvalidToken,
    /// `401` asking for a DPoP nonce, with the nonce.
    UseNonce(&'static str),
}

/// An upstream that records each attempt and answers from `script`.
#[derive(Clone)]
struct Upstream {
    script: Arc<Mutex<Vec<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    fn new(script: &[Answer]) -> Self {
        let mut script = script.to_vec();
        script.reverse();
        Upstream {
            script: Arc::new(Mutex::new(script)),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn authorizations(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .map(|s| s.authorization.unwrap_or_default())
            .collect()
    }

    /// Sends a POST with a body through `credentials` to this upstream; the answer's status.
    async fn send(&self, credentials: &Credentials) -> StatusCode {
        let upstream = self.clone();
        let inner = tower::service_fn(move |request: Request<Payload>| {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            upstream.seen.lock().unwrap().push(Seen {
                authorization: header(AUTHORIZATION.as_str()),
                proof: header("dpop"),
                body: request.body().as_bytes().cloned(),
            });
            let answer = upstream.script.lock().unwrap().pop().unwrap_or(Answer::Ok);
            async move { Ok::<_, BoxError>(respond(answer)) }
        });
        let mut request = Request::new(Payload::buffered(Bytes::from_static(ORDER)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = "https://api.example/raas/v2/orders".parse().unwrap();
        let response = AuthorizeLayer::new(credentials.clone())
            .layer(inner)
            .oneshot(request)
            .await
            .unwrap();
        response.status()
    }
}

fn respond(answer: Answer) -> Response<ResponseBody> {
    let mut response = Response::new(full(""));
    let challenge = match answer {
        Answer::Ok => return response,
        Answer::InvalidToken => r#"DPoP error="invalid_token""#,
        Answer::UseNonce(nonce) => {
            response
                .headers_mut()
                .insert(DPOP_NONCE, HeaderValue::from_static(nonce));
            r#"DPoP error="use_dpop_nonce""#
        }
    };
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// OAuth credentials on a fake token endpoint, its refresher running; DPoP-bound with a
/// generated key when `dpop`.
fn oauth(dpop: bool) -> (Credentials, FakeFetch) {
    let kind = if dpop {
        TokenKind::Dpop
    } else {
        TokenKind::Bearer
    };
    let fetch = FakeFetch::new(kind, Duration::from_secs(86_400));
    let source = Arc::new(fetch.source(0.8));
    tokio::spawn(source.clone().run());
    let key = dpop.then(|| Arc::new(DpopKey::generate().unwrap()));
    let credentials = OAuthCredentials::new(source, key, Arc::default());
    (Credentials::OAuth2(credentials), fetch)
}

#[tokio::test(start_paused = true)]
async fn a_401_is_resent_once_with_a_new_token_and_the_same_body() {
    let (credentials, fetch) = oauth(false);
    let upstream = Upstream::new(&[Answer::InvalidToken]);
    // The replacement takes a second to fetch: the resend waits for it, no longer.
    Upstream::new(&[]).send(&credentials).await;
    fetch.set_delay(Duration::from_secs(1));
    let start = Instant::now();
    assert_eq!(upstream.send(&credentials).await, StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(
        upstream.authorizations(),
        ["Bearer token-1", "Bearer token-2"]
    );
    let bodies: Vec<_> = upstream.seen().into_iter().map(|s| s.body).collect();
    let order = Some(Bytes::from_static(ORDER));
    assert_eq!(bodies, [order.clone(), order]);
    assert_eq!(fetch.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_second_401_goes_to_the_caller() {
    let (credentials, fetch) = oauth(false);
    let upstream = Upstream::new(&[Answer::InvalidToken; 5]);
    assert_eq!(upstream.send(&credentials).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        upstream.authorizations(),
        ["Bearer token-1", "Bearer token-2"],
        "one resend, no more"
    );
    assert_eq!(fetch.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn within_the_refresh_window_a_401_is_not_resent_and_fetches_nothing() {
    let (credentials, fetch) = oauth(false);
    let first = Upstream::new(&[Answer::InvalidToken]);
    assert_eq!(first.send(&credentials).await, StatusCode::OK);
    assert_eq!(fetch.calls(), 2);

    tokio::time::sleep(REFRESH_ON_401_INTERVAL - Duration::from_millis(1)).await;
    let within = Upstream::new(&[Answer::InvalidToken]);
    assert_eq!(within.send(&credentials).await, StatusCode::UNAUTHORIZED);
    assert_eq!(within.authorizations(), ["Bearer token-2"]);
    assert_eq!(fetch.calls(), 2);

    tokio::time::sleep(Duration::from_millis(1)).await;
    let after = Upstream::new(&[Answer::InvalidToken]);
    assert_eq!(after.send(&credentials).await, StatusCode::OK);
    assert_eq!(after.authorizations(), ["Bearer token-2", "Bearer token-3"]);
    assert_eq!(fetch.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_nonce_challenge_is_resent_once_with_the_same_token_and_the_nonce() {
    let (credentials, fetch) = oauth(true);
    let upstream = Upstream::new(&[Answer::UseNonce("nonce-1")]);
    assert_eq!(upstream.send(&credentials).await, StatusCode::OK);
    let seen = upstream.seen();
    assert_eq!(upstream.authorizations(), ["DPoP token-1", "DPoP token-1"]);
    assert_eq!(seen[0].proof_claim("nonce"), None);
    assert_eq!(seen[1].proof_claim("nonce").as_deref(), Some("nonce-1"));
    assert_ne!(
        seen[0].proof_claim("jti"),
        seen[1].proof_claim("jti"),
        "a new proof"
    );
    assert_eq!(fetch.calls(), 1, "a nonce challenge is not a refresh");

    // The nonce is kept: the next request carries it from its first attempt.
    let next = Upstream::new(&[]);
    assert_eq!(next.send(&credentials).await, StatusCode::OK);
    assert_eq!(
        next.seen()[0].proof_claim("nonce").as_deref(),
        Some("nonce-1")
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_nonce_challenge_goes_to_the_caller() {
    let (credentials, fetch) = oauth(true);
    let upstream = Upstream::new(&[Answer::UseNonce("nonce-1"), Answer::UseNonce("nonce-2")]);
    assert_eq!(upstream.send(&credentials).await, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.seen().len(), 2);
    assert_eq!(fetch.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_nonce_challenge_and_a_refused_token_get_one_resend_each() {
    let (credentials, fetch) = oauth(true);
    let upstream = Upstream::new(&[Answer::UseNonce("nonce-1"), Answer::InvalidToken]);
    assert_eq!(upstream.send(&credentials).await, StatusCode::OK);
    assert_eq!(
        upstream.authorizations(),
        ["DPoP token-1", "DPoP token-1", "DPoP token-2"]
    );
    let nonces: Vec<_> = upstream
        .seen()
        .iter()
        .map(|s| s.proof_claim("nonce"))
        .collect();
    assert_eq!(
        nonces,
        [None, Some("nonce-1".into()), Some("nonce-1".into())]
    );
    assert_eq!(fetch.calls(), 2);
}
