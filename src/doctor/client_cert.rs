//! Step 4: is the client certificate (or its absence) accepted? The only way a client can
//! know: send one HTTP request over the step-3 connection and see that it is answered rather
//! than refused with a TLS alert. A TLS 1.3 server checks the client's certificate after the
//! client's side of the handshake is complete, so its refusal arrives at the first read.
//!
//! Invariant: the probe carries no credentials (its answer, typically `401`, is not judged);
//! only the transport outcome decides this step.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::hints::Hint;
use super::network::{seconds, Endpoint};
use super::report::{Step, StepResult};
use super::tls::{client_cert_hint, is_client_cert_alert};
use super::DOCTOR_USER_AGENT;
use crate::certs::ClientIdentity;
use crate::error::{find_cause, BoxError};
use crate::upstream::classify::{classify_attempt_error, AttemptFailure};

/// Step 4, on the connection the handshake step opened.
pub async fn probe(
    stream: TlsStream<TcpStream>,
    endpoint: &Endpoint,
    path: &str,
    identity: Option<&ClientIdentity>,
    timeout: Duration,
) -> StepResult {
    let answered = tokio::time::timeout(timeout, send(stream, endpoint, path)).await;
    let presented = match identity {
        Some(identity) => format!("client certificate {}", identity.summary.subject),
        None => "no client certificate configured".to_owned(),
    };
    match answered {
        Err(_) => StepResult::fail(
            Step::ClientCert,
            format!("no answer within {} (upstream.timeout)", seconds(timeout)),
            Hint::NoAnswer,
        ),
        Ok(Ok(response)) => {
            let verdict = match identity {
                Some(_) => "accepted",
                None => "and none required",
            };
            StepResult::pass(
                Step::ClientCert,
                format!(
                    "{presented} {verdict}: an unauthenticated GET on this connection was \
                     answered {}",
                    response.status()
                ),
            )
        }
        Ok(Err(err)) => {
            let (detail, hint) = refusal(&*err, identity.is_some());
            StepResult::fail(Step::ClientCert, format!("{presented}: {detail}"), hint)
        }
    }
}

/// Why the probe got no answer, and what that means.
pub fn refusal(err: &(dyn std::error::Error + 'static), has_client_cert: bool) -> (String, Hint) {
    if let Some(rustls::Error::AlertReceived(alert)) = find_cause::<rustls::Error>(err) {
        let hint = if is_client_cert_alert(*alert) {
            client_cert_hint(has_client_cert)
        } else {
            Hint::TlsHandshake
        };
        return (
            format!("the server refused the connection with the TLS alert {alert:?}"),
            hint,
        );
    }
    // Over h2 only the I/O kind of the alert survives; in this transport only rustls reports
    // it, and after a completed handshake the client certificate is what a server refuses.
    if classify_attempt_error(err) == Some(AttemptFailure::Tls) {
        let what = find_cause::<std::io::Error>(err)
            .map(|io| format!(" ({io})"))
            .unwrap_or_default();
        return (
            format!("the server ended the connection with a TLS error after the handshake{what}"),
            client_cert_hint(has_client_cert),
        );
    }
    (
        "the server closed the connection without answering".to_owned(),
        Hint::ClientCertUnconfirmed,
    )
}

/// One GET over `stream`, HTTP/2 or HTTP/1.1 as ALPN chose.
async fn send(
    stream: TlsStream<TcpStream>,
    endpoint: &Endpoint,
    path: &str,
) -> Result<Response<Incoming>, BoxError> {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let authority = authority(endpoint);
    let io = TokioIo::new(stream);
    if h2 {
        let uri: Uri = format!("https://{authority}{path}").parse()?;
        let request = request(uri, None)?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await;
        driver.abort();
        Ok(response?)
    } else {
        let request = request(path.parse()?, Some(&authority))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await;
        driver.abort();
        Ok(response?)
    }
}

fn request(uri: Uri, host: Option<&str>) -> Result<Request<Empty<Bytes>>, BoxError> {
    let mut builder = Request::get(uri).header(USER_AGENT, DOCTOR_USER_AGENT);
    if let Some(host) = host {
        builder = builder.header(HOST, HeaderValue::try_from(host)?);
    }
    Ok(builder.body(Empty::new())?)
}

/// `host[:port]` as a `Host` header or `:authority` carries it (IPv6 in brackets).
fn authority(endpoint: &Endpoint) -> String {
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    if endpoint.port == 443 {
        host
    } else {
        format!("{host}:{}", endpoint.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::AlertDescription;

    fn io(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, err)
    }

    #[test]
    fn certificate_required_without_a_certificate_asks_for_one() {
        let err = io(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        let (detail, hint) = refusal(&err, false);
        assert_eq!(hint, Hint::ClientCertMissing);
        assert!(detail.contains("CertificateRequired"), "{detail}");
        assert_eq!(refusal(&err, true).1, Hint::ClientCertRefused);
    }

    #[test]
    fn an_alert_kept_only_as_io_kind_still_counts() {
        let err = io("received fatal alert: CertificateRequired");
        let (detail, hint) = refusal(&err, false);
        assert_eq!(hint, Hint::ClientCertMissing);
        assert!(detail.contains("CertificateRequired"), "{detail}");
    }

    #[test]
    fn a_plain_close_is_not_blamed_on_a_missing_certificate() {
        let err = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(refusal(&err, false).1, Hint::ClientCertUnconfirmed);
    }

    #[test]
    fn authority_keeps_non_default_ports_and_brackets_ipv6() {
        let endpoint = |host: &str, port| Endpoint {
            host: host.to_owned(),
            port,
            tls: true,
        };
        assert_eq!(authority(&endpoint("api.example", 443)), "api.example");
        assert_eq!(authority(&endpoint("localhost", 8443)), "localhost:8443");
        assert_eq!(authority(&endpoint("::1", 8443)), "[::1]:8443");
    }
}
