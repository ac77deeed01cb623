//! A single-threaded change notification: tasks on one executor wait until the log's state has
//! changed, then re-check their condition.
//!
//! Owns only wakers and a generation counter; no I/O, nothing survives a crash. Invariant: a
//! waiter that read generation `g` and then awaits `wait(g)` is woken by any `notify_all` after
//! its read, because nothing can run between the read and the first poll on a single-threaded
//! executor.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

/// Wakes every waiting task when the state it watches changes.
#[derive(Debug, Default)]
pub(crate) struct Notify {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    /// The current generation; pass it to [`Notify::wait`] after checking a condition.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Starts a new generation and wakes every waiter.
    pub(crate) fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves once the generation differs from `generation`.
    pub(crate) fn wait(&self, generation: u64) -> Wait<'_> {
        Wait {
            notify: self,
            generation,
        }
    }
}

/// Future returned by [`Notify::wait`].
pub(crate) struct Wait<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut wakers = self.notify.wakers.borrow_mut();
        if !wakers.iter().any(|waker| waker.will_wake(context.waker())) {
            wakers.push(context.waker().clone());
        }
        Poll::Pending
    }
}
