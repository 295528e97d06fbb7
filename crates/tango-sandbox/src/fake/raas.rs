//! Canned RaaS v2 endpoints, as a small state machine independent of the network.
//!
//! Invariant: an order placed with an `externalRefID` that was already used returns the
//! original order (same `referenceOrderID`) and creates nothing — Tango's idempotency rule,
//! which is what makes a gateway's POST retry safe.

use std::collections::HashMap;
use std::time::SystemTime;

use http::{Method, StatusCode};
use serde_json::{json, Value};

/// The account `GET /raas/v2/accounts/{id}` knows; other ids are 404.
pub const DEMO_ACCOUNT: &str = "demo-account";
pub const DEMO_CUSTOMER: &str = "demo-customer";

/// A canned answer: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

/// Orders placed so far; everything else is static.
#[derive(Debug, Default)]
pub struct Raas {
    orders: HashMap<String, Value>,
    by_external_ref: HashMap<String, String>,
    created: usize,
}

impl Raas {
    /// Number of orders actually created (idempotent repeats not counted).
    pub fn orders_created(&self) -> usize {
        self.created
    }

    /// Answers `method path` (`path` may carry a query, which is ignored).
    pub fn answer(&mut self, method: &Method, path: &str, body: &[u8]) -> Answer {
        let path = path.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let get = method == Method::GET;
        match segments.as_slice() {
            ["raas", "v2", "catalogs"] if get => ok(catalog()),
            ["raas", "v2", "customers"] if get => ok(json!([customer()])),
            ["raas", "v2", "accounts", id] if get => match *id {
                DEMO_ACCOUNT => ok(account()),
                _ => error(StatusCode::NOT_FOUND, path, "Account not found."),
            },
            ["raas", "v2", "orders"] if method == Method::POST => self.place_order(path, body),
            ["raas", "v2", "orders", id] if get => match self.orders.get(*id) {
                Some(order) => ok(order.clone()),
                None => error(StatusCode::NOT_FOUND, path, "Order not found."),
            },
            ["raas", "v2", "catalogs" | "customers" | "orders"]
            | ["raas", "v2", "accounts" | "orders", _] => {
                error(StatusCode::METHOD_NOT_ALLOWED, path, "Method not allowed.")
            }
            _ => error(StatusCode::NOT_FOUND, path, "No handler found."),
        }
    }

    fn place_order(&mut self, path: &str, body: &[u8]) -> Answer {
        let request = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    path,
                    "Malformed JSON request body.",
                )
            }
        };
        let external_ref = request
            .get("externalRefID")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if let Some(existing) = external_ref
            .as_ref()
            .and_then(|r| self.by_external_ref.get(r))
            .and_then(|id| self.orders.get(id))
        {
            return ok(existing.clone());
        }
        self.created += 1;
        let id = format!("RA{:06}-{:05}-01", 260_101, self.created);
        let amount = request.get("amount").and_then(Value::as_f64).unwrap_or(0.0);
        let field = |name: &str| request.get(name).cloned().unwrap_or(Value::Null);
        let order = json!({
            "referenceOrderID": id,
            "externalRefID": external_ref,
            "customerIdentifier": field("customerIdentifier"),
            "accountIdentifier": field("accountIdentifier"),
            "amountCharged": {"value": amount, "currencyCode": "USD", "exchangeRate": 1.0,
                              "fee": 0.0, "total": amount},
            "denomination": {"value": amount, "currencyCode": "USD"},
            "utid": field("utid"),
            "rewardName": "Sandbox Gift Card",
            "sendEmail": request.get("sendEmail").and_then(Value::as_bool).unwrap_or(false),
            "status": "COMPLETE",
            "createdAt": now(),
            "reward": {
                "credentials": {"Redemption URL": format!("https://sandbox.example/redeem/{id}")},
                "credentialList": [{"label": "Redemption URL", "type": "url",
                                    "value": format!("https://sandbox.example/redeem/{id}")}],
                "redemptionInstructions": "Follow the link to redeem."
            }
        });
        if let Some(r) = external_ref {
            self.by_external_ref.insert(r, id.clone());
        }
        self.orders.insert(id, order.clone());
        Answer {
            status: StatusCode::CREATED,
            body: order,
        }
    }
}

