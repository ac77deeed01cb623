//! The client against a small in-process fake broker speaking the real wire frames.
//!
//! The fake serves one shard on a loopback port: ApiVersions, Metadata (topic "events" with
//! `PARTITIONS` partitions), Produce (assigning offsets and keeping the batches), Fetch (serving
//! them back, holding an empty answer for `max_wait_ms` like a long poll), ListOffsets and
//! CreateTopic (recording the request), InitProducerId (id 1; a bump gives the next epoch; it
//! checks no sequences), and a one-member group coordinator (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch) that logs each call in order. Tests can make it fail
//! produces with a chosen code, hold produce answers, drop connections, or answer heartbeats
//! with a chosen error code. On request it checks producer sequences like an idempotent broker
//! (a retried batch is answered with its original offset, a gap with `out_of_order_sequence`),
//! waits until several produce requests are on the wire before answering the first, or drops
//! the connection right after storing a chosen produce request (its answer is lost).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use weir_client::{
    partition_for_key, Admin, AssignmentStrategy, ClientConfig, Cluster, Connection,
    ConnectionConfig, Consumer, ConsumerConfig, Error, ErrorCode, FlushPolicy, GroupSettings,
    HashRing, Limit, Partitioning, ProduceError, Producer, ProducerConfig, RebalanceListener,
    Retriable, SeekTo, TopicSettings, VIRTUAL_NODES_DEFAULT,
};
use weir_proto::batch::{set_base_offset, BatchIter, BatchLimits};
use weir_proto::wire::{
    ApiVersionsResponse, CreateTopicRequest, CreateTopicResponse, ErrorResponse,
    FetchPartitionResult, FetchRecords, FetchResponse, FrameDecoderConfig, HeartbeatResponse,
    InitProducerIdRequest, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse,
    ListOffsetsPartitionResult, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetCommitPartitionResult, OffsetCommitResponse, OffsetFetchPartitionResult,
    OffsetFetchResponse, OffsetQuery, PartitionMetadata, ProducePartitionResult, ProduceResponse,
    Request, RequestFrameDecoder, ResponseMessage, ShardMetadata, SyncGroupResponse, TopicMetadata,
    TopicPartition as GroupTopicPartition,
};

const TOPIC: &str = "events";
const TOPIC_ID: u32 = 7;
const PARTITIONS: u32 = 3;
/// Every wait in these tests ends by this deadline, so a broken client fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct FakeState {
    /// Stored batches per partition, with the broker-assigned base offsets written in.
    logs: HashMap<u32, Vec<Bytes>>,
    next_offset: HashMap<u32, i64>,
    /// Produce entries still to be answered with `not_owner` (and not stored).
    produce_failures_left: u32,
    /// While true, produce requests are read but not answered.
    hold_produce: bool,
    produce_requests: u32,
    /// Every CreateTopic received, in order.
    create_topic_requests: Vec<CreateTopicRequest>,
    /// Codes the next produce entries are answered with (not stored), first to last.
    produce_errors: VecDeque<ErrorCode>,
    /// When true, produce entries with producer fields are checked like an idempotent broker.
    check_sequences: bool,
    /// Per partition: the producer id, epoch and next sequence, and the last 5 batches stored
    /// as `(base sequence, base offset)`.
    sequences: HashMap<u32, ProducerSequence>,
    /// How many entries were answered `out_of_order_sequence` by the sequence check.
    out_of_order_answers: u32,
    /// When set, the first produce request is answered only once this many produce requests
    /// (it included) have arrived on its connection.
    pipeline_before_answer: Option<usize>,
    /// When set, the produce request with this number (counting from 1) is stored and then the
    /// connection is closed without an answer.
    drop_after_storing: Option<u32>,
    /// Every InitProducerId received, in order.
    init_producer_id_requests: Vec<InitProducerIdRequest>,
    /// The coordinator's current generation (0 before the first join).
    generation: i32,
    /// What heartbeats are answered with until the next join.
    heartbeat_answer: ErrorCode,
    /// Committed offsets per partition.
    committed: HashMap<u32, i64>,
    /// When set, Metadata gives the topic this many partitions instead of `PARTITIONS`.
    topic_partitions: Option<u32>,
    /// When true, Metadata leaves the topic out (as if it was deleted).
    topic_missing: bool,
    /// Group calls and rebalance callbacks, in the order they happened.
    log: Arc<Mutex<Vec<String>>>,
}

#[derive(Default)]
struct ProducerSequence {
    producer: (i64, i16),
    next: i32,
    recent: VecDeque<(i32, i64)>,
}

/// The number of whole frames at the start of `buffer`.
fn complete_frames(buffer: &[u8]) -> usize {
    let mut at = 0;
    let mut frames = 0;
    while buffer.len() >= at + 4 {
        let length =
            u32::from_be_bytes([buffer[at], buffer[at + 1], buffer[at + 2], buffer[at + 3]]);
        if buffer.len() < at + 4 + length as usize {
            break;
        }
        at += 4 + length as usize;
        frames += 1;
    }
    frames
}

struct FakeBroker {
    address: String,
    state: Arc<Mutex<FakeState>>,
    released: Arc<Notify>,
}

impl FakeBroker {
    async fn start() -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("local address").to_string();
        let state = Arc::new(Mutex::new(FakeState::default()));
        let released = Arc::new(Notify::new());
        let broker = FakeBroker {
            address: address.clone(),
            state: state.clone(),
            released: released.clone(),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(
                    stream,
                    address.clone(),
                    state.clone(),
                    released.clone(),
                ));
            }
        });
        broker
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state")
    }

    fn records_stored(&self, partition: u32) -> usize {
        let state = self.state();
        let limits = BatchLimits::default();
        state.logs.get(&partition).map_or(0, |batches| {
            batches
                .iter()
                .flat_map(|batch| BatchIter::new(batch, &limits))
                .map(|item| item.expect("valid batch").0.records_count as usize)
                .sum()
        })
    }
}

