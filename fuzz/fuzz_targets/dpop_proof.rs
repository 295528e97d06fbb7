//! The DPoP proof builder (`auth::dpop::DpopKey::proof`, RFC 9449), checked by the fake
//! Tango's independent verifier (`tango_sandbox::fake::dpop_verify`).
//!
//! Invariant: for any method, absolute URI, access token and nonce, a proof is built, and it
//! verifies for that method, that URI's `htu` (scheme, authority, path), that token's `ath`
//! and that nonce, at the same clock, with the key's thumbprint as its `jkt`. A URI without a
//! scheme or authority is refused.
//!
//! Input: `method\nuri\ntoken\nnonce\nunix seconds`; a missing token or nonce line is `None`,
//! a missing clock line is now.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;
use tango_gateway::auth::dpop::DpopKey;
use tango_sandbox::fake::dpop_verify::{verify_proof, ProofCheck};

fuzz_target!(|data: &[u8]| {
    static KEY: OnceLock<DpopKey> = OnceLock::new();
    let key = KEY.get_or_init(|| DpopKey::generate().expect("key"));
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let Ok(method) = Method::from_bytes(lines.next().unwrap_or("").as_bytes()) else {
        return;
    };
    let Ok(uri) = lines.next().unwrap_or("").parse::<Uri>() else {
        return;
    };
    let token = lines.next();
    let nonce = lines.next();
    let now = match lines.next().and_then(|s| s.trim().parse::<u32>().ok()) {
        Some(seconds) => UNIX_EPOCH + Duration::from_secs(seconds.into()),
        None => SystemTime::now(),
    };
    let proof = key.proof(&method, &uri, token, nonce, now);
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        assert!(proof.is_err(), "a proof for the relative URI {uri}");
        return;
    };
    let proof = proof.unwrap_or_else(|e| panic!("no proof for {method} {uri}: {e}"));
    let proof = proof.to_str().expect("a proof is visible ASCII");
    let htu = format!("{scheme}://{}{}", authority.as_str(), uri.path());
    let check = ProofCheck {
        method: method.as_str(),
        htu: &htu,
        access_token: token,
        nonce,
        now,
    };
    let verified = verify_proof(proof, &check)
        .unwrap_or_else(|e| panic!("{method} {uri} token {token:?} nonce {nonce:?}: {e}"));
    assert_eq!(verified.jkt, key.thumbprint());
    if nonce.is_none() {
        assert!(verified.claims.get("nonce").is_none());
    }
});
