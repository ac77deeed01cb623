//! The read path: reads by offset, lookups by timestamp, and lazy loading of sealed segments'
//! indexes.
//!
//! Owns no state of its own. Reads at the tail are served from memory (tail cache and write
//! buffer) with no I/O; older reads find the segment, take the index entry at or before the
//! offset, read forward with one positioned read per chunk, and check every batch they return
//! (length, CRC, base offset in sequence) - the read-back half of the paired checks. A sealed
//! segment's index is loaded on first use, checked against the segment's size and against the
//! batch it points to, and rebuilt by a scan if missing or damaged; corruption in a sealed
//! segment is reported with its file and position and nothing is repaired or deleted. Reads do
//! not write, except that a rebuilt index is written back (and synced) so the scan happens once.

use std::rc::Rc;

use bytes::Bytes;
use weir_proto::batch::BatchHeader;

use crate::{
    error::{Corruption, IoFailure, IoOperation, ReadError},
    io::{FileHandle, OpenMode},
    layout::{
        decode_offset_index, decode_time_index, encode_index_entry, encode_time_entry, IndexEntry,
        TimeEntry,
    },
    log::{bump, PartitionLog, ReadBatches, State},
    scan::{scan_segment, ScanRange},
    segment::{
        parse_batch, IndexBuilder, LoadedSegment, Parsed, SealedSegment, SegmentIndex,
        STORED_BATCH_LIMITS,
    },
};

/// Where a disk read goes.
struct DiskTarget {
    file: FileHandle,
    path: std::path::PathBuf,
    segment_base_offset: i64,
    start: IndexEntry,
    readable_end: u64,
    /// The segment, if sealed (its index can be rebuilt on a mismatch).
    sealed: Option<Rc<SealedSegment>>,
}

/// Why reading one segment failed.
enum SegmentReadError {
    /// The index entry the read started from does not point at the batch it names.
    IndexMismatch,
    /// Anything else.
    Failed(ReadError),
}

impl From<IoFailure> for SegmentReadError {
    fn from(failure: IoFailure) -> Self {
        SegmentReadError::Failed(ReadError::Io(failure))
    }
}

/// What to do for a read, decided under one borrow of the state.
enum ReadPlan {
    Done(Vec<Bytes>),
    Disk(DiskTarget),
    LoadSealed(Rc<SealedSegment>, Option<i64>),
}

