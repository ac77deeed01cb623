//! Group commit, the tail cache's no-I/O claim, and reads of buffered data under each policy.

mod common;

use std::rc::Rc;

use common::{batch, open_faulty, read_all, run, small_config, stored};
use weir_storage::{FlushPolicy, LogConfig, PartitionLog};

#[test]
fn concurrent_appends_share_fdatasyncs() {
    const APPENDS: usize = 64;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            flush: FlushPolicy::Always,
            ..LogConfig::default()
        };
        let log = Rc::new(PartitionLog::open(&path, config).await.expect("open"));
        let fsyncs_before = log.stats().fsync_count;
        let tasks: Vec<_> = (0..APPENDS)
            .map(|tag| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let appended = batch(tag as u8, 2, 100, 1);
                    let info = log.append(appended.clone()).await.expect("append");
                    // Acknowledged means durable: visible to readers.
                    assert!(log.stable_end_offset() > info.last_offset);
                    (info.base_offset, appended)
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await);
        }
        let fsyncs = log.stats().fsync_count - fsyncs_before;
        assert!(
            fsyncs * 8 <= APPENDS as u64,
            "{APPENDS} concurrent appends took {fsyncs} fdatasyncs"
        );
        results.sort_by_key(|(offset, _)| *offset);
        let offsets: Vec<i64> = results.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(
            offsets,
            (0..APPENDS as i64).map(|i| i * 2).collect::<Vec<_>>()
        );
        let expected: Vec<_> = results
            .iter()
            .map(|(offset, appended)| stored(appended, *offset))
            .collect();
        assert_eq!(read_all(&log, 0).await, expected);
    });
}

#[test]
fn sustained_concurrent_appends_through_rolls_share_fdatasyncs_fairly() {
    const TASKS: usize = 16;
    const APPENDS_PER_TASK: usize = 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            // Small segments: rolls (and the writer queue they wait in) are part of the load.
            segment_bytes_max: 64 << 10,
            ..small_config(FlushPolicy::Always)
        };
        let log = Rc::new(PartitionLog::open(&path, config).await.expect("open"));
        let fsyncs_before = log.stats().fsync_count;
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let mut offsets = Vec::new();
                    for sequence in 0..APPENDS_PER_TASK {
                        let appended = batch(task as u8, sequence % 7 + 1, 300, 1);
                        offsets.push(log.append(appended).await.expect("append").base_offset);
                    }
                    offsets
                })
            })
            .collect();
        let mut offsets = Vec::new();
        for task in tasks {
            offsets.extend(task.await);
        }
        let stats = log.stats();
        let fsyncs = stats.fsync_count - fsyncs_before;
        let appends = (TASKS * APPENDS_PER_TASK) as u64;
        assert!(stats.segment_count > 3, "the load rolled segments");
        assert!(
            fsyncs * 4 <= appends,
            "{appends} appends from {TASKS} looping tasks took {fsyncs} fdatasyncs"
        );
        offsets.sort();
        offsets.dedup();
        assert_eq!(offsets.len() as u64, appends, "distinct offsets");
    });
}

#[test]
fn tail_reads_are_served_without_disk_io() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            tail_cache_bytes_max: 8 << 10,
            ..small_config(FlushPolicy::Always)
        };
        let (log, plan) = open_faulty(&path, config).await;
        let mut expected = Vec::new();
        for tag in 0..40u8 {
            let appended = batch(tag, 1, 500, 1);
            let info = log.append(appended.clone()).await.expect("append");
            expected.push(stored(&appended, info.base_offset));
        }
        let reads_before = plan.counts().reads;
        plan.set_fail_reads(true);
        let tail = log.read(39, 1 << 20).await.expect("tail read from memory");
        assert_eq!(tail.batches, vec![expected[39].clone()]);
        let recent = log
            .read(30, 1 << 20)
            .await
            .expect("recent read from memory");
        assert_eq!(recent.batches, expected[30..].to_vec());
        assert_eq!(
            plan.counts().reads,
            reads_before,
            "no disk read for the tail"
        );
        let stats = log.stats();
        assert_eq!(stats.tail_cache_hits, 2);
        assert_eq!(stats.tail_cache_misses, 0);
        assert!(stats.tail_cache_bytes <= 8 << 10);

        // The oldest batches were evicted: reading them goes to disk.
        assert!(
            log.read(0, 1).await.is_err(),
            "reads are failing on purpose"
        );
        plan.set_fail_reads(false);
        let old = log.read(0, 1).await.expect("old read from disk");
        assert_eq!(old.batches, vec![expected[0].clone()]);
        assert!(plan.counts().reads > reads_before);
        assert_eq!(log.stats().tail_cache_misses, 2);
    });
}

