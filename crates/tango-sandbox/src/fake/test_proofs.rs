//! Hand-made DPoP proofs for tests: any header and claims, signed ES256 with aws-lc-rs.
//!
//! Invariant: this signer shares nothing with the gateway's (`tango_gateway::auth::dpop`, out
//! of reach: this crate does not depend on the gateway) nor with the verifier it tests. It
//! plays the client in this crate's tests (correct proofs, [`ProofSigner::proof_for`]) and
//! makes proofs a client should never make (a query in `htu`, a private `d` in the `jwk`, a
//! wrong `typ`), so the verifier's refusals can be tested one by one. That the gateway's own
//! proofs pass this verifier is checked on the gateway's side (`tests/dpop_interop.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderValue, Method, Uri};
use serde_json::{json, Value};

pub(crate) struct ProofSigner {
    key: EcdsaKeyPair,
}

impl ProofSigner {
    pub(crate) fn generate() -> Self {
        ProofSigner {
            key: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
        }
    }

    /// The public key as a bare JWK.
    pub(crate) fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    /// A correct proof header.
    pub(crate) fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()})
    }

    /// Correct claims; `ath` computed here from its definition.
    pub(crate) fn claims(
        method: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> Value {
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": method,
            "htu": htu,
            "iat": now.duration_since(UNIX_EPOCH).unwrap().as_secs(),
        });
        if let Some(token) = access_token {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(digest.as_ref()));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        claims
    }

    /// Signs `header` and `claims` as given, as a compact JWS.
    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    /// A correct proof for one request.
    pub(crate) fn proof(
        &self,
        method: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> String {
        let claims = Self::claims(method, htu, access_token, nonce, now);
        self.sign(&self.header(), &claims)
    }

    /// A correct proof for `method` on the absolute `uri`, as a client sends it: `htu` is the
    /// URI without its query and fragment (RFC 9449 §4.2).
    pub(crate) fn proof_for(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> HeaderValue {
        let scheme = uri.scheme_str().expect("an absolute URI");
        let authority = uri.authority().expect("an absolute URI");
        let htu = format!("{scheme}://{authority}{}", uri.path());
        let proof = self.proof(method.as_str(), &htu, access_token, nonce, now);
        HeaderValue::from_str(&proof).unwrap()
    }

    /// The RFC 7638 thumbprint of the public key, from its definition (the required members
    /// in lexicographic order, no whitespace, SHA-256, base64url): what `cnf.jkt` must be.
    pub(crate) fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }
}

/// Replaces the claims of a compact JWS without re-signing it.
pub(crate) fn with_claims(proof: &str, claims: &Value) -> String {
    let parts: Vec<&str> = proof.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    )
}

/// The decoded claims of a compact JWS (no verification).
pub(crate) fn claims_of(jws: &str) -> Value {
    let part = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}
