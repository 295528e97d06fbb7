//! The token request (§5): one `POST token_url` over the verified TLS stack, with a DPoP proof
//! when a key is configured, and the answer parsed strictly.
//!
//! Invariants: no secret, token or answer body ever appears in an error or log line (errors
//! carry the status and the OAuth `error` code only); a `use_dpop_nonce` answer is retried
//! exactly once, with the nonce it supplied; failures are sorted into transient (retry soon)
//! and permanent (the configuration is wrong: retry slowly, report not ready); with DPoP
//! configured, a token answer whose `token_type` is not `DPoP` is never turned into a token
//! (a Bearer token would be sent unbound, exactly what DPoP is configured to prevent).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::nonce::{self, Nonces};
use super::token::{AccessToken, TokenKind};
use crate::auth::dpop::DpopKey;
use crate::body::Payload;
use crate::clock_skew::{self, OriginClock};
use crate::config::{ClientAuthMethod, DpopClock, OAuth2Config, OAuthGrant};
use crate::error::BoxError;
use crate::upstream::classify::{classify_attempt_error, AttemptFailure};
use crate::upstream::client::{build_https_client, HttpsClient};
use crate::upstream::tls::TlsSetupError;

/// Tango's per-attempt limit applies to token requests too: headers and body together.
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A token answer is a few hundred bytes; anything past this is not one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// OAuth error codes (RFC 6749 §5.2) are short ASCII words; anything else is not echoed.
const MAX_ERROR_CODE_LEN: usize = 64;

/// Why a token request failed. The text names the status and OAuth error code only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Worth retrying soon: timeouts, connection failures, 5xx, 429, a malformed 200.
    #[error("{0}")]
    Transient(String),
    /// The token endpoint refuses this client (`invalid_client`, ...): a configuration
    /// problem that retrying will not fix.
    #[error("{0}")]
    Permanent(String),
    /// The endpoint issued a token this credential must never use (with DPoP configured, a
    /// `token_type` other than `DPoP`). Permanent too: asking again gets the same answer
    /// until the authorization server's client settings change.
    #[error("{0}")]
    Unusable(String),
}

impl FetchError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, FetchError::Permanent(_) | FetchError::Unusable(_))
    }
}

/// Why a DPoP credential refuses a Bearer answer; `/readyz` and the log name it.
const BEARER_FOR_DPOP: &str =
    "the token endpoint answered token_type Bearer; this route requires DPoP-bound tokens";
/// The same for a `token_type` that is neither (its text is not echoed: it is the server's).
const UNKNOWN_FOR_DPOP: &str =
    "the token endpoint answered an unknown token_type; this route requires DPoP-bound tokens";

/// Fetches tokens for one credential.
pub struct TokenClient {
    http: HttpsClient,
    config: Arc<OAuth2Config>,
    dpop: Option<Arc<DpopKey>>,
    nonces: Arc<Nonces>,
    origin: String,
    /// The token endpoint's clock, from the `Date` of its answers (§11).
    clock: Option<Arc<OriginClock>>,
}

impl std::fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClient")
            .field("token_url", &self.config.token_url)
            .field("client_id", &self.config.client_id)
            .field("dpop", &self.dpop)
            .finish_non_exhaustive()
    }
}

impl TokenClient {
    /// The settings this client fetches with.
    pub fn config(&self) -> &OAuth2Config {
        &self.config
    }

    pub fn new(
        config: Arc<OAuth2Config>,
        dpop: Option<Arc<DpopKey>>,
        nonces: Arc<Nonces>,
    ) -> Result<Self, TlsSetupError> {
        let allow_http = config.token_url.scheme_str() == Some("http");
        let http = build_https_client(
            &config.tls,
            CONNECT_TIMEOUT,
            allow_http,
            config.proxy.as_ref(),
        )?;
        let origin = nonce::origin(&config.token_url).unwrap_or_default();
        let clock = clock_skew::clocks().register(&config.token_url);
        Ok(TokenClient {
            http,
            config,
            dpop,
            nonces,
            origin,
            clock,
        })
    }

