//! The token endpoint: what a token carries, client authentication, grants, form and proof
//! checks, faults.

use super::*;

#[test]
fn an_issued_token_carries_the_documented_claims() {
    let mut server = server(options().token_lifetime(Duration::from_secs(300)));
    let key = ProofSigner::generate();
    let form = format!("{CLIENT_FORM}&audience=https%3A%2F%2Fapi.tangocard.com%2F&scope=raas");
    let proof = proof(&key, Method::POST, TOKEN_URL, None, None, t0());
    let reply = server.token(&Req::token(&form, Some(proof), t0()).view());
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["token_type"], "DPoP");
    assert_eq!(reply.body["expires_in"], 300);
    assert_eq!(reply.body["scope"], "raas");
    assert!(reply
        .headers
        .iter()
        .any(|(n, v)| n == CACHE_CONTROL && v == "no-store"));
    let token = reply.body["access_token"].as_str().unwrap();
    let claims = claims_of(token);
    assert_eq!(claims["sub"], "gw");
    assert_eq!(claims["aud"], "https://api.tangocard.com/");
    assert_eq!(claims["scope"], "raas");
    assert_eq!(claims["iat"], 1_800_000_000);
    assert_eq!(claims["exp"], 1_800_000_300);
    assert_eq!(claims["gen"], 0);
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint());
    assert!(claims["jti"].as_str().is_some());
    assert_eq!(server.tokens_issued(), 1);
    // Another token for the same request is a different token.
    assert_ne!(issue(&mut server, &key, t0()), token);
}

#[test]
fn client_authentication_rules() {
    let mut server = server(options().with_client("other", "x"));
    let key = ProofSigner::generate();
    let mut ask = |form: &str, basic: Option<&str>| {
        let mut req = Req::token(
            form,
            Some(proof(&key, Method::POST, TOKEN_URL, None, None, t0())),
            t0(),
        );
        if let Some(basic) = basic {
            let value = format!("Basic {}", STANDARD.encode(basic));
            req.headers
                .insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
        }
        let reply = server.token(&req.view());
        (
            reply.status.as_u16(),
            reply.body["error"].as_str().unwrap_or("").to_owned(),
        )
    };
    let ok = (200, String::new());
    let error = |status: u16, code: &str| (status, code.to_owned());
    assert_eq!(ask(CLIENT_FORM, None), ok);
    assert_eq!(
        ask(
            "grant_type=client_credentials",
            Some("gw:client-secret-do-not-log")
        ),
        ok
    );
    assert_eq!(
        ask(
            "grant_type=client_credentials&client_id=gw",
            Some("gw:client-secret-do-not-log")
        ),
        ok
    );
    assert_eq!(
        ask(
            "grant_type=client_credentials&client_id=other&client_secret=x",
            None
        ),
        ok
    );
    assert_eq!(
        ask(
            "grant_type=client_credentials&client_id=gw&client_secret=wrong",
            None
        ),
        error(401, "invalid_client")
    );
    assert_eq!(
        ask(
            "grant_type=client_credentials&client_id=gw&client_secret=x",
            None
        ),
        error(401, "invalid_client")
    );
    assert_eq!(
        ask(
            "grant_type=client_credentials&client_id=nobody&client_secret=x",
            None
        ),
        error(401, "invalid_client")
    );
    assert_eq!(
        ask("grant_type=client_credentials&client_id=gw", None),
        error(401, "invalid_client")
    );
    assert_eq!(
        ask("grant_type=client_credentials", Some("gw:wrong")),
        error(401, "invalid_client")
    );
    assert_eq!(
        ask(CLIENT_FORM, Some("gw:client-secret-do-not-log")),
        error(400, "invalid_request")
    );
    assert_eq!(
        ask(
            "grant_type=client_credentials&client_id=other",
            Some("gw:client-secret-do-not-log")
        ),
        error(400, "invalid_request")
    );
    assert_eq!(
        ask("client_id=gw&client_secret=client-secret-do-not-log", None),
        error(400, "invalid_request")
    );
    assert_eq!(
        ask(
            &CLIENT_FORM.replace("client_credentials", "authorization_code"),
            None
        ),
        error(400, "unsupported_grant_type")
    );
    assert_eq!(
        ask(&format!("{CLIENT_FORM}&scope=a&scope=b"), None),
        error(400, "invalid_request")
    );
    // Nothing about the secret leaks into the reason kept for diagnostics.
    assert!(!server.last_rejection().unwrap().contains(SECRET));
}

#[test]
fn password_grant_checks_the_service_account() {
    let mut server = server(options().with_service_account("svc", "pw-do-not-log"));
    let key = ProofSigner::generate();
    let mut ask = |extra: &str| {
        let form = CLIENT_FORM.replace("client_credentials", "password") + extra;
        let proof = proof(&key, Method::POST, TOKEN_URL, None, None, t0());
        server.token(&Req::token(&form, Some(proof), t0()).view())
    };
    let ok = ask("&username=svc&password=pw-do-not-log");
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        claims_of(ok.body["access_token"].as_str().unwrap())["sub"],
        "svc"
    );
    assert_eq!(
        ask("&username=svc&password=nope").body["error"],
        "invalid_grant"
    );
    assert_eq!(
        ask("&username=root&password=pw-do-not-log").body["error"],
        "invalid_grant"
    );
    assert_eq!(ask("&username=svc").body["error"], "invalid_request");
}

