//! DPoP proofs (RFC 9449): a fresh signed JWT per HTTP request that binds the access token
//! to a key only the gateway holds.
//!
//! Invariants: ES256 over P-256 only; the header's `jwk` carries the public key alone
//! (`kty`, `crv`, `x`, `y`); every proof has its own UUID v4 `jti`; `htu` never carries a
//! query or fragment; `ath` is present exactly when an access token is being presented.
//! The public JWK and its thumbprint come from `jsonwebtoken`. Proofs are signed with a key
//! parsed once (aws-lc-rs `EcdsaKeyPair`) under a JWS header encoded once: `jsonwebtoken::encode`
//! re-parses the PKCS#8 key (a base-point multiplication) on every call, which the benchmark's
//! profile showed at 8 % of the gateway's CPU in DPoP mode. The SHA-256 state after the
//! header (about half the signing input) is kept too, and each proof's digest continues from
//! a copy of it. What remains per proof is the JWS compact serialisation (RFC 7515 §7.1: three
//! base64url parts joined by dots) around one ECDSA signature, checked by an independent
//! verifier in the tests below.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderValue, Method, Uri};
use jsonwebtoken::jwk::{CommonParameters, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// `typ` of a DPoP proof JWT (RFC 9449 §4.2).
pub const PROOF_TYP: &str = "dpop+jwt";

#[derive(Debug, thiserror::Error)]
pub enum DpopError {
    #[error("the DPoP key is not a usable P-256 PKCS#8 key")]
    InvalidKey,
    #[error("cannot generate an ephemeral DPoP key")]
    Generate,
    #[error("cannot sign a DPoP proof")]
    Sign,
    #[error("the request URI has no scheme or authority, so it cannot be a DPoP `htu`")]
    RelativeUri,
}

/// A P-256 key that signs DPoP proofs. `Debug` shows the thumbprint only.
pub struct DpopKey {
    signing: EcdsaKeyPair,
    /// base64url of the JWS header `{"typ":"dpop+jwt","alg":"ES256","jwk":{...}}`, the same
    /// for every proof.
    encoded_header: String,
    /// SHA-256 over `encoded_header` and the dot that follows it: where every proof's
    /// signing-input digest starts.
    header_digest: digest::Context,
    public_jwk: Jwk,
    thumbprint: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("thumbprint", &self.thumbprint)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

#[derive(Serialize)]
struct ProofClaims<'a> {
    jti: String,
    htm: &'a str,
    htu: String,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl DpopKey {
    /// From a PKCS#8 DER P-256 private key (as read from `dpop.key_file`).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, DpopError> {
        let signing = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| DpopError::InvalidKey)?;
        let mut public_jwk =
            Jwk::from_encoding_key(&EncodingKey::from_ec_der(der), Algorithm::ES256)
                .map_err(|_| DpopError::InvalidKey)?;
        // The proof's `jwk` is the bare public key: no `alg`, `kid` or `use`.
        public_jwk.common = CommonParameters::default();
        let thumbprint = public_jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| DpopError::InvalidKey)?;
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(PROOF_TYP.to_owned());
        header.jwk = Some(public_jwk.clone());
        let header_json = serde_json::to_vec(&header).map_err(|_| DpopError::InvalidKey)?;
        let encoded_header = URL_SAFE_NO_PAD.encode(header_json);
        let mut header_digest = digest::Context::new(&digest::SHA256);
        header_digest.update(encoded_header.as_bytes());
        header_digest.update(b".");
        Ok(DpopKey {
            signing,
            encoded_header,
            header_digest,
            public_jwk,
            thumbprint,
        })
    }

    /// A new key held in memory only (`dpop.ephemeral: true`).
    pub fn generate() -> Result<Self, DpopError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|_| DpopError::Generate)?;
        Self::from_pkcs8_der(&key.serialize_der())
    }

    /// RFC 7638 JWK SHA-256 thumbprint (base64url), the `cnf.jkt` a bound token carries.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    pub fn public_jwk(&self) -> &Jwk {
        &self.public_jwk
    }

    /// Signs a proof for one HTTP request. `access_token` is given on API calls (adds
    /// `ath`), not on the token request; `nonce` when the server has supplied one.
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> Result<HeaderValue, DpopError> {
        let ath = access_token.map(access_token_hash);
        self.proof_with_ath(method, uri, ath.as_deref(), nonce, now)
    }

    /// [`Self::proof`] with the token's `ath` computed beforehand (once per token rather
    /// than once per request: see `AccessToken::ath`).
    pub fn proof_with_ath(
        &self,
        method: &Method,
        uri: &Uri,
        ath: Option<&str>,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> Result<HeaderValue, DpopError> {
        let claims = ProofClaims {
            jti: crate::random_id::uuid_v4().to_string(),
            htm: method.as_str(),
            htu: htu(uri)?,
            iat: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            ath,
            nonce,
        };
        let claims = serde_json::to_vec(&claims).map_err(|_| DpopError::Sign)?;
        let mut jws = String::with_capacity(self.encoded_header.len() + 2 * claims.len() + 90);
        jws.push_str(&self.encoded_header);
        jws.push('.');
        let claims_start = jws.len();
        URL_SAFE_NO_PAD.encode_string(&claims, &mut jws);
        // The signing input is `header.claims` (RFC 7515 §5.1); its digest goes on from the
        // header's. FIXED is JWS's `r || s`.
        let mut signing_input = self.header_digest.clone();
        signing_input.update(&jws.as_bytes()[claims_start..]);
        let signature = self
            .signing
            .sign_digest(&signing_input.finish())
            .map_err(|_| DpopError::Sign)?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut jws);
        let mut value = HeaderValue::try_from(jws).map_err(|_| DpopError::Sign)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// `htu`: scheme, authority and path of the request URI, without query and fragment.
pub fn htu(uri: &Uri) -> Result<String, DpopError> {
    let scheme = uri.scheme_str().ok_or(DpopError::RelativeUri)?;
    let authority = uri.authority().ok_or(DpopError::RelativeUri)?.as_str();
    let path = uri.path();
    let mut htu = String::with_capacity(scheme.len() + 3 + authority.len() + path.len());
    htu.push_str(scheme);
    htu.push_str("://");
    htu.push_str(authority);
    htu.push_str(path);
    Ok(htu)
}

/// `ath`: base64url (no padding) of the SHA-256 of the access token's ASCII bytes.
pub fn access_token_hash(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    //! The proofs are checked here by the fake's verifier (`tango_sandbox::fake::dpop_verify`),
    //! which shares no code with this signer: it splits the JWS by hand, verifies the ES256
    //! signature with aws-lc-rs from the `jwk` coordinates, and recomputes the RFC 7638
    //! thumbprint and the `ath` from their definitions. Each claim is then asserted here too.
    use super::*;
    use serde_json::Value;
    use std::collections::HashSet;
    use tango_sandbox::fake::dpop_verify::{self as verifier, ProofCheck, VerifiedProof};

    /// Verifies `proof` as a server expecting exactly these would.
    fn verify(
        proof: &HeaderValue,
        method: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Option<VerifiedProof> {
        let check = ProofCheck {
            method,
            htu,
            access_token,
            nonce,
            now: SystemTime::now(),
        };
        let verified = verifier::verify_proof(proof.to_str().ok()?, &check);
        assert!(verified.is_ok(), "{verified:?}");
        verified.ok()
    }

    fn key() -> Option<DpopKey> {
        DpopKey::generate().ok()
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn proof_verifies_and_carries_every_claim() {
        let Some(key) = key() else {
            panic!("key generation failed")
        };
        let now = SystemTime::now();
        let proof = key
            .proof(
                &Method::GET,
                &uri("https://api.example/raas/v2/catalogs?verbose=true#x"),
                Some("tok-123"),
                Some("n-1"),
                now,
            )
            .ok();
        // The verifier checks htm, htu (exactly: no query, no fragment), ath and nonce.
        let Some(VerifiedProof {
            header,
            claims,
            jkt,
            ..
        }) = proof.as_ref().and_then(|p| {
            verify(
                p,
                "GET",
                "https://api.example/raas/v2/catalogs",
                Some("tok-123"),
                Some("n-1"),
            )
        })
        else {
            panic!("proof does not verify")
        };
        assert!(proof.is_some_and(|p| p.is_sensitive()));
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        let jwk_keys: HashSet<&str> = header["jwk"]
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(jwk_keys, HashSet::from(["kty", "crv", "x", "y"]));
        assert_eq!(jkt, key.thumbprint());
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.example/raas/v2/catalogs");
        assert_eq!(claims["nonce"], "n-1");
        let iat = claims["iat"].as_u64().unwrap_or(0);
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        assert_eq!(iat, now_secs);
        assert!(claims["jti"]
            .as_str()
            .and_then(|j| uuid::Uuid::parse_str(j).ok())
            .is_some_and(|j| j.get_version_num() == 4));
        // ath from its definition, computed by the verifier's own code: base64url(SHA-256).
        assert_eq!(claims["ath"], verifier::access_token_hash("tok-123"));
    }

    #[test]
    fn token_request_proof_has_no_ath_and_no_nonce_unless_given() {
        let Some(key) = key() else {
            panic!("key generation failed")
        };
        let proof = key
            .proof(
                &Method::POST,
                &uri("https://auth.example/oauth/token"),
                None,
                None,
                SystemTime::now(),
            )
            .ok();
        // Without an access token the verifier refuses any `ath`.
        let Some(verified) = proof
            .as_ref()
            .and_then(|p| verify(p, "POST", "https://auth.example/oauth/token", None, None))
        else {
            panic!("proof does not verify")
        };
        assert_eq!(verified.claims["htm"], "POST");
        assert!(verified.claims.get("ath").is_none());
        assert!(verified.claims.get("nonce").is_none());
    }

    #[test]
    fn every_proof_has_a_new_jti() {
        let Some(key) = key() else {
            panic!("key generation failed")
        };
        let url = "https://api.example/raas/v2/orders";
        let target = uri(url);
        let jtis: HashSet<String> = (0..50)
            .filter_map(|_| {
                key.proof(&Method::POST, &target, Some("t"), None, SystemTime::now())
                    .ok()
            })
            .filter_map(|p| verify(&p, "POST", url, Some("t"), None))
            .map(|verified| verified.jti)
            .collect();
        assert_eq!(jtis.len(), 50);
    }

    #[test]
    fn thumbprint_follows_rfc_7638() {
        let Some(key) = key() else {
            panic!("key generation failed")
        };
        let jwk = serde_json::to_value(key.public_jwk()).unwrap_or(Value::Null);
        // RFC 7638 §3.2 (required members only, lexicographic order, no whitespace), computed
        // by the verifier, which is checked against RFC 9449's published thumbprint.
        assert_eq!(
            verifier::jwk_thumbprint(&jwk).as_deref(),
            Some(key.thumbprint())
        );
        assert_eq!(jwk["crv"], "P-256");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let Some(key) = key() else {
            panic!("key generation failed")
        };
        let text = format!("{key:?}");
        assert!(text.contains(key.thumbprint()));
        assert!(!text.contains("\"d\""));
    }

    #[test]
    fn relative_uri_is_refused_and_garbage_key_rejected() {
        let Some(key) = key() else {
            panic!("key generation failed")
        };
        assert!(matches!(
            key.proof(
                &Method::GET,
                &uri("/relative"),
                None,
                None,
                SystemTime::now()
            ),
            Err(DpopError::RelativeUri)
        ));
        assert!(DpopKey::from_pkcs8_der(b"not a key").is_err());
    }
}
