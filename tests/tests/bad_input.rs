//! Bad input over the raw wire protocol: garbage bytes, an oversized frame length, a truncated
//! frame, request-level errors (unknown api key, unsupported version, reserved flags or priority,
//! an undecodable body, an invalid acks value), unknown topics and partitions, offsets outside
//! the log, corrupt record batches (bad CRC, wrong magic, inconsistent lengths, built with
//! `BatchBuilder` and then mutated), a client that sends one byte at a time, and a client that
//! stops reading its responses.
//!
//! Each case gets a clear answer or a clean close, as `docs/PROTOCOL.md` specifies, and is
//! followed by the same check: the broker process is still running, a well-behaved client on a
//! new connection is served (handshake, produce, fetch), and every record written before the bad
//! input is still there, unchanged, at its offset.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_proto::batch::{BatchBuilder, CRC_COVERED_START};
use weir_proto::wire::{
    ApiVersionsResponse, ErrorCode, ErrorResponse, FetchResponse, FlushPolicy,
    ListOffsetsPartition, ListOffsetsRequest, MetadataRequest, OffsetCommitPartition,
    OffsetCommitRequest, OffsetQuery, ProduceResponse, TopicId, GENERATION_NONE,
};
use weir_tests::broker::wait_for_metrics;
use weir_tests::wire::{
    api_versions_request, build_batch, build_values_batch, decode_as, fetch_request,
    produce_request, raw_request_frame, StoredRecord,
};
use weir_tests::{BrokerOptions, BrokerProcess, WireClient};

const PARTITIONS: u32 = 2;
/// How long the broker may take to close a connection it must close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker with a two-partition topic holding a few records, and what those records are.
struct Fixture {
    broker: BrokerProcess,
    topic_id: TopicId,
    /// Every record per partition, in offset order from 0.
    stored: Vec<Vec<StoredRecord>>,
    /// Counter for distinct values of the records `assert_still_serves` writes.
    checks: u32,
}

impl Fixture {
    fn start(options: BrokerOptions) -> Fixture {
        let broker = BrokerProcess::start(options);
        let mut client = WireClient::connect_and_handshake(broker.addresses().listen);
        let topic_id = client.create_topic("guarded", PARTITIONS, FlushPolicy::Always);
        let mut fixture = Fixture {
            broker,
            topic_id,
            stored: vec![Vec::new(); PARTITIONS as usize],
            checks: 0,
        };
        for partition in 0..PARTITIONS {
            for batch in 0..3 {
                let values: Vec<String> = (0..4)
                    .map(|index| format!("before-{partition}-{batch}-{index}"))
                    .collect();
                fixture.append(&mut client, partition, &values);
            }
        }
        fixture
    }

    fn append(&mut self, client: &mut WireClient, partition: u32, values: &[String]) {
        let result = client.produce(self.topic_id, partition, build_values_batch(values));
        assert_eq!(
            result.error_code,
            ErrorCode::None,
            "produce to partition {partition}: {}",
            result.error_message
        );
        let log = &mut self.stored[partition as usize];
        assert_eq!(
            result.base_offset,
            log.len() as i64,
            "the next offset of partition {partition}"
        );
        for value in values {
            log.push(StoredRecord {
                offset: log.len() as i64,
                key: None,
                value: Some(value.as_bytes().to_vec()),
            });
        }
    }

    /// The broker is running, serves a new well-behaved client, and lost nothing.
    fn assert_still_serves(&mut self, after: &str) {
        self.broker.assert_running(&format!("after {after}"));
        let mut client = WireClient::connect(self.broker.addresses().listen)
            .unwrap_or_else(|error| panic!("cannot connect after {after}: {error}"));
        let versions: Result<ApiVersionsResponse, _> = client.call(&api_versions_request());
        assert!(versions.is_ok(), "handshake after {after}: {versions:?}");
        self.checks += 1;
        let check = self.checks;
        for partition in 0..PARTITIONS {
            self.append(
                &mut client,
                partition,
                &[format!("check-{check}-{partition}")],
            );
            let found = client.read_partition(self.topic_id, partition, 0);
            assert!(
                found == self.stored[partition as usize],
                "partition {partition} after {after}: {} records found, {} expected; the \
                 records written before the bad input must be intact",
                found.len(),
                self.stored[partition as usize].len()
            );
        }
    }

