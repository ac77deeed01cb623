//! The write pipeline: several log writes in flight at once, bounded by
//! `writes_in_flight_max`, and never two running writes over the same block (the partial tail
//! block is written only when no running write covers it). Writes are held back by the
//! fault-injecting backend, so the test decides when they complete.

mod common;

use std::{future::Future, pin::Pin, rc::Rc, task::Poll};

use common::{batch, open_faulty, read_all, run, small_config, stored};
use weir_storage::{FlushPolicy, LogConfig, PartitionLog};

/// Lets the other runnable tasks run once.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|context| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        context.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Yields until `condition` holds; fails after a bounded number of turns.
async fn yield_until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        yield_once().await;
    }
    panic!("{what}: condition never held");
}

/// Single-block writes, three in flight, batches up to 64 KiB.
fn pipeline_config() -> LogConfig {
    let mut config = small_config(FlushPolicy::Always);
    config.segment_bytes_max = 1 << 20;
    config.write_buffer_bytes_max = 1 << 20;
    config.writes_in_flight_max = 3;
    config.write_chunk_bytes_max = 1;
    config.batch_limits.batch_bytes_max = 64 << 10;
    config
}

type Spawned<T> = Pin<Box<dyn Future<Output = T>>>;

fn spawn_append(log: &Rc<PartitionLog>, appended: bytes::Bytes) -> glommio::task::JoinHandle<i64> {
    let log = log.clone();
    let append: Spawned<i64> = Box::pin(async move {
        log.append(appended)
            .await
            .expect("append while writes are held")
            .base_offset
    });
    glommio::spawn_local(append).detach()
}

#[test]
fn several_log_writes_are_in_flight_at_once_up_to_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = pipeline_config();
        let (log, plan) = open_faulty(&path, config.clone()).await;
        let log = Rc::new(log);
        plan.set_hold_writes(true);
        // 40 KiB: ten blocks or more whatever the device's block size (512 B to 4 KiB).
        let appended = batch(1, 4, 10_000, 1);
        let append = spawn_append(&log, appended.clone());
        plan.wait_writes_held(3).await;
        let counts = plan.counts();
        assert_eq!(counts.writes_in_flight_max, 3, "three writes run at once");
        assert_eq!(counts.writes_held, 3, "no more than writes_in_flight_max");
        assert_eq!(log.stable_end_offset(), 0, "nothing acknowledged yet");
        plan.set_hold_writes(false);
        let base_offset = append.await.expect("append task");
        assert_eq!(base_offset, 0);
        let counts = plan.counts();
        assert_eq!(counts.writes_in_flight_max, 3, "the limit held throughout");
        assert_eq!(
            counts.overlapping_writes, 0,
            "no two running writes share a block"
        );
        assert!(counts.writes >= 4, "the batch went out in several writes");
        let expected = vec![stored(&appended, 0)];
        assert_eq!(read_all(&log, 0).await, expected);
        let Ok(log) = Rc::try_unwrap(log) else {
            panic!("the append task has finished");
        };
        log.close().await.expect("close");
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        assert_eq!(read_all(&log, 0).await, expected, "durable as acknowledged");
    });
}

#[test]
fn a_block_under_a_running_write_is_not_written_again_until_that_write_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = pipeline_config();
        let (log, plan) = open_faulty(&path, config.clone()).await;
        let log = Rc::new(log);
        plan.set_hold_writes(true);
        // A small batch: its sync point writes the partial first block, and that write is
        // held.
        let small = batch(1, 1, 100, 1);
        let first = spawn_append(&log, small.clone());
        plan.wait_writes_held(1).await;
        assert_eq!(plan.counts().writes, 1);
        // A large batch right behind it fills that block and many more. Its whole blocks are
        // buffered, but the first of them is under the held write.
        let large = batch(2, 4, 10_000, 1);
        let second = spawn_append(&log, large.clone());
        yield_until("the large batch is admitted", || log.log_end_offset() == 5).await;
        for _ in 0..100 {
            yield_once().await;
        }
        let counts = plan.counts();
        assert_eq!(
            counts.overlapping_writes, 0,
            "no write over a block in flight"
        );
        assert_eq!(counts.writes, 1, "the large batch waits for the held block");
        plan.set_hold_writes(false);
        assert_eq!(first.await.expect("first append"), 0);
        assert_eq!(second.await.expect("second append"), 1);
        let counts = plan.counts();
        assert_eq!(
            counts.overlapping_writes, 0,
            "no two running writes share a block"
        );
        assert!(
            counts.writes >= 3,
            "the large batch went out in several writes"
        );
        let expected = vec![stored(&small, 0), stored(&large, 1)];
        assert_eq!(read_all(&log, 0).await, expected);
        let Ok(log) = Rc::try_unwrap(log) else {
            panic!("the append tasks have finished");
        };
        log.close().await.expect("close");
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        assert_eq!(
            read_all(&log, 0).await,
            expected,
            "every block landed in order"
        );
    });
}

