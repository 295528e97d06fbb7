//! systemd service notifications (sd_notify(3)) for the `Type=notify` unit in
//! `deploy/systemd/tango-gateway.service`.
//!
//! Why: under `Type=simple` systemd counts the gateway as started the moment the process
//! exists, before it holds its first OAuth tokens, so `systemctl start` and every unit ordered
//! after the gateway went on while callers still got 503. With these messages systemd knows
//! what `/readyz` knows:
//! - `READY=1` the first time the gateway is ready to serve: the same test `/readyz` answers
//!   200 by (every OAuth route has its first token, no client certificate has expired);
//! - `STOPPING=1` when the graceful drain begins;
//! - `RELOADING=1` … `READY=1` around a reload (SIGHUP, a changed file), whatever its outcome:
//!   a refused reload leaves the old configuration serving;
//! - `WATCHDOG=1` at half the interval systemd asks for (`WatchdogSec=`, passed as
//!   `WATCHDOG_USEC`), sent from a task on the control runtime, which runs the accept loop,
//!   the admin listener, the reloader and the token refreshers: if that runtime hangs, the
//!   pings stop and systemd restarts the gateway. (The serving workers have runtimes of their
//!   own; the watchdog does not vouch for them.)
//!
//! Invariant: nothing is sent unless the `run` command called [`enable`] *and* systemd set
//! `NOTIFY_SOCKET`: tests, `demo`, `doctor` and every run outside systemd send nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// How often readiness is looked at until the first `READY=1` (`/readyz` computes it on
/// demand; there is no event to wait on).
const READY_POLL: Duration = Duration::from_millis(100);

/// `run` under systemd with a notification socket.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The first `READY=1` went out: from then on reloads are announced too.
static READY_SENT: AtomicBool = AtomicBool::new(false);
/// `STOPPING=1` went out: no `READY=1` after it.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Turns notifications on when systemd asked for them (`NOTIFY_SOCKET`), and starts the
/// watchdog pings when it asked for those (`WATCHDOG_USEC`). For the `run` command only;
/// call it on the control runtime.
pub fn enable() {
    if std::env::var_os("NOTIFY_SOCKET").is_none_or(|socket| socket.is_empty()) {
        return;
    }
    ENABLED.store(true, Ordering::SeqCst);
    // `None` also when WATCHDOG_PID names another process (a child that inherited it).
    let watchdog = sd_notify::watchdog_enabled().filter(|interval| !interval.is_zero());
    tracing::info!(
        watchdog_s = watchdog.map(|interval| interval.as_secs_f64()),
        "systemd notifications on"
    );
    if let Some(interval) = watchdog {
        tokio::spawn(watchdog_pings(interval / 2));
    }
}

fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
}

async fn watchdog_pings(every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}

/// Sends `READY=1` once `is_ready` (what `/readyz` answers 200 by) first holds; until then
/// the unit's status line says what it waits for.
pub(crate) fn ready_when(is_ready: impl Fn() -> bool + Send + 'static) {
    if !enabled() {
        return;
    }
    tokio::spawn(async move {
        let mut waiting_said = false;
        loop {
            if STOPPING.load(Ordering::SeqCst) {
                return;
            }
            if is_ready() {
                break;
            }
            if !waiting_said {
                send(&[NotifyState::Status(
                    "starting: waiting for the first OAuth tokens (GET /readyz on the admin port says what is missing)",
                )]);
                waiting_said = true;
            }
            tokio::time::sleep(READY_POLL).await;
        }
        READY_SENT.store(true, Ordering::SeqCst);
        send(&[NotifyState::Ready, NotifyState::Status("serving")]);
    });
}

/// Sends `STOPPING=1`: the graceful drain begins.
pub(crate) fn stopping() {
    if !enabled() {
        return;
    }
    STOPPING.store(true, Ordering::SeqCst);
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining in-flight requests"),
    ]);
}

/// Sends `RELOADING=1` now and `READY=1` when the guard drops (the reload is over, applied or
/// refused). Before the first `READY=1` it sends nothing: a reload must not announce a
/// readiness the gateway has not reached.
pub(crate) fn reloading() -> Reloading {
    let announced = enabled() && READY_SENT.load(Ordering::SeqCst);
    if announced {
        // MONOTONIC_USEC: systemd ≥ 253 matches the reload by it; older ones ignore it.
        let mut states = vec![NotifyState::Reloading];
        states.extend(NotifyState::monotonic_usec_now().ok());
        states.push(NotifyState::Status("reloading the configuration"));
        send(&states);
    }
    Reloading { announced }
}

/// A reload announced to systemd; see [`reloading`].
#[must_use = "READY=1 is sent when the reload guard drops"]
pub(crate) struct Reloading {
    announced: bool,
}

impl Drop for Reloading {
    fn drop(&mut self) {
        if self.announced && !STOPPING.load(Ordering::SeqCst) {
            send(&[NotifyState::Ready, NotifyState::Status("serving")]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Never enabled in unit tests: every call is a no-op and spawns nothing.
    #[tokio::test]
    async fn without_enable_nothing_is_sent_or_spawned() {
        assert!(!enabled());
        ready_when(|| true);
        let guard = reloading();
        assert!(!guard.announced);
        drop(guard);
        stopping();
        assert!(!STOPPING.load(Ordering::SeqCst));
        assert!(!READY_SENT.load(Ordering::SeqCst));
    }
}
