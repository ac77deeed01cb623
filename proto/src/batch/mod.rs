//! Record batches: the Kafka RecordBatch v2 layout, byte for byte, with its builder, validator and
//! zero-allocation iterators.
//!
//! This module owns the on-disk and on-wire unit of data. A batch is a fixed 61-byte header
//! ([`BatchHeader`], big-endian) followed by varint-encoded records. Invariants kept here:
//!
//! - Every decoder is a pure function of its input bytes: it never panics and never allocates,
//!   whatever the input; "need more bytes" ([`peek_batch_size`] returning `Ok(None)`, or
//!   [`BatchIter`] stopping at a partial batch) is told apart from "invalid" (a [`BatchError`]).
//! - The CRC-32C covers everything from `attributes` to the end of the batch, so `baseOffset` and
//!   `partitionLeaderEpoch` can be rewritten in place ([`set_base_offset`],
//!   [`set_partition_leader_epoch`]) without recomputing it.
//! - A batch accepted by [`validate_batch`] yields exactly `records_count` records from
//!   [`records`], with offsets `base_offset..=last_offset` in order and no error.
//! - A [`ValidatedBatch`] carries the proof that its exact bytes passed
//!   [`validate_batch_header_and_crc`], so the broker checks a produced batch's CRC once.
//!
//! The byte diagrams live in `docs/BATCH_FORMAT.md`.

#![deny(missing_docs)]

mod builder;
mod crc;
mod error;
mod fuzz;
mod header;
mod iter;
mod record;
mod validate;
mod validated;
mod varint;

#[cfg(test)]
mod test_support;

pub use builder::BatchBuilder;
pub use error::{BatchError, RecordError};
#[doc(hidden)]
pub use fuzz::fuzz_batch;
pub use header::{BatchHeader, Compression, TimestampType};
pub use iter::BatchIter;
pub use record::{records, HeaderIter, Record, RecordIter};
pub use validate::{
    peek_batch_size, set_base_offset, set_partition_leader_epoch, set_producer, validate_batch,
    validate_batch_header_and_crc, BatchInfo, BatchLimits,
};
pub use validated::{split_validated, ValidatedBatch, ValidatedSplit};

/// Size in bytes of the fixed batch header, from `baseOffset` through `recordsCount`.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Bytes at the start of a batch that `batchLength` does not count: `baseOffset` (8) and
/// `batchLength` (4).
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;

/// The only batch format version Weir reads and writes (Kafka RecordBatch v2).
pub const MAGIC_V2: i8 = 2;

/// `producerId` of a batch sent by a producer that is not idempotent.
pub const NO_PRODUCER_ID: i64 = -1;

/// `producerEpoch` of a batch sent by a producer that is not idempotent.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// `baseSequence` of a batch sent by a producer that is not idempotent.
pub const NO_SEQUENCE: i32 = -1;

/// `partitionLeaderEpoch` of a batch that no leader has stamped yet.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// Timestamp value meaning "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;

/// Smallest legal `batchLength`: the part of the header that `batchLength` counts.
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32;

/// Byte offset of the first CRC-covered byte (`attributes`) within a batch.
pub const CRC_COVERED_START: usize = 21;
