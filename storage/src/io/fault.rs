//! A backend wrapper that injects failures and counts operations, for tests of the log's error
//! paths and of its no-I/O claims.
//!
//! It owns a [`FaultPlan`] (shared with the test through an `Rc`) and forwards every operation
//! to the wrapped backend unless the plan says it fails. A failed write or preallocation touches
//! no bytes, as if the device refused it up front. It keeps no state on disk.

use std::{
    cell::{Cell, RefCell},
    io,
    path::Path,
    rc::Rc,
};

use bytes::Bytes;

use super::{parts_len, FileHandle, IoFuture, OpenMode, StorageBackend, StorageFile};

/// Operation counts seen by a [`FaultInjectingBackend`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IoCounts {
    /// Reads issued (including failed ones).
    pub reads: u64,
    /// Writes issued (including failed ones).
    pub writes: u64,
    /// fdatasyncs issued (including failed ones).
    pub syncs: u64,
    /// Preallocations issued.
    pub preallocates: u64,
    /// Truncations issued.
    pub truncates: u64,
    /// Bytes returned by successful reads.
    pub bytes_read: u64,
    /// Bytes accepted by successful writes.
    pub bytes_written: u64,
}

/// What to fail, shared between a test and its [`FaultInjectingBackend`].
#[derive(Debug, Default)]
pub struct FaultPlan {
    disk_full: Cell<bool>,
    preallocations_fail: Cell<bool>,
    write_failure_countdown: Cell<Option<(u64, i32)>>,
    sync_failures_left: Cell<u64>,
    fail_reads: Cell<bool>,
    counts: RefCell<IoCounts>,
}

impl FaultPlan {
    /// A plan that fails nothing.
    pub fn new() -> Rc<Self> {
        Rc::new(FaultPlan::default())
    }

    /// While set, every write and preallocation fails with ENOSPC.
    pub fn set_disk_full(&self, full: bool) {
        self.disk_full.set(full);
    }

    /// While set, every preallocation fails with ENOSPC (writes still succeed).
    pub fn set_preallocations_fail(&self, fail: bool) {
        self.preallocations_fail.set(fail);
    }

    /// The `nth` write from now (1 = the next one) fails once with `errno`.
    pub fn fail_nth_write(&self, nth: u64, errno: i32) {
        self.write_failure_countdown.set(Some((nth.max(1), errno)));
    }

    /// The next `count` fdatasyncs fail with EIO.
    pub fn fail_next_syncs(&self, count: u64) {
        self.sync_failures_left.set(count);
    }

    /// While set, every read fails with EIO.
    pub fn set_fail_reads(&self, fail: bool) {
        self.fail_reads.set(fail);
    }

    /// Operation counts so far.
    pub fn counts(&self) -> IoCounts {
        *self.counts.borrow()
    }

    fn count(&self, update: impl FnOnce(&mut IoCounts)) {
        update(&mut self.counts.borrow_mut());
    }

    fn write_fault(&self) -> Option<io::Error> {
        if self.disk_full.get() {
            return Some(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        match self.write_failure_countdown.get() {
            Some((1, errno)) => {
                self.write_failure_countdown.set(None);
                Some(io::Error::from_raw_os_error(errno))
            }
            Some((left, errno)) => {
                self.write_failure_countdown.set(Some((left - 1, errno)));
                None
            }
            None => None,
        }
    }

    fn sync_fault(&self) -> Option<io::Error> {
        let left = self.sync_failures_left.get();
        if left == 0 {
            return None;
        }
        self.sync_failures_left.set(left - 1);
        Some(io::Error::from_raw_os_error(libc::EIO))
    }
}

/// Wraps a backend and applies a [`FaultPlan`] to its files.
pub struct FaultInjectingBackend {
    inner: Rc<dyn StorageBackend>,
    plan: Rc<FaultPlan>,
}

impl FaultInjectingBackend {
    /// Wraps `inner`; `plan` decides what fails.
    pub fn new(inner: Rc<dyn StorageBackend>, plan: Rc<FaultPlan>) -> Self {
        FaultInjectingBackend { inner, plan }
    }
}

impl StorageBackend for FaultInjectingBackend {
    fn prepare_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        self.inner.prepare_dir(dir)
    }

    fn open<'a>(&'a self, path: &'a Path, mode: OpenMode) -> IoFuture<'a, FileHandle> {
        Box::pin(async move {
            let inner = self.inner.open(path, mode).await?;
            let handle: FileHandle = Rc::new(FaultInjectingFile {
                inner,
                plan: self.plan.clone(),
            });
            Ok(handle)
        })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        self.inner.remove(path)
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        self.inner.sync_dir(dir)
    }
}

struct FaultInjectingFile {
    inner: FileHandle,
    plan: Rc<FaultPlan>,
}

impl StorageFile for FaultInjectingFile {
    fn alignment(&self) -> u64 {
        self.inner.alignment()
    }

    fn write_at<'a>(&'a self, position: u64, parts: &'a [&'a [u8]]) -> IoFuture<'a, usize> {
        Box::pin(async move {
            self.plan.count(|counts| counts.writes += 1);
            if let Some(error) = self.plan.write_fault() {
                return Err(error);
            }
            let written = self.inner.write_at(position, parts).await?;
            self.plan
                .count(|counts| counts.bytes_written += written as u64);
            debug_assert_eq!(written, parts_len(parts));
            Ok(written)
        })
    }

    fn read_at(&self, position: u64, length: usize) -> IoFuture<'_, Bytes> {
        Box::pin(async move {
            self.plan.count(|counts| counts.reads += 1);
            if self.plan.fail_reads.get() {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let bytes = self.inner.read_at(position, length).await?;
            self.plan
                .count(|counts| counts.bytes_read += bytes.len() as u64);
            Ok(bytes)
        })
    }

    fn sync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.plan.count(|counts| counts.syncs += 1);
            if let Some(error) = self.plan.sync_fault() {
                return Err(error);
            }
            self.inner.sync().await
        })
    }

    fn preallocate(&self, length_bytes: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.plan.count(|counts| counts.preallocates += 1);
            if self.plan.disk_full.get() || self.plan.preallocations_fail.get() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.inner.preallocate(length_bytes).await
        })
    }

    fn truncate(&self, length_bytes: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.plan.count(|counts| counts.truncates += 1);
            self.inner.truncate(length_bytes).await
        })
    }

    fn size(&self) -> IoFuture<'_, u64> {
        self.inner.size()
    }

    fn close(&self) -> IoFuture<'_, ()> {
        self.inner.close()
    }
}
