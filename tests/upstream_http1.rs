//! The gateway against an upstream that speaks HTTP/1.1 only (the fake Tango negotiates h2):
//! origin-form targets, the upstream's `Host` whatever the caller sent, and keep-alive reuse
//! of the upstream connection across requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use tango_sandbox::pki::Ca;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the upstream saw of one request: version, target, `Host`.
type Seen = (Version, String, Option<String>);

struct Http1Upstream {
    port: u16,
    ca_pem: String,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn start_http1_upstream() -> Http1Upstream {
    let ca = Ca::new("http1 upstream CA").unwrap();
    let cert = ca.issue_server(&["localhost"]).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], cert.key_der())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (count, record) = (accepted.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let host = request
                            .headers()
                            .get(http::header::HOST)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        record.lock().unwrap().push((
                            request.version(),
                            request.uri().to_string(),
                            host,
                        ));
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"{\"ok\":true}"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Http1Upstream {
        port,
        ca_pem: ca.cert().cert_pem.clone(),
        accepted,
        seen,
    }
}

#[tokio::test]
async fn an_http1_upstream_gets_origin_form_its_own_host_and_one_kept_connection() {
    let upstream = start_http1_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, &upstream.ca_pem).unwrap();
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\ninbound:\n  allow: [\"127.0.0.1/32\"]\n\
         routes:\n  - name: plain\n    match:\n      path_prefix: /raas/v2/\n    upstream:\n      \
         url: \"https://localhost:{}\"\n      tls:\n        ca_file: \"{}\"\n    auth: none\n",
        upstream.port,
        ca_file.display()
    );
    let config_file = dir.path().join("gateway.yaml");
    std::fs::write(&config_file, yaml).unwrap();
    let gateway = support::start_gateway(&config_file).await;

    // One keep-alive caller connection: served by one worker, whose pool keeps one
    // upstream connection for all five requests.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for _ in 0..5 {
        let request = Request::get(format!(
            "http://{}/raas/v2/catalogs?verbose=true",
            gateway.listen_addr
        ))
        .header("host", "evil.example")
        .body(Full::default())
        .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"ok\":true}");
    }

    let seen = upstream.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    let host = format!("localhost:{}", upstream.port);
    for (version, target, seen_host) in &seen {
        assert_eq!(*version, Version::HTTP_11);
        assert_eq!(target, "/raas/v2/catalogs?verbose=true");
        assert_eq!(seen_host.as_deref(), Some(host.as_str()));
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
    gateway.shutdown().await;
}
