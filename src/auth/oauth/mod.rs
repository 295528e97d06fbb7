//! OAuth 2.0 access tokens, optionally DPoP-bound (§5): the per-attempt step that presents
//! them, and the registry that shares one token per credential across routes.
//!
//! Pieces: [`token`] (a token and its lifetime), [`key`] (what makes routes share a token),
//! [`client`] (the token request), [`fetch`] (the cache's seams: where tokens come from, the
//! clock their lifetimes are read on), [`cache`] (single flight, background refresh,
//! compare-and-drop, fleet-wide refresh through a shared store), [`store`] (memory, file or
//! Redis), [`sources`] (one configuration's credentials), [`nonce`] (DPoP nonces per origin).
//!
//! Invariants: every attempt carries the current token and, with DPoP, a proof made for that
//! attempt alone (new `jti`, its own `htu`, `ath`); a `401` is answered at most once by a
//! nonce round trip and at most once by a new token, and makes a credential fetch at most
//! once per [`cache::REFRESH_ON_401_INTERVAL`]; a DPoP route never sends a token that is not
//! DPoP-bound (nor a Bearer route a bound one); nothing here logs a token or proof.

pub mod cache;
pub mod client;
#[cfg(test)]
pub(crate) mod fake_fetch;
pub mod fetch;
pub mod key;
pub mod nonce;
mod sources;
pub mod store;
pub mod token;

pub use sources::{Refreshers, TokenSources};

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::auth::dpop::{DpopError, DpopKey};
use crate::body::{clone_request, Payload, ResponseBody};
use crate::clock_skew::{self, OriginClock};
use crate::config::DpopClock;
use crate::context::RequestContext;
use crate::deadline::Deadline;
use crate::error::{BoxError, ErrorCode, GatewayError};
use crate::upstream::tls::TlsSetupError;
use cache::{Rejected, TokenSource};
use nonce::Nonces;
use token::{AccessToken, TokenKind};

pub const DPOP_HEADER: &str = "dpop";

