//! Two active API keys through the `Authorize` layer, under paused time: an upstream that
//! accepts a set of keys (changed as Tango would during a rotation) and records the key of
//! every attempt. One resend after a `401`, never more; the accepted key stays in use for the
//! hold; a reload keeps the key in use only while both keys are unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Mutex;

use bytes::Bytes;
use http::Method;
use secrecy::SecretString;
use tower::{Layer, ServiceExt};

use super::*;
use crate::auth::{AuthorizeLayer, Credentials};
use crate::body::full;
use crate::config::BasicFallback;

const USER: &str = "platform";
const PRIMARY: &str = "primary-key";
const SECOND: &str = "second-key";
const HOLD: Duration = Duration::from_secs(300);
const ORDER: &[u8] = br#"{"customerIdentifier":"c","amount":5}"#;

fn config(primary: &str, fallback: Option<&str>) -> BasicAuthConfig {
    BasicAuthConfig {
        username: USER.to_owned(),
        password: SecretString::from(primary.to_owned()),
        fallback: fallback.map(|key| BasicFallback {
            password: SecretString::from(key.to_owned()),
            hold: HOLD,
        }),
    }
}

fn credentials(route: &str, primary: &str, fallback: Option<&str>) -> Arc<BasicCredentials> {
    Arc::new(BasicCredentials::new(route, &config(primary, fallback), None).unwrap())
}

/// One attempt as Tango saw it: its `Authorization` and its body.
type Attempt = (String, Option<Bytes>);

/// Tango's side: which keys it accepts, and the key (and body) of every attempt.
#[derive(Clone, Default)]
struct Tango {
    accepted: Arc<Mutex<HashSet<&'static str>>>,
    seen: Arc<Mutex<Vec<Attempt>>>,
}

