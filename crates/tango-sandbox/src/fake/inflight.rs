//! Orders in flight per `externalRefID`, to catch a client that lets Tango see two requests
//! for one reference at the same time.
//!
//! Tango's idempotency (see [`raas`](super::raas)) returns the original order to a request that
//! comes *after* the first one; two requests processed at the same time may both create an
//! order. The fake serialises its own processing, so it counts instead: an order request that
//! begins while another one for the same reference is being acted on is an overlap (a possible
//! duplicate at the real Tango).
//!
//! Invariant: every [`OrderInFlight`] is counted exactly once and uncounted when dropped,
//! whether its request was answered or abandoned.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use serde_json::Value;

use super::fake_tango::Shared;

/// Per-reference counts of orders being acted on, and the references that overlapped.
#[derive(Debug, Default)]
pub(super) struct OrdersInFlight {
    active: HashMap<String, usize>,
    overlapping: Vec<String>,
}

impl OrdersInFlight {
    /// References that had two order requests being acted on at once, one entry per overlap.
    pub(super) fn overlapping(&self) -> &[String] {
        &self.overlapping
    }
}

/// One order request with an `externalRefID` being acted on; uncounted on drop.
pub(super) struct OrderInFlight {
    shared: Arc<Shared>,
    reference: String,
}

impl OrderInFlight {
    /// Counts `POST …/orders` with a non-empty string `externalRefID`; `None` for anything
    /// else (including orders without a reference: nothing on Tango's side can dedupe those).
    pub(super) fn begin(
        shared: &Arc<Shared>,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Option<OrderInFlight> {
        let path = path.split('?').next().unwrap_or_default();
        if method != Method::POST || !path.trim_end_matches('/').ends_with("/orders") {
            return None;
        }
        let reference = match serde_json::from_slice::<Value>(body).ok()? {
            Value::Object(map) => map
                .get("externalRefID")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())?
                .to_owned(),
            _ => return None,
        };
        let mut state = shared.lock();
        let orders = &mut state.orders_in_flight;
        let active = orders.active.entry(reference.clone()).or_insert(0);
        if *active > 0 {
            orders.overlapping.push(reference.clone());
        }
        *active += 1;
        drop(state);
        Some(OrderInFlight {
            shared: shared.clone(),
            reference,
        })
    }
}

impl Drop for OrderInFlight {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let active = &mut state.orders_in_flight.active;
        if let Some(count) = active.get_mut(&self.reference) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                active.remove(&self.reference);
            }
        }
    }
}
