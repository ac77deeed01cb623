//! The write path: admission (offset assignment), the write pipeline with group commit,
//! rolling, sealing and creating segments, and the interval flusher.
//!
//! Owns the transitions of the active segment. An admitted batch goes to the write buffer and
//! its whole blocks are written at once: the log keeps up to `writes_in_flight_max` positioned
//! O_DIRECT writes in flight, each a chunk of whole blocks (at most `write_chunk_bytes_max`)
//! gathered as zero-copy slices of the buffered batches, issued in position order by whichever
//! task admits a batch or wakes while waiting, so appenders keep filling the buffer while
//! earlier writes and the fdatasync run. The partial last block stays in memory. Under
//! `Interval` and `Never` a batch leaves the buffer once the writes covering it completed, and
//! an appender that finds the buffer full waits only for the running writes to free room. A
//! sync point (the group-commit leader under [`FlushPolicy::Always`], a flush, a roll, a full
//! buffer under `Always`, or one that no running write can free) writes the rest up to the end
//! it covers, partial block included, waits until every write up to there completed, writes new
//! index entries and (except for a write-out under the other policies) fdatasyncs the log
//! file; the fdatasync covers
//! the contiguous completed writes, and every `Always` append that ends below that position is
//! acknowledged. Appenders that arrive meanwhile are covered by the next sync point: group
//! commit. Two running writes never cover the same block, since their completion order is not
//! guaranteed and an older version of the block could land last: a write that would share a
//! block with a running one (the partial block a sync point wrote, rewritten byte-identically
//! in front of the bytes that complete it) is issued only after that one completed. Writes,
//! and the I/O of sync points, sealing and segment creation, run as detached tasks, so they are
//! never abandoned half-way when an append future is dropped, and state moves only on their
//! recorded outcomes.
//!
//! On a crash, the log file may hold a torn or unacknowledged tail after the last durable byte
//! (any completed write past it, in any order, but never an older version of a block over a
//! newer one), and the index files may lag or lead the log (they are synced only when a segment
//! is sealed); recovery cuts the first and repairs the second. A failed write or fdatasync is
//! handled once every write in flight has finished: under `Always` it fails every buffered
//! append (none was acknowledged) and returns the segment to its last durable state, and the
//! next sync point zero-fills up to the furthest write attempted, so a crash cannot bring the
//! failed batches back; under the other policies buffered batches are already acknowledged,
//! so they stay buffered and are written again from the end of the completed writes.

