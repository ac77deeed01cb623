//! The idempotent producer against a real broker.
//!
//! - Over the raw protocol: InitProducerId hands out ids; the same batch sent twice is stored
//!   once and answered with its original offset; a gap is `out_of_order_sequence` and an old
//!   epoch `invalid_producer_epoch`, with nothing stored; the broker's counters see all three.
//! - Across restarts: after SIGKILL the producer state is rebuilt from the log, so a resent last
//!   batch is still a duplicate and a gap still an error; after a clean shutdown the state comes
//!   from the snapshot written at close, and when that snapshot is damaged, from the log again;
//!   producer ids are never handed out twice.
//! - Through a lossy proxy: a TCP proxy in front of every shard address (it rewrites the shard
//!   addresses in Metadata responses to its own, as a protocol-aware proxy does) swallows the
//!   responses of chosen Produce requests (sometimes closing the connection too) or cuts the
//!   connection right after forwarding a Produce request, so the client resends the same
//!   batches; every record is then in the log exactly once, in send order, at the offset its
//!   delivery reported, and the broker counted the resent batches as duplicates.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use weir_client::{
    Admin, ClientConfig, Cluster, ConnectionConfig, FlushPolicy, Producer, ProducerConfig,
    TopicSettings,
};
use weir_proto::batch::BatchBuilder;
use weir_proto::wire::{
    decode_response, ApiKey, CreateTopicRequest, ErrorCode, FrameDecoderConfig,
    InitProducerIdRequest, InitProducerIdResponse, MetadataResponse, RequestFrameDecoder,
    ResponseFrameDecoder, ResponseMessage, TopicConfig,
};
use weir_tests::wire::now_ms;
use weir_tests::{runtime, wait_until, BrokerOptions, BrokerProcess, WireClient};

const DUPLICATES: &str = "weir_producer_duplicate_batches_total";
const SEQUENCE_ERRORS: &str = "weir_producer_sequence_errors_total";
const FENCED: &str = "weir_producer_fenced_total";

/// One batch of an idempotent producer holding `values`.
fn producer_batch(producer_id: i64, epoch: i16, first_sequence: i32, values: &[&str]) -> Bytes {
    let now = now_ms();
    let mut builder = BatchBuilder::new(now).producer(producer_id, epoch, first_sequence);
    for value in values {
        builder.push(now, None, Some(value.as_bytes()), &[]);
    }
    Bytes::from(builder.finish())
}

fn init_producer_id(
    client: &mut WireClient,
    producer_id: i64,
    epoch: i16,
) -> InitProducerIdResponse {
    client.call_ok(&InitProducerIdRequest {
        producer_id,
        producer_epoch: epoch,
    })
}

fn new_producer_id(client: &mut WireClient) -> (i64, i16) {
    let response = init_producer_id(client, -1, -1);
    assert_eq!(
        response.error_code,
        ErrorCode::None,
        "{}",
        response.error_message
    );
    assert!(response.producer_id >= 0);
    assert_eq!(response.producer_epoch, 0, "a new id starts at epoch 0");
    (response.producer_id, response.producer_epoch)
}

fn stored_values(client: &mut WireClient, topic_id: u32, partition: u32) -> Vec<String> {
    client
        .read_partition(topic_id, partition, 0)
        .into_iter()
        .map(|record| String::from_utf8(record.value.expect("a value")).expect("utf-8"))
        .collect()
}

