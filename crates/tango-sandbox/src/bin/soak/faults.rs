//! Running the fault windows: each window is a task that waits for its start, breaks
//! something on purpose, puts it back, and reports when it really began and ended.
//!
//! Invariant: whatever a window breaks it repairs before it reports (the fault queues it
//! filled are cleared, the listener is back, Redis answers, the killed replica is ready), so
//! a failure after a window's settle time is the gateway's, not the soak's.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tango_sandbox::fake::{ConnectionFault, FakeTango, Fault, TokenFault};

use crate::observe::{fingerprint, Observed};
use crate::procs::wait_until;
use crate::schedule::{Kind, Planned};
use crate::world::World;
use crate::Result;

/// A window as it ran.
#[derive(Debug, Clone)]
pub(crate) struct Actual {
    pub(crate) kind: Kind,
    pub(crate) start: Duration,
    pub(crate) end: Duration,
    /// What happened, for the report (e.g. how long a rotation took to be seen).
    pub(crate) note: String,
}

/// Runs `planned` against `world`; `t0` is the soak's start.
pub(crate) async fn run(
    world: Arc<World>,
    observed: Observed,
    planned: Planned,
    t0: Instant,
) -> Result<Actual> {
    tokio::time::sleep_until(t0 + planned.start).await;
    let start = t0.elapsed();
    let until = t0 + planned.end;
    let w = &world;
    let note = match planned.kind {
        Kind::ResetAfterRead => {
            repeat(w, until, 150, |f| f.push_fault(Fault::ResetAfterRead)).await
        }
        Kind::Hang => repeat(w, until, 250, |f| f.push_fault(Fault::Hang)).await,
        Kind::SlowBody => {
            let slow = Fault::SlowBody {
                chunk: 64,
                pause: Duration::from_millis(150),
            };
            repeat(w, until, 100, |f| f.push_fault(slow.clone())).await
        }
        Kind::StallBody => {
            let stall = Fault::StallBody { after_bytes: 16 };
            repeat(w, until, 250, |f| f.push_fault(stall.clone())).await
        }
        Kind::Storm503RetryAfter => storm(w, until, 503, Some("1")).await,
        Kind::Storm429 => storm(w, until, 429, None).await,
        Kind::ResetBeforeRead => cut_connections(w, until, ConnectionFault::CloseOnAccept).await,
        Kind::TlsHandshake => cut_connections(w, until, ConnectionFault::HandshakeFailure).await,
        Kind::ListenerGone => listener_gone(w, start, until, t0).await?,
        Kind::TokenDown => {
            w.dpop.set_token_endpoint_down(true);
            sleep_until(until).await;
            w.dpop.set_token_endpoint_down(false);
            String::new()
        }
        Kind::TokenSlow => {
            for _ in 0..3 {
                w.dpop
                    .push_token_fault(TokenFault::Delay(Duration::from_secs(3)));
            }
            token_faults_until(w, until).await
        }
        Kind::Token5xx => {
            for status in [500, 503, 502] {
                w.dpop.push_token_fault(TokenFault::Status {
                    status,
                    error: None,
                    times: 2,
                });
            }
            w.dpop.push_token_fault(TokenFault::Status {
                status: 500,
                error: None,
                times: 1000,
            });
            token_faults_until(w, until).await
        }
        Kind::TokenMalformed => {
            w.dpop
                .push_token_fault(TokenFault::Malformed { times: 1000 });
            token_faults_until(w, until).await
        }
        Kind::InvalidClientThenFixed => invalid_client(w, until).await?,
        Kind::RedisKilledMidRefresh => redis_killed(w, until).await?,
        Kind::RedisUnreachable => {
            w.redis.lock().await.freeze(true)?;
            sleep_until(until).await;
            w.redis.lock().await.freeze(false)?;
            String::new()
        }
        Kind::Sighup => sighup(w).await?,
        Kind::RotateByRename => rotate(w, &observed, false).await?,
        Kind::RotateBySymlinkSwap => rotate(w, &observed, true).await?,
        Kind::ReplicaKilled => replica_killed(w, until).await?,
    };
    Ok(Actual {
        kind: planned.kind,
        start,
        end: t0.elapsed(),
        note,
    })
}

