//! The authorization server as pure logic, with the clock under the test's control.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Uri};

use super::*;
use crate::auth::dpop::DpopKey;
use crate::sandbox::test_proofs::{claims_of, ProofSigner};

const AUTHORITY: &str = "tango.test:8443";
const TOKEN_URL: &str = "https://tango.test:8443/oauth/token";
const API_PATH: &str = "/raas/v2/catalogs";
const API_URL: &str = "https://tango.test:8443/raas/v2/catalogs";
const SECRET: &str = "client-secret-do-not-log";

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn server(options: OAuthServerOptions) -> AuthServer {
    AuthServer::new(options).unwrap()
}

fn options() -> OAuthServerOptions {
    OAuthServerOptions::new("gw", SECRET)
}

/// A request as the handler would describe it.
struct Req {
    method: Method,
    path: &'static str,
    headers: HeaderMap,
    body: Vec<u8>,
    now: SystemTime,
}

impl Req {
    fn token(form: &str, proof: Option<HeaderValue>, now: SystemTime) -> Req {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        if let Some(proof) = proof {
            headers.insert(DPOP, proof);
        }
        Req {
            method: Method::POST,
            path: TOKEN_PATH,
            headers,
            body: form.as_bytes().to_vec(),
            now,
        }
    }

    fn api(authorization: &str, proof: Option<HeaderValue>, now: SystemTime) -> Req {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        if let Some(proof) = proof {
            headers.insert(DPOP, proof);
        }
        Req {
            method: Method::GET,
            path: API_PATH,
            headers,
            body: Vec::new(),
            now,
        }
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            authority: Some(AUTHORITY),
            path: self.path,
            headers: &self.headers,
            body: &self.body,
            now: self.now,
        }
    }
}

fn proof(
    key: &DpopKey,
    method: Method,
    url: &str,
    token: Option<&str>,
    nonce: Option<&str>,
    now: SystemTime,
) -> HeaderValue {
    key.proof(&method, &url.parse::<Uri>().unwrap(), token, nonce, now)
        .unwrap()
}

const CLIENT_FORM: &str =
    "grant_type=client_credentials&client_id=gw&client_secret=client-secret-do-not-log";

