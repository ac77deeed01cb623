//! The partition log: its public API, its in-memory state, and the rules that tie the state to
//! what is on disk.
//!
//! Owns one partition directory. A [`PartitionLog`] lives on one glommio executor (it is
//! `!Send`); every method takes `&self` and the state sits in a `RefCell` that is never borrowed
//! across an `.await`, so several tasks may append, read and flush concurrently. Sync points,
//! rolls and segment creation are serialized by a first-come-first-served writer role;
//! admissions (offset assignment) and the issuing of log writes are synchronous and therefore
//! atomic, so writes are issued in position order whichever task issues them.
//!
//! Offsets, from low to high, always satisfy
//! `log_start_offset <= durable_end_offset <= written_end_offset <= log_end_offset`:
//! below `durable_end_offset` the batches are fdatasynced; below `written_end_offset` they are
//! in the segment file; the rest are in the write buffer (`unwritten`), in memory, possibly
//! also in the file already (under `Always` a batch leaves the buffer only once it is durable). Every batch
//! at or above `written_end_offset` is in memory, so reads never see stale disk bytes. The tail
//! cache holds a contiguous run of written batches that ends at `written_end_offset`.
//!
//! What a crash leaves behind is described in the crate documentation: at most a torn or
//! unacknowledged tail in the last segment, and index entries that recovery checks and repairs.

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    rc::Rc,
    time::Duration,
};

use bytes::Bytes;

use crate::{
    config::{FlushPolicy, LogConfig},
    error::{CloseError, IoFailure, IoOperation},
    io::{DmaBackend, FileHandle, StorageBackend},
    layout::SegmentPaths,
    notify::Notify,
    segment::{IndexBuilder, SealedSegment, SegmentIndex},
    tail_cache::TailCache,
};

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the batch's first record.
    pub base_offset: i64,
    /// Offset of the batch's last record.
    pub last_offset: i64,
    /// The batch's `maxTimestamp`, in milliseconds.
    pub max_timestamp_ms: i64,
    /// Size of the stored batch in bytes.
    pub size_bytes: u32,
    /// First offset of the log when the append was acknowledged.
    pub log_start_offset: i64,
}

/// Whole batches returned by [`PartitionLog::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBatches {
    /// Whole batches in offset order, the first one containing the asked offset. Each is a
    /// zero-copy slice of the tail cache, the write buffer or one disk read.
    pub batches: Vec<Bytes>,
    /// First offset of the log.
    pub log_start_offset: i64,
    /// Offset below which readers may read (see [`PartitionLog::stable_end_offset`]).
    pub stable_end_offset: i64,
}

/// What [`PartitionLog::enforce_retention`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Whole segments deleted.
    pub segments_deleted: u32,
    /// Bytes of log files deleted.
    pub bytes_deleted: u64,
    /// First offset of the log afterwards.
    pub log_start_offset: i64,
}

/// Counters and sizes of one log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Reads served entirely from memory.
    pub tail_cache_hits: u64,
    /// Reads that went to a segment file.
    pub tail_cache_misses: u64,
    /// Bytes held by the tail cache.
    pub tail_cache_bytes: usize,
    /// Batches held by the tail cache.
    pub tail_cache_batches: usize,
    /// Bytes of batches accepted by appends (including any later failed by I/O).
    pub bytes_appended: u64,
    /// Batches accepted by appends.
    pub batches_appended: u64,
    /// Bytes appended but not yet written to a segment file.
    pub write_buffer_bytes: usize,
    /// Log writes issued (each a chunk of whole blocks, or the rest of the buffer up to a sync
    /// point).
    pub log_write_count: u64,
    /// fdatasyncs of segment files issued.
    pub fsync_count: u64,
    /// Total time spent in those fdatasyncs, in microseconds.
    pub fsync_time_total_us: u64,
    /// Disk reads issued by reads and timestamp lookups.
    pub disk_read_count: u64,
    /// Write-outs or syncs that failed.
    pub flush_error_count: u64,
    /// Appends that found the write buffer full and waited for the disk before being admitted.
    pub write_buffer_full_count: u64,
    /// Total time those appends waited, in microseconds.
    pub write_buffer_full_time_total_us: u64,
    /// Segments, the active one included.
    pub segment_count: usize,
    /// Bytes of all segments (logical sizes).
    pub size_bytes: u64,
    /// First offset of the log.
    pub log_start_offset: i64,
    /// Next offset the log will assign.
    pub log_end_offset: i64,
}

