//! The Redis order store against a real `redis-server` (one per test, on a free port, killed
//! on drop): the conformance suite every store runs, then what only a shared store shows (a
//! fleet of stores on one Redis, the key layout and expiry) and its failure rule (Redis down
//! or silent: `StoreDown` in bounded time; back: it works again).
//!
//! A machine without `redis-server` fails these tests with a clear message; they are never
//! skipped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::super::tests::{ledger_conformance, spend_concurrency, spend_conformance};
use super::super::MemoryStore;
use super::*;

// The integration tests' server, shared rather than copied; they use the parts these do not.
#[allow(dead_code)]
#[path = "../../../tests/support/redis.rs"]
mod server;

use server::RedisServer;

const WINDOW: Duration = Duration::from_secs(3600);
const LEASE: Duration = Duration::from_secs(10);
/// Far above the 1 s bound of an operation, so a loaded machine does not make it flake.
const GENEROUS: Duration = Duration::from_secs(5);
/// SHA-256 of `abc` (FIPS 180-2, appendix B.1).
const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
}

fn claim<'a>(reference: &'a str, hash: &'a str) -> Claim<'a> {
    Claim {
        reference,
        hash,
        caller: "svc",
        window: WINDOW,
        lease: LEASE,
    }
}

#[tokio::test]
async fn the_redis_store_keeps_the_ledger_rules() {
    let redis = RedisServer::start().await;
    let store = RedisOrderStore::new(&redis.url(), "conformance").unwrap();
    ledger_conformance(&store, "ledger-rules-").await;
}

#[tokio::test]
async fn the_redis_store_keeps_the_spend_rules() {
    let redis = RedisServer::start().await;
    let store = RedisOrderStore::new(&redis.url(), "conformance").unwrap();
    spend_conformance(&store, "spend-rules").await;
}

#[tokio::test]
async fn concurrent_reservations_never_overshoot_in_redis() {
    let redis = RedisServer::start().await;
    let store = RedisOrderStore::new(&redis.url(), "conformance").unwrap();
    spend_concurrency(Arc::new(store), "spend-concurrency").await;
}

