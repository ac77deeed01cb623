//! Property tests of the record batch format: what the builder writes, the validator accepts and
//! the iterators return exactly; rewriting offsets keeps batches valid; the batch iterator yields
//! exactly the whole-batch prefix of any cut buffer; and no input, arbitrary or a valid batch with
//! one byte changed, makes a decoder panic or slips a CRC-covered change past validation.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use weir_proto::batch::{
    fuzz_batch, records, set_base_offset, set_partition_leader_epoch, validate_batch,
    validate_batch_header_and_crc, BatchBuilder, BatchError, BatchIter, BatchLimits,
    CRC_COVERED_START, NO_PRODUCER_ID, NO_TIMESTAMP,
};

type Headers = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// One record as the test pushes it: timestamp, key, value, headers.
#[derive(Clone, Debug, PartialEq)]
struct Input {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Headers,
}

/// A batch as the test builds it.
#[derive(Clone, Debug)]
struct BatchInput {
    base_timestamp: i64,
    producer: Option<(i64, i16, i32)>,
    records: Vec<Input>,
}

fn bytes(size_max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..size_max)
}

fn record(base_timestamp: i64) -> impl Strategy<Value = Input> {
    (
        // Up to a year either side of the base, never below -1 (no timestamp).
        -31_536_000_000i64..31_536_000_000,
        option::of(bytes(40)),
        option::of(bytes(200)),
        vec((bytes(12), option::of(bytes(24))), 0..4),
    )
        .prop_map(move |(delta, key, value, headers)| Input {
            timestamp: (base_timestamp + delta).max(NO_TIMESTAMP),
            key,
            value,
            headers,
        })
}

fn batch_input() -> impl Strategy<Value = BatchInput> {
    let base_timestamp = prop_oneof![
        9 => 0i64..(1 << 45),
        1 => Just(NO_TIMESTAMP),
    ];
    let producer = option::of((0..i64::MAX, 0..=i16::MAX, 0..=i32::MAX));
    (base_timestamp, producer).prop_flat_map(|(base_timestamp, producer)| {
        vec(record(base_timestamp), 1..24).prop_map(move |records| BatchInput {
            base_timestamp,
            producer,
            records,
        })
    })
}

fn build(input: &BatchInput) -> Vec<u8> {
    let mut builder = BatchBuilder::new(input.base_timestamp);
    if let Some((id, epoch, sequence)) = input.producer {
        builder = builder.producer(id, epoch, sequence);
    }
    for record in &input.records {
        let headers: Vec<(&[u8], Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_deref()))
            .collect();
        let before = builder.size_bytes();
        builder.push(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
        );
        assert!(builder.size_bytes() > before);
    }
    let expected_size = builder.size_bytes();
    let batch = builder.finish();
    assert_eq!(batch.len(), expected_size);
    batch
}

/// Decodes every record of a batch back into inputs.
fn decode(batch: &[u8]) -> Vec<(i64, Input)> {
    records(batch)
        .expect("iterable")
        .map(|record| {
            let record = record.expect("valid record");
            let headers = record
                .headers
                .map(|header| {
                    let (key, value) = header.expect("valid header");
                    (key.to_vec(), value.map(<[u8]>::to_vec))
                })
                .collect();
            let input = Input {
                timestamp: record.timestamp,
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.map(<[u8]>::to_vec),
                headers,
            };
            (record.offset, input)
        })
        .collect()
}

