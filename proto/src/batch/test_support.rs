//! Helpers for the unit tests: hand-assembled records and batches, including malformed ones that
//! the builder cannot produce.

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};

use super::header::BatchHeader;
use super::varint::{put_varint, put_varlong};
use super::{BatchBuilder, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES, CRC_COVERED_START};

/// A fixed base timestamp for test batches.
pub(crate) const T0: i64 = 1_700_000_000_000;

/// A valid three-record batch from an idempotent producer; record 1 is the latest, at `T0 + 5`.
pub(crate) fn sample() -> Vec<u8> {
    let mut builder = BatchBuilder::new(T0).producer(42, 3, 100);
    builder.push(T0, Some(b"k0"), Some(b"v0"), &[]);
    builder.push(T0 + 5, None, Some(b""), &[(b"h", Some(b"x")), (b"n", None)]);
    builder.push(T0 - 10, Some(b"k2"), None, &[]);
    builder.finish()
}

/// Recomputes the CRC of a batch after its covered bytes were edited.
pub(crate) fn reseal(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_COVERED_START..]);
    batch[CRC_COVERED_START - 4..CRC_COVERED_START].copy_from_slice(&crc.to_be_bytes());
}

/// Edits the header of `batch` and reseals it, so that only the edit is wrong.
pub(crate) fn edited(mut batch: Vec<u8>, edit: impl FnOnce(&mut BatchHeader)) -> Vec<u8> {
    edit(BatchHeader::view_mut(&mut batch).expect("whole header"));
    reseal(&mut batch);
    batch
}

/// The zigzag varint encoding of `value`.
pub(crate) fn varint(value: i32) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, value);
    out
}

/// A record body (without its length prefix) from raw parts, headers included as given.
pub(crate) fn body(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&[u8], Option<&[u8]>)],
) -> Vec<u8> {
    let mut out = vec![0u8];
    put_varlong(&mut out, timestamp_delta);
    put_varint(&mut out, offset_delta);
    for field in [key, value] {
        put_nullable(&mut out, field);
    }
    put_varint(&mut out, headers.len() as i32);
    for (header_key, header_value) in headers {
        put_nullable(&mut out, Some(header_key));
        put_nullable(&mut out, *header_value);
    }
    out
}

fn put_nullable(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        Some(bytes) => {
            put_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
        None => put_varint(out, -1),
    }
}

/// A record body with its length prefix.
pub(crate) fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = varint(body.len() as i32);
    out.extend_from_slice(body);
    out
}

/// A sealed batch around raw record bytes, claiming `records_count` records, create time,
/// base and max timestamp `T0`, no producer.
pub(crate) fn raw_batch(records_region: &[u8], records_count: i32) -> Vec<u8> {
    let size_bytes = BATCH_HEADER_BYTES + records_region.len();
    let header = BatchHeader {
        base_offset: I64::new(0),
        batch_length: I32::new((size_bytes - BATCH_LOG_OVERHEAD_BYTES) as i32),
        partition_leader_epoch: I32::new(-1),
        magic: 2,
        crc: U32::new(0),
        attributes: I16::new(0),
        last_offset_delta: I32::new(records_count - 1),
        base_timestamp: I64::new(T0),
        max_timestamp: I64::new(T0),
        producer_id: I64::new(-1),
        producer_epoch: I16::new(-1),
        base_sequence: I32::new(-1),
        records_count: I32::new(records_count),
    };
    let mut batch = zerocopy::IntoBytes::as_bytes(&header).to_vec();
    batch.extend_from_slice(records_region);
    reseal(&mut batch);
    batch
}
