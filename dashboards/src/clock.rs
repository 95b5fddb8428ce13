//! The one source of the time of day for everything that decides by it:
//! budget windows, rollup days, report periods, dashboard defaults and the
//! price in force. Production passes the wall clock; tests pass a fixed or
//! stepped one, so no outcome depends on the date a test happens to run.
//!
//! Durations (latency, timeouts) are measured with `Instant` and are not the
//! clock's business: only calendar decisions go through here.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// Tells the time. Object safe: stored as [`SharedClock`].
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant, UTC.
    fn now(&self) -> DateTime<Utc>;

    /// The current instant as unix milliseconds.
    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// A clock as the application holds it.
pub type SharedClock = Arc<dyn Clock>;

/// The environment variable that starts the gateway's clock at a given
/// RFC 3339 instant, from which it runs at the wall clock's pace. For
/// end-to-end tests that must see the same calendar on any day (and for
/// rehearsing a month end); unset in production.
pub const CLOCK_START_ENV: &str = "WATERSHED_CLOCK_START";

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// The wall clock shifted by a fixed offset: it reads `start` at the moment
/// it is made and then advances in real time.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset: Duration,
}

impl OffsetClock {
    /// A clock that reads `start` now.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        OffsetClock {
            offset: start - Utc::now(),
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

/// A clock that moves only when told to: for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock stopped at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(now),
        }
    }

    /// A shared clock stopped at `now`, and the handle that moves it.
    pub fn shared(now: DateTime<Utc>) -> (Arc<ManualClock>, SharedClock) {
        let c = Arc::new(ManualClock::new(now));
        (c.clone(), c)
    }

    /// Moves the clock to `t`.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.lock() = t;
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut g = self.lock();
        *g += d;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        match self.now.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

/// The clock the process runs on: the wall clock, or one started at
/// `WATERSHED_CLOCK_START` when that is set. A value that is not RFC 3339 is
/// an error, never silently the wall clock.
pub fn from_env() -> Result<SharedClock, String> {
    match std::env::var(CLOCK_START_ENV) {
        Ok(v) if !v.trim().is_empty() => parse_start(&v),
        _ => Ok(system()),
    }
}

fn parse_start(v: &str) -> Result<SharedClock, String> {
    DateTime::parse_from_rfc3339(v.trim())
        .map(|t| Arc::new(OffsetClock::starting_at(t.with_timezone(&Utc))) as SharedClock)
        .map_err(|e| format!("{CLOCK_START_ENV}={v:?} is not an RFC 3339 instant: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let (handle, clock) = ManualClock::shared(at("2026-12-31T23:59:50Z"));
        assert_eq!(clock.now(), at("2026-12-31T23:59:50Z"));
        handle.advance(Duration::seconds(15));
        assert_eq!(clock.now(), at("2027-01-01T00:00:05Z"));
        handle.set(at("2028-02-29T12:00:00Z"));
        assert_eq!(
            clock.now_ms(),
            at("2028-02-29T12:00:00Z").timestamp_millis()
        );
    }

    #[test]
    fn an_offset_clock_starts_where_it_is_told_and_runs() {
        let c = parse_start("2028-02-29T12:00:00Z").unwrap();
        let first = c.now();
        assert!((first - at("2028-02-29T12:00:00Z")).num_seconds().abs() < 60);
        assert!(c.now() >= first);
        let err = parse_start("tomorrow").unwrap_err();
        assert!(err.contains("WATERSHED_CLOCK_START"), "{err}");
    }
}
