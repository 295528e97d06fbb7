//! An access token and the clock arithmetic around it: when to refresh, when to stop using it.
//!
//! Invariants: the token value lives in a `SecretString` and `Debug` never shows it; a token
//! is never usable within `min(30 s, 10 % of its lifetime)` of its expiry (§9).

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

/// A token stops being sent this long (at most) before it expires, so clock skew and the
/// time a request spends in flight never deliver an expired token.
const EXPIRY_MARGIN_MAX: Duration = Duration::from_secs(30);
/// ... or this fraction of its lifetime, whichever is shorter (a 5-minute token keeps 4.5).
const EXPIRY_MARGIN_FRACTION: f64 = 0.1;

/// How the token is presented (`token_type` of the token answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Bearer,
    /// Bound to the DPoP key: `Authorization: DPoP <token>` plus a proof per request.
    Dpop,
}

impl TokenKind {
    /// Parses `token_type` case-insensitively (RFC 6749 §5.1).
    pub fn parse(token_type: &str) -> Option<TokenKind> {
        if token_type.eq_ignore_ascii_case("bearer") {
            Some(TokenKind::Bearer)
        } else if token_type.eq_ignore_ascii_case("dpop") {
            Some(TokenKind::Dpop)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Bearer => "Bearer",
            TokenKind::Dpop => "DPoP",
        }
    }
}

/// One access token with its lifetime. Compared by identity (`Arc::ptr_eq`) in the cache.
pub struct AccessToken {
    value: SecretString,
    kind: TokenKind,
    /// When the token request was sent: the lifetime is counted from here, conservatively.
    obtained_at: SystemTime,
    expires_at: SystemTime,
    /// `Authorization` value, built once; marked sensitive so no layer records it.
    authorization: HeaderValue,
    fingerprint: Fingerprint,
    /// The DPoP `ath` claim (RFC 9449 §4.2): base64url of the token's SHA-256, the same
    /// digest as the fingerprint. Public by design (every proof carries it), computed once
    /// per token rather than per request.
    ath: String,
}

/// SHA-256 of a token's value: tells two tokens apart (one read from a shared store, one
/// the upstream rejected) without keeping or showing the value. `Debug` shows nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint([redacted])")
    }
}

impl Fingerprint {
    fn of(value: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("kind", &self.kind)
            .field("value", &"[redacted]")
            .field(
                "obtained_at",
                &humantime::format_rfc3339_seconds(self.obtained_at),
            )
            .field(
                "expires_at",
                &humantime::format_rfc3339_seconds(self.expires_at),
            )
            .finish()
    }
}

/// The token text cannot go in an HTTP header (control characters, non-ASCII).
#[derive(Debug, thiserror::Error)]
#[error("the access token contains characters not allowed in an HTTP header")]
pub struct UnusableTokenText;

