//! TLS-level behaviour of the fake: versions, key types, expired and misnamed certificates.

use super::*;

fn tls12_only(
    mut config: ClientConfig,
    pki: &DevPki,
    client: Option<&CertifiedMaterial>,
) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.cert().cert_der.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots);
    let alpn = std::mem::take(&mut config.alpn_protocols);
    config = match client {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert_der.clone()], c.key_der())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    config
}

#[tokio::test]
async fn tls12_works_and_still_requires_the_client_cert() {
    let (pki, fake) = start().await;
    let with_cert = tls12_only(client_config(&pki, None, false), &pki, Some(&pki.client));
    let ok = send(&fake, with_cert, get("/raas/v2/catalogs"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let without = tls12_only(client_config(&pki, None, false), &pki, None);
    assert!(send(&fake, without, get("/raas/v2/catalogs"))
        .await
        .is_err());
    wait_failed_handshakes(&fake, 1).await;
}

#[tokio::test]
async fn rsa_client_cert_is_accepted_expired_one_is_not() {
    let (pki, fake) = start().await;
    let rsa = pki
        .ca
        .issue_client(&ClientSpec::new("rsa-client").key_kind(crate::pki::KeyKind::Rsa2048))
        .unwrap();
    let ok = send(
        &fake,
        client_config(&pki, Some(&rsa), false),
        get("/raas/v2/catalogs"),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(fake.received()[0].client_cn.as_deref(), Some("rsa-client"));
    let expired = pki
        .ca
        .issue_client(&ClientSpec::new("old").expired())
        .unwrap();
    let config = client_config(&pki, Some(&expired), false);
    assert!(send(&fake, config, get("/raas/v2/catalogs")).await.is_err());
    wait_failed_handshakes(&fake, 1).await;
}

#[tokio::test]
async fn server_cert_for_another_name_fails_hostname_verification() {
    let pki = DevPki::generate().unwrap();
    let wrong = pki.ca.issue_server(&["other.example"]).unwrap();
    let fake = FakeTango::start(FakeTangoOptions::new(&wrong, pki.ca.cert()))
        .await
        .unwrap();
    let result = send(
        &fake,
        client_config(&pki, Some(&pki.client), false),
        get("/"),
    )
    .await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("not valid for name"), "{error}");
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn reset_after_read_over_h2_is_an_error_too() {
    let (pki, fake) = start().await;
    fake.push_fault(Fault::ResetAfterRead);
    let result = send(
        &fake,
        client_config(&pki, Some(&pki.client), true),
        get("/raas/v2/catalogs"),
    )
    .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn reset_after_read_over_http1_is_a_closed_connection() {
    let (pki, fake) = start().await;
    fake.push_fault(Fault::ResetAfterRead);
    let error = send(
        &fake,
        client_config(&pki, Some(&pki.client), false),
        get("/raas/v2/catalogs"),
    )
    .await
    .unwrap_err();
    let hyper_error = error.downcast_ref::<hyper::Error>().expect("a hyper error");
    // Dropped before any response byte and without TLS close_notify: an abrupt close that no
    // client can mistake for an answer (rustls reports it as an unexpected EOF).
    let io = std::error::Error::source(hyper_error)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    assert!(
        hyper_error.is_incomplete_message() || io == Some(std::io::ErrorKind::UnexpectedEof),
        "{hyper_error:?}"
    );
}
