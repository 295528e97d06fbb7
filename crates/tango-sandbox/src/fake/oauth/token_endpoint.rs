//! The token endpoint proper (`POST /oauth/token`): client authentication (form or Basic),
//! the grant, the DPoP proof, then a new token.
//!
//! Invariant: a token is issued only to an authenticated client, for a supported grant, and —
//! unless proofs are optional or the server is Bearer-only — bound to the key of a valid,
//! never-seen proof (with the current nonce when one is demanded).

use aws_lc_rs::constant_time::verify_slices_are_equal;
use http::header::{HeaderValue, ALLOW, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::form::{self, FormError};
use super::{reply, single_header, AuthServer, Rejection, Reply, RequestView, DPOP, TOKEN_PATH};
use crate::fake::dpop_verify::{self, ProofCheck, ProofError};

/// A refused token request: the OAuth error code, its status, and the reason.
struct TokenError {
    status: StatusCode,
    code: &'static str,
    reason: Rejection,
}

impl TokenError {
    fn bad_request(code: &'static str, reason: Rejection) -> Self {
        TokenError {
            status: StatusCode::BAD_REQUEST,
            code,
            reason,
        }
    }
}

impl AuthServer {
    /// The token endpoint proper.
    pub(in crate::fake) fn token(&mut self, request: &RequestView<'_>) -> Reply {
        match self.issue(request) {
            Ok(reply) => reply,
            Err(error) => {
                self.last_rejection = Some(format!("token endpoint: {}", error.reason));
                let body = json!({
                    "error": error.code,
                    "error_description": error.reason.to_string(),
                });
                let mut answer = reply(error.status, body);
                if error.code == "use_dpop_nonce" {
                    answer.headers.extend(self.nonce_header());
                }
                // RFC 6749 §5.2: a client that tried Basic gets a Basic challenge with its 401.
                let tried_basic = !matches!(form::basic_client(request.headers), Ok(None));
                if error.status == StatusCode::UNAUTHORIZED && tried_basic {
                    let challenge = HeaderValue::from_static(r#"Basic realm="oauth""#);
                    answer.headers.push((WWW_AUTHENTICATE, challenge));
                }
                if error.status == StatusCode::METHOD_NOT_ALLOWED {
                    answer
                        .headers
                        .push((ALLOW, HeaderValue::from_static("POST")));
                }
                answer
            }
        }
    }

    fn issue(&mut self, request: &RequestView<'_>) -> Result<Reply, TokenError> {
        if request.method != Method::POST {
            return Err(TokenError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "invalid_request",
                reason: Rejection::InvalidRequest("the token endpoint takes POST only"),
            });
        }
        let invalid_request = |e| TokenError::bad_request("invalid_request", Rejection::Form(e));
        if !form::is_form(request.headers) {
            return Err(invalid_request(FormError::WrongContentType));
        }
        let params = form::parse_form(request.body).map_err(invalid_request)?;
        let param = |name: &str| params.get(name).map(String::as_str);
        let client_id = self.authenticate_client(request.headers, param)?;
        let subject = match param("grant_type") {
            Some("client_credentials") => client_id,
            Some("password") => self.authenticate_service_account(param)?,
            Some(_) => {
                return Err(TokenError::bad_request(
                    "unsupported_grant_type",
                    Rejection::UnsupportedGrant,
                ))
            }
            None => {
                return Err(TokenError::bad_request(
                    "invalid_request",
                    Rejection::InvalidRequest("grant_type is missing"),
                ))
            }
        };
        let jkt = self.token_request_binding(request)?;

        let iat = dpop_verify::unix_seconds(request.now);
        let lifetime = self.options.token_lifetime.as_secs();
        let mut claims = json!({
            "sub": subject,
            "iat": iat,
            "exp": iat.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX)),
            "jti": uuid::Uuid::new_v4().to_string(),
            "gen": self.generation,
        });
        if let Some(audience) = param("audience") {
            claims["aud"] = json!(audience);
        }
        if let Some(scope) = param("scope") {
            claims["scope"] = json!(scope);
        }
        if let Some(jkt) = &jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        let access_token = self.signer.mint(&claims);
        self.record_issued(&access_token);
        let mut body = json!({
            "access_token": access_token,
            "token_type": self.token_type(jkt.is_some()),
            "expires_in": lifetime,
        });
        if let Some(scope) = param("scope") {
            body["scope"] = json!(scope);
        }
        self.tokens_issued += 1;
        Ok(reply(StatusCode::OK, body))
    }

    /// The client id, once the client has proved its secret one way (form or Basic).
    fn authenticate_client<'p>(
        &self,
        headers: &HeaderMap,
        param: impl Fn(&str) -> Option<&'p str>,
    ) -> Result<String, TokenError> {
        let invalid_client = |reason| TokenError {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_client",
            reason,
        };
        let basic = form::basic_client(headers).map_err(|e| invalid_client(Rejection::Form(e)))?;
        let (id, secret) = match basic {
            // RFC 6749 §2.3: one authentication method per request. A form `client_id` that
            // repeats the Basic one is allowed (it identifies, it does not authenticate).
            Some(_) if param("client_secret").is_some() => {
                return Err(TokenError::bad_request(
                    "invalid_request",
                    Rejection::InvalidRequest("client authenticated by both Basic and the form"),
                ))
            }
            Some((id, _)) if param("client_id").is_some_and(|form_id| form_id != id) => {
                return Err(TokenError::bad_request(
                    "invalid_request",
                    Rejection::InvalidRequest("form client_id differs from the Basic one"),
                ))
            }
            Some((id, secret)) => (id, secret),
            None => match (param("client_id"), param("client_secret")) {
                (Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
                _ => return Err(invalid_client(Rejection::InvalidClient)),
            },
        };
        if credentials_match(&self.options.clients, &id, &secret) {
            Ok(id)
        } else {
            Err(invalid_client(Rejection::InvalidClient))
        }
    }

    fn authenticate_service_account<'p>(
        &self,
        param: impl Fn(&str) -> Option<&'p str>,
    ) -> Result<String, TokenError> {
        let (Some(username), Some(password)) = (param("username"), param("password")) else {
            return Err(TokenError::bad_request(
                "invalid_request",
                Rejection::InvalidRequest("the password grant needs username and password"),
            ));
        };
        if credentials_match(&self.options.service_accounts, username, password) {
            Ok(username.to_owned())
        } else {
            Err(TokenError::bad_request(
                "invalid_grant",
                Rejection::InvalidGrant,
            ))
        }
    }

    /// The thumbprint to bind the new token to: checks the token request's proof.
    fn token_request_binding(
        &mut self,
        request: &RequestView<'_>,
    ) -> Result<Option<String>, TokenError> {
        if self.options.issue_bearer {
            return Ok(None);
        }
        let invalid = |reason| TokenError::bad_request("invalid_dpop_proof", reason);
        let proof = match single_header(request.headers, DPOP) {
            Ok(Some(proof)) => proof,
            Ok(None) if !self.options.require_dpop => return Ok(None),
            Ok(None) | Err(()) => return Err(invalid(Rejection::NoProof)),
        };
        let htu = format!("https://{}{TOKEN_PATH}", request.authority.unwrap_or(""));
        let check = ProofCheck {
            method: Method::POST.as_str(),
            htu: &htu,
            access_token: None,
            nonce: self.options.token_nonce.then_some(self.nonce.as_str()),
            now: request.now,
        };
        let verified = match dpop_verify::verify_proof(proof, &check) {
            Ok(verified) => verified,
            Err(ProofError::NonceRequired) => {
                return Err(TokenError::bad_request(
                    "use_dpop_nonce",
                    Rejection::Proof(ProofError::NonceRequired),
                ))
            }
            Err(error) => return Err(invalid(Rejection::Proof(error))),
        };
        if !self.replay.check_and_insert(&verified.jti, request.now) {
            return Err(invalid(Rejection::Replay));
        }
        Ok(Some(verified.jkt))
    }
}

/// True when `(name, secret)` is one of `pairs`; the secret compared in constant time.
fn credentials_match(pairs: &[(String, SecretString)], name: &str, secret: &str) -> bool {
    pairs.iter().any(|(known, known_secret)| {
        known == name
            && verify_slices_are_equal(known_secret.expose_secret().as_bytes(), secret.as_bytes())
                .is_ok()
    })
}
