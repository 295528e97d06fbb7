//! `orders.store: memory` (§10): the ledger and the spend windows of this process, forgotten
//! on restart. The reference semantics every other store must match (see `super::tests`).
//!
//! Bounded: the ledger keeps at most `max_references` references, the oldest evicted first
//! (counted); a spend window keeps one item per order of its window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::{
    Begin, Claim, Conflict, Finish, Micros, OrderStore, ReservationId, Reserve, Settle, StoreDown,
    StoreFuture,
};

/// The whole state; the file store persists exactly this.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct State {
    pub ledger: Ledger,
    pub spend: HashMap<String, SpendWindow>,
    /// The next reservation id (ids are never reused, even across restarts of a file store).
    pub next_reservation: u64,
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ledger {
    entries: HashMap<String, Entry>,
    /// References in the order they were last claimed, with the generation of that claim: an
    /// item whose generation no longer matches its entry's is stale and skipped.
    #[serde(skip)]
    order: VecDeque<(String, u64)>,
    next_generation: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Entry {
    hash: String,
    caller: String,
    /// Unix milliseconds until which an order holds the reference; `None` once it finished.
    held_until_ms: Option<u64>,
    /// Unix milliseconds after which the reference is forgotten.
    expires_ms: u64,
    generation: u64,
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SpendWindow {
    /// Oldest first (by reservation time).
    items: VecDeque<SpendItem>,
    total: Micros,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct SpendItem {
    id: u64,
    at_ms: u64,
    amount: Micros,
}

pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn later(now_ms: u64, by: Duration) -> u64 {
    now_ms.saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX))
}

impl State {
    /// Rebuilds what is not persisted (the eviction order) after loading a saved state, and
    /// treats every order that was in flight when the state was saved as finished: it may
    /// have been placed.
    pub(crate) fn restored(mut self) -> State {
        let mut order: Vec<(String, u64)> = Vec::with_capacity(self.ledger.entries.len());
        for (reference, entry) in &mut self.ledger.entries {
            entry.held_until_ms = None;
            order.push((reference.clone(), entry.generation));
        }
        order.sort_by_key(|(_, generation)| *generation);
        self.ledger.order = order.into();
        self
    }

    pub(crate) fn references(&self) -> usize {
        self.ledger.entries.len()
    }

    /// Claims a reference; `max_references` bounds the ledger (oldest evicted first): the
    /// number evicted is returned beside the answer.
    pub(crate) fn begin(
        &mut self,
        claim: &Claim<'_>,
        now: SystemTime,
        max_references: usize,
    ) -> (Begin, u64) {
        let hash = claim.hash;
        let now_ms = unix_ms(now);
        let ledger = &mut self.ledger;
        ledger.forget_expired(now_ms);
        let generation = ledger.next_generation;
        if let Some(entry) = ledger.entries.get_mut(claim.reference) {
            if entry.caller != claim.caller {
                return (Begin::Conflict(Conflict::OtherCaller), 0);
            }
            if entry.hash != hash {
                return (Begin::Conflict(Conflict::OtherBody), 0);
            }
            if entry.held_until_ms.is_some_and(|until| until > now_ms) {
                return (Begin::InFlight, 0);
            }
            entry.held_until_ms = Some(later(now_ms, claim.lease));
            entry.expires_ms = later(now_ms, claim.window.max(claim.lease));
            entry.generation = generation;
            ledger.next_generation += 1;
            ledger
                .order
                .push_back((claim.reference.to_owned(), generation));
            return (Begin::Repeat, 0);
        }
        ledger.entries.insert(
            claim.reference.to_owned(),
            Entry {
                hash: hash.to_owned(),
                caller: claim.caller.to_owned(),
                held_until_ms: Some(later(now_ms, claim.lease)),
                expires_ms: later(now_ms, claim.window.max(claim.lease)),
                generation,
            },
        );
        ledger.next_generation += 1;
        ledger
            .order
            .push_back((claim.reference.to_owned(), generation));
        let evicted = ledger.evict_beyond(max_references.max(1));
        (Begin::New, evicted)
    }

    pub(crate) fn finish(
        &mut self,
        reference: &str,
        window: Duration,
        how: Finish,
        now: SystemTime,
    ) {
        let now_ms = unix_ms(now);
        match how {
            Finish::Forgotten => {
                // Its item in `order` goes stale and is skipped.
                self.ledger.entries.remove(reference);
            }
            Finish::Kept => {
                if let Some(entry) = self.ledger.entries.get_mut(reference) {
                    entry.held_until_ms = None;
                    entry.expires_ms = entry.expires_ms.max(later(now_ms, window));
                }
            }
        }
    }

    pub(crate) fn reserve(
        &mut self,
        caller: &str,
        amount: Micros,
        limit: Micros,
        window: Duration,
        now: SystemTime,
    ) -> Reserve {
        let now_ms = unix_ms(now);
        let spend = self.spend.entry(caller.to_owned()).or_default();
        spend.forget_older_than(now_ms.saturating_sub(later(0, window)));
        let total = spend.total;
        if total.saturating_add(amount) > limit {
            return Reserve::Exceeded { window: total };
        }
        let id = self.next_reservation;
        self.next_reservation += 1;
        spend.items.push_back(SpendItem {
            id,
            at_ms: now_ms,
            amount,
        });
        spend.total = total.saturating_add(amount);
        Reserve::Granted {
            id: ReservationId(id.to_string()),
            window: spend.total,
        }
    }

    pub(crate) fn settle(
        &mut self,
        caller: &str,
        id: &ReservationId,
        how: Settle,
        window: Duration,
        now: SystemTime,
    ) -> Micros {
        let now_ms = unix_ms(now);
        let Some(spend) = self.spend.get_mut(caller) else {
            return 0;
        };
        if how == Settle::Release {
            // Reservations are recent: look from the newest end.
            if let Some(index) = spend
                .items
                .iter()
                .rposition(|item| item.id.to_string() == id.0)
            {
                if let Some(item) = spend.items.remove(index) {
                    spend.total = spend.total.saturating_sub(item.amount);
                }
            }
        }
        // Commit and Keep leave the amount counted, dated from its reservation.
        spend.forget_older_than(now_ms.saturating_sub(later(0, window)));
        spend.total
    }
}

impl Ledger {
    fn forget_expired(&mut self, now_ms: u64) {
        while let Some((reference, generation)) = self.order.front() {
            let stale_or_expired = match self.entries.get(reference) {
                Some(entry) if entry.generation == *generation => {
                    if entry.expires_ms > now_ms {
                        break;
                    }
                    true
                }
                _ => false,
            };
            if stale_or_expired {
                self.entries.remove(reference);
            }
            self.order.pop_front();
        }
    }

    /// Evicts the oldest references beyond `max`; returns how many were evicted.
    fn evict_beyond(&mut self, max: usize) -> u64 {
        let mut evicted = 0;
        while self.entries.len() > max {
            let Some((reference, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&reference)
                .is_some_and(|entry| entry.generation == generation)
            {
                self.entries.remove(&reference);
                evicted += 1;
            }
        }
        evicted
    }
}

impl SpendWindow {
    fn forget_older_than(&mut self, cutoff_ms: u64) {
        while let Some(item) = self.items.front() {
            if item.at_ms > cutoff_ms {
                break;
            }
            self.total = self.total.saturating_sub(item.amount);
            self.items.pop_front();
        }
    }
}

/// Updates the ledger's metrics after a claim.
pub(super) fn count_ledger(evicted: u64, references: usize) {
    crate::metrics::count_ledger_evictions(evicted);
    let references = i64::try_from(references).unwrap_or(i64::MAX);
    crate::metrics::metrics().ledger_references.set(references);
}

/// The memory store: the state behind a mutex, held only for a few map operations.
#[derive(Debug)]
pub(crate) struct MemoryStore {
    state: Mutex<State>,
    max_references: usize,
}

impl MemoryStore {
    pub(crate) fn new(max_references: usize) -> Self {
        Self::from_state(State::default(), max_references)
    }

    pub(crate) fn from_state(state: State, max_references: usize) -> Self {
        MemoryStore {
            state: Mutex::new(state),
            max_references,
        }
    }

    /// Runs `f` on the state (a poisoned lock is taken over: the state is plain data, and
    /// every method leaves it consistent before it could panic).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    pub(crate) fn max_references(&self) -> usize {
        self.max_references
    }
}

impl OrderStore for MemoryStore {
    fn begin<'a>(
        &'a self,
        claim: Claim<'a>,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Begin, StoreDown>> {
        let (begin, evicted, references) = self.with(|state| {
            let (begin, evicted) = state.begin(&claim, now, self.max_references);
            (begin, evicted, state.references())
        });
        count_ledger(evicted, references);
        Box::pin(std::future::ready(Ok(begin)))
    }

    fn finish<'a>(
        &'a self,
        reference: &'a str,
        window: Duration,
        how: Finish,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<(), StoreDown>> {
        let references = self.with(|state| {
            state.finish(reference, window, how, now);
            state.references()
        });
        count_ledger(0, references);
        Box::pin(std::future::ready(Ok(())))
    }

    fn reserve<'a>(
        &'a self,
        caller: &'a str,
        amount: Micros,
        limit: Micros,
        window: Duration,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Reserve, StoreDown>> {
        let answer = self.with(|state| state.reserve(caller, amount, limit, window, now));
        Box::pin(std::future::ready(Ok(answer)))
    }

    fn settle<'a>(
        &'a self,
        caller: &'a str,
        id: &'a ReservationId,
        how: Settle,
        window: Duration,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Micros, StoreDown>> {
        let total = self.with(|state| state.settle(caller, id, how, window, now));
        Box::pin(std::future::ready(Ok(total)))
    }
}
