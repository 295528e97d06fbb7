//! How the fake's OAuth 2.0 authorization server is set up, and the token-endpoint faults.
//!
//! Invariant: client secrets and service-account passwords live in `SecretString`s and no
//! `Debug` output shows them.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

/// Lifetime of issued tokens unless set: Tango's 24 h audience.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The fake's authorization server (`POST /oauth/token`) and what its API then demands.
pub struct OAuthServerOptions {
    /// `(client_id, client_secret)` pairs the token endpoint accepts.
    pub clients: Vec<(String, SecretString)>,
    /// `(username, password)` pairs for `grant_type=password`.
    pub service_accounts: Vec<(String, SecretString)>,
    /// `expires_in` of issued tokens.
    pub token_lifetime: Duration,
    /// Token requests must carry a valid DPoP proof and tokens are bound to its key (`cnf.jkt`).
    /// When false a proof is optional: with one the token is bound, without one it is Bearer.
    pub require_dpop: bool,
    /// The token endpoint demands the server nonce (`400 use_dpop_nonce` + `DPoP-Nonce`).
    pub token_nonce: bool,
    /// The API demands the server nonce in proofs (`401`, `DPoP error="use_dpop_nonce"`).
    pub api_nonce: bool,
    /// Answer `token_type: Bearer` with an unbound token, whatever proof was sent.
    pub issue_bearer: bool,
}

impl OAuthServerOptions {
    /// One client; DPoP required; 24 h tokens; no nonces.
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        OAuthServerOptions {
            clients: vec![(client_id.to_owned(), SecretString::from(client_secret))],
            service_accounts: Vec::new(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            require_dpop: true,
            token_nonce: false,
            api_nonce: false,
            issue_bearer: false,
        }
    }

    /// Another client the token endpoint accepts.
    pub fn with_client(mut self, client_id: &str, client_secret: &str) -> Self {
        self.clients
            .push((client_id.to_owned(), SecretString::from(client_secret)));
        self
    }

    /// A service account for `grant_type=password`.
    pub fn with_service_account(mut self, username: &str, password: &str) -> Self {
        self.service_accounts
            .push((username.to_owned(), SecretString::from(password)));
        self
    }

    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// The token endpoint demands the server nonce.
    pub fn token_nonce(mut self) -> Self {
        self.token_nonce = true;
        self
    }

    /// The API demands the server nonce.
    pub fn api_nonce(mut self) -> Self {
        self.api_nonce = true;
        self
    }

    /// Tokens are plain Bearer tokens, even when a proof is sent (a misconfigured server).
    pub fn bearer_only(mut self) -> Self {
        self.issue_bearer = true;
        self
    }

    /// Proofs become optional at the token endpoint.
    pub fn without_dpop(mut self) -> Self {
        self.require_dpop = false;
        self
    }
}

impl fmt::Debug for OAuthServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |pairs: &[(String, SecretString)]| {
            pairs
                .iter()
                .map(|(name, _)| format!("{name}:[redacted]"))
                .collect::<Vec<_>>()
        };
        f.debug_struct("OAuthServerOptions")
            .field("clients", &names(&self.clients))
            .field("service_accounts", &names(&self.service_accounts))
            .field("token_lifetime", &self.token_lifetime)
            .field("require_dpop", &self.require_dpop)
            .field("token_nonce", &self.token_nonce)
            .field("api_nonce", &self.api_nonce)
            .field("issue_bearer", &self.issue_bearer)
            .finish()
    }
}

/// Misbehaviour of the token endpoint for the next token requests, in the order pushed.
/// API requests never consume these, and token requests never consume a
/// [`Fault`](crate::fake::Fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFault {
    /// Answer `status` for the next `times` token requests, with `{"error": error}` as the body
    /// when `error` is set (e.g. `"invalid_client"`), else a Tango-shaped error body.
    Status {
        status: u16,
        error: Option<String>,
        times: usize,
    },
    /// Answer `200` with a JSON body lacking `access_token`, `times` times.
    Malformed { times: usize },
    /// Read the request, never answer, keep the connection open.
    Hang,
    /// Wait, then answer normally.
    Delay(Duration),
}

impl TokenFault {
    /// How many token requests this fault applies to.
    pub(in crate::fake) fn times(&self) -> usize {
        match self {
            TokenFault::Status { times, .. } | TokenFault::Malformed { times } => *times,
            TokenFault::Hang | TokenFault::Delay(_) => 1,
        }
    }
}