    fn connect(&self) -> WireClient {
        WireClient::connect_and_handshake(self.broker.addresses().listen)
    }

    fn log_end(&self, client: &mut WireClient, partition: u32) -> i64 {
        let response = client.call_ok(&ListOffsetsRequest {
            entries: vec![ListOffsetsPartition {
                topic_id: self.topic_id,
                partition,
                query: OffsetQuery::Latest,
            }],
        });
        assert_eq!(response.entries[0].error_code, ErrorCode::None);
        response.entries[0].offset
    }
}

fn protocol_errors(broker: &BrokerProcess) -> f64 {
    broker.metrics().expect_sum("weir_protocol_errors_total")
}

#[test]
fn garbage_bytes_close_the_connection_and_nothing_else() {
    let mut fixture = Fixture::start(BrokerOptions::default());
    let errors_before = protocol_errors(&fixture.broker);
    // "GET " read as a length prefix is about 1.2 GB: far over any frame limit.
    let mut garbage = b"GET /metrics HTTP/1.1\r\nHost: weir\r\n\r\n".to_vec();
    garbage.extend((0..4096u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8));
    let mut client = WireClient::connect(fixture.broker.addresses().listen).expect("connect");
    // The broker may close while the garbage is still being written.
    let _ = client.send_raw(&garbage);
    assert!(
        client.closed_within(CLOSE_TIMEOUT),
        "the broker kept a connection open after garbage"
    );
    wait_for_metrics(
        &fixture.broker,
        Duration::from_secs(10),
        "weir_protocol_errors_total counts the garbage connection",
        |metrics| metrics.expect_sum("weir_protocol_errors_total") > errors_before,
    );
    fixture.assert_still_serves("garbage bytes");
}

#[test]
fn a_frame_length_over_the_limit_closes_the_connection_before_its_body_arrives() {
    let frame_bytes_max: u32 = 64 * 1024;
    let mut fixture = Fixture::start(
        BrokerOptions::default().args(["--frame-bytes-max", &frame_bytes_max.to_string()]),
    );
    let errors_before = protocol_errors(&fixture.broker);
    let mut client = fixture.connect();
    // Only the length prefix and a valid header: the broker must not wait for 64 KiB + 1 of body.
    let mut prefix = (frame_bytes_max + 1).to_be_bytes().to_vec();
    prefix.extend_from_slice(&[0, 20, 0, 0, 0, 0, 0, 7, 0, 0]);
    client
        .send_raw(&prefix)
        .expect("send an oversized length prefix");
    assert!(
        client.closed_within(CLOSE_TIMEOUT),
        "an oversized frame length did not close the connection"
    );
    wait_for_metrics(
        &fixture.broker,
        Duration::from_secs(10),
        "weir_protocol_errors_total counts the oversized frame",
        |metrics| metrics.expect_sum("weir_protocol_errors_total") > errors_before,
    );
    // A frame just under the limit is still accepted on a new connection.
    let mut client = fixture.connect();
    let values = vec!["x".repeat(1000); 40];
    let batch = build_values_batch(&values);
    assert!(batch.len() < frame_bytes_max as usize - 200);
    let response: ProduceResponse = client.call_ok(&produce_request(fixture.topic_id, 1, batch));
    assert_eq!(response.entries[0].error_code, ErrorCode::None);
    let log = &mut fixture.stored[1];
    for value in values {
        log.push(StoredRecord {
            offset: log.len() as i64,
            key: None,
            value: Some(value.into_bytes()),
        });
    }
    fixture.assert_still_serves("an oversized frame length");
}