/// A Tango-shaped error body (as its v2 API sends for 4xx/5xx).
pub fn error_body(status: StatusCode, path: &str, message: &str) -> Value {
    json!({
        "timestamp": now(),
        "requestId": uuid::Uuid::new_v4().to_string(),
        "path": path,
        "httpCode": status.as_u16(),
        "httpPhrase": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    })
}

fn error(status: StatusCode, path: &str, message: &str) -> Answer {
    Answer {
        status,
        body: error_body(status, path, message),
    }
}

fn ok(body: Value) -> Answer {
    Answer {
        status: StatusCode::OK,
        body,
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn catalog() -> Value {
    let item = |utid: &str, name: &str, value_type: &str| {
        json!({"utid": utid, "rewardName": name, "currencyCode": "USD", "status": "active",
               "valueType": value_type, "rewardType": "gift card", "minValue": 1.0,
               "maxValue": 500.0, "countries": ["US"], "credentialTypes": ["url"]})
    };
    json!({
        "catalogName": "Sandbox Catalog",
        "brands": [
            {"brandKey": "B000001", "brandName": "Sandbox Coffee", "status": "active",
             "items": [item("U000001", "Sandbox Coffee eGift", "VARIABLE_VALUE")]},
            {"brandKey": "B000002", "brandName": "Sandbox Books", "status": "active",
             "items": [item("U000002", "Sandbox Books $25", "FIXED_VALUE")]}
        ]
    })
}

fn account() -> Value {
    json!({"accountIdentifier": DEMO_ACCOUNT, "accountNumber": "A00000001",
           "displayName": "Demo Account", "currencyCode": "USD", "currentBalance": 1000.0,
           "createdAt": "2026-01-01T00:00:00.000Z", "status": "ACTIVE"})
}

fn customer() -> Value {
    json!({"customerIdentifier": DEMO_CUSTOMER, "displayName": "Demo Customer",
           "status": "ACTIVE", "createdAt": "2026-01-01T00:00:00.000Z",
           "accounts": [{"accountIdentifier": DEMO_ACCOUNT, "displayName": "Demo Account",
                         "currencyCode": "USD", "status": "ACTIVE"}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_endpoints() {
        let mut raas = Raas::default();
        let catalog = raas.answer(&Method::GET, "/raas/v2/catalogs?verbose=true", b"");
        assert_eq!(catalog.status, StatusCode::OK);
        assert!(catalog.body["brands"]
            .as_array()
            .is_some_and(|b| !b.is_empty()));
        let account = raas.answer(&Method::GET, "/raas/v2/accounts/demo-account", b"");
        assert_eq!(account.body["accountIdentifier"], DEMO_ACCOUNT);
        let missing = raas.answer(&Method::GET, "/raas/v2/accounts/nope", b"");
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.body["httpCode"], 404);
        let other = raas.answer(&Method::GET, "/elsewhere", b"");
        assert_eq!(other.status, StatusCode::NOT_FOUND);
        let wrong = raas.answer(&Method::DELETE, "/raas/v2/catalogs", b"");
        assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn orders_are_idempotent_by_external_ref() {
        let mut raas = Raas::default();
        let body = br#"{"externalRefID":"ref-1","amount":10,"utid":"U000001"}"#;
        let first = raas.answer(&Method::POST, "/raas/v2/orders", body);
        assert_eq!(first.status, StatusCode::CREATED);
        let again = raas.answer(&Method::POST, "/raas/v2/orders", body);
        assert_eq!(
            again.body["referenceOrderID"],
            first.body["referenceOrderID"]
        );
        assert_eq!(raas.orders_created(), 1);
        let no_ref = br#"{"amount":10}"#;
        raas.answer(&Method::POST, "/raas/v2/orders", no_ref);
        raas.answer(&Method::POST, "/raas/v2/orders", no_ref);
        assert_eq!(raas.orders_created(), 3);
        let id = first.body["referenceOrderID"].as_str().unwrap_or_default();
        let fetched = raas.answer(&Method::GET, &format!("/raas/v2/orders/{id}"), b"");
        assert_eq!(fetched.body, first.body);
    }

    #[test]
    fn malformed_order_is_400_not_a_panic() {
        let mut raas = Raas::default();
        for body in [&b"not json"[..], b"[1,2]", b"\xff\xfe", b""] {
            let answer = raas.answer(&Method::POST, "/raas/v2/orders", body);
            assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        }
        assert_eq!(raas.orders_created(), 0);
    }
}
