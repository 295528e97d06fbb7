//! Credentials of an API request: an OAuth token (with its DPoP proof) when OAuth is on, else
//! Basic credentials when they are set; a `401` otherwise.
//!
//! Invariant: with OAuth on, Basic credentials are never consulted; every `401` is counted in
//! `api_auth_failures` and carries the Tango-shaped JSON body, and an OAuth `401` carries the
//! `WWW-Authenticate` challenge (plus `DPoP-Nonce` for a nonce challenge).

use std::sync::PoisonError;
use std::time::SystemTime;

use base64::Engine as _;
use http::header::{HeaderValue, AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Response, StatusCode};
use secrecy::ExposeSecret;

use super::body::FakeBody;
use super::fake_tango::Shared;
use super::handler::json;
use super::oauth::{Challenge, RequestView, Scheme, DPOP_NONCE};
use super::{raas, BasicCredentials};

/// The `401` for an API request without acceptable credentials: an OAuth token (and proof)
/// when OAuth is on, else Basic credentials when they are set; `None` when it may proceed.
pub(super) fn authenticate(
    shared: &Shared,
    parts: &Parts,
    path: &str,
) -> Option<Response<FakeBody>> {
    let mut state = shared.lock();
    let challenge = match state.oauth.as_mut() {
        Some(server) => match server.authorize(&request_view(parts, &[], shared.now())) {
            Ok(()) => return None,
            Err(challenge) => Some(challenge),
        },
        None if basic_authorized(shared, &parts.headers) => return None,
        None => None,
    };
    state.api_auth_failures += 1;
    drop(state);
    let status = StatusCode::UNAUTHORIZED;
    let message = "Full authentication is required to access this resource.";
    let mut response = json(status, &raas::error_body(status, path, message));
    let headers = response.headers_mut();
    match challenge {
        Some(Challenge::InvalidToken(scheme)) => {
            let value = match scheme {
                Scheme::Dpop => r#"DPoP error="invalid_token""#,
                Scheme::Bearer => r#"Bearer error="invalid_token""#,
            };
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(value));
        }
        Some(Challenge::UseNonce(nonce)) => {
            let value = HeaderValue::from_static(r#"DPoP error="use_dpop_nonce""#);
            headers.insert(WWW_AUTHENTICATE, value);
            if let Ok(nonce) = HeaderValue::from_str(&nonce) {
                headers.insert(DPOP_NONCE, nonce);
            }
        }
        // Basic: the fake has always answered without a challenge, like Tango's API.
        None => {}
    }
    Some(response)
}

/// What the authorization server needs of a request. The authority is h2's `:authority` (or
/// an absolute-form target's), else the `Host` header.
pub(super) fn request_view<'a>(
    parts: &'a Parts,
    body: &'a [u8],
    now: SystemTime,
) -> RequestView<'a> {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(HOST).and_then(|v| v.to_str().ok()));
    RequestView {
        method: &parts.method,
        authority,
        path: parts.uri.path(),
        headers: &parts.headers,
        body,
        now,
    }
}

/// True when no credentials are expected, or `Authorization: Basic` carries exactly one of
/// the accepted pairs.
fn basic_authorized(shared: &Shared, headers: &http::HeaderMap) -> bool {
    let Some(accepted) = &shared.basic_auth else {
        return true;
    };
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((user, password)) = text.split_once(':') else {
        return false;
    };
    let accepted = accepted.lock().unwrap_or_else(PoisonError::into_inner);
    accepted
        .iter()
        .any(|c: &BasicCredentials| user == c.username && password == c.password.expose_secret())
}
