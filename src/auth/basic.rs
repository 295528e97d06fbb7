//! HTTP Basic credentials: Tango platform name and API key (RFC 7617), and optionally a
//! second active key (§11): a `401` to a request sent with one key is answered by sending
//! the request once more with the other (Tango did not act on it); the key Tango accepted is
//! the one in use next ([`fallback::KeyInUse`]).
//!
//! Invariants: each header value is built once, marked sensitive (so `Debug` and tracing of
//! headers redact it), and never printed; a request goes out at most twice, once per key.

pub mod fallback;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::body::{clone_request, Payload, ResponseBody};
use crate::config::BasicAuthConfig;
use crate::context::RequestContext;
use crate::error::BoxError;
use fallback::{Key, KeyInUse};

#[derive(Clone)]
pub struct BasicCredentials {
    username: String,
    header: HeaderValue,
    fallback: Option<Fallback>,
}

/// The second key, its hold, and which of the two the route uses now.
#[derive(Clone)]
struct Fallback {
    header: HeaderValue,
    hold: Duration,
    in_use: Arc<KeyInUse>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the Basic credentials cannot form an HTTP header (control characters or ':' in the username)"
)]
pub struct InvalidBasicCredentials;

impl BasicCredentials {
    /// The credentials of route `route`. `previous` is the same route's in the configuration
    /// a reload replaces: when both keys are unchanged it lends its key in use (a route on
    /// its fallback stays there); new keys start on the primary.
    pub fn new(
        route: &str,
        config: &BasicAuthConfig,
        previous: Option<&BasicCredentials>,
    ) -> Result<Self, InvalidBasicCredentials> {
        // RFC 7617: the user-id cannot contain a colon; the password may.
        if config.username.contains(':') || config.username.chars().any(char::is_control) {
            return Err(InvalidBasicCredentials);
        }
        let header = basic_header(&config.username, &config.password)?;
        let fallback = match &config.fallback {
            None => None,
            Some(fallback) => {
                let fallback_header = basic_header(&config.username, &fallback.password)?;
                let kept = previous
                    .filter(|p| p.header == header)
                    .and_then(|p| p.fallback.as_ref())
                    .filter(|f| f.header == fallback_header)
                    .map(|f| f.in_use.clone());
                Some(Fallback {
                    header: fallback_header,
                    hold: fallback.hold,
                    in_use: kept.unwrap_or_else(|| Arc::new(KeyInUse::new(route))),
                })
            }
        };
        Ok(BasicCredentials {
            username: config.username.clone(),
            header,
            fallback,
        })
    }

    /// The primary key's header.
    pub fn header(&self) -> &HeaderValue {
        &self.header
    }

    /// True when a second key is configured: a `401` may make the request go out again.
    pub fn has_fallback(&self) -> bool {
        self.fallback.is_some()
    }

    /// How much of the fallback's hold is left (`None` while the primary is in use).
    pub fn fallback_left(&self, now: Instant) -> Option<Duration> {
        self.fallback.as_ref()?.in_use.fallback_left(now)
    }

    /// Sends one attempt with the key in use; after a `401`, once more with the other key,
    /// which becomes the key in use if Tango accepts it.
    pub async fn send<S>(
        &self,
        mut request: Request<Payload>,
        mut inner: S,
    ) -> Result<Response<ResponseBody>, BoxError>
    where
        S: Service<Request<Payload>, Response = Response<ResponseBody>, Error = BoxError>,
    {
        let Some(fallback) = &self.fallback else {
            request
                .headers_mut()
                .insert(AUTHORIZATION, self.header.clone());
            return inner.ready().await?.call(request).await;
        };
        let key = fallback.in_use.key(Instant::now());
        // The body is buffered for a route with a fallback (`needs_replayable_body`).
        let spare = clone_request(&request);
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.key_header(key).clone());
        let response = inner.ready().await?.call(request).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(mut next) = spare else {
            return Ok(response);
        };
        drop(response);
        if let Some(context) = next.extensions().get::<Arc<RequestContext>>() {
            context.start_attempt();
        }
        let other = key.other();
        next.headers_mut()
            .insert(AUTHORIZATION, self.key_header(other).clone());
        let response = inner.ready().await?.call(next).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            fallback
                .in_use
                .accepted(other, Instant::now(), fallback.hold);
        }
        Ok(response)
    }

    fn key_header(&self, key: Key) -> &HeaderValue {
        match (key, &self.fallback) {
            (Key::Fallback, Some(fallback)) => &fallback.header,
            _ => &self.header,
        }
    }
}