/// Monotonic counters, kept outside the state so updating them never conflicts with a borrow.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) tail_cache_hits: Cell<u64>,
    pub(crate) tail_cache_misses: Cell<u64>,
    pub(crate) bytes_appended: Cell<u64>,
    pub(crate) batches_appended: Cell<u64>,
    pub(crate) log_write_count: Cell<u64>,
    pub(crate) fsync_count: Cell<u64>,
    pub(crate) fsync_time_total: Cell<Duration>,
    pub(crate) disk_read_count: Cell<u64>,
    pub(crate) flush_error_count: Cell<u64>,
    pub(crate) write_buffer_full_count: Cell<u64>,
    pub(crate) write_buffer_full_time_total: Cell<Duration>,
}

/// Adds `amount` to a counter.
pub(crate) fn bump(counter: &Cell<u64>, amount: u64) {
    counter.set(counter.get().saturating_add(amount));
}

/// Where a waiting appender learns the fate of its batch under [`FlushPolicy::Always`].
pub(crate) type Completion = Rc<Cell<Option<Result<(), IoFailure>>>>;

/// A batch that has an offset but has not yet left the write buffer: not yet written to its
/// segment file, or under [`FlushPolicy::Always`] not yet durable.
pub(crate) struct PendingBatch {
    pub(crate) base_offset: i64,
    pub(crate) next_offset: i64,
    /// Byte position of the batch in its segment's log file.
    pub(crate) position: u64,
    pub(crate) bytes: Bytes,
    pub(crate) completion: Option<Completion>,
    /// The active segment's state just before this batch was admitted: where a failed write
    /// under [`FlushPolicy::Always`] returns to when this is the oldest buffered batch.
    pub(crate) rollback: RollbackPoint,
}

/// The outcome of one detached log write, set by its task when it completes.
pub(crate) type WriteOutcome = Rc<RefCell<Option<Result<(), IoFailure>>>>;

/// A log write issued by the pipeline and not yet reaped.
#[derive(Debug)]
pub(crate) struct LogWrite {
    /// Aligned start of the write.
    pub(crate) start: u64,
    /// End of the log data it carries.
    pub(crate) data_end: u64,
    /// End of everything it writes, zeros erasing stale bytes included.
    pub(crate) end: u64,
    pub(crate) outcome: WriteOutcome,
}

impl std::fmt::Debug for PendingBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingBatch")
            .field("base_offset", &self.base_offset)
            .field("next_offset", &self.next_offset)
            .field("size_bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// The active segment's index state before a batch was admitted (its size and the log end
/// offset are the batch's position and base offset).
#[derive(Debug, Clone)]
pub(crate) struct RollbackPoint {
    pub(crate) builder: IndexBuilder,
    pub(crate) index_entry_count: usize,
}

/// The segment receiving appends.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub(crate) base_offset: i64,
    pub(crate) paths: SegmentPaths,
    pub(crate) log: FileHandle,
    pub(crate) index_file: FileHandle,
    pub(crate) time_index_file: FileHandle,
    /// Write alignment of the log file.
    pub(crate) alignment: u64,
    /// Index entries of every admitted batch, written or not.
    pub(crate) index: SegmentIndex,
    pub(crate) builder: IndexBuilder,
    /// Logical size: every admitted batch.
    pub(crate) size_bytes: u64,
    /// Bytes whose batches have left the write buffer: written, and under
    /// [`FlushPolicy::Always`] durable. Reads take bytes below it from the file.
    pub(crate) written_bytes: u64,
    /// End of the contiguous run of completed log writes: every byte below it is in the file.
    pub(crate) completed_bytes: u64,
    /// End of the log data of every write issued so far (`completed_bytes` or more).
    pub(crate) submitted_bytes: u64,
    /// Bytes covered by an fdatasync.
    pub(crate) durable_bytes: u64,
    /// The log file's bytes `[align_down(written_bytes), written_bytes)`: the start of the
    /// block the first buffered batch starts in, rewritten (byte-identical) by the write that
    /// carries that batch.
    pub(crate) tail_block: Vec<u8>,
    /// Log writes issued and not yet reaped, in position order. No two of them that are still
    /// running cover the same block.
    pub(crate) writes: VecDeque<LogWrite>,
    /// A failed fdatasync not yet handled (failed writes stay in `writes` until handled).
    pub(crate) failure: Option<IoFailure>,
    /// End of the furthest log write ever attempted in this segment. Bytes between the logical
    /// end and this may hold batches of a failed cycle that were never acknowledged; the next
    /// write zeroes them so a crash can never bring them back.
    pub(crate) log_high_water_bytes: u64,
    /// Index entries written to the index file.
    pub(crate) index_written_entries: usize,
    /// Highest byte of the index file ever written (stale entries past the end are zeroed).
    pub(crate) index_high_water_bytes: u64,
    /// Time index entries written to the time index file.
    pub(crate) time_written_entries: usize,
    /// Highest byte of the time index file ever written.
    pub(crate) time_high_water_bytes: u64,
    /// The owner's clock (`now_ms` of [`PartitionLog::roll_if_due`]) when the segment was
    /// first seen holding data: where its age for rolling counts from.
    pub(crate) first_seen_ms: Option<i64>,
}

