//! The fake's OAuth 2.0 token endpoint over mTLS like a real client, and the helpers its API
//! tests (`api`) share.

use std::time::SystemTime;

use base64::Engine as _;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Uri};
use serde_json::Value;

use super::*;
use crate::fake::test_proofs::{claims_of, ProofSigner};

mod api;

const CLIENT_ID: &str = "gateway-client";
const CLIENT_SECRET: &str = "client-secret-never-logged";
const CATALOGS: &str = "/raas/v2/catalogs";

async fn start_oauth(options: OAuthServerOptions) -> (DevPki, FakeTango) {
    let pki = DevPki::generate().unwrap();
    let options = FakeTangoOptions::from_dev_pki(&pki).with_oauth(options);
    (pki, FakeTango::start(options).await.unwrap())
}

fn oauth() -> OAuthServerOptions {
    OAuthServerOptions::new(CLIENT_ID, CLIENT_SECRET)
}

/// The `Host` a client of `fake.url()` sends: what `htu` must name.
fn host(fake: &FakeTango) -> String {
    format!("localhost:{}", fake.addr().port())
}

fn uri(text: &str) -> Uri {
    text.parse().unwrap()
}

fn client_form() -> String {
    format!("grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}")
}

fn token_request(fake: &FakeTango, form: &str, proof: Option<HeaderValue>) -> Request<Full<Bytes>> {
    let mut request = Request::post(TOKEN_PATH)
        .header(HOST, host(fake))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    if let Some(proof) = proof {
        request.headers_mut().insert("dpop", proof);
    }
    request
}

fn token_proof(fake: &FakeTango, key: &ProofSigner, nonce: Option<&str>) -> HeaderValue {
    let url = uri(&fake.token_endpoint_url());
    key.proof_for(&Method::POST, &url, None, nonce, SystemTime::now())
}

/// `path_and_query` called with `Authorization: <scheme> <token>` and, if given, a proof.
fn api_request(
    fake: &FakeTango,
    path_and_query: &str,
    authorization: &str,
    proof: Option<HeaderValue>,
) -> Request<Full<Bytes>> {
    let mut request = Request::get(path_and_query)
        .header(HOST, host(fake))
        .header(AUTHORIZATION, authorization)
        .body(Full::default())
        .unwrap();
    if let Some(proof) = proof {
        request.headers_mut().insert("dpop", proof);
    }
    request
}

/// A client's proof for `GET path` (any query is left out of `htu` by the signer).
fn api_proof(
    fake: &FakeTango,
    key: &ProofSigner,
    path: &str,
    token: &str,
    nonce: Option<&str>,
) -> HeaderValue {
    let url = uri(&format!("{}{path}", fake.url()));
    key.proof_for(&Method::GET, &url, Some(token), nonce, SystemTime::now())
}

async fn call(pki: &DevPki, fake: &FakeTango, request: Request<Full<Bytes>>) -> Response<Bytes> {
    send(fake, client_config(pki, Some(&pki.client), false), request)
        .await
        .unwrap()
}

fn json_of(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

fn header<'r>(response: &'r Response<Bytes>, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A DPoP-bound token for `key` by client_credentials with form client auth.
async fn fetch_token(pki: &DevPki, fake: &FakeTango, key: &ProofSigner) -> String {
    let proof = token_proof(fake, key, None);
    let response = call(pki, fake, token_request(fake, &client_form(), Some(proof))).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        fake.last_proof_error()
    );
    json_of(&response)["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn client_credentials_give_a_dpop_token_bound_to_the_key() {
    let (pki, fake) = start_oauth(oauth()).await;
    let key = ProofSigner::generate();
    let form = format!(
        "{}&audience=https%3A%2F%2Fapi.tangocard.com%2F",
        client_form()
    );
    let proof = token_proof(&fake, &key, None);
    let response = call(&pki, &fake, token_request(&fake, &form, Some(proof))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert_eq!(header(&response, FAKE_TANGO_HEADER), Some("1"));
    let body = json_of(&response);
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["expires_in"], 86_400);
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint());
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["aud"], "https://api.tangocard.com/");
    assert_eq!((fake.token_requests(), fake.tokens_issued()), (1, 1));
    // The token request was recorded like any other.
    assert_eq!(fake.received()[0].path_and_query, TOKEN_PATH);
}