#[test]
fn duplicates_get_their_original_offset_gaps_and_old_epochs_are_refused() {
    // Two shards: InitProducerId is forwarded to shard 0 from the other one.
    let broker = BrokerProcess::start_with_cores(2);
    let mut client = WireClient::connect_and_handshake(broker.shard_address(1));
    let topic_id = client.create_topic("idem", 1, FlushPolicy::Always);
    let (producer_id, epoch) = new_producer_id(&mut client);
    let (second_id, _) = new_producer_id(&mut client);
    assert_ne!(second_id, producer_id, "ids are unique");

    let first = producer_batch(producer_id, epoch, 0, &["a", "b", "c"]);
    let stored = client.produce(topic_id, 0, first.clone());
    assert_eq!(
        (stored.error_code, stored.base_offset),
        (ErrorCode::None, 0)
    );
    let second = producer_batch(producer_id, epoch, 3, &["d", "e"]);
    assert_eq!(client.produce(topic_id, 0, second.clone()).base_offset, 3);
    for (resent, original) in [(&first, 0), (&second, 3), (&first, 0)] {
        let again = client.produce(topic_id, 0, resent.clone());
        assert_eq!(
            (again.error_code, again.base_offset),
            (ErrorCode::None, original),
            "a resent batch is answered with its original offset: {}",
            again.error_message
        );
    }
    let gap = client.produce(topic_id, 0, producer_batch(producer_id, epoch, 6, &["g"]));
    assert_eq!(
        gap.error_code,
        ErrorCode::OutOfOrderSequence,
        "{}",
        gap.error_message
    );
    let overlap = client.produce(topic_id, 0, producer_batch(producer_id, epoch, 4, &["x"]));
    assert_eq!(overlap.error_code, ErrorCode::OutOfOrderSequence);
    assert_eq!(
        stored_values(&mut client, topic_id, 0),
        ["a", "b", "c", "d", "e"]
    );

    // An epoch bump restarts the sequences at 0 and fences the old epoch.
    let bumped = init_producer_id(&mut client, producer_id, epoch);
    assert_eq!(
        (bumped.producer_id, bumped.producer_epoch),
        (producer_id, epoch + 1)
    );
    let not_zero = client.produce(
        topic_id,
        0,
        producer_batch(producer_id, epoch + 1, 5, &["y"]),
    );
    assert_eq!(
        not_zero.error_code,
        ErrorCode::OutOfOrderSequence,
        "a new epoch starts at 0"
    );
    let fresh = client.produce(
        topic_id,
        0,
        producer_batch(producer_id, epoch + 1, 0, &["f"]),
    );
    assert_eq!((fresh.error_code, fresh.base_offset), (ErrorCode::None, 5));
    let fenced = client.produce(topic_id, 0, producer_batch(producer_id, epoch, 5, &["z"]));
    assert_eq!(
        fenced.error_code,
        ErrorCode::InvalidProducerEpoch,
        "{}",
        fenced.error_message
    );
    // Batches without a producer id are not checked; another producer is independent.
    assert_eq!(
        client
            .produce(
                topic_id,
                0,
                weir_tests::wire::build_values_batch(&["plain"])
            )
            .base_offset,
        6
    );
    let other = client.produce(topic_id, 0, producer_batch(second_id, 0, 0, &["o"]));
    assert_eq!(other.base_offset, 7);
    assert_eq!(
        stored_values(&mut client, topic_id, 0),
        ["a", "b", "c", "d", "e", "f", "plain", "o"]
    );

    // Several batches in one entry are checked in order, each as if the ones before were stored:
    // a resent batch followed by a new one stores only the new one and answers the original
    // offset; a gap anywhere refuses the whole entry.
    let concat = |batches: &[&Bytes]| {
        Bytes::from(
            batches
                .iter()
                .flat_map(|batch| batch.iter().copied())
                .collect::<Vec<u8>>(),
        )
    };
    let resent = producer_batch(second_id, 0, 0, &["o"]);
    let follows = producer_batch(second_id, 0, 1, &["p"]);
    let mixed = client.produce(topic_id, 0, concat(&[&resent, &follows]));
    assert_eq!((mixed.error_code, mixed.base_offset), (ErrorCode::None, 7));
    let with_gap = concat(&[
        &producer_batch(second_id, 0, 2, &["q"]),
        &producer_batch(second_id, 0, 4, &["r"]),
    ]);
    let refused = client.produce(topic_id, 0, with_gap);
    assert_eq!(refused.error_code, ErrorCode::OutOfOrderSequence);
    assert_eq!(
        stored_values(&mut client, topic_id, 0),
        ["a", "b", "c", "d", "e", "f", "plain", "o", "p"]
    );

    let unknown = init_producer_id(&mut client, 1 << 40, 0);
    assert_eq!(unknown.error_code, ErrorCode::UnknownProducerId);
    let metrics = broker.metrics();
    assert_eq!(metrics.expect_sum(DUPLICATES), 4.0);
    assert_eq!(metrics.expect_sum(SEQUENCE_ERRORS), 4.0);
    assert_eq!(metrics.expect_sum(FENCED), 1.0);
    assert_eq!(metrics.expect_sum("weir_producers_remembered"), 2.0);
}

