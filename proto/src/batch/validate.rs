//! Batch validation: the size prefix, the header, the CRC and (for uncompressed batches) the
//! record walk; and the two in-place header rewrites the broker performs.
//!
//! Validation is ordered from cheapest to dearest: the 12-byte size prefix, the buffer length,
//! the magic, one CRC-32C pass over `attributes`..end, the header's internal consistency, then
//! one walk over the records. It never allocates and never panics. A batch accepted by
//! [`validate_batch`] is safe to iterate with [`records`](super::records): the iterator yields
//! exactly `records_count` records without error.

use super::error::{BatchError, RecordError};
use super::header::{
    BatchHeader, Compression, TimestampType, ATTRIBUTE_COMPRESSION_MASK, ATTRIBUTE_CONTROL,
    ATTRIBUTE_TRANSACTIONAL,
};
use super::record::records;
use super::{
    BATCH_HEADER_BYTES, BATCH_LENGTH_MIN, BATCH_LOG_OVERHEAD_BYTES, CRC_COVERED_START, MAGIC_V2,
    NO_PRODUCER_ID, NO_TIMESTAMP,
};

/// Limits that a batch must respect to be accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Largest whole batch, in bytes, including the 12-byte log overhead.
    pub batch_bytes_max: u32,
    /// Largest `recordsCount` of one batch.
    pub records_per_batch_max: u32,
}

impl BatchLimits {
    /// Default largest batch: 1 MiB.
    pub const BATCH_BYTES_MAX_DEFAULT: u32 = 1024 * 1024;
    /// Default largest record count of one batch.
    pub const RECORDS_PER_BATCH_MAX_DEFAULT: u32 = 1_000_000;
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            batch_bytes_max: Self::BATCH_BYTES_MAX_DEFAULT,
            records_per_batch_max: Self::RECORDS_PER_BATCH_MAX_DEFAULT,
        }
    }
}

/// The header fields of a validated batch, in native byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Whole size of the batch in bytes: `batch_length + 12`.
    pub size_bytes: u32,
    /// Epoch of the leader that appended the batch, or -1.
    pub partition_leader_epoch: i32,
    /// The raw `attributes` field.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp that record timestamp deltas are relative to.
    pub base_timestamp: i64,
    /// Largest record timestamp, or the log-append time.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

impl BatchInfo {
    /// Offset of the last record (saturating, so a hand-built `BatchInfo` cannot overflow).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset that the next batch in the log starts at: one past [`BatchInfo::last_offset`].
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Compression codec of the records; [`Compression::None`] for the reserved codes, which
    /// validation rejects.
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).unwrap_or(Compression::None)
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (transaction markers) rather than data.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }

    /// What the batch's timestamps mean.
    pub fn timestamp_type(&self) -> TimestampType {
        TimestampType::from_attributes(self.attributes)
    }

    /// Whether the batch carries an idempotent producer id.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    fn from_header(header: &BatchHeader, size_bytes: u32) -> BatchInfo {
        BatchInfo {
            base_offset: header.base_offset.get(),
            size_bytes,
            partition_leader_epoch: header.partition_leader_epoch.get(),
            attributes: header.attributes.get(),
            last_offset_delta: header.last_offset_delta.get(),
            base_timestamp: header.base_timestamp.get(),
            max_timestamp: header.max_timestamp.get(),
            producer_id: header.producer_id.get(),
            producer_epoch: header.producer_epoch.get(),
            base_sequence: header.base_sequence.get(),
            records_count: header.records_count.get(),
        }
    }
}

