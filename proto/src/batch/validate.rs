//! Batch validation: the size prefix, the header, the CRC and (for uncompressed batches) the
//! record walk; and the two in-place header rewrites the broker performs.
//!
//! Validation is ordered from cheapest to dearest: the 12-byte size prefix, the buffer length,
//! the magic, one CRC-32C pass over `attributes`..end, the header's internal consistency, then
//! one walk over the records. It never allocates and never panics. A batch accepted by
//! [`validate_batch`] is safe to iterate with [`records`](super::records): the iterator yields
//! exactly `records_count` records without error.

use super::crc::crc32c_after_rewrite;
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

/// Stamps a finished batch with an idempotent producer's id, epoch and first sequence, in place,
/// and updates the CRC (the fields are inside it). A producer assigns sequences when it first
/// sends a batch, so the batch can be built before the producer id is known; a retry then sends
/// the stamped bytes unchanged.
///
/// The CRC is updated from the changed bytes alone (see `crc.rs`), not recomputed over the whole
/// batch: a batch whose CRC was valid stays valid, and one whose CRC was wrong stays wrong.
pub fn set_producer(
    batch: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<(), BatchError> {
    let available = batch.len();
    if available < BATCH_HEADER_BYTES {
        return Err(BatchError::Truncated {
            needed: BATCH_HEADER_BYTES,
            available,
        });
    }
    #[cfg(debug_assertions)]
    let crc_was_valid = {
        let crc_bytes = &batch[CRC_COVERED_START - 4..CRC_COVERED_START];
        let stored = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        stored == crc32c::crc32c(&batch[CRC_COVERED_START..])
    };
    let mut old = [0_u8; PRODUCER_FIELDS_BYTES];
    old.copy_from_slice(&batch[PRODUCER_FIELDS_START..PRODUCER_FIELDS_END]);
    let header = BatchHeader::view_mut(batch).ok_or(BatchError::Truncated {
        needed: BATCH_HEADER_BYTES,
        available,
    })?;
    header.producer_id.set(producer_id);
    header.producer_epoch.set(producer_epoch);
    header.base_sequence.set(base_sequence);
    let stored = header.crc.get();
    // A batch is at most i32::MAX bytes long; a longer slice is no batch of ours.
    let trailing_bytes = u32::try_from(available - PRODUCER_FIELDS_END).unwrap_or(u32::MAX);
    let crc = crc32c_after_rewrite(
        stored,
        &old,
        &batch[PRODUCER_FIELDS_START..PRODUCER_FIELDS_END],
        trailing_bytes,
    );
    batch[CRC_COVERED_START - 4..CRC_COVERED_START].copy_from_slice(&crc.to_be_bytes());
    #[cfg(debug_assertions)]
    debug_assert!(
        !crc_was_valid || crc == crc32c::crc32c(&batch[CRC_COVERED_START..]),
        "the CRC updated from the stamped fields matches a full recompute"
    );
    Ok(())
}

/// Where the producer id, epoch and base sequence sit in the header: 14 contiguous bytes.
const PRODUCER_FIELDS_START: usize = core::mem::offset_of!(BatchHeader, producer_id);
const PRODUCER_FIELDS_END: usize = core::mem::offset_of!(BatchHeader, records_count);
const PRODUCER_FIELDS_BYTES: usize = PRODUCER_FIELDS_END - PRODUCER_FIELDS_START;
const _: () = assert!(PRODUCER_FIELDS_BYTES == 8 + 2 + 4);

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
mod set_producer_tests {
    use super::*;
    use crate::batch::BatchBuilder;

    #[test]
    fn stamping_a_producer_keeps_the_batch_valid_and_equal_to_building_with_it() {
        let build = |builder: BatchBuilder| {
            let mut builder = builder;
            builder.push(1_000, Some(b"k"), Some(b"v"), &[]);
            builder.push(1_001, None, Some(b"w"), &[]);
            builder.finish()
        };
        let mut stamped = build(BatchBuilder::new(1_000));
        set_producer(&mut stamped, 42, 3, 17).unwrap();
        assert_eq!(stamped, build(BatchBuilder::new(1_000).producer(42, 3, 17)));
        let info = validate_batch(&stamped, &BatchLimits::default()).unwrap();
        assert_eq!(
            (info.producer_id, info.producer_epoch, info.base_sequence),
            (42, 3, 17)
        );
        assert!(set_producer(&mut stamped[..60], 1, 1, 1).is_err());
    }

    #[test]
    fn the_updated_crc_is_the_recomputed_one_for_any_batch_size_and_restamp() {
        for records_count in [1_u32, 7, 300] {
            let mut builder = BatchBuilder::new(1_000);
            for index in 0..records_count {
                let value = vec![index as u8; 1 + (index as usize * 13) % 900];
                builder.push(1_000 + i64::from(index), None, Some(&value), &[]);
            }
            let mut batch = builder.finish();
            for (producer_id, epoch, sequence) in
                [(42, 3, 17), (i64::MAX, i16::MAX, i32::MAX), (0, 0, 0)]
            {
                set_producer(&mut batch, producer_id, epoch, sequence).unwrap();
                let stored = u32::from_be_bytes(batch[17..21].try_into().unwrap());
                assert_eq!(stored, crc32c::crc32c(&batch[CRC_COVERED_START..]));
                let info = validate_batch(&batch, &BatchLimits::default()).unwrap();
                assert_eq!(
                    (info.producer_id, info.producer_epoch, info.base_sequence),
                    (producer_id, epoch, sequence)
                );
            }
        }
    }

    #[test]
    fn a_wrong_crc_stays_wrong_after_stamping() {
        let mut builder = BatchBuilder::new(1_000);
        builder.push(1_000, None, Some(b"v"), &[]);
        let mut batch = builder.finish();
        batch[20] ^= 0x01;
        set_producer(&mut batch, 42, 3, 17).unwrap();
        assert!(matches!(
            validate_batch(&batch, &BatchLimits::default()),
            Err(BatchError::CrcMismatch { .. })
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_support::{body, edited, framed, raw_batch, sample, varint, T0};

    /// One rejected input: what was done to a valid batch, the limits, and the exact error.
    struct Case {
        name: &'static str,
        batch: Vec<u8>,
        limits: BatchLimits,
        expected: BatchError,
    }

    fn case(name: &'static str, batch: Vec<u8>, expected: BatchError) -> Case {
        Case {
            name,
            batch,
            limits: BatchLimits::default(),
            expected,
        }
    }

    fn crc_case(name: &'static str, batch: Vec<u8>) -> Case {
        let stored = u32::from_be_bytes(batch[17..21].try_into().unwrap());
        let computed = crc32c::crc32c(&batch[CRC_COVERED_START..]);
        case(name, batch, BatchError::CrcMismatch { stored, computed })
    }

    fn record_case(name: &'static str, batch: Vec<u8>, index: u32, reason: RecordError) -> Case {
        case(name, batch, BatchError::Record { index, reason })
    }

    fn set_length(mut batch: Vec<u8>, batch_length: i32) -> Vec<u8> {
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch
    }

    fn cases() -> Vec<Case> {
        let valid = sample();
        let size = valid.len();
        let tiny = |limits: BatchLimits, mut case: Case| {
            case.limits = limits;
            case
        };
        let with_bytes = |bytes: &[u8]| [valid.clone(), bytes.to_vec()].concat();
        let flipped = |index: usize| {
            let mut batch = valid.clone();
            batch[index] ^= 0x01;
            batch
        };
        let one_record = |body: &[u8], count: i32| raw_batch(&framed(body), count);
        let mut overlong_delta = vec![0u8];
        overlong_delta.extend_from_slice(&[0x80; 10]);
        overlong_delta.push(0);
        vec![
            case(
                "empty buffer",
                Vec::new(),
                BatchError::Truncated {
                    needed: 61,
                    available: 0,
                },
            ),
            case(
                "eleven bytes",
                valid[..11].to_vec(),
                BatchError::Truncated {
                    needed: 61,
                    available: 11,
                },
            ),
            case(
                "prefix only",
                valid[..30].to_vec(),
                BatchError::Truncated {
                    needed: size,
                    available: 30,
                },
            ),
            case(
                "last byte missing",
                valid[..size - 1].to_vec(),
                BatchError::Truncated {
                    needed: size,
                    available: size - 1,
                },
            ),
            case(
                "one byte after the batch",
                with_bytes(&[0]),
                BatchError::TrailingBytes {
                    size_bytes: size,
                    buffer_bytes: size + 1,
                },
            ),
            case(
                "batchLength smaller than the header",
                set_length(valid.clone(), 48),
                BatchError::BadLength {
                    batch_length: 48,
                    min: 49,
                },
            ),
            case(
                "negative batchLength",
                set_length(valid.clone(), -1),
                BatchError::BadLength {
                    batch_length: -1,
                    min: 49,
                },
            ),
            tiny(
                BatchLimits {
                    batch_bytes_max: size as u32 - 1,
                    ..BatchLimits::default()
                },
                case(
                    "batch over batch_bytes_max",
                    valid.clone(),
                    BatchError::TooLarge {
                        size_bytes: size as u64,
                        max_bytes: size as u32 - 1,
                    },
                ),
            ),
            case(
                "batchLength beyond the default limit",
                set_length(valid.clone(), i32::MAX),
                BatchError::TooLarge {
                    size_bytes: i32::MAX as u64 + 12,
                    max_bytes: BatchLimits::BATCH_BYTES_MAX_DEFAULT,
                },
            ),
            case(
                "magic 1",
                edited(valid.clone(), |h| h.magic = 1),
                BatchError::BadMagic(1),
            ),
            case("magic 3", flipped(16), BatchError::BadMagic(3)),
            crc_case("stored CRC changed", flipped(20)),
            crc_case("attributes changed", flipped(22)),
            crc_case("record count changed", flipped(60)),
            crc_case("last record byte changed", flipped(size - 1)),
            case(
                "reserved compression codec",
                edited(valid.clone(), |h| h.attributes.set(5)),
                BatchError::UnsupportedCompression(5),
            ),
            case(
                "no records",
                edited(valid.clone(), |h| h.records_count.set(0)),
                BatchError::RecordCount {
                    records_count: 0,
                    last_offset_delta: 2,
                },
            ),
            case(
                "empty batch with matching delta",
                edited(valid.clone(), |h| {
                    h.records_count.set(0);
                    h.last_offset_delta.set(-1);
                }),
                BatchError::RecordCount {
                    records_count: 0,
                    last_offset_delta: -1,
                },
            ),
            case(
                "lastOffsetDelta disagrees with recordsCount",
                edited(valid.clone(), |h| h.last_offset_delta.set(1)),
                BatchError::RecordCount {
                    records_count: 3,
                    last_offset_delta: 1,
                },
            ),
            case(
                "recordsCount at i32::MAX",
                edited(valid.clone(), |h| h.records_count.set(i32::MAX)),
                BatchError::RecordCount {
                    records_count: i32::MAX,
                    last_offset_delta: 2,
                },
            ),
            tiny(
                BatchLimits {
                    records_per_batch_max: 2,
                    ..BatchLimits::default()
                },
                case(
                    "over records_per_batch_max",
                    valid.clone(),
                    BatchError::TooManyRecords {
                        records_count: 3,
                        max_records: 2,
                    },
                ),
            ),
            // baseOffset is outside the CRC: no reseal needed for it to reach the check.
            case(
                "negative baseOffset",
                {
                    let mut batch = valid.clone();
                    set_base_offset(&mut batch, -1).unwrap();
                    batch
                },
                BatchError::BadOffset {
                    base_offset: -1,
                    last_offset_delta: 2,
                },
            ),
            case(
                "last offset overflows",
                {
                    let mut batch = valid.clone();
                    set_base_offset(&mut batch, i64::MAX - 2).unwrap();
                    batch
                },
                BatchError::BadOffset {
                    base_offset: i64::MAX - 2,
                    last_offset_delta: 2,
                },
            ),
            case(
                "baseTimestamp below -1",
                edited(valid.clone(), |h| h.base_timestamp.set(-2)),
                BatchError::BadTimestamps {
                    base_timestamp: -2,
                    max_timestamp: T0 + 5,
                },
            ),
            case(
                "maxTimestamp below -1",
                edited(valid.clone(), |h| {
                    h.base_timestamp.set(-1);
                    h.max_timestamp.set(-5);
                }),
                BatchError::BadTimestamps {
                    base_timestamp: -1,
                    max_timestamp: -5,
                },
            ),
            case(
                "maxTimestamp before baseTimestamp",
                edited(valid.clone(), |h| h.max_timestamp.set(T0 - 1)),
                BatchError::BadTimestamps {
                    base_timestamp: T0,
                    max_timestamp: T0 - 1,
                },
            ),
            case(
                "transactional without a producer id",
                edited(valid.clone(), |h| {
                    h.producer_id.set(-1);
                    h.attributes.set(0x10);
                }),
                BatchError::BadProducer {
                    producer_id: -1,
                    producer_epoch: 3,
                    base_sequence: 100,
                    transactional: true,
                },
            ),
            case(
                "producer id without a sequence",
                edited(valid.clone(), |h| h.base_sequence.set(-1)),
                BatchError::BadProducer {
                    producer_id: 42,
                    producer_epoch: 3,
                    base_sequence: -1,
                    transactional: false,
                },
            ),
            case(
                "producer id without an epoch",
                edited(valid.clone(), |h| h.producer_epoch.set(-1)),
                BatchError::BadProducer {
                    producer_id: 42,
                    producer_epoch: -1,
                    base_sequence: 100,
                    transactional: false,
                },
            ),
            case(
                "producer id below -1",
                edited(valid.clone(), |h| h.producer_id.set(-2)),
                BatchError::BadProducer {
                    producer_id: -2,
                    producer_epoch: 3,
                    base_sequence: 100,
                    transactional: false,
                },
            ),
            record_case(
                "record timestamp after maxTimestamp",
                edited(valid.clone(), |h| h.max_timestamp.set(T0 + 4)),
                1,
                RecordError::TimestampAfterMax {
                    timestamp: T0 + 5,
                    max_timestamp: T0 + 4,
                },
            ),
            case(
                "bytes after the last counted record",
                edited(valid.clone(), |h| {
                    h.records_count.set(2);
                    h.last_offset_delta.set(1);
                }),
                BatchError::TrailingRecordBytes {
                    bytes: framed(&body(-10, 2, Some(b"k2"), None, &[])).len(),
                    records_count: 2,
                },
            ),
            record_case(
                "fewer records than counted",
                edited(valid.clone(), |h| {
                    h.records_count.set(4);
                    h.last_offset_delta.set(3);
                }),
                3,
                RecordError::Truncated {
                    field: "record length",
                    needed: 1,
                    available: 0,
                },
            ),
            record_case(
                "negative record length",
                raw_batch(&varint(-2), 1),
                0,
                RecordError::BadLength {
                    field: "record length",
                    length: -2,
                },
            ),
            record_case(
                "record length past the batch end",
                raw_batch(&[varint(10), vec![0; 3]].concat(), 1),
                0,
                RecordError::Truncated {
                    field: "record",
                    needed: 10,
                    available: 3,
                },
            ),
            record_case(
                "record cut inside its timestamp delta",
                raw_batch(&framed(&[0, 0x80]), 1),
                0,
                RecordError::Truncated {
                    field: "timestamp delta",
                    needed: 2,
                    available: 1,
                },
            ),
            record_case(
                "offset delta out of order",
                one_record(&body(0, 1, None, None, &[]), 1),
                0,
                RecordError::OffsetDelta {
                    expected: 0,
                    found: 1,
                },
            ),
            record_case(
                "key length below -1",
                one_record(&[0, 0, 0, 3], 1),
                0,
                RecordError::BadLength {
                    field: "key",
                    length: -2,
                },
            ),
            record_case(
                "value longer than the record",
                one_record(&[0, 0, 0, 1, 20, 1, 2], 1),
                0,
                RecordError::Truncated {
                    field: "value",
                    needed: 10,
                    available: 2,
                },
            ),
            record_case(
                "negative header count",
                one_record(&[0, 0, 0, 1, 1, 1], 1),
                0,
                RecordError::BadLength {
                    field: "header count",
                    length: -1,
                },
            ),
            record_case(
                "null header key",
                one_record(&[0, 0, 0, 1, 1, 2, 1, 1], 1),
                0,
                RecordError::BadLength {
                    field: "header key",
                    length: -1,
                },
            ),
            record_case(
                "more headers than the record holds",
                one_record(&[0, 0, 0, 1, 1, 4, 2, b'a', 1], 1),
                0,
                RecordError::Truncated {
                    field: "header key",
                    needed: 1,
                    available: 0,
                },
            ),
            record_case(
                "record longer than its fields",
                one_record(&[body(0, 0, None, None, &[]), vec![0]].concat(), 1),
                0,
                RecordError::LengthMismatch {
                    declared: 7,
                    used: 6,
                },
            ),
            record_case(
                "overlong timestamp varint",
                one_record(&overlong_delta, 1),
                0,
                RecordError::BadVarint {
                    field: "timestamp delta",
                },
            ),
            record_case(
                "record timestamp overflows",
                edited(one_record(&body(i64::MAX, 0, None, None, &[]), 1), |h| {
                    h.max_timestamp.set(i64::MAX)
                }),
                0,
                RecordError::Overflow { field: "timestamp" },
            ),
        ]
    }

    #[test]
    fn each_malformed_batch_is_rejected_with_its_error() {
        for case in cases() {
            let result = validate_batch(&case.batch, &case.limits);
            assert_eq!(result, Err(case.expected.clone()), "case: {}", case.name);
            // The header-only check agrees on everything but the record walk.
            let header_only = validate_batch_header_and_crc(&case.batch, &case.limits);
            let walk_error = matches!(
                case.expected,
                BatchError::Record { .. } | BatchError::TrailingRecordBytes { .. }
            );
            if walk_error {
                assert!(header_only.is_ok(), "case: {}: {header_only:?}", case.name);
            } else {
                assert_eq!(
                    header_only,
                    Err(case.expected.clone()),
                    "case: {}",
                    case.name
                );
            }
            // Every message names the problem.
            assert!(!case.expected.to_string().is_empty());
        }
    }

    #[test]
    fn built_batch_validates_with_its_header_fields() {
        let batch = sample();
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
        assert_eq!((info.base_timestamp, info.max_timestamp), (T0, T0 + 5));
        assert_eq!(info.partition_leader_epoch, -1);
        assert_eq!(info.compression(), Compression::None);
        assert_eq!(info.timestamp_type(), TimestampType::CreateTime);
        assert!(!info.is_transactional() && !info.is_control() && info.has_producer_id());
        assert_eq!(
            validate_batch_header_and_crc(&batch, &BatchLimits::default()),
            Ok(info)
        );
    }

    #[test]
    fn limits_equal_to_the_batch_accept_it() {
        let batch = sample();
        let limits = BatchLimits {
            batch_bytes_max: batch.len() as u32,
            records_per_batch_max: 3,
        };
        assert!(validate_batch(&batch, &limits).is_ok());
    }

    #[test]
    fn peek_needs_twelve_bytes_and_reads_only_them() {
        let batch = sample();
        let limits = BatchLimits::default();
        for cut in 0..12 {
            assert_eq!(
                peek_batch_size(&batch[..cut], &limits),
                Ok(None),
                "cut {cut}"
            );
        }
        for cut in [12, 13, 61, batch.len()] {
            assert_eq!(
                peek_batch_size(&batch[..cut], &limits),
                Ok(Some(batch.len())),
                "cut {cut}"
            );
        }
        // Corrupting bytes past the prefix does not change the answer.
        let mut garbage = batch[..12].to_vec();
        garbage.extend_from_slice(&[0xff; 20]);
        assert_eq!(peek_batch_size(&garbage, &limits), Ok(Some(batch.len())));
        // The smallest legal batchLength is exactly the header.
        assert_eq!(
            peek_batch_size(&set_length(batch.clone(), 49), &limits),
            Ok(Some(61))
        );
    }

    #[test]
    fn rewriting_offset_and_epoch_keeps_the_crc_valid() {
        let mut batch = sample();
        set_base_offset(&mut batch, 1_234_567).unwrap();
        set_partition_leader_epoch(&mut batch, 9).unwrap();
        let info = validate_batch(&batch, &BatchLimits::default()).expect("still valid");
        assert_eq!(
            (info.base_offset, info.partition_leader_epoch),
            (1_234_567, 9)
        );
        assert_eq!(
            (info.last_offset(), info.next_offset()),
            (1_234_569, 1_234_570)
        );
    }

    #[test]
    fn rewrites_of_a_short_buffer_fail_without_writing() {
        let mut short = vec![0u8; 60];
        let expected = Err(BatchError::Truncated {
            needed: 61,
            available: 60,
        });
        assert_eq!(set_base_offset(&mut short, 5), expected);
        assert_eq!(set_partition_leader_epoch(&mut short, 5), expected);
        assert_eq!(short, vec![0u8; 60]);
    }

    #[test]
    fn compressed_batches_are_checked_without_a_record_walk() {
        // Gzip attributes over bytes that are not records: the walk would reject them.
        let batch = edited(raw_batch(&[0xde, 0xad, 0xbe, 0xef], 1), |h| {
            h.attributes.set(1)
        });
        let info = validate_batch(&batch, &BatchLimits::default()).expect("valid compressed");
        assert_eq!(info.compression(), Compression::Gzip);
        let mut corrupt = batch.clone();
        corrupt[62] ^= 0x40;
        assert!(matches!(
            validate_batch(&corrupt, &BatchLimits::default()),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn log_append_time_records_may_be_later_than_max_timestamp() {
        let region = framed(&body(1_000, 0, None, Some(b"v"), &[]));
        let batch = edited(raw_batch(&region, 1), |h| h.attributes.set(0x08));
        let info = validate_batch(&batch, &BatchLimits::default()).expect("valid");
        assert_eq!(info.timestamp_type(), TimestampType::LogAppendTime);
    }

    #[test]
    fn batches_without_timestamps_skip_the_record_bound() {
        let region = framed(&body(5, 0, None, None, &[]));
        let batch = edited(raw_batch(&region, 1), |h| {
            h.base_timestamp.set(NO_TIMESTAMP);
            h.max_timestamp.set(NO_TIMESTAMP);
        });
        assert!(validate_batch(&batch, &BatchLimits::default()).is_ok());
    }

    #[test]
    fn transactional_and_control_flags_are_reported() {
        let batch = edited(sample(), |h| h.attributes.set(0x30));
        let info = validate_batch(&batch, &BatchLimits::default()).expect("valid");
        assert!(info.is_transactional() && info.is_control());
    }
}