impl AccessToken {
    pub fn new(
        value: SecretString,
        kind: TokenKind,
        obtained_at: SystemTime,
        expires_at: SystemTime,
    ) -> Result<Self, UnusableTokenText> {
        let text = format!("{} {}", kind.as_str(), value.expose_secret());
        let mut authorization = HeaderValue::try_from(text).map_err(|_| UnusableTokenText)?;
        authorization.set_sensitive(true);
        let fingerprint = Fingerprint::of(value.expose_secret());
        let ath = URL_SAFE_NO_PAD.encode(fingerprint.0);
        Ok(AccessToken {
            value,
            kind,
            obtained_at,
            expires_at,
            authorization,
            fingerprint,
            ath,
        })
    }

    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The raw token, for the token store only.
    pub fn secret(&self) -> &SecretString {
        &self.value
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The `ath` claim of this token's DPoP proofs.
    pub fn ath(&self) -> &str {
        &self.ath
    }

    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    pub fn obtained_at(&self) -> SystemTime {
        self.obtained_at
    }

    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    fn lifetime(&self) -> Duration {
        self.expires_at
            .duration_since(self.obtained_at)
            .unwrap_or(Duration::ZERO)
    }

    /// The last moment the token may be sent.
    pub fn usable_until(&self) -> SystemTime {
        let margin = self
            .lifetime()
            .mul_f64(EXPIRY_MARGIN_FRACTION)
            .min(EXPIRY_MARGIN_MAX);
        self.expires_at
            .checked_sub(margin)
            .unwrap_or(self.obtained_at)
    }

    pub fn is_usable(&self, now: SystemTime) -> bool {
        now < self.usable_until()
    }

    /// When a background refresh should start: `refresh_at` of the lifetime, and never
    /// later than the end of usability.
    pub fn refresh_due(&self, refresh_at: f64) -> SystemTime {
        let due = self.obtained_at + self.lifetime().mul_f64(refresh_at.clamp(0.0, 1.0));
        due.min(self.usable_until())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(lifetime: Duration) -> AccessToken {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        AccessToken::new(
            SecretString::from("tok".to_owned()),
            TokenKind::Dpop,
            start,
            start + lifetime,
        )
        .unwrap()
    }

    #[test]
    fn a_day_long_token_stops_30_seconds_early() {
        let t = token(Duration::from_secs(86_400));
        assert_eq!(
            t.expires_at().duration_since(t.usable_until()).unwrap(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_short_token_stops_ten_percent_early() {
        let t = token(Duration::from_secs(100));
        assert_eq!(
            t.expires_at().duration_since(t.usable_until()).unwrap(),
            Duration::from_secs(10)
        );
        assert!(t.is_usable(t.obtained_at() + Duration::from_secs(89)));
        assert!(!t.is_usable(t.obtained_at() + Duration::from_secs(90)));
    }

    #[test]
    fn refresh_is_due_at_the_configured_fraction() {
        let t = token(Duration::from_secs(300));
        assert_eq!(
            t.refresh_due(0.8).duration_since(t.obtained_at()).unwrap(),
            Duration::from_secs(240)
        );
        // A fraction past the usable window is pulled back to its end.
        assert_eq!(t.refresh_due(0.99), t.usable_until());
    }

    #[test]
    fn authorization_uses_the_token_type_and_is_sensitive() {
        let t = token(Duration::from_secs(60));
        assert_eq!(t.authorization().to_str().unwrap(), "DPoP tok");
        assert!(t.authorization().is_sensitive());
        assert!(!format!("{t:?}").contains("tok\""));
    }

    #[test]
    fn ath_is_the_base64url_sha256_of_the_token() {
        let token = AccessToken::new(
            SecretString::from("tok-1"),
            TokenKind::Dpop,
            SystemTime::now(),
            SystemTime::now() + Duration::from_secs(60),
        );
        assert_eq!(
            token.ok().map(|t| t.ath().to_owned()),
            Some(crate::auth::dpop::access_token_hash("tok-1"))
        );
    }

    #[test]
    fn fingerprints_tell_values_apart_and_show_nothing() {
        let now = SystemTime::now();
        let make = |v: &str| {
            AccessToken::new(
                SecretString::from(v.to_owned()),
                TokenKind::Bearer,
                now,
                now + Duration::from_secs(60),
            )
            .unwrap()
        };
        assert_eq!(make("a").fingerprint(), make("a").fingerprint());
        assert_ne!(make("a").fingerprint(), make("b").fingerprint());
        assert_eq!(
            format!("{:?}", make("a").fingerprint()),
            "Fingerprint([redacted])"
        );
    }

    #[test]
    fn token_type_parses_case_insensitively() {
        assert_eq!(TokenKind::parse("bearer"), Some(TokenKind::Bearer));
        assert_eq!(TokenKind::parse("DPoP"), Some(TokenKind::Dpop));
        assert_eq!(TokenKind::parse("mac"), None);
    }

    #[test]
    fn a_token_with_a_newline_is_refused() {
        let now = SystemTime::now();
        assert!(AccessToken::new(
            SecretString::from("a\nb".to_owned()),
            TokenKind::Bearer,
            now,
            now + Duration::from_secs(60)
        )
        .is_err());
    }
}
