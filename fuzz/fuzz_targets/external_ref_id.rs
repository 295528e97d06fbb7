//! The `externalRefID` detector (`retry::idempotency::has_external_ref_id`, PRODUCT.md §6):
//! whether a `POST` body makes the request retry-safe.
//!
//! Invariant: it agrees with a reference reading of the rule: the body is one JSON object
//! whose top level has exactly one `externalRefID` member, a string that is not blank. A
//! repeated member is not trusted (which one would Tango read?), an array or any other
//! value is never retry-safe, nested members do not count.
#![no_main]

use std::fmt;

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use tango_gateway::fuzzing::has_external_ref_id;

/// The top-level `externalRefID` members of a JSON object, in order.
struct TopLevel(Vec<Value>);

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = TopLevel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut found = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if key == "externalRefID" {
                        found.push(value);
                    }
                }
                Ok(TopLevel(found))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

fn reference(body: &[u8]) -> bool {
    match serde_json::from_slice::<TopLevel>(body) {
        Ok(TopLevel(members)) => match members.as_slice() {
            [Value::String(id)] => !id.trim().is_empty(),
            _ => false,
        },
        Err(_) => false,
    }
}

fuzz_target!(|body: &[u8]| {
    assert_eq!(
        has_external_ref_id(body),
        reference(body),
        "{:?}",
        String::from_utf8_lossy(body)
    );
});