async fn serve(
    mut stream: TcpStream,
    address: String,
    state: Arc<Mutex<FakeState>>,
    released: Arc<Notify>,
) {
    let mut decoder = RequestFrameDecoder::new(FrameDecoderConfig::default());
    let mut buffer = BytesMut::new();
    loop {
        while let Some(frame) = decoder
            .decode(&mut buffer)
            .expect("client frames are valid")
        {
            let correlation_id = frame.header.correlation_id();
            let request =
                Request::decode(&frame.header, &frame.body).expect("client requests decode");
            let mut out = BytesMut::new();
            match request {
                Request::ApiVersions(_) => ApiVersionsResponse {
                    apis: ApiVersionsResponse::supported_apis(),
                    broker_name: "fake".to_string(),
                    broker_version: "0".to_string(),
                }
                .encode_frame(correlation_id, 0, &mut out),
                Request::Metadata(_) => {
                    let mut response = metadata(&address);
                    let (partitions, missing) = {
                        let state = state.lock().expect("fake state");
                        (state.topic_partitions, state.topic_missing)
                    };
                    if let Some(partitions) = partitions {
                        response.topics[0].partitions = (0..partitions)
                            .map(|partition| PartitionMetadata {
                                partition,
                                owner_shard: 0,
                            })
                            .collect();
                    }
                    if missing {
                        response.topics.clear();
                    }
                    response.encode_frame(correlation_id, 0, &mut out)
                }
                Request::Produce(produce) => {
                    // Registered before `hold_produce` is read, so a release between the read
                    // and the wait is not missed.
                    let release = released.notified();
                    tokio::pin!(release);
                    release.as_mut().enable();
                    let (hold, pipeline, drop_now) = {
                        let mut state = state.lock().expect("fake state");
                        state.produce_requests += 1;
                        let number = state.produce_requests;
                        (
                            state.hold_produce,
                            state.pipeline_before_answer.take(),
                            state.drop_after_storing == Some(number),
                        )
                    };
                    if hold {
                        release.await;
                    }
                    if let Some(requests) = pipeline {
                        // This request and the next `requests - 1` must all be on the wire.
                        while complete_frames(&buffer) + 1 < requests {
                            match tokio::time::timeout(DEADLINE, stream.read_buf(&mut buffer)).await
                            {
                                Ok(Ok(read)) if read > 0 => {}
                                _ => return,
                            }
                        }
                    }
                    let response = store(&state, produce.entries);
                    if drop_now {
                        return;
                    }
                    if !produce.acks.expects_response() {
                        continue;
                    }
                    response.encode_frame(correlation_id, 0, &mut out)
                }
                Request::Fetch(fetch) => {
                    let mut response = read(&state, &fetch.entries);
                    if response.records_bytes() == 0 {
                        tokio::time::sleep(Duration::from_millis(u64::from(fetch.max_wait_ms)))
                            .await;
                        response = read(&state, &fetch.entries);
                    }
                    response.encode_frame(correlation_id, 0, &mut out)
                }
                Request::ListOffsets(list) => {
                    let state = state.lock().expect("fake state");
                    let entries = list
                        .entries
                        .iter()
                        .map(|entry| ListOffsetsPartitionResult {
                            topic_id: entry.topic_id,
                            partition: entry.partition,
                            error_code: ErrorCode::None,
                            error_message: String::new(),
                            offset: match entry.query {
                                OffsetQuery::Earliest => 0,
                                _ => state
                                    .next_offset
                                    .get(&entry.partition)
                                    .copied()
                                    .unwrap_or(0),
                            },
                            timestamp_ms: -1,
                        })
                        .collect();
                    ListOffsetsResponse { entries }.encode_frame(correlation_id, 0, &mut out)
                }
                Request::CreateTopic(create) => {
                    let mut state = state.lock().expect("fake state");
                    state.create_topic_requests.push(create);
                    CreateTopicResponse {
                        error_code: ErrorCode::None,
                        error_message: String::new(),
                        topic_id: 100 + state.create_topic_requests.len() as u32,
                    }
                    .encode_frame(correlation_id, 0, &mut out)
                }
                Request::InitProducerId(init) => {
                    state
                        .lock()
                        .expect("fake state")
                        .init_producer_id_requests
                        .push(init);
                    // One producer id; a bump (KIP-360) gives the next epoch.
                    let (producer_id, producer_epoch) = if init.producer_id < 0 {
                        (1, 0)
                    } else {
                        (init.producer_id, init.producer_epoch + 1)
                    };
                    InitProducerIdResponse {
                        producer_id,
                        producer_epoch,
                        ..InitProducerIdResponse::default()
                    }
                    .encode_frame(correlation_id, 0, &mut out)
                }
                Request::JoinGroup(join) => {
                    let mut state = state.lock().expect("fake state");
                    state.generation += 1;
                    state.heartbeat_answer = ErrorCode::None;
                    let mut owned: Vec<u32> =
                        join.owned.iter().map(|entry| entry.partition).collect();
                    owned.sort_unstable();
                    push_log(
                        &state,
                        format!(
                            "join member={:?} strategies={:?} topics={:?} owned={owned:?}",
                            join.member_id, join.strategies, join.topics
                        ),
                    );
                    JoinGroupResponse {
                        error_code: ErrorCode::None,
                        error_message: String::new(),
                        generation: state.generation,
                        member_id: "member-1".to_string(),
                        leader_id: "member-1".to_string(),
                        strategy: join.strategies.first().cloned().unwrap_or_default(),
                        members: vec!["member-1".to_string()],
                    }
                    .encode_frame(correlation_id, 0, &mut out)
                }
                Request::SyncGroup(sync) => {
                    let state = state.lock().expect("fake state");
                    push_log(&state, format!("sync generation={}", sync.generation));
                    SyncGroupResponse {
                        error_code: ErrorCode::None,
                        error_message: String::new(),
                        assignment: (0..PARTITIONS)
                            .map(|partition| GroupTopicPartition {
                                topic_id: TOPIC_ID,
                                partition,
                            })
                            .collect(),
                    }
                    .encode_frame(correlation_id, 0, &mut out)
                }
                Request::Heartbeat(_) => {
                    let state = state.lock().expect("fake state");
                    HeartbeatResponse {
                        error_code: state.heartbeat_answer,
                        error_message: String::new(),
                    }
                    .encode_frame(correlation_id, 0, &mut out)
                }
                Request::LeaveGroup(leave) => {
                    let state = state.lock().expect("fake state");
                    push_log(&state, format!("leave member={:?}", leave.member_id));
                    LeaveGroupResponse {
                        error_code: ErrorCode::None,
                        error_message: String::new(),
                    }
                    .encode_frame(correlation_id, 0, &mut out)
                }
                Request::OffsetCommit(commit) => {
                    let mut state = state.lock().expect("fake state");
                    let total: i64 = commit.entries.iter().map(|entry| entry.offset).sum();
                    push_log(
                        &state,
                        format!(
                            "commit generation={} member={:?} total={total}",
                            commit.generation, commit.member_id
                        ),
                    );
                    for entry in &commit.entries {
                        state.committed.insert(entry.partition, entry.offset);
                    }
                    OffsetCommitResponse {
                        entries: commit
                            .entries
                            .iter()
                            .map(|entry| OffsetCommitPartitionResult {
                                topic_id: entry.topic_id,
                                partition: entry.partition,
                                error_code: ErrorCode::None,
                                error_message: String::new(),
                            })
                            .collect(),
                    }
                    .encode_frame(correlation_id, 0, &mut out)
                }
                Request::OffsetFetch(fetch) => {
                    let state = state.lock().expect("fake state");
                    OffsetFetchResponse {
                        error_code: ErrorCode::None,
                        error_message: String::new(),
                        entries: fetch
                            .entries
                            .iter()
                            .map(|entry| OffsetFetchPartitionResult {
                                topic_id: entry.topic_id,
                                partition: entry.partition,
                                error_code: ErrorCode::None,
                                error_message: String::new(),
                                offset: state
                                    .committed
                                    .get(&entry.partition)
                                    .copied()
                                    .unwrap_or(-1),
                                metadata: String::new(),
                            })
                            .collect(),
                    }
                    .encode_frame(correlation_id, 0, &mut out)
                }
                _ => ErrorResponse::new(&frame.header, ErrorCode::UnknownApiKey, "not in the fake")
                    .encode_frame(correlation_id, 0, &mut out),
            }
            .expect("encode response");
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
        match stream.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn push_log(state: &FakeState, entry: String) {
    state.log.lock().expect("fake log").push(entry);
}

fn metadata(address: &str) -> MetadataResponse {
    MetadataResponse {
        broker_id: 0,
        shared_address: address.to_string(),
        shards: vec![ShardMetadata {
            shard: 0,
            address: address.to_string(),
        }],
        topics: vec![TopicMetadata {
            error_code: ErrorCode::None,
            error_message: String::new(),
            name: TOPIC.to_string(),
            topic_id: TOPIC_ID,
            config: None,
            partitions: (0..PARTITIONS)
                .map(|partition| PartitionMetadata {
                    partition,
                    owner_shard: 0,
                })
                .collect(),
        }],
    }
}

fn store(
    state: &Mutex<FakeState>,
    entries: Vec<weir_proto::wire::ProducePartition>,
) -> ProduceResponse {
    let mut state = state.lock().expect("fake state");
    let limits = BatchLimits::default();
    let mut results = Vec::new();
    for entry in entries {
        let scripted = state
            .produce_errors
            .pop_front()
            .filter(|code| !code.is_none());
        if let Some(error_code) = scripted {
            results.push(ProducePartitionResult {
                topic_id: entry.topic_id,
                partition: entry.partition,
                error_code,
                error_message: format!("the fake answers {error_code}"),
                base_offset: -1,
                log_start_offset: -1,
            });
            continue;
        }
        if state.produce_failures_left > 0 {
            state.produce_failures_left -= 1;
            results.push(ProducePartitionResult {
                topic_id: entry.topic_id,
                partition: entry.partition,
                error_code: ErrorCode::NotOwner,
                error_message: "moved".to_string(),
                base_offset: -1,
                log_start_offset: -1,
            });
            continue;
        }
        let base_offset = state
            .next_offset
            .get(&entry.partition)
            .copied()
            .unwrap_or(0);
        if state.check_sequences {
            if let Some(answer) = check_sequence(&mut state, &entry, base_offset) {
                results.push(answer);
                continue;
            }
        }
        let mut next = base_offset;
        for item in BatchIter::new(&entry.records, &limits) {
            let (info, bytes) = item.expect("the client sends valid batches");
            let mut stored = bytes.to_vec();
            set_base_offset(&mut stored, next).expect("restamp");
            next += i64::from(info.records_count);
            state
                .logs
                .entry(entry.partition)
                .or_default()
                .push(Bytes::from(stored));
        }
        state.next_offset.insert(entry.partition, next);
        results.push(ProducePartitionResult {
            topic_id: entry.topic_id,
            partition: entry.partition,
            error_code: ErrorCode::None,
            error_message: String::new(),
            base_offset,
            log_start_offset: 0,
        });
    }
    ProduceResponse { entries: results }
}

/// Checks an entry's producer fields like an idempotent broker: `None` to store it (the state
/// then expects the next sequence), or the answer for a duplicate (its original offset) or a
/// sequence gap (`out_of_order_sequence`, nothing stored).
fn check_sequence(
    state: &mut FakeState,
    entry: &weir_proto::wire::ProducePartition,
    base_offset: i64,
) -> Option<ProducePartitionResult> {
    let limits = BatchLimits::default();
    let (info, _) = BatchIter::new(&entry.records, &limits)
        .next()?
        .expect("the client sends valid batches");
    if info.producer_id < 0 {
        return None;
    }
    let records = info.records_count;
    let answer = |error_code: ErrorCode, base_offset: i64| ProducePartitionResult {
        topic_id: entry.topic_id,
        partition: entry.partition,
        error_code,
        error_message: String::new(),
        base_offset,
        log_start_offset: 0,
    };
    let producer = (info.producer_id, info.producer_epoch);
    let sequence = state.sequences.entry(entry.partition).or_default();
    if sequence.producer != producer {
        *sequence = ProducerSequence {
            producer,
            ..ProducerSequence::default()
        };
    }
    if let Some(&(_, original)) = sequence
        .recent
        .iter()
        .find(|(base_sequence, _)| *base_sequence == info.base_sequence)
    {
        return Some(answer(ErrorCode::None, original));
    }
    if info.base_sequence != sequence.next {
        state.out_of_order_answers += 1;
        return Some(answer(ErrorCode::OutOfOrderSequence, -1));
    }
    sequence.next = info.base_sequence + records;
    sequence.recent.push_back((info.base_sequence, base_offset));
    if sequence.recent.len() > 5 {
        sequence.recent.pop_front();
    }
    None
}

fn read(state: &Mutex<FakeState>, entries: &[weir_proto::wire::FetchPartition]) -> FetchResponse {
    let state = state.lock().expect("fake state");
    let limits = BatchLimits::default();
    let entries = entries
        .iter()
        .map(|entry| {
            let mut records = FetchRecords::new();
            for batch in state.logs.get(&entry.partition).into_iter().flatten() {
                let (info, _) = BatchIter::new(batch, &limits)
                    .next()
                    .expect("one batch")
                    .expect("valid batch");
                if info.last_offset() >= entry.fetch_offset {
                    records.push(batch.clone());
                }
            }
            FetchPartitionResult {
                topic_id: entry.topic_id,
                partition: entry.partition,
                error_code: ErrorCode::None,
                error_message: String::new(),
                high_watermark: state
                    .next_offset
                    .get(&entry.partition)
                    .copied()
                    .unwrap_or(0),
                log_start_offset: 0,
                records,
            }
        })
        .collect();
    FetchResponse { entries }
}

fn client_config(address: &str) -> ClientConfig {
    ClientConfig::new(address)
}

/// Polls until the consumer has joined `generation`, within the test deadline.
async fn poll_until_generation(consumer: &mut Consumer, generation: i32) {
    within(async {
        while consumer.generation() != Some(generation) {
            consumer
                .poll(Duration::from_millis(50))
                .await
                .expect("poll");
        }
    })
    .await;
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .expect("the operation finished before the test deadline")
}

#[tokio::test]
async fn keyed_records_are_acknowledged_in_order_on_their_hash_partition_and_read_back() {
    let broker = FakeBroker::start().await;
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let producer = Producer::new(
        cluster.clone(),
        ProducerConfig {
            linger_ms: 2,
            batch_bytes_max: 1_024,
            ..ProducerConfig::default()
        },
    )
    .expect("producer");

    let mut deliveries = Vec::new();
    for index in 0..300 {
        let key = format!("key-{}", index % 17);
        let value = format!("value-{index}");
        let delivery = within(producer.enqueue(TOPIC, Some(key.as_bytes()), value.as_bytes(), &[]))
            .await
            .expect("accepted");
        assert_eq!(
            delivery.partition(),
            partition_for_key(key.as_bytes(), PARTITIONS)
        );
        deliveries.push((key, value, delivery));
    }
    within(producer.flush()).await;
    let mut next_offset = [0_i64; PARTITIONS as usize];
    let mut expected: Vec<Vec<(String, String)>> = vec![Vec::new(); PARTITIONS as usize];
    for (key, value, delivery) in deliveries {
        let metadata = within(delivery.wait()).await.expect("acknowledged");
        let partition = metadata.partition as usize;
        assert_eq!(
            metadata.offset, next_offset[partition],
            "offsets follow send order per partition"
        );
        next_offset[partition] += 1;
        expected[partition].push((key, value));
    }
    within(producer.close()).await;
    assert!(
        broker.state().produce_requests < 300,
        "records were batched"
    );

    let mut consumer = Consumer::new(cluster, ConsumerConfig::default());
    within(consumer.assign_all(TOPIC)).await.expect("assign");
    let mut consumed: Vec<Vec<(String, String)>> = vec![Vec::new(); PARTITIONS as usize];
    let mut total = 0;
    while total < 300 {
        let records = within(consumer.poll(Duration::from_millis(200)))
            .await
            .expect("poll");
        for record in records {
            assert_eq!(
                record.offset,
                consumed[record.partition as usize].len() as i64
            );
            let text = |bytes: Option<bytes::Bytes>| {
                String::from_utf8(bytes.expect("present").to_vec()).expect("utf-8")
            };
            consumed[record.partition as usize].push((text(record.key), text(record.value)));
            total += 1;
        }
    }
    assert_eq!(consumed, expected);
    for partition in 0..PARTITIONS {
        assert_eq!(
            consumer.position(TOPIC, partition),
            Some(next_offset[partition as usize])
        );
    }
}

/// Enqueues one record with `key` to `TOPIC` and returns the partition it was placed in.
async fn enqueue_keyed(producer: &Producer, key: &str) -> Result<u32, ProduceError> {
    producer
        .enqueue(TOPIC, Some(key.as_bytes()), b"value", &[])
        .await
        .map(|delivery| delivery.partition())
}

#[tokio::test]
async fn a_metadata_refresh_reaches_the_next_enqueue_and_an_unknown_topic_still_fails() {
    let broker = FakeBroker::start().await;
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    // A key that moves when the topic grows from 3 to 6 partitions.
    let key = (0..)
        .map(|index| format!("key-{index}"))
        .find(|key| partition_for_key(key.as_bytes(), 6) >= PARTITIONS)
        .expect("some key lands on a new partition");
    let before = within(enqueue_keyed(&producer, &key))
        .await
        .expect("accepted");
    assert_eq!(before, partition_for_key(key.as_bytes(), PARTITIONS));
    // Served from the producer's cache while the metadata does not change.
    assert_eq!(
        within(enqueue_keyed(&producer, &key))
            .await
            .expect("accepted"),
        before
    );

    // The topic grows; once the cluster refreshed, the very next record sees 6 partitions.
    broker.state().topic_partitions = Some(6);
    let generation = cluster.metadata_generation();
    within(cluster.refresh_metadata()).await.expect("refresh");
    assert_eq!(cluster.metadata_generation(), generation + 1);
    let after = within(enqueue_keyed(&producer, &key))
        .await
        .expect("accepted");
    assert_eq!(after, partition_for_key(key.as_bytes(), 6));
    assert_ne!(after, before);

    // A topic the broker does not know fails, cached topics or not.
    let unknown = within(producer.enqueue("no-such-topic", None, b"value", &[])).await;
    assert!(
        matches!(
            unknown,
            Err(ProduceError::Request(Error::UnknownTopic { ref topic })) if topic == "no-such-topic"
        ),
        "{unknown:?}"
    );
    // A cached topic that a refresh no longer lists fails too. (Its records so far are
    // delivered first: a batch left without an owner would be retried until it timed out.)
    within(producer.flush()).await;
    broker.state().topic_missing = true;
    within(cluster.refresh_metadata()).await.expect("refresh");
    let deleted = within(enqueue_keyed(&producer, &key)).await;
    assert!(
        matches!(
            deleted,
            Err(ProduceError::Request(Error::UnknownTopic { .. }))
        ),
        "{deleted:?}"
    );
    within(producer.close()).await;
}

/// `(producer id, epoch, base sequence)` of every batch stored in `partition`, in order.
fn producer_fields(broker: &FakeBroker, partition: u32) -> Vec<(i64, i16, i32)> {
    let state = broker.state();
    let limits = BatchLimits::default();
    state.logs.get(&partition).map_or(Vec::new(), |batches| {
        batches
            .iter()
            .flat_map(|batch| BatchIter::new(batch, &limits))
            .map(|item| {
                let (info, _) = item.expect("valid batch");
                (info.producer_id, info.producer_epoch, info.base_sequence)
            })
            .collect()
    })
}

#[tokio::test]
async fn an_idempotent_producer_numbers_batches_reuses_refused_sequences_bumps_on_a_gap_and_stops_when_fenced(
) {
    let broker = FakeBroker::start().await;
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let producer = Producer::new(
        cluster,
        ProducerConfig {
            linger_ms: 0,
            ..ProducerConfig::default()
        },
    )
    .expect("producer");
    let key = Bytes::from_static(b"one-key");
    let partition = partition_for_key(&key, PARTITIONS);
    let send = |value: &'static str| {
        producer.send(
            TOPIC,
            Some(key.clone()),
            Bytes::from_static(value.as_bytes()),
            &[],
        )
    };
    for value in ["a", "b", "c"] {
        within(send(value)).await.expect("delivered");
    }
    let first_id = broker.state().init_producer_id_requests.clone();
    assert_eq!(
        first_id,
        [InitProducerIdRequest::default()],
        "one id, asked once"
    );
    assert_eq!(
        producer_fields(&broker, partition),
        [(1, 0, 0), (1, 0, 1), (1, 0, 2)],
        "batches carry the id, epoch 0 and consecutive sequences"
    );

    // A refusal that stored nothing frees the batch's sequences for the next batch.
    broker
        .state()
        .produce_errors
        .push_back(ErrorCode::MessageTooLarge);
    within(send("refused"))
        .await
        .expect_err("message_too_large");
    within(send("d")).await.expect("delivered");
    assert_eq!(producer_fields(&broker, partition).last(), Some(&(1, 0, 3)));
    assert_eq!(broker.state().init_producer_id_requests.len(), 1, "no bump");

    // A sequence refusal fails that record; the epoch is bumped before the next batch, which
    // starts again at sequence 0.
    broker
        .state()
        .produce_errors
        .push_back(ErrorCode::OutOfOrderSequence);
    match within(send("out of order")).await {
        Err(ProduceError::Request(Error::Broker { code, .. })) => {
            assert_eq!(code, ErrorCode::OutOfOrderSequence)
        }
        other => panic!("expected out_of_order_sequence, got {other:?}"),
    }
    within(send("e")).await.expect("delivered after the bump");
    assert_eq!(
        broker.state().init_producer_id_requests.last(),
        Some(&InitProducerIdRequest {
            producer_id: 1,
            producer_epoch: 0
        }),
        "the bump names the current id and epoch"
    );
    assert_eq!(producer_fields(&broker, partition).last(), Some(&(1, 1, 0)));

    // Fenced: fatal, later sends fail without reaching the broker.
    broker
        .state()
        .produce_errors
        .push_back(ErrorCode::InvalidProducerEpoch);
    let fenced = within(send("fenced")).await.expect_err("fenced");
    assert!(!fenced.is_retriable());
    let requests = broker.state().produce_requests;
    let later = within(send("later")).await.expect_err("still fenced");
    assert!(
        later.to_string().contains("InvalidProducerEpoch"),
        "{later}"
    );
    assert_eq!(
        broker.state().produce_requests,
        requests,
        "nothing more was sent"
    );
    assert_eq!(producer_fields(&broker, partition).len(), 5);
}

#[tokio::test]
async fn consistent_hashing_places_keyed_records_where_the_ring_says() {
    let broker = FakeBroker::start().await;
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let invalid = Producer::new(
        cluster.clone(),
        ProducerConfig {
            partitioning: Partitioning::ConsistentHash { virtual_nodes: 0 },
            ..ProducerConfig::default()
        },
    );
    assert!(
        matches!(invalid, Err(Error::InvalidArgument(_))),
        "zero virtual nodes must be refused: {invalid:?}"
    );

    let producer = Producer::new(
        cluster.clone(),
        ProducerConfig {
            linger_ms: 2,
            partitioning: Partitioning::consistent_hash(),
            ..ProducerConfig::default()
        },
    )
    .expect("producer");
    let ring = HashRing::new(PARTITIONS, VIRTUAL_NODES_DEFAULT).expect("ring");
    let mut differs_from_key_hash = 0;
    for index in 0..200 {
        let key = format!("customer-{index}");
        let metadata = within(producer.send(
            TOPIC,
            Some(bytes::Bytes::from(key.clone())),
            bytes::Bytes::from_static(b"v"),
            &[],
        ))
        .await
        .expect("acknowledged");
        assert_eq!(metadata.partition, ring.partition_for(key.as_bytes()));
        differs_from_key_hash +=
            usize::from(metadata.partition != partition_for_key(key.as_bytes(), PARTITIONS));
    }
    assert!(
        differs_from_key_hash > 0,
        "the ring placement is not the key-hash placement"
    );
    within(producer.close()).await;
}

#[tokio::test]
async fn seeking_inside_a_batch_skips_the_records_before_the_offset() {
    let broker = FakeBroker::start().await;
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let producer = Producer::new(
        cluster.clone(),
        ProducerConfig {
            linger_ms: 60_000,
            ..ProducerConfig::default()
        },
    )
    .expect("producer");
    let key = b"same-key";
    for index in 0..10 {
        let value = format!("{index}");
        within(producer.enqueue(TOPIC, Some(key), value.as_bytes(), &[]))
            .await
            .expect("accepted");
    }
    // One flush: all ten records travel in one batch.
    within(producer.flush()).await;
    let partition = partition_for_key(key, PARTITIONS);
    assert_eq!(broker.records_stored(partition), 10);
    assert_eq!(broker.state().logs[&partition].len(), 1);

    let mut consumer = Consumer::new(cluster, ConsumerConfig::default());
    within(consumer.assign(TOPIC, &[partition]))
        .await
        .expect("assign");
    within(consumer.seek(TOPIC, partition, SeekTo::Offset(6)))
        .await
        .expect("seek");
    let records = within(consumer.poll(Duration::from_secs(5)))
        .await
        .expect("poll");
    let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
    assert_eq!(offsets, vec![6, 7, 8, 9]);
    assert_eq!(records[0].value.as_deref(), Some(&b"6"[..]));
    assert_eq!(consumer.position(TOPIC, partition), Some(10));

    within(consumer.seek(TOPIC, partition, SeekTo::Latest))
        .await
        .expect("seek latest");
    assert_eq!(consumer.position(TOPIC, partition), Some(10));
    within(consumer.seek(TOPIC, partition, SeekTo::Earliest))
        .await
        .expect("seek earliest");
    assert_eq!(consumer.position(TOPIC, partition), Some(0));
}

#[tokio::test]
async fn a_retriable_produce_error_is_retried_and_the_record_stored_once() {
    let broker = FakeBroker::start().await;
    broker.state().produce_failures_left = 2;
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let producer = Producer::new(
        cluster,
        ProducerConfig {
            linger_ms: 0,
            retry_backoff_ms_initial: 1,
            retry_backoff_ms_max: 5,
            ..ProducerConfig::default()
        },
    )
    .expect("producer");
    let metadata = within(producer.send(TOPIC, Some(Bytes::from("k")), Bytes::from("v"), &[]))
        .await
        .expect("delivered after retries");
    assert_eq!(metadata.offset, 0);
    assert_eq!(broker.records_stored(metadata.partition), 1);
    assert_eq!(broker.state().produce_requests, 3);
}

#[tokio::test]
async fn a_full_buffer_fails_fast_when_blocking_is_off() {
    let broker = FakeBroker::start().await;
    broker.state().hold_produce = true;
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let producer = Producer::new(
        cluster,
        ProducerConfig {
            linger_ms: 0,
            batch_bytes_max: 512,
            buffer_bytes_max: 512,
            block_on_full: false,
            ..ProducerConfig::default()
        },
    )
    .expect("producer");
    let value = [b'x'; 200];
    let mut accepted = Vec::new();
    let error = loop {
        match within(producer.enqueue(TOPIC, Some(b"k"), &value, &[])).await {
            Ok(delivery) => accepted.push(delivery),
            Err(error) => break error,
        }
        assert!(
            accepted.len() < 10,
            "a 512-byte buffer cannot take ten 200-byte records"
        );
    };
    assert!(
        matches!(
            error,
            ProduceError::BufferFull {
                buffer_bytes_max: 512
            }
        ),
        "{error}"
    );
    assert!(error.is_retriable());

    // Once the broker answers, the bytes come back and sending works again.
    broker.state().hold_produce = false;
    broker.released.notify_waiters();
    for delivery in accepted {
        within(delivery.wait()).await.expect("acknowledged");
    }
    within(producer.enqueue(TOPIC, Some(b"k"), &value, &[]))
        .await
        .expect("room again");
}

#[tokio::test]
async fn a_full_buffer_makes_send_wait_until_room_returns() {
    let broker = FakeBroker::start().await;
    broker.state().hold_produce = true;
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let producer = Arc::new(
        Producer::new(
            cluster,
            ProducerConfig {
                linger_ms: 0,
                batch_bytes_max: 512,
                buffer_bytes_max: 512,
                ..ProducerConfig::default()
            },
        )
        .expect("producer"),
    );
    let value = [b'y'; 200];
    let first = within(producer.enqueue(TOPIC, Some(b"k"), &value, &[]))
        .await
        .expect("room");
    let second = within(producer.enqueue(TOPIC, Some(b"k"), &value, &[]))
        .await
        .expect("room");
    let blocked = tokio::spawn({
        let producer = producer.clone();
        async move {
            producer
                .send(
                    TOPIC,
                    Some(Bytes::from("k")),
                    Bytes::from(vec![b'z'; 200]),
                    &[],
                )
                .await
        }
    });
    // The third record cannot be accepted until the broker answers the first two.
    within(async {
        while broker.state().produce_requests == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(!blocked.is_finished());
    broker.state().hold_produce = false;
    broker.released.notify_waiters();
    within(first.wait()).await.expect("first acknowledged");
    within(second.wait()).await.expect("second acknowledged");
    let third = within(blocked)
        .await
        .expect("task")
        .expect("third acknowledged");
    assert_eq!(third.offset, 2);
}

#[tokio::test]
async fn concurrent_requests_get_their_own_responses() {
    let broker = FakeBroker::start().await;
    let connection = within(Connection::connect(
        &broker.address,
        ConnectionConfig::default(),
    ))
    .await
    .expect("connect");
    let calls = (0..50).map(|_| {
        let connection = connection.clone();
        async move {
            connection
                .request(&MetadataRequest { topics: Vec::new() })
                .await
        }
    });
    let responses = within(futures_join_all(calls)).await;
    for response in responses {
        let response = response.expect("metadata");
        assert_eq!(response.topics[0].name, TOPIC);
    }
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("task"));
    }
    outputs
}

/// Sends `count` metadata requests on `connection` at once, each from its own task.
fn spawn_metadata_requests(
    connection: &Connection,
    count: usize,
) -> Vec<tokio::task::JoinHandle<Result<MetadataResponse, Error>>> {
    (0..count)
        .map(|_| {
            let connection = connection.clone();
            tokio::spawn(async move { connection.request(&MetadataRequest::default()).await })
        })
        .collect()
}

/// A hand-driven server: answers requests in an order the test chooses, or hangs up.
struct ScriptedServer {
    listener: TcpListener,
}

impl ScriptedServer {
    async fn start() -> (ScriptedServer, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        (ScriptedServer { listener }, address)
    }

    /// Accepts one connection and reads `count` request frames from it.
    async fn accept_and_read(
        &self,
        count: usize,
    ) -> (TcpStream, Vec<weir_proto::wire::RequestFrame>) {
        let (mut stream, _) = self.listener.accept().await.expect("accept");
        let mut decoder = RequestFrameDecoder::new(FrameDecoderConfig::default());
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        while frames.len() < count {
            while let Some(frame) = decoder.decode(&mut buffer).expect("valid frame") {
                frames.push(frame);
            }
            if frames.len() < count {
                let read = stream.read_buf(&mut buffer).await.expect("read");
                assert!(read > 0, "client closed early");
            }
        }
        (stream, frames)
    }
}

fn metadata_with_topic(name: &str) -> MetadataResponse {
    let mut response = metadata("unused:0");
    response.topics[0].name = name.to_string();
    response
}

#[tokio::test]
async fn responses_answered_out_of_order_reach_their_own_callers() {
    let (server, address) = ScriptedServer::start().await;
    let connection = Connection::connect(&address, ConnectionConfig::default())
        .await
        .expect("connect");
    let names = ["a", "b", "c", "d"];
    let calls: Vec<_> = names
        .iter()
        .map(|name| {
            let connection = connection.clone();
            let request = MetadataRequest {
                topics: vec![name.to_string()],
            };
            tokio::spawn(async move { connection.request(&request).await })
        })
        .collect();
    let (mut stream, frames) = within(server.accept_and_read(names.len())).await;
    // Answer in reverse order, each echoing the topic its request named.
    let mut out = BytesMut::new();
    for frame in frames.iter().rev() {
        let Request::Metadata(request) =
            Request::decode(&frame.header, &frame.body).expect("decode")
        else {
            panic!("expected metadata requests");
        };
        metadata_with_topic(&request.topics[0])
            .encode_frame(frame.header.correlation_id(), 0, &mut out)
            .expect("encode");
    }
    stream.write_all(&out).await.expect("write");
    for (call, name) in calls.into_iter().zip(names) {
        let response = within(call).await.expect("task").expect("response");
        assert_eq!(response.topics[0].name, name);
    }
}

#[tokio::test]
async fn an_answer_over_the_frame_limit_fails_its_requests_with_a_protocol_error_not_a_retriable_one(
) {
    let (server, address) = ScriptedServer::start().await;
    let config = ConnectionConfig {
        frame_bytes_max: 4096,
        ..ConnectionConfig::default()
    };
    let connection = Connection::connect(&address, config)
        .await
        .expect("connect");
    let calls = spawn_metadata_requests(&connection, 2);
    let (mut stream, frames) = within(server.accept_and_read(2)).await;
    // A metadata answer naming a topic long enough to outgrow the client's 4 KiB frames.
    let mut out = BytesMut::new();
    metadata_with_topic(&"t".repeat(8192))
        .encode_frame(frames[0].header.correlation_id(), 0, &mut out)
        .expect("encode");
    stream.write_all(&out).await.expect("write");
    for call in calls {
        let error = within(call)
            .await
            .expect("task")
            .expect_err("the answer cannot be read");
        assert!(matches!(error, Error::Protocol { .. }), "{error}");
        assert!(!error.is_retriable(), "the same answer would come again");
        assert!(
            error.to_string().contains("frame_bytes_max 4096"),
            "{error}"
        );
    }
    assert!(connection.is_closed());
    let later = connection
        .request(&MetadataRequest::default())
        .await
        .expect_err("the connection is closed");
    assert!(matches!(later, Error::Protocol { .. }), "{later}");
}

#[tokio::test]
async fn a_lost_connection_fails_every_pending_request_with_a_retriable_error() {
    let (server, address) = ScriptedServer::start().await;
    let connection = Connection::connect(&address, ConnectionConfig::default())
        .await
        .expect("connect");
    let calls = spawn_metadata_requests(&connection, 3);
    let (stream, _frames) = within(server.accept_and_read(3)).await;
    drop(stream);
    for call in calls {
        let error = within(call)
            .await
            .expect("task")
            .expect_err("the connection was lost");
        assert!(matches!(error, Error::ConnectionLost { .. }), "{error}");
        assert!(error.is_retriable());
    }
    assert!(connection.is_closed());
    let later = within(connection.request(&MetadataRequest::default())).await;
    assert!(matches!(later, Err(Error::ConnectionLost { .. })));
}

#[tokio::test]
async fn in_flight_requests_never_exceed_the_limit() {
    let (server, address) = ScriptedServer::start().await;
    let config = ConnectionConfig {
        inflight_requests_max: 2,
        ..ConnectionConfig::default()
    };
    let connection = Connection::connect(&address, config)
        .await
        .expect("connect");
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let connection = connection.clone();
            tokio::spawn(async move { connection.request(&MetadataRequest::default()).await })
        })
        .collect();
    let (mut stream, _) = within(server.listener.accept()).await.expect("accept");
    let mut decoder = RequestFrameDecoder::new(FrameDecoderConfig::default());
    let mut buffer = BytesMut::new();
    let mut outstanding = Vec::new();
    let mut answered = 0;
    while answered < 6 {
        while let Some(frame) = decoder.decode(&mut buffer).expect("valid frame") {
            outstanding.push(frame.header.correlation_id());
        }
        assert!(
            outstanding.len() <= 2,
            "{} requests in flight",
            outstanding.len()
        );
        // Answer only when the client has filled its window (or sent the last requests).
        if outstanding.len() == 2 || (answered + outstanding.len() == 6 && !outstanding.is_empty())
        {
            let correlation_id = outstanding.remove(0);
            let mut out = BytesMut::new();
            metadata_with_topic("x")
                .encode_frame(correlation_id, 0, &mut out)
                .expect("encode");
            stream.write_all(&out).await.expect("write");
            answered += 1;
            continue;
        }
        let read = within(stream.read_buf(&mut buffer)).await.expect("read");
        assert!(read > 0, "client closed early");
    }
    for call in calls {
        within(call).await.expect("task").expect("answered");
    }
}

