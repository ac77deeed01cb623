//! Single-threaded wake-ups: a set-once [`Latch`] (shutdown) and a counting [`Signal`] (appends
//! that long-polling fetches wait on).
//!
//! Both live on one shard and are never shared across threads, so they use `Cell`/`RefCell`
//! rather than atomics. Invariant: a waiter registered before a `set`/`notify` is always woken by
//! it; wakers are dropped once woken, so the waiter list is bounded by the number of tasks
//! currently waiting (itself bounded by connections × in-flight requests). A [`LatchWait`] also
//! removes its waker when it is dropped unwoken: every idle connection waits on the shard's
//! draining latch between frames, and a waker kept after that wait ended would keep the whole
//! connection task's memory alive until shutdown. A [`Signal`] cannot tell a waiter that stopped
//! waiting (a long-poll fetch that timed out) from one still waiting, so its list is capped at
//! [`SIGNAL_WAKERS_MAX`]: registering past the cap wakes every listed waiter once (a spurious
//! wake-up; a waiter still waiting re-checks and registers again) and forgets them, so a quiet
//! partition polled by timed-out fetches never accumulates their tasks' memory.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A flag that goes from unset to set once and wakes everyone waiting for it.
#[derive(Debug, Default)]
pub struct Latch {
    set: Cell<bool>,
    /// The waker of every pending [`LatchWait`], by its waiter id.
    wakers: RefCell<HashMap<u64, Waker>>,
    next_waiter_id: Cell<u64>,
}

impl Latch {
    /// Sets the latch and wakes every waiter.
    pub fn set(&self) {
        self.set.set(true);
        // Taken out first: no borrow is held while the wakers run.
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    /// Whether the latch is set.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Completes once the latch is set.
    pub fn wait(&self) -> LatchWait<'_> {
        LatchWait {
            latch: self,
            waiter_id: None,
        }
    }
}

/// The future returned by [`Latch::wait`]: holds one registration (its latest waker) while
/// pending, removed when it completes or is dropped.
#[derive(Debug)]
pub struct LatchWait<'a> {
    latch: &'a Latch,
    waiter_id: Option<u64>,
}

impl Future for LatchWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let latch = self.latch;
        if latch.set.get() {
            if let Some(waiter_id) = self.waiter_id.take() {
                latch.wakers.borrow_mut().remove(&waiter_id);
            }
            return Poll::Ready(());
        }
        let waiter_id = *self.waiter_id.get_or_insert_with(|| {
            let waiter_id = latch.next_waiter_id.get();
            latch.next_waiter_id.set(waiter_id + 1);
            waiter_id
        });
        latch
            .wakers
            .borrow_mut()
            .insert(waiter_id, context.waker().clone());
        Poll::Pending
    }
}

impl Drop for LatchWait<'_> {
    fn drop(&mut self) {
        if let Some(waiter_id) = self.waiter_id.take() {
            self.latch.wakers.borrow_mut().remove(&waiter_id);
        }
    }
}

/// Most wakers a [`Signal`] keeps before it wakes and forgets them all (see the module docs).
pub const SIGNAL_WAKERS_MAX: usize = 256;

/// A counter of events (e.g. appends to a partition); waiters wait for it to pass a value.
#[derive(Debug, Default)]
pub struct Signal {
    count: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    /// The number of events so far.
    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// Records one event and wakes every waiter.
    pub fn notify(&self) {
        self.count.set(self.count.get() + 1);
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Registers `waker` to be woken at the next event, unless the count already differs from
    /// `seen`; returns whether an event happened since `seen`.
    pub fn changed_since(&self, seen: u64, waker: &Waker) -> bool {
        if self.count.get() != seen {
            return true;
        }
        let stale = {
            let mut wakers = self.wakers.borrow_mut();
            if wakers.iter().any(|existing| existing.will_wake(waker)) {
                return false;
            }
            let stale = if wakers.len() >= SIGNAL_WAKERS_MAX {
                std::mem::take(&mut *wakers)
            } else {
                Vec::new()
            };
            wakers.push(waker.clone());
            stale
        };
        // Woken after the borrow ends: a waker may run code that registers again.
        for waker in stale {
            waker.wake();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn latch_wakes_waiters_and_stays_set() {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let latch = Rc::new(Latch::default());
                let waiter = {
                    let latch = Rc::clone(&latch);
                    glommio::spawn_local(async move { latch.wait().await })
                };
                glommio::yield_if_needed().await;
                assert!(!latch.is_set());
                latch.set();
                waiter.await;
                latch.wait().await;
                assert!(latch.is_set());
            })
            .unwrap();
        executor.join().unwrap();
    }

    #[test]
    fn a_latch_wait_keeps_one_waker_and_removes_it_when_dropped() {
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|context| {
            Poll::Ready(context.waker().clone())
        }));
        let mut context = Context::from_waker(&waker);
        let latch = Latch::default();
        // Many waits that end unwoken (an idle connection's reads) leave nothing behind.
        for _ in 0..1_000 {
            let mut wait = latch.wait();
            assert!(Pin::new(&mut wait).poll(&mut context).is_pending());
            assert!(Pin::new(&mut wait).poll(&mut context).is_pending());
            assert_eq!(latch.wakers.borrow().len(), 1, "one waker per waiter");
        }
        assert!(
            latch.wakers.borrow().is_empty(),
            "dropped waits are forgotten"
        );
        let mut wait = latch.wait();
        assert!(Pin::new(&mut wait).poll(&mut context).is_pending());
        latch.set();
        assert!(latch.wakers.borrow().is_empty());
        assert!(Pin::new(&mut wait).poll(&mut context).is_ready());
    }

    #[test]
    fn signal_reports_events_since_a_count() {
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|context| {
            Poll::Ready(context.waker().clone())
        }));
        let signal = Signal::default();
        let seen = signal.count();
        assert!(!signal.changed_since(seen, &waker));
        assert!(!signal.changed_since(seen, &waker));
        assert_eq!(signal.wakers.borrow().len(), 1, "one waker per waiter");
        signal.notify();
        assert!(signal.wakers.borrow().is_empty());
        assert!(signal.changed_since(seen, &waker));
        assert!(!signal.changed_since(signal.count(), &waker));
    }

    /// Counts how often it was woken.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn signal_forgets_waiters_that_stopped_waiting_once_past_its_cap() {
        let signal = Signal::default();
        let seen = signal.count();
        // Many fetches that registered and then timed out, with no event in between.
        let counters: Vec<std::sync::Arc<CountingWaker>> = (0..SIGNAL_WAKERS_MAX * 4)
            .map(|_| std::sync::Arc::new(CountingWaker(Default::default())))
            .collect();
        for counter in &counters {
            let waker = Waker::from(std::sync::Arc::clone(counter));
            assert!(!signal.changed_since(seen, &waker));
            assert!(signal.wakers.borrow().len() <= SIGNAL_WAKERS_MAX);
        }
        // Every forgotten waiter was woken once, so a live one would have registered again;
        // the ones still listed are woken by the next event.
        signal.notify();
        for counter in &counters {
            assert_eq!(counter.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        }
        assert!(signal.wakers.borrow().is_empty());
    }
}
