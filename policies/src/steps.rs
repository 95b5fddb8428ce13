//! A deterministic work counter for the linear-time guard tests: the scanners add how
//! many bytes each inner loop examined, so a test can assert "work ≤ C · length"
//! without timing anything (timing on a shared machine is noise, work is not).
//!
//! The counter is per thread, so tests running in parallel do not disturb each other,
//! and it costs one addition per candidate. It is not part of the API.

use std::cell::Cell;

thread_local! {
    static STEPS: Cell<u64> = const { Cell::new(0) };
}

/// Records `n` units of work: bytes examined, or hits compared.
#[inline]
pub(crate) fn add(n: usize) {
    STEPS.with(|s| s.set(s.get().wrapping_add(n as u64)));
}

/// The work recorded on this thread since the last call; resets the counter.
pub fn take() -> u64 {
    STEPS.with(|s| s.replace(0))
}