#[derive(Debug, thiserror::Error)]
pub enum OAuthSetupError {
    #[error("dpop.key_file: {0}")]
    DpopKeyFile(String),
    #[error("dpop: {0}")]
    DpopKey(#[from] DpopError),
    #[error("token endpoint TLS: {0}")]
    Tls(#[from] TlsSetupError),
}

/// The credentials of one OAuth route.
#[derive(Debug, Clone)]
pub struct OAuthCredentials {
    source: Arc<TokenSource>,
    dpop: Option<Arc<DpopKey>>,
    nonces: Arc<Nonces>,
    /// The clock proofs' `iat` is read on (`dpop.clock`, §11).
    dpop_clock: DpopClock,
}

impl OAuthCredentials {
    /// A route's credentials: tokens from `source`, proofs with `dpop` when it is set.
    pub fn new(source: Arc<TokenSource>, dpop: Option<Arc<DpopKey>>, nonces: Arc<Nonces>) -> Self {
        OAuthCredentials {
            source,
            dpop,
            nonces,
            dpop_clock: DpopClock::Local,
        }
    }

    /// Signs proofs on `clock`: with [`DpopClock::Server`], the gateway's clock plus the
    /// offset measured from the upstream's `Date` headers.
    pub fn with_dpop_clock(mut self, clock: DpopClock) -> Self {
        self.dpop_clock = clock;
        self
    }

    /// Sends one attempt with the current token, answering a DPoP nonce challenge once, a
    /// refused proof once when the refusal's `Date` moved the offset it was signed with
    /// (`dpop.clock: server`), and a rejected token once (a `401` means the API refused the
    /// request before acting on it, so resending is safe whatever the method).
    pub async fn send<S>(
        &self,
        mut request: Request<Payload>,
        mut inner: S,
    ) -> Result<Response<ResponseBody>, BoxError>
    where
        S: Service<Request<Payload>, Response = Response<ResponseBody>, Error = BoxError>,
    {
        // A cold cache makes the attempt wait for a token, within the route's time budget.
        let deadline = Deadline::of(&request);
        // With tracing on, a token fetch this request waits for is a child of its span.
        let trace = crate::telemetry::otel::tracer()
            .and_then(|_| RequestContext::get(&request)?.trace().cloned());
        let mut token = self.token(deadline, trace.as_ref()).await?;
        let mut nonce_retry_left = self.dpop.is_some();
        let mut refresh_retry_left = true;
        // Nonces are kept per origin for DPoP only; a Bearer route needs no key.
        let origin = match self.dpop {
            Some(_) => nonce::origin(request.uri()).unwrap_or_default(),
            None => String::new(),
        };
        // The upstream's clock, when proofs are signed on it (the stack records its answers).
        let server_clock = match (&self.dpop, self.dpop_clock) {
            (Some(_), DpopClock::Server) => clock_skew::clocks().get(request.uri()),
            _ => None,
        };
        let mut skew_retry_left = server_clock.is_some();
        loop {
            let spare = (nonce_retry_left || refresh_retry_left || skew_retry_left)
                .then(|| clone_request(&request))
                .flatten();
            let applied_offset =
                self.present(&mut request, &token, &origin, server_clock.as_deref())?;
            let response = inner.ready().await?.call(request).await?;
            if self.dpop.is_some() {
                self.nonces.remember(&origin, response.headers());
            }
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let Some(next) = spare else {
                return Ok(response);
            };
            if is_nonce_challenge(response.headers()) {
                // Same token, new proof carrying the nonce just remembered (§9).
                if !nonce_retry_left {
                    return Ok(response);
                }
                nonce_retry_left = false;
            } else if skew_retry_left
                && server_clock
                    .as_ref()
                    .is_some_and(|clock| clock.moved_since(applied_offset))
            {
                // The proof was signed before this answer told the server's clock: same
                // token, new proof on that clock, no token request.
                skew_retry_left = false;
            } else {
                if !refresh_retry_left {
                    return Ok(response);
                }
                refresh_retry_left = false;
                match self.source.reject_traced(&token, trace.as_ref()) {
                    // A 401 refreshed this credential moments ago (§12): Tango's answer
                    // stands, and no token request is made for it.
                    Rejected::RateLimited => return Ok(response),
                    Rejected::Dropped | Rejected::AlreadyReplaced => {}
                }
                token = self.token(deadline, trace.as_ref()).await?;
            }
            if let Some(context) = next.extensions().get::<Arc<RequestContext>>() {
                context.start_attempt();
            }
            request = next;
        }
    }

    async fn token(
        &self,
        deadline: Option<Instant>,
        trace: Option<&opentelemetry::Context>,
    ) -> Result<Arc<AccessToken>, GatewayError> {
        self.source
            .token_traced(deadline, trace)
            .await
            .map_err(|_| {
                GatewayError::new(
                    ErrorCode::CredentialsUnavailable,
                    "no usable OAuth token for this route; the token endpoint is failing \
                 (see the gateway's log and /readyz)",
                )
            })
    }

    /// Sets `Authorization` and, for a DPoP-bound token, this attempt's proof (with the
    /// latest nonce of `origin`, the request's `scheme://authority`, and its `iat` moved by
    /// `server_clock`'s offset when given). Returns the offset applied, in ms.
    fn present(
        &self,
        request: &mut Request<Payload>,
        token: &AccessToken,
        origin: &str,
        server_clock: Option<&OriginClock>,
    ) -> Result<i64, GatewayError> {
        // The cache serves only tokens of the credential's kind; checked again here, before
        // anything is set, because a Bearer token on a DPoP route would go out unbound.
        let key = match (token.kind(), &self.dpop) {
            (TokenKind::Dpop, Some(key)) => Some(key),
            (TokenKind::Bearer, None) => None,
            _ => return Err(token_kind_mismatch()),
        };
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, token.authorization().clone());
        headers.remove(DPOP_HEADER);
        let Some(key) = key else {
            return Ok(0);
        };
        let nonce = self.nonces.get(origin);
        // The wall clock: a proof's `iat` is checked against the server's clock.
        let (now, applied_offset) = match server_clock {
            Some(clock) => clock.server_time(SystemTime::now()),
            None => (SystemTime::now(), 0),
        };
        let proof = key
            .proof_with_ath(
                request.method(),
                request.uri(),
                Some(token.ath()),
                nonce.as_deref(),
                now,
            )
            .map_err(|_| proof_failure())?;
        request.headers_mut().insert(DPOP_HEADER, proof);
        Ok(applied_offset)
    }
}

fn token_kind_mismatch() -> GatewayError {
    GatewayError::new(
        ErrorCode::CredentialsUnavailable,
        "the cached OAuth token does not match this route's DPoP setting",
    )
}

fn proof_failure() -> GatewayError {
    GatewayError::new(
        ErrorCode::CredentialsUnavailable,
        "cannot make a DPoP proof for this request",
    )
}

/// `WWW-Authenticate: DPoP error="use_dpop_nonce"` (RFC 9449 §9).
fn is_nonce_challenge(headers: &HeaderMap) -> bool {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let v = v.trim_start();
            v.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("dpop"))
                && v.contains("use_dpop_nonce")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oauth::fake_fetch::FakeFetch;
    use http::HeaderValue;
    use secrecy::SecretString;

