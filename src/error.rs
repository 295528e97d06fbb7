//! Gateway-made errors: one kind per failure, mapped to a status and a JSON body in one place.
//!
//! Invariant: the text sent to a caller is built from fixed strings and safe facts (route
//! names, limits); never from upstream error text, secrets or header values.

use std::error::Error as StdError;
use std::fmt;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{full, ResponseBody};

pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Header naming the gateway error code on every gateway-made answer (a `HeaderName`: a
/// `&str` lookup parses the name again on every request).
pub const ERROR_HEADER: http::HeaderName = http::HeaderName::from_static("x-tango-gateway-error");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ForbiddenSource,
    BrowserRequest,
    BadRequest,
    BadPath,
    NoRoute,
    MethodNotAllowed,
    BodyTooLarge,
    Overloaded,
    CredentialsUnavailable,
    UpstreamUnreachable,
    UpstreamTls,
    UpstreamTimeout,
    /// The caller's request body stalled past `inbound.body_read_timeout` (§12).
    RequestTimeout,
    /// A failure the gateway cannot classify: a bug, never retried, logged at warn.
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ForbiddenSource | ErrorCode::BrowserRequest => StatusCode::FORBIDDEN,
            ErrorCode::BadRequest | ErrorCode::BadPath => StatusCode::BAD_REQUEST,
            ErrorCode::NoRoute => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Overloaded | ErrorCode::CredentialsUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::UpstreamUnreachable | ErrorCode::UpstreamTls => StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ForbiddenSource => "gateway.forbidden_source",
            ErrorCode::BrowserRequest => "gateway.browser_request",
            ErrorCode::BadRequest => "gateway.bad_request",
            ErrorCode::BadPath => "gateway.bad_path",
            ErrorCode::NoRoute => "gateway.no_route",
            ErrorCode::MethodNotAllowed => "gateway.method_not_allowed",
            ErrorCode::BodyTooLarge => "gateway.body_too_large",
            ErrorCode::Overloaded => "gateway.overloaded",
            ErrorCode::CredentialsUnavailable => "gateway.credentials_unavailable",
            ErrorCode::UpstreamUnreachable => "gateway.upstream_unreachable",
            ErrorCode::UpstreamTls => "gateway.upstream_tls",
            ErrorCode::UpstreamTimeout => "gateway.upstream_timeout",
            ErrorCode::RequestTimeout => "gateway.request_timeout",
            ErrorCode::Internal => "gateway.internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error the gateway answers itself. `message` is shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub code: ErrorCode,
    pub message: String,
}

impl GatewayError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        GatewayError {
            code,
            message: message.into(),
        }
    }

    /// The JSON answer of PRODUCT.md §4, with the `x-tango-gateway-error` header.
    pub fn into_response(self, request_id: Option<&str>) -> Response<ResponseBody> {
        let body = serde_json::json!({
            "error": {
                "code": self.code.as_str(),
                "message": self.message,
                "request_id": request_id,
            }
        });
        let mut response = Response::new(full(Bytes::from(body.to_string())));
        *response.status_mut() = self.code.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.code.as_str()));
        if self.code == ErrorCode::Overloaded {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl StdError for GatewayError {}

/// The per-attempt timeout passed before the upstream sent response headers.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("upstream did not answer within the attempt timeout")]
pub struct AttemptTimedOut;

/// How an upstream attempt failed, as far as retrying and answering are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// Never reached the upstream (refused, DNS, connect timeout): always safe to retry.
    ConnectFailure,
    /// TLS handshake failure, alert, unknown CA, hostname mismatch: never retried.
    Tls,
    /// No response headers within the attempt timeout: the upstream may have acted.
    Timeout,
    /// Connection lost after the request may have been sent.
    Reset,
}

impl AttemptFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptFailure::ConnectFailure => "connect_failure",
            AttemptFailure::Tls => "tls",
            AttemptFailure::Timeout => "timeout",
            AttemptFailure::Reset => "reset",
        }
    }
}

/// Finds a `T` in an error's source chain, looking inside `io::Error`s (their `source()`
/// skips the wrapped error, which is where rustls puts its alerts) and inside `h2::Error`s
/// (which keep their I/O cause but report no `source()`).
pub fn find_cause<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current: Option<&'a (dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(found) = io.get_ref().and_then(|inner| find_cause::<T>(inner)) {
                return Some(found);
            }
        }
        if let Some(io) = e.downcast_ref::<h2::Error>().and_then(h2::Error::get_io) {
            if let Some(found) = find_cause::<T>(io) {
                return Some(found);
            }
        }
        current = e.source();
    }
    None
}

