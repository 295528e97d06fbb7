//! What makes a request an order, and what the gateway reads of it (§10).
//!
//! An order is a `POST` whose normalised path ends in the segment `orders` (RaaS v2:
//! `POST /raas/v2/orders`) with a JSON object body. Only its RaaS v2 fields are read:
//! `accountIdentifier`, `customerIdentifier`, `amount`, `externalRefID`, `utid`. The body's
//! SHA-256 is taken over canonical JSON (keys sorted, no whitespace), so the same order
//! written with other spacing or key order is the same order.
//!
//! Invariant: nothing of the body is kept but those fields and the hash (a recipient's name,
//! email or message never leaves this module).

use http::Method;
use serde_json::{Map, Value};

use super::store::BodyHash;
use crate::config::MAX_ORDER_AMOUNT;

/// The fields order safety reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Order {
    pub account: Option<String>,
    pub customer: Option<String>,
    /// A finite, non-negative amount in currency units (absent when the body has none).
    pub amount: Option<f64>,
    /// A non-empty string `externalRefID`; `None` when absent, empty or not a string.
    pub external_ref: Option<String>,
    pub utid: Option<String>,
    pub hash: BodyHash,
}

/// True when `method` and the normalised `path` make an order (the body is not read).
pub(crate) fn is_order(method: &Method, path: &str) -> bool {
    method == Method::POST && path.trim_end_matches('/').rsplit('/').next() == Some("orders")
}

/// Reads an order's body; `Err` says why it cannot be one (answered `400 bad_request`).
pub(crate) fn parse(body: &[u8]) -> Result<Order, &'static str> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err("an order's body must be a JSON object");
    };
    let string = |name: &'static str| -> Result<Option<String>, &'static str> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(match name {
                "accountIdentifier" => "accountIdentifier must be a string",
                "customerIdentifier" => "customerIdentifier must be a string",
                _ => "utid must be a string",
            }),
        }
    };
    let amount = match fields.get("amount") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(a) if (0.0..=MAX_ORDER_AMOUNT).contains(&a) => Some(a),
            _ => return Err("amount must be a finite, non-negative number"),
        },
        Some(_) => return Err("amount must be a finite, non-negative number"),
    };
    let external_ref = match fields.get("externalRefID") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    Ok(Order {
        account: string("accountIdentifier")?,
        customer: string("customerIdentifier")?,
        amount,
        external_ref,
        utid: string("utid")?,
        hash: hash(&fields),
    })
}

/// SHA-256 of the canonical JSON of `fields`, lower-case hex.
fn hash(fields: &Map<String, Value>) -> BodyHash {
    let mut canonical = String::new();
    write_object(fields, &mut canonical);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Canonical JSON, written by hand rather than trusting the map's order: `serde_json`'s map
/// keeps insertion order when any crate in the tree enables `preserve_order`.
fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        // Scalars as serde_json writes them (strings escaped, numbers in their shortest form).
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_object(map: &Map<String, Value>, out: &mut String) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push('{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(key.clone()).to_string());
        out.push(':');
        if let Some(value) = map.get(key) {
            write_value(value, out);
        }
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_order_is_a_post_to_a_path_ending_in_orders() {
        assert!(is_order(&Method::POST, "/raas/v2/orders"));
        assert!(is_order(&Method::POST, "/raas/v2/orders/"));
        assert!(is_order(&Method::POST, "/orders"));
        assert!(!is_order(&Method::GET, "/raas/v2/orders"));
        assert!(!is_order(&Method::POST, "/raas/v2/orders/RA123"));
        assert!(!is_order(&Method::POST, "/raas/v2/reorders"));
        assert!(!is_order(&Method::POST, "/raas/v2/customers"));
    }

    #[test]
    fn the_raas_fields_are_read_and_nothing_else_is_kept() {
        let order = parse(
            br#"{"accountIdentifier":"A1","customerIdentifier":"C1","amount":12.5,
                "externalRefID":"ref-1","utid":"U1","recipient":{"email":"x@example.com"},
                "message":"hello"}"#,
        )
        .unwrap();
        assert_eq!(order.account.as_deref(), Some("A1"));
        assert_eq!(order.customer.as_deref(), Some("C1"));
        assert_eq!(order.amount, Some(12.5));
        assert_eq!(order.external_ref.as_deref(), Some("ref-1"));
        assert_eq!(order.utid.as_deref(), Some("U1"));
        let printed = format!("{order:?}");
        assert!(!printed.contains("example.com") && !printed.contains("hello"));
    }

    #[test]
    fn what_cannot_be_an_order_says_why() {
        for (body, why) in [
            (&b"[1]"[..], "JSON object"),
            (b"not json", "JSON object"),
            (br#"{"amount":"10"}"#, "amount"),
            (br#"{"amount":-1}"#, "amount"),
            (br#"{"amount":1e300}"#, "amount"),
            (br#"{"accountIdentifier":7}"#, "accountIdentifier"),
        ] {
            let err = parse(body).unwrap_err();
            assert!(
                err.contains(why),
                "{err} for {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn an_empty_or_non_string_reference_is_no_reference() {
        assert_eq!(
            parse(br#"{"externalRefID":""}"#).unwrap().external_ref,
            None
        );
        assert_eq!(
            parse(br#"{"externalRefID":12}"#).unwrap().external_ref,
            None
        );
    }

    #[test]
    fn the_hash_ignores_spacing_and_key_order_but_not_values() {
        let a = parse(br#"{"amount":10,"utid":"U1","x":{"b":1,"a":[1,2]}}"#).unwrap();
        let b =
            parse(b"{ \"x\" : {\"a\":[1, 2], \"b\":1}, \"utid\":\"U1\", \"amount\":10 }").unwrap();
        let c = parse(br#"{"amount":11,"utid":"U1","x":{"b":1,"a":[1,2]}}"#).unwrap();
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
        assert_eq!(a.hash.len(), 64);
    }

    proptest! {
        #[test]
        fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&body);
        }

        #[test]
        fn key_order_never_changes_the_hash(pairs in proptest::collection::btree_map("[a-z]{1,6}", 0i64..1000, 1..8)) {
            let forward: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let backward: Vec<String> = forward.iter().rev().cloned().collect();
            let a = parse(format!("{{{}}}", forward.join(",")).as_bytes()).unwrap();
            let b = parse(format!("{{ {} }}", backward.join(" , ")).as_bytes()).unwrap();
            prop_assert_eq!(a.hash, b.hash);
        }
    }
}