#[tokio::test]
async fn an_error_response_becomes_a_typed_broker_error() {
    let (server, address) = ScriptedServer::start().await;
    let connection = Connection::connect(&address, ConnectionConfig::default())
        .await
        .expect("connect");
    let call = tokio::spawn({
        let connection = connection.clone();
        async move { connection.request(&MetadataRequest::default()).await }
    });
    let (mut stream, frames) = within(server.accept_and_read(1)).await;
    let mut out = BytesMut::new();
    ErrorResponse::new(
        &frames[0].header,
        ErrorCode::Overloaded,
        "shedding normal traffic",
    )
    .encode_frame(frames[0].header.correlation_id(), 0, &mut out)
    .expect("encode");
    stream.write_all(&out).await.expect("write");
    let error = within(call)
        .await
        .expect("task")
        .expect_err("an error response");
    match &error {
        Error::Broker { code, message } => {
            assert_eq!(*code, ErrorCode::Overloaded);
            assert_eq!(message, "shedding normal traffic");
        }
        other => panic!("expected a broker error, got {other}"),
    }
    assert!(error.is_retriable());
    assert!(
        !connection.is_closed(),
        "a request-level error keeps the connection"
    );
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_a_clear_retriable_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    let error = Cluster::connect(client_config(&address))
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, Error::Connect { .. }), "{error}");
    assert!(error
        .to_string()
        .starts_with(&format!("cannot connect to broker {address}")));
    assert!(error.is_retriable());
}

