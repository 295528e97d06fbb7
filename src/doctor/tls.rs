//! Step 3: the TLS handshake over the step-2 connection, with the route's own TLS settings
//! (the same rustls configuration the gateway builds: system roots plus `ca_file`, hostname
//! verification, the client certificate), reporting version, ALPN and the server chain.
//!
//! Invariant: the server is verified exactly as the gateway verifies it, so a PASS here means
//! the gateway's handshake would pass too; only public certificate data is reported.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::{AlertDescription, CertificateError, ProtocolVersion};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::hints::Hint;
use super::network::{seconds, Endpoint};
use super::report::{Step, StepResult};
use crate::config::TlsConfig;
use crate::error::find_cause;
use crate::upstream::tls::client_config;

/// A server that has accepted TCP but not finished a handshake by then never will.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// What the gateway's connector offers (hyper-rustls with every HTTP version enabled).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
const SECS_PER_DAY: i64 = 86_400;

/// Step 3. On success, the TLS stream for the client-certificate step.
pub async fn handshake(
    tcp: TcpStream,
    endpoint: &Endpoint,
    tls: &TlsConfig,
) -> (StepResult, Option<TlsStream<TcpStream>>) {
    let fail = |detail: String, hint: Hint| (StepResult::fail(Step::Tls, detail, hint), None);
    let mut config = match client_config(tls) {
        Ok(config) => config,
        Err(err) => return fail(format!("cannot build the TLS client: {err}"), Hint::Setup),
    };
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    let name = match ServerName::try_from(endpoint.host.clone()) {
        Ok(name) => name,
        Err(err) => return fail(format!("{}: {err}", endpoint.host), Hint::TlsHandshake),
    };
    let connecting = TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Err(_) => {
            let detail = format!("no handshake within {}", seconds(HANDSHAKE_TIMEOUT));
            return fail(detail, Hint::TlsHandshake);
        }
        Ok(Err(err)) => {
            let cause = find_cause::<rustls::Error>(&err);
            let detail = match cause {
                Some(cause) => format!("handshake failed: {cause}"),
                None => format!("handshake failed: {err}"),
            };
            let hint = handshake_hint(cause, tls.client_identity.is_some());
            return fail(detail, hint);
        }
        Ok(Ok(stream)) => stream,
    };
    let connection = stream.get_ref().1;
    let chain = connection.peer_certificates().unwrap_or_default();
    let now = SystemTime::now();
    let leaf = chain.first().and_then(|der| describe(der, now));
    let mut detail = format!(
        "{}, ALPN {}, server certificate verified for {}",
        version_name(connection.protocol_version()),
        connection
            .alpn_protocol()
            .map_or("none".into(), String::from_utf8_lossy),
        endpoint.host,
    );
    if let Some(leaf) = &leaf {
        detail.push_str(&format!("; leaf expires in {} days", leaf.days_left));
    }
    let notes = chain
        .iter()
        .enumerate()
        .map(|(i, der)| match describe(der, now) {
            Some(cert) => format!(
                "chain[{i}]: subject: {}; issuer: {}; {} days left",
                cert.subject, cert.issuer, cert.days_left
            ),
            None => format!("chain[{i}]: (cannot be parsed)"),
        })
        .collect();
    (
        StepResult::pass(Step::Tls, detail).with_notes(notes),
        Some(stream),
    )
}

/// What a handshake failure most likely means. `cause` is the rustls error, when there is one.
pub fn handshake_hint(cause: Option<&rustls::Error>, has_client_cert: bool) -> Hint {
    match cause {
        Some(rustls::Error::InvalidCertificate(err)) => match err {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                Hint::UnknownServerCa
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Hint::HostnameMismatch
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Hint::ServerCertNotValidNow,
            _ => Hint::TlsHandshake,
        },
        // With TLS 1.2 a server refuses the client certificate during the handshake.
        Some(rustls::Error::AlertReceived(alert)) if is_client_cert_alert(*alert) => {
            client_cert_hint(has_client_cert)
        }
        _ => Hint::TlsHandshake,
    }
}

/// Alerts a server sends when it does not accept the client's certificate (or its absence).
pub fn is_client_cert_alert(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::HandshakeFailure
    )
}

pub fn client_cert_hint(has_client_cert: bool) -> Hint {
    if has_client_cert {
        Hint::ClientCertRefused
    } else {
        Hint::ClientCertMissing
    }
}

fn version_name(version: Option<ProtocolVersion>) -> &'static str {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLS 1.2",
        _ => "TLS (version unknown)",
    }
}

/// The public facts of one certificate of the server's chain.
struct CertFacts {
    subject: String,
    issuer: String,
    days_left: i64,
}

fn describe(der: &CertificateDer<'_>, now: SystemTime) -> Option<CertFacts> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(CertFacts {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        days_left: days_until(cert.validity().not_after.timestamp(), now),
    })
}

/// Whole days from `now` until the Unix time `not_after` (negative once passed).
fn days_until(not_after: i64, now: SystemTime) -> i64 {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    not_after.saturating_sub(now).div_euclid(SECS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(err: CertificateError) -> rustls::Error {
        rustls::Error::InvalidCertificate(err)
    }

    #[test]
    fn server_certificate_problems_point_at_ca_file_or_url_host() {
        let hint = |err| handshake_hint(Some(&invalid(err)), true);
        assert_eq!(hint(CertificateError::UnknownIssuer), Hint::UnknownServerCa);
        assert_eq!(
            hint(CertificateError::NotValidForName),
            Hint::HostnameMismatch
        );
        assert_eq!(hint(CertificateError::Expired), Hint::ServerCertNotValidNow);
        assert_eq!(hint(CertificateError::BadEncoding), Hint::TlsHandshake);
    }

    #[test]
    fn a_tls12_refusal_of_the_client_certificate_points_at_it() {
        let alert = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        assert_eq!(handshake_hint(Some(&alert), false), Hint::ClientCertMissing);
        assert_eq!(handshake_hint(Some(&alert), true), Hint::ClientCertRefused);
        let other = rustls::Error::AlertReceived(AlertDescription::ProtocolVersion);
        assert_eq!(handshake_hint(Some(&other), true), Hint::TlsHandshake);
        assert_eq!(handshake_hint(None, true), Hint::TlsHandshake);
    }

    #[test]
    fn days_left_rounds_down_and_goes_negative() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(days_until(1_000_000_000 + 10 * SECS_PER_DAY + 5, now), 10);
        assert_eq!(days_until(1_000_000_000 - 1, now), -1);
    }
}