proptest! {
    #[test]
    fn builder_validator_and_iterator_round_trip(input in batch_input()) {
        let batch = build(&input);
        let info = validate_batch(&batch, &BatchLimits::default()).expect("built batch is valid");
        prop_assert_eq!(info.size_bytes as usize, batch.len());
        prop_assert_eq!(info.records_count as usize, input.records.len());
        prop_assert_eq!(info.base_offset, 0);
        prop_assert_eq!(info.base_timestamp, input.base_timestamp);
        let latest = input.records.iter().map(|record| record.timestamp).max().unwrap();
        prop_assert_eq!(info.max_timestamp, latest.max(input.base_timestamp));
        let (id, epoch, sequence) = input.producer.unwrap_or((NO_PRODUCER_ID, -1, -1));
        prop_assert_eq!((info.producer_id, info.producer_epoch, info.base_sequence), (id, epoch, sequence));
        let decoded = decode(&batch);
        let offsets: Vec<i64> = decoded.iter().map(|(offset, _)| *offset).collect();
        prop_assert_eq!(offsets, (0..input.records.len() as i64).collect::<Vec<_>>());
        let records: Vec<Input> = decoded.into_iter().map(|(_, record)| record).collect();
        prop_assert_eq!(records, input.records);
    }

    #[test]
    fn stamping_offset_and_epoch_keeps_the_batch_valid(
        input in batch_input(),
        base_offset in 0..i64::MAX / 2,
        epoch in any::<i32>(),
    ) {
        let mut batch = build(&input);
        let crc_before = batch[17..21].to_vec();
        set_base_offset(&mut batch, base_offset).unwrap();
        set_partition_leader_epoch(&mut batch, epoch).unwrap();
        prop_assert_eq!(&batch[17..21], &crc_before[..]);
        let info = validate_batch(&batch, &BatchLimits::default()).expect("still valid");
        prop_assert_eq!((info.base_offset, info.partition_leader_epoch), (base_offset, epoch));
        prop_assert_eq!(info.next_offset(), base_offset + input.records.len() as i64);
        let offsets: Vec<i64> = decode(&batch).iter().map(|(offset, _)| *offset).collect();
        let expected: Vec<i64> = (0..input.records.len() as i64).map(|delta| base_offset + delta).collect();
        prop_assert_eq!(offsets, expected);
    }

    #[test]
    fn batch_iter_yields_exactly_the_whole_batch_prefix(
        inputs in vec(batch_input(), 1..6),
        cut_fraction in 0.0f64..=1.0,
        walk_records in any::<bool>(),
    ) {
        let mut buffer = Vec::new();
        let mut ends = Vec::new();
        let mut next_offset = 0;
        for input in &inputs {
            let mut batch = build(input);
            set_base_offset(&mut batch, next_offset).unwrap();
            next_offset += input.records.len() as i64;
            buffer.extend_from_slice(&batch);
            ends.push(buffer.len());
        }
        let cut = ((buffer.len() as f64) * cut_fraction) as usize;
        let limits = BatchLimits::default();
        let mut iter = if walk_records {
            BatchIter::new_with_record_walk(&buffer[..cut], &limits)
        } else {
            BatchIter::new(&buffer[..cut], &limits)
        };
        let mut start = 0;
        let mut yielded = 0;
        for item in iter.by_ref() {
            let (info, batch) = item.expect("no error in a cut buffer of valid batches");
            prop_assert_eq!(batch, &buffer[start..ends[yielded]]);
            prop_assert_eq!(info.size_bytes as usize, batch.len());
            start = ends[yielded];
            yielded += 1;
        }
        let whole = ends.iter().filter(|&&end| end <= cut).count();
        prop_assert_eq!(yielded, whole);
        prop_assert_eq!(iter.remaining(), &buffer[start..cut]);
        prop_assert_eq!(iter.consumed_bytes(), start);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(600)) {
        fuzz_batch(&data);
    }

    #[test]
    fn arbitrary_bytes_behind_a_plausible_prefix_never_panic(
        tail in bytes(300),
        records_count in 1i32..5,
    ) {
        // A header that passes the size, magic and CRC checks, so the record walk sees the tail.
        let mut batch = build(&BatchInput {
            base_timestamp: 0,
            producer: None,
            records: vec![Input { timestamp: 0, key: None, value: None, headers: Vec::new() }],
        });
        batch.truncate(61);
        batch.extend_from_slice(&tail);
        let batch_length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[23..27].copy_from_slice(&(records_count - 1).to_be_bytes());
        batch[57..61].copy_from_slice(&records_count.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_COVERED_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        prop_assert!(validate_batch_header_and_crc(&batch, &BatchLimits::default()).is_ok());
        fuzz_batch(&batch);
    }

    #[test]
    fn one_changed_byte_is_caught_where_it_matters(
        input in batch_input(),
        position_fraction in 0.0f64..1.0,
        flip in 1u8..=255,
    ) {
        let valid = build(&input);
        let position = ((valid.len() as f64) * position_fraction) as usize;
        let mut batch = valid.clone();
        batch[position] ^= flip;
        let limits = BatchLimits::default();
        let result = validate_batch(&batch, &limits);
        match position {
            // baseOffset: outside the CRC; valid unless it became negative.
            0..=7 => prop_assert!(
                matches!(result, Ok(_) | Err(BatchError::BadOffset { .. })),
                "{:?}",
                result
            ),
            // batchLength: the size no longer matches the buffer or is impossible.
            8..=11 => prop_assert!(matches!(
                result,
                Err(BatchError::Truncated { .. }
                    | BatchError::TrailingBytes { .. }
                    | BatchError::BadLength { .. }
                    | BatchError::TooLarge { .. })
            ), "{:?}", result),
            // partitionLeaderEpoch: outside the CRC, any value is valid.
            12..=15 => prop_assert!(result.is_ok(), "{:?}", result),
            16 => prop_assert_eq!(&result, &Err(BatchError::BadMagic(2 ^ flip as i8))),
            // The stored CRC and everything it covers.
            _ => prop_assert!(matches!(result, Err(BatchError::CrcMismatch { .. })), "{:?}", result),
        }
        prop_assert_eq!(validate_batch_header_and_crc(&batch, &limits).is_ok(), result.is_ok());
        fuzz_batch(&batch);
    }
}
