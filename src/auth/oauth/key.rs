//! What makes two routes share a token (§5): token URL, client id, grant, audience, scope and
//! the DPoP key's thumbprint.
//!
//! Invariant: the key holds no secret, so it can name a store entry and a metric label; two
//! credentials that could get different tokens never share a key.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::config::{OAuth2Config, OAuthGrant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    token_url: String,
    client_id: String,
    grant: &'static str,
    /// The service account for `grant: password`: its tokens act as that user.
    username: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    /// RFC 7638 thumbprint of the DPoP key; `None` without DPoP.
    dpop_thumbprint: Option<String>,
}

impl CacheKey {
    pub fn new(config: &OAuth2Config, dpop_thumbprint: Option<&str>) -> Self {
        CacheKey {
            token_url: config.token_url.to_string(),
            client_id: config.client_id.clone(),
            grant: match config.grant {
                OAuthGrant::ClientCredentials => "client_credentials",
                OAuthGrant::Password => "password",
            },
            username: config.username.clone(),
            audience: config.audience.clone(),
            scope: config.scope.clone(),
            dpop_thumbprint: dpop_thumbprint.map(str::to_owned),
        }
    }

    /// A stable, opaque id for the token store: base64url SHA-256 of the key's fields,
    /// each length-prefixed so no two keys can collide by shifting text between fields.
    pub fn store_id(&self) -> String {
        let mut canonical = String::new();
        for field in [
            Some(self.token_url.as_str()),
            Some(self.client_id.as_str()),
            Some(self.grant),
            self.username.as_deref(),
            self.audience.as_deref(),
            self.scope.as_deref(),
            self.dpop_thumbprint.as_deref(),
        ] {
            match field {
                Some(text) => canonical.push_str(&format!("{}:{text};", text.len())),
                None => canonical.push_str("-;"),
            }
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }
}

/// A short human name for logs and metrics: `client_id` and audience.
impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}",
            self.client_id,
            self.audience.as_deref().unwrap_or("-")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(audience: Option<&str>, scope: Option<&str>, jkt: Option<&str>) -> CacheKey {
        CacheKey {
            token_url: "https://auth.example/oauth/token".into(),
            client_id: "client".into(),
            grant: "client_credentials",
            username: None,
            audience: audience.map(str::to_owned),
            scope: scope.map(str::to_owned),
            dpop_thumbprint: jkt.map(str::to_owned),
        }
    }

    #[test]
    fn every_field_changes_the_store_id() {
        let base = key(Some("a"), Some("s"), Some("k"));
        assert_eq!(base.store_id(), base.clone().store_id());
        for other in [
            key(Some("b"), Some("s"), Some("k")),
            key(Some("a"), None, Some("k")),
            key(Some("a"), Some("s"), None),
        ] {
            assert_ne!(base.store_id(), other.store_id());
        }
    }

    #[test]
    fn shifting_text_between_fields_does_not_collide() {
        assert_ne!(
            key(Some("ab"), Some("c"), None).store_id(),
            key(Some("a"), Some("bc"), None).store_id()
        );
    }
}
