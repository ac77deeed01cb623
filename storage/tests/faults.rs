//! Injected I/O failures: disk full on writes and on segment creation, failed fdatasyncs, and a
//! failed group commit. After each, the log must be consistent (offsets not advanced for failed
//! batches, memory matching disk), readable, and appendable once the fault clears; a reopen must
//! find exactly the acknowledged batches.

mod common;

use std::rc::Rc;

use common::{batch, open_faulty, read_all, run, small_config, stored};
use weir_storage::{AppendError, FlushPolicy, IoOperation, LogConfig, PartitionLog};

#[test]
fn disk_full_fails_the_append_and_the_log_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = small_config(FlushPolicy::Always);
        let (log, plan) = open_faulty(&path, config.clone()).await;
        let mut expected = Vec::new();
        for tag in 0..5u8 {
            let appended = batch(tag, 2, 300, 1);
            let info = log.append(appended.clone()).await.expect("append");
            expected.push(stored(&appended, info.base_offset));
        }
        plan.set_disk_full(true);
        let end = log.log_end_offset();
        for tag in 10..13u8 {
            let failed = log.append(batch(tag, 2, 300, 1)).await;
            match failed {
                Err(AppendError::DiskFull(failure)) => {
                    assert_eq!(failure.operation, IoOperation::Write);
                    assert!(failure.path.ends_with("00000000000000000000.log"));
                    assert!(failure.to_string().contains("00000000000000000000.log"));
                }
                other => panic!("expected DiskFull, got {other:?}"),
            }
            assert_eq!(log.log_end_offset(), end, "failed batch got no offset");
            assert_eq!(log.stable_end_offset(), end);
        }
        assert_eq!(
            read_all(&log, 0).await,
            expected,
            "still readable while full"
        );
        plan.set_disk_full(false);
        let appended = batch(20, 2, 300, 1);
        let info = log
            .append(appended.clone())
            .await
            .expect("append after space returns");
        assert_eq!(info.base_offset, end);
        expected.push(stored(&appended, end));
        assert_eq!(read_all(&log, 0).await, expected);
        log.close().await.expect("close");
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        assert_eq!(read_all(&log, 0).await, expected, "disk matches memory");
    });
}

#[test]
fn disk_full_while_creating_a_segment_leaves_the_log_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = small_config(FlushPolicy::Always);
        let (log, plan) = open_faulty(&path, config.clone()).await;
        let mut expected = Vec::new();
        // Fill the first segment until the next batch does not fit.
        let batch_bytes = batch(1, 1, 1000, 1).len() as u64;
        while log.stats().size_bytes + batch_bytes <= config.segment_bytes_max {
            let appended = batch(1, 1, 1000, 1);
            let info = log.append(appended.clone()).await.expect("append");
            expected.push(stored(&appended, info.base_offset));
        }
        let end = log.log_end_offset();
        assert_eq!(log.stats().segment_count, 1);
        // Sealing the full segment succeeds; preallocating its successor does not.
        plan.set_preallocations_fail(true);
        for _ in 0..3 {
            match log.append(batch(2, 1, 1000, 1)).await {
                Err(AppendError::DiskFull(failure)) => {
                    assert_eq!(failure.operation, IoOperation::Preallocate);
                    assert!(failure.path.ends_with(format!("{end:020}.log")));
                }
                other => panic!("expected DiskFull, got {other:?}"),
            }
            assert_eq!(log.log_end_offset(), end);
        }
        assert_eq!(log.stats().segment_count, 1, "only the sealed segment");
        assert_eq!(read_all(&log, 0).await, expected);
        plan.set_preallocations_fail(false);
        for tag in 3..6u8 {
            let appended = batch(tag, 1, 1000, 1);
            let info = log.append(appended.clone()).await.expect("append");
            expected.push(stored(&appended, info.base_offset));
        }
        assert!(log.stats().segment_count >= 2);
        log.close().await.expect("close");
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        assert_eq!(read_all(&log, 0).await, expected);
    });
}

#[test]
fn failed_fdatasync_fails_the_append_and_hides_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = small_config(FlushPolicy::Always);
        let (log, plan) = open_faulty(&path, config.clone()).await;
        let first = batch(1, 3, 700, 1);
        log.append(first.clone()).await.expect("append");
        plan.fail_next_syncs(1);
        match log.append(batch(2, 5, 900, 1)).await {
            Err(AppendError::Io(failure)) => assert_eq!(failure.operation, IoOperation::Sync),
            other => panic!("expected a sync failure, got {other:?}"),
        }
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(read_all(&log, 0).await, vec![stored(&first, 0)]);
        // A shorter batch now takes the failed one's place in the file.
        let second = batch(3, 1, 10, 1);
        assert_eq!(
            log.append(second.clone())
                .await
                .expect("append")
                .base_offset,
            3
        );
        let expected = vec![stored(&first, 0), stored(&second, 3)];
        assert_eq!(read_all(&log, 0).await, expected);
        log.close().await.expect("close");
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        assert_eq!(
            read_all(&log, 0).await,
            expected,
            "the failed batch's bytes are gone"
        );
        assert_eq!(log.log_end_offset(), 4);
    });
}

