//! The fake's access tokens: JWT-shaped (`header.claims.HMAC-SHA256`), signed with a random key
//! made when the fake starts, so only this fake can have issued a token it accepts.
//!
//! Invariant: [`TokenSigner::open`] returns claims only for a token this signer made, unaltered;
//! the key never leaves this type (its `Debug` is redacted).

use std::io;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

/// `typ` of the fake's tokens (RFC 9068's JWT access token type).
const TOKEN_TYP: &str = "at+jwt";

pub(super) struct TokenSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner([redacted])")
    }
}

impl TokenSigner {
    /// A signer with a fresh random key.
    pub(super) fn generate() -> io::Result<Self> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| io::Error::other("fake tango: cannot generate the token signing key"))?;
        Ok(TokenSigner { key })
    }

    /// A token carrying `claims`.
    pub(super) fn mint(&self, claims: &Value) -> String {
        let header = json!({"alg": "HS256", "typ": TOKEN_TYP});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let tag = hmac::sign(&self.key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The claims of `token` if this signer made it; `None` for anything else.
    pub(super) fn open(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let input = format!("{header}.{claims}");
        hmac::verify(&self.key, input.as_bytes(), &tag).ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        claims.is_object().then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_minted_token_opens_and_nothing_else_does() {
        let signer = TokenSigner::generate().unwrap();
        let claims = json!({"sub": "c1", "gen": 0});
        let token = signer.mint(&claims);
        assert_eq!(signer.open(&token), Some(claims));
        let header = token.split('.').next().unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap(),
            json!({"alg": "HS256", "typ": "at+jwt"})
        );
        // Another fake's token, an altered token, and garbage are all refused.
        let other = TokenSigner::generate().unwrap();
        assert_eq!(other.open(&token), None);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(json!({"sub": "admin"}).to_string());
        let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
        assert_eq!(signer.open(&forged), None);
        for garbage in ["", "a.b", "a.b.c", "a.b.c.d", &format!("{token}.x")] {
            assert_eq!(signer.open(garbage), None);
        }
        assert!(!format!("{signer:?}").contains(&parts[2][..8]));
    }

    #[test]
    fn every_token_for_the_same_claims_is_the_same_so_claims_must_differ() {
        // Distinctness comes from the `jti` claim the server adds, not from the signer.
        let signer = TokenSigner::generate().unwrap();
        let a = signer.mint(&json!({"jti": "1"}));
        let b = signer.mint(&json!({"jti": "2"}));
        assert_ne!(a, b);
    }
}
