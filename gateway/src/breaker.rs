//! The circuit breaker of one remote target: closed while it answers, open
//! (skipped by dispatch) after `failures` consecutive failures within
//! `window_ms`, half-open after `cooldown_ms` to let one probe through, and
//! closed again when the probe succeeds. State lives with the target's handle,
//! so a policy reload starts every breaker closed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use watershed_policies::BreakerSettings;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the `watershed_breaker_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    /// Consecutive failures and when the first of them happened.
    streak: u32,
    streak_since: Option<Instant>,
    /// When the breaker opened (for the cool-down) or let its probe through.
    since: Instant,
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings, now: Instant) -> Self {
        Breaker {
            settings,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                streak: 0,
                streak_since: None,
                since: now,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn cooldown(&self) -> Duration {
        Duration::from_millis(self.settings.cooldown_ms)
    }

    pub fn state(&self) -> BreakerState {
        self.with(|i| i.state)
    }

    /// Whether a request may be sent now, and the state it moved to if asking
    /// moved it. An open breaker past its cool-down lets this one request
    /// through as the probe and turns half-open; while the probe is out, others
    /// are refused. A probe whose request was abandoned (the client left, the
    /// deadline ran out) would hold the breaker half-open forever, so after
    /// another cool-down a new probe is let through.
    pub fn admit(&self, now: Instant) -> (bool, Option<BreakerState>) {
        let cooldown = self.cooldown();
        self.with(|i| match i.state {
            BreakerState::Closed => (true, None),
            BreakerState::Open | BreakerState::HalfOpen
                if now.saturating_duration_since(i.since) >= cooldown =>
            {
                let moved = (i.state == BreakerState::Open).then_some(BreakerState::HalfOpen);
                i.state = BreakerState::HalfOpen;
                i.since = now;
                (true, moved)
            }
            BreakerState::Open | BreakerState::HalfOpen => (false, None),
        })
    }

    /// How long until an open breaker lets its probe through (`None` when it
    /// is not open), for the `retry-after` of a request it turned away.
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        let cooldown = self.cooldown();
        self.with(|i| {
            (i.state != BreakerState::Closed)
                .then(|| cooldown.saturating_sub(now.saturating_duration_since(i.since)))
        })
    }

    /// The target answered (or refused the request as bad, which also shows
    /// it is up); returns the state it moved to, if any.
    pub fn success(&self) -> Option<BreakerState> {
        self.with(|i| {
            i.streak = 0;
            i.streak_since = None;
            (i.state != BreakerState::Closed).then(|| {
                i.state = BreakerState::Closed;
                BreakerState::Closed
            })
        })
    }

    /// The target failed for reasons of its own; returns the state it moved
    /// to, if any.
    pub fn failure(&self, now: Instant) -> Option<BreakerState> {
        let window = Duration::from_millis(self.settings.window_ms);
        let threshold = self.settings.failures;
        self.with(|i| match i.state {
            BreakerState::HalfOpen => {
                i.state = BreakerState::Open;
                i.since = now;
                Some(BreakerState::Open)
            }
            BreakerState::Open => None,
            BreakerState::Closed => {
                let fresh = i
                    .streak_since
                    .is_none_or(|first| now.saturating_duration_since(first) > window);
                if fresh {
                    i.streak = 0;
                    i.streak_since = Some(now);
                }
                i.streak += 1;
                (i.streak >= threshold).then(|| {
                    i.state = BreakerState::Open;
                    i.since = now;
                    i.streak = 0;
                    i.streak_since = None;
                    BreakerState::Open
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(now: Instant) -> Breaker {
        Breaker::new(
            BreakerSettings {
                failures: 3,
                window_ms: 1_000,
                cooldown_ms: 500,
            },
            now,
        )
    }

    #[test]
    fn opens_after_consecutive_failures_probes_after_the_cooldown_and_closes_on_success() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let b = breaker(t0);
        assert_eq!(b.failure(ms(0)), None);
        assert_eq!(b.failure(ms(10)), None);
        assert_eq!(b.failure(ms(20)), Some(BreakerState::Open));
        assert_eq!(b.admit(ms(100)), (false, None));
        assert_eq!(b.retry_in(ms(100)), Some(Duration::from_millis(420)));
        // After the cool-down one probe goes through; the others wait for it.
        assert_eq!(b.admit(ms(600)), (true, Some(BreakerState::HalfOpen)));
        assert_eq!(b.admit(ms(610)), (false, None));
        // A failed probe opens it again for another cool-down.
        assert_eq!(b.failure(ms(620)), Some(BreakerState::Open));
        assert_eq!(b.admit(ms(700)), (false, None));
        assert_eq!(b.admit(ms(1200)), (true, Some(BreakerState::HalfOpen)));
        assert_eq!(b.success(), Some(BreakerState::Closed));
        assert_eq!(b.admit(ms(1210)), (true, None));
    }

    #[test]
    fn a_success_or_the_window_resets_the_streak_and_a_lost_probe_is_replaced() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let b = breaker(t0);
        b.failure(ms(0));
        b.failure(ms(10));
        assert_eq!(b.success(), None);
        b.failure(ms(20));
        b.failure(ms(30));
        // Outside the window the streak starts again at one.
        assert_eq!(b.failure(ms(2_000)), None);
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure(ms(2_010));
        assert_eq!(b.failure(ms(2_020)), Some(BreakerState::Open));
        assert_eq!(b.admit(ms(2_600)), (true, Some(BreakerState::HalfOpen)));
        // The probe never reports back: after another cool-down, a new one.
        assert_eq!(b.admit(ms(2_900)), (false, None));
        assert_eq!(b.admit(ms(3_200)), (true, None));
    }
}
