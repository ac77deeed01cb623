//! The write path: admission (offset assignment), write cycles with group commit, rolling,
//! sealing and creating segments, and the interval flusher.
//!
//! Owns the transitions of the active segment. A write cycle takes every buffered batch, writes
//! it with one positioned O_DIRECT write that starts at the aligned start of the file's partial
//! last block (that block's existing bytes are rewritten unchanged in front of the new ones, so
//! a torn rewrite cannot damage bytes that were already durable), writes new index entries
//! beside it, and under [`FlushPolicy::Always`] fdatasyncs the log file. Appenders that arrive
//! while a cycle is in flight are covered by the next one: group commit. The I/O of a cycle (and
//! of sealing and creating a segment) runs as a detached task, so it is never abandoned half-way
//! when an append future is dropped, and new I/O waits for it. State is updated only after the
//! I/O completes, so a cancelled or failed cycle leaves the state as it was before it.
//!
//! On a crash, the log file may hold a torn or unacknowledged tail after the last durable byte,
//! and the index files may lag or lead the log (they are synced only when a segment is sealed);
//! recovery cuts the first and repairs the second. A failed cycle under `Always` fails every
//! buffered append and returns the segment to its last durable state; under the other policies
//! buffered batches are already acknowledged, so they stay buffered and are retried.

use std::{
    cell::Cell,
    convert::Infallible,
    rc::Rc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use bytes::{Bytes, BytesMut};
use futures_lite::future::zip;
use weir_proto::batch::{set_base_offset, validate_batch_header_and_crc, BatchHeader, BatchInfo};

use crate::{
    config::FlushPolicy,
    error::{AppendError, IoFailure, IoOperation},
    io::{FileHandle, OpenMode},
    layout::{SegmentPaths, TimeEntry, INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES},
    log::{
        bump, ActiveSegment, AppendInfo, Completion, PartitionLog, PendingBatch, RollbackPoint,
        State,
    },
    segment::{IndexBuilder, LoadedSegment, SealedSegment, SegmentIndex},
    tail_cache::CachedBatch,
};

/// Rounds `value` down to a multiple of `alignment` (a power of two).
pub(crate) fn align_down(value: u64, alignment: u64) -> u64 {
    value & !(alignment - 1)
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// A place in the writer queue, and once at its front the exclusive right to run write
/// cycles, rolls and segment creation. Dropping it (also while still waiting, if the waiting
/// future is cancelled) leaves the queue.
pub(crate) struct WriterGuard<'a> {
    log: &'a PartitionLog,
    ticket: u64,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.log.state.borrow_mut();
        if let Some(at) = state
            .writer_queue
            .iter()
            .position(|ticket| *ticket == self.ticket)
        {
            state.writer_queue.remove(at);
        }
        drop(state);
        self.log.changed.notify_all();
    }
}

/// Holds admissions back while the active segment is being sealed; released on drop.
struct RollingGuard<'a> {
    log: &'a PartitionLog,
}

impl Drop for RollingGuard<'_> {
    fn drop(&mut self) {
        self.log.state.borrow_mut().rolling = false;
        self.log.changed.notify_all();
    }
}

/// What admission decided for one batch.
enum Admission {
    /// The batch has its offsets; `completion` is set under [`FlushPolicy::Always`].
    Admitted {
        base_offset: i64,
        completion: Option<Completion>,
    },
    /// A roll is in progress: wait for the state to change.
    Wait(u64),
    /// No active segment (after a roll): create one.
    NeedSegment,
    /// The batch does not fit the active segment: roll it.
    NeedRoll,
    /// The write buffer is full: write it out.
    BufferFull,
}

/// One write cycle's snapshot of what to write.
struct WritePlan {
    base_offset: i64,
    log: FileHandle,
    log_path: std::path::PathBuf,
    log_position: u64,
    /// The partial block, then every buffered batch.
    parts: Vec<Bytes>,
    batch_count: usize,
    new_written_bytes: u64,
    new_tail_block: Vec<u8>,
    index_write: Option<IndexWrite>,
    time_write: Option<IndexWrite>,
    sync: bool,
}

/// A write of index entries.
struct IndexWrite {
    file: FileHandle,
    path: std::path::PathBuf,
    position: u64,
    bytes: Vec<u8>,
    entry_count: usize,
}

/// The bytes to write to an index file whose first `written_bytes` are on disk: from the
/// aligned start of its partial block, zero-padded up to `high_water_bytes` so stale entries
/// left by a rolled-back cycle are erased.
fn index_region(
    alignment: u64,
    written_bytes: u64,
    high_water_bytes: u64,
    encoded: (u64, Vec<u8>),
) -> (u64, Vec<u8>) {
    let position = align_down(written_bytes, alignment);
    let (start, bytes) = encoded;
    let skip = (position - start) as usize;
    let mut region = bytes[skip.min(bytes.len())..].to_vec();
    let end = position + region.len() as u64;
    if end < high_water_bytes {
        region.resize((high_water_bytes - position) as usize, 0);
    }
    (position, region)
}

