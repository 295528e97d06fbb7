//! The verifier against a client's correct proofs, RFC 9449's published example, and one
//! hand-made proof per way a proof can be wrong. The proofs come from this crate's own signer
//! (`test_proofs`); the gateway's proofs are checked against this verifier on the gateway's
//! side (`tests/dpop_interop.rs` there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Uri};
use serde_json::json;

use super::*;
use crate::fake::test_proofs::{claims_of, with_claims, ProofSigner};

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

fn client_proof(
    key: &ProofSigner,
    method: Method,
    uri: &str,
    token: Option<&str>,
    nonce: Option<&str>,
    now: SystemTime,
) -> String {
    let uri: Uri = uri.parse().unwrap();
    let proof = key.proof_for(&method, &uri, token, nonce, now);
    proof.to_str().unwrap().to_owned()
}

#[test]
fn a_proof_verifies_and_its_jkt_is_the_keys_thumbprint() {
    let key = ProofSigner::generate();
    let now = SystemTime::now();
    let proof = client_proof(
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
fn rfc_9449_example_proof_verifies_with_the_published_thumbprint() {
    // RFC 9449 §4.1 (Figure 2), made at iat 1562262616 for POST https://server.example.com/token.
    let proof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZ\
yaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmF\
qSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjo\
iUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-Gx\
A6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
    let mut expected = check("POST", "https://server.example.com/token", None);
    expected.now = UNIX_EPOCH + Duration::from_secs(1_562_262_616 + 30);
    let verified = verify_proof(proof, &expected).unwrap();
    // RFC 9449 §6.1 (Figure 9): the `cnf.jkt` of a token bound to that key.
    assert_eq!(verified.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    assert_eq!(verified.jti, "-BwC3ESc6acc2lTc");
    // The same proof two minutes later is stale.
    expected.now = UNIX_EPOCH + Duration::from_secs(1_562_262_616 + 120);
    assert_eq!(verify_proof(proof, &expected), Err(ProofError::StaleIat));
}

#[test]
fn rfc_9449_example_access_token_hash() {
    // RFC 9449 §7.1 (Figures 12 and 13).
    assert_eq!(
        access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn tampered_claim_breaks_the_signature() {
    let key = ProofSigner::generate();
    let proof = client_proof(&key, Method::GET, HTU, None, None, SystemTime::now());
    let mut claims = claims_of(&proof);
    claims["htm"] = json!("POST");
    let tampered = with_claims(&proof, &claims);
    assert_eq!(
        verify_proof(&tampered, &check("POST", HTU, None)),
        Err(ProofError::BadSignature)
    );
    // A proof signed by another key than its jwk names.
    let other = ProofSigner::generate();
    let mut header = ProofSigner::generate().header();
    header["jwk"] = other.jwk();
    let foreign = ProofSigner::generate().sign(
        &header,
        &ProofSigner::claims("GET", HTU, None, None, SystemTime::now()),
    );
    assert_eq!(
        verify_proof(&foreign, &check("GET", HTU, None)),
        Err(ProofError::BadSignature)
    );
}

#[test]
fn method_and_uri_must_match_exactly() {
    let key = ProofSigner::generate();
    let proof = client_proof(&key, Method::GET, HTU, None, None, SystemTime::now());
    assert_eq!(
        verify_proof(&proof, &check("POST", HTU, None)),
        Err(ProofError::WrongMethod)
    );
    let other = "https://api.example/raas/v2/orders/1";
    assert_eq!(
        verify_proof(&proof, &check("GET", other, None)),
        Err(ProofError::WrongUri)
    );
    // A proof whose htu carries the query does not match the query-less htu.
    let signer = ProofSigner::generate();
    let with_query = format!("{HTU}?page=2");
    let proof = signer.proof("GET", &with_query, None, None, SystemTime::now());
    assert_eq!(
        verify_proof(&proof, &check("GET", HTU, None)),
        Err(ProofError::WrongUri)
    );
}

#[test]
fn iat_must_be_within_sixty_seconds_either_way() {
    let key = ProofSigner::generate();
    let now = SystemTime::now();
    for (offset_secs, ok) in [(-61_i64, false), (-59, true), (59, true), (61, false)] {
        let at = if offset_secs < 0 {
            now - Duration::from_secs(offset_secs.unsigned_abs())
        } else {
            now + Duration::from_secs(offset_secs.unsigned_abs())
        };
        let proof = client_proof(&key, Method::GET, HTU, None, None, at);
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
fn ath_must_match_the_presented_token_and_only_then_be_present() {
    let key = ProofSigner::generate();
    let now = SystemTime::now();
    let with_ath = client_proof(&key, Method::GET, HTU, Some("token-a"), None, now);
    let without = client_proof(&key, Method::GET, HTU, None, None, now);
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
fn nonce_is_required_only_when_expected() {
    let key = ProofSigner::generate();
    let now = SystemTime::now();
    let without = client_proof(&key, Method::GET, HTU, None, None, now);
    let old = client_proof(&key, Method::GET, HTU, None, Some("old"), now);
    let current = client_proof(&key, Method::GET, HTU, None, Some("cur"), now);
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
fn header_must_be_dpop_jwt_es256_with_a_bare_public_p256_jwk() {
    let signer = ProofSigner::generate();
    let claims = ProofSigner::claims("GET", HTU, None, None, SystemTime::now());
    let expected = check("GET", HTU, None);
    let refused = |edit: &dyn Fn(&mut Value)| {
        let mut header = signer.header();
        edit(&mut header);
        verify_proof(&signer.sign(&header, &claims), &expected)
    };
    assert!(refused(&|_| {}).is_ok());
    assert_eq!(
        refused(&|h| h["typ"] = json!("JWT")),
        Err(ProofError::WrongType)
    );
    assert_eq!(
        refused(&|h| {
            h.as_object_mut().unwrap().remove("typ");
        }),
        Err(ProofError::WrongType)
    );
    assert_eq!(
        refused(&|h| h["alg"] = json!("none")),
        Err(ProofError::WrongAlgorithm)
    );
    assert_eq!(
        refused(&|h| h["alg"] = json!("HS256")),
        Err(ProofError::WrongAlgorithm)
    );
    // A private key in the header is refused even though the signature is fine.
    let d = URL_SAFE_NO_PAD.encode([7u8; 32]);
    assert_eq!(
        refused(&|h| h["jwk"]["d"] = json!(d)),
        Err(ProofError::BadJwk)
    );
    assert_eq!(
        refused(&|h| h["jwk"]["crv"] = json!("P-384")),
        Err(ProofError::BadJwk)
    );
    assert_eq!(
        refused(&|h| h["jwk"]["kty"] = json!("RSA")),
        Err(ProofError::BadJwk)
    );
    assert_eq!(
        refused(&|h| h["jwk"]["x"] = json!("AAAA")),
        Err(ProofError::BadJwk)
    );
    assert_eq!(
        refused(&|h| {
            h.as_object_mut().unwrap().remove("jwk");
        }),
        Err(ProofError::BadJwk)
    );
}

#[test]
fn every_required_claim_is_checked() {
    let signer = ProofSigner::generate();
    let expected = check("GET", HTU, None);
    for name in ["jti", "htm", "htu", "iat"] {
        let mut claims = ProofSigner::claims("GET", HTU, None, None, SystemTime::now());
        claims.as_object_mut().unwrap().remove(name);
        let proof = signer.sign(&signer.header(), &claims);
        assert_eq!(
            verify_proof(&proof, &expected),
            Err(ProofError::MissingClaim(name))
        );
    }
    let mut claims = ProofSigner::claims("GET", HTU, None, None, SystemTime::now());
    claims["iat"] = json!("1700000000");
    let proof = signer.sign(&signer.header(), &claims);
    assert_eq!(
        verify_proof(&proof, &expected),
        Err(ProofError::MissingClaim("iat"))
    );
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let expected = check("GET", HTU, None);
    for proof in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        "e30.e30",
        "e30.e30.e30.e30",
        "W10.e30.AA", // header is a JSON array
        "bm90IGpzb24.e30.AA",
        "\u{e9}.\u{e9}.\u{e9}",
    ] {
        assert_eq!(
            verify_proof(proof, &expected),
            Err(ProofError::Malformed),
            "{proof:?}"
        );
    }
}

#[test]
fn thumbprint_is_rfc_7638_and_refuses_non_ec_keys() {
    // RFC 9449's example key and its published thumbprint.
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "ignored",
        "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
    });
    assert_eq!(
        jwk_thumbprint(&jwk).as_deref(),
        Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
    );
    assert_eq!(
        jwk_thumbprint(&json!({"kty": "RSA", "n": "x", "e": "AQAB"})),
        None
    );
    assert_eq!(jwk_thumbprint(&json!({"kty": "EC", "crv": "P-256"})), None);
    assert_eq!(jwk_thumbprint(&json!("EC")), None);
}

#[test]
fn replay_cache_refuses_a_jti_for_120_seconds_then_forgets_it() {
    let mut cache = ReplayCache::new();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert!(cache.check_and_insert("a", t0));
    assert!(!cache.check_and_insert("a", t0));
    assert!(!cache.check_and_insert("a", t0 + Duration::from_secs(119)));
    assert!(cache.check_and_insert("b", t0 + Duration::from_secs(60)));
    // At 120 s "a" is forgotten (and pruned); "b" is still remembered.
    assert!(cache.check_and_insert("a", t0 + Duration::from_secs(120)));
    assert_eq!(cache.len(), 2);
    assert!(!cache.check_and_insert("b", t0 + Duration::from_secs(179)));
    assert!(cache.check_and_insert("c", t0 + Duration::from_secs(1000)));
    assert_eq!(cache.len(), 1, "old entries are pruned");
}

#[test]
fn a_replayed_proof_is_caught_by_the_cache() {
    let key = ProofSigner::generate();
    let now = SystemTime::now();
    let proof = client_proof(&key, Method::GET, HTU, None, None, now);
    let mut cache = ReplayCache::new();
    let first = verify_proof(&proof, &check("GET", HTU, None)).unwrap();
    assert!(cache.check_and_insert(&first.jti, now));
    let again = verify_proof(&proof, &check("GET", HTU, None)).unwrap();
    assert!(!cache.check_and_insert(&again.jti, now + Duration::from_secs(1)));
}

#[test]
fn errors_say_what_failed_without_echoing_the_proof() {
    let key = ProofSigner::generate();
    let proof = client_proof(
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
