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
pub(crate) fn is_retry_safe(
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
pub(crate) fn has_external_ref_id(body: &[u8]) -> bool {
    // serde fills a struct from a JSON array too, field by field (`["x"]` would read as
    // `externalRefID: "x"`): only an object has named members. JSON's whitespace is the
    // whitespace serde_json skips before the value.
    let first = body
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\n' | b'\r' | b'\t'));
    if first != Some(&b'{') {
        return false;
    }
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

    /// Found by the `external_ref_id` fuzz target: serde reads a struct from an array too,
    /// so `["x"]` passed for a body with an `externalRefID` and made a `POST` retry-safe.
    #[test]
    fn only_an_object_carries_external_ref_id() {
        assert!(!has_external_ref_id(br#"["x"]"#));
        assert!(!has_external_ref_id(br#" [ "order-42", 5 ]"#));
        assert!(!has_external_ref_id(br#"[{"externalRefID":"a"}]"#));
        assert!(has_external_ref_id(b" \r\n\t{\"externalRefID\":\"a\"} "));
        // A repeated member is not trusted: which one would Tango read?
        assert!(!has_external_ref_id(
            br#"{"externalRefID":"a","externalRefID":"b"}"#
        ));
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
