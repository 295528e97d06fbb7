//! Where order safety keeps its state (PRODUCT.md §10): the `externalRefID` ledger and each
//! caller's spend window, in memory, in a file, or in Redis for a fleet.
//!
//! Invariants every store keeps (the memory store is the reference; the others must agree
//! with it, and the shared tests in `tests.rs` hold each of them to it):
//! - `begin` and `reserve` are atomic: two concurrent calls can never both see "free" for one
//!   reference, nor together reserve past a limit;
//! - a reference is held by one order at a time (`InFlight`), for at most the lease the holder
//!   asked for, so a holder that died never blocks a reference for longer than that;
//! - amounts are whole millionths ([`Micros`]): sums are exact and the same in every store;
//! - a store that cannot answer says so (`StoreDown`), never guesses: the caller fails closed.

mod memory;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

#[allow(unused_imports)] // used by the order guard (wired separately)
pub(crate) use memory::{MemoryStore, State};

/// A boxed store operation (the stores are used through `dyn OrderStore`).
pub(crate) type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An amount in millionths of the account's currency unit: `12.5` is `12_500_000`.
pub(crate) type Micros = i64;

/// SHA-256 of the order body in canonical JSON (keys sorted, no whitespace), lower-case hex.
pub(crate) type BodyHash = String;

/// What the ledger says about an order with an `externalRefID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Begin {
    /// The reference is unknown (or forgotten): it is now held by this order.
    New,
    /// The same order (same body, same caller) completed before: it is now held by this
    /// order again; Tango will answer with the original order, so nothing is reserved.
    Repeat,
    /// The same order is in flight now: wait and ask again.
    InFlight,
    /// The reference belongs to a different order.
    Conflict(Conflict),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// The same reference with a different body.
    OtherBody,
    /// The same reference used by another caller (its answer would be the other caller's
    /// order).
    OtherCaller,
}

/// How an order that held a reference ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// It may have been placed (2xx, 5xx, timeout, reset, cancelled): remembered for the
    /// rest of the window, so a different order can never reuse the reference.
    Kept,
    /// Tango refused it (4xx): nothing was placed, the reference is forgotten and may be used
    /// again (with a corrected body).
    Forgotten,
}

/// What became of a spend reservation (§10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// 2xx: spent, counted in the window from now.
    Commit,
    /// 4xx: nothing was spent.
    Release,
    /// Any other outcome: it may have been spent, so it stays counted.
    Keep,
}

/// A reservation's id, unique within its caller's window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReservationId(pub String);

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// Reserved; `window` is the caller's accepted-plus-reserved total with it included.
    Granted { id: ReservationId, window: Micros },
    /// It would exceed the limit; nothing was reserved; `window` is the total without it.
    Exceeded { window: Micros },
}

/// The store could not answer in time (only Redis can be down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreDown;

impl fmt::Display for StoreDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the order store is unreachable")
    }
}

/// One order's claim on a reference.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub reference: &'a str,
    /// The order's [`BodyHash`].
    pub hash: &'a str,
    pub caller: &'a str,
    /// How long the reference is remembered after the order (`orders.duplicate_window`).
    pub window: Duration,
    /// The longest this order may hold the reference: after it, a waiting order may go on
    /// (the holder is presumed dead; Tango's own idempotency still answers for it).
    pub lease: Duration,
}

/// The ledger and the spend windows, behind one interface for every store.
pub(crate) trait OrderStore: Send + Sync + fmt::Debug {
    /// Claims `claim.reference` for one order, atomically.
    fn begin<'a>(
        &'a self,
        claim: Claim<'a>,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Begin, StoreDown>>;

    /// Ends the claim of the order holding `reference` (after `Begin::New` or `Repeat`).
    fn finish<'a>(
        &'a self,
        reference: &'a str,
        window: Duration,
        how: Finish,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<(), StoreDown>>;

    /// Reserves `amount` in `caller`'s window of `window`, unless accepted plus reserved
    /// plus `amount` would exceed `limit`.
    fn reserve<'a>(
        &'a self,
        caller: &'a str,
        amount: Micros,
        limit: Micros,
        window: Duration,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Reserve, StoreDown>>;

    /// Settles a reservation; returns the caller's window total afterwards.
    fn settle<'a>(
        &'a self,
        caller: &'a str,
        id: &'a ReservationId,
        how: Settle,
        window: Duration,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Micros, StoreDown>>;

    /// Whether the store is shared with other processes (Redis): then a wait on an
    /// in-flight reference may end because another replica finished.
    fn is_shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
pub(crate) mod tests;
