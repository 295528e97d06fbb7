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
use crate::error::{to_gateway_error, BoxError};

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
                    tracing::debug!(code = %gateway.code, cause = %ErrorChain(&*err), "gateway answered with an error");
                    let request_id = context.as_ref().and_then(|c| c.request_id());
                    Ok(gateway.into_response(request_id))
                }
            }
        })
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