#[test]
fn the_producer_table_is_bounded_and_idle_producers_expire() {
    let options = BrokerOptions::with_cores(1).args([
        "--producers-per-partition-max",
        "1",
        "--maintenance-interval-ms",
        "20",
    ]);
    let mut broker = BrokerProcess::start(options);
    let mut client = WireClient::connect_and_handshake(broker.shard_address(0));
    let topic_id = client.create_topic("bounded", 1, FlushPolicy::Always);
    let (first, _) = new_producer_id(&mut client);
    let (second, _) = new_producer_id(&mut client);
    let batch = producer_batch(first, 0, 0, &["a"]);
    assert_eq!(client.produce(topic_id, 0, batch.clone()).base_offset, 0);
    assert_eq!(
        client
            .produce(topic_id, 0, producer_batch(second, 0, 0, &["b"]))
            .base_offset,
        1
    );
    // The table holds one producer: `first` was evicted, so its resent batch is not recognised
    // (an unknown producer is accepted at any sequence) and is stored again.
    assert_eq!(client.produce(topic_id, 0, batch).base_offset, 2);
    let metrics = broker.metrics();
    assert_eq!(metrics.expect_sum("weir_producer_evictions_total"), 2.0);
    assert_eq!(metrics.expect_sum("weir_producers_remembered"), 1.0);
    assert_eq!(metrics.expect_sum(DUPLICATES), 0.0);

    broker.terminate();
    let mut options = BrokerOptions::with_cores(1).args(["--producer-idle-ms-max", "1"]);
    options.data_dir = Some(broker.data_dir().to_path_buf());
    options
        .extra_args
        .extend(["--maintenance-interval-ms".to_string(), "20".to_string()]);
    let broker = BrokerProcess::start(options);
    weir_tests::broker::wait_for_metrics(
        &broker,
        Duration::from_secs(10),
        "idle producers expire",
        |metrics| {
            metrics.expect_sum("weir_producer_expirations_total") >= 1.0
                && metrics.expect_sum("weir_producers_remembered") == 0.0
        },
    );
}

fn partition_dir(broker: &BrokerProcess, topic_id: u32, name: &str) -> std::path::PathBuf {
    broker
        .data_dir()
        .join("topics")
        .join(format!("{topic_id}-{name}"))
        .join("0")
}

fn files_with_extension(dir: &std::path::Path, extension: &str) -> usize {
    std::fs::read_dir(dir)
        .expect("partition directory")
        .filter(|entry| {
            entry.as_ref().is_ok_and(|entry| {
                entry
                    .path()
                    .extension()
                    .is_some_and(|found| found == extension)
            })
        })
        .count()
}

fn snapshots(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .expect("partition directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "snapshot")
        })
        .collect();
    found.sort();
    found
}

