//! Sequential scans of a segment's log file: recovery of the last segment and rebuilding the
//! indexes of a sealed one.
//!
//! Owns no state: a scan reads the file forward in chunks, checks every batch's length, CRC and
//! base offset (each must start where the previous one ended), feeds the index builder, and
//! stops at the first batch that fails, reporting where and why. It never writes; what to do
//! with a stop (truncate a torn tail, or report corruption) is the caller's decision.

use bytes::Bytes;
use weir_proto::batch::BatchInfo;

use crate::{
    error::{IoFailure, IoOperation},
    io::FileHandle,
    layout::IndexEntry,
    segment::{parse_batch, IndexBuilder, Parsed, SegmentIndex, STORED_BATCH_LIMITS},
};

/// Where and why a scan stopped before the end of its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanStop {
    /// Byte position of the first bad batch.
    pub(crate) position: u64,
    /// What is wrong with it.
    pub(crate) reason: String,
    /// True if the batch itself is valid but its base offset is not the expected one.
    pub(crate) offset_mismatch: bool,
}

/// Result of a scan.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// End of the last valid batch.
    pub(crate) end_position: u64,
    /// One past the last valid batch's last offset.
    pub(crate) next_offset: i64,
    /// The batch at position 0, if the scan started there and found one.
    pub(crate) first_batch: Option<BatchInfo>,
    /// Set if a batch failed before `end`.
    pub(crate) stop: Option<ScanStop>,
}

/// What a scan reads and where it starts.
pub(crate) struct ScanRange<'a> {
    pub(crate) file: &'a FileHandle,
    pub(crate) path: &'a std::path::Path,
    pub(crate) segment_base_offset: i64,
    /// Start: an index entry (or position 0, relative offset 0).
    pub(crate) start: IndexEntry,
    /// Bytes of the file to consider.
    pub(crate) end: u64,
    /// Bytes per read.
    pub(crate) chunk_bytes: usize,
}

/// Scans `range`, adding index entries for every batch after the start.
pub(crate) async fn scan_segment(
    range: ScanRange<'_>,
    builder: &mut IndexBuilder,
    index: &mut SegmentIndex,
) -> Result<ScanOutcome, IoFailure> {
    let mut position = u64::from(range.start.position);
    let mut expected_offset = range.segment_base_offset + i64::from(range.start.relative_offset);
    let mut buffer = Bytes::new();
    let mut buffer_start = position;
    let mut first_batch = None;
    let stop = |position: u64, reason: String| {
        Some(ScanStop {
            position,
            reason,
            offset_mismatch: false,
        })
    };
    let outcome = |position, next_offset, first_batch, stop| ScanOutcome {
        end_position: position,
        next_offset,
        first_batch,
        stop,
    };
    while position < range.end {
        let in_buffer = (position - buffer_start) as usize;
        let available = buffer.get(in_buffer..).unwrap_or(&[]);
        match parse_batch(available, &STORED_BATCH_LIMITS) {
            Parsed::Partial { needed } => {
                let remaining = range.end - position;
                if needed as u64 > remaining {
                    let reason = format!(
                        "torn batch: needs {needed} bytes, {remaining} remain before the end"
                    );
                    return Ok(outcome(
                        position,
                        expected_offset,
                        first_batch,
                        stop(position, reason),
                    ));
                }
                let want = (needed.max(range.chunk_bytes) as u64).min(remaining) as usize;
                buffer = range.file.read_at(position, want).await.map_err(|error| {
                    IoFailure::new(IoOperation::Read, range.path, Some(position), error)
                })?;
                buffer_start = position;
                if buffer.len() < needed {
                    let reason = format!(
                        "torn batch: needs {needed} bytes, the file ends after {}",
                        buffer.len()
                    );
                    return Ok(outcome(
                        position,
                        expected_offset,
                        first_batch,
                        stop(position, reason),
                    ));
                }
            }
            Parsed::Invalid(reason) => {
                return Ok(outcome(
                    position,
                    expected_offset,
                    first_batch,
                    stop(position, reason),
                ));
            }
            Parsed::Batch(info) => {
                if info.base_offset != expected_offset {
                    let reason = format!(
                        "batch base offset {} where {expected_offset} was expected",
                        info.base_offset
                    );
                    let mismatch = Some(ScanStop {
                        position,
                        reason,
                        offset_mismatch: true,
                    });
                    return Ok(outcome(position, expected_offset, first_batch, mismatch));
                }
                let Ok(relative_offset) =
                    u32::try_from(info.base_offset - range.segment_base_offset)
                else {
                    let reason = format!(
                        "batch base offset {} is too far from the segment base {}",
                        info.base_offset, range.segment_base_offset
                    );
                    return Ok(outcome(
                        position,
                        expected_offset,
                        first_batch,
                        stop(position, reason),
                    ));
                };
                if position == 0 {
                    first_batch = Some(info);
                }
                if let Some((entry, time)) =
                    builder.on_batch(position, relative_offset, info.max_timestamp)
                {
                    index.push(entry, time);
                }
                position += u64::from(info.size_bytes);
                expected_offset = info.next_offset();
            }
        }
    }
    Ok(outcome(position, expected_offset, first_batch, None))
}