#[test]
fn a_truncated_frame_then_close_leaves_the_broker_serving() {
    let mut fixture = Fixture::start(BrokerOptions::default());
    let log_end_before = {
        let mut client = fixture.connect();
        fixture.log_end(&mut client, 0)
    };
    let frame = {
        let mut frame = bytes::BytesMut::new();
        weir_proto::wire::RequestMessage::encode_frame(
            &produce_request(fixture.topic_id, 0, build_values_batch(&["never complete"])),
            99,
            weir_proto::wire::Priority::Normal,
            &mut frame,
        )
        .expect("encode a produce frame");
        frame
    };
    for cut in [3, 4, 12, 14, frame.len() / 2, frame.len() - 1] {
        let mut stream = TcpStream::connect(fixture.broker.addresses().listen).expect("connect");
        stream
            .write_all(&frame[..cut])
            .expect("send part of a frame");
        drop(stream);
    }
    // Half-closed: the write side ends mid-frame while the client still reads.
    let mut client = WireClient::connect(fixture.broker.addresses().listen).expect("connect");
    client
        .send_raw(&frame[..frame.len() - 5])
        .expect("send part of a frame");
    client.shutdown_write().expect("half-close");
    assert!(
        client.closed_within(CLOSE_TIMEOUT),
        "the broker kept a half-closed connection with a truncated frame open"
    );
    let mut client = fixture.connect();
    assert_eq!(
        fixture.log_end(&mut client, 0),
        log_end_before,
        "no truncated produce was appended"
    );
    fixture.assert_still_serves("truncated frames");
}

#[test]
fn request_level_errors_are_answered_in_band_and_the_connection_stays_usable() {
    let mut fixture = Fixture::start(BrokerOptions::default());
    let mut client = fixture.connect();
    let empty_metadata_body = 0u32.to_be_bytes();
    // (case, api key, api version, flags, body, expected error code)
    type Case<'a> = (&'a str, u16, u16, u16, &'a [u8], ErrorCode);
    // Produce with acks = 2 (kept for replication), timeout 1000 ms, no entries.
    let produce_acks_two = [2u8, 0, 0, 0x03, 0xe8, 0, 0, 0, 0];
    let cases: [Case<'_>; 8] = [
        ("unknown api key", 999, 0, 0, &[], ErrorCode::UnknownApiKey),
        ("reserved api key", 2, 0, 0, &[], ErrorCode::UnknownApiKey),
        (
            "unsupported version",
            1,
            7,
            0,
            &empty_metadata_body,
            ErrorCode::UnsupportedVersion,
        ),
        (
            "reserved flag bits",
            1,
            0,
            0b100,
            &empty_metadata_body,
            ErrorCode::InvalidRequest,
        ),
        (
            "array count larger than the body",
            1,
            0,
            0,
            &[0xff, 0xff, 0xff, 0xff],
            ErrorCode::InvalidRequest,
        ),
        (
            "trailing bytes",
            1,
            0,
            0,
            &[0, 0, 0, 0, 42],
            ErrorCode::InvalidRequest,
        ),
        (
            "reserved priority class",
            1,
            0,
            0b11,
            &empty_metadata_body,
            ErrorCode::InvalidRequest,
        ),
        (
            "produce with acks 2",
            20,
            0,
            0,
            &produce_acks_two,
            ErrorCode::InvalidRequest,
        ),
    ];
    for (index, (case, api_key, api_version, flags, body, expected)) in
        cases.into_iter().enumerate()
    {
        let correlation_id = 1000 + index as u32;
        client
            .send_raw(&raw_request_frame(
                api_key,
                api_version,
                correlation_id,
                flags,
                body,
            ))
            .expect("send the request");
        let frame = client
            .receive(Duration::from_secs(10))
            .unwrap_or_else(|error| panic!("{case}: no answer: {error}"));
        assert_eq!(frame.header.correlation_id(), correlation_id, "{case}");
        assert_eq!(
            frame.header.api_key_raw(),
            api_key,
            "{case}: api key echoed"
        );
        assert_eq!(
            frame.header.api_version(),
            api_version,
            "{case}: version echoed"
        );
        assert_eq!(frame.header.error_code(), expected, "{case}");
        let error = ErrorResponse::decode(&frame.header, &frame.body)
            .unwrap_or_else(|error| panic!("{case}: undecodable error body: {error}"));
        assert!(
            !error.message.is_empty(),
            "{case}: the error explains itself"
        );
        // The same connection goes on.
        let versions: Result<ApiVersionsResponse, _> = client.call(&api_versions_request());
        assert!(
            versions.is_ok(),
            "{case}: the connection is still usable: {versions:?}"
        );
    }
    fixture.assert_still_serves("request-level errors");
}

