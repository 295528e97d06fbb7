//! The fake's DPoP-protected API over mTLS: good calls, replays, bad proofs and schemes,
//! revocation, nonce challenges, Bearer-only tokens, h2.

use super::*;

#[tokio::test]
async fn api_call_with_token_and_proof_succeeds_once_per_proof() {
    let (pki, fake) = start_oauth(oauth()).await;
    let key = ProofSigner::generate();
    let token = fetch_token(&pki, &fake, &key).await;
    let proof = api_proof(&fake, &key, CATALOGS, &token, None);
    let auth = format!("DPoP {token}");
    let ok = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &auth, Some(proof.clone())),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK, "{:?}", fake.last_proof_error());
    assert!(json_of(&ok)["brands"].is_array());
    // The very same proof again: a replay.
    let replay = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &auth, Some(proof)),
    )
    .await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&replay, "www-authenticate"),
        Some(r#"DPoP error="invalid_token""#)
    );
    assert_eq!(json_of(&replay)["httpCode"], 401);
    assert!(fake.last_proof_error().unwrap().contains("jti"));
    // A fresh proof works again; a query on the request does not enter `htu`.
    let query = format!("{CATALOGS}?verbose=true");
    let proof = api_proof(&fake, &key, &query, &token, None);
    let ok = call(&pki, &fake, api_request(&fake, &query, &auth, Some(proof))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(fake.api_auth_failures(), 1);
}

#[tokio::test]
async fn api_refuses_bad_proofs_and_bad_schemes() {
    let (pki, fake) = start_oauth(oauth()).await;
    let key = ProofSigner::generate();
    let token = fetch_token(&pki, &fake, &key).await;
    let auth = format!("DPoP {token}");
    let signer = ProofSigner::generate();
    let query = format!("{CATALOGS}?verbose=true");
    let url = format!("{}{CATALOGS}", fake.url());
    let cases: Vec<(&str, Request<Full<Bytes>>)> = vec![
        // htu carrying the query (hand-made: a correct client never does this).
        ("htu", {
            let htu = format!("{}{query}", fake.url());
            let claims = ProofSigner::claims("GET", &htu, Some(&token), None, SystemTime::now());
            let proof = signer.sign(&signer.header(), &claims);
            api_request(&fake, &query, &auth, Some(proof.parse().unwrap()))
        }),
        // ath of another token.
        ("ath", {
            let proof = key.proof_for(
                &Method::GET,
                &uri(&url),
                Some("another-token"),
                None,
                SystemTime::now(),
            );
            api_request(&fake, CATALOGS, &auth, Some(proof))
        }),
        // No proof at all.
        ("no DPoP proof", api_request(&fake, CATALOGS, &auth, None)),
        // The bound token as Bearer.
        ("Bearer", {
            let proof = api_proof(&fake, &key, CATALOGS, &token, None);
            api_request(&fake, CATALOGS, &format!("Bearer {token}"), Some(proof))
        }),
        // A proof by another key (a stolen token).
        ("key", {
            let thief = ProofSigner::generate();
            let proof = api_proof(&fake, &thief, CATALOGS, &token, None);
            api_request(&fake, CATALOGS, &auth, Some(proof))
        }),
        // A stale proof.
        ("60 s", {
            let old = SystemTime::now() - Duration::from_secs(90);
            let proof = key.proof_for(&Method::GET, &uri(&url), Some(&token), None, old);
            api_request(&fake, CATALOGS, &auth, Some(proof))
        }),
        // Not a token of this fake.
        ("not issued", {
            let proof = api_proof(&fake, &key, CATALOGS, "forged.token.x", None);
            api_request(&fake, CATALOGS, "DPoP forged.token.x", Some(proof))
        }),
    ];
    let count = cases.len();
    for (why, request) in cases {
        let response = call(&pki, &fake, request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{why}");
        assert_eq!(
            header(&response, "www-authenticate"),
            Some(r#"DPoP error="invalid_token""#),
            "{why}"
        );
        let reason = fake.last_proof_error().unwrap();
        assert!(reason.contains(why), "{why}: {reason}");
        assert!(!reason.contains(&token));
    }
    assert_eq!(fake.api_auth_failures(), count);
}

#[tokio::test]
async fn revoked_tokens_are_refused_and_new_ones_work() {
    let (pki, fake) = start_oauth(oauth()).await;
    let key = ProofSigner::generate();
    let old = fetch_token(&pki, &fake, &key).await;
    fake.revoke_tokens();
    let proof = api_proof(&fake, &key, CATALOGS, &old, None);
    let response = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &format!("DPoP {old}"), Some(proof)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "www-authenticate"),
        Some(r#"DPoP error="invalid_token""#)
    );
    assert!(fake.last_proof_error().unwrap().contains("revoked"));
    let new = fetch_token(&pki, &fake, &key).await;
    let proof = api_proof(&fake, &key, CATALOGS, &new, None);
    let response = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &format!("DPoP {new}"), Some(proof)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn api_nonce_challenge_round_trip() {
    let (pki, fake) = start_oauth(oauth().api_nonce()).await;
    let key = ProofSigner::generate();
    // The token endpoint does not demand the nonce here.
    let token = fetch_token(&pki, &fake, &key).await;
    let auth = format!("DPoP {token}");
    let proof = api_proof(&fake, &key, CATALOGS, &token, None);
    let challenge = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &auth, Some(proof)),
    )
    .await;
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&challenge, "www-authenticate"),
        Some(r#"DPoP error="use_dpop_nonce""#)
    );
    let nonce = header(&challenge, "dpop-nonce").unwrap().to_owned();
    let proof = api_proof(&fake, &key, CATALOGS, &token, Some(&nonce));
    let ok = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &auth, Some(proof)),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK, "{:?}", fake.last_proof_error());
    fake.rotate_nonce();
    let proof = api_proof(&fake, &key, CATALOGS, &token, Some(&nonce));
    let stale = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &auth, Some(proof)),
    )
    .await;
    assert_eq!(
        header(&stale, "www-authenticate"),
        Some(r#"DPoP error="use_dpop_nonce""#)
    );
    assert_eq!(
        header(&stale, "dpop-nonce"),
        fake.current_nonce().as_deref()
    );
    assert_eq!(fake.api_auth_failures(), 2);
}

#[tokio::test]
async fn bearer_only_issues_unbound_tokens_used_as_bearer() {
    let (pki, fake) = start_oauth(oauth().bearer_only()).await;
    let key = ProofSigner::generate();
    let proof = token_proof(&fake, &key, None);
    let response = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(proof)),
    )
    .await;
    let body = json_of(&response);
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap();
    assert!(claims_of(token).get("cnf").is_none());
    let ok = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &format!("Bearer {token}"), None),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let as_dpop = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &format!("DPoP {token}"), None),
    )
    .await;
    assert_eq!(as_dpop.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&as_dpop, "www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
}

#[tokio::test]
async fn over_h2_the_authority_names_the_htu() {
    let (pki, fake) = start_oauth(oauth()).await;
    let key = ProofSigner::generate();
    let token = fetch_token(&pki, &fake, &key).await;
    let url = format!("{}{CATALOGS}", fake.url());
    let proof = api_proof(&fake, &key, CATALOGS, &token, None);
    let request = Request::get(url.as_str())
        .header(AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Full::default())
        .unwrap();
    let response = send(&fake, client_config(&pki, Some(&pki.client), true), request)
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        fake.last_proof_error()
    );
    assert_eq!(fake.received().last().unwrap().version, Version::HTTP_2);
}