#[test]
fn producer_state_survives_sigkill_and_a_damaged_snapshot() {
    let mut broker = BrokerProcess::start_with_cores(1);
    let mut client = WireClient::connect_and_handshake(broker.shard_address(0));
    let topic_id = client.create_topic("kept", 1, FlushPolicy::Always);
    let (producer_id, epoch) = new_producer_id(&mut client);
    let mut sent = Vec::new();
    let mut sequence = 0;
    for (index, values) in [&["a", "b"][..], &["c"], &["d", "e", "f"], &["g", "h"]]
        .iter()
        .enumerate()
    {
        let batch = producer_batch(producer_id, epoch, sequence, values);
        let stored = client.produce(topic_id, 0, batch.clone());
        assert_eq!(stored.error_code, ErrorCode::None, "batch {index}");
        sent.push((batch, stored.base_offset));
        sequence += values.len() as i32;
    }
    let expected = ["a", "b", "c", "d", "e", "f", "g", "h"];

    // A crash: no snapshot was written at close, the state comes from the log's batch headers.
    broker.kill_9();
    broker.restart();
    let mut client = WireClient::connect_and_handshake(broker.shard_address(0));
    let (last, last_offset) = sent.last().cloned().expect("a batch");
    let again = client.produce(topic_id, 0, last.clone());
    assert_eq!(
        (again.error_code, again.base_offset),
        (ErrorCode::None, last_offset),
        "after SIGKILL the resent last batch is answered with its original offset: {}",
        again.error_message
    );
    let (older, older_offset) = sent[1].clone();
    assert_eq!(client.produce(topic_id, 0, older).base_offset, older_offset);
    let gap = client.produce(
        topic_id,
        0,
        producer_batch(producer_id, epoch, sequence + 1, &["x"]),
    );
    assert_eq!(
        gap.error_code,
        ErrorCode::OutOfOrderSequence,
        "{}",
        gap.error_message
    );
    assert_eq!(
        stored_values(&mut client, topic_id, 0),
        expected,
        "nothing stored twice"
    );
    let (after_crash_id, _) = new_producer_id(&mut client);
    assert!(
        after_crash_id > producer_id,
        "ids are not reused after a crash"
    );

    // A clean shutdown writes a snapshot at the log end; the next open loads it.
    broker.terminate();
    let dir = partition_dir(&broker, topic_id, "kept");
    let written = snapshots(&dir);
    let at_end = dir.join(format!("{:020}.snapshot", expected.len()));
    assert!(
        written.contains(&at_end),
        "a snapshot at the log end: {written:?}"
    );
    broker.restart();
    let mut client = WireClient::connect_and_handshake(broker.shard_address(0));
    assert_eq!(
        client.produce(topic_id, 0, last.clone()).base_offset,
        last_offset
    );

    // A damaged snapshot is skipped: the state is rebuilt from the log instead.
    broker.terminate();
    for snapshot in snapshots(&dir) {
        let mut bytes = std::fs::read(&snapshot).expect("read snapshot");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&snapshot, bytes).expect("damage snapshot");
    }
    broker.restart();
    let mut client = WireClient::connect_and_handshake(broker.shard_address(0));
    let again = client.produce(topic_id, 0, last);
    assert_eq!(
        (again.error_code, again.base_offset),
        (ErrorCode::None, last_offset)
    );
    let next = client.produce(
        topic_id,
        0,
        producer_batch(producer_id, epoch, sequence, &["i"]),
    );
    assert_eq!((next.error_code, next.base_offset), (ErrorCode::None, 8));
    let mut all = expected.to_vec();
    all.push("i");
    assert_eq!(stored_values(&mut client, topic_id, 0), all);
    let (after_restarts_id, _) = new_producer_id(&mut client);
    assert!(
        after_restarts_id > after_crash_id,
        "ids are not reused after restarts"
    );
}

#[test]
fn snapshots_follow_segment_rolls_and_retention() {
    let options = BrokerOptions::with_cores(1).args([
        "--batch-bytes-max",
        "16384",
        "--maintenance-interval-ms",
        "20",
    ]);
    let mut broker = BrokerProcess::start(options);
    let mut client = WireClient::connect_and_handshake(broker.shard_address(0));
    let created = client.call_ok(&CreateTopicRequest {
        name: "rolled".to_string(),
        partition_count: 1,
        config: TopicConfig {
            flush: FlushPolicy::Always,
            retention_bytes: Some(256 * 1024),
            retention_ms: None,
            segment_bytes: 64 * 1024,
            segment_ms: None,
        }
        .into(),
    });
    assert_eq!(
        created.error_code,
        ErrorCode::None,
        "{}",
        created.error_message
    );
    let topic_id = created.topic_id;
    let dir = partition_dir(&broker, topic_id, "rolled");
    let (producer_id, epoch) = new_producer_id(&mut client);
    let value = "v".repeat(4000);
    let values = [value.as_str(), value.as_str()];
    let mut sequence = 0;
    let mut last = None;
    // About 8 KiB a batch and 64 KiB segments: a roll every 8 batches, 10 segments in all, of
    // which retention keeps about 256 KiB.
    for _ in 0..80 {
        let batch = producer_batch(producer_id, epoch, sequence, &values);
        let stored = client.produce(topic_id, 0, batch.clone());
        assert_eq!(
            stored.error_code,
            ErrorCode::None,
            "{}",
            stored.error_message
        );
        last = Some((batch, stored.base_offset));
        sequence += 2;
        // Each roll gets its snapshot at the next maintenance tick: wait for it before the
        // next roll (a batch is an eighth of a segment), so every roll is seen.
        wait_until(Duration::from_secs(10), "a snapshot for every roll", || {
            snapshots(&dir).len() + 1 >= files_with_extension(&dir, "log")
        });
    }
    wait_until(
        Duration::from_secs(10),
        "retention deletes old segments and their snapshots",
        || {
            let start = log_start(&mut client, topic_id);
            let names = snapshots(&dir);
            start > 0
                && names.len() >= 2
                && names
                    .iter()
                    .filter(|path| snapshot_offset(path) < start)
                    .count()
                    <= 1
        },
    );
    // The newest snapshot bounds the scan at the next open; the state is intact after a crash.
    broker.kill_9();
    broker.restart();
    let mut client = WireClient::connect_and_handshake(broker.shard_address(0));
    let (batch, offset) = last.expect("a batch");
    let again = client.produce(topic_id, 0, batch);
    assert_eq!(
        (again.error_code, again.base_offset),
        (ErrorCode::None, offset)
    );
    let gap = client.produce(
        topic_id,
        0,
        producer_batch(producer_id, epoch, sequence + 2, &["x"]),
    );
    assert_eq!(gap.error_code, ErrorCode::OutOfOrderSequence);
}