/// Everything about the log that changes.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) sealed: BTreeMap<i64, Rc<SealedSegment>>,
    pub(crate) active: Option<ActiveSegment>,
    pub(crate) log_start_offset: i64,
    pub(crate) log_end_offset: i64,
    pub(crate) written_end_offset: i64,
    pub(crate) durable_end_offset: i64,
    pub(crate) unwritten: VecDeque<PendingBatch>,
    pub(crate) unwritten_bytes: usize,
    pub(crate) tail_cache: TailCache,
    /// Tickets of the tasks holding (front) or waiting for the writer role, in arrival order:
    /// the role is handed over first come, first served, so no waiter starves.
    pub(crate) writer_queue: VecDeque<u64>,
    pub(crate) writer_ticket_next: u64,
    pub(crate) rolling: bool,
    pub(crate) last_interval_flush_ms: Option<i64>,
}

impl State {
    /// Checks the offset ordering the module documentation states.
    pub(crate) fn assert_offsets(&self) {
        assert!(
            self.log_start_offset <= self.durable_end_offset
                && self.durable_end_offset <= self.written_end_offset
                && self.written_end_offset <= self.log_end_offset,
            "offsets out of order: start {} durable {} written {} end {}",
            self.log_start_offset,
            self.durable_end_offset,
            self.written_end_offset,
            self.log_end_offset
        );
    }

    /// Bytes of every segment.
    pub(crate) fn size_bytes(&self) -> u64 {
        let sealed: u64 = self.sealed.values().map(|segment| segment.size_bytes).sum();
        sealed + self.active.as_ref().map_or(0, |active| active.size_bytes)
    }
}

/// A durable, append-only partition log in one directory.
///
/// Create it with [`PartitionLog::open`] inside a glommio executor. Under
/// [`FlushPolicy::Interval`] the owner must call [`PartitionLog::flush_if_due`] on a tick (or run
/// [`crate::run_interval_flusher`] as a task); the log runs no task of its own.
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) backend: Rc<dyn StorageBackend>,
    pub(crate) state: RefCell<State>,
    pub(crate) changed: Rc<Notify>,
    /// Detached I/O tasks (log writes, sync points, seals, segment creation) still running; see
    /// `PartitionLog::run_detached`.
    pub(crate) io_in_flight: Rc<Cell<usize>>,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .field("log_start_offset", &self.log_start_offset())
            .field("log_end_offset", &self.log_end_offset())
            .finish_non_exhaustive()
    }
}

