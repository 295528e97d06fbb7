//! The API's side of OAuth: the token an API request presents, and its DPoP proof.
//!
//! Invariant: a request passes only with a token this server issued, unexpired and of the
//! current generation, while the server is not refusing every token; a bound one only as
//! `DPoP` with a proof by its key for this method, URI (without query) and token, carrying the
//! nonce when demanded, and never seen before.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use serde_json::Value;

use super::{single_header, AuthServer, Challenge, Rejection, RequestView, Scheme, DPOP};
use crate::fake::dpop_verify::{self, ProofCheck, ProofError};

impl AuthServer {
    /// Checks the token (and proof) an API request presents.
    pub(in crate::fake) fn authorize(
        &mut self,
        request: &RequestView<'_>,
    ) -> Result<(), Challenge> {
        self.check_api_request(request)
            .map_err(|(challenge, reason)| {
                self.last_rejection = Some(format!("api: {reason}"));
                challenge
            })
    }

    fn check_api_request(
        &mut self,
        request: &RequestView<'_>,
    ) -> Result<(), (Challenge, Rejection)> {
        let default_scheme = if self.options.require_dpop && !self.options.issue_bearer {
            Scheme::Dpop
        } else {
            Scheme::Bearer
        };
        let invalid = |scheme, reason| (Challenge::InvalidToken(scheme), reason);
        let (scheme, token) =
            presented_token(request.headers).ok_or(invalid(default_scheme, Rejection::NoToken))?;
        if self.refuse_all {
            return Err(invalid(scheme, Rejection::RefusingAll));
        }
        let claims = self
            .signer
            .open(token)
            .ok_or(invalid(scheme, Rejection::ForeignToken))?;
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if dpop_verify::unix_seconds(request.now) >= exp {
            return Err(invalid(scheme, Rejection::Expired));
        }
        let generation = claims.get("gen").and_then(Value::as_u64).unwrap_or(0);
        if generation < self.generation {
            return Err(invalid(scheme, Rejection::Revoked));
        }
        let bound_to = claims
            .get("cnf")
            .and_then(|cnf| cnf.get("jkt"))
            .and_then(Value::as_str);
        let jkt = match (scheme, bound_to) {
            (Scheme::Bearer, None) => return Ok(()),
            (Scheme::Bearer, Some(_)) => {
                return Err(invalid(Scheme::Dpop, Rejection::BoundAsBearer))
            }
            (Scheme::Dpop, None) => return Err(invalid(Scheme::Bearer, Rejection::UnboundAsDpop)),
            (Scheme::Dpop, Some(jkt)) => jkt,
        };
        let proof = match single_header(request.headers, DPOP) {
            Ok(Some(proof)) => proof,
            Ok(None) | Err(()) => return Err(invalid(Scheme::Dpop, Rejection::NoProof)),
        };
        let htu = format!(
            "https://{}{}",
            request.authority.unwrap_or(""),
            request.path
        );
        let check = ProofCheck {
            method: request.method.as_str(),
            htu: &htu,
            access_token: Some(token),
            nonce: self.options.api_nonce.then_some(self.nonce.as_str()),
            now: request.now,
        };
        let verified = dpop_verify::verify_proof(proof, &check).map_err(|error| {
            let reason = Rejection::Proof(error);
            match error {
                ProofError::NonceRequired => (Challenge::UseNonce(self.nonce.clone()), reason),
                _ => invalid(Scheme::Dpop, reason),
            }
        })?;
        if verified.jkt != jkt {
            return Err(invalid(Scheme::Dpop, Rejection::KeyMismatch));
        }
        if !self.replay.check_and_insert(&verified.jti, request.now) {
            return Err(invalid(Scheme::Dpop, Rejection::Replay));
        }
        Ok(())
    }
}

/// The scheme and token of `Authorization: DPoP <token>` or `Bearer <token>`.
fn presented_token(headers: &HeaderMap) -> Option<(Scheme, &str)> {
    let value = single_header(headers, AUTHORIZATION.as_str()).ok()??;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("dpop") {
        Some((Scheme::Dpop, token))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some((Scheme::Bearer, token))
    } else {
        None
    }
}
