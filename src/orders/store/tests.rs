//! The behaviour every order store must show, written once and run against each store
//! (memory here; file and Redis beside their own code).

use std::time::{Duration, SystemTime};

use super::*;

const WINDOW: Duration = Duration::from_secs(3600);
const LEASE: Duration = Duration::from_secs(10);

fn claim<'a>(reference: &'a str, hash: &'a str, caller: &'a str) -> Claim<'a> {
    Claim {
        reference,
        hash,
        caller,
        window: WINDOW,
        lease: LEASE,
    }
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
}

/// Runs every check of the ledger against `store` (use reference names unique to the run
/// when the store is shared, e.g. Redis: `tag` is prefixed to each).
pub(crate) async fn ledger_conformance(store: &dyn OrderStore, tag: &str) {
    let r = |name: &str| format!("{tag}{name}");
    let (a, b) = (r("a"), r("b"));
    let t0 = at(0);
    assert_eq!(
        store.begin(claim(&a, "h1", "svc"), t0).await,
        Ok(Begin::New)
    );
    // While it is held: the same order waits, another body or caller conflicts.
    assert_eq!(
        store.begin(claim(&a, "h1", "svc"), t0).await,
        Ok(Begin::InFlight)
    );
    assert_eq!(
        store.begin(claim(&a, "h2", "svc"), t0).await,
        Ok(Begin::Conflict(Conflict::OtherBody))
    );
    assert_eq!(
        store.begin(claim(&a, "h1", "other"), t0).await,
        Ok(Begin::Conflict(Conflict::OtherCaller))
    );
    // Finished and kept: the same order repeats, a different one still conflicts.
    store.finish(&a, WINDOW, Finish::Kept, t0).await.unwrap();
    assert_eq!(
        store.begin(claim(&a, "h1", "svc"), at(1)).await,
        Ok(Begin::Repeat)
    );
    store.finish(&a, WINDOW, Finish::Kept, at(1)).await.unwrap();
    assert_eq!(
        store.begin(claim(&a, "h2", "svc"), at(2)).await,
        Ok(Begin::Conflict(Conflict::OtherBody))
    );
    // Remembered for the window after its last use, then forgotten.
    assert_eq!(
        store.begin(claim(&a, "h2", "svc"), at(3600)).await,
        Ok(Begin::Conflict(Conflict::OtherBody))
    );
    assert_eq!(
        store.begin(claim(&a, "h2", "svc"), at(3602)).await,
        Ok(Begin::New)
    );
    store
        .finish(&a, WINDOW, Finish::Kept, at(3602))
        .await
        .unwrap();

    // Refused by Tango (4xx): forgotten at once, a corrected order may use it.
    assert_eq!(
        store.begin(claim(&b, "h1", "svc"), t0).await,
        Ok(Begin::New)
    );
    store
        .finish(&b, WINDOW, Finish::Forgotten, t0)
        .await
        .unwrap();
    assert_eq!(
        store.begin(claim(&b, "h9", "svc"), t0).await,
        Ok(Begin::New)
    );

    // A holder that never finishes holds the reference for its lease only.
    assert_eq!(
        store.begin(claim(&b, "h9", "svc"), at(5)).await,
        Ok(Begin::InFlight)
    );
    assert_eq!(
        store.begin(claim(&b, "h9", "svc"), at(11)).await,
        Ok(Begin::Repeat)
    );
}