impl PartitionLog {
    /// Opens (creating if missing) the log in `dir` with the production backend, and recovers
    /// it: the last segment is scanned from its last valid index entry and cut at the first
    /// torn or corrupt batch; sealed segments are not read.
    pub async fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
    ) -> Result<PartitionLog, crate::error::OpenError> {
        Self::open_with_backend(dir, config, Rc::new(DmaBackend::new())).await
    }

    /// Like [`PartitionLog::open`], over any [`StorageBackend`] (for example a
    /// [`crate::io::FaultInjectingBackend`] in tests).
    pub async fn open_with_backend(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        backend: Rc<dyn StorageBackend>,
    ) -> Result<PartitionLog, crate::error::OpenError> {
        crate::recovery::open(dir.into(), config, backend).await
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start_offset
    }

    /// Next offset the log will assign.
    pub fn log_end_offset(&self) -> i64 {
        self.state.borrow().log_end_offset
    }

    /// Base offset of the segment appends go to, or of the last segment when none is active
    /// (between a seal and the next append). A change of this value means the log rolled, which
    /// lets an owner keep per-segment side files (such as state snapshots) in step with it.
    pub fn active_segment_base_offset(&self) -> i64 {
        let state = self.state.borrow();
        match &state.active {
            Some(active) => active.base_offset,
            None => state
                .sealed
                .keys()
                .next_back()
                .copied()
                .unwrap_or(state.log_end_offset),
        }
    }

    /// Changes the tail cache's bound (initially `tail_cache_bytes_max`), evicting its oldest
    /// batches beyond a lower one: the owner divides one budget among its partitions and
    /// re-divides it when they change.
    pub fn set_tail_cache_bytes_max(&self, bytes_max: usize) {
        self.state
            .borrow_mut()
            .tail_cache
            .set_size_bytes_max(bytes_max);
    }

    /// Offset below which readers may read: under [`FlushPolicy::Always`] only batches that are
    /// durable; under the other policies everything appended.
    pub fn stable_end_offset(&self) -> i64 {
        self.state.borrow().stable_end_offset(self.config.flush)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> LogStats {
        let state = self.state.borrow();
        let counters = &self.counters;
        LogStats {
            tail_cache_hits: counters.tail_cache_hits.get(),
            tail_cache_misses: counters.tail_cache_misses.get(),
            tail_cache_bytes: state.tail_cache.size_bytes(),
            tail_cache_batches: state.tail_cache.batch_count(),
            bytes_appended: counters.bytes_appended.get(),
            batches_appended: counters.batches_appended.get(),
            write_buffer_bytes: state.unwritten_bytes,
            log_write_count: counters.log_write_count.get(),
            fsync_count: counters.fsync_count.get(),
            fsync_time_total_us: u64::try_from(counters.fsync_time_total.get().as_micros())
                .unwrap_or(u64::MAX),
            disk_read_count: counters.disk_read_count.get(),
            flush_error_count: counters.flush_error_count.get(),
            write_buffer_full_count: counters.write_buffer_full_count.get(),
            write_buffer_full_time_total_us: u64::try_from(
                counters.write_buffer_full_time_total.get().as_micros(),
            )
            .unwrap_or(u64::MAX),
            segment_count: state.sealed.len() + usize::from(state.active.is_some()),
            size_bytes: state.size_bytes(),
            log_start_offset: state.log_start_offset,
            log_end_offset: state.log_end_offset,
        }
    }

    /// Writes out and fdatasyncs everything appended, then closes the files. Seals nothing: the
    /// active segment stays preallocated and is recovered at the next open.
    pub async fn close(self) -> Result<(), CloseError> {
        self.flush().await?;
        self.close_files().await
    }

    /// Closes every open file of the log.
    async fn close_files(&self) -> Result<(), CloseError> {
        self.wait_io_idle().await;
        let files: Vec<(FileHandle, PathBuf)> = {
            let state = self.state.borrow();
            let mut files = Vec::new();
            if let Some(active) = state.active.as_ref() {
                files.push((active.log.clone(), active.paths.log.clone()));
                files.push((active.index_file.clone(), active.paths.index.clone()));
                files.push((
                    active.time_index_file.clone(),
                    active.paths.time_index.clone(),
                ));
            }
            for segment in state.sealed.values() {
                if let Some(loaded) = segment.loaded.borrow().as_ref() {
                    files.push((loaded.file.clone(), segment.paths.log.clone()));
                }
            }
            files
        };
        for (file, path) in files {
            file.close()
                .await
                .map_err(|error| IoFailure::new(IoOperation::Close, path, None, error))?;
        }
        Ok(())
    }

    /// Removes every file of the log and then its directory (topic deletion).
    pub async fn delete(self) -> Result<(), CloseError> {
        self.close_files().await?;
        let paths: Vec<SegmentPaths> = {
            let mut state = self.state.borrow_mut();
            let mut paths: Vec<SegmentPaths> = state
                .sealed
                .values()
                .map(|segment| segment.paths.clone())
                .collect();
            if let Some(active) = state.active.take() {
                paths.push(active.paths.clone());
            }
            state.sealed.clear();
            state.unwritten.clear();
            state.tail_cache.clear();
            paths
        };
        for segment in paths {
            for path in [&segment.log, &segment.index, &segment.time_index] {
                match self.backend.remove(path).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        return Err(IoFailure::new(IoOperation::Remove, path, None, error).into())
                    }
                }
            }
        }
        // The directory may hold files that are not the log's; leave it then.
        if let Err(error) = std::fs::remove_dir(&self.dir) {
            if error.kind() != std::io::ErrorKind::DirectoryNotEmpty {
                return Err(
                    IoFailure::new(IoOperation::Directory, self.dir.clone(), None, error).into(),
                );
            }
        }
        Ok(())
    }
}

impl State {
    /// See [`PartitionLog::stable_end_offset`].
    pub(crate) fn stable_end_offset(&self, policy: FlushPolicy) -> i64 {
        match policy {
            FlushPolicy::Always => self.durable_end_offset,
            FlushPolicy::Interval { .. } | FlushPolicy::Never => self.log_end_offset,
        }
    }
}
