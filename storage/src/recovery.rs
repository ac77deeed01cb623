//! Opening a log: listing the directory, registering sealed segments without reading them, and
//! recovering the last segment.
//!
//! Owns the rules that turn whatever a crash left on disk into a consistent log:
//! - Sealed segments are only listed and sized (`stat`), so opening takes time proportional to
//!   the number of segments, not to their bytes; their indexes are loaded on first read.
//! - The last segment is scanned from its last index entry that points at a valid batch with
//!   the expected offset (or from the start). Every batch's length, CRC and base offset is
//!   checked; the file is truncated at the first torn or corrupt batch, preallocated again (so
//!   stale bytes past the end read as zeros and can never be taken for data after a later,
//!   shorter write), and synced.
//! - Index entries past the recovered end are dropped and missing ones rebuilt from the scan;
//!   the index files are cut to the kept entries before new ones are written.
//! - A first batch whose base offset disagrees with its file name is corruption, not a torn
//!   tail: open fails and nothing is changed.
//! - Index files without a log file (left by a crash during retention) are removed.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::PathBuf,
    rc::Rc,
};

use weir_proto::batch::BatchHeader;

use crate::{
    config::LogConfig,
    error::{Corruption, IoFailure, IoOperation, OpenError},
    io::{FileHandle, OpenMode, StorageBackend},
    layout::{
        decode_offset_index, decode_time_index, parse_base_offset, IndexEntry, SegmentPaths,
        INDEX_ENTRY_BYTES, INDEX_EXTENSION, LOG_EXTENSION, TIME_INDEX_ENTRY_BYTES,
        TIME_INDEX_EXTENSION,
    },
    log::{ActiveSegment, Counters, PartitionLog, State},
    notify::Notify,
    scan::{scan_segment, ScanRange},
    segment::{
        parse_batch, IndexBuilder, Parsed, SealedSegment, SegmentIndex, STORED_BATCH_LIMITS,
    },
    tail_cache::TailCache,
    write::align_down,
};

/// Opens and recovers the log in `dir`.
pub(crate) async fn open(
    dir: PathBuf,
    config: LogConfig,
    backend: Rc<dyn StorageBackend>,
) -> Result<PartitionLog, OpenError> {
    config.validate()?;
    let directory_failure =
        |error| IoFailure::new(IoOperation::Directory, dir.clone(), None, error);
    std::fs::create_dir_all(&dir).map_err(directory_failure)?;
    backend.prepare_dir(&dir).await.map_err(directory_failure)?;
    let bases = list_segments(&dir)?;

    let mut sealed = BTreeMap::new();
    let last_base = bases.last().copied();
    for base_offset in bases
        .iter()
        .copied()
        .filter(|base| Some(*base) != last_base)
    {
        let paths = SegmentPaths::new(&dir, base_offset);
        let size_bytes = std::fs::metadata(&paths.log)
            .map_err(|error| IoFailure::new(IoOperation::Size, &paths.log, None, error))?
            .len();
        sealed.insert(
            base_offset,
            Rc::new(SealedSegment {
                base_offset,
                size_bytes,
                paths,
                loaded: RefCell::new(None),
            }),
        );
    }
    let log_start_offset = bases.first().copied().unwrap_or(0);
    let tail_cache = TailCache::new(config.tail_cache_bytes_max);
    let log = PartitionLog {
        dir,
        config,
        backend,
        state: RefCell::new(State {
            sealed,
            active: None,
            log_start_offset,
            log_end_offset: log_start_offset,
            written_end_offset: log_start_offset,
            durable_end_offset: log_start_offset,
            unwritten: VecDeque::new(),
            unwritten_bytes: 0,
            tail_cache,
            writer_queue: VecDeque::new(),
            writer_ticket_next: 0,
            rolling: false,
            last_interval_flush_ms: None,
        }),
        changed: Rc::new(Notify::default()),
        io_in_flight: Rc::new(std::cell::Cell::new(0)),
        counters: Counters::default(),
    };
    match last_base {
        Some(base_offset) => log.recover_last_segment(base_offset).await?,
        None => {
            let writer = log.acquire_writer().await;
            log.create_active_segment(&writer).await?;
        }
    }
    Ok(log)
}

/// Base offsets of the segments in `dir`, in order; removes index files that have no log.
fn list_segments(dir: &std::path::Path) -> Result<BTreeSet<i64>, OpenError> {
    let directory_failure = |error| IoFailure::new(IoOperation::Directory, dir, None, error);
    let mut logs = BTreeSet::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(directory_failure)? {
        let path = entry.map_err(directory_failure)?.path();
        let (Some(stem), Some(extension)) = (
            path.file_stem().and_then(|stem| stem.to_str()),
            path.extension().and_then(|extension| extension.to_str()),
        ) else {
            continue;
        };
        match extension {
            LOG_EXTENSION => {
                let base_offset =
                    parse_base_offset(stem).ok_or_else(|| OpenError::BadFileName(path.clone()))?;
                logs.insert(base_offset);
            }
            INDEX_EXTENSION | TIME_INDEX_EXTENSION => {
                if let Some(base_offset) = parse_base_offset(stem) {
                    indexes.push((base_offset, path));
                }
            }
            _ => {}
        }
    }
    for (base_offset, path) in indexes {
        if !logs.contains(&base_offset) {
            tracing::warn!(?path, "removing an index file without a log file");
            std::fs::remove_file(&path)
                .map_err(|error| IoFailure::new(IoOperation::Remove, &path, None, error))?;
        }
    }
    Ok(logs)
}

