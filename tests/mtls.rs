//! Upstream mTLS end to end: the fake Tango sees the configured client certificate; a TLS
//! failure that the gateway can see as one is `502 gateway.upstream_tls` and is tried once
//! only (repeating cannot help).
//!
//! A TLS 1.3 server refuses a client certificate only after the client's side of the
//! handshake is complete, and the client may already be sending the request. If the server
//! closes first, its TCP reset can reach the gateway before its alert does: the failure then
//! looks like a reset (`gateway.upstream_unreachable`, retried when safe). The refusal tests
//! therefore run the fake on TLS 1.2, where the refusal is inside the handshake; one test
//! pins what is certain under TLS 1.3.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Harness, Setup, Tls};
use tango_sandbox::pki::DEV_CLIENT_CN;

#[tokio::test]
async fn tango_sees_the_configured_client_certificate() {
    let h = Harness::start().await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    assert_eq!(h.only_request().client_cn.as_deref(), Some(DEV_CLIENT_CN));
    assert_eq!(h.fake.failed_handshakes(), 0);
}

/// The call fails as `upstream_tls`, reaches no handler, and used one connection at most.
async fn assert_tls_failure_not_retried(tls: Tls) {
    let h = Setup::new().tls(tls).fake_tls12_only().start().await;
    let answer = h.get("/raas/v2/catalogs").await;
    answer.assert_gateway_error(502, "gateway.upstream_tls");
    assert_eq!(h.fake.request_count(), 0, "{tls:?}: a request got through");
    let attempts = h.fake.connections_accepted();
    assert!(
        attempts <= 1,
        "{tls:?}: {attempts} connections: a TLS failure was retried"
    );
    assert!(h.fake.failed_handshakes() <= 1);
}

#[tokio::test]
async fn a_tls13_refusal_of_the_client_certificate_is_a_502_that_reaches_no_handler() {
    for tls in [Tls::NoClientCert, Tls::ForeignClientCert] {
        let h = Setup::new().tls(tls).start().await;
        let answer = h.get("/raas/v2/catalogs").await;
        assert_eq!(answer.status.as_u16(), 502, "{tls:?}");
        let code = answer.error_code();
        assert!(
            matches!(
                code.as_deref(),
                Some("gateway.upstream_tls" | "gateway.upstream_unreachable")
            ),
            "{tls:?}: {code:?}"
        );
        assert_eq!(h.fake.request_count(), 0, "{tls:?}: a request got through");
        // Every attempt was refused: never more connections than attempts.
        assert!(h.fake.connections_accepted() <= 3, "{tls:?}");
    }
}

#[tokio::test]
async fn no_client_certificate_is_an_upstream_tls_error_not_retried() {
    assert_tls_failure_not_retried(Tls::NoClientCert).await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_an_upstream_tls_error_not_retried() {
    assert_tls_failure_not_retried(Tls::ForeignClientCert).await;
}

#[tokio::test]
async fn an_unknown_server_ca_is_an_upstream_tls_error_not_retried() {
    assert_tls_failure_not_retried(Tls::ForeignServerCa).await;
}

#[tokio::test]
async fn the_gateway_keeps_serving_after_a_tls_failure() {
    let h = Setup::new().tls(Tls::ForeignServerCa).start().await;
    for _ in 0..3 {
        let answer = h.get("/raas/v2/catalogs").await;
        answer.assert_gateway_error(502, "gateway.upstream_tls");
    }
    assert_eq!(h.fake.request_count(), 0);
}