impl Tango {
    fn accepting(keys: &[&'static str]) -> Self {
        let tango = Tango::default();
        tango.accept_only(keys);
        tango
    }

    fn accept_only(&self, keys: &[&'static str]) {
        *self.accepted.lock().unwrap() = keys.iter().copied().collect();
    }

    /// The key each attempt carried, in order (drained).
    fn keys(&self) -> Vec<&'static str> {
        self.seen
            .lock()
            .unwrap()
            .drain(..)
            .map(|(auth, _)| {
                [PRIMARY, SECOND, "new-key"]
                    .into_iter()
                    .find(|key| auth == header_text(key))
                    .unwrap_or("?")
            })
            .collect()
    }

    async fn send(&self, credentials: &Arc<BasicCredentials>) -> StatusCode {
        let tango = self.clone();
        let inner = tower::service_fn(move |request: Request<Payload>| {
            let auth = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let accepted = tango
                .accepted
                .lock()
                .unwrap()
                .iter()
                .any(|key| auth == header_text(key));
            let body = request.body().as_bytes().cloned();
            tango.seen.lock().unwrap().push((auth, body));
            let mut response = Response::new(full(""));
            if !accepted {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
            }
            async move { Ok::<_, BoxError>(response) }
        });
        let mut request = Request::new(Payload::buffered(Bytes::from_static(ORDER)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = "https://api.example/raas/v2/orders".parse().unwrap();
        AuthorizeLayer::new(Credentials::Basic(credentials.clone()))
            .layer(inner)
            .oneshot(request)
            .await
            .unwrap()
            .status()
    }
}

fn header_text(key: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{USER}:{key}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[tokio::test(start_paused = true)]
async fn a_401_to_the_primary_is_resent_once_with_the_fallback_which_is_then_held() {
    let basic = credentials("unit-held", PRIMARY, Some(SECOND));
    let tango = Tango::accepting(&[SECOND]);
    assert_eq!(tango.send(&basic).await, StatusCode::OK);
    let bodies: Vec<_> = tango
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.1.clone())
        .collect();
    let order = Some(Bytes::from_static(ORDER));
    assert_eq!(bodies, [order.clone(), order], "the same body both times");
    assert_eq!(tango.keys(), [PRIMARY, SECOND]);
    // Within the hold: straight to the fallback, even once the primary works again.
    tango.accept_only(&[PRIMARY, SECOND]);
    tokio::time::advance(HOLD - Duration::from_millis(1)).await;
    assert_eq!(tango.send(&basic).await, StatusCode::OK);
    assert_eq!(tango.keys(), [SECOND]);
    assert!(basic.fallback_left(Instant::now()).is_some());
    // After it: the primary again.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(basic.fallback_left(Instant::now()), None);
    assert_eq!(tango.send(&basic).await, StatusCode::OK);
    assert_eq!(tango.send(&basic).await, StatusCode::OK);
    assert_eq!(tango.keys(), [PRIMARY, PRIMARY]);
}

#[tokio::test(start_paused = true)]
async fn both_keys_refused_the_second_401_goes_to_the_caller() {
    let basic = credentials("unit-both", PRIMARY, Some(SECOND));
    let tango = Tango::accepting(&[]);
    assert_eq!(tango.send(&basic).await, StatusCode::UNAUTHORIZED);
    assert_eq!(tango.keys(), [PRIMARY, SECOND], "one resend, no more");
    // Nothing was accepted: the primary stays in use.
    assert_eq!(basic.fallback_left(Instant::now()), None);
    assert_eq!(tango.send(&basic).await, StatusCode::UNAUTHORIZED);
    assert_eq!(tango.keys(), [PRIMARY, SECOND]);
}

#[tokio::test(start_paused = true)]
async fn on_the_fallback_a_401_is_resent_once_with_the_primary_which_takes_over() {
    let basic = credentials("unit-back", PRIMARY, Some(SECOND));
    let tango = Tango::accepting(&[SECOND]);
    tango.send(&basic).await;
    tango.keys();
    // The operator revoked the fallback and the primary works again.
    tango.accept_only(&[PRIMARY]);
    assert_eq!(tango.send(&basic).await, StatusCode::OK);
    assert_eq!(tango.keys(), [SECOND, PRIMARY]);
    assert_eq!(basic.fallback_left(Instant::now()), None);
    assert_eq!(tango.send(&basic).await, StatusCode::OK);
    assert_eq!(tango.keys(), [PRIMARY]);
}

#[tokio::test(start_paused = true)]
async fn without_a_fallback_a_401_is_not_resent() {
    let basic = credentials("unit-none", PRIMARY, None);
    assert!(!Credentials::Basic(basic.clone()).needs_replayable_body());
    let tango = Tango::accepting(&[SECOND]);
    assert_eq!(tango.send(&basic).await, StatusCode::UNAUTHORIZED);
    assert_eq!(tango.keys(), [PRIMARY]);
}

#[test]
fn a_route_with_a_fallback_keeps_bodies_for_the_resend() {
    let basic = credentials("unit-replay", PRIMARY, Some(SECOND));
    assert!(Credentials::Basic(basic).needs_replayable_body());
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_the_key_in_use_only_while_both_keys_are_unchanged() {
    let tango = Tango::accepting(&[SECOND]);
    let mut first = BasicRoutes::new(None);
    let basic = first
        .credentials("unit-reload", &config(PRIMARY, Some(SECOND)))
        .unwrap();
    tango.send(&basic).await;
    assert!(basic.fallback_left(Instant::now()).is_some());
    assert_eq!(first.readiness_warnings(Instant::now()).len(), 1);

    // Same keys (another hold): still on the fallback.
    let mut same = BasicRoutes::new(Some(&first));
    let kept = same
        .credentials("unit-reload", &config(PRIMARY, Some(SECOND)))
        .unwrap();
    same.forget_previous();
    assert!(kept.fallback_left(Instant::now()).is_some());
    let warnings = same.readiness_warnings(Instant::now());
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with("route unit-reload: "),
        "{warnings:?}"
    );
    assert!(!warnings[0].contains(SECOND), "{warnings:?}");

    // A new primary (or fallback): back to the primary.
    for (primary, fallback) in [("new-key", SECOND), (PRIMARY, "new-key")] {
        let mut changed = BasicRoutes::new(Some(&same));
        let reset = changed
            .credentials("unit-reload", &config(primary, Some(fallback)))
            .unwrap();
        assert_eq!(reset.fallback_left(Instant::now()), None);
        assert!(changed.readiness_warnings(Instant::now()).is_empty());
    }
    // Another route of the same keys has its own state.
    let mut other = BasicRoutes::new(Some(&same));
    let elsewhere = other
        .credentials("unit-reload-other", &config(PRIMARY, Some(SECOND)))
        .unwrap();
    assert_eq!(elsewhere.fallback_left(Instant::now()), None);
}

#[test]
fn debug_never_shows_either_key() {
    let basic = credentials("unit-debug", PRIMARY, Some(SECOND));
    let text = format!("{basic:?}");
    for secret in [PRIMARY, SECOND] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(!text.contains("cGxhdGZvcm"), "{text}");
}
