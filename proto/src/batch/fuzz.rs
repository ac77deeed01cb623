//! The consistency check that the `batch` fuzz target runs on arbitrary input, kept in the crate
//! so that `cargo test` also runs it over the checked-in seed corpus.
//!
//! It panics only when two views of the same bytes disagree (a bug), never because the bytes are
//! invalid: the full validator agrees with the header-and-CRC validator, a validated batch yields
//! exactly its records, the batch iterator partitions its buffer, rewriting the offset keeps the
//! CRC valid, and a validated batch survives a decode, rebuild and decode round trip.

use super::{
    peek_batch_size, records, set_base_offset, set_partition_leader_epoch, validate_batch,
    validate_batch_header_and_crc, BatchBuilder, BatchError, BatchInfo, BatchIter, BatchLimits,
    Compression, TimestampType, BATCH_LOG_OVERHEAD_BYTES, CRC_COVERED_START,
};

/// Limits wide enough that only the format, not policy, rejects a batch.
const LIMITS_WIDE: BatchLimits = BatchLimits {
    batch_bytes_max: u32::MAX,
    records_per_batch_max: u32::MAX,
};

/// Runs every batch decoder on `data` and panics if their results are inconsistent.
///
/// Random bytes almost never carry a matching CRC-32C, so the check also runs on a copy whose
/// first batch has its CRC recomputed: that lets a fuzzer reach the header checks and the record
/// walk behind the CRC instead of spending its time on the CRC comparison.
#[doc(hidden)]
pub fn fuzz_batch(data: &[u8]) {
    check_all(data);
    if let Some(resealed) = resealed(data) {
        check_all(&resealed);
    }
}

/// A copy of `data` with the CRC of its first batch recomputed, if it holds a CRC field.
fn resealed(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < CRC_COVERED_START {
        return None;
    }
    let end = match peek_batch_size(data, &LIMITS_WIDE) {
        Ok(Some(size_bytes)) => size_bytes.clamp(CRC_COVERED_START, data.len()),
        _ => data.len(),
    };
    let mut copy = data.to_vec();
    let crc = crc32c::crc32c(&copy[CRC_COVERED_START..end]);
    copy[CRC_COVERED_START - 4..CRC_COVERED_START].copy_from_slice(&crc.to_be_bytes());
    Some(copy)
}

/// All consistency checks on one input.
fn check_all(data: &[u8]) {
    check_peek(data);
    let header_checked = validate_batch_header_and_crc(data, &LIMITS_WIDE);
    let fully_checked = validate_batch(data, &LIMITS_WIDE);
    match (&header_checked, &fully_checked) {
        (Ok(header_info), Ok(full_info)) => assert_eq!(header_info, full_info),
        (Err(header_error), Err(full_error)) => assert_eq!(header_error, full_error),
        (Err(error), Ok(_)) => panic!("header check failed ({error}) but full check passed"),
        (Ok(info), Err(_)) => assert_eq!(info.compression(), Compression::None),
    }
    check_batch_iter(data, &header_checked, &fully_checked);
    drain_records(data);
    if let Ok(info) = fully_checked {
        check_valid_batch(data, &info);
    }
}

/// `peek_batch_size` needs 12 bytes and agrees with a whole valid batch's size.
fn check_peek(data: &[u8]) {
    let peeked = peek_batch_size(data, &LIMITS_WIDE);
    if data.len() < BATCH_LOG_OVERHEAD_BYTES {
        assert_eq!(peeked, Ok(None));
    } else {
        assert!(!matches!(peeked, Ok(None)), "12 bytes are enough to peek");
    }
}