/// The last partial block after writing `parts` (the old partial block first) at an aligned
/// position.
fn last_partial_block(parts: &[Bytes], alignment: u64) -> Vec<u8> {
    let total: u64 = parts.iter().map(|part| part.len() as u64).sum();
    let keep = (total % alignment) as usize;
    let mut block = Vec::with_capacity(keep);
    let mut skip = total as usize - keep;
    for part in parts {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        block.extend_from_slice(&part[skip..]);
        skip = 0;
    }
    block
}

impl PartitionLog {
    /// Appends one record batch: validates its header and CRC against the configured limits,
    /// assigns its offsets (rewriting `baseOffset`, outside the CRC), and returns once the batch
    /// is durable under the flush policy. A batch that fails is not in the log and the log end
    /// offset does not move past it.
    pub async fn append(&self, batch: Bytes) -> Result<AppendInfo, AppendError> {
        let info = validate_batch_header_and_crc(&batch, &self.config.batch_limits)?;
        let size_bytes = batch.len();
        let mut bytes = Some(match batch.try_into_mut() {
            Ok(unique) => unique,
            Err(shared) => BytesMut::from(&shared[..]),
        });
        loop {
            let admission = {
                let mut state = self.state.borrow_mut();
                self.admit(&mut state, &info, &mut bytes)?
            };
            match admission {
                Admission::Admitted {
                    base_offset,
                    completion,
                } => {
                    if let Some(completion) = completion {
                        self.wait_durable(&completion).await?;
                    }
                    return Ok(AppendInfo {
                        base_offset,
                        last_offset: base_offset + i64::from(info.last_offset_delta),
                        max_timestamp_ms: info.max_timestamp,
                        size_bytes: info.size_bytes,
                        log_start_offset: self.log_start_offset(),
                    });
                }
                Admission::Wait(generation) => self.changed.wait(generation).await,
                Admission::NeedSegment => {
                    let writer = self.acquire_writer().await;
                    self.create_active_segment(&writer).await?;
                }
                Admission::NeedRoll => {
                    let writer = self.acquire_writer().await;
                    if self.roll_needed(size_bytes, info.last_offset_delta) {
                        self.roll(&writer).await?;
                    }
                }
                Admission::BufferFull => {
                    let writer = self.acquire_writer().await;
                    if self.buffer_full(size_bytes) {
                        let sync = self.config.flush == FlushPolicy::Always;
                        self.write_cycle(&writer, sync).await?;
                    }
                }
            }
        }
    }

    /// Decides what to do with a batch and, if it can go in, assigns its offsets.
    fn admit(
        &self,
        state: &mut State,
        info: &BatchInfo,
        bytes: &mut Option<BytesMut>,
    ) -> Result<Admission, AppendError> {
        if state.rolling {
            return Ok(Admission::Wait(self.changed.generation()));
        }
        let Some(active) = state.active.as_ref() else {
            return Ok(Admission::NeedSegment);
        };
        let size_bytes = info.size_bytes as usize;
        if self.segment_full(
            active,
            state.log_end_offset,
            size_bytes,
            info.last_offset_delta,
        ) {
            return Ok(Admission::NeedRoll);
        }
        if state.unwritten_bytes > 0
            && state.unwritten_bytes + size_bytes > self.config.write_buffer_bytes_max
        {
            return Ok(Admission::BufferFull);
        }
        let base_offset = state.log_end_offset;
        // Fits: `segment_full` rolls before a segment's relative offsets outgrow u32.
        let relative_offset = u32::try_from(base_offset - active.base_offset).map_err(|_| {
            AppendError::OffsetOverflow {
                base_offset,
                last_offset_delta: info.last_offset_delta,
            }
        })?;
        let next_offset = base_offset
            .checked_add(i64::from(info.last_offset_delta))
            .and_then(|last| last.checked_add(1))
            .ok_or(AppendError::OffsetOverflow {
                base_offset,
                last_offset_delta: info.last_offset_delta,
            })?;
        let Some(mut owned) = bytes.take() else {
            unreachable!("a batch is admitted once");
        };
        set_base_offset(&mut owned, base_offset)?;
        let stored = owned.freeze();
        // Paired with the check when the batch is read back: what goes to disk carries the
        // offset the log assigned.
        assert_eq!(
            BatchHeader::view(&stored).map(|header| header.base_offset.get()),
            Some(base_offset),
            "stored batch must carry its assigned base offset"
        );

        let policy = self.config.flush;
        let log_end_offset = state.log_end_offset;
        let unwritten_was_empty = state.unwritten.is_empty();
        let Some(active) = state.active.as_mut() else {
            unreachable!("checked above");
        };
        if unwritten_was_empty {
            active.rollback = Some(RollbackPoint {
                builder: active.builder,
                index_entry_count: active.index.entries.len(),
                size_bytes: active.size_bytes,
                log_end_offset,
            });
        }
        let position = active.size_bytes;
        if let Some((entry, time)) =
            active
                .builder
                .on_batch(position, relative_offset, info.max_timestamp)
        {
            active.index.push(entry, time);
        }
        active.size_bytes += size_bytes as u64;

        let completion = (policy == FlushPolicy::Always).then(|| Rc::new(Cell::new(None)));
        state.unwritten.push_back(PendingBatch {
            base_offset,
            next_offset,
            bytes: stored,
            completion: completion.clone(),
        });
        state.unwritten_bytes += size_bytes;
        assert!(next_offset > state.log_end_offset, "offsets must increase");
        state.log_end_offset = next_offset;
        state.assert_offsets();
        bump(&self.counters.bytes_appended, size_bytes as u64);
        bump(&self.counters.batches_appended, 1);
        Ok(Admission::Admitted {
            base_offset,
            completion,
        })
    }

