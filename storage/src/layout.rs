//! File names of a partition directory and the byte layout of the two index files.
//!
//! Owns the naming rule (`{base_offset:020}.log`, `.index`, `.timeindex`) and the encoding of
//! index entries. Pure functions, no I/O. Invariants of a well-formed index, checked by
//! [`decode_offset_index`] and [`decode_time_index`]: relative offsets and positions strictly
//! increase, no entry is at relative offset 0 or position 0 (those are implied), and a zeroed
//! entry marks the end of the written part of a preallocated file.

use std::path::{Path, PathBuf};

/// Extension of segment log files.
pub const LOG_EXTENSION: &str = "log";
/// Extension of sparse offset index files.
pub const INDEX_EXTENSION: &str = "index";
/// Extension of time index files.
pub const TIME_INDEX_EXTENSION: &str = "timeindex";

/// Bytes of one offset index entry: relative offset (u32 BE), file position (u32 BE).
pub const INDEX_ENTRY_BYTES: usize = 8;
/// Bytes of one time index entry: timestamp (i64 BE), relative offset (u32 BE).
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// Digits of the zero-padded base offset in file names.
const BASE_OFFSET_DIGITS: usize = 20;

/// The three files of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPaths {
    /// The record batches.
    pub log: PathBuf,
    /// The sparse offset index.
    pub index: PathBuf,
    /// The time index.
    pub time_index: PathBuf,
}

impl SegmentPaths {
    /// Paths of the segment with `base_offset` in `dir`.
    pub fn new(dir: &Path, base_offset: i64) -> Self {
        let stem = format!("{base_offset:0width$}", width = BASE_OFFSET_DIGITS);
        SegmentPaths {
            log: dir.join(format!("{stem}.{LOG_EXTENSION}")),
            index: dir.join(format!("{stem}.{INDEX_EXTENSION}")),
            time_index: dir.join(format!("{stem}.{TIME_INDEX_EXTENSION}")),
        }
    }
}

/// Parses a file stem made of exactly 20 decimal digits into a non-negative base offset.
pub fn parse_base_offset(stem: &str) -> Option<i64> {
    if stem.len() != BASE_OFFSET_DIGITS || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    stem.parse::<i64>().ok()
}

/// One sparse offset index entry: the batch starting at `base + relative_offset` starts at
/// byte `position` of the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Batch base offset minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the log file.
    pub position: u32,
}

/// One time index entry: every batch before relative offset `relative_offset` has a max
/// timestamp at most `timestamp_ms` (a running maximum, so entries never decrease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest batch max timestamp before `relative_offset`, in milliseconds.
    pub timestamp_ms: i64,
    /// Relative offset the entry describes (exclusive end of the prefix).
    pub relative_offset: u32,
}

/// Appends the encoding of `entry` to `out`.
pub fn encode_index_entry(entry: IndexEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(&entry.relative_offset.to_be_bytes());
    out.extend_from_slice(&entry.position.to_be_bytes());
}

/// Appends the encoding of `entry` to `out`.
pub fn encode_time_entry(entry: TimeEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(&entry.timestamp_ms.to_be_bytes());
    out.extend_from_slice(&entry.relative_offset.to_be_bytes());
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(raw)
}

fn be_i64(bytes: &[u8]) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(raw)
}

/// Result of decoding an index file: the well-formed prefix, and whether anything other than
/// zero padding followed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<T> {
    /// Entries of the well-formed prefix.
    pub entries: Vec<T>,
    /// True if the bytes after the prefix were not all zero (a damaged or stale index).
    pub damaged: bool,
}

/// Decodes the well-formed prefix of an offset index file.
pub fn decode_offset_index(bytes: &[u8]) -> Decoded<IndexEntry> {
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(bytes.len() / INDEX_ENTRY_BYTES);
    let mut consumed = 0;
    for raw in bytes.chunks_exact(INDEX_ENTRY_BYTES) {
        let entry = IndexEntry {
            relative_offset: be_u32(&raw[0..4]),
            position: be_u32(&raw[4..8]),
        };
        let increasing = entries.last().is_none_or(|last| {
            entry.relative_offset > last.relative_offset && entry.position > last.position
        });
        if entry.relative_offset == 0 || entry.position == 0 || !increasing {
            break;
        }
        entries.push(entry);
        consumed += INDEX_ENTRY_BYTES;
    }
    let damaged = bytes[consumed..].iter().any(|byte| *byte != 0);
    Decoded { entries, damaged }
}

/// Decodes the well-formed prefix of a time index file.
pub fn decode_time_index(bytes: &[u8]) -> Decoded<TimeEntry> {
    let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_INDEX_ENTRY_BYTES);
    let mut consumed = 0;
    for raw in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
        let entry = TimeEntry {
            timestamp_ms: be_i64(&raw[0..8]),
            relative_offset: be_u32(&raw[8..12]),
        };
        let increasing = entries.last().is_none_or(|last| {
            entry.relative_offset > last.relative_offset && entry.timestamp_ms >= last.timestamp_ms
        });
        if entry.relative_offset == 0 || !increasing {
            break;
        }
        entries.push(entry);
        consumed += TIME_INDEX_ENTRY_BYTES;
    }
    let damaged = bytes[consumed..].iter().any(|byte| *byte != 0);
    Decoded { entries, damaged }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_zero_padded_base_offsets() {
        let paths = SegmentPaths::new(Path::new("/d"), 42);
        assert_eq!(paths.log, Path::new("/d/00000000000000000042.log"));
        assert_eq!(paths.index, Path::new("/d/00000000000000000042.index"));
        assert_eq!(
            paths.time_index,
            Path::new("/d/00000000000000000042.timeindex")
        );
        assert_eq!(parse_base_offset("00000000000000000042"), Some(42));
        for bad in [
            "42",
            "0000000000000000004x",
            "+0000000000000000042",
            "99999999999999999999",
        ] {
            assert_eq!(parse_base_offset(bad), None, "{bad}");
        }
    }

    #[test]
    fn index_round_trips_and_stops_at_padding() {
        let entries = [
            IndexEntry {
                relative_offset: 3,
                position: 4100,
            },
            IndexEntry {
                relative_offset: 9,
                position: 8300,
            },
        ];
        let mut bytes = Vec::new();
        for entry in entries {
            encode_index_entry(entry, &mut bytes);
        }
        bytes.extend_from_slice(&[0; 64]);
        let decoded = decode_offset_index(&bytes);
        assert_eq!(decoded.entries, entries);
        assert!(!decoded.damaged);
    }

    #[test]
    fn index_decoding_stops_at_non_increasing_entry_and_reports_damage() {
        let mut bytes = Vec::new();
        for (relative_offset, position) in [(3, 4100), (2, 9000), (5, 9500)] {
            encode_index_entry(
                IndexEntry {
                    relative_offset,
                    position,
                },
                &mut bytes,
            );
        }
        let decoded = decode_offset_index(&bytes);
        assert_eq!(decoded.entries.len(), 1);
        assert!(decoded.damaged);
    }

    #[test]
    fn time_index_round_trips_and_rejects_decreasing_time() {
        let mut bytes = Vec::new();
        for (timestamp_ms, relative_offset) in [(10, 1), (10, 4), (30, 8), (20, 9)] {
            encode_time_entry(
                TimeEntry {
                    timestamp_ms,
                    relative_offset,
                },
                &mut bytes,
            );
        }
        let decoded = decode_time_index(&bytes);
        assert_eq!(decoded.entries.len(), 3);
        assert!(decoded.damaged);
        assert_eq!(decoded.entries[2].timestamp_ms, 30);
    }
}
