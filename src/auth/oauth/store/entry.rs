//! One stored token as JSON: the entry shape the file store keeps per credential and the Redis
//! store keeps as one key's value, so both stores read and write the same thing.
//!
//! Invariants: an entry holds a token and its lifetime only, never a secret or key; `Debug`
//! never shows the token; a malformed entry decodes to nothing (and its text is never
//! logged, since serde's message could quote the token).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::auth::oauth::token::{AccessToken, TokenKind};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredToken {
    access_token: String,
    token_type: String,
    /// Seconds since the Unix epoch.
    obtained_at: u64,
    pub(super) expires_at: u64,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

pub(super) fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(super) fn to_stored(token: &AccessToken) -> StoredToken {
    StoredToken {
        access_token: token.secret().expose_secret().to_owned(),
        token_type: token.kind().as_str().to_owned(),
        obtained_at: unix_secs(token.obtained_at()),
        expires_at: unix_secs(token.expires_at()),
    }
}

pub(super) fn from_stored(stored: &StoredToken) -> Option<AccessToken> {
    let kind = TokenKind::parse(&stored.token_type)?;
    AccessToken::new(
        SecretString::from(stored.access_token.clone()),
        kind,
        UNIX_EPOCH + Duration::from_secs(stored.obtained_at),
        UNIX_EPOCH + Duration::from_secs(stored.expires_at),
    )
    .ok()
}

/// The entry as JSON text (a `String` the caller treats as secret: it holds the token).
pub(super) fn encode(token: &AccessToken) -> Option<String> {
    serde_json::to_string(&to_stored(token)).ok()
}

/// The token of an entry; `None` for anything that is not a well-formed entry.
pub(super) fn decode(json: &[u8]) -> Option<AccessToken> {
    let stored: StoredToken = serde_json::from_slice(json).ok()?;
    from_stored(&stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(value: &str) -> AccessToken {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        AccessToken::new(
            SecretString::from(value.to_owned()),
            TokenKind::Dpop,
            now,
            now + Duration::from_secs(300),
        )
        .unwrap()
    }

    #[test]
    fn an_entry_round_trips_through_json() {
        let json = encode(&token("tok-1")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["token_type"], "DPoP");
        assert_eq!(value["obtained_at"], 1_700_000_000u64);
        assert_eq!(value["expires_at"], 1_700_000_300u64);
        let back = decode(json.as_bytes()).unwrap();
        assert_eq!(back.secret().expose_secret(), "tok-1");
        assert_eq!(back.kind(), TokenKind::Dpop);
        assert_eq!(back.obtained_at(), token("x").obtained_at());
        assert_eq!(back.expires_at(), token("x").expires_at());
    }

    #[test]
    fn malformed_or_foreign_entries_decode_to_nothing() {
        for bad in [
            &b"{not json"[..],
            br#"{"access_token":"t","token_type":"mac","obtained_at":1,"expires_at":2}"#,
            br#"{"access_token":"t","token_type":"Bearer","obtained_at":1,"expires_at":2,"x":1}"#,
            br#"{"access_token":"a\nb","token_type":"Bearer","obtained_at":1,"expires_at":2}"#,
        ] {
            assert!(decode(bad).is_none());
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let stored = to_stored(&token("very-secret-token"));
        assert!(!format!("{stored:?}").contains("very-secret-token"));
    }
}
