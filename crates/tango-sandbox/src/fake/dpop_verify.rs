//! An independent DPoP proof verifier (RFC 9449 §4.3), the fake Tango's side of DPoP.
//!
//! Invariant: a proof is accepted only if its JWS verifies (ES256, with the public key from its
//! own `jwk`, which must hold no private part) and every claim matches the request: `htm`, `htu`
//! (exact, no query), `iat` within ±60 s, `ath` present exactly when a token is presented, and
//! the server's nonce when one is expected. Nothing here shares code with the gateway's signer
//! (`tango_gateway::auth::dpop`, which uses `jsonwebtoken`; this crate cannot depend on the
//! gateway): the JWS is split and decoded by hand and the signature checked with aws-lc-rs, so
//! a bug in the signer cannot hide in the verifier.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

/// `typ` a proof must carry (RFC 9449 §4.2).
pub const PROOF_TYP: &str = "dpop+jwt";
/// The only signature algorithm Tango accepts for proofs.
pub const PROOF_ALG: &str = "ES256";
/// Tango's edge accepts `iat` within this distance of its clock, either way.
pub const IAT_TOLERANCE: Duration = Duration::from_secs(60);
/// Tango's edge rejects a `jti` seen within this window.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(120);

/// What the server expects of one proof.
#[derive(Debug, Clone, Copy)]
pub struct ProofCheck<'a> {
    /// The request's method, e.g. `"POST"`.
    pub method: &'a str,
    /// Scheme, authority and path of the request, without query or fragment.
    pub htu: &'a str,
    /// The access token presented with the request; `None` at the token endpoint.
    pub access_token: Option<&'a str>,
    /// The nonce the server demands, if it demands one.
    pub nonce: Option<&'a str>,
    pub now: SystemTime,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedProof {
    pub header: Value,
    pub claims: Value,
    /// RFC 7638 thumbprint of the proof's `jwk`: what a bound token's `cnf.jkt` must equal.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

/// Why a proof was refused. Messages name the failed check, never the proof's content.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ProofError {
    #[error("the proof is not a compact JWS with JSON header and claims")]
    Malformed,
    #[error("the proof's signature does not verify with its jwk")]
    BadSignature,
    #[error("the proof's typ is not dpop+jwt")]
    WrongType,
    #[error("the proof's alg is not ES256")]
    WrongAlgorithm,
    #[error("the proof's jwk is not a bare EC P-256 public key")]
    BadJwk,
    #[error("the proof lacks the claim {0} (or it has the wrong type)")]
    MissingClaim(&'static str),
    #[error("the proof's htm does not match the request method")]
    WrongMethod,
    #[error("the proof's htu does not match the request URI")]
    WrongUri,
    #[error("the proof's iat is more than 60 s away from the server clock")]
    StaleIat,
    #[error("the proof's ath is missing, unexpected or does not match the access token")]
    WrongAth,
    #[error("the proof does not carry the server's current nonce")]
    NonceRequired,
}

/// Verifies `proof` (the `DPoP` header value) against what the server expects.
///
/// Checks run in this order: shape, `typ`, `alg`, `jwk`, signature, required claims (`jti`,
/// `htm`, `htu`, `iat`), `htm`, `htu`, `iat`, `ath`, `nonce`. Replay is not checked here (it
/// needs state): pass the returned `jti` to a [`ReplayCache`].
pub fn verify_proof(proof: &str, check: &ProofCheck<'_>) -> Result<VerifiedProof, ProofError> {
    let mut parts = proof.trim().split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::Malformed);
    };
    let header = decode_json_object(header_b64)?;
    let claims = decode_json_object(claims_b64)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| ProofError::Malformed)?;

    if header.get("typ").and_then(Value::as_str) != Some(PROOF_TYP) {
        return Err(ProofError::WrongType);
    }
    if header.get("alg").and_then(Value::as_str) != Some(PROOF_ALG) {
        return Err(ProofError::WrongAlgorithm);
    }
    let jwk = header.get("jwk").ok_or(ProofError::BadJwk)?;
    let point = p256_public_point(jwk).ok_or(ProofError::BadJwk)?;
    let jkt = jwk_thumbprint(jwk).ok_or(ProofError::BadJwk)?;
    // ES256 in JWS is the fixed-width r||s encoding (RFC 7518 §3.4), not DER.
    let signing_input = format!("{header_b64}.{claims_b64}");
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| ProofError::BadSignature)?;

    let text = |name: &'static str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(ProofError::MissingClaim(name))
    };
    let jti = text("jti")?.to_owned();
    let htm = text("htm")?;
    let htu = text("htu")?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(ProofError::MissingClaim("iat"))?;

    if htm != check.method {
        return Err(ProofError::WrongMethod);
    }
    if htu != check.htu {
        return Err(ProofError::WrongUri);
    }
    if iat.abs_diff(unix_seconds(check.now)) > IAT_TOLERANCE.as_secs() {
        return Err(ProofError::StaleIat);
    }
    let ath = claims.get("ath");
    match (check.access_token, ath) {
        (None, None) => {}
        (Some(token), Some(ath)) if ath.as_str() == Some(&access_token_hash(token)) => {}
        _ => return Err(ProofError::WrongAth),
    }
    if let Some(expected) = check.nonce {
        if claims.get("nonce").and_then(Value::as_str) != Some(expected) {
            return Err(ProofError::NonceRequired);
        }
    }
    Ok(VerifiedProof {
        header,
        claims,
        jkt,
        jti,
        iat,
    })
}

