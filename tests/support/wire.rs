//! Below the hyper client: raw bytes to the gateway, and a direct mTLS call to the fake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tango_sandbox::fake::FakeTango;
use tango_sandbox::pki::DevPki;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{Answer, PLATFORM};

/// GET `path` straight from the fake (mTLS with the dev client certificate, Basic).
pub(crate) async fn direct_get(
    fake: &FakeTango,
    pki: &DevPki,
    api_key: &str,
    path: &str,
) -> Answer {
    use base64::Engine as _;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert().cert_der.clone()).unwrap();
    let client = &pki.client;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client.cert_der.clone()], client.key_der())
        .unwrap();
    let tcp = TcpStream::connect(fake.addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{PLATFORM}:{}", api_key));
    let request = Request::get(path)
        .header("host", format!("localhost:{}", fake.addr().port()))
        .header("authorization", format!("Basic {basic}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Reads one HTTP/1.1 answer: headers, then `Content-Length` bytes of body (or until EOF).
pub(crate) async fn read_one_answer(tcp: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|n| buf.len() >= end + 4 + n) {
                return text;
            }
        }
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return text,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