#[test]
fn a_failed_group_commit_fails_every_append_it_covered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            tail_cache_bytes_max: 1 << 20,
            ..small_config(FlushPolicy::Always)
        };
        let (log, plan) = open_faulty(&path, config.clone()).await;
        let log = Rc::new(log);
        let first = batch(0, 1, 100, 1);
        log.append(first.clone()).await.expect("append");
        plan.fail_nth_write(1, libc::ENOSPC);
        let tasks: Vec<_> = (1..=8u8)
            .map(|tag| {
                let log = log.clone();
                glommio::spawn_local(async move { log.append(batch(tag, 1, 100, 1)).await })
            })
            .collect();
        let mut failures = 0;
        let mut successes = Vec::new();
        for task in tasks {
            match task.await {
                Ok(info) => successes.push(info.base_offset),
                Err(AppendError::DiskFull(_)) => failures += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(failures >= 1, "the failed write failed its appends");
        // Whatever succeeded afterwards continues right after the last durable batch.
        successes.sort();
        assert_eq!(successes, (1..=successes.len() as i64).collect::<Vec<_>>());
        assert_eq!(log.log_end_offset(), 1 + successes.len() as i64);
        assert_eq!(read_all(&log, 0).await.len(), 1 + successes.len());
        let log = Rc::try_unwrap(log).expect("tasks done");
        log.close().await.expect("close");
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        assert_eq!(log.log_end_offset(), 1 + successes.len() as i64);
    });
}

#[test]
fn buffered_policies_keep_acknowledged_batches_through_a_full_disk() {
    for policy in [
        FlushPolicy::Interval { interval_ms: 1000 },
        FlushPolicy::Never,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        run(move || async move {
            let config = LogConfig {
                write_buffer_bytes_max: 4 << 10,
                ..small_config(policy)
            };
            let (log, plan) = open_faulty(&path, config.clone()).await;
            let mut expected = Vec::new();
            for tag in 0..3u8 {
                let appended = batch(tag, 1, 1000, 1);
                let info = log.append(appended.clone()).await.expect("append");
                expected.push(stored(&appended, info.base_offset));
            }
            plan.set_disk_full(true);
            // The buffer is full: the next append must write it out, which fails.
            let end = log.log_end_offset();
            let failed = log.append(batch(9, 1, 3000, 1)).await;
            assert!(
                matches!(failed, Err(AppendError::DiskFull(_))),
                "{failed:?}"
            );
            assert_eq!(log.log_end_offset(), end);
            assert!(matches!(log.flush().await, Err(AppendError::DiskFull(_))));
            // Acknowledged batches stay readable from memory.
            assert_eq!(read_all(&log, 0).await, expected);
            plan.set_disk_full(false);
            log.flush().await.expect("flush once space returns");
            let appended = batch(10, 1, 1000, 1);
            let info = log.append(appended.clone()).await.expect("append");
            expected.push(stored(&appended, info.base_offset));
            log.close().await.expect("close");
            let log = PartitionLog::open(&path, config).await.expect("reopen");
            assert_eq!(read_all(&log, 0).await, expected, "{policy}");
        });
    }
}

#[test]
fn batches_of_a_failed_cycle_cannot_come_back_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = small_config(FlushPolicy::Always);
        let (log, plan) = open_faulty(&path, config.clone()).await;
        let log = Rc::new(log);
        let first = batch(1, 2, 500, 1);
        log.append(first.clone()).await.expect("append");
        // The refused batch, and the one that replaces it, end exactly on a 4 KiB boundary, so
        // the zero padding of the replacing write does not happen to erase what follows.
        let value_bytes = (1..4000)
            .find(|value_bytes| (first.len() + batch(2, 2, *value_bytes, 1).len()) & 4095 == 0)
            .expect("a size that ends on a block boundary");
        // Two appends share a cycle whose fdatasync fails: both are refused, but their bytes
        // reached the file.
        plan.fail_next_syncs(1);
        let tasks: Vec<_> = [batch(2, 2, value_bytes, 1), batch(3, 2, 500, 1)]
            .into_iter()
            .map(|appended| {
                let log = log.clone();
                glommio::spawn_local(async move { log.append(appended).await })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await, Err(AppendError::Io(_))), "refused");
        }
        assert_eq!(log.log_end_offset(), 2);
        // Same size and record count as the first refused batch: it lands exactly where that
        // one was, and the second refused batch would follow it in sequence.
        let replacement = batch(4, 2, value_bytes, 1);
        assert_eq!(
            log.append(replacement.clone())
                .await
                .expect("append")
                .base_offset,
            2
        );
        // Crash: drop the log without closing it.
        drop(log);
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        let recovered = read_all(&log, 0).await;
        assert!(
            recovered == vec![stored(&first, 0), stored(&replacement, 2)],
            "the refused batch stays gone: recovered {} batches, ending at offset {}",
            recovered.len(),
            log.log_end_offset()
        );
        assert_eq!(log.log_end_offset(), 4);
    });
}