/// RFC 7638 SHA-256 thumbprint (base64url, no padding) of an EC JWK: the required members
/// `crv`, `kty`, `x`, `y` in that order, as JSON without whitespace. `None` for another key
/// type or a missing member.
pub fn jwk_thumbprint(jwk: &Value) -> Option<String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if member("kty")? != "EC" {
        return None;
    }
    // serde_json escapes each string as JSON requires; the member order is written by hand
    // because a serde_json map's order depends on crate features.
    let quoted = |name: &str| member(name).and_then(|v| serde_json::to_string(v).ok());
    let canonical = format!(
        r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
        quoted("crv")?,
        quoted("x")?,
        quoted("y")?
    );
    Some(URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes())))
}

/// `ath` as RFC 9449 §4.2 defines it: base64url (no padding) of SHA-256 of the token's bytes.
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes()))
}

/// The `jti`s of accepted proofs, each remembered for [`REPLAY_WINDOW`].
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: HashMap<String, SystemTime>,
}

impl ReplayCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `jti` as seen at `now`. False when it was already seen within the window (a
    /// replay). Entries older than the window are dropped on every call, so the cache holds
    /// at most one window's worth of proofs.
    pub fn check_and_insert(&mut self, jti: &str, now: SystemTime) -> bool {
        let fresh = |seen: &SystemTime| match now.duration_since(*seen) {
            Ok(age) => age < REPLAY_WINDOW,
            // Seen "in the future" (a clock step back): still within the window.
            Err(_) => true,
        };
        self.seen.retain(|_, seen| fresh(seen));
        if self.seen.contains_key(jti) {
            return false;
        }
        self.seen.insert(jti.to_owned(), now);
        true
    }

    /// Number of `jti`s currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Seconds since the Unix epoch, negative before it.
pub(super) fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn decode_json_object(part: &str) -> Result<Value, ProofError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| ProofError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(ProofError::Malformed),
    }
}

/// The uncompressed SEC1 point of a bare EC P-256 public JWK; `None` for anything else,
/// including a JWK that carries the private scalar `d`.
fn p256_public_point(jwk: &Value) -> Option<Vec<u8>> {
    let object = jwk.as_object()?;
    if object.contains_key("d")
        || object.get("kty")?.as_str()? != "EC"
        || object.get("crv")?.as_str()? != "P-256"
    {
        return None;
    }
    let coordinate = |name: &str| {
        let bytes = URL_SAFE_NO_PAD.decode(object.get(name)?.as_str()?).ok()?;
        (bytes.len() == 32).then_some(bytes)
    };
    let (x, y) = (coordinate("x")?, coordinate("y")?);
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Some(point)
}

#[cfg(test)]
mod tests;
