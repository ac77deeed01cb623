//! Building uncompressed batches record by record into one reusable buffer.
//!
//! The builder writes a placeholder header, appends each record in its final encoding, and on
//! [`BatchBuilder::finish`] fills in the header and computes the CRC once. It allocates only when
//! the buffer grows; pass a recycled buffer to [`BatchBuilder::with_buffer`] to avoid even that.
//! Invariant: every batch it finishes with at least one record passes
//! [`validate_batch`](super::validate_batch) with limits that admit its size and count.

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};

use super::error::BatchError;
use super::header::BatchHeader;
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{
    BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES, CRC_COVERED_START, MAGIC_V2,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

/// Builds one uncompressed batch (create-time timestamps, no transaction).
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    buffer: Vec<u8>,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records_count: u32,
}

impl BatchBuilder {
    /// Starts an empty batch whose record timestamps are stored relative to `base_timestamp`
    /// (milliseconds since the Unix epoch, or [`NO_TIMESTAMP`](super::NO_TIMESTAMP)).
    pub fn new(base_timestamp: i64) -> Self {
        Self::with_buffer(base_timestamp, Vec::new())
    }

    /// Like [`BatchBuilder::new`], with room for `bytes` bytes of batch before reallocating.
    pub fn with_capacity(base_timestamp: i64, bytes: usize) -> Self {
        Self::with_buffer(base_timestamp, Vec::with_capacity(bytes))
    }

    /// Like [`BatchBuilder::new`], reusing `buffer` (cleared first) and its capacity.
    pub fn with_buffer(base_timestamp: i64, mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        buffer.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            buffer,
            base_timestamp,
            max_timestamp: base_timestamp,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            records_count: 0,
        }
    }

    /// Marks the batch as sent by an idempotent producer.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Appends a record.
    ///
    /// # Panics
    ///
    /// If [`BatchBuilder::try_push`] would fail: a field longer than `i32::MAX` bytes, more than
    /// `i32::MAX` records, or a timestamp whose delta from the base does not fit an i64. These are
    /// caller bugs, never produced by sane input.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) {
        if let Err(error) = self.try_push(timestamp, key, value, headers) {
            panic!("BatchBuilder::push: {error}");
        }
    }

    /// Appends a record, or fails without changing the batch if it cannot be encoded.
    pub fn try_push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> Result<(), BatchError> {
        let offset_delta = i32::try_from(self.records_count)
            .ok()
            .filter(|&delta| delta < i32::MAX)
            .ok_or(BatchError::Unencodable(
                "more than i32::MAX records in one batch",
            ))?;
        let timestamp_delta = timestamp
            .checked_sub(self.base_timestamp)
            .ok_or(BatchError::Unencodable("timestamp delta overflows an i64"))?;
        let key_length = nullable_length(key)?;
        let value_length = nullable_length(value)?;
        let header_count = i32::try_from(headers.len())
            .map_err(|_| BatchError::Unencodable("more than i32::MAX headers"))?;

        let mut body_bytes: usize = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + varint_len(key_length)
            + key.map_or(0, <[u8]>::len)
            + varint_len(value_length)
            + value.map_or(0, <[u8]>::len)
            + varint_len(header_count);
        for (header_key, header_value) in headers {
            let header_key_length = field_length(header_key)?;
            body_bytes += varint_len(header_key_length) + header_key.len();
            body_bytes +=
                varint_len(nullable_length(*header_value)?) + header_value.map_or(0, <[u8]>::len);
        }
        let body_length = i32::try_from(body_bytes)
            .map_err(|_| BatchError::Unencodable("record longer than i32::MAX bytes"))?;
        let record_bytes = varint_len(body_length) + body_bytes;
        let batch_length =
            (self.buffer.len() - BATCH_LOG_OVERHEAD_BYTES).saturating_add(record_bytes);
        if i32::try_from(batch_length).is_err() {
            return Err(BatchError::Unencodable("batch longer than i32::MAX bytes"));
        }

        // Nothing below can fail: every length was checked to fit an i32 above.
        self.buffer.reserve(record_bytes);
        put_varint(&mut self.buffer, body_length);
        self.buffer.push(0); // Record attributes: unused in v2.
        put_varlong(&mut self.buffer, timestamp_delta);
        put_varint(&mut self.buffer, offset_delta);
        put_nullable(&mut self.buffer, key_length, key);
        put_nullable(&mut self.buffer, value_length, value);
        put_varint(&mut self.buffer, header_count);
        for (header_key, header_value) in headers {
            put_nullable(&mut self.buffer, header_key.len() as i32, Some(header_key));
            let header_value_length = header_value.map_or(-1, |bytes| bytes.len() as i32);
            put_nullable(&mut self.buffer, header_value_length, *header_value);
        }
        self.records_count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok(())
    }

    /// Records pushed so far.
    pub fn records_count(&self) -> u32 {
        self.records_count
    }

    /// Whether no record has been pushed; an empty batch is not valid and should not be sent.
    pub fn is_empty(&self) -> bool {
        self.records_count == 0
    }

    /// Size in bytes the batch would have if finished now.
    pub fn size_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Fills in the header (base offset 0, leader epoch -1, attributes 0) and the CRC, and
    /// returns the batch bytes.
    ///
    /// A batch with no record fails validation: check [`BatchBuilder::is_empty`] first.
    pub fn finish(mut self) -> Vec<u8> {
        // try_push keeps the batch length within an i32.
        let batch_length = (self.buffer.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
        let records_count = self.records_count as i32;
        let header = BatchHeader {
            base_offset: I64::new(0),
            batch_length: I32::new(batch_length),
            partition_leader_epoch: I32::new(NO_PARTITION_LEADER_EPOCH),
            magic: MAGIC_V2,
            crc: U32::new(0),
            attributes: I16::new(0),
            last_offset_delta: I32::new(records_count - 1),
            base_timestamp: I64::new(self.base_timestamp),
            max_timestamp: I64::new(self.max_timestamp),
            producer_id: I64::new(self.producer_id),
            producer_epoch: I16::new(self.producer_epoch),
            base_sequence: I32::new(self.base_sequence),
            records_count: I32::new(records_count),
        };
        let header_bytes = zerocopy::IntoBytes::as_bytes(&header);
        self.buffer[..BATCH_HEADER_BYTES].copy_from_slice(header_bytes);
        let crc = crc32c::crc32c(&self.buffer[CRC_COVERED_START..]);
        self.buffer[CRC_COVERED_START - 4..CRC_COVERED_START].copy_from_slice(&crc.to_be_bytes());
        self.buffer
    }
}