use std::{
    cell::Cell,
    convert::Infallible,
    rc::Rc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use bytes::{Bytes, BytesMut};
use futures_lite::future::zip;
use weir_proto::batch::{set_base_offset, BatchHeader, BatchInfo, ValidatedBatch};

use crate::{
    config::FlushPolicy,
    error::{AppendError, IoFailure, IoOperation},
    io::{FileHandle, OpenMode},
    layout::{SegmentPaths, TimeEntry, INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES},
    log::{
        bump, ActiveSegment, AppendInfo, Completion, LogWrite, PartitionLog, PendingBatch,
        RollbackPoint, State, WriteOutcome,
    },
    segment::{IndexBuilder, LoadedSegment, SealedSegment, SegmentIndex},
    tail_cache::CachedBatch,
};

/// Rounds `value` down to a multiple of `alignment` (a power of two).
pub(crate) fn align_down(value: u64, alignment: u64) -> u64 {
    value & !(alignment - 1)
}

/// Rounds `value` up to a multiple of `alignment` (a power of two).
pub(crate) fn align_up(value: u64, alignment: u64) -> u64 {
    align_down(value + alignment - 1, alignment)
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
fn last_partial_block(parts: &[&[u8]], alignment: u64) -> Vec<u8> {
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
        let batch = ValidatedBatch::new(batch, &self.config.batch_limits)?;
        self.append_validated(batch).await
    }

    /// Appends one batch whose header and CRC the caller already checked, like
    /// [`PartitionLog::append`] without computing the CRC again. A batch checked under limits
    /// looser than the log's is checked again under the log's.
    pub async fn append_validated(&self, batch: ValidatedBatch) -> Result<AppendInfo, AppendError> {
        let batch = if batch.satisfies(&self.config.batch_limits) {
            batch
        } else {
            ValidatedBatch::new(batch.into_parts().0, &self.config.batch_limits)?
        };
        let (batch, info) = batch.into_parts();
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
                    self.issue_writes(None);
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
                    let started = Instant::now();
                    let made = self.make_room(size_bytes).await;
                    bump(&self.counters.write_buffer_full_count, 1);
                    let waited = self.counters.write_buffer_full_time_total.get();
                    self.counters
                        .write_buffer_full_time_total
                        .set(waited + started.elapsed());
                    made?;
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
        let Some(active) = state.active.as_mut() else {
            unreachable!("checked above");
        };
        let rollback = RollbackPoint {
            builder: active.builder,
            index_entry_count: active.index.entries.len(),
        };
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
            position,
            bytes: stored,
            completion: completion.clone(),
            rollback,
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

    /// Waits until the write buffer has room for a batch of `size_bytes`.
    ///
    /// Under [`FlushPolicy::Always`] a batch leaves the buffer only when a sync point made it
    /// durable, so this leads (or waits for) a sync point. Under the other policies a batch
    /// leaves as soon as the write covering it completed, so this waits only for the running
    /// writes to free room, keeping the pipeline full, instead of draining the whole buffer and
    /// writing its partial last block: an appender stalled by a slow disk resumes after the
    /// first write that frees enough, not after the last. When no running write could free
    /// room (what is left is a partial block, or a write failed), it runs a write-out, which
    /// also handles the failure.
    async fn make_room(&self, size_bytes: usize) -> Result<(), AppendError> {
        if self.config.flush != FlushPolicy::Always {
            loop {
                let generation = self.changed.generation();
                self.issue_writes(None);
                if !self.buffer_full(size_bytes) {
                    return Ok(());
                }
                let writing = self.state.borrow().active.as_ref().is_some_and(|active| {
                    active
                        .writes
                        .iter()
                        .any(|write| write.outcome.borrow().is_none())
                });
                if !writing {
                    break;
                }
                self.changed.wait(generation).await;
            }
        }
        let writer = self.acquire_writer().await;
        if self.buffer_full(size_bytes) {
            let sync = self.config.flush == FlushPolicy::Always;
            self.write_cycle(&writer, sync).await?;
        }
        Ok(())
    }

    fn buffer_full(&self, size_bytes: usize) -> bool {
        let state = self.state.borrow();
        state.unwritten_bytes > 0
            && state.unwritten_bytes + size_bytes > self.config.write_buffer_bytes_max
    }

    /// Waits until a sync point has made the batch durable or failed it, leading the next
    /// sync point itself when no task holds or waits for the writer role; keeps the write
    /// pipeline full while it waits.
    async fn wait_durable(&self, completion: &Completion) -> Result<(), AppendError> {
        loop {
            if let Some(result) = completion.take() {
                return result.map_err(AppendError::from);
            }
            let generation = self.changed.generation();
            // Keep the pipeline full while another task leads the sync point: a completed
            // write frees a slot for the next chunk of buffered blocks.
            self.issue_writes(None);
            if !self.state.borrow().writer_queue.is_empty() {
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

    /// A sync point (with `sync` false, a write-out): issues log writes until every byte
    /// admitted so far is in flight, waits until they completed, writes pending index entries
    /// and, if `sync`, fdatasyncs the log file, then acknowledges every `Always` append the
    /// fdatasync covers. Appends admitted meanwhile keep filling the write buffer and their whole
    /// blocks are written at once (see [`PartitionLog::issue_writes`]); the next sync point
    /// covers them. A failure, of this cycle's writes or of any earlier one, is handled here
    /// (see [`PartitionLog::handle_failure`]).
    pub(crate) async fn write_cycle(
        &self,
        _writer: &WriterGuard<'_>,
        sync: bool,
    ) -> Result<(), IoFailure> {
        let Some(target_bytes) = self
            .state
            .borrow()
            .active
            .as_ref()
            .map(|active| active.size_bytes)
        else {
            return Ok(());
        };
        loop {
            let generation = self.changed.generation();
            if let Some(failure) = self.reap() {
                return Err(self.handle_failure(failure).await);
            }
            if self.issue_writes(Some(target_bytes)) && self.completed_bytes() >= target_bytes {
                break;
            }
            self.changed.wait(generation).await;
        }
        self.sync_completed(sync).await
    }

    /// Writes pending index entries and, if `sync`, fdatasyncs the log file, which covers the
    /// completed log writes; then commits (see [`PartitionLog::commit_sync`]).
    async fn sync_completed(&self, sync: bool) -> Result<(), IoFailure> {
        let plan = self.plan_sync(sync);
        if plan.index_write.is_none() && plan.time_write.is_none() && !plan.sync {
            self.commit_sync(&plan);
            return Ok(());
        }
        let log_path = plan.log_path.clone();
        let Some((plan, outcome)) = self.run_detached(run_sync_io(plan)).await else {
            let error = std::io::Error::other("the sync task panicked");
            let failure = IoFailure::new(IoOperation::Sync, &log_path, None, error);
            return Err(self.handle_failure(failure).await);
        };
        self.note_index_writes(&plan, outcome.index, outcome.time_index);
        if let Some((synced, elapsed)) = outcome.sync {
            bump(&self.counters.fsync_count, 1);
            let total = self.counters.fsync_time_total.get() + elapsed;
            self.counters.fsync_time_total.set(total);
            if let Err(error) = synced {
                let failure = IoFailure::new(IoOperation::Sync, &plan.log_path, None, error);
                return Err(self.handle_failure(failure).await);
            }
        }
        self.commit_sync(&plan);
        Ok(())
    }

    /// End of the contiguous completed log writes of the active segment.
    fn completed_bytes(&self) -> u64 {
        self.state
            .borrow()
            .active
            .as_ref()
            .map_or(0, |active| active.completed_bytes)
    }

    /// Takes the completed writes off the front of the pipeline, advancing `completed_bytes`;
    /// under `Interval` and `Never` the batches they finished leave the write buffer. Returns
    /// the first failure not yet handled.
    fn reap(&self) -> Option<IoFailure> {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let active = state.active.as_mut()?;
        if let Some(failure) = &active.failure {
            return Some(failure.clone());
        }
        while let Some(front) = active.writes.front() {
            let outcome = front.outcome.borrow().clone();
            match outcome {
                None => break,
                Some(Err(failure)) => return Some(failure),
                Some(Ok(())) => {
                    assert!(
                        front.start <= active.completed_bytes,
                        "log writes are issued contiguously"
                    );
                    active.completed_bytes = active.completed_bytes.max(front.data_end);
                    active.writes.pop_front();
                }
            }
        }
        let completed_bytes = active.completed_bytes;
        if self.config.flush != FlushPolicy::Always {
            retire(state, completed_bytes);
        }
        None
    }

    /// Issues log writes while a slot is free (`writes_in_flight_max`): chunks of whole blocks
    /// of buffered data, as soon as they are buffered; with `through`, also the rest up to that
    /// position: its partial last block, and zeros up to the furthest write a failure left.
    /// Never issues a write that shares a block with a running one: their completion order is
    /// not guaranteed, so an older version of the block could land last. Returns whether
    /// everything up to `through` is issued.
    pub(crate) fn issue_writes(&self, through: Option<u64>) -> bool {
        if self.reap().is_some() {
            return false;
        }
        loop {
            let (file, path, position, parts, outcome) = {
                let mut guard = self.state.borrow_mut();
                let state = &mut *guard;
                let Some(active) = state.active.as_mut() else {
                    return true;
                };
                if active
                    .writes
                    .iter()
                    .any(|write| matches!(*write.outcome.borrow(), Some(Err(_))))
                {
                    return false;
                }
                let alignment = active.alignment;
                let done = through.is_none_or(|target| {
                    active.submitted_bytes >= target
                        && active.log_high_water_bytes <= active.submitted_bytes
                });
                let chunk_bytes =
                    align_down(self.config.write_chunk_bytes_max as u64, alignment).max(alignment);
                let start = align_down(active.submitted_bytes, alignment);
                let eager_end = align_down(active.size_bytes, alignment);
                let (data_end, end) = if start < eager_end {
                    let data_end = eager_end.min(start + chunk_bytes);
                    (data_end, data_end)
                } else if let Some(target) = through.filter(|_| !done) {
                    let data_end = target.max(active.submitted_bytes);
                    (data_end, data_end.max(active.log_high_water_bytes))
                } else {
                    return true;
                };
                let running = active
                    .writes
                    .iter()
                    .filter(|write| write.outcome.borrow().is_none());
                let mut running_count = 0usize;
                let mut shares_a_block = false;
                let block_end = align_up(end, alignment);
                for write in running {
                    running_count += 1;
                    shares_a_block |=
                        write.start < block_end && start < align_up(write.end, alignment);
                }
                if running_count >= self.config.writes_in_flight_max || shares_a_block {
                    return done;
                }
                let mut parts = gather(active, &state.unwritten, start, data_end);
                if end > data_end {
                    // Erase what a failed write left after the log end.
                    parts.push(Bytes::from(vec![0u8; (end - data_end) as usize]));
                    active.log_high_water_bytes = data_end;
                }
                let outcome = Rc::new(std::cell::RefCell::new(None));
                active.writes.push_back(LogWrite {
                    start,
                    data_end,
                    end,
                    outcome: outcome.clone(),
                });
                assert!(
                    data_end >= active.submitted_bytes,
                    "submitted bytes must not shrink"
                );
                active.submitted_bytes = data_end;
                (
                    active.log.clone(),
                    active.paths.log.clone(),
                    start,
                    parts,
                    outcome,
                )
            };
            bump(&self.counters.log_write_count, 1);
            self.spawn_log_write(file, path, position, parts, outcome);
        }
    }

    /// Runs one log write as a detached task (see [`PartitionLog::run_detached`]) that records
    /// its outcome and wakes the waiters.
    fn spawn_log_write(
        &self,
        file: FileHandle,
        path: std::path::PathBuf,
        position: u64,
        parts: Vec<Bytes>,
        outcome: WriteOutcome,
    ) {
        self.io_in_flight.set(self.io_in_flight.get() + 1);
        let in_flight = self.io_in_flight.clone();
        let changed = self.changed.clone();
        glommio::spawn_local(async move {
            let slices: Vec<&[u8]> = parts.iter().map(|part| &part[..]).collect();
            let written = file
                .write_at(position, &slices)
                .await
                .map(|_| ())
                .map_err(|error| IoFailure::new(IoOperation::Write, &path, Some(position), error));
            *outcome.borrow_mut() = Some(written);
            in_flight.set(in_flight.get() - 1);
            changed.notify_all();
        })
        .detach();
    }

    /// What a sync point writes to the index files and whether it fdatasyncs.
    fn plan_sync(&self, sync: bool) -> SyncPlan {
        let state = self.state.borrow();
        let Some(active) = state.active.as_ref() else {
            unreachable!("the active segment cannot change while the writer role is held");
        };
        let index_write = (active.index_written_entries < active.index.entries.len()).then(|| {
            let written_bytes = (active.index_written_entries * INDEX_ENTRY_BYTES) as u64;
            let (position, bytes) = index_region(
                active.alignment,
                written_bytes,
                active.index_high_water_bytes,
                active
                    .index
                    .encode_offsets_from(align_down(written_bytes, active.alignment)),
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
        // Under `Interval` and `Never` reaping already moved every batch below the completed
        // position out of the write buffer; under `Always` the commit does.
        let durable_end_offset =
            (self.config.flush != FlushPolicy::Always).then_some(state.written_end_offset);
        SyncPlan {
            base_offset: active.base_offset,
            log: active.log.clone(),
            log_path: active.paths.log.clone(),
            index_write,
            time_write,
            sync: sync && active.durable_bytes < active.completed_bytes,
            durable_target_bytes: active.completed_bytes,
            durable_end_offset,
        }
    }

    /// Records which index writes landed; a failed index write is retried by the next cycle
    /// (the log, not the index, is the truth).
    fn note_index_writes(
        &self,
        plan: &SyncPlan,
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

    /// Applies a successful sync point: the fdatasync covers every log write that had
    /// completed when it was issued, so under `Always` the batches below that position leave
    /// the write buffer for the tail cache and their appenders learn they are durable.
    fn commit_sync(&self, plan: &SyncPlan) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let Some(active) = state.active.as_mut() else {
            unreachable!("the active segment cannot change while the writer role is held");
        };
        assert_eq!(
            active.base_offset, plan.base_offset,
            "segment changed under a write"
        );
        if plan.sync {
            assert!(
                plan.durable_target_bytes <= active.completed_bytes,
                "an fdatasync covers only completed writes"
            );
            active.durable_bytes = active.durable_bytes.max(plan.durable_target_bytes);
        }
        let durable_bytes = active.durable_bytes;
        if self.config.flush == FlushPolicy::Always {
            retire(state, durable_bytes);
        }
        if plan.sync {
            let durable_end_offset = plan.durable_end_offset.unwrap_or(state.written_end_offset);
            state.durable_end_offset = state.durable_end_offset.max(durable_end_offset);
        }
        state.assert_offsets();
        drop(guard);
        self.changed.notify_all();
    }

    /// Handles a failed log write or fdatasync, once every detached write has finished (so
    /// none can land after the state below is decided): under [`FlushPolicy::Always`] nothing
    /// buffered was acknowledged, so every buffered append fails and the segment returns to
    /// its last durable state; under the other policies the buffered batches are acknowledged
    /// and are written again from the end of the completed writes. Either way the furthest
    /// write attempted becomes the high water mark that the next sync point zero-fills up to.
    /// The failure is recorded first, so a cancelled caller leaves it to the next writer.
    async fn handle_failure(&self, failure: IoFailure) -> IoFailure {
        if let Some(active) = self.state.borrow_mut().active.as_mut() {
            active.failure.get_or_insert_with(|| failure.clone());
        }
        self.wait_io_idle().await;
        bump(&self.counters.flush_error_count, 1);
        tracing::warn!(%failure, "log write failed");
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let Some(active) = state.active.as_mut() else {
            return failure;
        };
        let mut completed_bytes = active.completed_bytes;
        let mut contiguous = true;
        for write in active.writes.drain(..) {
            match *write.outcome.borrow() {
                Some(Ok(())) if contiguous => {
                    completed_bytes = completed_bytes.max(write.data_end);
                }
                _ => contiguous = false,
            }
            active.log_high_water_bytes = active.log_high_water_bytes.max(write.end);
        }
        active.log_high_water_bytes = active.log_high_water_bytes.max(active.submitted_bytes);
        active.failure = None;
        if self.config.flush == FlushPolicy::Always {
            if let Some(first) = state.unwritten.front() {
                active.builder = first.rollback.builder;
                active.index.truncate(first.rollback.index_entry_count);
                active.size_bytes = first.position;
                state.log_end_offset = first.base_offset;
                if active.size_bytes == 0 {
                    active.first_seen_ms = None;
                }
            }
            for batch in state.unwritten.drain(..) {
                if let Some(completion) = &batch.completion {
                    completion.set(Some(Err(failure.clone())));
                }
            }
            state.unwritten_bytes = 0;
            let entries = active.index.entries.len();
            active.index_written_entries = active.index_written_entries.min(entries);
            active.time_written_entries = active.time_written_entries.min(entries);
            assert_eq!(
                active.size_bytes, active.written_bytes,
                "rolled back to written"
            );
            active.completed_bytes = active.written_bytes;
            active.submitted_bytes = active.written_bytes;
            active.durable_bytes = active.durable_bytes.min(active.written_bytes);
            assert_eq!(
                state.log_end_offset, state.written_end_offset,
                "rolled back"
            );
        } else {
            active.completed_bytes = completed_bytes;
            active.submitted_bytes = completed_bytes;
            retire(state, completed_bytes);
        }
        state.assert_offsets();
        drop(guard);
        self.changed.notify_all();
        failure
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
            completed_bytes: 0,
            submitted_bytes: 0,
            durable_bytes: 0,
            tail_block: Vec::new(),
            writes: std::collections::VecDeque::new(),
            failure: None,
            log_high_water_bytes: 0,
            index_written_entries: 0,
            index_high_water_bytes: 0,
            time_written_entries: 0,
            time_high_water_bytes: 0,
            first_seen_ms: None,
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

/// What a sync point writes and syncs after its log writes completed.
struct SyncPlan {
    base_offset: i64,
    log: FileHandle,
    log_path: std::path::PathBuf,
    index_write: Option<IndexWrite>,
    time_write: Option<IndexWrite>,
    sync: bool,
    /// Completed log bytes when the fdatasync is issued: what it makes durable.
    durable_target_bytes: u64,
    /// Under `Interval` and `Never`, the written end offset at that moment.
    durable_end_offset: Option<i64>,
}

/// Results of a sync point's I/O.
struct SyncOutcome {
    index: Option<std::io::Result<()>>,
    time_index: Option<std::io::Result<()>>,
    /// The fdatasync's result and duration, if the sync point synced.
    sync: Option<(std::io::Result<()>, std::time::Duration)>,
}

/// The I/O of a sync point: the index writes beside the log file's fdatasync. Owns everything
/// it touches, so it can run detached.
async fn run_sync_io(plan: SyncPlan) -> (SyncPlan, SyncOutcome) {
    let outcome = {
        let index_writes = zip(
            write_index(plan.index_write.as_ref()),
            write_index(plan.time_write.as_ref()),
        );
        let sync = async {
            if !plan.sync {
                return None;
            }
            let started = Instant::now();
            let synced = plan.log.sync().await;
            Some((synced, started.elapsed()))
        };
        let ((index, time_index), sync) = zip(index_writes, sync).await;
        SyncOutcome {
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

/// Moves the buffered batches that end at or below `upto_bytes` to the tail cache, completing
/// their appends: they are written (under `Always`: durable).
fn retire(state: &mut State, upto_bytes: u64) {
    let Some(active) = state.active.as_mut() else {
        return;
    };
    while let Some(front) = state.unwritten.front() {
        let end = front.position + front.bytes.len() as u64;
        if end > upto_bytes {
            break;
        }
        let Some(batch) = state.unwritten.pop_front() else {
            unreachable!("checked above");
        };
        assert_eq!(
            batch.position, active.written_bytes,
            "buffered batches are contiguous in the file"
        );
        assert_eq!(
            batch.base_offset, state.written_end_offset,
            "written batches contiguous"
        );
        active.tail_block =
            last_partial_block(&[&active.tail_block, &batch.bytes], active.alignment);
        active.written_bytes = end;
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
}

/// The bytes of the log file `[start, end)`: the start of the first buffered batch's block
/// from `tail_block`, the rest as zero-copy slices of the buffered batches.
fn gather(
    active: &ActiveSegment,
    unwritten: &std::collections::VecDeque<PendingBatch>,
    start: u64,
    end: u64,
) -> Vec<Bytes> {
    let block_start = align_down(active.written_bytes, active.alignment);
    assert!(
        block_start <= start && start <= end && end <= active.size_bytes,
        "a log write covers buffered bytes: {start}..{end} of {block_start}..{}",
        active.size_bytes
    );
    let mut parts = Vec::new();
    if start < active.written_bytes {
        let from = (start - block_start) as usize;
        let to = (end.min(active.written_bytes) - block_start) as usize;
        parts.push(Bytes::copy_from_slice(&active.tail_block[from..to]));
    }
    let first =
        unwritten.partition_point(|batch| batch.position + batch.bytes.len() as u64 <= start);
    for batch in unwritten.range(first..) {
        if batch.position >= end {
            break;
        }
        let batch_end = batch.position + batch.bytes.len() as u64;
        let from = start.saturating_sub(batch.position) as usize;
        let to = (end.min(batch_end) - batch.position) as usize;
        parts.push(batch.bytes.slice(from..to));
    }
    // Paired with the check of the bytes read back at recovery: a write carries exactly the
    // file's bytes of its range.
    assert_eq!(
        parts.iter().map(|part| part.len() as u64).sum::<u64>(),
        end - start,
        "gathered bytes cover the write"
    );
    parts
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
        let parts: [&[u8]; 3] = [b"abc", b"defgh", b"ij"];
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