/// `Basic base64(user:password)`, marked sensitive.
fn basic_header(
    username: &str,
    password: &SecretString,
) -> Result<HeaderValue, InvalidBasicCredentials> {
    let pair = format!("{}:{}", username, password.expose_secret());
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
    let mut header =
        HeaderValue::try_from(format!("Basic {encoded}")).map_err(|_| InvalidBasicCredentials)?;
    header.set_sensitive(true);
    Ok(header)
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field(
                "fallback",
                &self.fallback.as_ref().map(|f| (&"[redacted]", f.hold)),
            )
            .finish()
    }
}

/// The Basic credentials of one configuration's routes, by route, in file order: what a
/// reload hands to the next configuration and what `/readyz` looks at.
#[derive(Debug, Default)]
pub struct BasicRoutes {
    routes: Vec<(String, Arc<BasicCredentials>)>,
    /// The replaced configuration's, until every route is built.
    previous: Vec<(String, Arc<BasicCredentials>)>,
}

impl BasicRoutes {
    pub fn new(previous: Option<&BasicRoutes>) -> Self {
        BasicRoutes {
            routes: Vec::new(),
            previous: previous.map_or_else(Vec::new, |p| p.routes.clone()),
        }
    }

    /// The credentials of route `route`, keeping its key in use when its keys are unchanged.
    pub fn credentials(
        &mut self,
        route: &str,
        config: &BasicAuthConfig,
    ) -> Result<Arc<BasicCredentials>, InvalidBasicCredentials> {
        let previous = self
            .previous
            .iter()
            .find(|(name, _)| name == route)
            .map(|(_, credentials)| credentials.as_ref());
        let credentials = Arc::new(BasicCredentials::new(route, config, previous)?);
        self.routes.push((route.to_owned(), credentials.clone()));
        Ok(credentials)
    }

    pub fn forget_previous(&mut self) {
        self.previous.clear();
    }

    /// `/readyz` warnings (it stays 200): one per route on its fallback key.
    pub fn readiness_warnings(&self, now: Instant) -> Vec<String> {
        self.routes
            .iter()
            .filter_map(|(route, credentials)| {
                let left = credentials.fallback_left(now)?;
                Some(format!(
                    "route {route}: Tango refused the primary API key (401); the fallback key \
                     is in use for {} s more, then the primary is tried again",
                    left.as_secs().max(1)
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn config(user: &str, password: &str) -> BasicAuthConfig {
        BasicAuthConfig {
            username: user.to_owned(),
            password: SecretString::from(password.to_owned()),
            fallback: None,
        }
    }

    #[test]
    fn encodes_like_rfc_7617() {
        // The worked example of the MANGOPAY note in shared/seeds.
        let creds = BasicCredentials::new("raas", &config("Aladdin", "ghsiu6hjqQjj"), None);
        let header = creds.as_ref().map(|c| c.header().clone()).ok();
        assert_eq!(
            header.as_ref().and_then(|h| h.to_str().ok()),
            Some("Basic QWxhZGRpbjpnaHNpdTZoanFRamo=")
        );
        assert!(header.is_some_and(|h| h.is_sensitive()));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let creds = BasicCredentials::new("raas", &config("platform", "s3cr3t-api-key"), None);
        let text = format!("{creds:?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!text.contains("cGxhdGZvcm0"), "{text}");
    }

    #[test]
    fn colon_in_username_is_refused() {
        assert!(BasicCredentials::new("raas", &config("a:b", "x"), None).is_err());
    }
}

#[cfg(test)]
mod fallback_tests;
