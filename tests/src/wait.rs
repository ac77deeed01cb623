//! Waiting on a condition with a deadline, the tests' only way to synchronise with a broker.
//!
//! A test never sleeps for a fixed time hoping something happened: it polls a condition with a
//! short, growing backoff (from [`POLL_INTERVAL_INITIAL`] doubling up to [`POLL_INTERVAL_MAX`])
//! until it holds or the deadline passes, and then fails with a message that says what did not
//! happen. The blocking form suits synchronous tests; the async form yields to the runtime.

use std::time::{Duration, Instant};

/// First pause between two polls.
pub const POLL_INTERVAL_INITIAL: Duration = Duration::from_millis(2);
/// Longest pause between two polls.
pub const POLL_INTERVAL_MAX: Duration = Duration::from_millis(100);

fn next_interval(interval: Duration, deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    (interval * 2).min(POLL_INTERVAL_MAX).min(left)
}

/// Polls `condition` until it returns true, or fails the test after `timeout` with "timed out
/// after …: `what`".
pub fn wait_until(timeout: Duration, what: &str, condition: impl FnMut() -> bool) {
    if !poll_until(timeout, condition) {
        panic!("timed out after {timeout:?}: {what}");
    }
}

/// Polls `condition` until it returns true (then `true`) or `timeout` passes (then `false`).
pub fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut interval = POLL_INTERVAL_INITIAL;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(interval.min(deadline.saturating_duration_since(Instant::now())));
        interval = next_interval(interval, deadline);
    }
}

/// Polls `condition` until it returns `Some`, and returns the value; fails the test after
/// `timeout` with "timed out after …: `what`".
pub fn wait_for<T>(timeout: Duration, what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    wait_until(timeout, what, || {
        found = condition();
        found.is_some()
    });
    found.expect("wait_until returned, so the condition produced a value")
}

/// The async form of [`wait_until`]: polls the future `condition` returns, yielding between
/// polls, until it resolves to true; fails the test after `timeout`.
pub async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    let mut interval = POLL_INTERVAL_INITIAL;
    loop {
        if condition().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?}: {what}");
        }
        tokio::time::sleep(interval.min(deadline.saturating_duration_since(Instant::now()))).await;
        interval = next_interval(interval, deadline);
    }
}
