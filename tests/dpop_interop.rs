//! The gateway's DPoP signer (`auth::dpop::DpopKey`) against the fake Tango's independent
//! verifier (`tango_sandbox::fake::dpop_verify`): every claim the gateway sets is one the
//! verifier checks, and a proof stops verifying as soon as any of them is wrong.
//!
//! Invariant: the two share no code. The verifier lives in the tango-sandbox crate, which
//! cannot depend on the gateway, so these cross-checks live here, on the gateway's side; the
//! verifier's own refusals, with proofs from its crate's own signer, are tested in that crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{Method, Uri};
use serde_json::{json, Value};
use tango_gateway::auth::dpop::DpopKey;
use tango_sandbox::fake::dpop_verify::{verify_proof, ProofCheck, ProofError, ReplayCache};

const HTU: &str = "https://api.example/raas/v2/orders";

fn check<'a>(method: &'a str, htu: &'a str, token: Option<&'a str>) -> ProofCheck<'a> {
    ProofCheck {
        method,
        htu,
        access_token: token,
        nonce: None,
        now: SystemTime::now(),
    }
}

fn gateway_proof(
    key: &DpopKey,
    method: Method,
    uri: &str,
    token: Option<&str>,
    nonce: Option<&str>,
    now: SystemTime,
) -> String {
    let uri: Uri = uri.parse().unwrap();
    let proof = key.proof(&method, &uri, token, nonce, now).unwrap();
    proof.to_str().unwrap().to_owned()
}

// The two JWS helpers below repeat the fake's test helpers (`test_proofs`), which are private
// to that crate's tests; a few lines do not justify making them part of its API.

/// The decoded claims of a compact JWS (no verification).
fn claims_of(jws: &str) -> Value {
    let part = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Replaces the claims of a compact JWS without re-signing it.
fn with_claims(proof: &str, claims: &Value) -> String {
    let parts: Vec<&str> = proof.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    )
}

#[test]
fn a_gateway_proof_verifies_and_its_jkt_is_the_keys_thumbprint() {
    let key = DpopKey::generate().unwrap();
    let now = SystemTime::now();
    let proof = gateway_proof(
        &key,
        Method::POST,
        "https://api.example/raas/v2/orders?x=1",
        Some("tok"),
        Some("n-1"),
        now,
    );
    let mut expected = check("POST", HTU, Some("tok"));
    expected.nonce = Some("n-1");
    let verified = verify_proof(&proof, &expected).unwrap();
    assert_eq!(verified.jkt, key.thumbprint());
    assert_eq!(verified.claims["jti"], verified.jti.as_str());
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(verified.iat, i64::try_from(now_secs).unwrap());
    assert_eq!(verified.header["typ"], "dpop+jwt");
}

#[test]
fn a_tampered_gateway_proof_breaks_the_signature() {
    let key = DpopKey::generate().unwrap();
    let proof = gateway_proof(&key, Method::GET, HTU, None, None, SystemTime::now());
    let mut claims = claims_of(&proof);
    claims["htm"] = json!("POST");
    let tampered = with_claims(&proof, &claims);
    assert_eq!(
        verify_proof(&tampered, &check("POST", HTU, None)),
        Err(ProofError::BadSignature)
    );
}

#[test]
fn a_gateway_proof_is_bound_to_its_method_and_uri() {
    let key = DpopKey::generate().unwrap();
    let proof = gateway_proof(&key, Method::GET, HTU, None, None, SystemTime::now());
    assert_eq!(
        verify_proof(&proof, &check("POST", HTU, None)),
        Err(ProofError::WrongMethod)
    );
    let other = "https://api.example/raas/v2/orders/1";
    assert_eq!(
        verify_proof(&proof, &check("GET", other, None)),
        Err(ProofError::WrongUri)
    );
}

#[test]
fn a_gateway_proof_is_accepted_within_sixty_seconds_of_its_iat_either_way() {
    let key = DpopKey::generate().unwrap();
    let now = SystemTime::now();
    for (offset_secs, ok) in [(-61_i64, false), (-59, true), (59, true), (61, false)] {
        let at = if offset_secs < 0 {
            now - Duration::from_secs(offset_secs.unsigned_abs())
        } else {
            now + Duration::from_secs(offset_secs.unsigned_abs())
        };
        let proof = gateway_proof(&key, Method::GET, HTU, None, None, at);
        let mut expected = check("GET", HTU, None);
        expected.now = now;
        let result = verify_proof(&proof, &expected);
        assert_eq!(result.is_ok(), ok, "iat {offset_secs:+} s: {result:?}");
        if !ok {
            assert_eq!(result, Err(ProofError::StaleIat));
        }
    }
}

#[test]
fn a_gateway_proof_carries_ath_exactly_when_a_token_is_presented() {
    let key = DpopKey::generate().unwrap();
    let now = SystemTime::now();
    let with_ath = gateway_proof(&key, Method::GET, HTU, Some("token-a"), None, now);
    let without = gateway_proof(&key, Method::GET, HTU, None, None, now);
    assert!(verify_proof(&with_ath, &check("GET", HTU, Some("token-a"))).is_ok());
    assert_eq!(
        verify_proof(&with_ath, &check("GET", HTU, Some("token-b"))),
        Err(ProofError::WrongAth)
    );
    assert_eq!(
        verify_proof(&without, &check("GET", HTU, Some("token-a"))),
        Err(ProofError::WrongAth)
    );
    assert_eq!(
        verify_proof(&with_ath, &check("GET", HTU, None)),
        Err(ProofError::WrongAth)
    );
}

#[test]
fn a_gateway_proof_carries_the_nonce_it_was_given() {
    let key = DpopKey::generate().unwrap();
    let now = SystemTime::now();
    let without = gateway_proof(&key, Method::GET, HTU, None, None, now);
    let old = gateway_proof(&key, Method::GET, HTU, None, Some("old"), now);
    let current = gateway_proof(&key, Method::GET, HTU, None, Some("cur"), now);
    let mut expected = check("GET", HTU, None);
    expected.nonce = Some("cur");
    assert_eq!(
        verify_proof(&without, &expected),
        Err(ProofError::NonceRequired)
    );
    assert_eq!(
        verify_proof(&old, &expected),
        Err(ProofError::NonceRequired)
    );
    assert!(verify_proof(&current, &expected).is_ok());
    // A nonce the server did not ask for is harmless.
    assert!(verify_proof(&current, &check("GET", HTU, None)).is_ok());
}

#[test]
fn a_gateway_proof_replayed_is_caught_by_the_cache() {
    let key = DpopKey::generate().unwrap();
    let now = SystemTime::now();
    let proof = gateway_proof(&key, Method::GET, HTU, None, None, now);
    let mut cache = ReplayCache::new();
    let first = verify_proof(&proof, &check("GET", HTU, None)).unwrap();
    assert!(cache.check_and_insert(&first.jti, now));
    let again = verify_proof(&proof, &check("GET", HTU, None)).unwrap();
    assert!(!cache.check_and_insert(&again.jti, now + Duration::from_secs(1)));
}

#[test]
fn a_refused_gateway_proof_is_not_echoed_in_the_error() {
    let key = DpopKey::generate().unwrap();
    let proof = gateway_proof(
        &key,
        Method::GET,
        HTU,
        Some("secret-token"),
        None,
        SystemTime::now(),
    );
    let error = verify_proof(&proof, &check("GET", HTU, Some("other"))).unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains("secret-token") && !text.contains(&proof[..20]));
}
