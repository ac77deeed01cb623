//! Appending and reading: offsets, whole-batch reads, byte budgets, ranges, rolling by size,
//! reopening, and the stable end under each flush policy.

mod common;

use common::{base_offset, batch, read_all, run, small_config, stored};
use weir_proto::batch::{BatchLimits, ValidatedBatch};
use weir_storage::{AppendError, FlushPolicy, LogConfig, PartitionLog, ReadError};

#[test]
fn appends_get_consecutive_offsets_and_read_back_byte_for_byte() {
    for policy in [
        FlushPolicy::Always,
        FlushPolicy::Interval { interval_ms: 50 },
        FlushPolicy::Never,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        run(move || async move {
            let log = PartitionLog::open(&path, small_config(policy))
                .await
                .expect("open");
            let mut expected = Vec::new();
            for tag in 0..40u8 {
                let records = usize::from(tag % 5) + 1;
                let appended = batch(tag, records, 200, 1_000 + i64::from(tag));
                let info = log.append(appended.clone()).await.expect("append");
                assert_eq!(info.base_offset, log.log_end_offset() - records as i64);
                assert_eq!(info.last_offset, info.base_offset + records as i64 - 1);
                expected.push(stored(&appended, info.base_offset));
            }
            assert_eq!(log.stable_end_offset(), log.log_end_offset(), "{policy}");
            assert_eq!(read_all(&log, 0).await, expected, "{policy}: before reopen");
            assert!(log.stats().segment_count > 1, "small segments rolled");
            let end = log.log_end_offset();
            log.close().await.expect("close");

            let log = PartitionLog::open(&path, small_config(policy))
                .await
                .expect("reopen");
            assert_eq!(log.log_end_offset(), end);
            assert_eq!(read_all(&log, 0).await, expected, "{policy}: after reopen");
            let info = log.append(batch(99, 1, 10, 5_000)).await.expect("append");
            assert_eq!(info.base_offset, end);
        });
    }
}

#[test]
fn read_starts_at_the_batch_containing_the_offset_and_respects_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, small_config(FlushPolicy::Always))
            .await
            .expect("open");
        for tag in 0..10u8 {
            log.append(batch(tag, 10, 50, 1_000)).await.expect("append");
        }
        // Offset 25 is inside the batch 20..=29.
        let read = log.read(25, 1).await.expect("read");
        assert_eq!(read.batches.len(), 1, "at least one whole batch");
        assert_eq!(base_offset(&read.batches[0]), 20);
        let one = read.batches[0].len() as u32;
        let read = log.read(25, 3 * one).await.expect("read");
        assert_eq!(
            read.batches
                .iter()
                .map(|b| base_offset(b))
                .collect::<Vec<_>>(),
            vec![20, 30, 40]
        );
        assert_eq!(read.stable_end_offset, 100);
        assert!(log
            .read(100, 1000)
            .await
            .expect("read at end")
            .batches
            .is_empty());
        for offset in [-1, 101] {
            assert!(matches!(
                log.read(offset, 1000).await,
                Err(ReadError::OffsetOutOfRange { .. })
            ));
        }
    });
}

#[test]
fn oversized_and_invalid_batches_are_rejected_without_moving_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut config = small_config(FlushPolicy::Always);
        config.batch_limits.batch_bytes_max = 1024;
        let log = PartitionLog::open(&path, config).await.expect("open");
        log.append(batch(1, 1, 10, 1)).await.expect("append");
        let too_big = log.append(batch(2, 4, 400, 1)).await;
        assert!(
            matches!(too_big, Err(AppendError::InvalidBatch(_))),
            "{too_big:?}"
        );
        let mut corrupt = batch(3, 1, 10, 1).to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let corrupt = log.append(corrupt.into()).await;
        assert!(
            matches!(corrupt, Err(AppendError::InvalidBatch(_))),
            "{corrupt:?}"
        );
        assert_eq!(log.log_end_offset(), 1);
        assert_eq!(
            log.append(batch(4, 1, 10, 1))
                .await
                .expect("append")
                .base_offset,
            1
        );
    });
}

