//! Typed errors of batch decoding, validation and building.
//!
//! [`BatchError`] says what is wrong with a batch as a whole; [`RecordError`] says what is wrong
//! inside one record and is carried by [`BatchError::Record`] with the record's index. Every
//! variant carries the numbers that make its message actionable, and none allocates.

/// Why a batch was rejected.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// The buffer ends before the bytes the batch needs.
    #[error("batch truncated: needs {needed} bytes but only {available} are available")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes the buffer holds.
        available: usize,
    },
    /// The batch is larger than the configured limit.
    #[error("batch of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        /// Whole size of the batch, including the 12-byte log overhead.
        size_bytes: u64,
        /// The configured `batch_bytes_max`.
        max_bytes: u32,
    },
    /// `batchLength` is smaller than the header it must at least cover.
    #[error("batchLength {batch_length} is impossible: it must be at least {min}")]
    BadLength {
        /// The stored `batchLength`.
        batch_length: i32,
        /// The smallest legal `batchLength` (49).
        min: i32,
    },
    /// The buffer holds more bytes than `batchLength` declares.
    #[error(
        "buffer of {buffer_bytes} bytes holds more than the {size_bytes}-byte batch it declares"
    )]
    TrailingBytes {
        /// Whole size of the batch per its `batchLength`.
        size_bytes: usize,
        /// Bytes in the buffer.
        buffer_bytes: usize,
    },
    /// The format version is not 2.
    #[error("unsupported batch magic {0}: only magic 2 (RecordBatch v2) is supported")]
    BadMagic(i8),
    /// The stored CRC-32C does not match the bytes: the batch is corrupt or torn.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over `attributes`..end.
        computed: u32,
    },
    /// The compression codec in `attributes` is one of the reserved codes 5-7.
    #[error("unsupported compression codec {0} in batch attributes")]
    UnsupportedCompression(u8),
    /// The records of a compressed batch were asked for; they must be decompressed first.
    #[error("batch records are compressed with codec {0}; iterate them after decompression")]
    CompressedRecords(u8),
    /// `recordsCount` is zero, negative or inconsistent with `lastOffsetDelta`.
    #[error(
        "recordsCount {records_count} is invalid with lastOffsetDelta {last_offset_delta}: \
         a batch holds at least one record and recordsCount = lastOffsetDelta + 1"
    )]
    RecordCount {
        /// The stored `recordsCount`.
        records_count: i32,
        /// The stored `lastOffsetDelta`.
        last_offset_delta: i32,
    },
    /// `recordsCount` is over the configured limit.
    #[error("batch holds {records_count} records, over the limit of {max_records}")]
    TooManyRecords {
        /// The stored `recordsCount`.
        records_count: i32,
        /// The configured `records_per_batch_max`.
        max_records: u32,
    },
    /// `baseOffset` is negative, or the batch's last offset does not fit in an i64.
    #[error("baseOffset {base_offset} with lastOffsetDelta {last_offset_delta} is out of range")]
    BadOffset {
        /// The stored `baseOffset`.
        base_offset: i64,
        /// The stored `lastOffsetDelta`.
        last_offset_delta: i32,
    },
    /// The header timestamps contradict each other or are negative (other than -1, no timestamp).
    #[error(
        "inconsistent batch timestamps: baseTimestamp {base_timestamp}, maxTimestamp \
         {max_timestamp} (each must be >= -1, and maxTimestamp >= baseTimestamp)"
    )]
    BadTimestamps {
        /// The stored `baseTimestamp`.
        base_timestamp: i64,
        /// The stored `maxTimestamp`.
        max_timestamp: i64,
    },
    /// The producer fields are inconsistent (for example a transactional batch with no producer).
    #[error(
        "inconsistent producer fields: producerId {producer_id}, producerEpoch {producer_epoch}, \
         baseSequence {base_sequence}, transactional {transactional}"
    )]
    BadProducer {
        /// The stored `producerId`.
        producer_id: i64,
        /// The stored `producerEpoch`.
        producer_epoch: i16,
        /// The stored `baseSequence`.
        base_sequence: i32,
        /// Whether the transactional attribute bit is set.
        transactional: bool,
    },
    /// One record inside the batch is malformed.
    #[error("record {index} of the batch is invalid: {reason}")]
    Record {
        /// Zero-based position of the record in the batch.
        index: u32,
        /// What is wrong with it.
        reason: RecordError,
    },
    /// Bytes remain after the last record that `recordsCount` announces.
    #[error("{bytes} bytes remain after the batch's {records_count} records")]
    TrailingRecordBytes {
        /// Bytes left over.
        bytes: usize,
        /// The stored `recordsCount`.
        records_count: i32,
    },
    /// A value given to the builder cannot be encoded in the format.
    #[error("cannot encode record: {0}")]
    Unencodable(&'static str),
}

/// Why one record inside a batch was rejected.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The record, or one of its fields, runs past the end of the bytes that contain it.
    #[error("{field} needs {needed} bytes but only {available} remain")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A varint is longer than its type allows or encodes bits outside it.
    #[error("{field} is not a valid zigzag varint")]
    BadVarint {
        /// The field being read.
        field: &'static str,
    },
    /// A length is negative where the format forbids it (below -1 for nullable fields).
    #[error("{field} length {length} is invalid")]
    BadLength {
        /// The field whose length is wrong.
        field: &'static str,
        /// The stored length.
        length: i64,
    },
    /// The record's offset delta is not its position in the batch.
    #[error("offset delta {found} where {expected} was expected")]
    OffsetDelta {
        /// The record's position in the batch.
        expected: i32,
        /// The stored offset delta.
        found: i32,
    },
    /// The record's fields do not exactly fill its declared length.
    #[error("record declares {declared} bytes but its fields use {used}")]
    LengthMismatch {
        /// The record's stored length.
        declared: usize,
        /// Bytes its fields take.
        used: usize,
    },
    /// `base_timestamp + timestampDelta` or `base_offset + offsetDelta` overflows an i64.
    #[error("{field} overflows a 64-bit integer")]
    Overflow {
        /// The field that overflowed.
        field: &'static str,
    },
    /// A create-time record timestamp is later than the batch's `maxTimestamp`.
    #[error("record timestamp {timestamp} is after the batch maxTimestamp {max_timestamp}")]
    TimestampAfterMax {
        /// The record's timestamp.
        timestamp: i64,
        /// The batch's `maxTimestamp`.
        max_timestamp: i64,
    },
}