    /// A client for `https://auth.example/oauth/token` (never contacted), DPoP-bound with
    /// `dpop`, for tests of what happens around a fetch.
    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    pub(crate) fn for_tests(dpop: Option<Arc<DpopKey>>) -> TokenClient {
        use crate::config::TlsConfig;
        // An explicit trust anchor: a test host may have no system CA store.
        let ca = tango_sandbox::pki::Ca::new("test CA").unwrap();
        let config = OAuth2Config {
            token_url: "https://auth.example/oauth/token".parse().unwrap(),
            grant: OAuthGrant::ClientCredentials,
            client_id: "client".to_owned(),
            client_secret: SecretString::from("client-secret-do-not-log".to_owned()),
            username: None,
            password: None,
            audience: Some("https://api.tangocard.com/".to_owned()),
            scope: None,
            client_auth: ClientAuthMethod::Post,
            refresh_at: 0.8,
            dpop: None,
            dpop_clock: Default::default(),
            tls: TlsConfig {
                extra_roots: vec![ca.cert().cert_der.clone()],
                ..TlsConfig::default()
            },
            proxy: None,
        };
        TokenClient::new(Arc::new(config), dpop, Arc::default()).unwrap()
    }

    /// The only kind of token this credential may use: DPoP-bound when a key is configured.
    pub fn token_kind(&self) -> TokenKind {
        match self.dpop {
            Some(_) => TokenKind::Dpop,
            None => TokenKind::Bearer,
        }
    }

    /// Requests a new token; a DPoP nonce challenge is answered once, and so is a refusal
    /// whose `Date` moved the offset a `dpop.clock: server` proof was signed with.
    pub async fn fetch(&self) -> Result<AccessToken, FetchError> {
        let mut nonce_retried = false;
        let mut skew_retried = false;
        loop {
            let sent_at = SystemTime::now();
            let (proof_time, applied_offset) = self.proof_time(sent_at);
            let response = tokio::time::timeout(TOKEN_REQUEST_TIMEOUT, self.exchange(proof_time))
                .await
                .map_err(|_| {
                    FetchError::Transient(format!(
                        "the token endpoint did not answer within {}",
                        humantime::format_duration(TOKEN_REQUEST_TIMEOUT)
                    ))
                })??;
            let (status, headers, body) = response;
            if let Some(clock) = &self.clock {
                clock.observe(&headers);
            }
            if self.dpop.is_some() {
                self.nonces.remember(&self.origin, &headers);
            }
            if status == StatusCode::OK {
                return self.parse_token(&body, sent_at);
            }
            // The first answer of a server whose clock is off (an error answer carries a
            // `Date` too) tells the offset: sign again with it at once, not after a backoff.
            if !skew_retried
                && self.signs_on_server_clock()
                && self
                    .clock
                    .as_ref()
                    .is_some_and(|clock| clock.moved_since(applied_offset))
            {
                skew_retried = true;
                continue;
            }
            let code = oauth_error_code(&body);
            if status == StatusCode::BAD_REQUEST
                && code.as_deref() == Some("use_dpop_nonce")
                && self.dpop.is_some()
                && headers.contains_key(nonce::DPOP_NONCE)
                && !nonce_retried
            {
                nonce_retried = true;
                continue;
            }
            return Err(classify_refusal(status, code.as_deref()));
        }
    }

    /// Whether DPoP proofs are signed on the token endpoint's clock (`dpop.clock: server`).
    fn signs_on_server_clock(&self) -> bool {
        self.dpop.is_some() && self.config.dpop_clock == DpopClock::Server
    }

    /// The time a proof sent at `local` is signed with, and the offset applied to it (ms).
    fn proof_time(&self, local: SystemTime) -> (SystemTime, i64) {
        match &self.clock {
            Some(clock) if self.signs_on_server_clock() => clock.server_time(local),
            _ => (local, 0),
        }
    }