    /// True if a batch of `size_bytes` must go to a new segment.
    fn segment_full(
        &self,
        active: &ActiveSegment,
        log_end_offset: i64,
        size_bytes: usize,
        last_offset_delta: i32,
    ) -> bool {
        if active.size_bytes == 0 {
            return false;
        }
        let too_big = active.size_bytes + size_bytes as u64 > self.config.segment_bytes_max;
        // Relative offsets in the indexes are u32; keep the whole segment addressable.
        let last_relative =
            (log_end_offset - active.base_offset).saturating_add(i64::from(last_offset_delta)) + 1;
        too_big || last_relative > i64::from(u32::MAX)
    }

    fn roll_needed(&self, size_bytes: usize, last_offset_delta: i32) -> bool {
        let state = self.state.borrow();
        state.active.as_ref().is_some_and(|active| {
            self.segment_full(active, state.log_end_offset, size_bytes, last_offset_delta)
        })
    }

    fn buffer_full(&self, size_bytes: usize) -> bool {
        let state = self.state.borrow();
        state.unwritten_bytes > 0
            && state.unwritten_bytes + size_bytes > self.config.write_buffer_bytes_max
    }

    /// Waits until a write cycle has made the batch durable or failed it, leading the next
    /// cycle itself when no task holds or waits for the writer role.
    async fn wait_durable(&self, completion: &Completion) -> Result<(), AppendError> {
        loop {
            if let Some(result) = completion.take() {
                return result.map_err(AppendError::from);
            }
            let generation = {
                let state = self.state.borrow();
                (!state.writer_queue.is_empty()).then(|| self.changed.generation())
            };
            if let Some(generation) = generation {
                self.changed.wait(generation).await;
                continue;
            }
            let writer = self.acquire_writer().await;
            // Let the tasks that are already runnable (typically appenders just acknowledged
            // by the previous cycle) admit their next batches, so this cycle covers them too.
            futures_lite::future::yield_now().await;
            if let Some(result) = completion.take() {
                return result.map_err(AppendError::from);
            }
            // The outcome reaches every covered appender, this one included, through its
            // completion.
            let _ = self.write_cycle(&writer, true).await;
        }
    }