/// The varint length of a non-null field.
fn field_length(bytes: &[u8]) -> Result<i32, BatchError> {
    i32::try_from(bytes.len())
        .map_err(|_| BatchError::Unencodable("field longer than i32::MAX bytes"))
}

/// The varint length of a nullable field: -1 for null.
fn nullable_length(bytes: Option<&[u8]>) -> Result<i32, BatchError> {
    bytes.map_or(Ok(-1), field_length)
}

/// Appends a length and, unless null, the bytes.
fn put_nullable(out: &mut Vec<u8>, length: i32, bytes: Option<&[u8]>) {
    put_varint(out, length);
    if let Some(bytes) = bytes {
        out.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{records, validate_batch, BatchLimits};

    #[test]
    fn size_bytes_predicts_the_finished_length() {
        let mut builder = BatchBuilder::with_capacity(10, 4096);
        assert_eq!(builder.size_bytes(), BATCH_HEADER_BYTES);
        assert!(builder.is_empty());
        for index in 0..50u8 {
            builder.push(
                10 + i64::from(index),
                Some(&[index]),
                Some(&[index; 40]),
                &[],
            );
        }
        assert_eq!(builder.records_count(), 50);
        let size = builder.size_bytes();
        let batch = builder.finish();
        assert_eq!(batch.len(), size);
        let info = validate_batch(&batch, &BatchLimits::default()).expect("valid");
        assert_eq!((info.records_count, info.last_offset_delta), (50, 49));
        assert_eq!((info.base_timestamp, info.max_timestamp), (10, 59));
    }

    #[test]
    fn a_recycled_buffer_is_cleared_and_reused() {
        let mut first = BatchBuilder::new(0);
        first.push(0, None, Some(b"one"), &[]);
        let old = first.finish();
        let capacity = old.capacity();
        let mut second = BatchBuilder::with_buffer(7, old);
        second.push(7, None, Some(b"two"), &[]);
        let batch = second.finish();
        assert!(batch.capacity() >= capacity);
        let values: Vec<Option<&[u8]>> = records(&batch)
            .unwrap()
            .map(|record| record.unwrap().value)
            .collect();
        assert_eq!(values, [Some(&b"two"[..])]);
    }

    #[test]
    fn an_empty_batch_is_not_valid() {
        let batch = BatchBuilder::new(0).finish();
        assert_eq!(
            validate_batch(&batch, &BatchLimits::default()),
            Err(BatchError::RecordCount {
                records_count: 0,
                last_offset_delta: -1
            })
        );
    }

    #[test]
    fn unencodable_timestamps_are_refused_without_changing_the_batch() {
        let mut builder = BatchBuilder::new(i64::MAX);
        let before = builder.size_bytes();
        assert_eq!(
            builder.try_push(-2, None, None, &[]),
            Err(BatchError::Unencodable("timestamp delta overflows an i64"))
        );
        assert_eq!((builder.size_bytes(), builder.records_count()), (before, 0));
    }

    #[test]
    #[should_panic(expected = "timestamp delta overflows")]
    fn push_panics_where_try_push_fails() {
        BatchBuilder::new(i64::MIN).push(1, None, None, &[]);
    }

    #[test]
    fn max_timestamp_never_falls_below_the_base() {
        let mut builder = BatchBuilder::new(1_000);
        builder.push(400, None, None, &[]);
        let batch = builder.finish();
        let info = validate_batch(&batch, &BatchLimits::default()).expect("valid");
        assert_eq!((info.base_timestamp, info.max_timestamp), (1_000, 1_000));
    }
}