/// Reads only the 12-byte prefix of the batch at the start of `buf`.
///
/// Returns `Ok(None)` if `buf` holds fewer than 12 bytes (more are needed to tell), and
/// `Ok(Some(size))` with the whole batch size in bytes otherwise, whether or not `buf` holds all
/// of it. Fails if `batchLength` is smaller than the rest of the header or the batch is larger
/// than `limits.batch_bytes_max`.
pub fn peek_batch_size(buf: &[u8], limits: &BatchLimits) -> Result<Option<usize>, BatchError> {
    let Some(length_bytes) = buf.get(8..BATCH_LOG_OVERHEAD_BYTES) else {
        return Ok(None);
    };
    let mut raw = [0u8; 4];
    raw.copy_from_slice(length_bytes);
    let batch_length = i32::from_be_bytes(raw);
    if batch_length < BATCH_LENGTH_MIN {
        return Err(BatchError::BadLength {
            batch_length,
            min: BATCH_LENGTH_MIN,
        });
    }
    // batch_length is at least 49 here, so the conversion cannot fail and the sum cannot wrap.
    let size_bytes = u64::from(batch_length.unsigned_abs()) + BATCH_LOG_OVERHEAD_BYTES as u64;
    if size_bytes > u64::from(limits.batch_bytes_max) {
        return Err(BatchError::TooLarge {
            size_bytes,
            max_bytes: limits.batch_bytes_max,
        });
    }
    // size_bytes <= batch_bytes_max <= u32::MAX, which fits a usize on every supported target.
    Ok(Some(size_bytes as usize))
}

/// Validates `buf` as exactly one whole batch: sizes, magic, CRC, header consistency and, for an
/// uncompressed batch, every record. Never panics and never allocates.
pub fn validate_batch(buf: &[u8], limits: &BatchLimits) -> Result<BatchInfo, BatchError> {
    let info = validate_batch_header_and_crc(buf, limits)?;
    if info.compression() == Compression::None {
        walk_records(buf, &info)?;
    }
    Ok(info)
}

/// Validates `buf` as exactly one whole batch like [`validate_batch`], but without walking the
/// records: the checks a segment scan on recovery needs to find the first torn or corrupt batch.
pub fn validate_batch_header_and_crc(
    buf: &[u8],
    limits: &BatchLimits,
) -> Result<BatchInfo, BatchError> {
    let size_bytes = match peek_batch_size(buf, limits)? {
        Some(size_bytes) => size_bytes,
        None => {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: buf.len(),
            })
        }
    };
    if buf.len() < size_bytes {
        return Err(BatchError::Truncated {
            needed: size_bytes,
            available: buf.len(),
        });
    }
    if buf.len() > size_bytes {
        return Err(BatchError::TrailingBytes {
            size_bytes,
            buffer_bytes: buf.len(),
        });
    }
    // size_bytes >= 61 because batch_length >= 49, so the header is present.
    let Some(header) = BatchHeader::view(buf) else {
        return Err(BatchError::Truncated {
            needed: BATCH_HEADER_BYTES,
            available: buf.len(),
        });
    };
    // The magic decides where the CRC is and what it covers, so it is checked first.
    if header.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(header.magic));
    }
    let stored = header.crc.get();
    let computed = crc32c::crc32c(&buf[CRC_COVERED_START..]);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    // size_bytes <= batch_bytes_max, a u32.
    let info = BatchInfo::from_header(header, size_bytes as u32);
    check_header(&info, limits)?;
    Ok(info)
}

/// Checks the header fields against each other and the limits.
fn check_header(info: &BatchInfo, limits: &BatchLimits) -> Result<(), BatchError> {
    if Compression::from_attributes(info.attributes).is_none() {
        return Err(BatchError::UnsupportedCompression(
            (info.attributes & ATTRIBUTE_COMPRESSION_MASK) as u8,
        ));
    }
    if info.records_count < 1
        || i64::from(info.records_count) != i64::from(info.last_offset_delta) + 1
    {
        return Err(BatchError::RecordCount {
            records_count: info.records_count,
            last_offset_delta: info.last_offset_delta,
        });
    }
    if info.records_count.unsigned_abs() > limits.records_per_batch_max {
        return Err(BatchError::TooManyRecords {
            records_count: info.records_count,
            max_records: limits.records_per_batch_max,
        });
    }
    let last_offset_fits = info
        .base_offset
        .checked_add(i64::from(info.last_offset_delta))
        .and_then(|last| last.checked_add(1))
        .is_some();
    if info.base_offset < 0 || !last_offset_fits {
        return Err(BatchError::BadOffset {
            base_offset: info.base_offset,
            last_offset_delta: info.last_offset_delta,
        });
    }
    let timestamps_valid = info.base_timestamp >= NO_TIMESTAMP
        && info.max_timestamp >= NO_TIMESTAMP
        && (info.base_timestamp == NO_TIMESTAMP || info.max_timestamp >= info.base_timestamp);
    if !timestamps_valid {
        return Err(BatchError::BadTimestamps {
            base_timestamp: info.base_timestamp,
            max_timestamp: info.max_timestamp,
        });
    }
    let producer_valid = if info.producer_id == NO_PRODUCER_ID {
        !info.is_transactional()
    } else {
        info.producer_id >= 0 && info.producer_epoch >= 0 && info.base_sequence >= 0
    };
    if !producer_valid {
        return Err(BatchError::BadProducer {
            producer_id: info.producer_id,
            producer_epoch: info.producer_epoch,
            base_sequence: info.base_sequence,
            transactional: info.is_transactional(),
        });
    }
    Ok(())
}

