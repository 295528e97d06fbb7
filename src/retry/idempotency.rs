//! Whether a request may be sent twice (PRODUCT.md §6).
//!
//! Invariant: a `POST` is retry-safe only when it carries the idempotency field the route
//! requires; Tango treats `externalRefID` as the order's idempotency key, so a repeat returns
//! the original order instead of placing a second one.

use http::{HeaderMap, Method};
use serde::Deserialize;

use crate::config::PostRequires;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// True when sending the request again cannot cause a second effect upstream.
pub fn is_retry_safe(
    method: &Method,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    post_requires: PostRequires,
) -> bool {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE => true,
        Method::POST => match post_requires {
            PostRequires::ExternalRefId => body.is_some_and(has_external_ref_id),
            PostRequires::IdempotencyKey => headers
                .get(IDEMPOTENCY_KEY)
                .is_some_and(|value| !value.as_bytes().trim_ascii().is_empty()),
            PostRequires::Never => false,
        },
        _ => false,
    }
}

/// A JSON object with a non-empty string `externalRefID` at the top level.
pub fn has_external_ref_id(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct TopLevel {
        #[serde(rename = "externalRefID")]
        external_ref_id: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<TopLevel>(body) {
        Ok(TopLevel {
            external_ref_id: Some(serde_json::Value::String(id)),
        }) => !id.trim().is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn external_ref_id_detection() {
        assert!(has_external_ref_id(
            br#"{"externalRefID":"order-42","amount":5}"#
        ));
        assert!(!has_external_ref_id(br#"{"externalRefID":""}"#));
        assert!(!has_external_ref_id(br#"{"externalRefID":"  "}"#));
        assert!(!has_external_ref_id(br#"{"externalRefID":42}"#));
        assert!(!has_external_ref_id(
            br#"{"order":{"externalRefID":"nested"}}"#
        ));
        assert!(!has_external_ref_id(br#"{"externalrefid":"wrong-case"}"#));
        assert!(!has_external_ref_id(b"externalRefID=x"));
        assert!(!has_external_ref_id(b""));
    }

    #[test]
    fn post_follows_the_configured_rule() {
        let body = br#"{"externalRefID":"a"}"#.as_slice();
        let mut with_key = HeaderMap::new();
        with_key.insert(IDEMPOTENCY_KEY, http::HeaderValue::from_static("k-1"));
        let empty = HeaderMap::new();
        assert!(is_retry_safe(
            &Method::POST,
            &empty,
            Some(body),
            PostRequires::ExternalRefId
        ));
        assert!(!is_retry_safe(
            &Method::POST,
            &empty,
            None,
            PostRequires::ExternalRefId
        ));
        assert!(is_retry_safe(
            &Method::POST,
            &with_key,
            None,
            PostRequires::IdempotencyKey
        ));
        assert!(!is_retry_safe(
            &Method::POST,
            &empty,
            Some(body),
            PostRequires::IdempotencyKey
        ));
        assert!(!is_retry_safe(
            &Method::POST,
            &with_key,
            Some(body),
            PostRequires::Never
        ));
        assert!(!is_retry_safe(
            &Method::PATCH,
            &empty,
            None,
            PostRequires::Never
        ));
        assert!(is_retry_safe(
            &Method::DELETE,
            &empty,
            None,
            PostRequires::Never
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = has_external_ref_id(&body);
        }
    }
}
