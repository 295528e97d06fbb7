//! Step 5: fetch one token with the route's OAuth configuration through the gateway's own
//! `TokenClient` (DPoP proof and nonce round trip included), and report what came back.
//!
//! Invariant: the token is dropped (and zeroized) here; only its type and lifetime leave this
//! file. Failure texts are the client's, which name statuses and OAuth error codes only.

use std::sync::Arc;
use std::time::Duration;

use super::hints::Hint;
use super::report::{Step, StepResult};
use crate::auth::dpop::DpopKey;
use crate::auth::oauth::client::{FetchError, TokenClient};
use crate::auth::oauth::nonce::Nonces;
use crate::config::{AuthConfig, DpopKeyConfig, OAuth2Config};

/// Step 5; SKIP for a route that does not use OAuth.
pub async fn fetch(auth: &AuthConfig) -> StepResult {
    let AuthConfig::OAuth2(oauth) = auth else {
        return StepResult::skip(
            Step::Token,
            format!("not an OAuth route (auth: {})", auth.kind()),
        );
    };
    let dpop = match dpop_key(oauth) {
        Ok(key) => key.map(Arc::new),
        Err(why) => return StepResult::fail(Step::Token, why, Hint::Setup),
    };
    let thumbprint = dpop.as_ref().map(|key| key.thumbprint().to_owned());
    // A fresh nonce store: doctor starts cold, as a gateway does on its first start.
    let client = match TokenClient::new(
        Arc::new((**oauth).clone()),
        dpop,
        Arc::new(Nonces::default()),
    ) {
        Ok(client) => client,
        Err(err) => {
            let detail = format!("cannot build the token endpoint's TLS client: {err}");
            return StepResult::fail(Step::Token, detail, Hint::Setup);
        }
    };
    match client.fetch().await {
        Ok(token) => {
            let lifetime = token
                .expires_at()
                .duration_since(token.obtained_at())
                .unwrap_or(Duration::ZERO);
            let mut detail = format!(
                "{} token from {}, lifetime {}",
                token.kind().as_str(),
                oauth.token_url,
                humantime::format_duration(lifetime)
            );
            if let Some(thumbprint) = thumbprint {
                detail.push_str(&format!(" (DPoP key thumbprint {thumbprint})"));
            }
            StepResult::pass(Step::Token, detail)
        }
        Err(err) => {
            let hint = fetch_hint(&err);
            StepResult::fail(Step::Token, err.to_string(), hint)
        }
    }
}

/// The route's DPoP key, loaded as the gateway loads it (`None` without DPoP).
fn dpop_key(oauth: &OAuth2Config) -> Result<Option<DpopKey>, String> {
    let key = match &oauth.dpop {
        None => return Ok(None),
        Some(DpopKeyConfig::Ephemeral) => DpopKey::generate(),
        Some(DpopKeyConfig::KeyFile(path)) => {
            let der = crate::certs::load_dpop_key(path)
                .map_err(|why| format!("oauth2.dpop.key_file: {why}"))?;
            DpopKey::from_pkcs8_der(der.secret_der())
        }
    };
    key.map(Some)
        .map_err(|err| format!("oauth2.dpop: cannot use the key: {err}"))
}

/// What a failed token request most likely means. The client's messages name the status
/// (`answered 401 Unauthorized`) and the OAuth code in parentheses (`(invalid_client)`).
pub fn fetch_hint(err: &FetchError) -> Hint {
    let text = err.to_string();
    if !err.is_permanent() {
        return Hint::TokenEndpointDown;
    }
    if matches!(err, FetchError::Unusable(_)) {
        return Hint::DpopNotIssued;
    }
    if text.contains("TLS") {
        return Hint::TokenEndpointTls;
    }
    if text.contains("DPoP") || text.contains("dpop") {
        return Hint::DpopKey;
    }
    match oauth_code(&text) {
        Some("invalid_client" | "unauthorized_client") => Hint::OAuthClientRefused,
        Some("invalid_grant") => Hint::OAuthGrantRefused,
        Some(_) => Hint::OAuthRequestRefused,
        None if text.contains(" 403 ") => Hint::TokenEndpointForbidden,
        None if text.contains(" 401 ") => Hint::OAuthClientRefused,
        None => Hint::OAuthRequestRefused,
    }
}

/// The OAuth error code the message ends with, in parentheses.
fn oauth_code(text: &str) -> Option<&str> {
    let inner = text.strip_suffix(')')?;
    let open = inner.rfind('(')?;
    Some(&inner[open + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permanent(text: &str) -> FetchError {
        FetchError::Permanent(text.to_owned())
    }

    #[test]
    fn a_refused_client_points_at_its_id_and_secret() {
        let err = permanent("the token endpoint answered 401 Unauthorized (invalid_client)");
        assert_eq!(fetch_hint(&err), Hint::OAuthClientRefused);
        let err = permanent("the token endpoint answered 400 Bad Request (unauthorized_client)");
        assert_eq!(fetch_hint(&err), Hint::OAuthClientRefused);
        let err = permanent("the token endpoint answered 401 Unauthorized");
        assert_eq!(fetch_hint(&err), Hint::OAuthClientRefused);
    }

    #[test]
    fn other_refusals() {
        let err = permanent("the token endpoint answered 400 Bad Request (invalid_grant)");
        assert_eq!(fetch_hint(&err), Hint::OAuthGrantRefused);
        let err = permanent("the token endpoint answered 400 Bad Request (invalid_scope)");
        assert_eq!(fetch_hint(&err), Hint::OAuthRequestRefused);
        let err = permanent("the token endpoint answered 403 Forbidden");
        assert_eq!(fetch_hint(&err), Hint::TokenEndpointForbidden);
        let err = permanent(
            "TLS with the token endpoint failed (server certificate or client certificate refused)",
        );
        assert_eq!(fetch_hint(&err), Hint::TokenEndpointTls);
        let err =
            permanent("the token endpoint issued a DPoP-bound token but no dpop key is configured");
        assert_eq!(fetch_hint(&err), Hint::DpopKey);
        let err = FetchError::Unusable(
            "the token endpoint answered token_type Bearer; this route requires DPoP-bound tokens"
                .to_owned(),
        );
        assert_eq!(
            fetch_hint(&err),
            Hint::DpopNotIssued,
            "not the missing-key hint"
        );
    }

    #[test]
    fn transient_failures_mean_the_endpoint_is_down() {
        for text in [
            "cannot connect to the token endpoint",
            "the token endpoint answered 503 Service Unavailable (temporarily_unavailable)",
            "the token endpoint did not answer within 15s",
        ] {
            let err = FetchError::Transient(text.to_owned());
            assert_eq!(fetch_hint(&err), Hint::TokenEndpointDown, "{text}");
        }
    }
}