#[test]
fn the_token_endpoint_wants_a_posted_form_and_a_good_proof() {
    let mut server = server(options());
    let key = ProofSigner::generate();
    let good = || Some(proof(&key, Method::POST, TOKEN_URL, None, None, t0()));
    let mut get = Req::token(CLIENT_FORM, good(), t0());
    get.method = Method::GET;
    let reply = server.token(&get.view());
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(reply.headers.iter().any(|(n, v)| n == ALLOW && v == "POST"));
    let mut json_body = Req::token(CLIENT_FORM, good(), t0());
    json_body
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    assert_eq!(
        server.token(&json_body.view()).body["error"],
        "invalid_request"
    );
    let missing = server.token(&Req::token(CLIENT_FORM, None, t0()).view());
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["error"], "invalid_dpop_proof");
    // A proof for another URL, or one carrying an `ath`, or a hand-made one with `d`.
    let elsewhere = proof(
        &key,
        Method::POST,
        "https://other.test/oauth/token",
        None,
        None,
        t0(),
    );
    let with_ath = proof(&key, Method::POST, TOKEN_URL, Some("t"), None, t0());
    let signer = ProofSigner::generate();
    let mut header = signer.header();
    header["jwk"]["d"] = serde_json::json!("AAAA");
    let private = signer.sign(
        &header,
        &ProofSigner::claims("POST", TOKEN_URL, None, None, t0()),
    );
    for bad in [
        elsewhere,
        with_ath,
        HeaderValue::from_str(&private).unwrap(),
    ] {
        let reply = server.token(&Req::token(CLIENT_FORM, Some(bad), t0()).view());
        assert_eq!(reply.body["error"], "invalid_dpop_proof");
    }
    assert_eq!(server.tokens_issued(), 0);
}

#[test]
fn token_faults_down_and_counters() {
    let mut server = server(options());
    server.push_fault(TokenFault::Status {
        status: 500,
        error: None,
        times: 2,
    });
    server.push_fault(TokenFault::Status {
        status: 401,
        error: Some("invalid_client".into()),
        times: 0,
    });
    server.push_fault(TokenFault::Malformed { times: 1 });
    server.push_fault(TokenFault::Delay(Duration::from_millis(5)));
    server.set_down(true);
    let TokenStep::Reply(down) = server.begin_token_request() else {
        panic!("down")
    };
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.body["error"], "temporarily_unavailable");
    server.set_down(false);
    for _ in 0..2 {
        let TokenStep::Reply(reply) = server.begin_token_request() else {
            panic!("status")
        };
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.body["httpCode"], 500);
    }
    let TokenStep::Reply(malformed) = server.begin_token_request() else {
        panic!("malformed")
    };
    assert_eq!(malformed.status, StatusCode::OK);
    assert!(malformed.body.get("access_token").is_none());
    assert!(matches!(server.begin_token_request(), TokenStep::Delay(_)));
    assert!(matches!(server.begin_token_request(), TokenStep::Serve));
    assert_eq!(server.token_requests(), 6);
    assert_eq!(server.tokens_issued(), 0);
}

#[test]
fn a_client_that_tried_basic_gets_a_basic_challenge_with_its_401() {
    let mut server = server(options());
    let key = ProofSigner::generate();
    let mut basic = Req::token(
        "grant_type=client_credentials",
        Some(proof(&key, Method::POST, TOKEN_URL, None, None, t0())),
        t0(),
    );
    let value = format!("Basic {}", STANDARD.encode("gw:wrong"));
    basic
        .headers
        .insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
    let reply = server.token(&basic.view());
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let challenge = reply.headers.iter().find(|(n, _)| n == WWW_AUTHENTICATE);
    assert_eq!(
        challenge.map(|(_, v)| v.to_str().unwrap()),
        Some(r#"Basic realm="oauth""#)
    );
    // Form client authentication: no challenge.
    let form = CLIENT_FORM.replace(SECRET, "wrong");
    let proof = proof(&key, Method::POST, TOKEN_URL, None, None, t0());
    let reply = server.token(&Req::token(&form, Some(proof), t0()).view());
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.iter().all(|(n, _)| n != WWW_AUTHENTICATE));
}

#[test]
fn the_bearer_switch_answers_unbound_bearer_tokens_while_it_is_on() {
    let mut server = server(options());
    let key = ProofSigner::generate();
    server.set_bearer_only(true);
    let bound_request = proof(&key, Method::POST, TOKEN_URL, None, None, t0());
    let reply = server.token(&Req::token(CLIENT_FORM, Some(bound_request), t0()).view());
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["token_type"], "Bearer",
        "although a proof was sent"
    );
    let token = reply.body["access_token"].as_str().unwrap().to_owned();
    assert!(claims_of(&token).get("cnf").is_none(), "unbound");
    let req = Req::api(&format!("Bearer {token}"), None, t0());
    assert_eq!(server.authorize(&req.view()), Ok(()));

    server.set_bearer_only(false);
    let bound = issue(&mut server, &key, t0());
    assert!(claims_of(&bound)["cnf"]["jkt"].is_string());
}