/// A bound token for `key`, issued at `now`.
fn issue(server: &mut AuthServer, key: &DpopKey, now: SystemTime) -> String {
    let proof = proof(key, Method::POST, TOKEN_URL, None, None, now);
    let reply = server.token(&Req::token(CLIENT_FORM, Some(proof), now).view());
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

fn api_call(
    server: &mut AuthServer,
    key: &DpopKey,
    token: &str,
    now: SystemTime,
) -> Result<(), Challenge> {
    let proof = proof(key, Method::GET, API_URL, Some(token), None, now);
    server.authorize(&Req::api(&format!("DPoP {token}"), Some(proof), now).view())
}

fn invalid_dpop() -> Result<(), Challenge> {
    Err(Challenge::InvalidToken(Scheme::Dpop))
}

#[test]
fn an_issued_token_carries_the_documented_claims() {
    let mut server = server(options().token_lifetime(Duration::from_secs(300)));
    let key = DpopKey::generate().unwrap();
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
fn a_token_expires_at_exp() {
    let mut server = server(options().token_lifetime(Duration::from_secs(300)));
    let key = DpopKey::generate().unwrap();
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
    let key = DpopKey::generate().unwrap();
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
    let key = DpopKey::generate().unwrap();
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
    let thief = DpopKey::generate().unwrap();
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
    let key = DpopKey::generate().unwrap();
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
    let key = DpopKey::generate().unwrap();
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
fn a_proof_is_good_once_across_both_endpoints() {
    let mut server = server(options());
    let key = DpopKey::generate().unwrap();
    let token_proof = proof(&key, Method::POST, TOKEN_URL, None, None, t0());
    let first = server.token(&Req::token(CLIENT_FORM, Some(token_proof.clone()), t0()).view());
    assert_eq!(first.status, StatusCode::OK);
    let again = server.token(&Req::token(CLIENT_FORM, Some(token_proof), t0()).view());
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.body["error"], "invalid_dpop_proof");
    let token = first.body["access_token"].as_str().unwrap();
    let api_proof = proof(&key, Method::GET, API_URL, Some(token), None, t0());
    let req = Req::api(&format!("DPoP {token}"), Some(api_proof), t0());
    assert_eq!(server.authorize(&req.view()), Ok(()));
    assert_eq!(server.authorize(&req.view()), invalid_dpop());
    // After the window the jti is forgotten (the proof is then stale anyway).
    let later = Req {
        now: t0() + Duration::from_secs(121),
        ..req
    };
    assert_eq!(server.authorize(&later.view()), invalid_dpop());
    assert!(server.last_rejection().unwrap().contains("60 s"));
}

#[test]
fn nonces_are_demanded_where_configured_and_rotate() {
    let mut server = server(options().token_nonce().api_nonce());
    let key = DpopKey::generate().unwrap();
    let first_nonce = server.nonce().to_owned();
    let bare = proof(&key, Method::POST, TOKEN_URL, None, None, t0());
    let reply = server.token(&Req::token(CLIENT_FORM, Some(bare), t0()).view());
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"], "use_dpop_nonce");
    let header = reply.headers.iter().find(|(n, _)| n == DPOP_NONCE).unwrap();
    assert_eq!(header.1, first_nonce.as_str());
    let with = proof(
        &key,
        Method::POST,
        TOKEN_URL,
        None,
        Some(&first_nonce),
        t0(),
    );
    let reply = server.token(&Req::token(CLIENT_FORM, Some(with), t0()).view());
    assert_eq!(reply.status, StatusCode::OK);
    let token = reply.body["access_token"].as_str().unwrap().to_owned();

    server.rotate_nonce();
    let second_nonce = server.nonce().to_owned();
    assert_ne!(first_nonce, second_nonce);
    let stale = proof(
        &key,
        Method::GET,
        API_URL,
        Some(&token),
        Some(&first_nonce),
        t0(),
    );
    let req = Req::api(&format!("DPoP {token}"), Some(stale), t0());
    assert_eq!(
        server.authorize(&req.view()),
        Err(Challenge::UseNonce(second_nonce.clone()))
    );
    let fresh = proof(
        &key,
        Method::GET,
        API_URL,
        Some(&token),
        Some(&second_nonce),
        t0(),
    );
    let req = Req::api(&format!("DPoP {token}"), Some(fresh), t0());
    assert_eq!(server.authorize(&req.view()), Ok(()));
}

#[test]
fn client_authentication_rules() {
    let mut server = server(options().with_client("other", "x"));
    let key = DpopKey::generate().unwrap();
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
    let key = DpopKey::generate().unwrap();
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
    let key = DpopKey::generate().unwrap();
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
fn without_dpop_a_proof_is_optional_and_bearer_only_ignores_it() {
    let key = DpopKey::generate().unwrap();
    let mut optional = server(options().without_dpop());
    let plain = optional.token(&Req::token(CLIENT_FORM, None, t0()).view());
    assert_eq!(plain.body["token_type"], "Bearer");
    let bearer = plain.body["access_token"].as_str().unwrap().to_owned();
    assert!(claims_of(&bearer).get("cnf").is_none());
    let req = Req::api(&format!("Bearer {bearer}"), None, t0());
    assert_eq!(optional.authorize(&req.view()), Ok(()));
    // An unbound token sent with the DPoP scheme is refused.
    let req = Req::api(&format!("DPoP {bearer}"), None, t0());
    assert_eq!(
        optional.authorize(&req.view()),
        Err(Challenge::InvalidToken(Scheme::Bearer))
    );
    assert!(!issue(&mut optional, &key, t0()).is_empty());

    let mut bearer_only = server(options().bearer_only().api_nonce());
    let proof = proof(&key, Method::POST, TOKEN_URL, None, None, t0());
    let reply = bearer_only.token(&Req::token(CLIENT_FORM, Some(proof), t0()).view());
    assert_eq!(reply.body["token_type"], "Bearer");
    let token = reply.body["access_token"].as_str().unwrap();
    assert!(claims_of(token).get("cnf").is_none());
    let req = Req::api(&format!("Bearer {token}"), None, t0());
    assert_eq!(bearer_only.authorize(&req.view()), Ok(()));
    let none = Req {
        headers: HeaderMap::new(),
        ..Req::api("x", None, t0())
    };
    assert_eq!(
        bearer_only.authorize(&none.view()),
        Err(Challenge::InvalidToken(Scheme::Bearer))
    );
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
fn debug_output_holds_no_secret() {
    let mut server = server(options().with_service_account("svc", "pw-do-not-log"));
    let key = DpopKey::generate().unwrap();
    let token = issue(&mut server, &key, t0());
    let text = format!("{server:?}");
    for secret in [SECRET, "pw-do-not-log", token.as_str()] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(text.contains("gw") && text.contains("svc"));
}