    /// Joins the writer queue and waits until the role is this task's.
    pub(crate) async fn acquire_writer(&self) -> WriterGuard<'_> {
        let ticket = {
            let mut state = self.state.borrow_mut();
            let ticket = state.writer_ticket_next;
            state.writer_ticket_next += 1;
            state.writer_queue.push_back(ticket);
            ticket
        };
        let guard = WriterGuard { log: self, ticket };
        loop {
            let generation = {
                let state = self.state.borrow();
                if state.writer_queue.front() == Some(&ticket) {
                    return guard;
                }
                self.changed.generation()
            };
            self.changed.wait(generation).await;
        }
    }

    /// Runs `io` as a detached task, so it completes even if the caller stops waiting (an
    /// append future dropped by a timeout). An abandoned write could otherwise land after a
    /// later cycle rewrote the same blocks and zero bytes that cycle made durable, and an
    /// abandoned truncation could cut them. Callers that start new I/O first wait for
    /// [`PartitionLog::wait_io_idle`]. Returns `None` only if the task panicked.
    pub(crate) async fn run_detached<T: 'static>(
        &self,
        io: impl std::future::Future<Output = T> + 'static,
    ) -> Option<T> {
        self.io_in_flight.set(self.io_in_flight.get() + 1);
        let in_flight = self.io_in_flight.clone();
        let changed = self.changed.clone();
        glommio::spawn_local(async move {
            let output = io.await;
            in_flight.set(in_flight.get() - 1);
            changed.notify_all();
            output
        })
        .detach()
        .await
    }

    /// Waits until no detached I/O task is running.
    pub(crate) async fn wait_io_idle(&self) {
        loop {
            if self.io_in_flight.get() == 0 {
                return;
            }
            let generation = self.changed.generation();
            self.changed.wait(generation).await;
        }
    }

    /// Writes every buffered batch and pending index entry; fdatasyncs the log file if `sync`.
    pub(crate) async fn write_cycle(
        &self,
        _writer: &WriterGuard<'_>,
        sync: bool,
    ) -> Result<(), IoFailure> {
        self.wait_io_idle().await;
        let Some(plan) = self.plan_write(sync) else {
            return Ok(());
        };
        if plan.batch_count > 0 {
            bump(&self.counters.log_write_count, 1);
        }
        let log_path = plan.log_path.clone();
        let Some((plan, outcome)) = self.run_detached(run_cycle_io(plan)).await else {
            let error = std::io::Error::other("the write task panicked");
            let failure = IoFailure::new(IoOperation::Write, &log_path, None, error);
            self.fail_cycle(&failure, None);
            return Err(failure);
        };
        self.note_index_writes(&plan, outcome.index, outcome.time_index);
        let attempted_end =
            plan.log_position + plan.parts.iter().map(|part| part.len() as u64).sum::<u64>();
        if let Err(error) = outcome.log {
            let failure = IoFailure::new(
                IoOperation::Write,
                &plan.log_path,
                Some(plan.log_position),
                error,
            );
            self.fail_cycle(&failure, Some(attempted_end));
            return Err(failure);
        }
        if let Some((synced, elapsed)) = outcome.sync {
            bump(&self.counters.fsync_count, 1);
            let total = self.counters.fsync_time_total.get() + elapsed;
            self.counters.fsync_time_total.set(total);
            if let Err(error) = synced {
                let failure = IoFailure::new(IoOperation::Sync, &plan.log_path, None, error);
                self.fail_cycle(&failure, Some(attempted_end));
                return Err(failure);
            }
        }
        self.commit_cycle(plan);
        Ok(())
    }

    fn plan_write(&self, sync: bool) -> Option<WritePlan> {
        let state = self.state.borrow();
        let active = state.active.as_ref()?;
        let batch_count = state.unwritten.len();
        let mut parts = Vec::with_capacity(batch_count + 1);
        parts.push(Bytes::copy_from_slice(&active.tail_block));
        parts.extend(state.unwritten.iter().map(|batch| batch.bytes.clone()));
        let new_written_bytes = active.size_bytes;
        let index_write = (active.index_written_entries < active.index.entries.len()).then(|| {
            let (position, bytes) = index_region(
                active.alignment,
                (active.index_written_entries * INDEX_ENTRY_BYTES) as u64,
                active.index_high_water_bytes,
                active.index.encode_offsets_from(align_down(
                    (active.index_written_entries * INDEX_ENTRY_BYTES) as u64,
                    active.alignment,
                )),
            );
            IndexWrite {
                file: active.index_file.clone(),
                path: active.paths.index.clone(),
                position,
                bytes,
                entry_count: active.index.entries.len(),
            }
        });
        let time_write = (active.time_written_entries < active.index.entries.len()).then(|| {
            let written_bytes = (active.time_written_entries * TIME_INDEX_ENTRY_BYTES) as u64;
            let (position, bytes) = index_region(
                active.alignment,
                written_bytes,
                active.time_high_water_bytes,
                active
                    .index
                    .encode_times_from(align_down(written_bytes, active.alignment), None),
            );
            IndexWrite {
                file: active.time_index_file.clone(),
                path: active.paths.time_index.clone(),
                position,
                bytes,
                entry_count: active.index.entries.len(),
            }
        });
        let sync = sync && (batch_count > 0 || active.durable_bytes < active.written_bytes);
        if batch_count == 0 && index_write.is_none() && time_write.is_none() && !sync {
            return None;
        }
        let new_tail_block = last_partial_block(&parts, active.alignment);
        let log_position = align_down(active.written_bytes, active.alignment);
        if batch_count > 0 && new_written_bytes < active.log_high_water_bytes {
            // Erase what a failed cycle may have left after the new end.
            let stale_bytes = active.log_high_water_bytes - new_written_bytes;
            parts.push(Bytes::from(vec![0u8; stale_bytes as usize]));
        }
        Some(WritePlan {
            base_offset: active.base_offset,
            log: active.log.clone(),
            log_path: active.paths.log.clone(),
            log_position,
            parts,
            batch_count,
            new_written_bytes,
            new_tail_block,
            index_write,
            time_write,
            sync,
        })
    }

    /// Records which index writes landed; a failed index write is retried by the next cycle
    /// (the log, not the index, is the truth).
    fn note_index_writes(
        &self,
        plan: &WritePlan,
        index_result: Option<std::io::Result<()>>,
        time_result: Option<std::io::Result<()>>,
    ) {
        let mut state = self.state.borrow_mut();
        let Some(active) = state.active.as_mut() else {
            return;
        };
        if active.base_offset != plan.base_offset {
            return;
        }
        if let (Some(write), Some(result)) = (&plan.index_write, index_result) {
            match result {
                Ok(()) => {
                    active.index_written_entries = write.entry_count;
                    let end = write.position + write.bytes.len() as u64;
                    active.index_high_water_bytes = active.index_high_water_bytes.max(end);
                }
                Err(error) => tracing::warn!(path = ?write.path, %error, "index write failed"),
            }
        }
        if let (Some(write), Some(result)) = (&plan.time_write, time_result) {
            match result {
                Ok(()) => {
                    active.time_written_entries = write.entry_count;
                    let end = write.position + write.bytes.len() as u64;
                    active.time_high_water_bytes = active.time_high_water_bytes.max(end);
                }
                Err(error) => tracing::warn!(path = ?write.path, %error, "time index write failed"),
            }
        }
    }

    /// Applies a successful cycle: the written batches leave the write buffer for the tail
    /// cache and their appenders learn they are durable.
    fn commit_cycle(&self, plan: WritePlan) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let Some(active) = state.active.as_mut() else {
            unreachable!("the active segment cannot change while the writer role is held");
        };
        assert_eq!(
            active.base_offset, plan.base_offset,
            "segment changed under a write"
        );
        assert!(
            plan.new_written_bytes >= active.written_bytes,
            "written bytes must not shrink"
        );
        active.written_bytes = plan.new_written_bytes;
        active.tail_block = plan.new_tail_block;
        let written_end =
            plan.log_position + plan.parts.iter().map(|part| part.len() as u64).sum::<u64>();
        if written_end >= active.log_high_water_bytes {
            active.log_high_water_bytes = active.written_bytes;
        }
        if plan.sync {
            active.durable_bytes = active.written_bytes;
        }
        for _ in 0..plan.batch_count {
            let Some(batch) = state.unwritten.pop_front() else {
                unreachable!("only write cycles remove buffered batches");
            };
            assert_eq!(
                batch.base_offset, state.written_end_offset,
                "written batches contiguous"
            );
            state.written_end_offset = batch.next_offset;
            state.unwritten_bytes -= batch.bytes.len();
            if let Some(completion) = &batch.completion {
                completion.set(Some(Ok(())));
            }
            state.tail_cache.push(CachedBatch {
                base_offset: batch.base_offset,
                next_offset: batch.next_offset,
                bytes: batch.bytes,
            });
        }
        if plan.sync {
            state.durable_end_offset = state.written_end_offset;
        }
        if state.unwritten.is_empty() {
            active.rollback = None;
        }
        state.assert_offsets();
        drop(guard);
        self.changed.notify_all();
    }

    /// Applies a failed cycle. Under [`FlushPolicy::Always`] nothing buffered was acknowledged:
    /// every buffered append fails and the segment returns to its last durable state. Under
    /// the other policies the buffered batches are acknowledged and stay for the next cycle.
    fn fail_cycle(&self, failure: &IoFailure, attempted_end_bytes: Option<u64>) {
        bump(&self.counters.flush_error_count, 1);
        tracing::warn!(%failure, "log write cycle failed");
        if let (Some(end), Some(active)) =
            (attempted_end_bytes, self.state.borrow_mut().active.as_mut())
        {
            active.log_high_water_bytes = active.log_high_water_bytes.max(end);
        }
        if self.config.flush == FlushPolicy::Always {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            for batch in state.unwritten.drain(..) {
                if let Some(completion) = &batch.completion {
                    completion.set(Some(Err(failure.clone())));
                }
            }
            state.unwritten_bytes = 0;
            if let Some(active) = state.active.as_mut() {
                if let Some(point) = active.rollback.take() {
                    active.builder = point.builder;
                    active.index.truncate(point.index_entry_count);
                    active.size_bytes = point.size_bytes;
                    state.log_end_offset = point.log_end_offset;
                    if active.size_bytes == 0 {
                        active.first_seen_ms = None;
                    }
                }
                let entries = active.index.entries.len();
                active.index_written_entries = active.index_written_entries.min(entries);
                active.time_written_entries = active.time_written_entries.min(entries);
                assert_eq!(
                    active.size_bytes, active.written_bytes,
                    "rolled back to written"
                );
            }
            assert_eq!(
                state.log_end_offset, state.written_end_offset,
                "rolled back"
            );
            state.assert_offsets();
        }
        self.changed.notify_all();
    }

    /// Writes out and fdatasyncs everything appended so far (used by interval ticks, shutdown
    /// and before rolling).
    pub async fn flush(&self) -> Result<(), AppendError> {
        let writer = self.acquire_writer().await;
        self.write_cycle(&writer, true).await?;
        Ok(())
    }

    /// Under [`FlushPolicy::Interval`], flushes if at least `interval_ms` passed since the last
    /// flush by this method and something is not yet durable. Returns whether it flushed. The
    /// owner calls it on a tick with its clock's `now_ms`; other policies never flush here.
    pub async fn flush_if_due(&self, now_ms: i64) -> Result<bool, AppendError> {
        let FlushPolicy::Interval { interval_ms } = self.config.flush else {
            return Ok(false);
        };
        let due = {
            let state = self.state.borrow();
            let pending = state.durable_end_offset < state.log_end_offset;
            let elapsed = state
                .last_interval_flush_ms
                .is_none_or(|last| now_ms.saturating_sub(last) >= interval_ms as i64);
            pending && elapsed
        };
        if !due {
            return Ok(false);
        }
        self.flush().await?;
        self.state.borrow_mut().last_interval_flush_ms = Some(now_ms);
        Ok(true)
    }

    /// Rolls the active segment once it has held data for `segment_age_ms_max` by the owner's
    /// clock. The segment's age counts from the first call that saw it non-empty (so the owner
    /// calls this on a tick, and the age is exact to one tick); producers' timestamps play no
    /// part, so a producer with a skewed clock cannot make segments roll early or late. After a
    /// reopen the age of the recovered active segment counts from the first tick. Returns
    /// whether it rolled.
    pub async fn roll_if_due(&self, now_ms: i64) -> Result<bool, AppendError> {
        let Some(age_ms_max) = self.config.segment_age_ms_max else {
            return Ok(false);
        };
        let due = || {
            let mut state = self.state.borrow_mut();
            let Some(active) = state.active.as_mut().filter(|active| active.size_bytes > 0) else {
                return false;
            };
            let first_seen_ms = *active.first_seen_ms.get_or_insert(now_ms);
            now_ms.saturating_sub(first_seen_ms) >= age_ms_max as i64
        };
        if !due() {
            return Ok(false);
        }
        let writer = self.acquire_writer().await;
        if !due() {
            return Ok(false);
        }
        self.roll(&writer).await?;
        Ok(true)
    }

    /// Makes everything in the active segment durable and seals it. The next append creates
    /// the new active segment.
    async fn roll(&self, writer: &WriterGuard<'_>) -> Result<(), AppendError> {
        self.state.borrow_mut().rolling = true;
        let _rolling = RollingGuard { log: self };
        self.write_cycle(writer, true).await?;
        self.seal_active(writer).await?;
        Ok(())
    }

    /// Writes the final index entries, cuts the files to their logical sizes, syncs them, and
    /// moves the active segment to the sealed ones. On failure the segment stays active.
    async fn seal_active(&self, _writer: &WriterGuard<'_>) -> Result<(), IoFailure> {
        let plan = {
            let state = self.state.borrow();
            let Some(active) = state.active.as_ref() else {
                return Ok(());
            };
            assert!(
                state.unwritten.is_empty(),
                "seal only a fully written segment"
            );
            assert_eq!(
                active.durable_bytes, active.size_bytes,
                "seal only a durable segment"
            );
            let entry_count = active.index.entries.len();
            let final_entry = TimeEntry {
                timestamp_ms: active.builder.max_timestamp_ms,
                relative_offset: u32::try_from(state.log_end_offset - active.base_offset)
                    .unwrap_or(u32::MAX),
            };
            let index_written = (active.index_written_entries * INDEX_ENTRY_BYTES) as u64;
            let time_written = (active.time_written_entries * TIME_INDEX_ENTRY_BYTES) as u64;
            SealPlan {
                base_offset: active.base_offset,
                paths: active.paths.clone(),
                log: active.log.clone(),
                index_file: active.index_file.clone(),
                time_index_file: active.time_index_file.clone(),
                size_bytes: active.size_bytes,
                index_bytes: index_region(
                    active.alignment,
                    index_written,
                    0,
                    active
                        .index
                        .encode_offsets_from(align_down(index_written, active.alignment)),
                ),
                time_bytes: index_region(
                    active.alignment,
                    time_written,
                    0,
                    active.index.encode_times_from(
                        align_down(time_written, active.alignment),
                        Some(final_entry),
                    ),
                ),
                index_length: (entry_count * INDEX_ENTRY_BYTES) as u64,
                time_length: ((entry_count + 1) * TIME_INDEX_ENTRY_BYTES) as u64,
            }
        };
        self.wait_io_idle().await;
        let log_path = plan.paths.log.clone();
        let base_offset = plan.base_offset;
        let sealed = self
            .run_detached(run_seal_io(plan))
            .await
            .unwrap_or_else(|| {
                let error = std::io::Error::other("the seal task panicked");
                Err(IoFailure::new(IoOperation::Sync, &log_path, None, error))
            });
        sealed?;
        bump(&self.counters.fsync_count, 1);

        let mut state = self.state.borrow_mut();
        let Some(active) = state.active.take() else {
            unreachable!("the active segment cannot change while the writer role is held");
        };
        assert_eq!(
            active.base_offset, base_offset,
            "segment changed while sealing"
        );
        let sealed = SealedSegment {
            base_offset: active.base_offset,
            size_bytes: active.size_bytes,
            paths: active.paths,
            loaded: std::cell::RefCell::new(Some(Rc::new(LoadedSegment {
                index: active.index,
                max_timestamp_ms: active.builder.max_timestamp_ms,
                file: active.log,
            }))),
        };
        state.sealed.insert(sealed.base_offset, Rc::new(sealed));
        drop(state);
        self.changed.notify_all();
        Ok(())
    }

    /// Creates the active segment at the log end offset, preallocating its files.
    pub(crate) async fn create_active_segment(
        &self,
        _writer: &WriterGuard<'_>,
    ) -> Result<(), IoFailure> {
        let base_offset = {
            let state = self.state.borrow();
            if state.active.is_some() {
                return Ok(());
            }
            state.log_end_offset
        };
        let paths = SegmentPaths::new(&self.dir, base_offset);
        self.wait_io_idle().await;
        let create = create_segment_files(
            self.backend.clone(),
            self.dir.clone(),
            paths.clone(),
            self.config.preallocate.then(|| {
                let index_entries = self.config.index_entries_max();
                [
                    self.config.segment_bytes_max,
                    index_entries * INDEX_ENTRY_BYTES as u64,
                    (index_entries + 1) * TIME_INDEX_ENTRY_BYTES as u64,
                ]
            }),
        );
        let (log, index_file, time_index_file) =
            self.run_detached(create).await.unwrap_or_else(|| {
                let error = std::io::Error::other("the segment creation task panicked");
                Err(IoFailure::new(IoOperation::Open, &paths.log, None, error))
            })?;
        let alignment = log.alignment();
        let mut state = self.state.borrow_mut();
        assert!(
            !state.sealed.contains_key(&base_offset),
            "a new segment's base offset is past every sealed segment"
        );
        state.active = Some(ActiveSegment {
            base_offset,
            paths,
            log,
            index_file,
            time_index_file,
            alignment,
            index: SegmentIndex::default(),
            builder: IndexBuilder::new(self.config.index_interval_bytes),
            size_bytes: 0,
            written_bytes: 0,
            durable_bytes: 0,
            tail_block: Vec::new(),
            log_high_water_bytes: 0,
            index_written_entries: 0,
            index_high_water_bytes: 0,
            time_written_entries: 0,
            time_high_water_bytes: 0,
            first_seen_ms: None,
            rollback: None,
        });
        drop(state);
        self.changed.notify_all();
        Ok(())
    }
}