/// The iterator partitions the buffer into yielded batches and a remainder, and agrees with the
/// single-batch validators when the buffer is one batch.
fn check_batch_iter(
    data: &[u8],
    header_checked: &Result<BatchInfo, BatchError>,
    fully_checked: &Result<BatchInfo, BatchError>,
) {
    for walk_records in [false, true] {
        let mut iter = if walk_records {
            BatchIter::new_with_record_walk(data, &LIMITS_WIDE)
        } else {
            BatchIter::new(data, &LIMITS_WIDE)
        };
        let mut yielded_bytes = 0;
        let mut first = None;
        let mut errors = 0;
        for item in iter.by_ref() {
            match item {
                Ok((info, batch)) => {
                    assert_eq!(batch.len(), info.size_bytes as usize);
                    assert_eq!(validate_batch_header_and_crc(batch, &LIMITS_WIDE), Ok(info));
                    if walk_records {
                        assert_eq!(validate_batch(batch, &LIMITS_WIDE), Ok(info));
                    }
                    yielded_bytes += batch.len();
                    first.get_or_insert(info);
                }
                Err(_) => errors += 1,
            }
        }
        assert!(errors <= 1, "the iterator ends after its first error");
        assert_eq!(yielded_bytes, iter.consumed_bytes());
        assert_eq!(yielded_bytes + iter.remaining().len(), data.len());
        let whole = if walk_records {
            fully_checked
        } else {
            header_checked
        };
        if let Ok(info) = whole {
            assert_eq!(first.as_ref(), Some(info));
            assert!(iter.remaining().is_empty());
        }
    }
}

/// Iterating the records of arbitrary bytes ends and never panics.
fn drain_records(data: &[u8]) {
    let Ok(iter) = records(data) else {
        return;
    };
    let mut items = 0usize;
    for record in iter {
        items += 1;
        assert!(
            items <= data.len() + 1,
            "each record consumes at least one byte"
        );
        if let Ok(record) = record {
            for header in record.headers {
                if header.is_err() {
                    break;
                }
            }
        }
    }
}

/// Everything that must hold for a batch that `validate_batch` accepted.
fn check_valid_batch(data: &[u8], info: &BatchInfo) {
    assert_eq!(peek_batch_size(data, &LIMITS_WIDE), Ok(Some(data.len())));
    let mut moved = data.to_vec();
    let new_base_offset = info.base_offset / 2;
    assert_eq!(set_base_offset(&mut moved, new_base_offset), Ok(()));
    assert_eq!(set_partition_leader_epoch(&mut moved, 7), Ok(()));
    let moved_info = validate_batch(&moved, &LIMITS_WIDE).expect("rewritten batch stays valid");
    assert_eq!(moved_info.base_offset, new_base_offset);
    assert_eq!(moved_info.partition_leader_epoch, 7);
    if info.compression() != Compression::None {
        return;
    }
    let mut count = 0i64;
    for record in records(data).expect("a validated batch is iterable") {
        let record = record.expect("a validated batch yields no record error");
        assert_eq!(record.offset, info.base_offset + count);
        for header in record.headers {
            header.expect("a validated record yields no header error");
        }
        count += 1;
    }
    assert_eq!(count, i64::from(info.records_count));
    if info.timestamp_type() == TimestampType::CreateTime {
        check_rebuild(data, info);
    }
}

/// Decoding a create-time batch and building it again gives the same records.
fn check_rebuild(data: &[u8], info: &BatchInfo) {
    let mut builder = BatchBuilder::new(info.base_timestamp).producer(
        info.producer_id,
        info.producer_epoch,
        info.base_sequence,
    );
    let mut headers = Vec::new();
    for record in records(data).expect("a validated batch is iterable") {
        let record = record.expect("a validated batch yields no record error");
        headers.clear();
        headers.extend(record.headers.map(|header| header.expect("valid header")));
        builder
            .try_push(record.timestamp, record.key, record.value, &headers)
            .expect("a decoded record can be encoded again");
    }
    let mut rebuilt = builder.finish();
    assert_eq!(set_base_offset(&mut rebuilt, info.base_offset), Ok(()));
    let rebuilt_info = validate_batch(&rebuilt, &LIMITS_WIDE).expect("a rebuilt batch is valid");
    assert_eq!(rebuilt_info.records_count, info.records_count);
    let original = records(data).expect("a validated batch is iterable");
    let again = records(&rebuilt).expect("a rebuilt batch is iterable");
    for (left, right) in original.zip(again) {
        let (left, right) = (left.expect("valid"), right.expect("valid"));
        assert_eq!(
            (left.offset, left.timestamp, left.key, left.value),
            (right.offset, right.timestamp, right.key, right.value)
        );
        assert!(left
            .headers
            .map(Result::ok)
            .eq(right.headers.map(Result::ok)));
    }
}