#[test]
fn unknown_topics_partitions_and_offsets_are_per_entry_errors() {
    let mut fixture = Fixture::start(BrokerOptions::default());
    let mut client = fixture.connect();
    let unknown_topic_id: TopicId = fixture.topic_id.wrapping_add(1000);
    // (case, topic id, partition, expected error code)
    let cases = [
        (
            "unknown topic",
            unknown_topic_id,
            0,
            ErrorCode::UnknownTopic,
        ),
        (
            "unknown partition",
            fixture.topic_id,
            PARTITIONS,
            ErrorCode::UnknownPartition,
        ),
        (
            "far unknown partition",
            fixture.topic_id,
            u32::MAX,
            ErrorCode::UnknownPartition,
        ),
    ];
    for (case, topic_id, partition, expected) in cases {
        let produced: ProduceResponse = client.call_ok(&produce_request(
            topic_id,
            partition,
            build_values_batch(&["lost"]),
        ));
        assert_eq!(produced.entries.len(), 1, "{case}");
        let entry = &produced.entries[0];
        assert_eq!(
            (entry.topic_id, entry.partition),
            (topic_id, partition),
            "{case}"
        );
        assert_eq!(
            entry.error_code, expected,
            "produce, {case}: {}",
            entry.error_message
        );
        assert_eq!(entry.base_offset, -1, "produce, {case}: no offset on error");

        let fetched: FetchResponse = client.call_ok(&fetch_request(topic_id, partition, 0, 0, 0));
        assert_eq!(fetched.entries.len(), 1, "{case}");
        assert_eq!(fetched.entries[0].error_code, expected, "fetch, {case}");
        assert!(fetched.entries[0].records.is_empty(), "fetch, {case}");

        let listed = client.call_ok(&ListOffsetsRequest {
            entries: vec![ListOffsetsPartition {
                topic_id,
                partition,
                query: OffsetQuery::Latest,
            }],
        });
        assert_eq!(
            listed.entries[0].error_code, expected,
            "list offsets, {case}"
        );
    }
    // A produce mixing a good and a bad entry appends the good one only.
    let mut mixed = produce_request(fixture.topic_id, 0, build_values_batch(&["mixed-good"]));
    mixed.entries.push(weir_proto::wire::ProducePartition {
        topic_id: unknown_topic_id,
        partition: 0,
        records: build_values_batch(&["mixed-bad"]),
    });
    let produced: ProduceResponse = client.call_ok(&mixed);
    assert_eq!(produced.entries.len(), 2);
    assert_eq!(produced.entries[0].error_code, ErrorCode::None);
    assert_eq!(produced.entries[1].error_code, ErrorCode::UnknownTopic);
    let log = &mut fixture.stored[0];
    assert_eq!(produced.entries[0].base_offset, log.len() as i64);
    log.push(StoredRecord {
        offset: log.len() as i64,
        key: None,
        value: Some(b"mixed-good".to_vec()),
    });

    let committed = client.call_ok(&OffsetCommitRequest {
        group_id: "bad-input".to_string(),
        generation: GENERATION_NONE,
        member_id: String::new(),
        entries: vec![
            OffsetCommitPartition {
                topic_id: unknown_topic_id,
                partition: 0,
                offset: 1,
                metadata: String::new(),
            },
            OffsetCommitPartition {
                topic_id: fixture.topic_id,
                partition: PARTITIONS,
                offset: 1,
                metadata: String::new(),
            },
        ],
    });
    let codes: Vec<ErrorCode> = committed
        .entries
        .iter()
        .map(|entry| entry.error_code)
        .collect();
    assert_eq!(
        codes,
        [ErrorCode::UnknownTopic, ErrorCode::UnknownPartition],
        "offset commits for an unknown topic and partition"
    );

    // Offsets outside the log.
    let log_end = fixture.stored[1].len() as i64;
    for offset in [log_end + 1, log_end + 1000, -1] {
        let fetched: FetchResponse =
            client.call_ok(&fetch_request(fixture.topic_id, 1, offset, 0, 0));
        assert_eq!(
            fetched.entries[0].error_code,
            ErrorCode::OffsetOutOfRange,
            "fetch at offset {offset} of a log ending at {log_end}"
        );
        assert!(fetched.entries[0].records.is_empty());
    }

    let metadata = client.call_ok(&MetadataRequest {
        topics: vec!["no-such-topic".to_string(), "guarded".to_string()],
    });
    assert_eq!(metadata.topics.len(), 2);
    assert_eq!(metadata.topics[0].name, "no-such-topic");
    assert_eq!(metadata.topics[0].error_code, ErrorCode::UnknownTopic);
    assert_eq!(metadata.topics[0].topic_id, 0);
    assert_eq!(metadata.topics[1].error_code, ErrorCode::None);
    fixture.assert_still_serves("unknown topics, partitions and offsets");
}

