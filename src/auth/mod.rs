//! The credential step (PRODUCT.md §4.5): sits below retry, so every attempt is authorised
//! afresh (a refreshed token or a new DPoP proof per attempt).
//!
//! Invariant: the only `Authorization` Tango sees is the one set here; the caller's was
//! removed by hygiene before this layer.

pub mod basic;
pub mod dpop;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::Request;
use tower::{Layer, Service};

use crate::config::AuthConfig;
use crate::error::BoxError;
pub use basic::BasicCredentials;

/// What a route authenticates with. New kinds (OAuth 2.0, DPoP) are new variants whose
/// `authorize` may await a token; the pipeline around them does not change. Cloned per
/// request with the route's stack, so each variant holds an `Arc`.
#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    Basic(Arc<BasicCredentials>),
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsSetupError {
    #[error(transparent)]
    Basic(#[from] basic::InvalidBasicCredentials),
    #[error("auth kind `oauth2` is not available in this version of tango-gateway")]
    OAuthUnavailable,
}

impl Credentials {
    pub fn from_config(config: &AuthConfig) -> Result<Self, CredentialsSetupError> {
        match config {
            AuthConfig::None => Ok(Credentials::None),
            AuthConfig::Basic(basic) => {
                Ok(Credentials::Basic(Arc::new(BasicCredentials::new(basic)?)))
            }
            AuthConfig::OAuth2(_) => Err(CredentialsSetupError::OAuthUnavailable),
        }
    }

    /// Sets this attempt's credentials on the request.
    pub async fn authorize<B>(&self, request: &mut Request<B>) -> Result<(), BoxError> {
        match self {
            Credentials::None => {}
            Credentials::Basic(basic) => {
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, basic.header().clone());
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    credentials: Credentials,
}

impl AuthorizeLayer {
    pub fn new(credentials: Credentials) -> Self {
        AuthorizeLayer { credentials }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            credentials: self.credentials.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    credentials: Credentials,
}

impl<S, B> Service<Request<B>> for Authorize<S>
where
    S: Service<Request<B>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The ready service goes into the future; its clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let credentials = self.credentials.clone();
        Box::pin(async move {
            credentials.authorize(&mut request).await?;
            inner.call(request).await
        })
    }
}
