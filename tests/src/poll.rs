//! Deadline polls: wait for a readiness condition instead of sleeping a fixed time. The
//! condition is checked every few milliseconds up to a bounded deadline; past it
//! [`wait_for`] and [`wait_until`] fail the test naming what they waited for.

use std::time::{Duration, Instant};

/// How often a condition is checked.
pub const POLL_EVERY: Duration = Duration::from_millis(5);

/// The first `Some` that `probe` returns, checked every [`POLL_EVERY`] until `timeout` has
/// passed (and once more at the deadline); `None` if it never did.
pub fn poll_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            // One last look: the deadline may have passed while `probe` ran.
            return probe();
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// The first `Some` that `probe` returns (see [`poll_for`]); a panic naming `what` once
/// `timeout` has passed.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    match poll_for(timeout, probe) {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Wait until `cond` holds (see [`wait_for`]); how long it took.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    wait_for(what, timeout, || cond().then_some(()));
    start.elapsed()
}