/// Creates a segment's three files and preallocates them to `preallocate_bytes` (log, index,
/// time index), then syncs the directory. On failure removes what it created: the files are
/// empty or zeros, and a leftover empty segment would be recovered as an empty active one.
async fn create_segment_files(
    backend: Rc<dyn crate::io::StorageBackend>,
    dir: std::path::PathBuf,
    paths: SegmentPaths,
    preallocate_bytes: Option<[u64; 3]>,
) -> Result<(FileHandle, FileHandle, FileHandle), IoFailure> {
    let create = async {
        let open = |path: std::path::PathBuf| {
            let backend = backend.clone();
            async move {
                backend
                    .open(&path, OpenMode::CreateTruncate)
                    .await
                    .map_err(|error| IoFailure::new(IoOperation::Open, &path, None, error))
            }
        };
        let log = open(paths.log.clone()).await?;
        let index_file = open(paths.index.clone()).await?;
        let time_index_file = open(paths.time_index.clone()).await?;
        if let Some(lengths) = preallocate_bytes {
            let files = [
                (&log, &paths.log),
                (&index_file, &paths.index),
                (&time_index_file, &paths.time_index),
            ];
            for ((file, path), length) in files.into_iter().zip(lengths) {
                file.preallocate(length).await.map_err(|error| {
                    IoFailure::new(IoOperation::Preallocate, path, Some(length), error)
                })?;
            }
        }
        backend
            .sync_dir(&dir)
            .await
            .map_err(|error| IoFailure::new(IoOperation::Sync, &dir, None, error))?;
        Ok((log, index_file, time_index_file))
    };
    let created = create.await;
    if created.is_err() {
        for path in [&paths.log, &paths.index, &paths.time_index] {
            // Best effort, see above.
            let _ = backend.remove(path).await;
        }
    }
    created
}

