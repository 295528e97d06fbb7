//! An in-process stand-in for Tango's edge and RaaS v2 API, for the `demo` command and tests.
//!
//! Invariant: the fake behaves like the real edge where the gateway must get it right — mTLS
//! with a required client certificate, the ALB's `X-Forwarded-For` rule, Basic credentials,
//! `externalRefID` idempotency — and never panics on what a client sends.
//!
//! Pieces: [`alb`] (the XFF rule, pure), [`raas`] (canned endpoints, pure), [`dpop_verify`]
//! (DPoP proof checks, pure and independent of the gateway's signer), `fake_tango` (TLS
//! listener and per-connection serving), `handler` (one request: record, ALB, faults, auth,
//! RaaS), `api_auth` (an API request's credentials: OAuth token and proof, or Basic), `oauth`
//! (the authorization server and the API's token check, pure), `token_route` (`/oauth/token`:
//! its faults, then `oauth`), `body` (whole, stalling or slow response bodies), `chaos`
//! (network-level faults and bulk observation for long fault-injection runs), `inflight`
//! (concurrent requests for one `externalRefID`).

pub mod alb;
mod api_auth;
mod body;
mod chaos;
pub mod dpop_verify;
mod fake_tango;
mod handler;
mod inflight;
mod oauth;
pub mod raas;
pub mod rejections;
mod rotation;
#[cfg(test)]
pub(crate) mod test_proofs;
#[cfg(test)]
mod tests;
mod token_route;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Version};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::SecretString;

use crate::pki::{CertifiedMaterial, DevPki};

pub use fake_tango::FakeTango;
pub use oauth::{OAuthServerOptions, TokenFault, DEFAULT_TOKEN_LIFETIME, TOKEN_PATH};

/// Header on every answer the fake makes, so tests can tell it from gateway-made answers.
pub const FAKE_TANGO_HEADER: &str = "x-fake-tango";

/// How to start a [`FakeTango`].
pub struct FakeTangoOptions {
    /// Server certificate chain, leaf first.
    pub server_chain: Vec<CertificateDer<'static>>,
    pub server_key: PrivateKeyDer<'static>,
    /// Trust anchors for client certificates.
    pub client_ca: Vec<CertificateDer<'static>>,
    /// When true (the default) a handshake without a trusted client certificate fails.
    pub require_client_cert: bool,
    /// When set, every request needs `Authorization: Basic` with these, else `401`.
    pub basic_auth: Option<BasicCredentials>,
    /// When set, the fake serves `POST /oauth/token` and every other path needs one of its
    /// tokens (with a DPoP proof when bound) instead of Basic credentials.
    pub oauth: Option<OAuthServerOptions>,
    /// When true the fake speaks TLS 1.2 only (TLS 1.3 and 1.2 by default).
    pub tls12_only: bool,
}

impl FakeTangoOptions {
    /// Serves `server`, trusting client certificates issued by `client_ca`.
    pub fn new(server: &CertifiedMaterial, client_ca: &CertifiedMaterial) -> Self {
        FakeTangoOptions {
            server_chain: vec![server.cert_der.clone()],
            server_key: server.key_der(),
            client_ca: vec![client_ca.cert_der.clone()],
            require_client_cert: true,
            basic_auth: None,
            oauth: None,
            tls12_only: false,
        }
    }

    /// The dev server certificate, trusting the dev CA for clients.
    pub fn from_dev_pki(pki: &DevPki) -> Self {
        Self::new(&pki.server, pki.ca.cert())
    }

    pub fn with_basic_auth(mut self, username: &str, password: &str) -> Self {
        self.basic_auth = Some(BasicCredentials {
            username: username.to_owned(),
            password: SecretString::from(password.to_owned()),
        });
        self
    }

    /// Serves an OAuth 2.0 token endpoint; the API then takes its tokens instead of Basic.
    pub fn with_oauth(mut self, options: OAuthServerOptions) -> Self {
        self.oauth = Some(options);
        self
    }

    /// TLS 1.2 only: the server then refuses a client certificate inside the handshake, so the
    /// client sees the refusal before it sends anything (TLS 1.3 refuses after it).
    pub fn tls12_only(mut self) -> Self {
        self.tls12_only = true;
        self
    }

    /// Client certificates become optional (still verified when presented).
    pub fn client_cert_optional(mut self) -> Self {
        self.require_client_cert = false;
        self
    }
}

impl fmt::Debug for FakeTangoOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeTangoOptions")
            .field("server_chain_len", &self.server_chain.len())
            .field("server_key", &"[redacted]")
            .field("client_ca_len", &self.client_ca.len())
            .field("require_client_cert", &self.require_client_cert)
            .field("basic_auth", &self.basic_auth)
            .field("oauth", &self.oauth)
            .field("tls12_only", &self.tls12_only)
            .finish()
    }
}

/// The platform name and key the fake expects (password redacted in `Debug`).
#[derive(Clone)]
pub struct BasicCredentials {
    pub username: String,
    pub password: SecretString,
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Misbehaviour applied to the next requests, in the order pushed (after the ALB rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer `status` (Tango-shaped JSON error) for the next `times` requests.
    Status {
        status: u16,
        retry_after: Option<String>,
        times: usize,
    },
    /// Read the request, never answer, keep the connection open.
    Hang,
    /// Read the whole request, then drop the connection without answering.
    ResetAfterRead,
    /// Wait, then answer normally.
    Delay(Duration),
    /// Send the headers and `after_bytes` of the body, then stall forever.
    StallBody { after_bytes: usize },
    /// Answer normally, but send the body `chunk` bytes at a time with `pause` between chunks
    /// (slow, yet never silent for longer than `pause`).
    SlowBody { chunk: usize, pause: Duration },
    /// Answer exactly `answer` (status, headers, body) for the next `times` requests: a
    /// refusal as Tango's edge or API words it ([`rejections::CannedAnswer`]).
    Answer {
        answer: rejections::CannedAnswer,
        times: usize,
    },
}

/// Misbehaviour of the fake's listener for the next new connections (see
/// [`FakeTango::set_connection_fault`]); requests on open connections are not affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionFault {
    /// Close the connection as soon as it is accepted, before the TLS handshake: the client's
    /// request never reaches the server.
    CloseOnAccept,
    /// Read the client's first TLS flight and answer a fatal `handshake_failure` alert.
    HandshakeFailure,
}

/// One request as the fake received it (after the TLS handshake).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query as sent.
    pub path_and_query: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Trailer fields sent after the body, if any.
    pub trailers: Option<HeaderMap>,
    /// Subject common name of the client certificate, if one was presented.
    pub client_cn: Option<String>,
    pub peer: SocketAddr,
}

impl RecordedRequest {
    /// The first value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of header `name` that is text, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}