/// A valid two-record batch to mutate.
fn good_batch() -> Vec<u8> {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    builder.push(1_700_000_000_000, Some(b"k1"), Some(b"value one"), &[]);
    builder.push(1_700_000_000_001, None, Some(b"value two"), &[]);
    builder.finish()
}

fn set_batch_length(batch: &mut [u8], length: i32) {
    batch[8..12].copy_from_slice(&length.to_be_bytes());
}

fn batch_length(batch: &[u8]) -> i32 {
    i32::from_be_bytes(batch[8..12].try_into().expect("4 bytes"))
}

#[test]
fn corrupt_batches_are_refused_and_nothing_is_appended() {
    let mut fixture = Fixture::start(BrokerOptions::default());
    let mut client = fixture.connect();
    let good = good_batch();
    let flip_last_byte = |mut batch: Vec<u8>| {
        *batch.last_mut().expect("non-empty") ^= 0x40;
        batch
    };
    let flip_attributes = |mut batch: Vec<u8>| {
        batch[CRC_COVERED_START + 1] ^= 0x01;
        batch
    };
    let wrong_magic = |mut batch: Vec<u8>| {
        batch[16] = 1;
        batch
    };
    let length_too_long = |mut batch: Vec<u8>| {
        let length = batch_length(&batch);
        set_batch_length(&mut batch, length + 10);
        batch
    };
    let length_too_short = |mut batch: Vec<u8>| {
        let length = batch_length(&batch);
        set_batch_length(&mut batch, length - 5);
        batch
    };
    let length_below_header = |mut batch: Vec<u8>| {
        set_batch_length(&mut batch, 20);
        batch
    };
    let cut_short = |mut batch: Vec<u8>| {
        batch.truncate(batch.len() - 7);
        batch
    };
    let second_batch_corrupt = |batch: Vec<u8>| {
        let mut both = batch.clone();
        both.extend(flip_last_byte(batch));
        both
    };
    // (case, mutation, expected error codes) — codes as docs/PROTOCOL.md assigns them:
    // corrupt_message for a CRC or length that does not match the bytes, invalid_batch for
    // well-formed bytes that are not acceptable. The protocol does not say which of the two
    // an entry without any batch gets.
    type Mutation<'a> = &'a dyn Fn(Vec<u8>) -> Vec<u8>;
    let corrupt: &[ErrorCode] = &[ErrorCode::CorruptMessage];
    let cases: [(&str, Mutation<'_>, &[ErrorCode]); 9] = [
        ("bad CRC: record byte flipped", &flip_last_byte, corrupt),
        ("bad CRC: attributes flipped", &flip_attributes, corrupt),
        ("wrong magic", &wrong_magic, &[ErrorCode::InvalidBatch]),
        ("batchLength past the bytes", &length_too_long, corrupt),
        ("batchLength short of the bytes", &length_too_short, corrupt),
        (
            "batchLength below the header",
            &length_below_header,
            corrupt,
        ),
        ("records cut short", &cut_short, corrupt),
        ("second batch corrupt", &second_batch_corrupt, corrupt),
        (
            "empty records",
            &|_| Vec::new(),
            &[ErrorCode::InvalidBatch, ErrorCode::InvalidRequest],
        ),
    ];
    let mut wrong_answers = Vec::new();
    for (case, mutate, expected) in cases {
        let before = fixture.log_end(&mut client, 0);
        let produced: ProduceResponse = client.call_ok(&produce_request(
            fixture.topic_id,
            0,
            Bytes::from(mutate(good.clone())),
        ));
        let entry = &produced.entries[0];
        assert_ne!(
            entry.error_code,
            ErrorCode::None,
            "{case}: a corrupt batch was accepted"
        );
        assert!(
            !entry.error_message.is_empty(),
            "{case}: the refusal explains itself"
        );
        assert_eq!(
            entry.base_offset, -1,
            "{case}: no offset for a refused entry"
        );
        assert_eq!(
            fixture.log_end(&mut client, 0),
            before,
            "{case}: nothing of a refused entry is appended"
        );
        if !expected.contains(&entry.error_code) {
            wrong_answers.push(format!(
                "{case}: answered {} ({}), expected one of {expected:?}",
                entry.error_code, entry.error_message
            ));
        }
    }
    assert!(
        wrong_answers.is_empty(),
        "refused with the wrong error code:\n{}",
        wrong_answers.join("\n")
    );
    // The untouched batch is accepted on the same connection afterwards.
    let produced: ProduceResponse =
        client.call_ok(&produce_request(fixture.topic_id, 0, Bytes::from(good)));
    assert_eq!(produced.entries[0].error_code, ErrorCode::None);
    let log = &mut fixture.stored[0];
    for (key, value) in [(Some(b"k1".to_vec()), b"value one"), (None, b"value two")] {
        log.push(StoredRecord {
            offset: log.len() as i64,
            key,
            value: Some(value.to_vec()),
        });
    }
    fixture.assert_still_serves("corrupt batches");
}

#[test]
fn a_client_sending_one_byte_at_a_time_is_served_and_blocks_no_one() {
    let mut fixture = Fixture::start(BrokerOptions::default());
    let values = ["slow-one", "slow-two"];
    let records: Vec<(Option<&[u8]>, &[u8])> = values
        .iter()
        .map(|value| (Some(&b"slow"[..]), value.as_bytes()))
        .collect();
    let mut frame = bytes::BytesMut::new();
    weir_proto::wire::RequestMessage::encode_frame(
        &produce_request(fixture.topic_id, 1, build_batch(&records)),
        4242,
        weir_proto::wire::Priority::Normal,
        &mut frame,
    )
    .expect("encode");
    let mut slow = WireClient::connect(fixture.broker.addresses().listen).expect("connect");
    let mut fast = fixture.connect();
    let mut slowest_round_trip = Duration::ZERO;
    for byte in frame.iter() {
        slow.send_raw(&[*byte]).expect("send one byte");
        // Between two bytes of the slow frame, a whole request on another connection.
        let started = Instant::now();
        let versions: Result<ApiVersionsResponse, _> = fast.call(&api_versions_request());
        assert!(
            versions.is_ok(),
            "a fast client is served while a slow one trickles"
        );
        slowest_round_trip = slowest_round_trip.max(started.elapsed());
    }
    assert!(
        slowest_round_trip < Duration::from_secs(2),
        "a fast client waited {slowest_round_trip:?} behind a slow one"
    );
    let answer = slow
        .receive(Duration::from_secs(10))
        .expect("the slow request is answered");
    assert_eq!(answer.header.correlation_id(), 4242);
    let produced: ProduceResponse = decode_as(&answer).expect("a produce response");
    assert_eq!(produced.entries[0].error_code, ErrorCode::None);
    let log = &mut fixture.stored[1];
    assert_eq!(produced.entries[0].base_offset, log.len() as i64);
    for value in values {
        log.push(StoredRecord {
            offset: log.len() as i64,
            key: Some(b"slow".to_vec()),
            value: Some(value.as_bytes().to_vec()),
        });
    }
    fixture.assert_still_serves("a one-byte-at-a-time client");
}

/// Largest growth of the broker's RSS allowed while a connection does not read its responses.
const RSS_GROWTH_MAX_BYTES: u64 = 96 * 1024 * 1024;

#[test]
fn a_client_that_stops_reading_does_not_grow_broker_memory() {
    let mut fixture = Fixture::start(BrokerOptions::default().args([
        "--inflight-requests-max",
        "8",
        "--tail-cache-bytes-max",
        "262144",
    ]));
    // About 4 MiB in partition 1, so every fetch from offset 0 answers with up to 1 MiB read from
    // the segment rather than the small tail cache.
    let mut writer = fixture.connect();
    let value = "v".repeat(200);
    for batch in 0..20 {
        let values: Vec<String> = (0..1000)
            .map(|index| format!("{batch}-{index}-{value}"))
            .collect();
        fixture.append(&mut writer, 1, &values);
    }
    let warm: FetchResponse = writer.call_ok(&fetch_request(fixture.topic_id, 1, 0, 0, 0));
    assert!(
        warm.entries[0].records.len_bytes() > 512 * 1024,
        "a fetch returns about 1 MiB"
    );
    let rss_before = fixture.broker.rss_bytes();

    // The stalled connection pipelines fetches and never reads an answer. The broker must stop
    // reading it (bounded in-flight requests, full socket buffers), so our writes block.
    let mut stalled = TcpStream::connect(fixture.broker.addresses().listen).expect("connect");
    stalled
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("write timeout");
    let mut request = bytes::BytesMut::new();
    weir_proto::wire::RequestMessage::encode_frame(
        &fetch_request(fixture.topic_id, 1, 0, 0, 0),
        1,
        weir_proto::wire::Priority::Normal,
        &mut request,
    )
    .expect("encode a fetch");
    let requests_max = 200_000usize;
    let mut sent = 0usize;
    let mut blocked = false;
    while sent < requests_max {
        match stalled.write_all(&request) {
            Ok(()) => sent += 1,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                blocked = true;
                break;
            }
            Err(error) => panic!("the stalled connection failed after {sent} requests: {error}"),
        }
        if sent % 1000 == 0 {
            let rss = fixture.broker.rss_bytes();
            assert!(
                rss <= rss_before + RSS_GROWTH_MAX_BYTES,
                "broker RSS grew from {rss_before} to {rss} bytes after {sent} unread fetches"
            );
        }
    }
    assert!(
        blocked,
        "the broker read all {sent} pipelined fetches (about {sent} MiB of answers) of a \
         connection that reads none of them, instead of pushing back"
    );
    let rss_stalled = fixture.broker.rss_bytes();
    assert!(
        rss_stalled <= rss_before + RSS_GROWTH_MAX_BYTES,
        "broker RSS grew from {rss_before} to {rss_stalled} bytes with a stalled reader"
    );

    // Meanwhile everyone else is served, and producing goes on.
    for round in 0..100 {
        let started = Instant::now();
        let values: Vec<String> = (0..50)
            .map(|index| format!("during-{round}-{index}"))
            .collect();
        fixture.append(&mut writer, 0, &values);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a produce took {:?} while a connection was stalled",
            started.elapsed()
        );
    }
    let rss_after = fixture.broker.rss_bytes();
    assert!(
        rss_after <= rss_before + RSS_GROWTH_MAX_BYTES,
        "broker RSS grew from {rss_before} to {rss_after} bytes with a stalled reader"
    );
    drop(stalled);
    fixture.assert_still_serves("a client that stopped reading");
}