#[tokio::test]
async fn basic_client_auth_and_the_password_grant() {
    let options = oauth().with_service_account("svc-user", "svc-password");
    let (pki, fake) = start_oauth(options).await;
    let key = ProofSigner::generate();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let mut request = token_request(
        &fake,
        "grant_type=client_credentials&scope=raas.all",
        Some(token_proof(&fake, &key, None)),
    );
    request
        .headers_mut()
        .insert(AUTHORIZATION, format!("Basic {basic}").parse().unwrap());
    let response = call(&pki, &fake, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(&response)["scope"], "raas.all");

    let form = format!(
        "grant_type=password&username=svc-user&password=svc-password&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"
    );
    let proof = token_proof(&fake, &key, None);
    let response = call(&pki, &fake, token_request(&fake, &form, Some(proof))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = json_of(&response)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(claims_of(&token)["sub"], "svc-user");

    let wrong = form.replace("password=svc-password", "password=nope");
    let proof = token_proof(&fake, &key, None);
    let response = call(&pki, &fake, token_request(&fake, &wrong, Some(proof))).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&response)["error"], "invalid_grant");
    assert_eq!(fake.tokens_issued(), 2);
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client_and_a_missing_proof_is_refused() {
    let (pki, fake) = start_oauth(oauth()).await;
    let key = ProofSigner::generate();
    let wrong = client_form().replace(CLIENT_SECRET, "guess");
    let proof = token_proof(&fake, &key, None);
    let response = call(&pki, &fake, token_request(&fake, &wrong, Some(proof))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&response)["error"], "invalid_client");
    let response = call(&pki, &fake, token_request(&fake, &client_form(), None)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&response)["error"], "invalid_dpop_proof");
    let reason = fake.last_proof_error().unwrap();
    assert!(reason.contains("no DPoP proof"), "{reason}");
    // GET is not how tokens are asked for.
    let mut get = token_request(&fake, "", None);
    *get.method_mut() = Method::GET;
    let response = call(&pki, &fake, get).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert_eq!((fake.token_requests(), fake.tokens_issued()), (3, 0));
}

#[tokio::test]
async fn token_nonce_challenge_round_trip() {
    let (pki, fake) = start_oauth(oauth().token_nonce()).await;
    let key = ProofSigner::generate();
    let proof = token_proof(&fake, &key, None);
    let challenge = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(proof)),
    )
    .await;
    assert_eq!(challenge.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&challenge)["error"], "use_dpop_nonce");
    let nonce = header(&challenge, "dpop-nonce").unwrap().to_owned();
    assert_eq!(Some(nonce.clone()), fake.current_nonce());
    let proof = token_proof(&fake, &key, Some(&nonce));
    let response = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(proof)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // After a rotation the old nonce is refused and the new one is announced.
    fake.rotate_nonce();
    let proof = token_proof(&fake, &key, Some(&nonce));
    let again = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(proof)),
    )
    .await;
    assert_eq!(json_of(&again)["error"], "use_dpop_nonce");
    assert_ne!(header(&again, "dpop-nonce"), Some(nonce.as_str()));
    assert_eq!((fake.token_requests(), fake.tokens_issued()), (3, 1));
}

#[tokio::test]
async fn token_faults_and_api_faults_keep_to_their_own_requests() {
    let (pki, fake) = start_oauth(oauth()).await;
    let key = ProofSigner::generate();
    let token = fetch_token(&pki, &fake, &key).await;
    fake.push_token_fault(TokenFault::Status {
        status: 401,
        error: Some("invalid_client".into()),
        times: 1,
    });
    fake.push_token_fault(TokenFault::Malformed { times: 1 });
    // API requests pass through untouched while token faults are pending.
    let proof = api_proof(&fake, &key, CATALOGS, &token, None);
    let ok = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &format!("DPoP {token}"), Some(proof)),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    // An API fault is not taken by token requests.
    fake.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
        times: 1,
    });
    let first = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(token_proof(&fake, &key, None))),
    )
    .await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&first)["error"], "invalid_client");
    let second = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(token_proof(&fake, &key, None))),
    )
    .await;
    assert_eq!(second.status(), StatusCode::OK);
    assert!(json_of(&second).get("access_token").is_none());
    let third = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(token_proof(&fake, &key, None))),
    )
    .await;
    assert_eq!(third.status(), StatusCode::OK);
    assert!(json_of(&third)["access_token"].is_string());
    // The API fault is still there for the next API request.
    let proof = api_proof(&fake, &key, CATALOGS, &token, None);
    let faulted = call(
        &pki,
        &fake,
        api_request(&fake, CATALOGS, &format!("DPoP {token}"), Some(proof)),
    )
    .await;
    assert_eq!(faulted.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((fake.token_requests(), fake.tokens_issued()), (4, 2));
}

#[tokio::test]
async fn token_endpoint_down_hang_and_delay() {
    let (pki, fake) = start_oauth(oauth()).await;
    let key = ProofSigner::generate();
    fake.set_token_endpoint_down(true);
    let down = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(token_proof(&fake, &key, None))),
    )
    .await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_of(&down)["error"], "temporarily_unavailable");
    fake.set_token_endpoint_down(false);

    fake.push_token_fault(TokenFault::Hang);
    let config = client_config(&pki, Some(&pki.client), false);
    let request = token_request(&fake, &client_form(), Some(token_proof(&fake, &key, None)));
    let hung = tokio::time::timeout(Duration::from_millis(300), send(&fake, config, request)).await;
    assert!(hung.is_err(), "a hung token request must not complete");

    fake.push_token_fault(TokenFault::Delay(Duration::from_millis(200)));
    let started = tokio::time::Instant::now();
    let slow = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(token_proof(&fake, &key, None))),
    )
    .await;
    assert_eq!(slow.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!((fake.token_requests(), fake.tokens_issued()), (3, 1));
}