#[test]
fn a_batch_checked_under_looser_limits_is_checked_again_under_the_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut config = small_config(FlushPolicy::Always);
        config.batch_limits.batch_bytes_max = 1024;
        let log = PartitionLog::open(&path, config).await.expect("open");
        let loose = BatchLimits::default();
        let small = ValidatedBatch::new(batch(1, 1, 10, 1), &loose).expect("valid");
        assert_eq!(
            log.append_validated(small)
                .await
                .expect("append")
                .base_offset,
            0
        );
        let too_big = ValidatedBatch::new(batch(2, 4, 400, 1), &loose).expect("valid");
        let refused = log.append_validated(too_big).await;
        assert!(
            matches!(refused, Err(AppendError::InvalidBatch(_))),
            "{refused:?}"
        );
        assert_eq!(log.log_end_offset(), 1);
    });
}

#[test]
fn segments_are_named_by_base_offset_and_rolled_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let names = run(move || async move {
        let log = PartitionLog::open(&path, small_config(FlushPolicy::Always))
            .await
            .expect("open");
        let mut bases = vec![0];
        let mut segment_size = 0u64;
        for tag in 0..30u8 {
            let appended = batch(tag, 2, 1000, 1);
            let size = appended.len() as u64;
            if segment_size + size > small_config(FlushPolicy::Always).segment_bytes_max {
                bases.push(log.log_end_offset());
                segment_size = 0;
            }
            segment_size += size;
            log.append(appended).await.expect("append");
        }
        log.close().await.expect("close");
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .into_string()
                    .expect("utf8")
            })
            .collect();
        names.sort();
        let mut expected: Vec<String> = bases
            .iter()
            .flat_map(|base| {
                ["index", "log", "timeindex"].map(|extension| format!("{base:020}.{extension}"))
            })
            .collect();
        expected.sort();
        (names, expected)
    });
    assert_eq!(names.0, names.1);
}

#[test]
fn sealed_segments_are_cut_to_their_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = small_config(FlushPolicy::Always);
        let log = PartitionLog::open(&path, config.clone())
            .await
            .expect("open");
        let mut first_segment_bytes = 0u64;
        while log.stats().segment_count == 1 {
            let appended = batch(1, 2, 1000, 1);
            let size = appended.len() as u64;
            log.append(appended).await.expect("append");
            if log.stats().segment_count == 1 {
                first_segment_bytes += size;
            }
        }
        let sealed = std::fs::metadata(path.join(format!("{:020}.log", 0))).expect("stat");
        assert_eq!(sealed.len(), first_segment_bytes);
        let active = log.log_end_offset() - 2;
        let active = std::fs::metadata(path.join(format!("{active:020}.log"))).expect("stat");
        assert_eq!(
            active.len(),
            config.segment_bytes_max,
            "active segment preallocated"
        );
    });
}

#[test]
fn config_is_validated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            index_interval_bytes: 0,
            ..LogConfig::default()
        };
        assert!(matches!(
            PartitionLog::open(&path, config).await,
            Err(weir_storage::OpenError::Config(_))
        ));
    });
}

#[test]
fn delete_removes_every_file_and_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("topic-3");
    let check = path.clone();
    run(move || async move {
        let log = PartitionLog::open(&path, small_config(FlushPolicy::Always))
            .await
            .expect("open");
        for tag in 0..40u8 {
            log.append(batch(tag, 1, 900, 1)).await.expect("append");
        }
        assert!(log.stats().segment_count > 1);
        // Load a sealed segment's index so an open sealed file is part of the teardown.
        log.read(0, 1).await.expect("read");
        log.delete().await.expect("delete");
    });
    assert!(!check.exists(), "partition directory removed");
}