/// The same operations in the same order get the same answers from Redis as from the memory
/// store, the reference: claims of a few references by a few callers and bodies, finishes,
/// reservations and settlements, while time moves on past leases and windows.
#[tokio::test]
async fn redis_answers_as_the_memory_store_does() {
    let redis = RedisServer::start().await;
    let store = RedisOrderStore::new(&redis.url(), "differential").unwrap();
    let memory = MemoryStore::new(usize::MAX);
    let (window, lease) = (Duration::from_secs(60), Duration::from_secs(5));
    // xorshift64: the same sequence every run, so a failure names a step that repeats.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let pick = |options: &[&'static str], i: u64| options[i as usize];
    let mut seconds = 0;
    // (caller, the memory store's id, the Redis store's id) of each granted reservation.
    let mut granted: Vec<(&str, ReservationId, ReservationId)> = Vec::new();
    for step in 0..400 {
        seconds += next(4);
        let now = at(seconds);
        let reference = pick(&["r0", "r1", "r2"], next(3));
        let caller = pick(&["c0", "c1"], next(2));
        match next(4) {
            0 => {
                let claim = Claim {
                    reference,
                    hash: pick(&["h0", "h1"], next(2)),
                    caller,
                    window,
                    lease,
                };
                assert_eq!(
                    store.begin(claim, now).await,
                    memory.begin(claim, now).await,
                    "step {step}"
                );
            }
            1 => {
                let how = [Finish::Kept, Finish::Forgotten][next(2) as usize];
                store.finish(reference, window, how, now).await.unwrap();
                memory.finish(reference, window, how, now).await.unwrap();
            }
            2 => {
                let (amount, limit) = (next(5) as Micros * 1_000_000, 10_000_000);
                let answers = (
                    store.reserve(caller, amount, limit, window, now).await,
                    memory.reserve(caller, amount, limit, window, now).await,
                );
                match answers {
                    (
                        Ok(Reserve::Granted { id, window: total }),
                        Ok(Reserve::Granted {
                            id: memory_id,
                            window: expected,
                        }),
                    ) => {
                        assert_eq!(total, expected, "step {step}");
                        granted.push((caller, memory_id, id));
                    }
                    (answer, expected) => assert_eq!(answer, expected, "step {step}"),
                }
            }
            _ if !granted.is_empty() => {
                let (caller, memory_id, id) = &granted[next(granted.len() as u64) as usize];
                let how = [Settle::Commit, Settle::Release, Settle::Keep][next(3) as usize];
                assert_eq!(
                    store.settle(caller, id, how, window, now).await,
                    memory.settle(caller, memory_id, how, window, now).await,
                    "step {step}"
                );
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn two_stores_on_one_redis_see_each_others_claims_and_reservations() {
    let redis = RedisServer::start().await;
    let a = RedisOrderStore::new(&redis.url(), "fleet").unwrap();
    let b = RedisOrderStore::new(&redis.url(), "fleet").unwrap();
    let reference = "fleet-ref";

    assert_eq!(a.begin(claim(reference, "h1"), at(0)).await, Ok(Begin::New));
    assert_eq!(
        b.begin(claim(reference, "h1"), at(0)).await,
        Ok(Begin::InFlight)
    );
    assert_eq!(
        b.begin(claim(reference, "h2"), at(0)).await,
        Ok(Begin::Conflict(Conflict::OtherBody))
    );
    a.finish(reference, WINDOW, Finish::Kept, at(1))
        .await
        .unwrap();
    assert_eq!(
        b.begin(claim(reference, "h1"), at(2)).await,
        Ok(Begin::Repeat)
    );

    let limit: Micros = 100;
    let Ok(Reserve::Granted { id, window: 60 }) =
        a.reserve("fleet", 60, limit, WINDOW, at(0)).await
    else {
        panic!("the first reservation fits");
    };
    assert_eq!(
        b.reserve("fleet", 50, limit, WINDOW, at(1)).await,
        Ok(Reserve::Exceeded { window: 60 })
    );
    // A reservation made through one replica is settled through another.
    assert_eq!(
        b.settle("fleet", &id, Settle::Release, WINDOW, at(2)).await,
        Ok(0)
    );
    assert!(matches!(
        b.reserve("fleet", 50, limit, WINDOW, at(3)).await,
        Ok(Reserve::Granted { window: 50, .. })
    ));
    assert_eq!(
        a.reserve("fleet", 60, limit, WINDOW, at(4)).await,
        Ok(Reserve::Exceeded { window: 50 })
    );
}

#[tokio::test]
async fn many_concurrent_claims_of_one_new_reference_make_exactly_one_new() {
    let redis = RedisServer::start().await;
    let stores: Vec<Arc<RedisOrderStore>> = (0..2)
        .map(|_| Arc::new(RedisOrderStore::new(&redis.url(), "race").unwrap()))
        .collect();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move { store.begin(claim("race-ref", "h"), at(0)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    let new = answers.iter().filter(|a| **a == Begin::New).count();
    let in_flight = answers.iter().filter(|a| **a == Begin::InFlight).count();
    assert_eq!((new, in_flight), (1, 31), "{answers:?}");
}

#[test]
fn keys_are_namespaced_and_hold_a_hash_of_the_reference() {
    let store = RedisOrderStore::new("redis://127.0.0.1:1/0", "gw").unwrap();
    assert_eq!(
        store.reference_key("abc"),
        format!("gw:orders:ref:{ABC_SHA256}")
    );
    // However long the reference, the key is not.
    assert_eq!(
        store.reference_key(&"x".repeat(100_000)).len(),
        "gw:orders:ref:".len() + 64
    );
    assert_eq!(
        store.spend_keys("svc"),
        [
            "gw:orders:spend:at:svc",
            "gw:orders:spend:amount:svc",
            "gw:orders:spend:total:svc"
        ]
    );
    let unprefixed = RedisOrderStore::new("redis://127.0.0.1:1/0", "").unwrap();
    assert_eq!(
        unprefixed.reference_key("abc"),
        format!("orders:ref:{ABC_SHA256}")
    );
    let separated = RedisOrderStore::new("redis://127.0.0.1:1/0", "gw:").unwrap();
    assert_eq!(separated.spend_keys("svc")[0], "gw:orders:spend:at:svc");
}

#[tokio::test]
async fn every_key_expires_and_an_empty_window_leaves_none() {
    let redis = RedisServer::start().await;
    let store = RedisOrderStore::new(&redis.url(), "gw").unwrap();
    let now = SystemTime::now();

    // A ledger entry lives max(window, lease): the window here.
    assert_eq!(store.begin(claim("abc", "h"), now).await, Ok(Begin::New));
    let entry = format!("gw:orders:ref:{ABC_SHA256}");
    assert_eq!(redis.keys("gw:orders:ref:*").await, vec![entry.clone()]);
    let ttl = redis.pttl(&entry).await;
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{ttl}");
    store
        .finish("abc", WINDOW, Finish::Kept, now)
        .await
        .unwrap();
    assert!(redis.pttl(&entry).await > 3_500_000);
    store
        .finish("abc", WINDOW, Finish::Forgotten, now)
        .await
        .unwrap();
    assert!(redis.keys("gw:orders:ref:*").await.is_empty());

    // A caller's spend keys live a window past its last operation...
    let Ok(Reserve::Granted { id, .. }) = store.reserve("svc", 5, 10, WINDOW, now).await else {
        panic!("it fits");
    };
    let mut keys = redis.keys("gw:orders:spend:*").await;
    keys.sort();
    assert_eq!(
        keys,
        [
            "gw:orders:spend:amount:svc",
            "gw:orders:spend:at:svc",
            "gw:orders:spend:total:svc"
        ]
    );
    for key in &keys {
        let ttl = redis.pttl(key).await;
        assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{key}: {ttl}");
    }
    // ... and go once its window is empty.
    assert_eq!(
        store.settle("svc", &id, Settle::Release, WINDOW, now).await,
        Ok(0)
    );
    assert!(redis.keys("gw:orders:spend:*").await.is_empty());
    // A refused reservation creates none.
    assert_eq!(
        store.reserve("svc", 11, 10, WINDOW, now).await,
        Ok(Reserve::Exceeded { window: 0 })
    );
    assert!(redis.keys("gw:orders:spend:*").await.is_empty());

    // An idle caller's keys disappear on their own (Redis's expiry, in real time).
    let short = Duration::from_millis(200);
    let Ok(Reserve::Granted { .. }) = store.reserve("idle", 5, 10, short, now).await else {
        panic!("it fits");
    };
    assert_eq!(redis.keys("gw:orders:spend:*:idle").await.len(), 3);
    let started = Instant::now();
    while !redis.keys("gw:orders:spend:*:idle").await.is_empty() {
        assert!(
            started.elapsed() < GENEROUS,
            "the idle caller's keys stayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs every operation and checks each fails closed within [`GENEROUS`].
async fn every_operation_is_refused(store: &RedisOrderStore) {
    let id = ReservationId("0".to_owned());
    let started = Instant::now();
    assert_eq!(store.begin(claim("ref", "h"), at(0)).await, Err(StoreDown));
    assert!(started.elapsed() < GENEROUS);
    let started = Instant::now();
    assert_eq!(
        store.finish("ref", WINDOW, Finish::Kept, at(0)).await,
        Err(StoreDown)
    );
    assert_eq!(
        store.finish("ref", WINDOW, Finish::Forgotten, at(0)).await,
        Err(StoreDown)
    );
    assert!(started.elapsed() < GENEROUS * 2);
    let started = Instant::now();
    assert_eq!(
        store.reserve("svc", 1, 10, WINDOW, at(0)).await,
        Err(StoreDown)
    );
    assert!(started.elapsed() < GENEROUS);
    let started = Instant::now();
    assert_eq!(
        store.settle("svc", &id, Settle::Keep, WINDOW, at(0)).await,
        Err(StoreDown)
    );
    assert!(started.elapsed() < GENEROUS);
    assert_eq!(store.probe().await, Err(StoreDown));
}

#[tokio::test]
async fn with_redis_down_every_operation_fails_closed_and_works_again_after_a_restart() {
    let mut redis = RedisServer::start().await;
    let store = RedisOrderStore::new(&redis.url(), "outage").unwrap();
    assert_eq!(store.probe().await, Ok(()));

    redis.stop();
    every_operation_is_refused(&store).await;
    assert!(!store.link.is_up());

    // Same port, an empty Redis (no persistence): the next operations reconnect.
    redis.restart().await;
    assert_eq!(store.begin(claim("ref", "h"), at(0)).await, Ok(Begin::New));
    assert!(store.link.is_up());
    assert!(matches!(
        store.reserve("svc", 1, 10, WINDOW, at(0)).await,
        Ok(Reserve::Granted { window: 1, .. })
    ));
}

#[tokio::test]
async fn a_redis_that_never_answers_is_given_up_on() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let store = RedisOrderStore::new(&format!("redis://127.0.0.1:{port}/0"), "silent").unwrap();
    every_operation_is_refused(&store).await;
    silent.abort();
}

#[test]
fn a_url_with_a_password_is_never_shown() {
    let store = RedisOrderStore::new("redis://:very-secret@127.0.0.1:1/0", "p").unwrap();
    assert!(!format!("{store:?}").contains("very-secret"));
    let err = RedisOrderStore::new("http://:very-secret@x", "p").unwrap_err();
    assert_eq!(err.to_string(), "orders.url is not a usable Redis URL");
}
