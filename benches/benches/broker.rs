//! Criterion micro-benchmarks of the broker's request handlers on the data path: a produce of
//! one 1,000-record batch, and a fetch of one batch served from the tail cache.
//!
//! Both drive the broker's real code in-process: a one-shard broker's shard
//! ([`Shard::standalone`]) on a glommio executor, with a topic of one partition under a
//! temporary directory (`flush=never`, so the disk's speed is not measured), and
//! [`handlers::handle`] given a decoded request frame exactly as a connection would give it.
//! No socket is involved: the figures are the broker's own work per request (decode, routing,
//! validation and append, or tail-cache read and response encoding), not the kernel's copies.
//!
//! Each produce gets a frame of its own, copied outside the timed part, so the batch reaches
//! storage as the only handle on its bytes, as one read from a socket does. Retention (a 64 MiB
//! bound, 16 MiB segments) runs between timed produces so a long run does not fill the disk.
//! Every figure is a throughput in bytes of batch data. Under `cargo test` (criterion's test
//! mode) each bench runs once. docs/BENCHMARKS.md gives measured figures.

use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder};
use weir_broker::catalog::Catalog;
use weir_broker::config::{Config, Flags};
use weir_broker::handlers;
use weir_broker::shard::Shard;
use weir_proto::batch::BatchBuilder;
use weir_proto::wire::{
    Acks, FetchPartition, FetchRequest, FrameDecoderConfig, Priority, ProducePartition,
    ProduceRequest, RequestFrameDecoder, RequestHeader, RequestMessage,
};

/// Timestamp of every generated record, in milliseconds.
const TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// Records per batch, as in the targets.
const RECORDS_PER_BATCH: usize = 1_000;
/// Bytes of each record's value, as in the targets.
const VALUE_BYTES: usize = 1_024;
/// Batches appended before the fetch bench; all of them stay in the tail cache (64 MiB).
const FETCH_BATCHES_COUNT: i64 = 16;
/// Produces between two retention passes in the produce bench.
const PRODUCES_PER_RETENTION: u64 = 32;
/// The client address the handler is told the request came from.
const CLIENT_HOST: &str = "127.0.0.1:1";
/// The bench topic's name.
const TOPIC_NAME: &str = "bench";

/// A batch of [`RECORDS_PER_BATCH`] records of [`VALUE_BYTES`] bytes, no key.
fn make_batch() -> Bytes {
    let mut builder =
        BatchBuilder::with_capacity(TIMESTAMP_MS, RECORDS_PER_BATCH * (VALUE_BYTES + 16));
    let value: Vec<u8> = (0..VALUE_BYTES).map(|index| index as u8).collect();
    for _ in 0..RECORDS_PER_BATCH {
        builder.push(TIMESTAMP_MS, None, Some(&value), &[]);
    }
    Bytes::from(builder.finish())
}

/// Encodes `request` as a frame and decodes it back into the header and body a connection
/// hands to the handler; the body is the only handle on its bytes.
fn decoded<R: RequestMessage>(request: &R) -> (RequestHeader, Bytes) {
    let mut frame = BytesMut::new();
    request
        .encode_frame(1, Priority::default(), &mut frame)
        .expect("the bench request encodes");
    let mut decoder = RequestFrameDecoder::new(FrameDecoderConfig {
        frame_bytes_max: u32::MAX,
    });
    let frame = decoder
        .decode(&mut frame)
        .expect("the bench frame decodes")
        .expect("the bench frame is whole");
    (frame.header, frame.body)
}