    /// One request and its whole answer (status, headers, body up to the size limit).
    /// `now` is the time its DPoP proof is signed with.
    async fn exchange(
        &self,
        now: SystemTime,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), FetchError> {
        let request = self.build_request(now)?;
        let response: Response<Incoming> = self.http.request(request).await.map_err(|err| {
            let err: BoxError = Box::new(err);
            transport_failure(&*err)
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|_| {
                FetchError::Transient(format!(
                    "the token answer ({}) could not be read in full or is larger than {MAX_ANSWER_BYTES} bytes",
                    parts.status
                ))
            })?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    fn build_request(&self, now: SystemTime) -> Result<Request<Payload>, FetchError> {
        let config = &self.config;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair(
            "grant_type",
            match config.grant {
                OAuthGrant::ClientCredentials => "client_credentials",
                OAuthGrant::Password => "password",
            },
        );
        let mut authorization = None;
        match config.client_auth {
            ClientAuthMethod::Post => {
                form.append_pair("client_id", &config.client_id);
                form.append_pair("client_secret", config.client_secret.expose_secret());
            }
            ClientAuthMethod::Basic => {
                authorization = Some(basic_client_auth(&config.client_id, &config.client_secret)?);
            }
        }
        if let Some(audience) = &config.audience {
            form.append_pair("audience", audience);
        }
        if let Some(scope) = &config.scope {
            form.append_pair("scope", scope);
        }
        if let (OAuthGrant::Password, Some(username), Some(password)) =
            (config.grant, &config.username, &config.password)
        {
            form.append_pair("username", username);
            form.append_pair("password", password.expose_secret());
        }
        let body = Bytes::from(form.finish());
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(config.token_url.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(key) = &self.dpop {
            let nonce = self.nonces.get(&self.origin);
            let proof = key
                .proof(
                    &Method::POST,
                    &config.token_url,
                    None,
                    nonce.as_deref(),
                    now,
                )
                .map_err(|err| FetchError::Permanent(format!("cannot make a DPoP proof: {err}")))?;
            builder = builder.header("dpop", proof);
        }
        builder
            .body(Payload::buffered(body))
            .map_err(|_| FetchError::Permanent("cannot build the token request".to_owned()))
    }

    /// Strict parse of a 200 answer (RFC 6749 §5.1): `access_token`, `token_type` and a
    /// positive integer `expires_in` are required. Messages name fields, never values.
    fn parse_token(&self, body: &[u8], sent_at: SystemTime) -> Result<AccessToken, FetchError> {
        let malformed = |what: &str| {
            FetchError::Transient(format!(
                "the token endpoint's 200 answer is malformed: {what}"
            ))
        };
        let answer: Value = serde_json::from_slice(body).map_err(|_| malformed("not JSON"))?;
        let access_token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| malformed("no access_token string"))?;
        let token_type = answer
            .get("token_type")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no token_type string"))?;
        let expires_in = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .filter(|s| *s > 0)
            .ok_or_else(|| malformed("no positive integer expires_in"))?;
        let kind = match (TokenKind::parse(token_type), &self.dpop) {
            (Some(TokenKind::Dpop), Some(_)) => TokenKind::Dpop,
            // Fail closed (§5, §12): using it would send the token unbound, as Bearer.
            (Some(TokenKind::Bearer), Some(_)) => {
                return Err(FetchError::Unusable(BEARER_FOR_DPOP.to_owned()))
            }
            (None, Some(_)) => return Err(FetchError::Unusable(UNKNOWN_FOR_DPOP.to_owned())),
            (Some(TokenKind::Bearer), None) => TokenKind::Bearer,
            (Some(TokenKind::Dpop), None) => {
                return Err(FetchError::Permanent(
                    "the token endpoint issued a DPoP-bound token but no dpop key is configured"
                        .to_owned(),
                ));
            }
            (None, None) => return Err(malformed("unknown token_type")),
        };
        AccessToken::new(
            SecretString::from(access_token.to_owned()),
            kind,
            sent_at,
            sent_at + Duration::from_secs(expires_in),
        )
        .map_err(|_| malformed("access_token is not valid header text"))
    }
}

/// RFC 6749 §2.3.1: client id and secret form-urlencoded, then `id:secret` in Basic.
fn basic_client_auth(client_id: &str, secret: &SecretString) -> Result<HeaderValue, FetchError> {
    use base64::Engine as _;
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret.expose_secret()));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .map_err(|_| FetchError::Permanent("cannot encode client credentials".to_owned()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The `error` code of an OAuth error answer, when it is a plausible code (never free text).
fn oauth_error_code(body: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let code = answer.get("error")?.as_str()?;
    let plausible = !code.is_empty()
        && code.len() <= MAX_ERROR_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    plausible.then(|| code.to_owned())
}

/// Transient: the server may succeed next time. Permanent: it refuses who we are.
fn classify_refusal(status: StatusCode, code: Option<&str>) -> FetchError {
    let described = match code {
        Some(code) => format!("the token endpoint answered {status} ({code})"),
        None => format!("the token endpoint answered {status}"),
    };
    let transient = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        // A proof can fail on clock skew or a replayed jti; a fresh proof may pass.
        || matches!(code, Some("invalid_dpop_proof" | "use_dpop_nonce" | "temporarily_unavailable"));
    if transient {
        FetchError::Transient(described)
    } else {
        FetchError::Permanent(described)
    }
}

fn transport_failure(err: &(dyn std::error::Error + 'static)) -> FetchError {
    match classify_attempt_error(err) {
        Some(AttemptFailure::Tls) => FetchError::Permanent(
            "TLS with the token endpoint failed (server certificate or client certificate refused)"
                .to_owned(),
        ),
        Some(AttemptFailure::ConnectFailure) => {
            FetchError::Transient("cannot connect to the token endpoint".to_owned())
        }
        // Not the token endpoint's doing: say so, and keep trying as for a transient
        // failure (the cause chain is in the debug log).
        Some(AttemptFailure::Unknown) | None => FetchError::Transient(
            "the token request failed inside the gateway (internal error)".to_owned(),
        ),
        Some(AttemptFailure::Timeout | AttemptFailure::Reset) => FetchError::Transient(
            "the connection to the token endpoint failed before an answer".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_client_is_permanent_and_5xx_transient() {
        assert!(classify_refusal(StatusCode::UNAUTHORIZED, Some("invalid_client")).is_permanent());
        assert!(
            classify_refusal(StatusCode::BAD_REQUEST, Some("unauthorized_client")).is_permanent()
        );
        assert!(!classify_refusal(StatusCode::SERVICE_UNAVAILABLE, None).is_permanent());
        assert!(!classify_refusal(StatusCode::TOO_MANY_REQUESTS, None).is_permanent());
        assert!(
            !classify_refusal(StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")).is_permanent()
        );
    }

    #[test]
    fn error_codes_are_echoed_only_when_they_look_like_codes() {
        assert_eq!(
            oauth_error_code(br#"{"error":"invalid_client"}"#).as_deref(),
            Some("invalid_client")
        );
        assert_eq!(
            oauth_error_code(br#"{"error":"secret value: s3cr3t!"}"#),
            None
        );
        assert_eq!(oauth_error_code(b"<html>"), None);
    }

    fn answer(token_type: &str) -> Vec<u8> {
        serde_json::json!({
            "access_token": "tok-do-not-log",
            "token_type": token_type,
            "expires_in": 300,
        })
        .to_string()
        .into_bytes()
    }

    fn dpop_client() -> TokenClient {
        TokenClient::for_tests(Some(Arc::new(DpopKey::generate().unwrap())))
    }

    #[test]
    fn with_dpop_only_a_dpop_answer_becomes_a_token() {
        let client = dpop_client();
        assert_eq!(client.token_kind(), TokenKind::Dpop);
        let now = SystemTime::now();
        for token_type in ["DPoP", "dpop", "DPOP"] {
            let token = client.parse_token(&answer(token_type), now).unwrap();
            assert_eq!(token.kind(), TokenKind::Dpop);
        }
        for token_type in ["Bearer", "bearer", "BEARER"] {
            let err = client.parse_token(&answer(token_type), now).unwrap_err();
            assert_eq!(err, FetchError::Unusable(BEARER_FOR_DPOP.to_owned()));
            assert!(err.is_permanent(), "retried slowly, reported not ready");
        }
        for token_type in ["mac", "", "N_A tok-do-not-log"] {
            let err = client.parse_token(&answer(token_type), now).unwrap_err();
            assert!(
                matches!(err, FetchError::Unusable(_)),
                "{token_type:?}: {err}"
            );
            assert!(!err.to_string().contains("tok-do-not-log"));
        }
    }

    #[test]
    fn without_dpop_a_bearer_answer_is_used_and_a_dpop_one_refused() {
        let client = TokenClient::for_tests(None);
        assert_eq!(client.token_kind(), TokenKind::Bearer);
        let now = SystemTime::now();
        let token = client.parse_token(&answer("bearer"), now).unwrap();
        assert_eq!(token.kind(), TokenKind::Bearer);
        assert!(client
            .parse_token(&answer("DPoP"), now)
            .unwrap_err()
            .is_permanent());
        assert!(!client
            .parse_token(&answer("mac"), now)
            .unwrap_err()
            .is_permanent());
    }

    #[test]
    fn basic_client_auth_form_encodes_both_parts() {
        let value = basic_client_auth("id:1", &SecretString::from("p@ss word".to_owned())).unwrap();
        use base64::Engine as _;
        let text = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        assert_eq!(decoded, b"id%3A1:p%40ss+word");
        assert!(value.is_sensitive());
    }
}