#[test]
fn a_failed_write_among_several_in_flight_fails_the_append_and_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = pipeline_config();
        let (log, plan) = open_faulty(&path, config.clone()).await;
        let log = Rc::new(log);
        let kept = batch(1, 1, 100, 1);
        log.append(kept.clone()).await.expect("append");
        plan.set_hold_writes(true);
        let failing = {
            let log = log.clone();
            let append: Spawned<bool> =
                Box::pin(async move { log.append(batch(2, 4, 10_000, 1)).await.is_err() });
            glommio::spawn_local(append).detach()
        };
        plan.wait_writes_held(3).await;
        // The second of the held writes to reach the device fails.
        plan.fail_nth_write(2, libc::EIO);
        plan.set_hold_writes(false);
        assert!(failing.await.expect("append task"), "the append failed");
        assert_eq!(log.log_end_offset(), 1, "the failed batch got no offset");
        assert_eq!(log.stable_end_offset(), 1);
        assert_eq!(log.stats().flush_error_count, 1);
        let after = batch(3, 1, 100, 1);
        let info = log
            .append(after.clone())
            .await
            .expect("append after the failure");
        assert_eq!(info.base_offset, 1);
        let expected = vec![stored(&kept, 0), stored(&after, 1)];
        assert_eq!(read_all(&log, 0).await, expected);
        assert_eq!(plan.counts().overlapping_writes, 0);
        let Ok(log) = Rc::try_unwrap(log) else {
            panic!("the append task has finished");
        };
        // Crash-like: no close, so nothing but the acknowledged syncs count.
        drop(log);
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        assert_eq!(
            read_all(&log, 0).await,
            expected,
            "only the acknowledged batches come back"
        );
    });
}

/// Under `flush = never` a batch leaves the write buffer as soon as the writes covering it
/// complete. An append that finds the buffer full is admitted after the first completed writes
/// free room for it, while later writes still run: it neither drains the whole buffer nor
/// writes the partial last block first.
#[test]
fn under_flush_never_a_full_buffer_admits_the_next_batch_once_the_first_writes_free_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut config = pipeline_config();
        config.flush = FlushPolicy::Never;
        // About 12 KiB each: three blocks or more whatever the device's block size.
        let buffered: Vec<bytes::Bytes> = (0..3).map(|tag| batch(tag, 3, 4000, 1)).collect();
        let batch_bytes = buffered[0].len();
        config.write_buffer_bytes_max = 3 * batch_bytes;
        let (log, plan) = open_faulty(&path, config.clone()).await;
        let log = Rc::new(log);
        plan.set_hold_writes(true);
        for (index, appended) in buffered.iter().enumerate() {
            let base_offset = spawn_append(&log, appended.clone())
                .await
                .expect("append task");
            assert_eq!(base_offset, 3 * index as i64, "flush=never admits at once");
        }
        plan.wait_writes_held(3).await;
        let full = batch(9, 3, 4000, 1);
        let waiting = spawn_append(&log, full.clone());
        for _ in 0..100 {
            yield_once().await;
        }
        assert_eq!(log.log_end_offset(), 9, "the fourth batch waits for room");
        assert_eq!(log.stats().write_buffer_full_count, 0, "still waiting");

        // Release writes one at a time until the fourth batch is admitted.
        let mut released = 0;
        while log.log_end_offset() == 9 {
            assert!(released < 64, "the fourth batch was never admitted");
            let written = plan.counts().bytes_written;
            plan.release_held_writes(1);
            released += 1;
            // The released write goes to the device: wait for it, then let the appender run.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while plan.counts().bytes_written == written {
                assert!(
                    std::time::Instant::now() < deadline,
                    "a released write did not complete"
                );
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            }
            for _ in 0..100 {
                yield_once().await;
            }
        }
        let written = plan.counts().bytes_written;
        assert!(
            written < 3 * batch_bytes as u64,
            "expected admission before the buffer of {} bytes drained, got it after {written} bytes",
            3 * batch_bytes
        );
        assert!(
            plan.counts().writes_held > 0,
            "later writes still running when the batch was admitted"
        );
        let stats = log.stats();
        assert_eq!(stats.write_buffer_full_count, 1);
        assert!(stats.write_buffer_full_time_total_us > 0);

        plan.set_hold_writes(false);
        assert_eq!(waiting.await.expect("append task"), 9);
        let counts = plan.counts();
        assert_eq!(
            counts.overlapping_writes, 0,
            "no two running writes share a block"
        );
        let mut expected: Vec<bytes::Bytes> = buffered
            .iter()
            .enumerate()
            .map(|(index, appended)| stored(appended, 3 * index as i64))
            .collect();
        expected.push(stored(&full, 9));
        assert_eq!(read_all(&log, 0).await, expected);
        let Ok(log) = Rc::try_unwrap(log) else {
            panic!("the append tasks have finished");
        };
        log.close().await.expect("close");
        let log = PartitionLog::open(&path, config).await.expect("reopen");
        assert_eq!(read_all(&log, 0).await, expected, "every batch landed");
    });
}
