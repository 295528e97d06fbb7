//! DPoP server nonces (RFC 9449 §8, §9): the latest `DPoP-Nonce` each origin gave us.
//!
//! Invariant: one nonce per origin (`scheme://authority`), the most recent one wins; shared by
//! the token client and every API route so a nonce learnt on one path is used on the next.
//! Every DPoP attempt reads the map, from every worker, and a server that rotates nonces
//! changes it rarely: so reads are lock-free loads of an immutable map, and a new nonce
//! replaces the whole (small) map by compare-and-swap.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderMap, Uri};

pub const DPOP_NONCE: &str = "dpop-nonce";

/// Nonces are short server-made strings; anything longer is not kept.
const MAX_NONCE_LEN: usize = 512;

#[derive(Debug, Default)]
pub struct Nonces {
    by_origin: ArcSwap<HashMap<String, Arc<str>>>,
}

/// `scheme://authority` of an absolute URI.
pub fn origin(uri: &Uri) -> Option<String> {
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

impl Nonces {
    pub fn get(&self, origin: &str) -> Option<Arc<str>> {
        self.by_origin.load().get(origin).cloned()
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
        // The usual answer repeats the nonce already kept: a read, no copy.
        if self.by_origin.load().get(origin).map(|n| &**n) == Some(nonce) {
            return true;
        }
        let nonce: Arc<str> = Arc::from(nonce);
        self.by_origin.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(origin.to_owned(), Arc::clone(&nonce));
            map
        });
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
    fn concurrent_updates_of_different_origins_are_all_kept() {
        // Each update replaces the whole map: a lost compare-and-swap race would drop one.
        let nonces = Arc::new(Nonces::default());
        let writers: Vec<_> = (0..4)
            .map(|thread| {
                let nonces = Arc::clone(&nonces);
                std::thread::spawn(move || {
                    for round in 0..200 {
                        let origin = format!("https://host-{thread}");
                        nonces.remember(&origin, &with_nonce(&format!("n-{round}")));
                    }
                })
            })
            .collect();
        for writer in writers {
            assert!(writer.join().is_ok());
        }
        for thread in 0..4 {
            let origin = format!("https://host-{thread}");
            assert_eq!(nonces.get(&origin).as_deref(), Some("n-199"));
        }
    }

    #[test]
    fn origin_is_scheme_and_authority() {
        let uri: Uri = "https://api.example:8443/raas/v2?x=1".parse().unwrap();
        assert_eq!(origin(&uri).as_deref(), Some("https://api.example:8443"));
        assert_eq!(origin(&"/relative".parse().unwrap()), None);
    }
}
