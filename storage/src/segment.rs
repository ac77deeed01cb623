//! Segments: the in-memory form of a segment's indexes, the rule that decides where index
//! entries go, and the parsing of stored batches out of bytes read from a segment.
//!
//! Owns [`SegmentIndex`] (offset and time entries kept in parallel), [`IndexBuilder`] (one
//! entry per `index_interval_bytes`, shared by appends, recovery and rebuilds so all three
//! produce identical indexes) and [`SealedSegment`] (a closed segment whose index is loaded
//! lazily on first use). No I/O here. Invariants: entry `i` of the offset index and entry `i` of
//! the time index describe the same relative offset; a sealed segment's time index has one more
//! entry, whose relative offset is the segment's end and whose timestamp is the segment's
//! largest.

use std::{cell::RefCell, rc::Rc};

use weir_proto::batch::{peek_batch_size, validate_batch_header_and_crc, BatchInfo, BatchLimits};

use crate::{
    io::FileHandle,
    layout::{
        encode_index_entry, encode_time_entry, IndexEntry, SegmentPaths, TimeEntry,
        INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES,
    },
};

/// Running maximum timestamp before any batch: smaller than every real timestamp.
pub(crate) const TIMESTAMP_NONE: i64 = i64::MIN;

/// The sparse offset index and the time index of one segment, in memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentIndex {
    /// Offset index entries in increasing order.
    pub(crate) entries: Vec<IndexEntry>,
    /// `times[i]`: largest batch max timestamp before `entries[i]`.
    pub(crate) times: Vec<i64>,
}

impl SegmentIndex {
    /// Adds an entry; offsets and positions must increase.
    pub(crate) fn push(&mut self, entry: IndexEntry, time_before_ms: i64) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset > last.relative_offset && entry.position > last.position,
                "index entries must increase: {last:?} then {entry:?}"
            );
        }
        self.entries.push(entry);
        self.times.push(time_before_ms);
    }

    /// Keeps the first `count` entries.
    pub(crate) fn truncate(&mut self, count: usize) {
        self.entries.truncate(count);
        self.times.truncate(count);
    }

    /// Start of the scan for `relative_offset`: the last entry at or before it, or the start of
    /// the segment.
    pub(crate) fn lookup_offset(&self, relative_offset: u32) -> IndexEntry {
        let after = self
            .entries
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        after.checked_sub(1).map_or(
            IndexEntry {
                relative_offset: 0,
                position: 0,
            },
            |at| self.entries[at],
        )
    }

    /// Start of the scan for the first batch whose max timestamp is at least `timestamp_ms`: the
    /// last entry before which every batch is older.
    pub(crate) fn lookup_time(&self, timestamp_ms: i64) -> IndexEntry {
        let older = self.times.partition_point(|time| *time < timestamp_ms);
        older.checked_sub(1).map_or(
            IndexEntry {
                relative_offset: 0,
                position: 0,
            },
            |at| self.entries[at],
        )
    }

    /// Bytes of the offset index file from byte `from` (rounded down to an entry) to the end.
    /// Returns the start position of the returned bytes.
    pub(crate) fn encode_offsets_from(&self, from_byte: u64) -> (u64, Vec<u8>) {
        let first = (from_byte / INDEX_ENTRY_BYTES as u64) as usize;
        let mut bytes = Vec::with_capacity((self.entries.len().saturating_sub(first)) * 8);
        for entry in self.entries.iter().skip(first) {
            encode_index_entry(*entry, &mut bytes);
        }
        ((first * INDEX_ENTRY_BYTES) as u64, bytes)
    }

    /// Bytes of the time index file from byte `from` (rounded down to an entry) to the end,
    /// followed by `final_entry` if given. Returns the start position of the returned bytes.
    pub(crate) fn encode_times_from(
        &self,
        from_byte: u64,
        final_entry: Option<TimeEntry>,
    ) -> (u64, Vec<u8>) {
        let first = (from_byte / TIME_INDEX_ENTRY_BYTES as u64) as usize;
        let mut bytes = Vec::new();
        for (entry, time) in self.entries.iter().zip(&self.times).skip(first) {
            encode_time_entry(
                TimeEntry {
                    timestamp_ms: *time,
                    relative_offset: entry.relative_offset,
                },
                &mut bytes,
            );
        }
        if let Some(entry) = final_entry {
            encode_time_entry(entry, &mut bytes);
        }
        ((first * TIME_INDEX_ENTRY_BYTES) as u64, bytes)
    }
}

/// Decides where index entries go as batches are laid out in a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexBuilder {
    interval_bytes: u64,
    last_indexed_position: u64,
    /// Largest batch max timestamp seen so far in the segment.
    pub(crate) max_timestamp_ms: i64,
}

impl IndexBuilder {
    /// A builder for an empty segment.
    pub(crate) fn new(interval_bytes: u32) -> Self {
        IndexBuilder {
            interval_bytes: u64::from(interval_bytes),
            last_indexed_position: 0,
            max_timestamp_ms: TIMESTAMP_NONE,
        }
    }

