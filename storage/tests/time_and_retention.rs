//! Time-driven behaviour with an injected clock: rolling by age, retention by age and by bytes,
//! and offset lookups by timestamp.

mod common;

use common::{base_offset, batch, read_all, run, small_config, stored};
use weir_storage::{FlushPolicy, LogConfig, PartitionLog, ReadError};

#[test]
fn roll_if_due_rolls_a_segment_that_has_held_data_long_enough() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            segment_age_ms_max: Some(1_000),
            ..small_config(FlushPolicy::Always)
        };
        let log = PartitionLog::open(&path, config).await.expect("open");
        assert!(
            !log.roll_if_due(5_000).await.expect("roll"),
            "empty segment"
        );
        // The batch's own timestamp is far in the past: it does not age the segment.
        log.append(batch(1, 1, 10, 1)).await.expect("append");
        assert!(
            !log.roll_if_due(10_000).await.expect("roll"),
            "first seen with data now"
        );
        assert!(
            !log.roll_if_due(10_999).await.expect("roll"),
            "young segment"
        );
        assert_eq!(log.stats().segment_count, 1);
        assert_eq!(log.active_segment_base_offset(), 0);
        assert!(log.roll_if_due(11_000).await.expect("roll"), "old segment");
        assert_eq!(
            log.active_segment_base_offset(),
            0,
            "sealed, nothing new yet: still the last segment"
        );
        assert_eq!(
            log.stats().segment_count,
            1,
            "sealed; the next append creates one"
        );
        assert!(
            !log.roll_if_due(20_000).await.expect("roll"),
            "nothing active"
        );
        let info = log.append(batch(2, 1, 10, 1)).await.expect("append");
        assert_eq!(info.base_offset, 1);
        assert_eq!(log.stats().segment_count, 2);
        assert_eq!(log.active_segment_base_offset(), 1, "the roll shows");
        assert!(path.join(format!("{:020}.log", 1)).exists());
        assert!(
            !log.roll_if_due(20_500).await.expect("roll"),
            "new segment first seen"
        );
        assert!(log.roll_if_due(21_500).await.expect("roll"));
        assert_eq!(read_all(&log, 0).await.len(), 2);
    });
}

#[test]
fn retention_by_age_deletes_whole_old_segments_and_never_the_active_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            retention_age_ms_max: Some(10_000),
            ..small_config(FlushPolicy::Always)
        };
        let log = PartitionLog::open(&path, config.clone())
            .await
            .expect("open");
        // Segments of ~16 KiB: batch i has timestamp 1000 * i.
        let mut expected = Vec::new();
        for index in 0..60i64 {
            let appended = batch(index as u8, 1, 900, 1_000 * index);
            let info = log.append(appended.clone()).await.expect("append");
            expected.push((1_000 * index, stored(&appended, info.base_offset)));
        }
        let segments_before = log.stats().segment_count;
        assert!(segments_before >= 4);
        // At now = 40_000 a segment goes when its newest batch is older than 30_000.
        let report = log.enforce_retention(40_000).await.expect("retention");
        assert!(report.segments_deleted >= 1);
        let start = log.log_start_offset();
        assert_eq!(report.log_start_offset, start);
        let kept: Vec<_> = expected
            .iter()
            .filter(|(_, b)| base_offset(b) >= start)
            .collect();
        let deleted: Vec<_> = expected
            .iter()
            .filter(|(_, b)| base_offset(b) < start)
            .collect();
        assert!(
            deleted.iter().all(|(time, _)| *time < 30_000),
            "only old data deleted"
        );
        // The first kept segment has a batch newer than the cutoff, or it would be gone.
        assert!(kept.iter().any(|(time, _)| *time >= 30_000));
        assert!(matches!(
            log.read(start - 1, 100).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        let read: Vec<_> = kept.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(read_all(&log, start).await, read);
        assert!(!path.join(format!("{:020}.log", 0)).exists());
        assert!(!path.join(format!("{:020}.index", 0)).exists());

        // Everything is old now, but the active segment stays.
        let report = log
            .enforce_retention(1_000_000_000)
            .await
            .expect("retention");
        assert_eq!(log.stats().segment_count, 1);
        assert!(report.segments_deleted >= 1);
        let last = log.log_start_offset();
        let tail: Vec<_> = expected
            .iter()
            .filter(|(_, b)| base_offset(b) >= last)
            .map(|(_, b)| b.clone())
            .collect();
        assert!(!tail.is_empty());
        assert_eq!(read_all(&log, last).await, tail);
        log.close().await.expect("close");
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        assert_eq!(log.log_start_offset(), last, "start survives reopen");
    });
}

#[test]
fn retention_by_bytes_keeps_the_log_under_its_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            retention_bytes_max: Some(40 << 10),
            ..small_config(FlushPolicy::Interval { interval_ms: 10 })
        };
        let log = PartitionLog::open(&path, config).await.expect("open");
        for index in 0..120u8 {
            log.append(batch(index, 1, 900, 1)).await.expect("append");
        }
        let before = log.stats().size_bytes;
        assert!(before > 40 << 10);
        let report = log.enforce_retention(0).await.expect("retention");
        let after = log.stats().size_bytes;
        assert_eq!(before - after, report.bytes_deleted);
        assert!(after <= 40 << 10, "{after} bytes left");
        assert!(after + (16 << 10) > 40 << 10, "deleted no more than needed");
        let start = log.log_start_offset();
        assert_eq!(
            read_all(&log, start).await.len() as i64,
            log.log_end_offset() - start
        );
    });
}

#[test]
fn offset_for_timestamp_finds_the_first_batch_at_or_after_the_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, small_config(FlushPolicy::Always))
            .await
            .expect("open");
        // Timestamps rise by 10 per batch with a dip, so max timestamps are not sorted.
        let mut batches = Vec::new();
        for index in 0..80i64 {
            let timestamp = if index == 40 { 5 } else { 100 + 10 * index };
            let info = log
                .append(batch(index as u8, 2, 400, timestamp))
                .await
                .expect("append");
            batches.push((info.base_offset, timestamp));
        }
        assert!(log.stats().segment_count >= 3);
        for probe in [0, 5, 100, 101, 105, 110, 495, 500, 505, 900, 1_000, 1_090] {
            let expected = batches
                .iter()
                .find(|(_, timestamp)| *timestamp >= probe)
                .map(|(offset, _)| *offset);
            assert_eq!(
                log.offset_for_timestamp(probe).await.expect("lookup"),
                expected,
                "timestamp {probe}"
            );
        }
        assert_eq!(log.offset_for_timestamp(1_091).await.expect("lookup"), None);
    });
}