#[tokio::test]
async fn create_topic_sends_only_the_settings_given() {
    let broker = FakeBroker::start().await;
    let admin = within(Admin::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let first = within(admin.create_topic("plain", &TopicSettings::new()))
        .await
        .expect("create with the broker's defaults");
    let chosen = TopicSettings::new()
        .partitions(6)
        .flush(FlushPolicy::Never)
        .retention_bytes(Limit::Unlimited)
        .segment_ms(60_000);
    let second = within(admin.create_topic("chosen", &chosen))
        .await
        .expect("create with settings");
    assert_eq!((first, second), (101, 102), "the broker's topic ids");
    let refused = within(admin.create_topic("zero", &TopicSettings::new().partitions(0))).await;
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );

    let requests = broker.state().create_topic_requests.clone();
    assert_eq!(requests.len(), 2, "a refused setting sends nothing");
    assert_eq!(
        requests[0],
        CreateTopicRequest {
            name: "plain".into(),
            ..CreateTopicRequest::default()
        },
        "no partition count, no settings: all the broker's defaults"
    );
    assert_eq!(requests[1].partition_count, 6);
    let config = requests[1].config;
    assert_eq!(config.flush, Some(FlushPolicy::Never));
    assert_eq!(config.retention_bytes, Some(Limit::Unlimited));
    assert_eq!(config.retention_ms, None);
    assert_eq!(config.segment_bytes, None);
    assert_eq!(config.segment_ms, Some(Limit::Value(60_000)));
}