impl PartitionLog {
    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes`
    /// (always at least one whole batch). Returns no batches at the stable end offset; fails
    /// with [`ReadError::OffsetOutOfRange`] below the log start or above the log end.
    pub async fn read(&self, offset: i64, max_bytes: u32) -> Result<ReadBatches, ReadError> {
        let mut rebuilds_left = 1;
        loop {
            let plan = {
                let state = self.state.borrow();
                self.plan_read(&state, offset, max_bytes)?
            };
            let target = match plan {
                ReadPlan::Done(batches) => return Ok(self.read_result(batches)),
                ReadPlan::LoadSealed(segment, next_base) => {
                    self.load_sealed(&segment, next_base, false).await?;
                    continue;
                }
                ReadPlan::Disk(target) => target,
            };
            bump(&self.counters.tail_cache_misses, 1);
            match self.read_segment(&target, offset, max_bytes).await {
                Ok(batches) => return Ok(self.read_result(batches)),
                Err(SegmentReadError::IndexMismatch) if rebuilds_left > 0 => {
                    rebuilds_left -= 1;
                    let Some(segment) = target.sealed else {
                        return Err(self
                            .corrupt(
                                &target.path,
                                target.start.position,
                                "index entry does not point at its batch",
                            )
                            .into());
                    };
                    let next_base = self.next_segment_base(segment.base_offset);
                    tracing::warn!(path = ?segment.paths.index, "index entry points at the wrong batch; rebuilding");
                    self.load_sealed(&segment, next_base, true).await?;
                }
                Err(SegmentReadError::IndexMismatch) => {
                    return Err(self
                        .corrupt(
                            &target.path,
                            u64::from(target.start.position),
                            "index entry does not point at its batch",
                        )
                        .into())
                }
                Err(SegmentReadError::Failed(error)) => {
                    // The segment may have been deleted by retention meanwhile.
                    let log_start_offset = self.log_start_offset();
                    if offset < log_start_offset {
                        return Err(ReadError::OffsetOutOfRange {
                            offset,
                            log_start_offset,
                            log_end_offset: self.log_end_offset(),
                        });
                    }
                    return Err(error);
                }
            }
        }
    }

    fn corrupt(
        &self,
        path: &std::path::Path,
        position: impl Into<u64>,
        reason: &str,
    ) -> Corruption {
        Corruption {
            path: path.to_path_buf(),
            position: position.into(),
            reason: reason.to_string(),
        }
    }

    fn read_result(&self, batches: Vec<Bytes>) -> ReadBatches {
        let state = self.state.borrow();
        ReadBatches {
            batches,
            log_start_offset: state.log_start_offset,
            stable_end_offset: state.stable_end_offset(self.config.flush),
        }
    }

    fn plan_read(&self, state: &State, offset: i64, max_bytes: u32) -> Result<ReadPlan, ReadError> {
        if offset < state.log_start_offset || offset > state.log_end_offset {
            return Err(ReadError::OffsetOutOfRange {
                offset,
                log_start_offset: state.log_start_offset,
                log_end_offset: state.log_end_offset,
            });
        }
        let stable_end_offset = state.stable_end_offset(self.config.flush);
        if offset >= stable_end_offset {
            return Ok(ReadPlan::Done(Vec::new()));
        }
        if let Some(batches) = self.read_memory(state, offset, max_bytes, stable_end_offset) {
            bump(&self.counters.tail_cache_hits, 1);
            return Ok(ReadPlan::Done(batches));
        }
        if let Some(active) = state
            .active
            .as_ref()
            .filter(|active| offset >= active.base_offset)
        {
            let relative_offset = u32::try_from(offset - active.base_offset).unwrap_or(u32::MAX);
            return Ok(ReadPlan::Disk(DiskTarget {
                file: active.log.clone(),
                path: active.paths.log.clone(),
                segment_base_offset: active.base_offset,
                start: active.index.lookup_offset(relative_offset),
                readable_end: active.written_bytes,
                sealed: None,
            }));
        }
        let Some((_, segment)) = state.sealed.range(..=offset).next_back() else {
            unreachable!("offset {offset} >= log start has a segment");
        };
        let loaded = segment.loaded.borrow().clone();
        let Some(loaded) = loaded else {
            let next_base = next_base_in(state, segment.base_offset);
            return Ok(ReadPlan::LoadSealed(segment.clone(), next_base));
        };
        let relative_offset = u32::try_from(offset - segment.base_offset).unwrap_or(u32::MAX);
        Ok(ReadPlan::Disk(DiskTarget {
            file: loaded.file.clone(),
            path: segment.paths.log.clone(),
            segment_base_offset: segment.base_offset,
            start: loaded.index.lookup_offset(relative_offset),
            readable_end: segment.size_bytes,
            sealed: Some(segment.clone()),
        }))
    }

    /// Serves the read from the tail cache and write buffer if they hold `offset`.
    fn read_memory(
        &self,
        state: &State,
        offset: i64,
        max_bytes: u32,
        stable_end_offset: i64,
    ) -> Option<Vec<Bytes>> {
        let memory_start = state
            .tail_cache
            .first_offset()
            .or_else(|| state.unwritten.front().map(|batch| batch.base_offset))?;
        if offset < memory_start {
            return None;
        }
        if let (Some(cache_end), Some(first_unwritten)) =
            (state.tail_cache.end_offset(), state.unwritten.front())
        {
            assert_eq!(
                cache_end, first_unwritten.base_offset,
                "memory tail is contiguous"
            );
        }
        let cached = state
            .tail_cache
            .iter_from(offset)
            .map(|batch| (batch.base_offset, batch.next_offset, &batch.bytes));
        let first_buffered = state
            .unwritten
            .partition_point(|batch| batch.next_offset <= offset);
        let buffered = state
            .unwritten
            .range(first_buffered..)
            .map(|batch| (batch.base_offset, batch.next_offset, &batch.bytes));
        let mut batches = Vec::new();
        let mut total_bytes = 0usize;
        for (base_offset, next_offset, bytes) in cached.chain(buffered) {
            if next_offset <= offset {
                continue;
            }
            if base_offset >= stable_end_offset {
                break;
            }
            if !batches.is_empty() && total_bytes + bytes.len() > max_bytes as usize {
                break;
            }
            total_bytes += bytes.len();
            batches.push(bytes.clone());
        }
        Some(batches)
    }

    /// Reads whole batches from one segment file, starting at the target's index entry.
    async fn read_segment(
        &self,
        target: &DiskTarget,
        offset: i64,
        max_bytes: u32,
    ) -> Result<Vec<Bytes>, SegmentReadError> {
        let first_position = u64::from(target.start.position);
        let indexed = target.start.position > 0;
        let mut position = first_position;
        let mut expected_offset =
            target.segment_base_offset + i64::from(target.start.relative_offset);
        let mut buffer = Bytes::new();
        let mut buffer_start = position;
        let mut batches = Vec::new();
        let mut total_bytes = 0usize;
        let corrupt = |position: u64, reason: String| {
            SegmentReadError::Failed(ReadError::Corrupt(Corruption {
                path: target.path.clone(),
                position,
                reason,
            }))
        };
        while position < target.readable_end {
            let in_buffer = (position - buffer_start) as usize;
            let available = buffer.get(in_buffer..).unwrap_or(&[]);
            match parse_batch(available, &STORED_BATCH_LIMITS) {
                Parsed::Partial { needed } => {
                    let remaining = target.readable_end - position;
                    if needed as u64 > remaining {
                        if position == first_position && indexed {
                            return Err(SegmentReadError::IndexMismatch);
                        }
                        return Err(corrupt(
                            position,
                            format!(
                                "batch needs {needed} bytes, {remaining} remain in the segment"
                            ),
                        ));
                    }
                    let wanted = (max_bytes as usize)
                        .saturating_sub(total_bytes)
                        .max(needed)
                        .max(self.config.read_chunk_bytes_min as usize);
                    let length = (wanted as u64).min(remaining) as usize;
                    bump(&self.counters.disk_read_count, 1);
                    buffer = target
                        .file
                        .read_at(position, length)
                        .await
                        .map_err(|error| {
                            IoFailure::new(IoOperation::Read, &target.path, Some(position), error)
                        })?;
                    buffer_start = position;
                    if buffer.len() < needed {
                        return Err(corrupt(
                            position,
                            format!(
                                "file ends {} bytes into a {needed}-byte batch",
                                buffer.len()
                            ),
                        ));
                    }
                }
                Parsed::Invalid(reason) => {
                    if position == first_position && indexed {
                        return Err(SegmentReadError::IndexMismatch);
                    }
                    return Err(corrupt(position, reason));
                }
                Parsed::Batch(info) => {
                    if info.base_offset != expected_offset {
                        if position == first_position && indexed {
                            return Err(SegmentReadError::IndexMismatch);
                        }
                        return Err(corrupt(
                            position,
                            format!(
                                "batch base offset {} where {expected_offset} was expected",
                                info.base_offset
                            ),
                        ));
                    }
                    let size_bytes = info.size_bytes as usize;
                    let batch = buffer.slice(in_buffer..in_buffer + size_bytes);
                    position += size_bytes as u64;
                    expected_offset = info.next_offset();
                    if info.next_offset() <= offset {
                        continue;
                    }
                    if !batches.is_empty() && total_bytes + size_bytes > max_bytes as usize {
                        break;
                    }
                    total_bytes += size_bytes;
                    batches.push(batch);
                    if total_bytes >= max_bytes as usize {
                        break;
                    }
                }
            }
        }
        if batches.is_empty() {
            return Err(corrupt(
                position,
                format!(
                    "offset {offset} is not in the segment, which ends at offset {expected_offset}"
                ),
            ));
        }
        Ok(batches)
    }

    /// Base offset of the segment after the one at `base_offset`, if any.
    pub(crate) fn next_segment_base(&self, base_offset: i64) -> Option<i64> {
        next_base_in(&self.state.borrow(), base_offset)
    }

    /// Loads (or, with `rebuild`, rebuilds) a sealed segment's index.
    pub(crate) async fn load_sealed(
        &self,
        segment: &Rc<SealedSegment>,
        next_base_offset: Option<i64>,
        rebuild: bool,
    ) -> Result<Rc<LoadedSegment>, ReadError> {
        if !rebuild {
            if let Some(loaded) = segment.loaded.borrow().clone() {
                return Ok(loaded);
            }
        }
        let paths = &segment.paths;
        let file = self
            .backend
            .open(&paths.log, OpenMode::Existing)
            .await
            .map_err(|error| IoFailure::new(IoOperation::Open, &paths.log, None, error))?;
        let stored = if rebuild {
            None
        } else {
            self.read_sealed_index(segment).await
        };
        let (index, next_offset, max_timestamp_ms) = match stored {
            Some(stored) => stored,
            None => self.rebuild_sealed_index(segment, &file).await?,
        };
        if let Some(next_base_offset) = next_base_offset {
            if next_offset != next_base_offset {
                return Err(Corruption {
                    path: paths.log.clone(),
                    position: segment.size_bytes,
                    reason: format!(
                        "segment ends at offset {next_offset} but the next segment starts at \
                         {next_base_offset}"
                    ),
                }
                .into());
            }
        }
        let loaded = Rc::new(LoadedSegment {
            index,
            max_timestamp_ms,
            file,
        });
        *segment.loaded.borrow_mut() = Some(loaded.clone());
        Ok(loaded)
    }

    /// Reads and checks a sealed segment's index files; `None` if missing or damaged.
    async fn read_sealed_index(&self, segment: &SealedSegment) -> Option<(SegmentIndex, i64, i64)> {
        let index_bytes = self.read_whole_file(&segment.paths.index).await?;
        let time_bytes = self.read_whole_file(&segment.paths.time_index).await?;
        let offsets = decode_offset_index(&index_bytes);
        let times = decode_time_index(&time_bytes);
        let well_formed = !offsets.damaged
            && !times.damaged
            && times.entries.len() == offsets.entries.len() + 1
            && offsets
                .entries
                .iter()
                .zip(&times.entries)
                .all(|(entry, time)| entry.relative_offset == time.relative_offset)
            && offsets
                .entries
                .last()
                .is_none_or(|last| u64::from(last.position) < segment.size_bytes);
        let final_entry = times.entries.last()?;
        if !well_formed {
            tracing::warn!(path = ?segment.paths.index, "sealed segment index damaged; rebuilding");
            return None;
        }
        let index = SegmentIndex {
            times: times.entries[..offsets.entries.len()]
                .iter()
                .map(|time| time.timestamp_ms)
                .collect(),
            entries: offsets.entries,
        };
        let next_offset = segment.base_offset + i64::from(final_entry.relative_offset);
        Some((index, next_offset, final_entry.timestamp_ms))
    }

    async fn read_whole_file(&self, path: &std::path::Path) -> Option<Bytes> {
        let read = async {
            let file = self.backend.open(path, OpenMode::Existing).await?;
            let size = file.size().await?;
            let bytes = file.read_at(0, size as usize).await?;
            file.close().await?;
            Ok::<Bytes, std::io::Error>(bytes)
        };
        match read.await {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                tracing::warn!(?path, %error, "index file unreadable; rebuilding");
                None
            }
        }
    }

    /// Scans a whole sealed segment to rebuild its indexes, then writes them back.
    async fn rebuild_sealed_index(
        &self,
        segment: &SealedSegment,
        file: &FileHandle,
    ) -> Result<(SegmentIndex, i64, i64), ReadError> {
        let mut builder = IndexBuilder::new(self.config.index_interval_bytes);
        let mut index = SegmentIndex::default();
        let outcome = scan_segment(
            ScanRange {
                file,
                path: &segment.paths.log,
                segment_base_offset: segment.base_offset,
                start: IndexEntry {
                    relative_offset: 0,
                    position: 0,
                },
                end: segment.size_bytes,
                chunk_bytes: self.scan_chunk_bytes(),
            },
            &mut builder,
            &mut index,
        )
        .await?;
        if let Some(stop) = outcome.stop {
            return Err(Corruption {
                path: segment.paths.log.clone(),
                position: stop.position,
                reason: stop.reason,
            }
            .into());
        }
        let final_entry = TimeEntry {
            timestamp_ms: builder.max_timestamp_ms,
            relative_offset: u32::try_from(outcome.next_offset - segment.base_offset)
                .unwrap_or(u32::MAX),
        };
        if let Err(failure) = self.write_sealed_index(segment, &index, final_entry).await {
            tracing::warn!(%failure, "writing a rebuilt index failed; it stays in memory");
        }
        Ok((index, outcome.next_offset, builder.max_timestamp_ms))
    }

    async fn write_sealed_index(
        &self,
        segment: &SealedSegment,
        index: &SegmentIndex,
        final_entry: TimeEntry,
    ) -> Result<(), IoFailure> {
        let mut index_bytes = Vec::new();
        let mut time_bytes = Vec::new();
        for (entry, time) in index.entries.iter().zip(&index.times) {
            encode_index_entry(*entry, &mut index_bytes);
            encode_time_entry(
                TimeEntry {
                    timestamp_ms: *time,
                    relative_offset: entry.relative_offset,
                },
                &mut time_bytes,
            );
        }
        encode_time_entry(final_entry, &mut time_bytes);
        for (path, bytes) in [
            (&segment.paths.index, index_bytes),
            (&segment.paths.time_index, time_bytes),
        ] {
            let failure = |operation, error| IoFailure::new(operation, path, None, error);
            let file = self
                .backend
                .open(path, OpenMode::CreateTruncate)
                .await
                .map_err(|error| failure(IoOperation::Open, error))?;
            if !bytes.is_empty() {
                file.write_at(0, &[&bytes[..]])
                    .await
                    .map_err(|error| failure(IoOperation::Write, error))?;
            }
            file.truncate(bytes.len() as u64)
                .await
                .map_err(|error| failure(IoOperation::Truncate, error))?;
            file.sync()
                .await
                .map_err(|error| failure(IoOperation::Sync, error))?;
            file.close()
                .await
                .map_err(|error| failure(IoOperation::Close, error))?;
        }
        Ok(())
    }

    /// Bytes per read when scanning a segment.
    pub(crate) fn scan_chunk_bytes(&self) -> usize {
        self.config.scan_chunk_bytes as usize
    }

    /// The first offset whose batch has a max timestamp at least `timestamp_ms`: the base offset
    /// of the first such batch at or after the log start, or `None` if no batch is that new.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<i64>, ReadError> {
        let Some(start_offset) = self.timestamp_scan_start(timestamp_ms).await? else {
            return Ok(None);
        };
        let mut offset = start_offset.max(self.log_start_offset());
        let chunk_bytes = self.config.read_chunk_bytes_min;
        loop {
            let read = self.read(offset, chunk_bytes).await?;
            if read.batches.is_empty() {
                return Ok(None);
            }
            for batch in &read.batches {
                let Some(header) = BatchHeader::view(batch) else {
                    unreachable!("read returns whole checked batches");
                };
                let base_offset = header.base_offset.get();
                if header.max_timestamp.get() >= timestamp_ms {
                    return Ok(Some(base_offset.max(offset)));
                }
                offset = base_offset + i64::from(header.last_offset_delta.get()) + 1;
            }
        }
    }

    /// Offset to scan from for [`PartitionLog::offset_for_timestamp`]: in the first segment
    /// whose newest batch is new enough, the last index entry before which all are older.
    async fn timestamp_scan_start(&self, timestamp_ms: i64) -> Result<Option<i64>, ReadError> {
        let sealed: Vec<Rc<SealedSegment>> = self.state.borrow().sealed.values().cloned().collect();
        for segment in sealed {
            let next_base = self.next_segment_base(segment.base_offset);
            if segment.base_offset < self.log_start_offset() {
                continue;
            }
            let loaded = self.load_sealed(&segment, next_base, false).await?;
            if loaded.max_timestamp_ms >= timestamp_ms {
                let entry = loaded.index.lookup_time(timestamp_ms);
                return Ok(Some(segment.base_offset + i64::from(entry.relative_offset)));
            }
        }
        let state = self.state.borrow();
        Ok(state.active.as_ref().and_then(|active| {
            (active.builder.max_timestamp_ms >= timestamp_ms).then(|| {
                let entry = active.index.lookup_time(timestamp_ms);
                active.base_offset + i64::from(entry.relative_offset)
            })
        }))
    }
}

fn next_base_in(state: &State, base_offset: i64) -> Option<i64> {
    use std::ops::Bound::{Excluded, Unbounded};
    state
        .sealed
        .range((Excluded(base_offset), Unbounded))
        .next()
        .map(|(base, _)| *base)
        .or_else(|| state.active.as_ref().map(|active| active.base_offset))
        .or_else(|| {
            // After a roll and before the next append there is no active segment: the log end
            // is where the next one will start.
            (state.sealed.keys().next_back() == Some(&base_offset)).then_some(state.log_end_offset)
        })
}
