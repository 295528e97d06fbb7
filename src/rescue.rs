//! The one place where errors become answers: every error that reaches the top of the stack
//! is mapped to its gateway error (JSON body, `x-tango-gateway-error`, status of §4).
//!
//! Invariant: the caller never sees internal error text; the full cause goes to the log.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::ResponseBody;
use crate::context::RequestContext;
use crate::error::{to_gateway_error, BoxError, ErrorCode, GatewayError};

#[derive(Debug, Clone, Copy, Default)]
pub struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Rescue { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Rescue<S> {
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
                    Ok(gateway.into_response(request_id))
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
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use http::StatusCode;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::error::{ErrorCode, GatewayError, ERROR_HEADER, INTERNAL_MESSAGE};

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
}
