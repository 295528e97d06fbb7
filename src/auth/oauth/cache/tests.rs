//! The cache with its refresher running, driven by a fake fetch under paused time, so every
//! wait is exact: single flight, refresh-ahead, the expiry margin, the backoff after a failed
//! fetch, the wait limit, and compare-and-drop.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::*;
use crate::auth::oauth::fake_fetch::FakeFetch;
use crate::auth::oauth::token::TokenKind;

const DAY: Duration = Duration::from_secs(86_400);

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// A source on `fetch` with its refresher running (it ends with the test's runtime).
fn running(fetch: &FakeFetch, refresh_at: f64) -> Arc<TokenSource> {
    let source = Arc::new(fetch.source(refresh_at));
    tokio::spawn(source.clone().run());
    source
}

fn value(token: &AccessToken) -> &str {
    token.secret().expose_secret()
}

fn transient() -> FetchError {
    FetchError::Transient("the token endpoint answered 503".to_owned())
}

#[tokio::test(start_paused = true)]
async fn a_hundred_callers_on_a_cold_cache_share_one_fetch() {
    let fetch = FakeFetch::new(TokenKind::Bearer, DAY);
    fetch.set_delay(secs(2));
    let source = running(&fetch, 0.8);
    let start = Instant::now();
    let callers = (0..100).map(|_| {
        let source = source.clone();
        tokio::spawn(async move { source.token().await })
    });
    let tokens: Vec<Arc<AccessToken>> = join_all(callers)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    assert_eq!(fetch.calls(), 1, "one token request for a hundred callers");
    assert!(tokens.iter().all(|t| Arc::ptr_eq(t, &tokens[0])));
    assert_eq!(value(&tokens[0]), "token-1");
    assert_eq!(
        start.elapsed(),
        secs(2),
        "each waited for that fetch, no longer"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_starts_at_refresh_at_of_the_lifetime_and_callers_do_not_wait() {
    let fetch = FakeFetch::new(TokenKind::Bearer, secs(100));
    fetch.set_delay(secs(1));
    let source = running(&fetch, 0.8);
    let first = source.token().await.unwrap();
    let t0 = fetch.started()[0];

    tokio::time::sleep_until(t0 + secs(80) - ms(1)).await;
    assert_eq!(fetch.calls(), 1, "not due before 80 % of the lifetime");

    // The refresh is in flight (it takes 1 s): callers get the current token at once.
    tokio::time::sleep_until(t0 + ms(80_500)).await;
    assert_eq!(fetch.started(), [t0, t0 + secs(80)], "due at exactly 80 s");
    let asked = Instant::now();
    let during = source.token().await.unwrap();
    assert_eq!(
        asked.elapsed(),
        Duration::ZERO,
        "no caller waits for a refresh"
    );
    assert!(Arc::ptr_eq(&during, &first));

    tokio::time::sleep_until(t0 + secs(81) + ms(1)).await;
    assert_eq!(value(&source.token().await.unwrap()), "token-2");
    // The next one is due at 80 % of the new token's lifetime, counted from its request.
    tokio::time::sleep_until(t0 + secs(160) + ms(1)).await;
    assert_eq!(fetch.started()[2], t0 + secs(160));
}

#[tokio::test(start_paused = true)]
async fn a_token_is_never_served_within_min_30s_or_10_percent_of_its_expiry() {
    // (lifetime, margin): 10 % of 100 s; 30 s of a day.
    for (lifetime, margin) in [(secs(100), secs(10)), (DAY, secs(30))] {
        let fetch = FakeFetch::new(TokenKind::Bearer, lifetime);
        let source = running(&fetch, 0.5);
        let token = source.token().await.unwrap();
        let t0 = fetch.started()[0];
        // The token endpoint goes down: the token in hand is all there is.
        fetch.fail_with(Some(transient()));

        tokio::time::sleep_until(t0 + lifetime - margin - ms(1)).await;
        let last_use = source.token().await.unwrap();
        assert!(Arc::ptr_eq(&last_use, &token), "{lifetime:?}: still served");

        tokio::time::sleep_until(t0 + lifetime - margin).await;
        let asked = Instant::now();
        let refused = source.token().await;
        assert!(
            refused.is_err(),
            "{lifetime:?}: not served within {margin:?} of expiry"
        );
        assert_eq!(asked.elapsed(), Duration::ZERO, "refused at once");
        assert!(fetch.calls() > 1, "refreshes were attempted meanwhile");
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_failed_fetch_callers_are_answered_at_once_and_the_next_fetch_backs_off() {
    // (failure, shortest and longest first backoff): equal jitter of a 1 s step for a
    // transient failure, of a 60 s step for a refusal of the credential.
    let refused = FetchError::Permanent("the token endpoint answered 401 (invalid_client)".into());
    for (failure, shortest, longest) in [
        (transient(), ms(500), secs(1)),
        (refused, secs(30), secs(60)),
    ] {
        let fetch = FakeFetch::new(TokenKind::Bearer, DAY);
        fetch.fail_with(Some(failure.clone()));
        let source = running(&fetch, 0.8);
        let err = source.token().await.unwrap_err();
        assert_eq!(err.reason, failure.to_string());
        let asked = Instant::now();
        assert!(source.token().await.is_err());
        assert_eq!(
            asked.elapsed(),
            Duration::ZERO,
            "no caller queues on a failing endpoint"
        );
        assert_eq!(fetch.calls(), 1, "nor makes a fetch of its own");

        fetch.fail_with(None);
        tokio::time::sleep(longest + ms(1)).await;
        let started = fetch.started();
        assert_eq!(started.len(), 2);
        let backoff = started[1] - started[0];
        assert!(
            shortest <= backoff && backoff <= longest,
            "{failure:?}: {backoff:?}"
        );
        assert_eq!(value(&source.token().await.unwrap()), "token-2");
    }
}

#[tokio::test(start_paused = true)]
async fn a_caller_waits_for_a_hanging_fetch_no_longer_than_the_wait_limit() {
    let fetch = FakeFetch::new(TokenKind::Bearer, DAY);
    fetch.set_delay(secs(600));
    let source = running(&fetch, 0.8);
    let asked = Instant::now();
    let err = source.token().await.unwrap_err();
    assert_eq!(asked.elapsed(), WAIT_LIMIT);
    assert!(err.reason.contains("in time"), "{}", err.reason);
    assert_eq!(fetch.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn readiness_waits_for_the_first_token() {
    let fetch = FakeFetch::new(TokenKind::Bearer, DAY);
    fetch.set_delay(secs(3));
    let source = running(&fetch, 0.8);
    tokio::time::sleep(secs(1)).await;
    assert_eq!(
        source.readiness_problem(fetch.clock().now()).as_deref(),
        Some("no token yet")
    );
    source.settled().await;
    assert_eq!(fetch.started()[0].elapsed(), secs(3));
    assert_eq!(source.readiness_problem(fetch.clock().now()), None);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_401s_for_one_token_drops_it_once_and_makes_one_fetch() {
    let fetch = FakeFetch::new(TokenKind::Bearer, DAY);
    let source = running(&fetch, 0.8);
    let first = source.token().await.unwrap();
    fetch.set_delay(secs(1));

    let outcomes: Vec<Rejected> = (0..20).map(|_| source.reject(&first)).collect();
    let dropped = outcomes.iter().filter(|o| **o == Rejected::Dropped).count();
    assert_eq!(dropped, 1, "{outcomes:?}");
    assert!(outcomes[1..]
        .iter()
        .all(|o| *o == Rejected::AlreadyReplaced));

    // Every request of the burst resends with the one token that replaces it.
    let start = Instant::now();
    let next: Vec<Arc<AccessToken>> = join_all((0..20).map(|_| source.token()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(start.elapsed(), secs(1), "they waited for one fetch");
    assert!(next.iter().all(|t| Arc::ptr_eq(t, &next[0])));
    assert_eq!(value(&next[0]), "token-2");
    assert_eq!(fetch.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_401_for_a_token_already_replaced_leaves_the_new_one_in_place() {
    let fetch = FakeFetch::new(TokenKind::Bearer, DAY);
    let source = running(&fetch, 0.8);
    let first = source.token().await.unwrap();
    assert_eq!(source.reject(&first), Rejected::Dropped);
    let second = source.token().await.unwrap();
    assert_eq!(value(&second), "token-2");

    // A request that was still in flight with the first token comes back 401, well after
    // the refresh window: the current token is not the one it names, so it stays.
    tokio::time::sleep(REFRESH_ON_401_INTERVAL * 2).await;
    assert_eq!(source.reject(&first), Rejected::AlreadyReplaced);
    assert!(Arc::ptr_eq(&source.token().await.unwrap(), &second));
    tokio::time::sleep(secs(60)).await;
    assert_eq!(fetch.calls(), 2, "no fetch for a stale 401");
}
