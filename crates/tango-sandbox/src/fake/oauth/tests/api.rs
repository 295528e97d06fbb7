//! The API's token check: expiry, revocation, scheme, proof by the bound key.

use super::*;

#[test]
fn a_token_expires_at_exp() {
    let mut server = server(options().token_lifetime(Duration::from_secs(300)));
    let key = ProofSigner::generate();
    let token = issue(&mut server, &key, t0());
    assert_eq!(
        api_call(&mut server, &key, &token, t0() + Duration::from_secs(299)),
        Ok(())
    );
    assert_eq!(
        api_call(&mut server, &key, &token, t0() + Duration::from_secs(300)),
        invalid_dpop()
    );
    assert_eq!(
        server.last_rejection().as_deref(),
        Some("api: the access token has expired")
    );
}

#[test]
fn revoking_refuses_old_tokens_only() {
    let mut server = server(options());
    let key = ProofSigner::generate();
    let old = issue(&mut server, &key, t0());
    server.revoke();
    let new = issue(&mut server, &key, t0());
    assert_eq!(api_call(&mut server, &key, &old, t0()), invalid_dpop());
    assert_eq!(
        server.last_rejection().as_deref(),
        Some("api: the access token was revoked")
    );
    assert_eq!(api_call(&mut server, &key, &new, t0()), Ok(()));
}

#[test]
fn a_bound_token_needs_the_dpop_scheme_and_a_proof_by_its_key() {
    let mut server = server(options());
    let key = ProofSigner::generate();
    let token = issue(&mut server, &key, t0());
    let good = || proof(&key, Method::GET, API_URL, Some(&token), None, t0());
    // As Bearer, even with a proof.
    let bearer = Req::api(&format!("Bearer {token}"), Some(good()), t0());
    assert_eq!(server.authorize(&bearer.view()), invalid_dpop());
    // Without a proof.
    let bare = Req::api(&format!("DPoP {token}"), None, t0());
    assert_eq!(server.authorize(&bare.view()), invalid_dpop());
    // With two proofs.
    let mut two = Req::api(&format!("DPoP {token}"), Some(good()), t0());
    two.headers.append(DPOP, good());
    assert_eq!(server.authorize(&two.view()), invalid_dpop());
    // With a proof by another key.
    let thief = ProofSigner::generate();
    let stolen = proof(&thief, Method::GET, API_URL, Some(&token), None, t0());
    let req = Req::api(&format!("DPoP {token}"), Some(stolen), t0());
    assert_eq!(server.authorize(&req.view()), invalid_dpop());
    assert_eq!(
        server.last_rejection().as_deref(),
        Some("api: the proof's key is not the key the token is bound to")
    );
    // The right way.
    let req = Req::api(&format!("dpop {token}"), Some(good()), t0());
    assert_eq!(server.authorize(&req.view()), Ok(()));
}

#[test]
fn tokens_from_elsewhere_and_garbage_are_refused() {
    let mut server = server(options());
    let mut other = AuthServer::new(options()).unwrap();
    let key = ProofSigner::generate();
    let foreign = issue(&mut other, &key, t0());
    assert_eq!(api_call(&mut server, &key, &foreign, t0()), invalid_dpop());
    for authorization in [
        "",
        "DPoP",
        "DPoP ",
        "Basic Z3c6eA==",
        "Token abc",
        "DPoP a.b.c",
    ] {
        let req = Req::api(authorization, None, t0());
        assert!(server.authorize(&req.view()).is_err(), "{authorization:?}");
    }
    let none = Req {
        headers: HeaderMap::new(),
        ..Req::api("x", None, t0())
    };
    assert_eq!(server.authorize(&none.view()), invalid_dpop());
}

#[test]
fn proof_failures_at_the_api_are_invalid_token_and_explained() {
    let mut server = server(options());
    let key = ProofSigner::generate();
    let token = issue(&mut server, &key, t0());
    let auth = format!("DPoP {token}");
    let cases = [
        (
            proof(&key, Method::POST, API_URL, Some(&token), None, t0()),
            "htm",
        ),
        (
            proof(&key, Method::GET, TOKEN_URL, Some(&token), None, t0()),
            "htu",
        ),
        (
            proof(&key, Method::GET, API_URL, Some("other"), None, t0()),
            "ath",
        ),
        (proof(&key, Method::GET, API_URL, None, None, t0()), "ath"),
        (
            proof(
                &key,
                Method::GET,
                API_URL,
                Some(&token),
                None,
                t0() - Duration::from_secs(61),
            ),
            "iat",
        ),
    ];
    for (bad, word) in cases {
        let req = Req::api(&auth, Some(bad), t0());
        assert_eq!(server.authorize(&req.view()), invalid_dpop(), "{word}");
        let reason = server.last_rejection().unwrap();
        assert!(
            reason.starts_with("api: DPoP proof:") && reason.contains(word),
            "{reason}"
        );
        assert!(!reason.contains(&token));
    }
}

#[test]
fn refusing_all_tokens_refuses_later_ones_too_until_switched_off() {
    let mut server = server(options());
    let key = ProofSigner::generate();
    let before = issue(&mut server, &key, t0());
    server.set_refuse_all(true);
    // The token endpoint keeps serving (and counting): only the API refuses.
    let after = issue(&mut server, &key, t0());
    assert_eq!(server.tokens_issued(), 2);
    for token in [&before, &after] {
        assert_eq!(api_call(&mut server, &key, token, t0()), invalid_dpop());
    }
    assert_eq!(
        server.last_rejection().as_deref(),
        Some("api: the API refuses every token (test switch)")
    );
    server.set_refuse_all(false);
    assert_eq!(api_call(&mut server, &key, &after, t0()), Ok(()));
}