/// Logs rebalance callbacks into the fake broker's log, so their order against the group calls
/// can be checked.
struct LoggingListener(Arc<Mutex<Vec<String>>>);

impl RebalanceListener for LoggingListener {
    fn on_partitions_assigned(&mut self, partitions: &[(Arc<str>, u32)]) {
        self.0
            .lock()
            .expect("fake log")
            .push(format!("assigned {}", partitions.len()));
    }

    fn on_partitions_revoked(&mut self, partitions: &[(Arc<str>, u32)]) {
        self.0
            .lock()
            .expect("fake log")
            .push(format!("revoked {}", partitions.len()));
    }
}

#[tokio::test]
async fn a_subscribed_consumer_commits_revokes_and_rejoins_with_its_partitions_on_a_rebalance() {
    let broker = FakeBroker::start().await;
    let log = broker.state().log.clone();
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    for index in 0..30 {
        within(producer.send(
            TOPIC,
            Some(Bytes::from(format!("k{index}"))),
            Bytes::from("v"),
            &[],
        ))
        .await
        .expect("produced");
    }
    within(producer.close()).await;

    let config = ConsumerConfig {
        fetch_max_wait_ms: 50,
        group: GroupSettings {
            session_timeout_ms: 400,
            heartbeat_interval_ms: Some(20),
            auto_commit_interval_ms: 3_600_000,
            ..GroupSettings::default()
        },
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(cluster, config);
    within(consumer.subscribe_with_listener("g", &[TOPIC], LoggingListener(log.clone())))
        .await
        .expect("subscribe");
    assert!(
        log.lock().expect("log").is_empty(),
        "subscribe joins lazily, on poll"
    );
    let mut consumed = 0;
    within(async {
        while consumed < 30 {
            consumed += consumer
                .poll(Duration::from_millis(100))
                .await
                .expect("poll")
                .len();
        }
    })
    .await;
    assert_eq!(consumed, 30);
    assert_eq!(consumer.generation(), Some(1));
    assert_eq!(consumer.member_id(), Some("member-1"));
    assert_eq!(consumer.assignment().len(), PARTITIONS as usize);
    let lag = within(consumer.lag()).await.expect("lag");
    assert_eq!(
        lag.iter()
            .map(|partition| partition.lag_records)
            .collect::<Vec<_>>(),
        vec![Some(0); PARTITIONS as usize],
        "{lag:?}"
    );

    // The coordinator starts a rebalance: the next heartbeat says so, and a poll commits,
    // revokes and rejoins, naming the partitions it owned.
    broker.state().heartbeat_answer = ErrorCode::RebalanceInProgress;
    poll_until_generation(&mut consumer, 2).await;
    within(consumer.close()).await.expect("close");

    let log = log.lock().expect("log").clone();
    assert_eq!(
        log,
        vec![
            r#"join member="" strategies=["range", "sticky"] topics=["events"] owned=[]"#.to_string(),
            "sync generation=1".to_string(),
            "assigned 3".to_string(),
            r#"commit generation=1 member="member-1" total=30"#.to_string(),
            "revoked 3".to_string(),
            r#"join member="member-1" strategies=["range", "sticky"] topics=["events"] owned=[0, 1, 2]"#.to_string(),
            "sync generation=2".to_string(),
            "assigned 3".to_string(),
            r#"commit generation=2 member="member-1" total=30"#.to_string(),
            "revoked 3".to_string(),
            r#"leave member="member-1""#.to_string(),
        ]
    );
}

#[tokio::test]
async fn subscribe_refuses_bad_settings_and_mixing_with_assign() {
    let broker = FakeBroker::start().await;
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let mut bad = Consumer::new(
        cluster.clone(),
        ConsumerConfig {
            group: GroupSettings {
                session_timeout_ms: 1_000,
                heartbeat_interval_ms: Some(1_000),
                ..GroupSettings::default()
            },
            ..ConsumerConfig::default()
        },
    );
    let error = within(bad.subscribe("g", &[TOPIC]))
        .await
        .expect_err("bad heartbeat");
    assert!(
        error.to_string().contains("heartbeat_interval_ms"),
        "{error}"
    );

    let mut unknown = Consumer::new(cluster.clone(), ConsumerConfig::default());
    let error = within(unknown.subscribe("g", &["missing"]))
        .await
        .expect_err("unknown topic");
    assert!(matches!(error, Error::UnknownTopic { .. }), "{error}");

    let mut assigned = Consumer::new(cluster.clone(), ConsumerConfig::default());
    within(assigned.assign(TOPIC, &[0])).await.expect("assign");
    let error = within(assigned.subscribe("g", &[TOPIC]))
        .await
        .expect_err("mixed");
    assert!(matches!(error, Error::InvalidArgument(_)), "{error}");

    let mut subscribed = Consumer::new(cluster, ConsumerConfig::default());
    within(subscribed.subscribe("g", &[TOPIC]))
        .await
        .expect("subscribe");
    let error = within(subscribed.assign(TOPIC, &[0]))
        .await
        .expect_err("mixed");
    assert!(error.to_string().contains("subscribed"), "{error}");
    let error = within(subscribed.commit_offsets(&[(TOPIC, 0, 1)]))
        .await
        .expect_err("no generation yet");
    assert!(
        matches!(
            error,
            Error::Broker {
                code: ErrorCode::RebalanceInProgress,
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_fenced_member_rejoins_as_a_new_member_keeping_its_owned_partitions() {
    let broker = FakeBroker::start().await;
    let log = broker.state().log.clone();
    let cluster = within(Cluster::connect(client_config(&broker.address)))
        .await
        .expect("connect");
    let config = ConsumerConfig {
        fetch_max_wait_ms: 50,
        group: GroupSettings {
            session_timeout_ms: 400,
            heartbeat_interval_ms: Some(20),
            auto_commit: false,
            assignment_strategies: vec![AssignmentStrategy::Sticky],
            ..GroupSettings::default()
        },
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(cluster, config);
    within(consumer.subscribe_with_listener("g", &[TOPIC], LoggingListener(log.clone())))
        .await
        .expect("subscribe");
    within(consumer.poll(Duration::from_millis(50)))
        .await
        .expect("poll");
    assert_eq!(consumer.generation(), Some(1));
    broker.state().heartbeat_answer = ErrorCode::UnknownMemberId;
    poll_until_generation(&mut consumer, 2).await;
    let log = log.lock().expect("log").clone();
    assert_eq!(
        log,
        vec![
            r#"join member="" strategies=["sticky"] topics=["events"] owned=[]"#.to_string(),
            "sync generation=1".to_string(),
            "assigned 3".to_string(),
            // Auto-commit is off: nothing is committed before the revoke.
            "revoked 3".to_string(),
            r#"join member="" strategies=["sticky"] topics=["events"] owned=[0, 1, 2]"#.to_string(),
            "sync generation=2".to_string(),
            "assigned 3".to_string(),
        ]
    );
}

/// The values stored in `partition`, in offset order.
fn stored_values(broker: &FakeBroker, partition: u32) -> Vec<String> {
    let state = broker.state();
    let limits = BatchLimits::default();
    let mut values = Vec::new();
    for batch in state.logs.get(&partition).into_iter().flatten() {
        for item in BatchIter::new(batch, &limits) {
            let (_, bytes) = item.expect("valid batch");
            for record in weir_proto::batch::records(bytes).expect("valid records") {
                let value = record.expect("valid record").value.expect("value");
                values.push(String::from_utf8(value.to_vec()).expect("utf-8"));
            }
        }
    }
    values
}

/// Sends five one-record batches to one partition with five in flight and returns each
/// record's offset (or error) in send order, with the partition they went to.
async fn send_five_one_record_batches(broker: &FakeBroker) -> (u32, Vec<Result<i64, String>>) {
    let producer = Producer::new(
        within(Cluster::connect(client_config(&broker.address)))
            .await
            .expect("connect"),
        ProducerConfig {
            // Only full batches leave before the flush, and one record (about 150 bytes) fills one.
            linger_ms: 60_000,
            batch_bytes_max: 256,
            retry_backoff_ms_initial: 1,
            retry_backoff_ms_max: 5,
            max_in_flight_per_partition: 5,
            ..ProducerConfig::default()
        },
    )
    .expect("producer");
    let key = b"one-partition";
    let mut deliveries = Vec::new();
    for index in 0..5 {
        let value = format!("record-{index}-{}", "v".repeat(90));
        let delivery = within(producer.enqueue(TOPIC, Some(key), value.as_bytes(), &[]))
            .await
            .expect("accepted");
        deliveries.push(delivery);
    }
    within(producer.flush()).await;
    let mut offsets = Vec::new();
    for delivery in deliveries {
        offsets.push(
            within(delivery.wait())
                .await
                .map(|metadata| metadata.offset)
                .map_err(|error| error.to_string()),
        );
    }
    within(producer.close()).await;
    (partition_for_key(key, PARTITIONS), offsets)
}

fn expected_five_values() -> Vec<String> {
    (0..5)
        .map(|index| format!("record-{index}-{}", "v".repeat(90)))
        .collect()
}

#[tokio::test]
async fn with_five_in_flight_a_retriable_failure_of_batch_two_resends_the_later_ones_in_order() {
    let broker = FakeBroker::start().await;
    {
        let mut state = broker.state();
        state.check_sequences = true;
        // All five requests are on the wire before the first is answered.
        state.pipeline_before_answer = Some(5);
        // Batch 1 is stored, batch 2 refused with a retriable code (nothing stored); batches 3
        // to 5 then find a gap and are answered `out_of_order_sequence`.
        state.produce_errors = [ErrorCode::None, ErrorCode::NotOwner].into();
    }
    let (partition, offsets) = send_five_one_record_batches(&broker).await;
    assert_eq!(offsets, [Ok(0), Ok(1), Ok(2), Ok(3), Ok(4)]);
    assert_eq!(
        broker.state().out_of_order_answers,
        3,
        "batches 3 to 5 were in flight behind the failed batch 2"
    );
    assert_eq!(stored_values(&broker, partition), expected_five_values());
    // Resent with their original sequences: one producer epoch, sequences 0..5 in order.
    let fields = producer_fields(&broker, partition);
    let sequences: Vec<i32> = fields.iter().map(|(_, _, sequence)| *sequence).collect();
    assert_eq!(sequences, [0, 1, 2, 3, 4]);
    assert!(fields
        .iter()
        .all(|(id, epoch, _)| (*id, *epoch) == (fields[0].0, fields[0].1)));
    assert_eq!(
        broker.state().init_producer_id_requests.len(),
        1,
        "no epoch bump"
    );
}

#[tokio::test]
async fn with_five_in_flight_a_connection_lost_after_batch_two_is_stored_ends_with_each_batch_once()
{
    let broker = FakeBroker::start().await;
    {
        let mut state = broker.state();
        state.check_sequences = true;
        state.pipeline_before_answer = Some(5);
        // Batch 2 is stored but its answer is lost with the connection, and batches 3 to 5,
        // already sent, are lost unread.
        state.drop_after_storing = Some(2);
    }
    let (partition, offsets) = send_five_one_record_batches(&broker).await;
    // Batch 2's resend is recognised as a duplicate and gets its original offset.
    assert_eq!(offsets, [Ok(0), Ok(1), Ok(2), Ok(3), Ok(4)]);
    assert_eq!(stored_values(&broker, partition), expected_five_values());
    let sequences: Vec<i32> = producer_fields(&broker, partition)
        .iter()
        .map(|(_, _, sequence)| *sequence)
        .collect();
    assert_eq!(sequences, [0, 1, 2, 3, 4]);
    assert_eq!(
        broker.state().init_producer_id_requests.len(),
        1,
        "no epoch bump"
    );
}

#[test]
fn max_in_flight_per_partition_is_checked_for_an_idempotent_producer() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let broker = FakeBroker::start().await;
        let cluster = within(Cluster::connect(client_config(&broker.address)))
            .await
            .expect("connect");
        for bad in [0, 6] {
            let error = Producer::new(
                cluster.clone(),
                ProducerConfig {
                    max_in_flight_per_partition: bad,
                    ..ProducerConfig::default()
                },
            )
            .expect_err("refused");
            assert!(
                matches!(&error, Error::InvalidArgument(message) if message.contains("max_in_flight_per_partition")),
                "{error}"
            );
        }
        // Without idempotence the limit is not used (one batch in flight), so it is not checked.
        Producer::new(
            cluster,
            ProducerConfig {
                idempotence: false,
                max_in_flight_per_partition: 6,
                ..ProducerConfig::default()
            },
        )
        .expect("accepted")
        .close()
        .await;
    });
}
