//! The authorization server as pure logic, with the clock under the test's control: shared
//! helpers and the rules that span both endpoints; `token` and `api` hold the rest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Uri};

use super::*;
use crate::fake::test_proofs::{claims_of, ProofSigner};

mod api;
mod token;

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
    key: &ProofSigner,
    method: Method,
    url: &str,
    token: Option<&str>,
    nonce: Option<&str>,
    now: SystemTime,
) -> HeaderValue {
    key.proof_for(&method, &url.parse::<Uri>().unwrap(), token, nonce, now)
}

const CLIENT_FORM: &str =
    "grant_type=client_credentials&client_id=gw&client_secret=client-secret-do-not-log";

/// A bound token for `key`, issued at `now`.
fn issue(server: &mut AuthServer, key: &ProofSigner, now: SystemTime) -> String {
    let proof = proof(key, Method::POST, TOKEN_URL, None, None, now);
    let reply = server.token(&Req::token(CLIENT_FORM, Some(proof), now).view());
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

fn api_call(
    server: &mut AuthServer,
    key: &ProofSigner,
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
fn a_proof_is_good_once_across_both_endpoints() {
    let mut server = server(options());
    let key = ProofSigner::generate();
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
    let key = ProofSigner::generate();
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
fn without_dpop_a_proof_is_optional_and_bearer_only_ignores_it() {
    let key = ProofSigner::generate();
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
fn debug_output_holds_no_secret() {
    let mut server = server(options().with_service_account("svc", "pw-do-not-log"));
    let key = ProofSigner::generate();
    let token = issue(&mut server, &key, t0());
    let text = format!("{server:?}");
    for secret in [SECRET, "pw-do-not-log", token.as_str()] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(text.contains("gw") && text.contains("svc"));
}
