//! Which of a route's two active API keys is in use (§11): the primary, or the fallback for
//! `fallback_hold` after Tango refused the primary and accepted the fallback.
//!
//! Invariants: the key in use changes only when Tango accepted the other key (any answer but
//! `401`) or when the hold is over (back to the primary); a switch to the fallback is counted
//! once and logged once at warn with the route and the hold, never a key, however many requests
//! met the same `401` at once; a route whose keys are unchanged by a reload keeps this state.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::metrics::{metrics, RouteLabels};

/// One of a route's two API keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Primary,
    Fallback,
}

impl Key {
    pub fn other(self) -> Key {
        match self {
            Key::Primary => Key::Fallback,
            Key::Fallback => Key::Primary,
        }
    }
}

/// The key a route uses now, shared by every request of the route (and by the next
/// configuration generation while the keys stay the same).
pub struct KeyInUse {
    route: Arc<str>,
    /// `Some(end of the hold)` while the fallback is in use.
    fallback_until: Mutex<Option<Instant>>,
    fallbacks: Counter,
    in_use: Gauge,
}

impl std::fmt::Debug for KeyInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyInUse")
            .field("route", &self.route)
            .field("fallback_until", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl KeyInUse {
    /// A route starting on its primary key.
    pub fn new(route: &str) -> Self {
        let labels = RouteLabels {
            route: Arc::from(route),
        };
        let basic_keys = &metrics().basic_keys;
        let in_use = basic_keys.in_use.get_or_create(&labels).clone();
        in_use.set(0);
        KeyInUse {
            route: labels.route.clone(),
            fallback_until: Mutex::new(None),
            fallbacks: basic_keys.fallbacks.get_or_create(&labels).clone(),
            in_use,
        }
    }

    /// The key for a request sent at `now`: the fallback while its hold lasts, else the
    /// primary (the first request after the hold tries the primary again).
    pub fn key(&self, now: Instant) -> Key {
        let mut until = self.lock();
        match *until {
            None => Key::Primary,
            Some(end) if now < end => Key::Fallback,
            Some(_) => {
                *until = None;
                self.in_use.set(0);
                tracing::info!(
                    route = %self.route,
                    "the fallback API key's hold is over; trying the primary key again"
                );
                Key::Primary
            }
        }
    }

    /// Tango refused the other key with `401` and accepted `key` (at `now`): `key` is the
    /// one in use from now on, the fallback for `hold`.
    pub fn accepted(&self, key: Key, now: Instant, hold: Duration) {
        let mut until = self.lock();
        match (key, *until) {
            (Key::Fallback, None) => {
                *until = Some(now + hold);
                self.fallbacks.inc();
                self.in_use.set(1);
                tracing::warn!(
                    route = %self.route,
                    hold = ?hold,
                    "Tango refused the primary API key (401) and accepted the fallback key; \
                     using the fallback until the hold ends"
                );
            }
            (Key::Primary, Some(_)) => {
                *until = None;
                self.in_use.set(0);
                tracing::warn!(
                    route = %self.route,
                    "Tango refused the fallback API key (401) and accepted the primary key; \
                     using the primary again"
                );
            }
            // Already in use: requests that met the same 401 together switch once, and the
            // hold is not extended.
            (Key::Fallback, Some(_)) | (Key::Primary, None) => {}
        }
    }

    /// How much of the fallback's hold is left at `now` (`None` on the primary).
    pub fn fallback_left(&self, now: Instant) -> Option<Duration> {
        self.lock()
            .filter(|end| now < *end)
            .map(|end| end.duration_since(now))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.fallback_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(300);

    fn gauge(route: &str) -> i64 {
        let labels = RouteLabels {
            route: Arc::from(route),
        };
        metrics().basic_keys.in_use.get_or_create(&labels).get()
    }

    fn fallbacks(route: &str) -> u64 {
        let labels = RouteLabels {
            route: Arc::from(route),
        };
        metrics().basic_keys.fallbacks.get_or_create(&labels).get()
    }

    #[tokio::test(start_paused = true)]
    async fn the_fallback_is_held_then_the_primary_is_tried_again() {
        let route = "fallback-unit-hold";
        let state = KeyInUse::new(route);
        assert_eq!(state.key(Instant::now()), Key::Primary);
        assert_eq!(gauge(route), 0);
        state.accepted(Key::Fallback, Instant::now(), HOLD);
        assert_eq!((gauge(route), fallbacks(route)), (1, 1));
        tokio::time::advance(HOLD - Duration::from_secs(1)).await;
        assert_eq!(state.key(Instant::now()), Key::Fallback);
        assert_eq!(
            state.fallback_left(Instant::now()),
            Some(Duration::from_secs(1))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(state.fallback_left(Instant::now()), None);
        assert_eq!(state.key(Instant::now()), Key::Primary);
        assert_eq!(gauge(route), 0);
        // The primary still refused: a new switch, counted again.
        state.accepted(Key::Fallback, Instant::now(), HOLD);
        assert_eq!((gauge(route), fallbacks(route)), (1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_meeting_the_same_401_switch_once_and_do_not_extend_the_hold() {
        let route = "fallback-unit-once";
        let state = KeyInUse::new(route);
        let start = Instant::now();
        for _ in 0..5 {
            state.accepted(Key::Fallback, Instant::now(), HOLD);
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        assert_eq!(fallbacks(route), 1);
        assert_eq!(
            state.fallback_left(Instant::now()),
            Some(HOLD - start.elapsed())
        );
        // The primary accepted while on the primary changes nothing.
        let fresh = KeyInUse::new("fallback-unit-once-primary");
        fresh.accepted(Key::Primary, Instant::now(), HOLD);
        assert_eq!(fresh.key(Instant::now()), Key::Primary);
    }

    #[tokio::test(start_paused = true)]
    async fn the_primary_accepted_while_on_the_fallback_ends_the_hold() {
        let route = "fallback-unit-back";
        let state = KeyInUse::new(route);
        state.accepted(Key::Fallback, Instant::now(), HOLD);
        state.accepted(Key::Primary, Instant::now(), HOLD);
        assert_eq!(state.key(Instant::now()), Key::Primary);
        assert_eq!((gauge(route), fallbacks(route)), (0, 1));
    }

    #[test]
    fn debug_shows_the_route_and_the_state_only() {
        let text = format!("{:?}", KeyInUse::new("fallback-unit-debug"));
        assert!(text.contains("fallback-unit-debug"), "{text}");
    }
}
