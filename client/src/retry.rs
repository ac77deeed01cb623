//! Retry policy: exponential backoff with full jitter, bounded in attempts and in time.
//!
//! The policy itself is plain arithmetic over an attempt number, a clock reading and a random
//! source handed in by the caller, so it is tested without sleeping. Invariants: a delay is never
//! longer than `backoff_ms_max`; no retry is offered past `retries_max` attempts or past the
//! deadline; only errors that say they are retriable are retried ([`Retriable`]).

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

/// Tells whether an error may succeed if the same operation is tried again.
pub trait Retriable {
    /// Returns true when retrying the failed operation may succeed (a lost connection, a stale
    /// metadata answer), false when it cannot (bad input, an unknown topic that stays unknown).
    fn is_retriable(&self) -> bool;
}

/// How often and how long to retry, and how long to wait between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The most retries after the first attempt (0 = never retry).
    pub retries_max: u32,
    /// The backoff ceiling before the first retry; it doubles with each retry.
    pub backoff_ms_initial: u64,
    /// The largest backoff ceiling, whatever the attempt number.
    pub backoff_ms_max: u64,
    /// The time from the first attempt after which no retry starts.
    pub timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries_max: 10,
            backoff_ms_initial: 50,
            backoff_ms_max: 2_000,
            timeout_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// Returns the backoff ceiling before retry number `retry` (0 for the first retry):
    /// `min(backoff_ms_max, backoff_ms_initial * 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1_u64.checked_shl(retry.min(63)).unwrap_or(u64::MAX);
        let ceiling_ms = self
            .backoff_ms_initial
            .saturating_mul(factor)
            .min(self.backoff_ms_max);
        Duration::from_millis(ceiling_ms)
    }

    /// Returns a delay drawn uniformly from `[0, ceiling(retry)]` ("full jitter"), which spreads
    /// the retries of many clients so they do not hit a recovering broker in step.
    pub fn jittered_delay<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let ceiling_ms = self.ceiling(retry).as_millis() as u64;
        Duration::from_millis(rng.gen_range(0..=ceiling_ms))
    }

    /// Starts tracking the retries of one operation whose first attempt begins at `started`.
    pub fn start(&self, started: Instant) -> RetryState {
        RetryState {
            policy: *self,
            deadline: started + Duration::from_millis(self.timeout_ms),
            retries_done: 0,
        }
    }
}

/// The retries left to one operation: how many were done and when time runs out.
#[derive(Debug, Clone)]
pub struct RetryState {
    policy: RetryPolicy,
    deadline: Instant,
    retries_done: u32,
}

impl RetryState {
    /// Returns how long to wait before the next retry, or `None` when no retry is left: the
    /// attempts are used up, or the retry would start at or past the deadline.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Option<Duration> {
        if self.retries_done >= self.policy.retries_max {
            return None;
        }
        let delay = self.policy.jittered_delay(self.retries_done, rng);
        if now + delay >= self.deadline {
            return None;
        }
        self.retries_done += 1;
        Some(delay)
    }

    /// Returns the number of retries handed out so far.
    pub fn retries_done(&self) -> u32 {
        self.retries_done
    }

    /// Returns the instant after which no retry starts.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Runs `operation` until it succeeds, fails with an error that is not retriable, or the policy
