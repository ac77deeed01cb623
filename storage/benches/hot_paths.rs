//! Criterion micro-benchmarks of the storage hot paths: batch validation, CRC-32C, append into
//! the in-memory write buffer, sparse-index lookups, and reads served from the tail cache.
//!
//! Every log lives in a temporary directory on one glommio `LocalExecutor` owned by the bench
//! thread; each measurement runs inside `LocalExecutor::run` through `iter_custom`, so the
//! executor's own start-up is not measured. Under `cargo test` (criterion's test mode, no
//! `--bench` argument) the data sets shrink so each bench runs once in a fraction of a second.
//! docs/BENCHMARKS.md says what each bench measures and how to read its figures.

use std::{
    hint::black_box,
    path::Path,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder};
use weir_proto::batch::{validate_batch, BatchBuilder, BatchHeader, BatchLimits};
use weir_storage::{FlushPolicy, LogConfig, PartitionLog};

/// Timestamp of every generated record, in milliseconds.
const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// True when run by `cargo bench` (criterion passes `--bench`); false in test mode.
fn full_run() -> bool {
    std::env::args().any(|argument| argument == "--bench")
}

/// A batch of `records` records with `value_bytes`-byte values and no key.
fn make_batch(records: usize, value_bytes: usize) -> Bytes {
    let mut builder = BatchBuilder::with_capacity(TIMESTAMP_MS, records * (value_bytes + 16));
    let value: Vec<u8> = (0..value_bytes).map(|index| index as u8).collect();
    for _ in 0..records {
        builder.push(TIMESTAMP_MS, None, Some(&value), &[]);
    }
    Bytes::from(builder.finish())
}

/// Offset one past the last record of a stored batch.
fn next_offset(batch: &[u8]) -> i64 {
    let header = BatchHeader::view(batch).expect("stored batches have a header");
    header.base_offset.get() + i64::from(header.last_offset_delta.get()) + 1
}

fn open(executor: &LocalExecutor, dir: &Path, config: LogConfig) -> PartitionLog {
    executor
        .run(PartitionLog::open(dir.to_path_buf(), config))
        .expect("open log")
}

/// `validate_batch` (header, CRC-32C and a walk over every record) of 1,000 × 1 KiB records.
fn batch_validation(c: &mut Criterion) {
    let batch = make_batch(1000, 1024);
    let limits = BatchLimits::default();
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("validate_1000x1KiB", |b| {
        b.iter(|| validate_batch(black_box(&batch), &limits).expect("valid batch"))
    });
    group.finish();
}

/// CRC-32C (the batch checksum) over 1 MiB.
fn crc32c_1mib(c: &mut Criterion) {
    let bytes: Vec<u8> = (0..1 << 20).map(|index: u32| (index * 31) as u8).collect();
    let mut group = c.benchmark_group("crc32c");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("1MiB", |b| b.iter(|| crc32c::crc32c(black_box(&bytes))));
    group.finish();
}

/// `PartitionLog::append` under `FlushPolicy::Never` with a write buffer larger than anything
/// a measured stretch appends: validation of header and CRC, offset assignment, one copy of the
/// batch (the caller keeps a reference, so the log cannot take the buffer), and queueing in the
/// write buffer. No disk I/O is timed: every `chunk_bytes` the log is deleted (buffered bytes
/// are dropped unwritten) and a fresh one is opened, outside the measured time.
fn append_in_memory(c: &mut Criterion, executor: &LocalExecutor) {
    let root = tempfile::tempdir().expect("tempdir");
    let chunk_bytes: u64 = if full_run() { 64 << 20 } else { 1 << 20 };
    let config = LogConfig {
        flush: FlushPolicy::Never,
        write_buffer_bytes_max: 2 * chunk_bytes as usize,
        ..LogConfig::default()
    };
    let mut group = c.benchmark_group("append_never");
    for (name, records, value_bytes) in [("16x1KiB", 16, 1024), ("1000x1KiB", 1000, 1024)] {
        let batch = make_batch(records, value_bytes);
        let chunk_appends = (chunk_bytes / batch.len() as u64).max(1);
        let mut generation = 0u64;
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                executor.run(async {
                    let mut measured = Duration::ZERO;
                    let mut remaining = iterations;
                    while remaining > 0 {
                        generation += 1;
                        let dir = root.path().join(format!("{name}-{generation}"));
                        let log = PartitionLog::open(&dir, config.clone())
                            .await
                            .expect("open log");
                        let count = remaining.min(chunk_appends);
                        let started = Instant::now();
                        for _ in 0..count {
                            black_box(log.append(batch.clone()).await.expect("append"));
                        }
                        measured += started.elapsed();
                        assert_eq!(log.stats().log_write_count, 0, "nothing was written");
                        log.delete().await.expect("delete log");
                        remaining -= count;
                    }
                    measured
                })
            })
        });
    }
    group.finish();
}

