//! The fake's OAuth 2.0 authorization server and the token check its API applies, as pure
//! logic (no I/O): `POST /oauth/token` issues DPoP-bound (or Bearer) tokens, and every API
//! request must then present one.
//!
//! Invariants: the API accepts a token only if this fake issued it, it has not expired and was
//! issued in the current revocation generation; a bound token only as `Authorization: DPoP`
//! with a proof made by its key for this very request (method, URI without query, `ath`) and
//! never seen before. Rejection reasons are kept for test diagnostics; none carries a token, a
//! proof or a secret.
//!
//! Pieces: this file holds the state and the token fault queue; `token_endpoint` issues
//! tokens, `api_check` checks what API requests present, `access_token` signs and opens tokens,
//! `form` reads token requests, `options` is the public configuration.

mod access_token;
mod api_check;
mod form;
mod options;
#[cfg(test)]
mod tests;
mod token_endpoint;

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, SystemTime};

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, PRAGMA};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::dpop_verify::{ProofError, ReplayCache};
use super::raas;
use access_token::TokenSigner;
use form::FormError;
pub use options::{OAuthServerOptions, TokenFault, DEFAULT_TOKEN_LIFETIME};

/// Path of the token endpoint on the fake.
pub const TOKEN_PATH: &str = "/oauth/token";
/// Header carrying a proof, and the one carrying the server's nonce (RFC 9449 §4.1, §8).
pub(super) const DPOP: &str = "dpop";
pub(super) const DPOP_NONCE: &str = "dpop-nonce";

/// What the server needs to know of one request.
pub(super) struct RequestView<'a> {
    pub(super) method: &'a Method,
    /// `:authority`, or the `Host` header: what `htu` must name after `https://`.
    pub(super) authority: Option<&'a str>,
    /// The path without query.
    pub(super) path: &'a str,
    pub(super) headers: &'a HeaderMap,
    pub(super) body: &'a [u8],
    pub(super) now: SystemTime,
}

/// A token-endpoint answer: status, JSON body and extra headers.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

/// What happens to a token request before the endpoint proper sees it.
#[derive(Debug)]
pub(super) enum TokenStep {
    /// Answer this (the endpoint is down, or a status or malformed fault).
    Reply(Reply),
    Hang,
    Delay(Duration),
    /// Run the endpoint.
    Serve,
}

/// The authentication scheme of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    Dpop,
    Bearer,
}

/// The `401` the API answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    /// `WWW-Authenticate: <scheme> error="invalid_token"`.
    InvalidToken(Scheme),
    /// `WWW-Authenticate: DPoP error="use_dpop_nonce"` and `DPoP-Nonce: <nonce>`.
    UseNonce(String),
}

/// Why the token endpoint or the API refused a request (for diagnostics only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Rejection {
    #[error("bad token request: {0}")]
    Form(FormError),
    #[error("bad token request: {0}")]
    InvalidRequest(&'static str),
    #[error("unknown client or wrong client secret")]
    InvalidClient,
    #[error("unsupported grant_type")]
    UnsupportedGrant,
    #[error("wrong service-account username or password")]
    InvalidGrant,
    #[error("no Authorization header of the form `DPoP <token>` or `Bearer <token>`")]
    NoToken,
    #[error("the access token was not issued by this server or was altered")]
    ForeignToken,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token was revoked")]
    Revoked,
    #[error("a DPoP-bound token was sent with the Bearer scheme")]
    BoundAsBearer,
    #[error("an unbound token was sent with the DPoP scheme")]
    UnboundAsDpop,
    #[error("no DPoP proof header, or more than one")]
    NoProof,
    #[error("DPoP proof: {0}")]
    Proof(ProofError),
    #[error("the proof's key is not the key the token is bound to")]
    KeyMismatch,
    #[error("the proof's jti was seen within the last 120 s")]
    Replay,
    #[error("the API refuses every token (test switch)")]
    RefusingAll,
}

/// The authorization server's state: options, signing key, nonce, counters, pending faults.
#[derive(Debug)]
pub(super) struct AuthServer {
    options: OAuthServerOptions,
    signer: TokenSigner,
    nonce: String,
    generation: u64,
    replay: ReplayCache,
    faults: VecDeque<(TokenFault, usize)>,
    down: bool,
    /// The API refuses every token, even one issued a moment ago (as Tango would once it
    /// has disabled the client).
    refuse_all: bool,
    token_requests: usize,
    tokens_issued: usize,
    /// Every token issued, in order (for scanning a client's output for leaked tokens).
    issued: IssuedTokens,
    last_rejection: Option<String>,
}

impl AuthServer {
    pub(super) fn new(options: OAuthServerOptions) -> io::Result<Self> {
        Ok(AuthServer {
            options,
            signer: TokenSigner::generate()?,
            nonce: new_nonce(),
            generation: 0,
            replay: ReplayCache::new(),
            faults: VecDeque::new(),
            down: false,
            refuse_all: false,
            token_requests: 0,
            tokens_issued: 0,
            issued: IssuedTokens::default(),
            last_rejection: None,
        })
    }