/// What sealing writes, truncates and syncs.
struct SealPlan {
    base_offset: i64,
    paths: SegmentPaths,
    log: FileHandle,
    index_file: FileHandle,
    time_index_file: FileHandle,
    size_bytes: u64,
    index_bytes: (u64, Vec<u8>),
    time_bytes: (u64, Vec<u8>),
    index_length: u64,
    time_length: u64,
}

/// The I/O of sealing: final index entries, files cut to their logical sizes, all synced.
async fn run_seal_io(plan: SealPlan) -> Result<(), IoFailure> {
    let fail = |operation, path: &std::path::Path, position, error| {
        IoFailure::new(operation, path, position, error)
    };
    for (file, path, (position, bytes), length) in [
        (
            &plan.index_file,
            &plan.paths.index,
            &plan.index_bytes,
            plan.index_length,
        ),
        (
            &plan.time_index_file,
            &plan.paths.time_index,
            &plan.time_bytes,
            plan.time_length,
        ),
    ] {
        if !bytes.is_empty() {
            file.write_at(*position, &[&bytes[..]])
                .await
                .map_err(|error| fail(IoOperation::Write, path, Some(*position), error))?;
        }
        file.truncate(length)
            .await
            .map_err(|error| fail(IoOperation::Truncate, path, Some(length), error))?;
        file.sync()
            .await
            .map_err(|error| fail(IoOperation::Sync, path, None, error))?;
    }
    plan.log.truncate(plan.size_bytes).await.map_err(|error| {
        fail(
            IoOperation::Truncate,
            &plan.paths.log,
            Some(plan.size_bytes),
            error,
        )
    })?;
    plan.log
        .sync()
        .await
        .map_err(|error| fail(IoOperation::Sync, &plan.paths.log, None, error))?;
    Ok(())
}

