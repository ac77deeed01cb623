//! A backend wrapper that injects failures and counts operations, for tests of the log's error
//! paths and of its no-I/O claims.
//!
//! It owns a [`FaultPlan`] (shared with the test through an `Rc`) and forwards every operation
//! to the wrapped backend unless the plan says it fails. A failed write or preallocation touches
//! no bytes, as if the device refused it up front. It can hold writes back (so a test controls
//! when they complete) and records how many writes of one file ran at once and whether two
//! running writes of one file ever covered the same block. It keeps no state on disk.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    rc::Rc,
};

use crate::notify::Notify;

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
    /// Most writes of one file running at the same time.
    pub writes_in_flight_max: u64,
    /// Writes started while a running write of the same file covered one of their blocks.
    pub overlapping_writes: u64,
    /// Writes waiting because of [`FaultPlan::set_hold_writes`].
    pub writes_held: u64,
}

/// A running write: its file and its blocks `[first, end)`.
#[derive(Debug, Clone)]
struct RunningWrite {
    id: u64,
    block_first: u64,
    block_end: u64,
}

/// What to fail, shared between a test and its [`FaultInjectingBackend`].
#[derive(Debug, Default)]
pub struct FaultPlan {
    disk_full: Cell<bool>,
    preallocations_fail: Cell<bool>,
    write_failure_countdown: Cell<Option<(u64, i32)>>,
    sync_failures_left: Cell<u64>,
    fail_reads: Cell<bool>,
    hold_writes: Cell<bool>,
    releases: Cell<u64>,
    running: RefCell<HashMap<PathBuf, Vec<RunningWrite>>>,
    write_id_next: Cell<u64>,
    changed: Notify,
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

    /// While set, writes wait before they reach the device; clearing it lets them go on.
    pub fn set_hold_writes(&self, hold: bool) {
        self.hold_writes.set(hold);
        self.changed.notify_all();
    }

    /// Lets `count` of the held writes go on (whichever wake first) while the others, and later
    /// writes, stay held.
    pub fn release_held_writes(&self, count: u64) {
        self.releases.set(self.releases.get() + count);
        self.changed.notify_all();
    }

    /// Waits until at least `count` writes are held by [`FaultPlan::set_hold_writes`].
    pub async fn wait_writes_held(&self, count: u64) {
        loop {
            let generation = self.changed.generation();
            if self.counts().writes_held >= count {
                return;
            }
            self.changed.wait(generation).await;
        }
    }

    /// Operation counts so far.
    pub fn counts(&self) -> IoCounts {
        *self.counts.borrow()
    }

    fn count(&self, update: impl FnOnce(&mut IoCounts)) {
        update(&mut self.counts.borrow_mut());
    }

    /// Registers a running write of blocks `[block_first, block_end)` of `path`.
    fn begin_write(&self, path: &Path, block_first: u64, block_end: u64) -> u64 {
        let id = self.write_id_next.get();
        self.write_id_next.set(id + 1);
        let mut running = self.running.borrow_mut();
        let writes = running.entry(path.to_path_buf()).or_default();
        let overlaps = writes
            .iter()
            .any(|write| write.block_first < block_end && block_first < write.block_end);
        writes.push(RunningWrite {
            id,
            block_first,
            block_end,
        });
        let in_flight = writes.len() as u64;
        drop(running);
        self.count(|counts| {
            counts.overlapping_writes += u64::from(overlaps);
            counts.writes_in_flight_max = counts.writes_in_flight_max.max(in_flight);
        });
        id
    }

    fn end_write(&self, path: &Path, id: u64) {
        if let Some(writes) = self.running.borrow_mut().get_mut(path) {
            writes.retain(|write| write.id != id);
        }
    }

    /// Waits while writes are held.
    async fn hold(&self) {
        if !self.hold_writes.get() {
            return;
        }
        self.count(|counts| counts.writes_held += 1);
        self.changed.notify_all();
        loop {
            let generation = self.changed.generation();
            if !self.hold_writes.get() {
                break;
            }
            if self.releases.get() > 0 {
                self.releases.set(self.releases.get() - 1);
                break;
            }
            self.changed.wait(generation).await;
        }
        self.count(|counts| counts.writes_held -= 1);
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
                path: path.to_path_buf(),
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
    path: PathBuf,
}

impl StorageFile for FaultInjectingFile {
    fn alignment(&self) -> u64 {
        self.inner.alignment()
    }

    fn write_at<'a>(&'a self, position: u64, parts: &'a [&'a [u8]]) -> IoFuture<'a, usize> {
        Box::pin(async move {
            self.plan.count(|counts| counts.writes += 1);
            let alignment = self.inner.alignment();
            let end = position + parts_len(parts) as u64;
            let block_end = end.div_ceil(alignment).max(position / alignment + 1);
            let id = self
                .plan
                .begin_write(&self.path, position / alignment, block_end);
            self.plan.hold().await;
            let written = match self.plan.write_fault() {
                Some(error) => Err(error),
                None => self.inner.write_at(position, parts).await,
            };
            self.plan.end_write(&self.path, id);
            let written = written?;
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