    /// Accepts another secret for `client_id` (a rotation's overlap).
    pub(super) fn accept_client_secret(&mut self, client_id: &str, secret: &str) {
        self.options
            .clients
            .push((client_id.to_owned(), secret.into()));
    }

    /// Stops accepting `secret` for any client.
    pub(super) fn revoke_client_secret(&mut self, secret: &str) {
        use secrecy::ExposeSecret;
        self.options
            .clients
            .retain(|(_, known)| known.expose_secret() != secret);
    }

    pub(super) fn push_fault(&mut self, fault: TokenFault) {
        let times = fault.times();
        // `times: 0` would apply to no request: nothing to queue.
        if times > 0 {
            self.faults.push_back((fault, times));
        }
    }

    pub(super) fn clear_faults(&mut self) {
        self.faults.clear();
    }

    pub(super) fn set_down(&mut self, down: bool) {
        self.down = down;
    }

    /// While on, the API answers `401 invalid_token` to every request.
    pub(super) fn set_refuse_all(&mut self, on: bool) {
        self.refuse_all = on;
    }

    /// While on, the token endpoint answers `token_type: Bearer` with an unbound token,
    /// whatever proof was sent (as [`OAuthServerOptions::bearer_only`]).
    pub(super) fn set_bearer_only(&mut self, on: bool) {
        self.options.issue_bearer = on;
    }

    /// Every token issued so far is refused from now on.
    pub(super) fn revoke(&mut self) {
        self.generation += 1;
    }

    /// A new current nonce; the old one is refused from now on.
    pub(super) fn rotate_nonce(&mut self) {
        self.nonce = new_nonce();
    }

    pub(super) fn token_requests(&self) -> usize {
        self.token_requests
    }

    pub(super) fn tokens_issued(&self) -> usize {
        self.tokens_issued
    }

    pub(super) fn issued(&self) -> &[String] {
        &self.issued.0
    }

    pub(super) fn record_issued(&mut self, token: &str) {
        self.issued.0.push(token.to_owned());
    }

    pub(super) fn last_rejection(&self) -> Option<String> {
        self.last_rejection.clone()
    }

    /// Counts a token request and decides whether a fault (or the endpoint being down)
    /// answers it instead of the endpoint. Being down consumes no fault.
    pub(super) fn begin_token_request(&mut self) -> TokenStep {
        self.token_requests += 1;
        if self.down {
            let body = json!({"error": "temporarily_unavailable"});
            return TokenStep::Reply(reply(StatusCode::SERVICE_UNAVAILABLE, body));
        }
        let Some((fault, remaining)) = self.faults.front_mut() else {
            return TokenStep::Serve;
        };
        let fault = fault.clone();
        *remaining -= 1;
        if *remaining == 0 {
            self.faults.pop_front();
        }
        match fault {
            TokenFault::Status { status, error, .. } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let body = match error {
                    Some(error) => json!({ "error": error }),
                    None => raas::error_body(status, TOKEN_PATH, "Injected fault."),
                };
                TokenStep::Reply(reply(status, body))
            }
            TokenFault::Malformed { .. } => {
                let body = json!({
                    "token_type": self.token_type(true),
                    "expires_in": self.options.token_lifetime.as_secs(),
                });
                TokenStep::Reply(reply(StatusCode::OK, body))
            }
            TokenFault::Hang => TokenStep::Hang,
            TokenFault::Delay(delay) => TokenStep::Delay(delay),
        }
    }

    fn token_type(&self, bound: bool) -> &'static str {
        if bound && !self.options.issue_bearer {
            "DPoP"
        } else {
            "Bearer"
        }
    }

    fn nonce_header(&self) -> Option<(HeaderName, HeaderValue)> {
        let value = HeaderValue::from_str(&self.nonce).ok()?;
        Some((HeaderName::from_static(DPOP_NONCE), value))
    }

    /// The current nonce, for the API's `use_dpop_nonce` challenge and tests.
    pub(super) fn nonce(&self) -> &str {
        &self.nonce
    }
}

/// The tokens issued so far; `Debug` shows only how many (they are secrets).
#[derive(Default)]
struct IssuedTokens(Vec<String>);

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} tokens redacted]", self.0.len())
    }
}

/// A JSON reply with the headers every token response carries (RFC 6749 §5.1).
fn reply(status: StatusCode, body: Value) -> Reply {
    Reply {
        status,
        body,
        headers: vec![
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (PRAGMA, HeaderValue::from_static("no-cache")),
        ],
    }
}

/// A random UUID v4 in hex: unguessable and safe in a header.
fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The value of header `name` if it occurs exactly once as text; `Ok(None)` when absent,
/// `Err` when repeated or not text (RFC 9449 §4.3: more than one proof is an error).
fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    first.to_str().map(Some).map_err(|_| ())
}