/// Results of one write cycle's I/O.
struct CycleOutcome {
    log: std::io::Result<()>,
    index: Option<std::io::Result<()>>,
    time_index: Option<std::io::Result<()>>,
    /// The fdatasync's result and duration, if the cycle synced.
    sync: Option<(std::io::Result<()>, std::time::Duration)>,
}

/// The I/O of a write cycle: the log write beside the index writes, then (if asked, and only
/// if the log write succeeded) the fdatasync. Owns everything it touches, so it can run
/// detached.
async fn run_cycle_io(plan: WritePlan) -> (WritePlan, CycleOutcome) {
    let outcome = {
        let slices: Vec<&[u8]> = plan.parts.iter().map(|part| &part[..]).collect();
        let log_write = async {
            if plan.batch_count == 0 {
                return Ok(());
            }
            plan.log
                .write_at(plan.log_position, &slices)
                .await
                .map(|_| ())
        };
        let index_writes = zip(
            write_index(plan.index_write.as_ref()),
            write_index(plan.time_write.as_ref()),
        );
        let (log, (index, time_index)) = zip(log_write, index_writes).await;
        let sync = if plan.sync && log.is_ok() {
            let started = Instant::now();
            let synced = plan.log.sync().await;
            Some((synced, started.elapsed()))
        } else {
            None
        };
        CycleOutcome {
            log,
            index,
            time_index,
            sync,
        }
    };
    (plan, outcome)
}

