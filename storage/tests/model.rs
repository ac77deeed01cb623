//! Property test against a reference model: random sequences of appends, reads, age rolls,
//! retention, flushes and close-and-reopen on a log with tiny segments, checked against a
//! plain list of the batches with their offsets.

mod common;

use bytes::Bytes;
use common::{base_offset, batch, run, stored};
use proptest::prelude::*;
use weir_proto::batch::BatchHeader;
use weir_storage::{FlushPolicy, LogConfig, PartitionLog, ReadError};

#[derive(Debug, Clone)]
enum Operation {
    Append {
        records: u8,
        value_bytes: u16,
        time_step_ms: u16,
    },
    Read {
        selector: u16,
        max_bytes: u16,
    },
    RollIfDue {
        advance_ms: u16,
    },
    Retention {
        advance_ms: u16,
    },
    Flush,
    Reopen,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => (1u8..6, 1u16..1500, 0u16..500).prop_map(|(records, value_bytes, time_step_ms)| {
            Operation::Append { records, value_bytes, time_step_ms }
        }),
        4 => (any::<u16>(), 1u16..6000).prop_map(|(selector, max_bytes)| Operation::Read { selector, max_bytes }),
        1 => (0u16..3000).prop_map(|advance_ms| Operation::RollIfDue { advance_ms }),
        1 => (0u16..3000).prop_map(|advance_ms| Operation::Retention { advance_ms }),
        1 => Just(Operation::Flush),
        1 => Just(Operation::Reopen),
    ]
}

fn policy() -> impl Strategy<Value = FlushPolicy> {
    prop_oneof![
        Just(FlushPolicy::Always),
        Just(FlushPolicy::Interval { interval_ms: 1 }),
        Just(FlushPolicy::Never),
    ]
}

/// One stored batch in the model.
#[derive(Debug, Clone)]
struct ModelBatch {
    base_offset: i64,
    next_offset: i64,
    bytes: Bytes,
}

fn next_offset(batch: &[u8]) -> i64 {
    let header = BatchHeader::view(batch).expect("header");
    header.base_offset.get() + i64::from(header.last_offset_delta.get()) + 1
}

fn config(policy: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes_max: 8 << 10,
        segment_age_ms_max: Some(2_000),
        retention_bytes_max: Some(24 << 10),
        retention_age_ms_max: Some(20_000),
        index_interval_bytes: 1024,
        flush: policy,
        batch_limits: weir_proto::batch::BatchLimits {
            batch_bytes_max: 8 << 10,
            ..Default::default()
        },
        tail_cache_bytes_max: 3 << 10,
        write_buffer_bytes_max: 4 << 10,
        // Single-block writes, so a few batches already spread over several writes in flight.
        writes_in_flight_max: 3,
        write_chunk_bytes_max: 512,
        read_chunk_bytes_min: 2048,
        scan_chunk_bytes: 4096,
        preallocate: true,
    }
}

async fn check(log: &PartitionLog, model: &[ModelBatch], start: i64, end: i64) {
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(
        log.stable_end_offset(),
        end,
        "every acknowledged batch is readable"
    );
    let first = model.first().map_or(end, |batch| batch.base_offset);
    assert_eq!(first.max(start), start, "model and log agree on the start");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_the_reference_model(
        policy in policy(),
        operations in proptest::collection::vec(operation(), 1..60),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        run(move || async move {
            let mut log = PartitionLog::open(&path, config(policy)).await.expect("open");
            let mut model: Vec<ModelBatch> = Vec::new();
            let mut start = 0i64;
            let mut end = 0i64;
            let mut now_ms = 100_000i64;
            let mut tag = 0u8;
            for operation in operations {
                match operation {
                    Operation::Append { records, value_bytes, time_step_ms } => {
                        now_ms += i64::from(time_step_ms);
                        tag = tag.wrapping_add(1);
                        let appended = batch(tag, usize::from(records), usize::from(value_bytes), now_ms);
                        let info = log.append(appended.clone()).await.expect("append");
                        assert_eq!(info.base_offset, end);
                        let bytes = stored(&appended, end);
                        end = next_offset(&bytes);
                        assert_eq!(info.last_offset, end - 1);
                        model.push(ModelBatch { base_offset: info.base_offset, next_offset: end, bytes });
                    }
                    Operation::Read { selector, max_bytes } => {
                        // Offsets from below the start to past the end.
                        let span = (end - start + 3).max(1);
                        let offset = start - 1 + i64::from(selector) % span;
                        let result = log.read(offset, u32::from(max_bytes)).await;
                        if offset < start || offset > end {
                            assert!(matches!(result, Err(ReadError::OffsetOutOfRange { .. })), "{offset}: {result:?}");
                            continue;
                        }
                        let read = result.expect("read");
                        assert_eq!(read.log_start_offset, start);
                        assert_eq!(read.stable_end_offset, end);
                        if offset == end {
                            assert!(read.batches.is_empty());
                            continue;
                        }
                        let first = model
                            .iter()
                            .position(|batch| batch.next_offset > offset)
                            .expect("a batch holds the offset");
                        assert!(!read.batches.is_empty(), "at least one batch");
                        let total: usize = read.batches.iter().map(|b| b.len()).sum();
                        assert!(read.batches.len() == 1 || total <= usize::from(max_bytes));
                        for (index, served) in read.batches.iter().enumerate() {
                            assert_eq!(served, &model[first + index].bytes, "batch {index} of read at {offset}");
                        }
                    }
                    Operation::RollIfDue { advance_ms } => {
                        now_ms += i64::from(advance_ms);
                        log.roll_if_due(now_ms).await.expect("roll");
                    }
                    Operation::Retention { advance_ms } => {
                        now_ms += i64::from(advance_ms);
                        let size_before = log.stats().size_bytes;
                        let report = log.enforce_retention(now_ms).await.expect("retention");
                        let new_start = log.log_start_offset();
                        assert_eq!(report.log_start_offset, new_start);
                        assert!(new_start >= start);
                        assert_eq!(log.stats().size_bytes, size_before - report.bytes_deleted);
                        let deleted = model.iter().take_while(|batch| batch.base_offset < new_start).count();
                        if new_start < end {
                            assert_eq!(model[deleted].base_offset, new_start, "start is a batch boundary");
                        }
                        // Nothing young is deleted unless the log is over its size limit.
                        if size_before <= 24 << 10 {
                            for batch in &model[..deleted] {
                                let header = BatchHeader::view(&batch.bytes).expect("header");
                                assert!(now_ms - header.max_timestamp.get() > 20_000);
                            }
                        }
                        model.drain(..deleted);
                        start = new_start;
                    }
                    Operation::Flush => log.flush().await.expect("flush"),
                    Operation::Reopen => {
                        log.close().await.expect("close");
                        log = PartitionLog::open(&path, config(policy)).await.expect("reopen");
                    }
                }
                check(&log, &model, start, end).await;
            }
            // Everything the model holds reads back, in order.
            let mut offset = start;
            let mut served = Vec::new();
            while offset < end {
                let read = log.read(offset, 1 << 16).await.expect("read");
                offset = next_offset(read.batches.last().expect("batch"));
                served.extend(read.batches);
            }
            let expected: Vec<Bytes> = model.iter().map(|batch| batch.bytes.clone()).collect();
            assert_eq!(served.len(), expected.len());
            assert!(served.iter().zip(&expected).all(|(a, b)| a == b));
            if let Some(first) = served.first() {
                assert_eq!(base_offset(first), start);
            }
        });
    }
}