async fn sleep_until(until: Instant) {
    tokio::time::sleep_until(until).await;
}

/// Applies `push` to both fakes every `every_ms` until `until`, then clears their API
/// fault queues (a fault no request took must not leak into the next window).
async fn repeat(w: &World, until: Instant, every_ms: u64, push: impl Fn(&FakeTango)) -> String {
    let mut pushed = 0;
    while Instant::now() < until {
        push(&w.basic);
        push(&w.dpop);
        pushed += 2;
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
    }
    w.basic.clear_faults();
    w.dpop.clear_faults();
    format!("{pushed} faults queued")
}

/// Every API request answers `status` (with `Retry-After` when given) until `until`.
async fn storm(w: &World, until: Instant, status: u16, retry_after: Option<&str>) -> String {
    for fake in [&w.basic, &w.dpop] {
        fake.push_fault(Fault::Status {
            status,
            retry_after: retry_after.map(str::to_owned),
            times: usize::MAX,
        });
    }
    sleep_until(until).await;
    w.basic.clear_faults();
    w.dpop.clear_faults();
    String::new()
}

/// Every 500 ms: every open connection is cut (requests in flight included) and the next
/// two new connections meet `fault`.
async fn cut_connections(w: &World, until: Instant, fault: ConnectionFault) -> String {
    let mut cuts = 0;
    while Instant::now() < until {
        for fake in [&w.basic, &w.dpop] {
            fake.set_connection_fault(fault, 2);
            fake.drop_connections();
        }
        cuts += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for fake in [&w.basic, &w.dpop] {
        fake.set_connection_fault(fault, 0);
    }
    format!("{cuts} cuts")
}

/// Both fakes stop listening (connections refused, open ones closed) for most of the
/// window, then listen again on the same port.
async fn listener_gone(w: &World, start: Duration, until: Instant, t0: Instant) -> Result<String> {
    w.basic.stop_listening().await;
    w.dpop.stop_listening().await;
    let back = t0 + start + (until - (t0 + start)).mul_f64(0.6);
    sleep_until(back).await;
    w.basic.resume_listening().await?;
    w.dpop.resume_listening().await?;
    sleep_until(until).await;
    Ok(String::new())
}

/// Token faults stay queued until `until` (refreshes that come then meet them), then go.
async fn token_faults_until(w: &World, until: Instant) -> String {
    let before = w.dpop.token_requests();
    sleep_until(until).await;
    w.dpop.clear_token_faults();
    format!("{} token requests", w.dpop.token_requests() - before)
}

/// Tango stops accepting the client secret (the next refresh meets `invalid_client`, a
/// permanent failure); once one has (a refresh comes within one refresh period), the
/// operator writes the secret Tango now expects.
async fn invalid_client(w: &World, until: Instant) -> Result<String> {
    let new_secret = w.break_client_secret();
    let before = w.dpop.token_requests();
    let refresh_period = crate::world::TOKEN_LIFETIME.mul_f64(crate::world::REFRESH_AT);
    let wait = (refresh_period + Duration::from_millis(1500)).min(
        until
            .saturating_duration_since(Instant::now())
            .saturating_sub(Duration::from_secs(1)),
    );
    let _ = wait_until(wait, "a refused refresh", || {
        w.dpop.token_requests() > before
    })
    .await;
    let refused = w.dpop.token_requests() - before;
    // Let the refusal land before the fix, so the gateway really is in its slow retry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.write_client_secret(&new_secret)?;
    sleep_until(until).await;
    Ok(format!("{refused} refused token request(s) before the fix"))
}

/// A slow token endpoint holds a refresh (and the fleet's lock in Redis) open; Redis is
/// killed while it is, and restarted (empty: no persistence) 2 s later.
async fn redis_killed(w: &World, until: Instant) -> Result<String> {
    w.dpop
        .push_token_fault(TokenFault::Delay(Duration::from_secs(2)));
    let before = w.dpop.token_requests();
    // The next refresh comes within one refresh period; room is left to kill and restart.
    let refresh_period = crate::world::TOKEN_LIFETIME.mul_f64(crate::world::REFRESH_AT);
    let wait = (refresh_period + Duration::from_millis(500)).min(
        until
            .saturating_duration_since(Instant::now())
            .saturating_sub(Duration::from_secs(3)),
    );
    let mid_refresh = wait_until(wait, "a token refresh", || w.dpop.token_requests() > before)
        .await
        .is_ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.redis.lock().await.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    w.redis.lock().await.restart().await?;
    w.dpop.clear_token_faults();
    sleep_until(until).await;
    Ok(if mid_refresh {
        "killed during a refresh".to_owned()
    } else {
        "no refresh began in time: killed between refreshes".to_owned()
    })
}

/// A touched configuration and SIGHUP to every replica; waits for both reloads.
async fn sighup(w: &World) -> Result<String> {
    let marks = marks(w).await;
    w.touch_configs("soak: SIGHUP")?;
    for gateway in &w.gateways {
        if let Some(child) = &gateway.lock().await.child {
            child.signal("HUP")?;
        }
    }
    let took = wait_reloaded(w, &marks).await;
    Ok(format!("both replicas reloaded in {took:.1?}"))
}

/// Rotates the API key, the client secret and the client certificate at once (by `..data`
/// swap or by rename); once every replica reloaded and Tango saw the new credentials, the
/// old ones are revoked (§7: a rotation needs no restart and drops no request).
async fn rotate(w: &World, observed: &Observed, swap: bool) -> Result<String> {
    let marks = marks(w).await;
    let started = Instant::now();
    let old = if swap {
        w.rotate_by_symlink_swap()?
    } else {
        w.rotate_by_rename()?
    };
    let new = w.current();
    let basic = fingerprint(&format!(
        "Basic {}",
        crate::world::base64_basic(crate::world::PLATFORM, &new.api_key)
    ));
    let secret = fingerprint(&new.client_secret);
    let reloaded = wait_reloaded(w, &marks).await;
    // §9: files replaced by rename or symlink swap are picked up within 5 s.
    let seen = wait_until(
        Duration::from_secs(6),
        "the new credentials at Tango",
        || {
            let seen = observed.lock();
            seen.basic_headers.contains(&basic)
                && seen.token_secrets.contains(&secret)
                && seen.client_cns.contains(&new.client_cn)
        },
    )
    .await;
    let took = started.elapsed();
    // Requests that picked the old credentials just before the swap finish first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.revoke(&old);
    Ok(match seen {
        Ok(()) => format!("reloads {reloaded:.1?}, new credentials at Tango after {took:.1?}"),
        Err(_) => format!(
            "reloads {reloaded:.1?}; NOT all new credentials seen at Tango within 6 s \
             (old ones revoked anyway)"
        ),
    })
}

/// Replica 1 is SIGKILLed, restarted a second later, and waited for until ready.
async fn replica_killed(w: &World, until: Instant) -> Result<String> {
    let Some(gateway) = w.gateways.get(1) else {
        return Ok("no replica 1".to_owned());
    };
    gateway.lock().await.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = Instant::now();
    gateway.lock().await.start().await?;
    let took = restarted.elapsed();
    sleep_until(until).await;
    Ok(format!("ready {took:.1?} after restart"))
}

/// Each replica's count of marked log lines (serving, reloads) now.
async fn marks(w: &World) -> Vec<usize> {
    let mut marks = Vec::new();
    for gateway in &w.gateways {
        let gateway = gateway.lock().await;
        marks.push(gateway.child.as_ref().map_or(0, |c| c.marked_count()));
    }
    marks
}

/// Waits (up to 8 s) until every replica logged a successful reload after `marks`; returns
/// how long that took.
async fn wait_reloaded(w: &World, marks: &[usize]) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let mut all = true;
        for (gateway, from) in w.gateways.iter().zip(marks) {
            let gateway = gateway.lock().await;
            let reloaded = gateway.child.as_ref().is_some_and(|c| {
                c.marked_since(*from)
                    .iter()
                    .any(|l| l.contains("configuration reloaded"))
            });
            all &= reloaded;
        }
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}
