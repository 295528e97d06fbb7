//! The credential step (PRODUCT.md §4.5): sits below retry, so every attempt is authorised
//! afresh (a refreshed token or a new DPoP proof per attempt).
//!
//! Invariant: the only `Authorization` Tango sees is the one set here; the caller's was
//! removed by hygiene before this layer.

pub mod basic;
pub mod dpop;
pub mod oauth;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};

use crate::body::{Payload, ResponseBody};
use crate::config::AuthConfig;
use crate::error::BoxError;
pub use basic::BasicCredentials;
use oauth::{OAuthCredentials, OAuthSetupError, TokenSources};

/// What a route authenticates with. Cloned per request with the route's stack, so each
/// variant is cheap to clone.
#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    Basic(Arc<BasicCredentials>),
    /// A cached token (shared with other routes of the same credential), DPoP-bound or not.
    OAuth2(OAuthCredentials),
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsSetupError {
    #[error(transparent)]
    Basic(#[from] basic::InvalidBasicCredentials),
    #[error("oauth2.{0}")]
    OAuth(#[from] OAuthSetupError),
}

impl Credentials {
    /// `tokens` collects OAuth credentials so routes with the same one share its token.
    pub fn from_config(
        route: &str,
        config: &AuthConfig,
        tokens: &mut TokenSources,
    ) -> Result<Self, CredentialsSetupError> {
        match config {
            AuthConfig::None => Ok(Credentials::None),
            AuthConfig::Basic(basic) => Ok(Credentials::Basic(tokens.basic(route, basic)?)),
            AuthConfig::OAuth2(oauth) => Ok(Credentials::OAuth2(tokens.credentials(route, oauth)?)),
        }
    }

    /// True when a request may have to be sent again because of these credentials: an
    /// OAuth `401` is answered with a new token and the request resent once (§5), a Basic
    /// `401` with the other API key when there are two (§11), so its body must be kept.
    pub fn needs_replayable_body(&self) -> bool {
        match self {
            Credentials::None => false,
            Credentials::Basic(basic) => basic.has_fallback(),
            Credentials::OAuth2(_) => true,
        }
    }

    /// Sends one attempt through `inner` with this route's credentials.
    async fn send<S>(
        self,
        mut request: Request<Payload>,
        mut inner: S,
    ) -> Result<Response<ResponseBody>, BoxError>
    where
        S: Service<Request<Payload>, Response = Response<ResponseBody>, Error = BoxError>,
    {
        match self {
            Credentials::None => {}
            // Two keys: a 401 is answered once with the other key, boxed like OAuth's.
            Credentials::Basic(basic) if basic.has_fallback() => {
                return Box::pin(basic.send(request, inner)).await
            }
            Credentials::Basic(basic) => {
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, basic.header().clone());
            }
            // Boxed on its own: the OAuth exchange (token wait, nonce and 401 retries) is
            // several kB of future state, which inline would make every Basic attempt's
            // future that large too (one allocation past glibc's per-thread cache, per
            // attempt).
            Credentials::OAuth2(oauth) => return Box::pin(oauth.send(request, inner)).await,
        }
        inner.ready().await?.call(request).await
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

impl<S> Service<Request<Payload>> for Authorize<S>
where
    S: Service<Request<Payload>, Response = Response<ResponseBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Payload>) -> Self::Future {
        // The ready service goes into the future; its clone stays for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let credentials = self.credentials.clone();
        Box::pin(credentials.send(request, inner))
    }
}

#[cfg(test)]
mod tests;
