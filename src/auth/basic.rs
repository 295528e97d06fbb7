//! HTTP Basic credentials: Tango platform name and API key (RFC 7617).
//!
//! Invariant: the header value is built once, marked sensitive (so `Debug` and tracing of
//! headers redact it), and never printed.

use base64::Engine;
use http::HeaderValue;
use secrecy::ExposeSecret;

use crate::config::BasicAuthConfig;

#[derive(Clone)]
pub struct BasicCredentials {
    username: String,
    header: HeaderValue,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the Basic credentials cannot form an HTTP header (control characters or ':' in the username)"
)]
pub struct InvalidBasicCredentials;

impl BasicCredentials {
    pub fn new(config: &BasicAuthConfig) -> Result<Self, InvalidBasicCredentials> {
        // RFC 7617: the user-id cannot contain a colon; the password may.
        if config.username.contains(':') || config.username.chars().any(char::is_control) {
            return Err(InvalidBasicCredentials);
        }
        let pair = format!("{}:{}", config.username, config.password.expose_secret());
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
        let mut header = HeaderValue::try_from(format!("Basic {encoded}"))
            .map_err(|_| InvalidBasicCredentials)?;
        header.set_sensitive(true);
        Ok(BasicCredentials {
            username: config.username.clone(),
            header,
        })
    }

    pub fn header(&self) -> &HeaderValue {
        &self.header
    }
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
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
        }
    }

    #[test]
    fn encodes_like_rfc_7617() {
        // The worked example of the MANGOPAY note in shared/seeds.
        let creds = BasicCredentials::new(&config("Aladdin", "ghsiu6hjqQjj"));
        let header = creds.as_ref().map(|c| c.header().clone()).ok();
        assert_eq!(
            header.as_ref().and_then(|h| h.to_str().ok()),
            Some("Basic QWxhZGRpbjpnaHNpdTZoanFRamo=")
        );
        assert!(header.is_some_and(|h| h.is_sensitive()));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let creds = BasicCredentials::new(&config("platform", "s3cr3t-api-key"));
        let text = format!("{creds:?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!text.contains("cGxhdGZvcm0"), "{text}");
    }

    #[test]
    fn colon_in_username_is_refused() {
        assert!(BasicCredentials::new(&config("a:b", "x")).is_err());
    }
}
