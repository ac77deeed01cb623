//! Precise waits for the open-loop schedule.
//!
//! tokio's timer wheel has a resolution of one millisecond and rounds every deadline up to the
//! next tick, so a producer that slept until each message's intended send time with
//! `tokio::time::sleep_until` sent most messages up to a millisecond late, in bursts at each
//! tick. Latency counts from the intended time, so that lateness of the generator's own making
//! was charged to the system under test: about half a millisecond on average, more than the
//! whole service time of a small batch. A [`Pacer`] waits on a Linux timerfd (CLOCK_MONOTONIC,
//! the clock of [`Instant`], with nanosecond resolution) registered with the tokio reactor, so a
//! wait ends within the kernel's wake-up latency of its deadline, tens of microseconds here.
//! The producer waits at least `--pacing-quantum-us` each time and then sends every message
//! due, so at high rates it wakes at most once per quantum rather than once per message.
//!
//! Invariant: a wait never ends before its deadline (the timer is armed with the time left, and
//! an early wake-up, which the kernel does not produce, would arm it again).

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::{unix::AsyncFd, Interest};

/// A one-shot timer with nanosecond resolution for one task; see the module documentation.
pub struct Pacer {
    timer: AsyncFd<OwnedFd>,
}

impl Pacer {
    /// A new timer, registered with the current tokio runtime's reactor.
    pub fn new() -> io::Result<Pacer> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nothing else (checked above).
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `fd` is an open timerfd that the `AsyncFd` owns from here on, so it stays
        // open and the same descriptor until the `AsyncFd` is dropped.
        let timer = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Pacer { timer })
    }

    /// Waits until `deadline`; returns at once if it has passed.
    pub async fn sleep_until(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(());
            };
            if left.is_zero() {
                return Ok(());
            }
            self.arm(left)?;
            loop {
                let mut ready = self.timer.readable().await?;
                match ready.try_io(|timer| read_expirations(timer.get_ref().as_fd())) {
                    Ok(Ok(_expirations)) => break,
                    Ok(Err(error)) => return Err(error),
                    // Not expired yet: readiness was cleared, wait again.
                    Err(_would_block) => continue,
                }
            }
        }
    }

    /// Arms the timer to expire once, `left` from now.
    fn arm(&self, left: Duration) -> io::Result<()> {
        let value = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                // Below 10^9, so it fits every c_long.
                tv_nsec: left.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the descriptor is a timerfd owned by `self`; `value` is a valid itimerspec
        // and the old value is not asked for (null).
        let result = unsafe {
            libc::timerfd_settime(
                self.timer.get_ref().as_raw_fd(),
                0,
                &value,
                std::ptr::null_mut(),
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Reads a timerfd's expiration count; `WouldBlock` if it has not expired since the last read.
fn read_expirations(timer: std::os::fd::BorrowedFd<'_>) -> io::Result<u64> {
    let mut count = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a local buffer of 8 bytes from a valid descriptor.
    let read = unsafe { libc::read(timer.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_wait_never_ends_before_its_deadline_and_a_past_deadline_returns_at_once() {
        runtime().block_on(async {
            let mut pacer = Pacer::new().expect("timerfd");
            for micros in [1u64, 50, 200, 700, 1_300] {
                let deadline = Instant::now() + Duration::from_micros(micros);
                pacer.sleep_until(deadline).await.expect("wait");
                assert!(
                    Instant::now() >= deadline,
                    "woke before a {micros} µs deadline"
                );
            }
            let started = Instant::now();
            pacer
                .sleep_until(started - Duration::from_millis(5))
                .await
                .expect("past deadline");
            pacer.sleep_until(started).await.expect("now");
            assert!(started.elapsed() < Duration::from_millis(50));
        });
    }

    #[test]
    fn sub_millisecond_waits_are_not_rounded_up_to_the_timer_wheel_tick() {
        // tokio's sleep ends on a millisecond tick at the earliest after a 100 µs deadline;
        // the pacer ends near the deadline. The median of many waits keeps scheduling noise
        // on a shared machine out of the comparison.
        runtime().block_on(async {
            let mut pacer = Pacer::new().expect("timerfd");
            let mut late_pacer = Vec::new();
            let mut late_tokio = Vec::new();
            for _ in 0..101 {
                let deadline = Instant::now() + Duration::from_micros(100);
                pacer.sleep_until(deadline).await.expect("wait");
                late_pacer.push(Instant::now() - deadline);
                let deadline = Instant::now() + Duration::from_micros(100);
                tokio::time::sleep_until(deadline.into()).await;
                late_tokio.push(Instant::now() - deadline);
            }
            late_pacer.sort();
            late_tokio.sort();
            let (pacer_median, tokio_median) = (late_pacer[50], late_tokio[50]);
            assert!(
                pacer_median < tokio_median,
                "pacer {pacer_median:?} late at the median, tokio {tokio_median:?}"
            );
        });
    }
}