/// Opens a log and fills it with `batch_count` copies of `batch`, flushed.
fn filled_log(
    executor: &LocalExecutor,
    dir: &Path,
    config: LogConfig,
    batch: &Bytes,
    batch_count: usize,
) -> PartitionLog {
    let log = open(executor, dir, config);
    executor.run(async {
        for _ in 0..batch_count {
            log.append(batch.clone()).await.expect("append");
        }
        log.flush().await.expect("flush");
    });
    log
}

/// Sparse offset-index lookups. The in-memory lookup itself is crate-private, so two public
/// paths that contain it are measured:
/// - `read_sealed_random`: `read` of one small batch at a pseudo-random offset of a sealed
///   segment whose index is loaded: index binary search, then one O_DIRECT read of
///   `read_chunk_bytes_min` bytes (the disk read dominates);
/// - `offset_for_timestamp_tail`: time-index binary search in the active segment, then a scan
///   of at most one index interval of batches served from the tail cache (no disk I/O).
fn index_lookup(c: &mut Criterion, executor: &LocalExecutor) {
    let root = tempfile::tempdir().expect("tempdir");
    let batch_count = if full_run() { 64 << 10 } else { 256 };
    let batch = make_batch(1, 100);
    let mut group = c.benchmark_group("index");

    // Sealed: one segment of `batch_count` ~170-byte batches, rolled by a later append.
    let sealed_dir = root.path().join("sealed");
    let segment_bytes_max = (batch_count * batch.len()) as u64;
    let config = LogConfig {
        flush: FlushPolicy::Never,
        segment_bytes_max,
        batch_limits: BatchLimits {
            batch_bytes_max: 4096,
            ..BatchLimits::default()
        },
        tail_cache_bytes_max: 0,
        read_chunk_bytes_min: 4096,
        ..LogConfig::default()
    };
    let log = filled_log(executor, &sealed_dir, config, &batch, batch_count + 1);
    let stats = log.stats();
    assert!(stats.segment_count >= 2, "the first segment is sealed");
    let sealed_end = batch_count as i64;
    // Load the sealed segment's index before measuring.
    executor.run(async { log.read(0, 1).await.expect("read") });
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    group.bench_function("read_sealed_random", |b| {
        b.iter_custom(|iterations| {
            executor.run(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let offset = (state >> 33) as i64 % sealed_end;
                    let read = log.read(offset, 1).await.expect("read");
                    assert_eq!(read.batches.len(), 1);
                    black_box(read);
                }
                started.elapsed()
            })
        })
    });

    // Tail: the whole active segment sits in the tail cache; every batch has its own timestamp.
    let tail_dir = root.path().join("tail");
    let tail_config = LogConfig {
        flush: FlushPolicy::Never,
        tail_cache_bytes_max: 64 << 20,
        write_buffer_bytes_max: 64 << 20,
        ..LogConfig::default()
    };
    let tail_log = open(executor, &tail_dir, tail_config);
    executor.run(async {
        for index in 0..batch_count as i64 {
            let mut builder = BatchBuilder::new(TIMESTAMP_MS + index);
            builder.push(TIMESTAMP_MS + index, None, Some(&[7u8; 100]), &[]);
            tail_log
                .append(Bytes::from(builder.finish()))
                .await
                .expect("append");
        }
        tail_log.flush().await.expect("flush");
    });
    assert_eq!(tail_log.stats().tail_cache_batches, batch_count);
    group.bench_function("offset_for_timestamp_tail", |b| {
        b.iter_custom(|iterations| {
            executor.run(async {
                let started = Instant::now();
                for iteration in 0..iterations {
                    let index = (iteration.wrapping_mul(7919) % batch_count as u64) as i64;
                    let found = tail_log
                        .offset_for_timestamp(TIMESTAMP_MS + index)
                        .await
                        .expect("lookup");
                    assert_eq!(found, Some(index));
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    executor.run(async {
        log.delete().await.expect("delete");
        tail_log.delete().await.expect("delete");
    });
}

/// `read` served from the tail cache (no disk I/O) of 1 KiB batches: 1 MiB from the oldest
/// cached batch, and the newest batch alone, with a small (64 KiB) and a large (8 MiB) cache.
/// The newest-batch reads differ by the cost of finding the first batch, which grows with the
/// number of cached batches if the cache is walked from its oldest batch.
fn tail_cache_read(c: &mut Criterion, executor: &LocalExecutor) {
    let root = tempfile::tempdir().expect("tempdir");
    let large_cache_bytes: usize = if full_run() { 8 << 20 } else { 256 << 10 };
    let batch = make_batch(1, 1024);
    let mut group = c.benchmark_group("tail_read");
    for (cache_name, cache_bytes) in [("64KiB", 64 << 10), ("8MiB", large_cache_bytes)] {
        let batch_count = cache_bytes / batch.len();
        let config = LogConfig {
            flush: FlushPolicy::Never,
            tail_cache_bytes_max: cache_bytes,
            write_buffer_bytes_max: 2 * cache_bytes,
            ..LogConfig::default()
        };
        let dir = root.path().join(cache_name);
        let log = filled_log(executor, &dir, config, &batch, batch_count);
        assert_eq!(
            log.stats().tail_cache_batches,
            batch_count,
            "everything is cached"
        );
        let last_offset = log.log_end_offset() - 1;
        let mut cases = vec![(format!("cache_{cache_name}/newest_1batch"), last_offset, 1)];
        if cache_bytes == large_cache_bytes {
            cases.push((format!("cache_{cache_name}/oldest_1MiB"), 0, 1 << 20));
        }
        for (name, offset, max_bytes) in cases {
            group.bench_function(name, |b| {
                b.iter_custom(|iterations| {
                    executor.run(async {
                        let started = Instant::now();
                        for _ in 0..iterations {
                            let read = log.read(offset, max_bytes).await.expect("read");
                            assert!(!read.batches.is_empty());
                            black_box(read);
                        }
                        started.elapsed()
                    })
                })
            });
        }
        assert_eq!(
            log.stats().tail_cache_misses,
            0,
            "every read was served from memory"
        );
        let read = executor.run(async { log.read(last_offset, 1).await.expect("read") });
        assert_eq!(next_offset(&read.batches[0]), last_offset + 1);
        executor.run(async { log.delete().await.expect("delete") });
    }
    group.finish();
}

/// One glommio executor for the whole run: the benches that touch a log share it.
fn main() {
    let executor = LocalExecutorBuilder::default()
        .make()
        .expect("glommio executor");
    let mut criterion = Criterion::default().configure_from_args();
    batch_validation(&mut criterion);
    crc32c_1mib(&mut criterion);
    append_in_memory(&mut criterion, &executor);
    index_lookup(&mut criterion, &executor);
    tail_cache_read(&mut criterion, &executor);
    criterion.final_summary();
}