#[tokio::test]
async fn with_oauth_basic_credentials_are_not_accepted_and_without_it_tokens_are_not_needed() {
    let pki = DevPki::generate().unwrap();
    let options = FakeTangoOptions::from_dev_pki(&pki)
        .with_basic_auth("platform", "s3cret")
        .with_oauth(oauth());
    let fake = FakeTango::start(options).await.unwrap();
    let mut request = get(CATALOGS);
    request
        .headers_mut()
        .insert(AUTHORIZATION, "Basic cGxhdGZvcm06czNjcmV0".parse().unwrap());
    let response = call(&pki, &fake, request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "www-authenticate"),
        Some(r#"DPoP error="invalid_token""#)
    );
    // Without OAuth, /oauth/token is an ordinary (unknown) API path and no counter moves.
    let (pki, plain) = start().await;
    let response = call(&pki, &plain, token_request(&plain, &client_form(), None)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        (plain.token_requests(), plain.last_proof_error()),
        (0, None)
    );
}

#[tokio::test]
async fn debug_output_of_options_and_the_fake_holds_no_secret() {
    let options = oauth().with_service_account("svc", "svc-password-never-logged");
    let text = format!("{options:?}");
    assert!(!text.contains(CLIENT_SECRET) && !text.contains("svc-password-never-logged"));
    let (pki, fake) = start_oauth(options).await;
    let key = ProofSigner::generate();
    let token = fetch_token(&pki, &fake, &key).await;
    let text = format!("{fake:?} {:?}", fake.last_proof_error());
    assert!(!text.contains(CLIENT_SECRET) && !text.contains(&token));
}

/// The `Date` of an answer, as seconds from `now` (rounded down by the format).
fn date_offset(response: &Response<Bytes>, now: SystemTime) -> i64 {
    let date = header(response, "date").expect("every answer has a Date");
    let date = httpdate::parse_http_date(date).unwrap();
    let secs = |t: SystemTime| {
        i64::try_from(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap()
    };
    secs(date) - secs(now)
}

#[tokio::test]
async fn a_clock_offset_moves_the_date_header_and_the_time_proofs_are_judged_by() {
    let (pki, fake) = start_oauth(oauth()).await;
    let key = ProofSigner::generate();
    let ahead = Duration::from_secs(90);
    fake.set_clock_offset(90);
    let token_url = uri(&fake.token_endpoint_url());
    let near = |offset: i64, expected: i64| (offset - expected).abs() <= 1;

    // A proof on the host's clock is 90 s old to the fake: refused, with the fake's Date.
    let now = SystemTime::now();
    let proof = key.proof_for(&Method::POST, &token_url, None, None, now);
    let refused = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(proof)),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&refused)["error"], "invalid_dpop_proof");
    assert!(near(date_offset(&refused, now), 90));
    assert!(fake.last_proof_error().unwrap().contains("iat"));

    // Signed on the fake's clock: a token, and its answer dated on that clock too.
    let now = SystemTime::now();
    let proof = key.proof_for(&Method::POST, &token_url, None, None, now + ahead);
    let issued = call(
        &pki,
        &fake,
        token_request(&fake, &client_form(), Some(proof)),
    )
    .await;
    assert_eq!(issued.status(), StatusCode::OK);
    assert!(near(date_offset(&issued, now), 90));
    let token = json_of(&issued)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The API judges proofs by the same clock, and dates its answers, refusals included.
    let authorization = format!("DPoP {token}");
    let url = uri(&format!("{}{CATALOGS}", fake.url()));
    let now = SystemTime::now();
    let stale = key.proof_for(&Method::GET, &url, Some(&token), None, now);
    let request = api_request(&fake, CATALOGS, &authorization, Some(stale));
    let refused = call(&pki, &fake, request).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(near(date_offset(&refused, now), 90));
    let fresh = key.proof_for(&Method::GET, &url, Some(&token), None, now + ahead);
    let request = api_request(&fake, CATALOGS, &authorization, Some(fresh));
    let answered = call(&pki, &fake, request).await;
    assert_eq!(answered.status(), StatusCode::OK);
    assert!(near(date_offset(&answered, now), 90));

    // Behind works the same way, and 0 puts the fake back on the host's clock.
    fake.set_clock_offset(-90);
    let now = SystemTime::now();
    let answer = call(&pki, &fake, api_request(&fake, CATALOGS, "DPoP x", None)).await;
    assert!(near(date_offset(&answer, now), -90));
    fake.set_clock_offset(0);
    let answer = call(&pki, &fake, api_request(&fake, CATALOGS, "DPoP x", None)).await;
    assert!(near(date_offset(&answer, SystemTime::now()), 0));
}
