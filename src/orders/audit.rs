//! Audit events (§10): one JSON event per order decision and outcome, on the log (target
//! `tango_gateway::audit`) and, with `audit.path`, appended to the hash-chained audit file.
//!
//! Invariant: an event holds only the fields listed in [`OrderEvent`]: never a recipient's
//! name or email, a message, or anything of the reward in Tango's answer (codes, PINs, URLs,
//! credentials): `referenceOrderID` is the one thing read from the answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::order::Order;

/// Where events go besides the log (the audit file).
pub(crate) trait AuditSink: Send + Sync + std::fmt::Debug {
    fn append(&self, event: Map<String, Value>);
}

/// Writes order events; one per configuration generation, sharing the process's audit file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Auditor {
    file: Option<Arc<dyn AuditSink>>,
}

/// One order decision and its outcome.
#[derive(Debug, Clone)]
pub(crate) struct OrderEvent {
    pub request_id: Option<String>,
    pub caller: Option<Arc<str>>,
    pub peer: Option<IpAddr>,
    pub route: Arc<str>,
    pub account: Option<String>,
    pub customer: Option<String>,
    pub amount: Option<f64>,
    pub utid: Option<String>,
    pub external_ref: Option<String>,
    /// `sent`, or the refusal's error code (`gateway.spend_limit_exceeded`, ...).
    pub decision: &'static str,
    pub upstream_status: Option<u16>,
    pub reference_order_id: Option<String>,
    pub attempts: u32,
}

impl OrderEvent {
    /// The event of an order before its decision, with the fields read from its body.
    pub(crate) fn of(order: Option<&Order>, route: Arc<str>) -> Self {
        OrderEvent {
            request_id: None,
            caller: None,
            peer: None,
            route,
            account: order.and_then(|o| o.account.clone()),
            customer: order.and_then(|o| o.customer.clone()),
            amount: order.and_then(|o| o.amount),
            utid: order.and_then(|o| o.utid.clone()),
            external_ref: order.and_then(|o| o.external_ref.clone()),
            decision: "sent",
            upstream_status: None,
            reference_order_id: None,
            attempts: 0,
        }
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut event = Map::new();
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        event.insert("time".into(), time.into());
        event.insert("event".into(), "order".into());
        let mut put = |key: &str, value: Option<Value>| {
            event.insert(key.into(), value.unwrap_or(Value::Null));
        };
        put("request_id", self.request_id.clone().map(Value::from));
        put("caller", self.caller.as_deref().map(Value::from));
        put("peer", self.peer.map(|ip| ip.to_string().into()));
        put("route", Some(Value::from(&*self.route)));
        put("accountIdentifier", self.account.clone().map(Value::from));
        put("customerIdentifier", self.customer.clone().map(Value::from));
        put(
            "amount",
            self.amount
                .and_then(|a| serde_json::Number::from_f64(a).map(Value::Number)),
        );
        put("utid", self.utid.clone().map(Value::from));
        put("externalRefID", self.external_ref.clone().map(Value::from));
        put("decision", Some(Value::from(self.decision)));
        put("upstream_status", self.upstream_status.map(Value::from));
        put(
            "referenceOrderID",
            self.reference_order_id.clone().map(Value::from),
        );
        put("attempts", Some(Value::from(self.attempts)));
        event
    }
}

impl AuditSink for super::audit_file::AuditFile {
    fn append(&self, event: Map<String, Value>) {
        super::audit_file::AuditFile::append(self, event);
    }
}

impl Auditor {
    pub(crate) fn new(file: Option<Arc<dyn AuditSink>>) -> Self {
        Auditor { file }
    }

    /// Logs the event and appends it to the audit file when there is one.
    pub(crate) fn record(&self, event: &OrderEvent) {
        let json = event.to_json();
        let line = Value::Object(json.clone()).to_string();
        tracing::info!(target: "tango_gateway::audit", audit = %line, "order {}", event.decision);
        if let Some(file) = &self.file {
            file.append(json);
        }
    }
}

/// The `referenceOrderID` of an order answer (a JSON object), and nothing else of it.
pub(crate) fn reference_order_id(answer: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "referenceOrderID")]
        reference_order_id: Option<String>,
    }
    serde_json::from_slice::<Answer>(answer)
        .ok()
        .and_then(|a| a.reference_order_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reference_is_read_from_an_answer() {
        let answer = br#"{"referenceOrderID":"RA1","reward":{"credentials":{"PIN":"1234"}}}"#;
        assert_eq!(reference_order_id(answer).as_deref(), Some("RA1"));
        assert_eq!(reference_order_id(b"not json"), None);
    }

    #[test]
    fn an_event_has_the_listed_fields_only() {
        let mut event = OrderEvent::of(None, Arc::from("raas"));
        event.caller = Some(Arc::from("payouts"));
        event.amount = Some(12.5);
        let json = event.to_json();
        let keys: Vec<&str> = json.keys().map(String::as_str).collect();
        for key in [
            "time",
            "event",
            "request_id",
            "caller",
            "peer",
            "route",
            "accountIdentifier",
            "customerIdentifier",
            "amount",
            "utid",
            "externalRefID",
            "decision",
            "upstream_status",
            "referenceOrderID",
            "attempts",
        ] {
            assert!(keys.contains(&key), "{key} missing");
        }
        assert_eq!(keys.len(), 15);
        assert_eq!(json["amount"], serde_json::json!(12.5));
    }
}