async fn write_index(write: Option<&IndexWrite>) -> Option<std::io::Result<()>> {
    let write = write?;
    Some(
        write
            .file
            .write_at(write.position, &[&write.bytes[..]])
            .await
            .map(|_| ()),
    )
}

/// Runs [`PartitionLog::flush_if_due`] every `interval_ms` of the log's
/// [`FlushPolicy::Interval`] policy (every second for other policies, where it does nothing),
/// with the wall clock, forever. Spawn it as a glommio task beside the log and cancel the task
/// (`Task::cancel`) before closing the log. Failures are logged and counted in [`crate::LogStats`], and the
/// next tick tries again.
pub async fn run_interval_flusher(log: Rc<PartitionLog>) -> Infallible {
    let period_ms = match log.config().flush {
        FlushPolicy::Interval { interval_ms } => interval_ms,
        FlushPolicy::Always | FlushPolicy::Never => 1000,
    };
    loop {
        glommio::timer::sleep(std::time::Duration::from_millis(period_ms)).await;
        if let Err(error) = log.flush_if_due(wall_clock_ms()).await {
            tracing::warn!(dir = ?log.dir(), %error, "interval flush failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_block_is_the_bytes_after_the_last_boundary() {
        let parts = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defgh"),
            Bytes::from_static(b"ij"),
        ];
        assert_eq!(last_partial_block(&parts, 4), b"ij".to_vec());
        assert_eq!(last_partial_block(&parts, 8), b"ij".to_vec());
        assert_eq!(last_partial_block(&parts, 16), b"abcdefghij".to_vec());
        assert!(last_partial_block(&parts[..2], 8).is_empty());
    }

    #[test]
    fn index_region_starts_at_the_partial_block_and_erases_stale_bytes() {
        let encoded = (0u64, (0u8..40).collect::<Vec<u8>>());
        let (position, bytes) = index_region(16, 20, 0, encoded.clone());
        assert_eq!(position, 16);
        assert_eq!(bytes, (16u8..40).collect::<Vec<u8>>());
        let (position, bytes) = index_region(16, 20, 64, encoded);
        assert_eq!(position, 16);
        assert_eq!(bytes.len(), 48);
        assert!(bytes[24..].iter().all(|byte| *byte == 0));
    }
}
