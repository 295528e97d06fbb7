//! Gateway-made errors: the vocabulary every layer shares (one code per failure, its status,
//! the boxed error type, a source-chain search). A leaf: it imports nothing of the pipeline.
//! Errors become answers in [`crate::rescue`]; upstream attempts are classified in
//! [`crate::upstream::classify`].
//!
//! Invariant: the text sent to a caller is built from fixed strings and safe facts (route
//! names, limits); never from upstream error text, secrets or header values.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// Header naming the gateway error code on every gateway-made answer (a `HeaderName`: a
/// `&str` lookup parses the name again on every request).
pub(crate) const ERROR_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-tango-gateway-error");

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
    // Order safety (§10).
    /// `callers` is configured and the peer is none of them.
    CallerUnknown,
    /// The request names an account or customer its caller may not use.
    AccountForbidden,
    /// The order would take its caller past its spend limit.
    SpendLimitExceeded,
    /// `orders.require_external_ref_id` and the order has none.
    ExternalRefRequired,
    /// The `externalRefID` belongs to a different order.
    ExternalRefConflict,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ForbiddenSource
            | ErrorCode::BrowserRequest
            | ErrorCode::CallerUnknown
            | ErrorCode::AccountForbidden
            | ErrorCode::SpendLimitExceeded => StatusCode::FORBIDDEN,
            ErrorCode::ExternalRefRequired => StatusCode::BAD_REQUEST,
            ErrorCode::ExternalRefConflict => StatusCode::CONFLICT,
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
            ErrorCode::CallerUnknown => "gateway.caller_unknown",
            ErrorCode::AccountForbidden => "gateway.account_forbidden",
            ErrorCode::SpendLimitExceeded => "gateway.spend_limit_exceeded",
            ErrorCode::ExternalRefRequired => "gateway.external_ref_required",
            ErrorCode::ExternalRefConflict => "gateway.external_ref_conflict",
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
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl StdError for GatewayError {}

/// Finds a `T` in an error's source chain, looking inside `io::Error`s (their `source()`
/// skips the wrapped error, which is where rustls puts its alerts) and inside `h2::Error`s
/// (which keep their I/O cause but report no `source()`).
pub(crate) fn find_cause<'a, T: StdError + 'static>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a T> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_found_inside_io_errors() {
        let gateway = GatewayError::new(ErrorCode::NoRoute, "no route for this path");
        let io = std::io::Error::other(gateway.clone());
        let boxed: BoxError = Box::new(io);
        assert_eq!(find_cause::<GatewayError>(&*boxed), Some(&gateway));
        assert!(find_cause::<std::fmt::Error>(&*boxed).is_none());
    }

    #[test]
    fn every_code_has_its_status_and_name() {
        assert_eq!(
            ErrorCode::RequestTimeout.status(),
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(
            ErrorCode::RequestTimeout.as_str(),
            "gateway.request_timeout"
        );
        assert_eq!(
            ErrorCode::Internal.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(ErrorCode::Internal.as_str(), "gateway.internal");
    }
}