/// runs out; between tries it waits a jittered backoff and calls `on_retry` with the error (for
/// example to refresh metadata). Returns the last error when it gives up.
pub async fn with_retries<T, E, Op, Fut, OnRetry, OnRetryFut>(
    policy: &RetryPolicy,
    mut operation: Op,
    mut on_retry: OnRetry,
) -> Result<T, E>
where
    E: Retriable,
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    OnRetry: FnMut(&E) -> OnRetryFut,
    OnRetryFut: Future<Output = ()>,
{
    let mut state = policy.start(Instant::now());
    loop {
        let error = match operation().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !error.is_retriable() {
            return Err(error);
        }
        let delay = state.next_delay(Instant::now(), &mut rand::thread_rng());
        let Some(delay) = delay else {
            return Err(error);
        };
        tracing::debug!(
            retry = state.retries_done(),
            delay_ms = delay.as_millis() as u64,
            "retrying"
        );
        on_retry(&error).await;
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::cell::Cell;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            retries_max: 8,
            backoff_ms_initial: 10,
            backoff_ms_max: 500,
            timeout_ms: 60_000,
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let policy = policy();
        let ceilings: Vec<u64> = (0..8)
            .map(|retry| policy.ceiling(retry).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, vec![10, 20, 40, 80, 160, 320, 500, 500]);
        // Huge attempt numbers saturate instead of overflowing.
        assert_eq!(policy.ceiling(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn jittered_delays_stay_within_the_ceiling_and_use_its_range() {
        let policy = policy();
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 0..10 {
            let ceiling = policy.ceiling(retry);
            let delays: Vec<Duration> = (0..2_000)
                .map(|_| policy.jittered_delay(retry, &mut rng))
                .collect();
            assert!(delays.iter().all(|delay| *delay <= ceiling));
            // Full jitter: draws land in both the low and the high quarter of the range.
            assert!(delays.iter().any(|delay| *delay <= ceiling / 4));
            assert!(delays.iter().any(|delay| *delay >= ceiling * 3 / 4));
        }
    }

    #[test]
    fn retries_stop_after_retries_max() {
        let policy = RetryPolicy {
            retries_max: 3,
            ..policy()
        };
        let now = Instant::now();
        let mut state = policy.start(now);
        let mut rng = StdRng::seed_from_u64(1);
        let granted = std::iter::from_fn(|| state.next_delay(now, &mut rng)).count();
        assert_eq!(granted, 3);
        assert_eq!(state.retries_done(), 3);
    }

    #[test]
    fn retries_stop_at_the_deadline() {
        let policy = RetryPolicy {
            retries_max: 1_000,
            timeout_ms: 100,
            ..policy()
        };
        let started = Instant::now();
        let mut state = policy.start(started);
        let mut rng = StdRng::seed_from_u64(3);
        assert!(state.next_delay(started, &mut rng).is_some());
        assert!(state
            .next_delay(started + Duration::from_millis(100), &mut rng)
            .is_none());
        assert!(state
            .next_delay(started + Duration::from_secs(5), &mut rng)
            .is_none());
    }

    #[derive(Debug, PartialEq)]
    struct TestError {
        retriable: bool,
    }

    impl Retriable for TestError {
        fn is_retriable(&self) -> bool {
            self.retriable
        }
    }

    fn fast_policy(retries_max: u32) -> RetryPolicy {
        RetryPolicy {
            retries_max,
            backoff_ms_initial: 1,
            backoff_ms_max: 2,
            timeout_ms: 10_000,
        }
    }

    #[tokio::test]
    async fn with_retries_retries_retriable_errors_until_success() {
        let calls = Cell::new(0_u32);
        let refreshes = Cell::new(0_u32);
        let result = with_retries(
            &fast_policy(5),
            || {
                calls.set(calls.get() + 1);
                let outcome = if calls.get() < 3 {
                    Err(TestError { retriable: true })
                } else {
                    Ok(calls.get())
                };
                async move { outcome }
            },
            |_| {
                refreshes.set(refreshes.get() + 1);
                async {}
            },
        )
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(refreshes.get(), 2);
    }

    #[tokio::test]
    async fn with_retries_does_not_retry_a_fatal_error() {
        let calls = Cell::new(0_u32);
        let result: Result<(), TestError> = with_retries(
            &fast_policy(5),
            || {
                calls.set(calls.get() + 1);
                async { Err(TestError { retriable: false }) }
            },
            |_| async {},
        )
        .await;
        assert_eq!(result, Err(TestError { retriable: false }));
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test]
    async fn with_retries_gives_up_after_retries_max() {
        let calls = Cell::new(0_u32);
        let result: Result<(), TestError> = with_retries(
            &fast_policy(2),
            || {
                calls.set(calls.get() + 1);
                async { Err(TestError { retriable: true }) }
            },
            |_| async {},
        )
        .await;
        assert_eq!(result, Err(TestError { retriable: true }));
        assert_eq!(calls.get(), 3);
    }
}