/// True when the transport failed in TLS. Over HTTP/1.1 the `rustls::Error` itself is in the
/// chain; over h2 only its text and I/O kind survive, and in this transport (TCP + rustls)
/// only rustls reports `InvalidData` (tokio-rustls maps every rustls error to it). A TLS 1.3
/// server refusing our client certificate is seen this way: its alert arrives after the
/// handshake, on the first read.
fn is_tls_failure(err: &(dyn StdError + 'static)) -> bool {
    find_cause::<rustls::Error>(err).is_some()
        || find_cause::<std::io::Error>(err)
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
}

/// Classifies an upstream attempt error; `None` when it is not an upstream failure at all
/// (e.g. a gateway error raised below the retry layer).
pub fn classify_attempt_error(err: &(dyn StdError + 'static)) -> Option<AttemptFailure> {
    if find_cause::<GatewayError>(err).is_some()
        || find_cause::<http_body_util::LengthLimitError>(err).is_some()
    {
        return None;
    }
    if is_tls_failure(err) {
        return Some(AttemptFailure::Tls);
    }
    if find_cause::<AttemptTimedOut>(err).is_some() {
        return Some(AttemptFailure::Timeout);
    }
    // The route pool's connect errors; hyper-util's client (the token client, the demo) marks
    // its own with `is_connect`.
    if find_cause::<crate::upstream::connect::ConnectError>(err).is_some() {
        return Some(AttemptFailure::ConnectFailure);
    }
    if let Some(client_err) = find_cause::<hyper_util::client::legacy::Error>(err) {
        if client_err.is_connect() {
            return Some(AttemptFailure::ConnectFailure);
        }
    }
    Some(AttemptFailure::Reset)
}

/// Maps any error that reached the top of the stack to the gateway error answered for it.
pub fn to_gateway_error(err: &(dyn StdError + 'static)) -> GatewayError {
    if let Some(gateway) = find_cause::<GatewayError>(err) {
        return gateway.clone();
    }
    if find_cause::<tower::load_shed::error::Overloaded>(err).is_some() {
        return GatewayError::new(ErrorCode::Overloaded, "too many requests in flight");
    }
    if find_cause::<http_body_util::LengthLimitError>(err).is_some() {
        return GatewayError::new(ErrorCode::BodyTooLarge, "request body too large");
    }
    match classify_attempt_error(err) {
        Some(AttemptFailure::Tls) => GatewayError::new(
            ErrorCode::UpstreamTls,
            "TLS with the upstream failed (server certificate or client certificate refused)",
        ),
        Some(AttemptFailure::Timeout) => GatewayError::new(
            ErrorCode::UpstreamTimeout,
            "the upstream did not answer in time",
        ),
        Some(AttemptFailure::ConnectFailure) => GatewayError::new(
            ErrorCode::UpstreamUnreachable,
            "could not connect to the upstream",
        ),
        Some(AttemptFailure::Reset) | None => GatewayError::new(
            ErrorCode::UpstreamUnreachable,
            "the upstream connection failed before a response",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rustls_error_inside_io_error() {
        let tls = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let boxed: BoxError = Box::new(io);
        assert_eq!(classify_attempt_error(&*boxed), Some(AttemptFailure::Tls));
        assert_eq!(to_gateway_error(&*boxed).code, ErrorCode::UpstreamTls);
    }

    #[test]
    fn tls_alert_kept_only_as_io_kind_is_still_tls() {
        // What h2 keeps after a TLS 1.3 server refuses the client certificate: the kind and
        // the text (`h2::Error` itself cannot be built outside h2; tests/mtls.rs covers it).
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        );
        let boxed: BoxError = Box::new(io);
        assert_eq!(classify_attempt_error(&*boxed), Some(AttemptFailure::Tls));
    }

    #[test]
    fn connection_reset_is_not_tls() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let boxed: BoxError = Box::new(io);
        assert_eq!(classify_attempt_error(&*boxed), Some(AttemptFailure::Reset));
    }

    #[test]
    fn timeout_maps_to_504() {
        let boxed: BoxError = Box::new(AttemptTimedOut);
        let err = to_gateway_error(&*boxed);
        assert_eq!(err.code, ErrorCode::UpstreamTimeout);
        assert_eq!(err.code.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn gateway_error_passes_through_unchanged() {
        let original = GatewayError::new(ErrorCode::NoRoute, "no route for this path");
        let boxed: BoxError = Box::new(original.clone());
        assert_eq!(to_gateway_error(&*boxed), original);
        assert_eq!(classify_attempt_error(&*boxed), None);
    }

    #[test]
    fn response_has_json_body_and_error_header() {
        let response =
            GatewayError::new(ErrorCode::BodyTooLarge, "too big").into_response(Some("abc"));
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            response
                .headers()
                .get(ERROR_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some("gateway.body_too_large")
        );
    }
}
