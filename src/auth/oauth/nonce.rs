//! DPoP server nonces (RFC 9449 §8, §9): the latest `DPoP-Nonce` each origin gave us.
//!
//! Invariant: one nonce per origin (`scheme://authority`), the most recent one wins; shared by
//! the token client and every API route so a nonce learnt on one path is used on the next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderMap, Uri};

pub const DPOP_NONCE: &str = "dpop-nonce";

/// Nonces are short server-made strings; anything longer is not kept.
const MAX_NONCE_LEN: usize = 512;

#[derive(Debug, Default)]
pub struct Nonces {
    by_origin: Mutex<HashMap<String, Arc<str>>>,
}

/// `scheme://authority` of an absolute URI.
pub fn origin(uri: &Uri) -> Option<String> {
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

impl Nonces {
    pub fn get(&self, origin: &str) -> Option<Arc<str>> {
        let map = self
            .by_origin
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(origin).cloned()
    }

    /// Keeps the `DPoP-Nonce` of an answer from `origin`, if it has a usable one. Returns
    /// whether the answer carried one.
    pub fn remember(&self, origin: &str, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers
            .get(DPOP_NONCE)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|n| !n.is_empty() && n.len() <= MAX_NONCE_LEN)
        else {
            return false;
        };
        let mut map = self
            .by_origin
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.get(origin).map(|n| &**n) != Some(nonce) {
            map.insert(origin.to_owned(), Arc::from(nonce));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_nonce(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn latest_nonce_per_origin_wins() {
        let nonces = Nonces::default();
        assert!(nonces.remember("https://a", &with_nonce("n1")));
        assert!(nonces.remember("https://a", &with_nonce("n2")));
        assert!(nonces.remember("https://b", &with_nonce("m1")));
        assert_eq!(nonces.get("https://a").as_deref(), Some("n2"));
        assert_eq!(nonces.get("https://b").as_deref(), Some("m1"));
        assert_eq!(nonces.get("https://c"), None);
    }

    #[test]
    fn answers_without_a_nonce_change_nothing() {
        let nonces = Nonces::default();
        nonces.remember("https://a", &with_nonce("n1"));
        assert!(!nonces.remember("https://a", &HeaderMap::new()));
        assert!(!nonces.remember("https://a", &with_nonce("  ")));
        assert_eq!(nonces.get("https://a").as_deref(), Some("n1"));
    }

    #[test]
    fn origin_is_scheme_and_authority() {
        let uri: Uri = "https://api.example:8443/raas/v2?x=1".parse().unwrap();
        assert_eq!(origin(&uri).as_deref(), Some("https://api.example:8443"));
        assert_eq!(origin(&"/relative".parse().unwrap()), None);
    }
}