/// A one-shard broker with topic [`TOPIC_NAME`] (one partition, `flush=never`) under a fresh
/// temporary directory, on its own executor.
struct Broker {
    executor: LocalExecutor,
    shard: Rc<Shard>,
    topic_id: u32,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data_dir = dir
            .path()
            .to_str()
            .expect("a UTF-8 temporary path")
            .to_string();
        let flags = Flags::try_parse_from([
            "weir-broker",
            "--data-dir",
            data_dir.as_str(),
            "--cores",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--default-flush",
            "never",
            "--default-segment-bytes-max",
            "16777216",
            "--default-retention-bytes-max",
            "67108864",
        ])
        .expect("the bench's broker flags parse");
        let config = Arc::new(Config::resolve(flags, 1).expect("the bench's config is valid"));
        let (catalog, topic) = Catalog::default()
            .with_topic(
                TOPIC_NAME,
                config.topic_defaults,
                config.topic_partitions_max,
                config.batch_bytes_max,
                false,
            )
            .expect("the bench topic is valid");
        let executor = LocalExecutorBuilder::default()
            .name("bench-broker")
            .make()
            .expect("a glommio executor");
        let shard = executor
            .run(Shard::standalone(Arc::clone(&config), catalog))
            .expect("the bench partition opens");
        Broker {
            executor,
            shard,
            topic_id: topic.topic_id,
            _dir: dir,
        }
    }

    fn produce_request(&self, batch: &Bytes) -> ProduceRequest {
        ProduceRequest {
            acks: Acks::Leader,
            timeout_ms: 30_000,
            entries: vec![ProducePartition {
                topic_id: self.topic_id,
                partition: 0,
                records: batch.clone(),
            }],
        }
    }

    /// Runs `handle` on one frame and returns the response chunks.
    fn handle(&self, header: RequestHeader, body: Bytes) -> Option<Vec<Bytes>> {
        let shard = Rc::clone(&self.shard);
        self.executor
            .run(async move { handlers::handle(&shard, header, body, CLIENT_HOST).await })
    }
}

fn produce_handler(criterion: &mut Criterion) {
    let broker = Broker::start();
    let batch = make_batch();
    // The frame once, encoded; every timed produce decodes a fresh copy of it untimed.
    let mut encoded = BytesMut::new();
    broker
        .produce_request(&batch)
        .encode_frame(1, Priority::default(), &mut encoded)
        .expect("the produce request encodes");
    let encoded = encoded.freeze();
    let mut decoder = RequestFrameDecoder::new(FrameDecoderConfig {
        frame_bytes_max: u32::MAX,
    });
    let mut group = criterion.benchmark_group("broker_produce");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    let mut produced = 0u64;
    group.bench_function("handle_produce_1000x1KiB_flush_never", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            for _ in 0..iterations {
                let mut copy = BytesMut::from(&encoded[..]);
                let frame = decoder
                    .decode(&mut copy)
                    .expect("the produce frame decodes")
                    .expect("the produce frame is whole");
                drop(copy);
                let started = Instant::now();
                let response = broker.handle(frame.header, frame.body);
                timed += started.elapsed();
                black_box(response);
                produced += 1;
                if produced.is_multiple_of(PRODUCES_PER_RETENTION) {
                    let shard = Rc::clone(&broker.shard);
                    broker.executor.run(async move { shard.maintain().await });
                }
            }
            timed
        });
    });
    group.finish();
}

fn fetch_handler_tail_cache(criterion: &mut Criterion) {
    let broker = Broker::start();
    let batch = make_batch();
    for _ in 0..FETCH_BATCHES_COUNT {
        let (header, body) = decoded(&broker.produce_request(&batch));
        broker.handle(header, body).expect("a produce is answered");
    }
    let fetches: Vec<(RequestHeader, Bytes)> = (0..FETCH_BATCHES_COUNT)
        .map(|index| {
            decoded(&FetchRequest {
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 8 << 20,
                entries: vec![FetchPartition {
                    topic_id: broker.topic_id,
                    partition: 0,
                    fetch_offset: index * RECORDS_PER_BATCH as i64,
                    partition_max_bytes: 1 << 20,
                }],
            })
        })
        .collect();
    let mut group = criterion.benchmark_group("broker_fetch");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    let mut next = 0usize;
    group.bench_function("handle_fetch_one_batch_tail_cache", |bencher| {
        bencher.iter(|| {
            let (header, body) = &fetches[next % fetches.len()];
            next += 1;
            let chunks = broker
                .handle(*header, body.clone())
                .expect("a fetch is answered");
            black_box(chunks)
        });
    });
    group.finish();
}

criterion_group!(benches, produce_handler, fetch_handler_tail_cache);
criterion_main!(benches);