fn log_start(client: &mut WireClient, topic_id: u32) -> i64 {
    client.fetch(topic_id, 0, 0).log_start_offset
}

fn snapshot_offset(path: &std::path::Path) -> i64 {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .expect("a snapshot named by its offset")
}

/// What the proxy does to the response of one Produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Swallow it: the client's request times out and it resends on the same connection.
    DropResponse,
    /// Swallow it and close the client's connection: the client reconnects and resends.
    DropResponseAndConnection,
    /// Close the connection as soon as the request is forwarded, without waiting for the
    /// broker: the resent batch may arrive while the original is still being appended.
    CloseAfterRequest,
}

/// Shared by every connection of the proxy.
struct ProxyState {
    /// Broker shard address → the proxy's address in front of it.
    addresses: HashMap<String, String>,
    /// Produce request number (from 0, over all connections) → fault.
    faults: HashMap<usize, Fault>,
    produce_requests: AtomicUsize,
    /// Responses the broker sent that the client never got.
    responses_dropped: AtomicUsize,
    /// Faults that happened, of every kind.
    faults_done: AtomicUsize,
    metadata_rewrites: AtomicUsize,
}

/// Starts one proxy listener per broker shard; returns the shared state.
async fn start_proxy(upstreams: &[SocketAddr], faults: HashMap<usize, Fault>) -> Arc<ProxyState> {
    let mut listeners = Vec::new();
    let mut addresses = HashMap::new();
    for upstream in upstreams {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let local = listener.local_addr().expect("proxy address");
        addresses.insert(upstream.to_string(), local.to_string());
        listeners.push((listener, *upstream));
    }
    let state = Arc::new(ProxyState {
        addresses,
        faults,
        produce_requests: AtomicUsize::new(0),
        responses_dropped: AtomicUsize::new(0),
        faults_done: AtomicUsize::new(0),
        metadata_rewrites: AtomicUsize::new(0),
    });
    for (listener, upstream) in listeners {
        let state = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(proxy_connection(client, upstream, state.clone()));
            }
        });
    }
    state
}

/// Reads one whole frame (length prefix included), or `None` at a clean end of stream.
async fn read_frame(reader: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).await.ok()?;
    let length = u32::from_be_bytes(prefix) as usize;
    let mut frame = vec![0u8; 4 + length];
    frame[..4].copy_from_slice(&prefix);
    reader.read_exact(&mut frame[4..]).await.ok()?;
    Some(frame)
}

async fn proxy_connection(client: TcpStream, upstream: SocketAddr, state: Arc<ProxyState>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Correlation id → Produce request number, for the requests of this connection.
    let produces: Arc<Mutex<HashMap<u32, usize>>> = Arc::default();
    let requests = forward_requests(client_read, server_write, produces.clone(), state.clone());
    let responses = forward_responses(server_read, client_write, produces, state);
    // Whichever direction ends first ends the connection: dropping the halves closes both.
    tokio::select! {
        _ = requests => {}
        _ = responses => {}
    }
}