    fn credentials(dpop: bool) -> OAuthCredentials {
        let key = dpop.then(|| Arc::new(DpopKey::generate().unwrap()));
        let kind = if dpop {
            TokenKind::Dpop
        } else {
            TokenKind::Bearer
        };
        let fetch = FakeFetch::new(kind, std::time::Duration::from_secs(300));
        OAuthCredentials::new(Arc::new(fetch.source(0.8)), key, Arc::default())
    }

    fn token(kind: TokenKind) -> AccessToken {
        let now = SystemTime::now();
        let lifetime = std::time::Duration::from_secs(300);
        AccessToken::new(
            SecretString::from("tok".to_owned()),
            kind,
            now,
            now + lifetime,
        )
        .unwrap()
    }

    fn api_request() -> Request<Payload> {
        let mut request = Request::new(Payload::buffered(bytes::Bytes::new()));
        *request.uri_mut() = "https://api.example/raas/v2/catalogs".parse().unwrap();
        request
    }

    #[test]
    fn a_token_of_the_wrong_kind_is_never_presented() {
        for (dpop, kind) in [(true, TokenKind::Bearer), (false, TokenKind::Dpop)] {
            let mut request = api_request();
            let err = credentials(dpop)
                .present(&mut request, &token(kind), "https://api.example", None)
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::CredentialsUnavailable);
            assert!(request.headers().get(AUTHORIZATION).is_none());
            assert!(request.headers().get(DPOP_HEADER).is_none());
        }
    }

    #[test]
    fn a_token_of_the_right_kind_is_presented() {
        let mut request = api_request();
        credentials(true)
            .present(
                &mut request,
                &token(TokenKind::Dpop),
                "https://api.example",
                None,
            )
            .unwrap();
        assert_eq!(request.headers()[AUTHORIZATION], "DPoP tok");
        assert!(request.headers().get(DPOP_HEADER).is_some());
        let mut request = api_request();
        credentials(false)
            .present(&mut request, &token(TokenKind::Bearer), "", None)
            .unwrap();
        assert_eq!(request.headers()[AUTHORIZATION], "Bearer tok");
        assert!(request.headers().get(DPOP_HEADER).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_attempt_waits_for_a_token_no_longer_than_the_route_deadline() {
        let fetch = FakeFetch::new(TokenKind::Bearer, std::time::Duration::from_secs(300));
        // A token request far slower than the route's budget (a lock held by a slow replica
        // looks the same to a caller).
        fetch.set_delay(std::time::Duration::from_secs(60));
        let source = Arc::new(fetch.source(0.8));
        tokio::spawn(source.clone().run());
        let credentials = OAuthCredentials::new(source, None, Arc::default());
        let start = Instant::now();
        let mut request = api_request();
        let budget = std::time::Duration::from_secs(2);
        request.extensions_mut().insert(Deadline(start + budget));
        let never_called = tower::service_fn(|_: Request<Payload>| async {
            Err::<Response<ResponseBody>, BoxError>("no attempt without a token".into())
        });
        let err = credentials.send(request, never_called).await.unwrap_err();
        assert_eq!(start.elapsed(), budget);
        let err = err.downcast::<GatewayError>().unwrap();
        assert_eq!(err.code, ErrorCode::CredentialsUnavailable);
    }

    #[test]
    fn nonce_challenge_is_recognised_only_for_dpop() {
        let mut headers = HeaderMap::new();
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="use_dpop_nonce", error_description="x""#),
        );
        assert!(is_nonce_challenge(&headers));
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="invalid_token""#),
        );
        assert!(!is_nonce_challenge(&headers));
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="use_dpop_nonce""#),
        );
        assert!(!is_nonce_challenge(&headers));
    }
}
