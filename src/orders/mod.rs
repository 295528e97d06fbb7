//! Order safety (PRODUCT.md §10): the platform's duties Tango leaves to it — which caller may
//!
//! (Wired into the request stack by the commits that follow this one.)
//! order for which account, how much, and never the same `externalRefID` for two orders.
//!
//! Pieces: `store` (the ledger and spend windows: memory, file, Redis).

#![allow(dead_code)]
pub(crate) mod store;