/// Walks every record of an uncompressed batch whose header has been validated.
fn walk_records(buf: &[u8], info: &BatchInfo) -> Result<(), BatchError> {
    // Log-append time replaces record timestamps, so only create-time records are bounded by
    // maxTimestamp; a batch without a base timestamp has no meaningful record timestamps.
    let bound_timestamps =
        info.timestamp_type() == TimestampType::CreateTime && info.base_timestamp != NO_TIMESTAMP;
    let mut index: u32 = 0;
    for record in records(buf)? {
        let record = record?;
        if bound_timestamps && record.timestamp > info.max_timestamp {
            return Err(BatchError::Record {
                index,
                reason: RecordError::TimestampAfterMax {
                    timestamp: record.timestamp,
                    max_timestamp: info.max_timestamp,
                },
            });
        }
        index += 1;
    }
    // The iterator stops after records_count records and reports leftovers, so a short count is
    // impossible here; checked anyway because the caller relies on it.
    if i64::from(index) != i64::from(info.records_count) {
        return Err(BatchError::RecordCount {
            records_count: info.records_count,
            last_offset_delta: info.last_offset_delta,
        });
    }
    Ok(())
}

/// Overwrites `baseOffset` in place. The field is outside the CRC, so the CRC stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    let available = batch.len();
    let header = BatchHeader::view_mut(batch).ok_or(BatchError::Truncated {
        needed: BATCH_HEADER_BYTES,
        available,
    })?;
    header.base_offset.set(base_offset);
    Ok(())
}

/// Overwrites `partitionLeaderEpoch` in place. The field is outside the CRC, so the CRC stays
/// valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    let available = batch.len();
    let header = BatchHeader::view_mut(batch).ok_or(BatchError::Truncated {
        needed: BATCH_HEADER_BYTES,
        available,
    })?;
    header.partition_leader_epoch.set(epoch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;

    fn sample_batch() -> Vec<u8> {
        let mut builder = BatchBuilder::new(1_700_000_000_000).producer(42, 3, 100);
        builder.push(1_700_000_000_000, Some(b"k0"), Some(b"v0"), &[]);
        builder.push(
            1_700_000_000_005,
            None,
            Some(b""),
            &[(b"h", Some(b"x")), (b"n", None)],
        );
        builder.push(1_699_999_999_990, Some(b"k2"), None, &[]);
        builder.finish()
    }

    #[test]
    fn built_batch_validates_with_its_header_fields() {
        let batch = sample_batch();
        let info = validate_batch(&batch, &BatchLimits::default()).expect("valid");
        assert_eq!(info.size_bytes as usize, batch.len());
        assert_eq!(
            (info.base_offset, info.last_offset(), info.next_offset()),
            (0, 2, 3)
        );
        assert_eq!(info.records_count, 3);
        assert_eq!(
            (info.producer_id, info.producer_epoch, info.base_sequence),
            (42, 3, 100)
        );
        assert_eq!(info.max_timestamp, 1_700_000_000_005);
        assert_eq!(info.compression(), Compression::None);
        assert_eq!(info.timestamp_type(), TimestampType::CreateTime);
        assert!(!info.is_transactional() && !info.is_control());
    }
}
