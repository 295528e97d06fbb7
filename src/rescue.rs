//! The one place where errors become answers: every error that reaches the top of the stack
//! is mapped to its gateway error (JSON body, `x-tango-gateway-error`, status of §4).
//!
//! Invariant: the caller never sees internal error text; the full cause goes to the log.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::body::{full, ResponseBody};
use crate::context::RequestContext;
use crate::error::{find_cause, BoxError, ErrorCode, GatewayError, ERROR_HEADER};
use crate::upstream::classify::{classify_attempt_error, AttemptFailure};

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Rescue { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Rescue<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness errors surface in `call` instead: load shedding answers there.
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let context = RequestContext::get(&request).cloned();
        let response = self.inner.call(request);
        Box::pin(async move {
            match response.await {
                Ok(response) => Ok(response),
                Err(err) => {
                    let err: BoxError = err.into();
                    let gateway = to_gateway_error(&*err);
                    log(&gateway, &*err);
                    let request_id = context.as_ref().and_then(|c| c.request_id());
                    Ok(answer(&gateway, request_id))
                }
            }
        })
    }
}

/// A failure the gateway could not classify is a bug: logged at warn with its whole cause
/// chain, so it is seen and fixed. Every other gateway answer is routine (a refusal, an
/// upstream failure already counted by the attempt metrics): debug. The chain holds no
/// secret: error texts come from our own types and the transport, never from header values
/// (§7).
fn log(gateway: &GatewayError, err: &(dyn std::error::Error + 'static)) {
    if gateway.code == ErrorCode::Internal {
        tracing::warn!(code = %gateway.code, cause = %ErrorChain(err), "unclassified error: answered 500, not retried");
    } else {
        tracing::debug!(code = %gateway.code, cause = %ErrorChain(err), "gateway answered with an error");
    }
}

/// Displays an error and its causes on one line, `a: b: c`.
pub(crate) struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Maps any error that reached the top of the stack to the gateway error answered for it.
pub(crate) fn to_gateway_error(err: &(dyn StdError + 'static)) -> GatewayError {
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
        Some(AttemptFailure::Reset) => GatewayError::new(
            ErrorCode::UpstreamUnreachable,
            "the upstream connection failed before a response",
        ),
        // A fixed text: the cause is for the log (at warn, by the rescue layer), never the
        // caller. `None` (not an upstream failure) was answered above as the error it is.
        Some(AttemptFailure::Unknown) | None => {
            GatewayError::new(ErrorCode::Internal, INTERNAL_MESSAGE)
        }
    }
}

/// What a caller is told of a failure the gateway cannot classify.
pub(crate) const INTERNAL_MESSAGE: &str = "internal gateway error";

/// The JSON answer of PRODUCT.md §4 for a gateway error, with `x-tango-gateway-error`.
pub(crate) fn answer(error: &GatewayError, request_id: Option<&str>) -> Response<ResponseBody> {
    let body = serde_json::json!({
        "error": {
            "code": error.code.as_str(),
            "message": error.message,
            "request_id": request_id,
        }
    });
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = error.code.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(ERROR_HEADER, HeaderValue::from_static(error.code.as_str()));
    if error.code == ErrorCode::Overloaded {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use http::StatusCode;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::upstream::classify::AttemptTimedOut;

    /// A failure no classifier knows: a bug, as far as the gateway can tell.
    #[derive(Debug, thiserror::Error)]
    #[error("a failure of a kind nobody planned for")]
    struct Unexpected;

    /// Log output, kept for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// Answers a request whose inner service fails with `err`; the answer, its body and the
    /// log lines written meanwhile.
    async fn rescued(err: fn() -> BoxError) -> (http::response::Parts, String, String) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        // The test runtime has one thread: every event of the exchange is seen here.
        let _guard = tracing::subscriber::set_default(subscriber);
        let failing = tower::service_fn(move |_request: Request<()>| async move {
            Err::<Response<ResponseBody>, BoxError>(err())
        });
        let response = RescueLayer
            .layer(failing)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        (parts, body, logs)
    }

    #[tokio::test]
    async fn an_unclassified_error_is_a_500_with_a_fixed_text_logged_at_warn() {
        let (response, body, logs) = rescued(|| Box::new(Unexpected)).await;
        assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers.get(ERROR_HEADER).unwrap(),
            "gateway.internal"
        );
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "gateway.internal");
        assert_eq!(json["error"]["message"], INTERNAL_MESSAGE);
        assert!(!body.contains("nobody planned"), "no internal text: {body}");
        let line = logs
            .lines()
            .find(|line| line.contains("gateway.internal"))
            .unwrap_or_default();
        assert!(line.contains("WARN"), "{logs}");
        assert!(
            line.contains("a failure of a kind nobody planned for"),
            "{logs}"
        );
    }

    #[tokio::test]
    async fn the_warning_carries_the_whole_cause_chain() {
        let (_, _, logs) = rescued(|| Box::new(std::io::Error::other(Unexpected))).await;
        assert!(logs.contains("WARN"), "{logs}");
        assert!(
            logs.contains("a failure of a kind nobody planned for"),
            "{logs}"
        );
    }

    #[tokio::test]
    async fn a_classified_error_stays_at_debug() {
        let (response, _, logs) = rescued(|| {
            Box::new(GatewayError::new(
                ErrorCode::NoRoute,
                "no route for this path",
            ))
        })
        .await;
        assert_eq!(response.status, StatusCode::NOT_FOUND);
        assert!(logs.contains("DEBUG"), "{logs}");
        assert!(!logs.contains("WARN"), "{logs}");
        let (response, _, logs) =
            rescued(|| Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset))).await;
        assert_eq!(response.status, StatusCode::BAD_GATEWAY);
        assert!(!logs.contains("WARN"), "{logs}");
    }

    /// An error of ours that names its cause, as a wrapper around a transport error would.
    #[derive(Debug, thiserror::Error)]
    #[error("an exchange of ours failed")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn finds_rustls_error_inside_io_error() {
        let tls = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let boxed: BoxError = Box::new(io);
        assert_eq!(classify_attempt_error(&*boxed), Some(AttemptFailure::Tls));
        assert_eq!(to_gateway_error(&*boxed).code, ErrorCode::UpstreamTls);
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
        let response = answer(
            &GatewayError::new(ErrorCode::BodyTooLarge, "too big"),
            Some("abc"),
        );
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            response
                .headers()
                .get(ERROR_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some("gateway.body_too_large")
        );
    }

    #[test]
    fn an_unclassified_error_is_unknown_and_answered_500_with_a_fixed_text() {
        for boxed in [
            Box::new(Unexpected) as BoxError,
            Box::new(std::io::Error::other(Unexpected)),
            Box::new(Wrapped(std::io::Error::other(Unexpected))),
        ] {
            assert_eq!(
                classify_attempt_error(&*boxed),
                Some(AttemptFailure::Unknown),
                "{boxed}"
            );
            let answer = to_gateway_error(&*boxed);
            assert_eq!(answer.code, ErrorCode::Internal);
            assert_eq!(answer.code.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(answer.code.as_str(), "gateway.internal");
            assert_eq!(answer.message, INTERNAL_MESSAGE, "nothing of the cause");
        }
        assert_eq!(AttemptFailure::Unknown.as_str(), "internal");
    }
}
