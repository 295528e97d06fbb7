//! Order safety (PRODUCT.md §10): the platform's duties Tango leaves to it — which caller may
//! order for which account, how much, and never the same `externalRefID` for two orders.
//!
//! (Wired into the request stack by the commits that follow this one.)
//!
//! Pieces: `store` (the ledger and spend windows: memory, file, Redis); `audit_file` (the
//! hash-chained audit file of `audit.path`, and its check behind `audit verify`).

#![allow(dead_code)]
pub(crate) mod audit_file;
pub(crate) mod store;
