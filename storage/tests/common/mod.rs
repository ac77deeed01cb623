//! Helpers shared by the storage integration tests: an executor per test, batch builders, and
//! log configurations small enough to exercise rolls and indexes quickly.

#![allow(dead_code)]

use std::{future::Future, path::Path, rc::Rc};

use bytes::Bytes;
use glommio::LocalExecutorBuilder;
use weir_proto::batch::{BatchBuilder, BatchHeader};
use weir_storage::{
    io::{DmaBackend, FaultInjectingBackend, FaultPlan, StorageBackend},
    FlushPolicy, LogConfig, PartitionLog,
};

/// Runs `make()`'s future on a fresh glommio executor on its own thread and returns its output.
pub fn run<F, Fut, T>(make: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::default()
        .spawn(make)
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}

/// A batch of `records` records with values of `value_bytes` bytes, all at `timestamp_ms`; the
/// first value byte is `tag` so batches can be told apart.
pub fn batch(tag: u8, records: usize, value_bytes: usize, timestamp_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new(timestamp_ms);
    let mut value = vec![tag; value_bytes.max(1)];
    for record in 0..records {
        let last = value.len() - 1;
        value[last] = record as u8;
        builder.push(timestamp_ms, Some(b"key"), Some(&value), &[]);
    }
    Bytes::from(builder.finish())
}

/// Base offset stored in a batch.
pub fn base_offset(batch: &[u8]) -> i64 {
    BatchHeader::view(batch).expect("header").base_offset.get()
}

/// Max timestamp stored in a batch.
pub fn max_timestamp(batch: &[u8]) -> i64 {
    BatchHeader::view(batch)
        .expect("header")
        .max_timestamp
        .get()
}

/// `batch` with its base offset set to `offset`: what the log stores for it.
pub fn stored(batch: &Bytes, offset: i64) -> Bytes {
    let mut bytes = batch.to_vec();
    weir_proto::batch::set_base_offset(&mut bytes, offset).expect("set base offset");
    Bytes::from(bytes)
}

/// A configuration with small segments and a dense index.
pub fn small_config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes_max: 16 << 10,
        index_interval_bytes: 512,
        flush,
        tail_cache_bytes_max: 0,
        write_buffer_bytes_max: 64 << 10,
        read_chunk_bytes_min: 4096,
        scan_chunk_bytes: 8192,
        preallocate: true,
        batch_limits: weir_proto::batch::BatchLimits {
            batch_bytes_max: 8 << 10,
            ..weir_proto::batch::BatchLimits::default()
        },
        ..LogConfig::default()
    }
}

/// Opens a log over a fault-injecting wrapper of the production backend.
pub async fn open_faulty(dir: &Path, config: LogConfig) -> (PartitionLog, Rc<FaultPlan>) {
    let plan = FaultPlan::new();
    let backend: Rc<dyn StorageBackend> = Rc::new(FaultInjectingBackend::new(
        Rc::new(DmaBackend::new()),
        plan.clone(),
    ));
    let log = PartitionLog::open_with_backend(dir, config, backend)
        .await
        .expect("open log");
    (log, plan)
}

/// Reads every batch from `from` to the stable end.
pub async fn read_all(log: &PartitionLog, from: i64) -> Vec<Bytes> {
    let mut batches = Vec::new();
    let mut offset = from;
    loop {
        let read = log.read(offset, 1 << 20).await.expect("read");
        let Some(last) = read.batches.last() else {
            return batches;
        };
        let header = BatchHeader::view(last).expect("header");
        offset = header.base_offset.get() + i64::from(header.last_offset_delta.get()) + 1;
        batches.extend(read.batches);
    }
}
