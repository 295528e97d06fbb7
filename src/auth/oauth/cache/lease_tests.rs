//! Replicas sharing a store (in memory, with Redis's lock rules) under paused time: the
//! refresh lock's holder renews its short lease for as long as its fetch takes, a holder that
//! dies holds the others up one lease at most, a live one no longer than `lock_timeout`, and
//! a cold caller gives up at its route's deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::refresh::LOCK_POLL;
use super::*;
use crate::auth::oauth::fake_fetch::FakeFetch;
use crate::auth::oauth::store::fake_shared::FakeShared;
use crate::auth::oauth::store::{LOCK_LEASE, LOCK_RENEW_EVERY};
use crate::auth::oauth::token::TokenKind;
use crate::config::DEFAULT_LOCK_TIMEOUT;

const DAY: Duration = Duration::from_secs(86_400);

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// One replica: a source on the fleet's token endpoint and store, its refresher running.
fn replica(fetch: &FakeFetch, store: &FakeShared) -> (Arc<TokenSource>, JoinHandle<()>) {
    let source = Arc::new(fetch.source_with_store(0.8, Arc::new(store.clone())));
    let refresher = tokio::spawn(source.clone().run());
    (source, refresher)
}

/// Lets spawned refreshers run until `fetch` has started `calls` fetches.
async fn until_fetches(fetch: &FakeFetch, calls: usize) {
    while fetch.calls() < calls {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_holder_renews_its_lease_for_as_long_as_its_fetch_takes() {
    let fetch = FakeFetch::new(TokenKind::Bearer, DAY);
    // Far longer than a lease: without renewal the lock would lapse three times over.
    fetch.set_delay(secs(10));
    let store = FakeShared::new(DEFAULT_LOCK_TIMEOUT);
    let (a, _a) = replica(&fetch, &store);
    until_fetches(&fetch, 1).await;
    let (b, _b) = replica(&fetch, &store);
    let started = fetch.started()[0];

    tokio::time::sleep_until(started + secs(9)).await;
    let left = store.lock_left().expect("still held, 9 s into a 3 s lease");
    assert!(
        left >= LOCK_LEASE - LOCK_RENEW_EVERY,
        "renewed: {left:?} left"
    );

    let from_a = a.token().await.unwrap();
    assert_eq!(started.elapsed(), secs(10));
    let from_b = b.token().await.unwrap();
    assert!(
        started.elapsed() <= secs(10) + LOCK_POLL,
        "B read it at its next poll"
    );
    assert_eq!(
        fetch.calls(),
        1,
        "B waited for A's token instead of fetching"
    );
    assert_eq!(from_a.fingerprint(), from_b.fingerprint());
    assert!(store.renewals() >= 9, "{} renewals", store.renewals());
    assert_eq!(store.lock_left(), None, "released once the token was saved");
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_dies_holds_the_others_up_one_lease_at_most() {
    let fetch = FakeFetch::new(TokenKind::Bearer, DAY);
    fetch.set_delay(secs(3_600));
    let store = FakeShared::new(DEFAULT_LOCK_TIMEOUT);
    let (_a, a_refresher) = replica(&fetch, &store);
    until_fetches(&fetch, 1).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // A dies mid-fetch, holding the lock (renewed at 1 s and 2 s: it runs until 5 s).
    a_refresher.abort();
    assert!(a_refresher.await.unwrap_err().is_cancelled());
    let killed_at = Instant::now();
    let lease_left = store.lock_left().unwrap();

    fetch.set_delay(secs(3));
    let (b, _b) = replica(&fetch, &store);
    let token = b.token().await;
    assert!(token.is_ok(), "{token:?}");
    let takeover = fetch.started()[1] - killed_at;
    assert!(
        takeover >= lease_left,
        "B fetched before A's lease lapsed: {takeover:?}"
    );
    assert!(
        takeover <= lease_left + LOCK_POLL && lease_left <= LOCK_LEASE,
        "B took over {takeover:?} after the death, {lease_left:?} of lease left"
    );
    assert!(killed_at.elapsed() < DEFAULT_LOCK_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_live_holder_keeps_the_lock_no_longer_than_the_lock_timeout() {
    let fetch = FakeFetch::new(TokenKind::Bearer, DAY);
    fetch.set_delay(secs(600));
    let store = FakeShared::new(secs(20));
    let (_a, _a_refresher) = replica(&fetch, &store);
    until_fetches(&fetch, 1).await;
    let (_b, _b_refresher) = replica(&fetch, &store);
    until_fetches(&fetch, 2).await;
    let [a_started, b_started] = fetch.started()[..] else {
        panic!("two fetches: {:?}", fetch.started());
    };
    let held = b_started - a_started;
    assert!(
        held >= secs(20) && held <= secs(20) + LOCK_POLL,
        "A's lock ran out after {held:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cold_caller_gives_up_at_its_deadline() {
    let fetch = FakeFetch::new(TokenKind::Bearer, DAY);
    fetch.set_delay(secs(600));
    let store = FakeShared::new(DEFAULT_LOCK_TIMEOUT);
    let (source, _refresher) = replica(&fetch, &store);
    let asked = Instant::now();
    let err = source
        .token_by(Some(asked + secs(5)))
        .await
        .expect_err("no token within the deadline");
    assert_eq!(asked.elapsed(), secs(5));
    assert!(err.reason.contains("in time"), "{}", err.reason);
    // A deadline further off than the wait limit does not extend it.
    let asked = Instant::now();
    assert!(source.token_by(Some(asked + DAY)).await.is_err());
    assert_eq!(asked.elapsed(), WAIT_LIMIT);
}

#[tokio::test(start_paused = true)]
async fn a_replica_backing_off_adopts_the_fleets_token_when_a_caller_asks() {
    // A's token endpoint fails (a partition, say); B's works; they share a store.
    let broken = FakeFetch::new(TokenKind::Bearer, DAY);
    broken.fail_with(Some(FetchError::Transient(
        "the token endpoint answered 503".to_owned(),
    )));
    let working = FakeFetch::new(TokenKind::Bearer, DAY);
    let store = FakeShared::new(DEFAULT_LOCK_TIMEOUT);
    let (a, _a) = replica(&broken, &store);
    // Several failures: A's backoff is now long (seconds to a minute).
    until_fetches(&broken, 4).await;
    let failed_fetches = broken.calls();
    assert!(a.token().await.is_err(), "A has no token of its own");

    let (b, _b) = replica(&working, &store);
    let from_b = b.token().await.unwrap();
    // A looks in the store at most once a second (its last look found nothing).
    tokio::time::sleep(secs(1)).await;
    // The first caller on A after B saved its token wakes A's refresher, which looks in the
    // store (it does not fetch): the next caller is served, long before A's backoff ends.
    let _ = a.token().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let from_a = a.token().await.expect("adopted from the store");
    assert_eq!(from_a.fingerprint(), from_b.fingerprint());
    assert_eq!(
        broken.calls(),
        failed_fetches,
        "no fetch on A's broken endpoint"
    );
}