/// Runs every check of the spend windows against `store`; `caller` must be unique to the run.
pub(crate) async fn spend_conformance(store: &dyn OrderStore, caller: &str) {
    let limit: Micros = 100_000_000; // 100 units
    let reserve =
        |amount: Micros, seconds: u64| store.reserve(caller, amount, limit, WINDOW, at(seconds));
    let Ok(Reserve::Granted { id: first, window }) = reserve(60_000_000, 0).await else {
        panic!("the first reservation fits");
    };
    assert_eq!(window, 60_000_000);
    // 60 + 50 > 100: refused, nothing reserved.
    assert_eq!(
        reserve(50_000_000, 1).await,
        Ok(Reserve::Exceeded { window: 60_000_000 })
    );
    // Exactly up to the limit is fine.
    let Ok(Reserve::Granted { id: second, window }) = reserve(40_000_000, 2).await else {
        panic!("up to the limit fits");
    };
    assert_eq!(window, 100_000_000);
    // A release (4xx) gives the amount back; a commit keeps it.
    assert_eq!(
        store
            .settle(caller, &second, Settle::Release, WINDOW, at(3))
            .await,
        Ok(60_000_000)
    );
    assert_eq!(
        store
            .settle(caller, &first, Settle::Commit, WINDOW, at(3))
            .await,
        Ok(60_000_000)
    );
    let Ok(Reserve::Granted { id: third, .. }) = reserve(40_000_000, 10).await else {
        panic!("the released amount is available again");
    };
    // Kept (5xx, timeout): still counted.
    assert_eq!(
        store
            .settle(caller, &third, Settle::Keep, WINDOW, at(11))
            .await,
        Ok(100_000_000)
    );
    assert_eq!(
        reserve(1, 12).await,
        Ok(Reserve::Exceeded {
            window: 100_000_000
        })
    );
    // The window slides: the first order leaves it an hour after it was reserved.
    let Ok(Reserve::Granted { window, .. }) = reserve(60_000_000, 3601).await else {
        panic!("the window slid");
    };
    assert_eq!(window, 100_000_000);
}

/// Many reservations at once never overshoot together.
pub(crate) async fn spend_concurrency(store: std::sync::Arc<dyn OrderStore>, caller: &str) {
    let limit: Micros = 10_000_000; // 10 orders of 1
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let store = store.clone();
            let caller = caller.to_owned();
            tokio::spawn(async move {
                store
                    .reserve(&caller, 1_000_000, limit, WINDOW, at(0))
                    .await
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        if let Ok(Ok(Reserve::Granted { .. })) = task.await {
            granted += 1;
        }
    }
    assert_eq!(granted, 10);
}

#[tokio::test]
async fn the_memory_store_keeps_the_ledger_rules() {
    ledger_conformance(&MemoryStore::new(1_000), "").await;
}

#[tokio::test]
async fn the_memory_store_keeps_the_spend_rules() {
    spend_conformance(&MemoryStore::new(1_000), "svc").await;
}

#[tokio::test]
async fn concurrent_reservations_never_overshoot_in_memory() {
    spend_concurrency(std::sync::Arc::new(MemoryStore::new(10)), "svc").await;
}

#[tokio::test]
async fn the_ledger_keeps_at_most_max_references_oldest_first() {
    let store = MemoryStore::new(3);
    for (i, reference) in ["r1", "r2", "r3", "r4"].iter().enumerate() {
        let now = at(i as u64);
        assert_eq!(
            store.begin(claim(reference, "h", "svc"), now).await,
            Ok(Begin::New)
        );
        store
            .finish(reference, WINDOW, Finish::Kept, now)
            .await
            .unwrap();
    }
    assert_eq!(store.with(|state| state.references()), 3);
    // r1, the oldest, was evicted: a different body is now new to the ledger.
    assert_eq!(
        store.begin(claim("r1", "other", "svc"), at(5)).await,
        Ok(Begin::New)
    );
    assert_eq!(
        store.begin(claim("r4", "other", "svc"), at(5)).await,
        Ok(Begin::Conflict(Conflict::OtherBody))
    );
}

#[tokio::test]
async fn a_restored_state_treats_orders_in_flight_as_finished() {
    let store = MemoryStore::new(10);
    assert_eq!(
        store.begin(claim("r", "h", "svc"), at(0)).await,
        Ok(Begin::New)
    );
    let saved = serde_json::to_string(&store.with(|state| state.clone())).unwrap();
    let restored: State = serde_json::from_str(&saved).unwrap();
    let store = MemoryStore::from_state(restored.restored(), 10);
    assert_eq!(
        store.begin(claim("r", "h", "svc"), at(1)).await,
        Ok(Begin::Repeat)
    );
    assert_eq!(
        store.begin(claim("r", "x", "svc"), at(1)).await,
        Ok(Begin::Conflict(Conflict::OtherBody))
    );
}