impl PartitionLog {
    async fn open_file(
        &self,
        path: &std::path::Path,
        mode: OpenMode,
    ) -> Result<FileHandle, IoFailure> {
        self.backend
            .open(path, mode)
            .await
            .map_err(|error| IoFailure::new(IoOperation::Open, path, None, error))
    }

    /// Opens an index file, creating it if missing, and reads all of it.
    async fn open_index_file(
        &self,
        path: &std::path::Path,
    ) -> Result<(FileHandle, bytes::Bytes), IoFailure> {
        let file = match self.backend.open(path, OpenMode::Existing).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(?path, "index file missing; rebuilding it");
                self.open_file(path, OpenMode::CreateTruncate).await?
            }
            Err(error) => return Err(IoFailure::new(IoOperation::Open, path, None, error)),
        };
        let size = file
            .size()
            .await
            .map_err(|error| IoFailure::new(IoOperation::Size, path, None, error))?;
        let bytes = file
            .read_at(0, size as usize)
            .await
            .map_err(|error| IoFailure::new(IoOperation::Read, path, Some(0), error))?;
        Ok((file, bytes))
    }

    /// True if a valid batch with base offset `expected_offset` starts at `position`.
    async fn batch_at(
        &self,
        file: &FileHandle,
        path: &std::path::Path,
        position: u64,
        expected_offset: i64,
    ) -> Result<bool, IoFailure> {
        let read = |length: usize| async move {
            file.read_at(position, length)
                .await
                .map_err(|error| IoFailure::new(IoOperation::Read, path, Some(position), error))
        };
        let prefix = read(weir_proto::batch::BATCH_LOG_OVERHEAD_BYTES).await?;
        let needed = match parse_batch(&prefix, &STORED_BATCH_LIMITS) {
            Parsed::Partial { needed } => needed,
            Parsed::Batch(_) | Parsed::Invalid(_) => return Ok(false),
        };
        let batch = read(needed).await?;
        Ok(matches!(
            parse_batch(&batch, &STORED_BATCH_LIMITS),
            Parsed::Batch(info) if info.base_offset == expected_offset
        ))
    }

    /// Recovers the last segment and makes it the active one.
    async fn recover_last_segment(&self, base_offset: i64) -> Result<(), OpenError> {
        let paths = SegmentPaths::new(&self.dir, base_offset);
        let log = self.open_file(&paths.log, OpenMode::Existing).await?;
        let file_size = log
            .size()
            .await
            .map_err(|error| IoFailure::new(IoOperation::Size, &paths.log, None, error))?;
        let (index_file, index_bytes) = self.open_index_file(&paths.index).await?;
        let (time_index_file, time_bytes) = self.open_index_file(&paths.time_index).await?;
        let offsets = decode_offset_index(&index_bytes).entries;
        let times = decode_time_index(&time_bytes).entries;
        let usable = offsets
            .iter()
            .zip(&times)
            .take_while(|(entry, time)| {
                entry.relative_offset == time.relative_offset
                    && u64::from(entry.position) < file_size
            })
            .count();

        // Resume from the last entry that points at the batch it names.
        let mut kept = 0;
        for candidate in (0..usable).rev() {
            let entry = offsets[candidate];
            let expected = base_offset + i64::from(entry.relative_offset);
            if self
                .batch_at(&log, &paths.log, u64::from(entry.position), expected)
                .await?
            {
                kept = candidate + 1;
                break;
            }
        }
        let mut index = SegmentIndex {
            entries: offsets[..kept].to_vec(),
            times: times[..kept].iter().map(|time| time.timestamp_ms).collect(),
        };
        let (start, mut builder) = match kept.checked_sub(1) {
            Some(last) => (
                index.entries[last],
                IndexBuilder::resume(
                    self.config.index_interval_bytes,
                    u64::from(index.entries[last].position),
                    index.times[last],
                ),
            ),
            None => (
                IndexEntry {
                    relative_offset: 0,
                    position: 0,
                },
                IndexBuilder::new(self.config.index_interval_bytes),
            ),
        };
        let outcome = scan_segment(
            ScanRange {
                file: &log,
                path: &paths.log,
                segment_base_offset: base_offset,
                start,
                end: file_size,
                chunk_bytes: self.scan_chunk_bytes(),
            },
            &mut builder,
            &mut index,
        )
        .await?;
        if let Some(stop) = &outcome.stop {
            if stop.position == 0 && stop.offset_mismatch {
                return Err(Corruption {
                    path: paths.log.clone(),
                    position: 0,
                    reason: format!("first batch disagrees with the file name: {}", stop.reason),
                }
                .into());
            }
            // With preallocation the scan normally ends at the zeroed space after the data.
            if self.config.preallocate {
                tracing::debug!(path = ?paths.log, position = stop.position, reason = %stop.reason, "log ends");
            } else {
                tracing::warn!(path = ?paths.log, position = stop.position, reason = %stop.reason, "truncating torn or corrupt tail");
            }
        }
        let valid_end = outcome.end_position;
        if outcome.first_batch.is_none() && valid_end > 0 {
            // The scan started at an index entry: check the segment's first batch too.
            self.check_first_batch(&log, &paths.log, base_offset)
                .await?;
        }
        self.cut_log_file(&log, &paths.log, file_size, valid_end)
            .await?;
        self.cut_index_files(&index_file, &time_index_file, &paths, kept)
            .await?;

        let alignment = log.alignment();
        let block_start = align_down(valid_end, alignment);
        let tail_block = if block_start < valid_end {
            log.read_at(block_start, (valid_end - block_start) as usize)
                .await
                .map_err(|error| {
                    IoFailure::new(IoOperation::Read, &paths.log, Some(block_start), error)
                })?
                .to_vec()
        } else {
            Vec::new()
        };
        let mut state = self.state.borrow_mut();
        state.log_end_offset = outcome.next_offset;
        state.written_end_offset = outcome.next_offset;
        state.durable_end_offset = outcome.next_offset;
        if state.sealed.is_empty() {
            state.log_start_offset = base_offset;
        }
        state.active = Some(ActiveSegment {
            base_offset,
            paths,
            log,
            index_file,
            time_index_file,
            alignment,
            index,
            builder,
            size_bytes: valid_end,
            written_bytes: valid_end,
            completed_bytes: valid_end,
            submitted_bytes: valid_end,
            durable_bytes: valid_end,
            tail_block,
            writes: VecDeque::new(),
            failure: None,
            log_high_water_bytes: valid_end,
            index_written_entries: kept,
            index_high_water_bytes: (kept * INDEX_ENTRY_BYTES) as u64,
            time_written_entries: kept,
            time_high_water_bytes: (kept * TIME_INDEX_ENTRY_BYTES) as u64,
            first_seen_ms: None,
        });
        state.assert_offsets();
        Ok(())
    }

    /// Checks that the batch at position 0 carries the file's base offset.
    async fn check_first_batch(
        &self,
        log: &FileHandle,
        path: &std::path::Path,
        base_offset: i64,
    ) -> Result<(), OpenError> {
        let header = log
            .read_at(0, weir_proto::batch::BATCH_HEADER_BYTES)
            .await
            .map_err(|error| IoFailure::new(IoOperation::Read, path, Some(0), error))?;
        match BatchHeader::view(&header).map(|header| header.base_offset.get()) {
            Some(first_offset) if first_offset == base_offset => Ok(()),
            _ => Err(Corruption {
                path: path.to_path_buf(),
                position: 0,
                reason: format!(
                    "first batch does not start at the file's base offset {base_offset}"
                ),
            }
            .into()),
        }
    }

    /// Cuts the log file at the recovered end, preallocates it again, and syncs it, so what
    /// recovery kept is durable and nothing past it can come back.
    async fn cut_log_file(
        &self,
        log: &FileHandle,
        path: &std::path::Path,
        file_size: u64,
        valid_end: u64,
    ) -> Result<(), IoFailure> {
        if file_size > valid_end {
            log.truncate(valid_end).await.map_err(|error| {
                IoFailure::new(IoOperation::Truncate, path, Some(valid_end), error)
            })?;
        }
        if self.config.preallocate && self.config.segment_bytes_max > valid_end {
            let length = self.config.segment_bytes_max;
            log.preallocate(length).await.map_err(|error| {
                IoFailure::new(IoOperation::Preallocate, path, Some(length), error)
            })?;
        }
        log.sync()
            .await
            .map_err(|error| IoFailure::new(IoOperation::Sync, path, None, error))
    }

    /// Cuts the index files to the `kept` entries recovery trusts (the scan's new entries are
    /// written by the next sync point) and preallocates them again.
    async fn cut_index_files(
        &self,
        index_file: &FileHandle,
        time_index_file: &FileHandle,
        paths: &SegmentPaths,
        kept: usize,
    ) -> Result<(), IoFailure> {
        let entries_max = self.config.index_entries_max();
        for (file, path, entry_bytes, preallocated_entries) in [
            (index_file, &paths.index, INDEX_ENTRY_BYTES, entries_max),
            (
                time_index_file,
                &paths.time_index,
                TIME_INDEX_ENTRY_BYTES,
                entries_max + 1,
            ),
        ] {
            let length = (kept * entry_bytes) as u64;
            file.truncate(length).await.map_err(|error| {
                IoFailure::new(IoOperation::Truncate, path, Some(length), error)
            })?;
            if self.config.preallocate {
                let preallocated = preallocated_entries * entry_bytes as u64;
                file.preallocate(preallocated).await.map_err(|error| {
                    IoFailure::new(IoOperation::Preallocate, path, Some(preallocated), error)
                })?;
            }
        }
        Ok(())
    }
}