async fn forward_requests(
    mut client: OwnedReadHalf,
    mut server: OwnedWriteHalf,
    produces: Arc<Mutex<HashMap<u32, usize>>>,
    state: Arc<ProxyState>,
) {
    while let Some(frame) = read_frame(&mut client).await {
        let mut buffer = BytesMut::from(&frame[..]);
        let decoded = RequestFrameDecoder::new(FrameDecoderConfig::default())
            .decode(&mut buffer)
            .expect("the client sends valid frames")
            .expect("a whole frame");
        if decoded.header.api_key() == Some(ApiKey::Produce) {
            let number = state.produce_requests.fetch_add(1, Ordering::SeqCst);
            produces
                .lock()
                .expect("produces")
                .insert(decoded.header.correlation_id(), number);
        }
        let cut = decoded.header.api_key() == Some(ApiKey::Produce)
            && produces
                .lock()
                .expect("produces")
                .get(&decoded.header.correlation_id())
                .and_then(|number| state.faults.get(number))
                == Some(&Fault::CloseAfterRequest);
        if server.write_all(&frame).await.is_err() {
            return;
        }
        if cut {
            state.faults_done.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

async fn forward_responses(
    mut server: OwnedReadHalf,
    mut client: OwnedWriteHalf,
    produces: Arc<Mutex<HashMap<u32, usize>>>,
    state: Arc<ProxyState>,
) {
    while let Some(mut frame) = read_frame(&mut server).await {
        let mut buffer = BytesMut::from(&frame[..]);
        let decoded = ResponseFrameDecoder::new(FrameDecoderConfig::default())
            .decode(&mut buffer)
            .expect("the broker sends valid frames")
            .expect("a whole frame");
        let header = decoded.header;
        match header.api_key() {
            Some(ApiKey::Metadata) if header.error_code().is_none() => {
                let mut metadata: MetadataResponse =
                    decode_response(&header, &decoded.body).expect("a metadata response");
                for shard in &mut metadata.shards {
                    let proxied = state.addresses.get(&shard.address).unwrap_or_else(|| {
                        panic!("no proxy in front of shard address {}", shard.address)
                    });
                    shard.address = proxied.clone();
                }
                let mut rewritten = BytesMut::new();
                metadata
                    .encode_frame(
                        header.correlation_id(),
                        header.throttle_time_ms(),
                        &mut rewritten,
                    )
                    .expect("encode metadata");
                frame = rewritten.to_vec();
                state.metadata_rewrites.fetch_add(1, Ordering::SeqCst);
            }
            Some(ApiKey::Produce) => {
                let number = produces
                    .lock()
                    .expect("produces")
                    .remove(&header.correlation_id());
                match number.and_then(|number| state.faults.get(&number)) {
                    Some(Fault::DropResponse) => {
                        state.faults_done.fetch_add(1, Ordering::SeqCst);
                        state.responses_dropped.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    Some(Fault::DropResponseAndConnection) => {
                        state.faults_done.fetch_add(1, Ordering::SeqCst);
                        state.responses_dropped.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Some(Fault::CloseAfterRequest) | None => {}
                }
            }
            _ => {}
        }
        if client.write_all(&frame).await.is_err() {
            return;
        }
    }
}

#[test]
fn retries_through_a_lossy_proxy_store_every_record_once_in_order() {
    const PARTITIONS: u32 = 4;
    const WAVES: usize = 40;
    const RECORDS_PER_WAVE: usize = 12;
    let broker = BrokerProcess::start_with_cores(2);
    let faults: HashMap<usize, Fault> = [
        (2, Fault::DropResponse),
        (5, Fault::DropResponseAndConnection),
        (9, Fault::CloseAfterRequest),
        (14, Fault::DropResponse),
        (20, Fault::DropResponseAndConnection),
        (24, Fault::CloseAfterRequest),
        (27, Fault::DropResponse),
        (35, Fault::DropResponseAndConnection),
        (41, Fault::CloseAfterRequest),
    ]
    .into_iter()
    .collect();
    let fault_count = faults.len();
    // The broker answered these, so their batches are in the log before the resend arrives.
    let answered_faults = faults
        .values()
        .filter(|fault| **fault != Fault::CloseAfterRequest)
        .count();
    runtime().block_on(async {
        let proxy = start_proxy(&broker.addresses().shards, faults).await;
        let bootstrap = proxy.addresses[&broker.shard_address(0).to_string()].clone();
        let config = ClientConfig {
            client_id: "idempotence-test".to_string(),
            connection: ConnectionConfig {
                // A swallowed response times out quickly and the batch is resent.
                request_timeout_ms: 1_000,
                ..ConnectionConfig::default()
            },
            ..ClientConfig::new(bootstrap)
        };
        let cluster = Cluster::connect(config)
            .await
            .expect("connect through the proxy");
        let settings = TopicSettings::new()
            .partitions(PARTITIONS)
            .flush(FlushPolicy::Always);
        Admin::new(cluster.clone())
            .create_topic("orders", &settings)
            .await
            .expect("create topic");
        let producer = Producer::new(
            cluster.clone(),
            ProducerConfig {
                linger_ms: 1,
                retry_backoff_ms_initial: 10,
                retry_backoff_ms_max: 100,
                ..ProducerConfig::default()
            },
        )
        .expect("producer");
        assert!(producer.config().is_idempotent(), "idempotent by default");
        let mut sent: BTreeMap<u32, Vec<(String, i64)>> = BTreeMap::new();
        for wave in 0..WAVES {
            let mut deliveries = Vec::new();
            for index in 0..RECORDS_PER_WAVE {
                let key = format!("key-{}", (wave * RECORDS_PER_WAVE + index) % 23);
                let value = format!("record-{wave}-{index}");
                let delivery = producer
                    .enqueue("orders", Some(key.as_bytes()), value.as_bytes(), &[])
                    .await
                    .expect("enqueue");
                deliveries.push((value, delivery));
            }
            producer.flush().await;
            for (value, delivery) in deliveries {
                let written = delivery
                    .wait()
                    .await
                    .unwrap_or_else(|error| panic!("{value} was not delivered: {error}"));
                sent.entry(written.partition)
                    .or_default()
                    .push((value, written.offset));
            }
        }
        producer.close().await;
        assert_eq!(
            proxy.faults_done.load(Ordering::SeqCst),
            fault_count,
            "every planned fault happened ({} produce requests went through the proxy)",
            proxy.produce_requests.load(Ordering::SeqCst)
        );
        assert_eq!(
            proxy.responses_dropped.load(Ordering::SeqCst),
            answered_faults
        );
        assert!(proxy.metadata_rewrites.load(Ordering::SeqCst) > 0);

        // Read every partition directly from the broker.
        let metadata = cluster.refresh_metadata().await.expect("metadata");
        let topic = metadata.topic("orders").expect("topic").clone();
        drop(cluster);
        let total: usize = sent.values().map(Vec::len).sum();
        assert_eq!(total, WAVES * RECORDS_PER_WAVE);
        for (partition, records) in &sent {
            let owner = topic.owner_shards[*partition as usize] as usize;
            let address = broker.shard_address(owner);
            let (topic_id, partition) = (topic.topic_id, *partition);
            let stored = tokio::task::spawn_blocking(move || {
                let mut client = WireClient::connect_and_handshake(address);
                client.read_partition(topic_id, partition, 0)
            })
            .await
            .expect("read partition");
            let stored: Vec<(String, i64)> = stored
                .into_iter()
                .map(|record| {
                    let value = String::from_utf8(record.value.expect("value")).expect("utf-8");
                    (value, record.offset)
                })
                .collect();
            assert_eq!(
                &stored, records,
                "partition {partition}: every record once, in send order, at its reported offset"
            );
        }
    });
    let duplicates = broker.metrics().expect_sum(DUPLICATES);
    assert!(
        duplicates >= answered_faults as f64,
        "every swallowed response's batches came back as duplicates: {duplicates} < {answered_faults}"
    );
    assert_eq!(broker.metrics().expect_sum(SEQUENCE_ERRORS), 0.0);
}
