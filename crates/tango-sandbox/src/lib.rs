//! tango-sandbox: the test fakes of tango-gateway, kept out of the product crate — an
//! in-process fake Tango ([`fake`]) and a throwaway dev PKI ([`pki`]). The gateway's `demo`,
//! `certs dev` and `certs client` commands, its integration tests and its benchmarks use them.
//!
//! Invariant: nothing here depends on the gateway. Above all the fake's DPoP verifier
//! ([`fake::dpop_verify`]) shares no code with the gateway's signer, so a bug in one cannot
//! hide the same bug in the other; the tests that check the gateway's proofs with this verifier
//! live on the gateway's side (`tests/dpop_interop.rs` and `src/auth/dpop.rs` there).

pub mod fake;
pub mod pki;