    /// A builder resuming after the entry at `position`, with `max_timestamp_ms` the running
    /// maximum before it.
    pub(crate) fn resume(interval_bytes: u32, position: u64, max_timestamp_ms: i64) -> Self {
        IndexBuilder {
            interval_bytes: u64::from(interval_bytes),
            last_indexed_position: position,
            max_timestamp_ms,
        }
    }

    /// Accounts for the batch at `position`; returns the index entry (with the running maximum
    /// timestamp before the batch) if the batch gets one.
    pub(crate) fn on_batch(
        &mut self,
        position: u64,
        relative_offset: u32,
        batch_max_timestamp_ms: i64,
    ) -> Option<(IndexEntry, i64)> {
        // A position beyond u32 (a segment written under a larger limit than the index can
        // address) is simply not indexed: reads scan to it from the last entry.
        let entry = u32::try_from(position)
            .ok()
            .filter(|_| {
                position > 0 && position - self.last_indexed_position >= self.interval_bytes
            })
            .map(|position_u32| {
                self.last_indexed_position = position;
                (
                    IndexEntry {
                        relative_offset,
                        position: position_u32,
                    },
                    self.max_timestamp_ms,
                )
            });
        self.max_timestamp_ms = self.max_timestamp_ms.max(batch_max_timestamp_ms);
        entry
    }
}

/// The index of a sealed segment once loaded, with what it says about the segment as a whole.
#[derive(Debug)]
pub(crate) struct LoadedSegment {
    /// Offset and time entries.
    pub(crate) index: SegmentIndex,
    /// Largest batch max timestamp in the segment.
    pub(crate) max_timestamp_ms: i64,
    /// The open log file.
    pub(crate) file: FileHandle,
}

/// A segment that no longer receives appends.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    /// Offset of its first batch (its file name).
    pub(crate) base_offset: i64,
    /// Size of its log file in bytes.
    pub(crate) size_bytes: u64,
    /// Its files.
    pub(crate) paths: SegmentPaths,
    /// Its index, loaded on first use.
    pub(crate) loaded: RefCell<Option<Rc<LoadedSegment>>>,
}

/// Outcome of parsing the next batch of a byte buffer read from a segment.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A whole, valid batch of `info.size_bytes` bytes.
    Batch(BatchInfo),
    /// The buffer ends inside the batch; `needed` bytes from its start would hold it (or the
    /// 12-byte prefix when its size is unknown).
    Partial {
        /// Bytes needed from the batch start.
        needed: usize,
    },
    /// The bytes are not a valid batch.
    Invalid(String),
}

/// Parses the batch at the start of `bytes`, checking its length and CRC.
pub(crate) fn parse_batch(bytes: &[u8], limits: &BatchLimits) -> Parsed {
    let size_bytes = match peek_batch_size(bytes, limits) {
        Ok(Some(size_bytes)) => size_bytes,
        Ok(None) => {
            return Parsed::Partial {
                needed: weir_proto::batch::BATCH_LOG_OVERHEAD_BYTES,
            }
        }
        Err(error) => return Parsed::Invalid(error.to_string()),
    };
    if bytes.len() < size_bytes {
        return Parsed::Partial { needed: size_bytes };
    }
    match validate_batch_header_and_crc(&bytes[..size_bytes], limits) {
        Ok(info) => Parsed::Batch(info),
        Err(error) => Parsed::Invalid(error.to_string()),
    }
}

/// Limits for batches read back from disk: what was stored under an older, larger
/// `batch_bytes_max` must still be readable, so only the format's own bounds apply.
pub(crate) const STORED_BATCH_LIMITS: BatchLimits = BatchLimits {
    batch_bytes_max: i32::MAX as u32,
    records_per_batch_max: i32::MAX as u32,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_indexes_once_per_interval_and_tracks_time() {
        let mut builder = IndexBuilder::new(100);
        let mut index = SegmentIndex::default();
        let mut position = 0;
        for (relative_offset, timestamp) in [(0u32, 5i64), (1, 3), (2, 9), (3, 1), (4, 20)] {
            if let Some((entry, time)) = builder.on_batch(position, relative_offset, timestamp) {
                index.push(entry, time);
            }
            position += 60;
        }
        // Batches at 0, 60, 120, 180, 240: entries at 120 (>= 100 after 0) and 240 (>= 100 after
        // 120).
        assert_eq!(
            index.entries,
            vec![
                IndexEntry {
                    relative_offset: 2,
                    position: 120
                },
                IndexEntry {
                    relative_offset: 4,
                    position: 240
                }
            ]
        );
        assert_eq!(index.times, vec![5, 9]);
        assert_eq!(index.lookup_offset(3).relative_offset, 2);
        assert_eq!(index.lookup_offset(1).position, 0);
        assert_eq!(index.lookup_time(5).position, 0);
        assert_eq!(index.lookup_time(6).position, 120);
        assert_eq!(index.lookup_time(10).position, 240);
        index.truncate(1);
        assert_eq!(index.entries.len(), 1);
    }
}