#[test]
fn buffered_batches_are_read_from_memory_and_written_when_the_buffer_fills() {
    for policy in [
        FlushPolicy::Interval {
            interval_ms: 60_000,
        },
        FlushPolicy::Never,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        run(move || async move {
            let config = LogConfig {
                write_buffer_bytes_max: 4 << 10,
                ..small_config(policy)
            };
            let (log, plan) = open_faulty(&path, config).await;
            let writes_before = plan.counts().writes;
            let syncs_before = plan.counts().syncs;
            // With every write held back, the append is still acknowledged: from the buffer.
            plan.set_hold_writes(true);
            let first = batch(1, 1, 1000, 1);
            log.append(first.clone()).await.expect("append");
            assert_eq!(
                plan.counts().bytes_written,
                0,
                "acknowledged from the buffer"
            );
            // Not yet in the file, yet readable (from memory, not from stale disk bytes), even
            // with no tail cache.
            plan.set_fail_reads(true);
            assert_eq!(
                log.read(0, 1 << 20).await.expect("read").batches,
                vec![stored(&first, 0)]
            );
            plan.set_fail_reads(false);
            plan.set_hold_writes(false);
            let mut expected = vec![stored(&first, 0)];
            for tag in 2..10u8 {
                let appended = batch(tag, 1, 1000, 1);
                let info = log.append(appended.clone()).await.expect("append");
                expected.push(stored(&appended, info.base_offset));
            }
            assert!(
                plan.counts().writes > writes_before,
                "a full buffer is written out"
            );
            assert_eq!(plan.counts().syncs, syncs_before, "written, not synced");
            assert!(log.stats().write_buffer_bytes <= 4 << 10);
            assert_eq!(read_all(&log, 0).await, expected, "{policy}");
            log.flush().await.expect("flush");
            assert_eq!(plan.counts().syncs, syncs_before + 1);
            assert_eq!(log.stats().write_buffer_bytes, 0);
            log.close().await.expect("close");
            let log = PartitionLog::open(&path, small_config(policy))
                .await
                .expect("reopen");
            assert_eq!(read_all(&log, 0).await, expected, "{policy} after reopen");
        });
    }
}

#[test]
fn interval_policy_flushes_when_the_owners_clock_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = small_config(FlushPolicy::Interval { interval_ms: 100 });
        let (log, plan) = open_faulty(&path, config).await;
        let syncs = || plan.counts().syncs;
        let start = syncs();
        assert!(
            !log.flush_if_due(1_000).await.expect("tick"),
            "nothing to flush"
        );
        log.append(batch(1, 1, 10, 1)).await.expect("append");
        assert!(
            log.flush_if_due(1_000).await.expect("tick"),
            "first tick flushes"
        );
        assert_eq!(syncs(), start + 1);
        log.append(batch(2, 1, 10, 1)).await.expect("append");
        assert!(
            !log.flush_if_due(1_050).await.expect("tick"),
            "interval not elapsed"
        );
        assert_eq!(syncs(), start + 1);
        assert!(
            log.flush_if_due(1_100).await.expect("tick"),
            "interval elapsed"
        );
        assert_eq!(syncs(), start + 2);
        assert!(
            !log.flush_if_due(5_000).await.expect("tick"),
            "nothing new to flush"
        );
    });
}

#[test]
fn interval_flusher_task_makes_buffered_data_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = small_config(FlushPolicy::Interval { interval_ms: 5 });
        let (log, plan) = open_faulty(&path, config).await;
        let log = Rc::new(log);
        let flusher = glommio::spawn_local(weir_storage::run_interval_flusher(log.clone()));
        let syncs_before = plan.counts().syncs;
        log.append(batch(1, 1, 10, 1)).await.expect("append");
        assert_eq!(
            plan.counts().syncs,
            syncs_before,
            "acknowledged before any sync"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let flushed = || {
            let stats = log.stats();
            stats.write_buffer_bytes == 0 && plan.counts().syncs > syncs_before
        };
        while !flushed() {
            assert!(
                std::time::Instant::now() < deadline,
                "no interval flush within 10 s"
            );
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Wait for the flush in flight to finish: flush() takes the writer role after it.
        log.flush().await.expect("flush");
        flusher.cancel().await;
        let log = Rc::try_unwrap(log).expect("the flusher task was cancelled");
        log.close().await.expect("close");
    });
}

#[test]
fn cancelled_appends_leave_the_log_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = small_config(FlushPolicy::Always);
        let log = Rc::new(
            PartitionLog::open(&path, config.clone())
                .await
                .expect("open"),
        );
        let mut acknowledged = Vec::new();
        for round in 0..20u8 {
            // An append whose task is cancelled somewhere between admission and durability
            // (how far it got depends on `round`), as a request timeout would.
            let cancelled = {
                let log = log.clone();
                glommio::spawn_local(async move { log.append(batch(round, 2, 900, 1)).await })
            };
            for _ in 0..round % 4 {
                futures_lite::future::yield_now().await;
            }
            if let Some(Ok(info)) = cancelled.cancel().await {
                acknowledged.push(info.base_offset);
            }
            let appended = batch(100 + round, 1, 700, 1);
            let info = log
                .append(appended.clone())
                .await
                .expect("append after a cancel");
            acknowledged.push(info.base_offset);
        }
        let batches = read_all(&log, 0).await;
        let mut expected_offset = 0;
        for batch in &batches {
            assert_eq!(
                common::base_offset(batch),
                expected_offset,
                "offsets contiguous"
            );
            expected_offset = common_next(batch);
        }
        assert_eq!(expected_offset, log.log_end_offset());
        let log = Rc::try_unwrap(log).expect("tasks done");
        log.close().await.expect("close");
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        let reopened = read_all(&log, 0).await;
        assert_eq!(reopened, batches, "what was readable is what was durable");
        let offsets: Vec<i64> = reopened.iter().map(|b| common::base_offset(b)).collect();
        for offset in acknowledged {
            assert!(
                offsets.contains(&offset),
                "acknowledged batch at {offset} kept"
            );
        }
    });
}

fn common_next(batch: &[u8]) -> i64 {
    let header = weir_proto::batch::BatchHeader::view(batch).expect("header");
    header.base_offset.get() + i64::from(header.last_offset_delta.get()) + 1
}
