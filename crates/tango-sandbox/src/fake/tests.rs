//! End-to-end tests of the fake through a plain tokio-rustls + hyper client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::*;
use crate::pki::{Ca, ClientSpec, DevPki};

mod oauth;
mod tls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(super) fn client_config(
    pki: &DevPki,
    client: Option<&CertifiedMaterial>,
    h2: bool,
) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.cert().cert_der.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert_der.clone()], c.key_der())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    config
}

pub(super) async fn send(
    fake: &FakeTango,
    config: ClientConfig,
    request: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, BoxError> {
    let tcp = TcpStream::connect(fake.addr()).await?;
    let name = ServerName::try_from("localhost")?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

pub(super) fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Full::default())
        .unwrap()
}

fn post_json(path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

async fn start() -> (DevPki, FakeTango) {
    let pki = DevPki::generate().unwrap();
    let fake = FakeTango::start(FakeTangoOptions::from_dev_pki(&pki))
        .await
        .unwrap();
    (pki, fake)
}

#[tokio::test]
async fn mtls_request_is_answered_and_recorded_with_cn() {
    let (pki, fake) = start().await;
    let config = client_config(&pki, Some(&pki.client), false);
    let response = send(&fake, config, get("/raas/v2/catalogs")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[FAKE_TANGO_HEADER], "1");
    assert!(fake.url().starts_with("https://localhost:"));
    let recorded = fake.received();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path_and_query, "/raas/v2/catalogs");
    assert_eq!(
        recorded[0].client_cn.as_deref(),
        Some(crate::pki::DEV_CLIENT_CN)
    );
    assert_eq!(recorded[0].version, Version::HTTP_11);
    assert_eq!(fake.connections_accepted(), 1);
}

#[tokio::test]
async fn h2_is_negotiated_by_alpn() {
    let (pki, fake) = start().await;
    let config = client_config(&pki, Some(&pki.client), true);
    let response = send(&fake, config, get("/raas/v2/customers"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fake.received()[0].version, Version::HTTP_2);
}

pub(super) async fn wait_failed_handshakes(fake: &FakeTango, n: usize) {
    for _ in 0..100 {
        if fake.failed_handshakes() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("failed handshakes: {}", fake.failed_handshakes());
}

#[tokio::test]
async fn missing_or_foreign_client_cert_fails_the_handshake() {
    let (pki, fake) = start().await;
    let result = send(
        &fake,
        client_config(&pki, None, false),
        get("/raas/v2/catalogs"),
    )
    .await;
    assert!(result.is_err());
    let other_ca = Ca::new("untrusted CA").unwrap();
    let foreign = other_ca.issue_client(&ClientSpec::new("intruder")).unwrap();
    let config = client_config(&pki, Some(&foreign), false);
    assert!(send(&fake, config, get("/raas/v2/catalogs")).await.is_err());
    wait_failed_handshakes(&fake, 2).await;
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn xff_with_port_gets_the_alb_403() {
    let (pki, fake) = start().await;
    let mut request = get("/raas/v2/catalogs");
    request
        .headers_mut()
        .insert("x-forwarded-for", "1.2.3.4:80".parse().unwrap());
    let response = send(
        &fake,
        client_config(&pki, Some(&pki.client), false),
        request,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()["server"], alb::ALB_SERVER);
    assert_eq!(response.headers()["content-type"], "text/html");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn status_fault_with_retry_after_then_normal() {
    let (pki, fake) = start().await;
    fake.push_fault(Fault::Status {
        status: 503,
        retry_after: Some("1".into()),
        times: 1,
    });
    let config = || client_config(&pki, Some(&pki.client), false);
    let first = send(&fake, config(), get("/raas/v2/catalogs"))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.headers()["retry-after"], "1");
    let second = send(&fake, config(), get("/raas/v2/catalogs"))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn reset_after_read_gives_the_client_an_error() {
    let (pki, fake) = start().await;
    fake.push_fault(Fault::ResetAfterRead);
    let config = || client_config(&pki, Some(&pki.client), false);
    let body = r#"{"externalRefID":"r1","amount":5}"#;
    let result = send(&fake, config(), post_json("/raas/v2/orders", body)).await;
    assert!(
        result.is_err(),
        "expected a connection error, got {result:?}"
    );
    let recorded = fake.received();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body, body.as_bytes());
    // A reset request was read but not acted on; the fake then works again.
    let ok = send(&fake, config(), get("/raas/v2/catalogs"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn orders_are_idempotent_over_the_wire() {
    let (pki, fake) = start().await;
    let config = || client_config(&pki, Some(&pki.client), false);
    let body = r#"{"externalRefID":"order-42","amount":10,"utid":"U000001"}"#;
    let first = send(&fake, config(), post_json("/raas/v2/orders", body))
        .await
        .unwrap();
    let again = send(&fake, config(), post_json("/raas/v2/orders", body))
        .await
        .unwrap();
    let first: serde_json::Value = serde_json::from_slice(first.body()).unwrap();
    let again: serde_json::Value = serde_json::from_slice(again.body()).unwrap();
    assert_eq!(first["referenceOrderID"], again["referenceOrderID"]);
    assert_eq!(fake.orders_created(), 1);
    let id = first["referenceOrderID"].as_str().unwrap();
    let fetched = send(&fake, config(), get(&format!("/raas/v2/orders/{id}")))
        .await
        .unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
}

#[tokio::test]
async fn basic_credentials_are_enforced() {
    let pki = DevPki::generate().unwrap();
    let options = FakeTangoOptions::from_dev_pki(&pki).with_basic_auth("platform", "s3cret");
    let fake = FakeTango::start(options).await.unwrap();
    let config = || client_config(&pki, Some(&pki.client), false);
    let denied = send(&fake, config(), get("/raas/v2/catalogs"))
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = serde_json::from_slice(denied.body()).unwrap();
    assert_eq!(body["httpCode"], 401);
    let mut request = get("/raas/v2/catalogs");
    // base64("platform:s3cret")
    request.headers_mut().insert(
        "authorization",
        "Basic cGxhdGZvcm06czNjcmV0".parse().unwrap(),
    );
    let allowed = send(&fake, config(), request).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
}

#[tokio::test]
async fn hang_and_stall_keep_the_client_waiting() {
    let (pki, fake) = start().await;
    let config = || client_config(&pki, Some(&pki.client), false);
    fake.push_fault(Fault::Hang);
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        send(&fake, config(), get("/raas/v2/catalogs")),
    )
    .await;
    assert!(hung.is_err(), "a hung request must not complete");

    fake.push_fault(Fault::StallBody { after_bytes: 10 });
    let tcp = TcpStream::connect(fake.addr()).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config()))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(get("/raas/v2/catalogs")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first.len(), 10);
    let rest = tokio::time::timeout(Duration::from_millis(300), body.frame()).await;
    assert!(rest.is_err(), "the body must stall");
    fake.shutdown();
    // After shutdown the stalled body ends with an error, not a clean end.
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap();
    assert!(!matches!(end, Some(Ok(_))), "got {end:?}");
}

#[tokio::test]
async fn delay_then_normal_answer() {
    let (pki, fake) = start().await;
    fake.push_fault(Fault::Delay(Duration::from_millis(200)));
    let started = tokio::time::Instant::now();
    let response = send(
        &fake,
        client_config(&pki, Some(&pki.client), false),
        get("/raas/v2/catalogs"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn drop_outside_a_runtime_does_not_panic() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(start()).1;
    drop(runtime);
    drop(fake);
}
