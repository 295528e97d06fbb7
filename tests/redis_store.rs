//! The Redis token store on its own against a real `redis-server`: the entry round trip and
//! its expiry, the refresh lock's owner checks (compare-and-delete, compare-and-PEXPIRE), its
//! short lease and the `lock_timeout` cap on renewals, and an unreachable Redis answering
//! quickly with a readiness warning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use tango_gateway::auth::oauth::store::{LockOutcome, RedisStore, Renewal, TokenStore, LOCK_LEASE};
use tango_gateway::auth::oauth::token::{AccessToken, TokenKind};

use support::redis::RedisServer;

const WARNING: &str = "token store redis unreachable; tokens cached in memory on this replica";

fn acquired(outcome: LockOutcome) -> tango_gateway::auth::oauth::store::RefreshLock {
    match outcome {
        LockOutcome::Acquired(lock) => lock,
        other => panic!("expected the lock, got {other:?}"),
    }
}

#[tokio::test]
async fn a_lock_is_released_only_by_its_owner() {
    let redis = RedisServer::start().await;
    let store = RedisStore::new(&redis.url(), "t", Duration::from_millis(1_000)).unwrap();
    let first = acquired(store.acquire_refresh_lock("cred").await);
    assert!(matches!(
        store.acquire_refresh_lock("cred").await,
        LockOutcome::HeldElsewhere
    ));
    assert!(matches!(
        store.acquire_refresh_lock("other").await,
        LockOutcome::Acquired(_)
    ));
    // The first holder outlives its lock; another replica takes it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let second = acquired(store.acquire_refresh_lock("cred").await);
    // The late first holder's release must not free the second holder's lock.
    store.release_refresh_lock("cred", first).await;
    assert!(matches!(
        store.acquire_refresh_lock("cred").await,
        LockOutcome::HeldElsewhere
    ));
    store.release_refresh_lock("cred", second).await;
    assert!(matches!(
        store.acquire_refresh_lock("cred").await,
        LockOutcome::Acquired(_)
    ));
    let ttl = redis.pttl("t:lock:cred").await;
    assert!((1..=1_000).contains(&ttl), "the lock expires: {ttl} ms");
}

#[tokio::test]
async fn a_lock_is_a_short_lease_renewed_only_by_its_owner() {
    let redis = RedisServer::start().await;
    let store = RedisStore::new(&redis.url(), "t", Duration::from_secs(20)).unwrap();
    let lease = i64::try_from(LOCK_LEASE.as_millis()).unwrap();
    let lock = acquired(store.acquire_refresh_lock("cred").await);
    let ttl = redis.pttl("t:lock:cred").await;
    assert!(
        (1..=lease).contains(&ttl),
        "a lease, not lock_timeout: {ttl} ms"
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        store.renew_refresh_lock("cred", &lock).await,
        Renewal::Renewed
    );
    let ttl = redis.pttl("t:lock:cred").await;
    assert!(ttl > lease - 200, "renewed to a full lease: {ttl} ms");
    store.release_refresh_lock("cred", lock).await;
    assert_eq!(redis.pttl("t:lock:cred").await, -2, "released");
}

#[tokio::test]
async fn a_lapsed_lease_is_never_renewed_nor_one_past_the_lock_timeout() {
    let redis = RedisServer::start().await;
    // lock_timeout shorter than a lease: the lease is cut to it, and no renewal extends it.
    let store = RedisStore::new(&redis.url(), "t", Duration::from_millis(1_500)).unwrap();
    let first = acquired(store.acquire_refresh_lock("cred").await);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        store.renew_refresh_lock("cred", &first).await,
        Renewal::Renewed
    );
    let ttl = redis.pttl("t:lock:cred").await;
    assert!((1..=500).contains(&ttl), "never past the cap: {ttl} ms");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The first holder's lease has lapsed and another replica holds the lock.
    let second = acquired(store.acquire_refresh_lock("cred").await);
    assert_eq!(
        store.renew_refresh_lock("cred", &first).await,
        Renewal::Ended,
        "a late holder must not extend another's lock"
    );
    let ttl = redis.pttl("t:lock:cred").await;
    assert!((1_000..=1_500).contains(&ttl), "left alone: {ttl} ms");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        store.renew_refresh_lock("cred", &second).await,
        Renewal::Ended,
        "held lock_timeout in all"
    );
}

#[tokio::test]
async fn a_token_round_trips_and_expires_with_the_token() {
    let redis = RedisServer::start().await;
    let store = RedisStore::new(&redis.url(), "t:", Duration::from_secs(20)).unwrap();
    let now = SystemTime::now();
    let token = AccessToken::new(
        SecretString::from("tok-1".to_owned()),
        TokenKind::Dpop,
        now,
        now + Duration::from_secs(300),
    )
    .unwrap();
    store.save("cred", &token).await;
    let loaded = store.load("cred").await.unwrap();
    assert_eq!(loaded.secret().expose_secret(), "tok-1");
    assert_eq!(loaded.kind(), TokenKind::Dpop);
    let ttl = redis.pttl("t:token:cred").await;
    assert!((290_000..=300_000).contains(&ttl), "ttl {ttl} ms");
    assert!(store.load("other").await.is_none());
    assert!(store.readiness_warning().is_none());
}

#[tokio::test]
async fn an_unreachable_redis_answers_quickly_and_is_reported() {
    let mut redis = RedisServer::start().await;
    let store = RedisStore::new(&redis.url(), "t", Duration::from_secs(20)).unwrap();
    let held = acquired(store.acquire_refresh_lock("held").await);
    redis.stop();
    let start = tokio::time::Instant::now();
    assert!(store.load("cred").await.is_none());
    assert!(matches!(
        store.acquire_refresh_lock("cred").await,
        LockOutcome::Unavailable
    ));
    assert_eq!(
        store.renew_refresh_lock("held", &held).await,
        Renewal::Unavailable
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(store.readiness_warning().as_deref(), Some(WARNING));
}
