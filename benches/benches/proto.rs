//! Criterion micro-benchmarks of the proto hot paths: splitting a stream of produce requests into
//! frames and decoding them, validating a record batch, and encoding a fetch response.
//!
//! Every figure is a throughput in bytes of wire or batch data. Pairs measured in the same run
//! are meant to be read as ratios: full validation against header and CRC only, and the
//! zero-copy chunked fetch encoding against the contiguous one that copies the records. Under
//! `cargo test` (criterion's test mode, no `--bench` argument) the streams shrink so each bench
//! runs once in a fraction of a second. docs/BENCHMARKS.md says what each bench measures and
//! gives measured figures.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use weir_proto::batch::{validate_batch, validate_batch_header_and_crc, BatchBuilder, BatchLimits};
use weir_proto::wire::{
    Acks, ErrorCode, FetchPartitionResult, FetchRecords, FetchResponse, FrameDecoderConfig,
    Priority, ProducePartition, ProduceRequest, Request, RequestFrameDecoder, RequestMessage,
    ResponseMessage,
};

/// Timestamp of every generated record, in milliseconds.
const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// Partitions in the fetch response.
const FETCH_PARTITIONS_COUNT: u32 = 8;

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

/// `frames_count` produce request frames, each carrying `batch` for one partition, back to back
/// as a connection's read buffer would hold them.
fn produce_stream(batch: &Bytes, frames_count: u32) -> BytesMut {
    let mut stream = BytesMut::new();
    for correlation_id in 0..frames_count {
        let request = ProduceRequest {
            acks: Acks::Leader,
            timeout_ms: 30_000,
            entries: vec![ProducePartition {
                topic_id: 7,
                partition: correlation_id % 8,
                records: batch.clone(),
            }],
        };
        request
            .encode_frame(correlation_id, Priority::Normal, &mut stream)
            .expect("encode produce frame");
    }
    stream
}

/// Takes every frame off `stream` with `RequestFrameDecoder` and decodes it with
/// `Request::decode`, as the broker's connection loop does. Returns the requests so that
/// criterion drops them (and the stream's memory) outside the timed section.
fn decode_all(decoder: &mut RequestFrameDecoder, mut stream: BytesMut) -> Vec<Request> {
    let mut requests = Vec::new();
    while let Some(frame) = decoder.decode(&mut stream).expect("valid framing") {
        let request = Request::decode(&frame.header, &frame.body).expect("valid request");
        requests.push(request);
    }
    assert!(stream.is_empty(), "every byte was framed");
    requests
}

/// Frame decode of produce requests: 1 MB batches (1,000 × 1 KiB records) and small requests
/// (one 100-byte record). The stream is copied into a fresh read buffer outside the timing.
fn frame_decode(c: &mut Criterion) {
    let (large_frames_count, small_frames_count) = if full_run() { (16, 4096) } else { (2, 16) };
    let workloads = [
        (
            "produce_1MB_batches",
            make_batch(1000, 1024),
            large_frames_count,
        ),
        ("produce_small", make_batch(1, 100), small_frames_count),
    ];
    let mut group = c.benchmark_group("frame_decode");
    for (name, batch, frames_count) in workloads {
        let stream = produce_stream(&batch, frames_count);
        let mut decoder = RequestFrameDecoder::new(FrameDecoderConfig::default());
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || stream.clone(),
                |stream| {
                    let requests = decode_all(&mut decoder, black_box(stream));
                    assert_eq!(requests.len(), frames_count as usize);
                    requests
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// `validate_batch` (header, CRC-32C, record walk) against `validate_batch_header_and_crc`
/// (no record walk) on one batch of 1,000 × 1 KiB records.
fn batch_validation(c: &mut Criterion) {
    let batch = make_batch(1000, 1024);
    let limits = BatchLimits::default();
    let mut group = c.benchmark_group("batch_validate");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("full_1000x1KiB", |b| {
        b.iter(|| validate_batch(black_box(&batch), &limits).expect("valid batch"))
    });
    group.bench_function("header_and_crc_1000x1KiB", |b| {
        b.iter(|| validate_batch_header_and_crc(black_box(&batch), &limits).expect("valid batch"))
    });
    group.finish();
}

/// A fetch response for `FETCH_PARTITIONS_COUNT` partitions, each answering with one batch,
/// shared (not copied) between partitions as storage's tail cache shares its buffers.
fn fetch_response(batch: &Bytes) -> FetchResponse {
    let entries = (0..FETCH_PARTITIONS_COUNT)
        .map(|partition| FetchPartitionResult {
            topic_id: 7,
            partition,
            error_code: ErrorCode::None,
            error_message: String::new(),
            high_watermark: 1_000_000,
            log_start_offset: 0,
            records: FetchRecords::from_chunks(vec![batch.clone()]),
        })
        .collect();
    FetchResponse { entries }
}

/// Fetch response encoding for 8 partitions of one 1 MB batch each: `encode_frame_chunks`
/// (record bytes passed through as chunks) against `encode_frame` into one contiguous buffer
/// (record bytes copied). Both reuse their buffers across iterations, as a connection does.
fn fetch_response_encode(c: &mut Criterion) {
    let batch = if full_run() {
        make_batch(1000, 1024)
    } else {
        make_batch(10, 1024)
    };
    let response = fetch_response(&batch);
    let mut probe = BytesMut::new();
    response
        .encode_frame(1, 0, &mut probe)
        .expect("encode fetch response");
    let frame_bytes = probe.len() as u64;
    let mut group = c.benchmark_group("fetch_response_encode");
    group.throughput(Throughput::Bytes(frame_bytes));
    group.bench_function("chunks_8x1MB", |b| {
        let mut scratch = BytesMut::with_capacity(4096);
        let mut chunks: Vec<Bytes> = Vec::with_capacity(64);
        b.iter(|| {
            chunks.clear();
            black_box(&response)
                .encode_frame_chunks(1, 0, &mut scratch, &mut chunks)
                .expect("encode fetch response");
            let encoded_bytes: usize = chunks.iter().map(Bytes::len).sum();
            assert_eq!(encoded_bytes as u64, frame_bytes);
            black_box(&chunks);
        })
    });
    group.bench_function("contiguous_8x1MB", |b| {
        let mut buffer = BytesMut::with_capacity(frame_bytes as usize);
        b.iter(|| {
            buffer.clear();
            black_box(&response)
                .encode_frame(1, 0, &mut buffer)
                .expect("encode fetch response");
            assert_eq!(buffer.len() as u64, frame_bytes);
            black_box(&buffer);
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    frame_decode,
    batch_validation,
    fetch_response_encode
);
criterion_main!(benches);
