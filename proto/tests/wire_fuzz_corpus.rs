//! Runs the `wire_frame`, `wire_request` and `wire_response` fuzz checks over every input in their
//! checked-in seed corpora, so that `cargo test` replays the seeds (and any crash input added there
//! as a regression) without nightly or cargo-fuzz. The named seeds are the encodings of the sample
//! messages below, one per api and direction plus rejected inputs; the test fails when a seed no
//! longer matches the current encoding. To rewrite them after a deliberate format change:
//!
//! ```text
//! WEIR_WRITE_WIRE_SEEDS=1 cargo test -p weir-proto --test wire_fuzz_corpus
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use weir_proto::wire::fuzz::{fuzz_wire_frame, fuzz_wire_request, fuzz_wire_response};
use weir_proto::wire::*;

fn config() -> TopicConfig {
    TopicConfig {
        flush: FlushPolicy::Interval { interval_ms: 50 },
        retention_bytes: Some(1 << 30),
        retention_ms: None,
        segment_bytes: 256 << 20,
        segment_ms: Some(3_600_000),
    }
}

/// Overrides with every form: a flush policy, explicit unlimited, a value, and two settings left
/// to the broker.
fn overrides() -> TopicConfigOverrides {
    TopicConfigOverrides {
        flush: Some(FlushPolicy::Interval { interval_ms: 50 }),
        retention_bytes: Some(Limit::Unlimited),
        retention_ms: Some(Limit::Value(3_600_000)),
        segment_bytes: None,
        segment_ms: None,
    }
}

fn sample_requests() -> Vec<(&'static str, Request)> {
    vec![
        (
            "api_versions",
            ApiVersionsRequest {
                client_id: "billing".into(),
                client_software: "weir-client/0.1.0".into(),
            }
            .into(),
        ),
        (
            "metadata",
            MetadataRequest {
                topics: vec!["orders".into(), "payments".into()],
            }
            .into(),
        ),
        (
            "create_topic",
            CreateTopicRequest {
                name: "orders".into(),
                partition_count: 12,
                config: overrides(),
            }
            .into(),
        ),
        (
            "delete_topic",
            DeleteTopicRequest {
                name: "orders".into(),
            }
            .into(),
        ),
        ("list_topics", ListTopicsRequest.into()),
        (
            "describe_topic",
            DescribeTopicRequest {
                name: "orders".into(),
            }
            .into(),
        ),
        (
            "produce",
            ProduceRequest {
                acks: Acks::Leader,
                timeout_ms: 30_000,
                entries: vec![
                    ProducePartition {
                        topic_id: 1,
                        partition: 0,
                        records: Bytes::from_static(&[0xab; 70]),
                    },
                    ProducePartition {
                        topic_id: 1,
                        partition: 5,
                        records: Bytes::new(),
                    },
                ],
            }
            .into(),
        ),
        (
            "fetch",
            FetchRequest {
                max_wait_ms: 500,
                min_bytes: 1,
                max_bytes: 1 << 20,
                entries: vec![FetchPartition {
                    topic_id: 1,
                    partition: 3,
                    fetch_offset: 1_000,
                    partition_max_bytes: 1 << 18,
                }],
            }
            .into(),
        ),
        (
            "list_offsets",
            ListOffsetsRequest {
                entries: vec![
                    ListOffsetsPartition {
                        topic_id: 1,
                        partition: 0,
                        query: OffsetQuery::Earliest,
                    },
                    ListOffsetsPartition {
                        topic_id: 1,
                        partition: 1,
                        query: OffsetQuery::Timestamp {
                            timestamp_ms: 1_700_000_000_000,
                        },
                    },
                ],
            }
            .into(),
        ),
        (
            "offset_commit",
            OffsetCommitRequest {
                group_id: "billing".into(),
                generation: GENERATION_NONE,
                member_id: String::new(),
                entries: vec![OffsetCommitPartition {
                    topic_id: 1,
                    partition: 2,
                    offset: 42,
                    metadata: "checkpoint".into(),
                }],
            }
            .into(),
        ),
        (
            "init_producer_id",
            InitProducerIdRequest {
                producer_id: PRODUCER_ID_NONE,
                producer_epoch: PRODUCER_EPOCH_NONE,
            }
            .into(),
        ),
        (
            "offset_fetch",
            OffsetFetchRequest {
                group_id: "billing".into(),
                entries: vec![],
            }
            .into(),
        ),
        (
            "create_topic_broker_defaults",
            CreateTopicRequest {
                name: "events".into(),
                ..CreateTopicRequest::default()
            }
            .into(),
        ),
        (
            "join_group",
            JoinGroupRequest {
                group_id: "billing".into(),
                member_id: String::new(),
                client_id: "biller".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 30_000,
                topics: vec!["events".into()],
                strategies: vec!["sticky".into(), "range".into()],
                owned: vec![TopicPartition {
                    topic_id: 1,
                    partition: 2,
                }],
            }
            .into(),
        ),
        (
            "sync_group",
            SyncGroupRequest {
                group_id: "billing".into(),
                generation: 3,
                member_id: "biller-0001".into(),
            }
            .into(),
        ),
        (
            "heartbeat",
            HeartbeatRequest {
                group_id: "billing".into(),
                generation: 3,
                member_id: "biller-0001".into(),
            }
            .into(),
        ),
        (
            "leave_group",
            LeaveGroupRequest {
                group_id: "billing".into(),
                member_id: "biller-0001".into(),
            }
            .into(),
        ),
        ("list_groups", ListGroupsRequest.into()),
        (
            "describe_groups",
            DescribeGroupsRequest {
                group_ids: vec!["billing".into(), "audit".into()],
            }
            .into(),
        ),
        (
            "delete_groups",
            DeleteGroupsRequest {
                group_ids: vec!["billing".into(), "audit".into()],
            }
            .into(),
        ),
    ]
}

fn sample_responses() -> Vec<(&'static str, Response)> {
    vec![
        (
            "api_versions",
            ApiVersionsResponse {
                apis: ApiVersionsResponse::supported_apis(),
                broker_name: "weir-broker".into(),
                broker_version: "0.1.0".into(),
            }
            .into(),
        ),
        (
            "metadata",
            MetadataResponse {
                broker_id: 0,
                shared_address: "127.0.0.1:9400".into(),
                shards: vec![
                    ShardMetadata {
                        shard: 0,
                        address: "127.0.0.1:9401".into(),
                    },
                    ShardMetadata {
                        shard: 1,
                        address: "127.0.0.1:9402".into(),
                    },
                ],
                topics: vec![
                    TopicMetadata {
                        error_code: ErrorCode::None,
                        error_message: String::new(),
                        name: "orders".into(),
                        topic_id: 1,
                        config: Some(config()),
                        partitions: vec![
                            PartitionMetadata {
                                partition: 0,
                                owner_shard: 1,
                            },
                            PartitionMetadata {
                                partition: 1,
                                owner_shard: 0,
                            },
                        ],
                    },
                    TopicMetadata {
                        error_code: ErrorCode::UnknownTopic,
                        error_message: "no topic named payments".into(),
                        name: "payments".into(),
                        topic_id: 0,
                        config: None,
                        partitions: vec![],
                    },
                ],
            }
            .into(),
        ),
        (
            "create_topic",
            CreateTopicResponse {
                error_code: ErrorCode::None,
                error_message: String::new(),
                topic_id: 1,
            }
            .into(),
        ),
        (
            "delete_topic",
            DeleteTopicResponse {
                error_code: ErrorCode::UnknownTopic,
                error_message: "no topic named orders".into(),
            }
            .into(),
        ),
        (
            "list_topics",
            ListTopicsResponse {
                topics: vec![ListedTopic {
                    name: "orders".into(),
                    topic_id: 1,
                    partition_count: 12,
                }],
            }
            .into(),
        ),
        (
            "describe_topic",
            DescribeTopicResponse {
                error_code: ErrorCode::None,
                error_message: String::new(),
                name: "orders".into(),
                topic_id: 1,
                config: Some(config()),
                partitions: vec![DescribedPartition {
                    partition: 0,
                    owner_shard: 1,
                    error_code: ErrorCode::None,
                    error_message: String::new(),
                    log_start_offset: 0,
                    log_end_offset: 1_234,
                }],
            }
            .into(),
        ),
        (
            "produce",
            ProduceResponse {
                entries: vec![
                    ProducePartitionResult {
                        topic_id: 1,
                        partition: 0,
                        error_code: ErrorCode::None,
                        error_message: String::new(),
                        base_offset: 1_000,
                        log_start_offset: 0,
                    },
                    ProducePartitionResult {
                        topic_id: 1,
                        partition: 5,
                        error_code: ErrorCode::CorruptMessage,
                        error_message: "batch at byte 0: crc mismatch".into(),
                        base_offset: -1,
                        log_start_offset: -1,
                    },
                ],
            }
            .into(),
        ),
        (
            "fetch",
            FetchResponse {
                entries: vec![
                    FetchPartitionResult {
                        topic_id: 1,
                        partition: 3,
                        error_code: ErrorCode::None,
                        error_message: String::new(),
                        high_watermark: 2_000,
                        log_start_offset: 0,
                        records: FetchRecords::from_chunks(vec![
                            Bytes::from_static(&[0x11; 40]),
                            Bytes::from_static(&[0x22; 24]),
                        ]),
                    },
                    FetchPartitionResult {
                        topic_id: 1,
                        partition: 4,
                        error_code: ErrorCode::OffsetOutOfRange,
                        error_message: "offset 9000 is after the log end 2000".into(),
                        high_watermark: 2_000,
                        log_start_offset: 0,
                        records: FetchRecords::new(),
                    },
                ],
            }
            .into(),
        ),
        (
            "list_offsets",
            ListOffsetsResponse {
                entries: vec![ListOffsetsPartitionResult {
                    topic_id: 1,
                    partition: 0,
                    error_code: ErrorCode::None,
                    error_message: String::new(),
                    offset: 0,
                    timestamp_ms: -1,
                }],
            }
            .into(),
        ),
        (
            "offset_commit",
            OffsetCommitResponse {
                entries: vec![OffsetCommitPartitionResult {
                    topic_id: 1,
                    partition: 2,
                    error_code: ErrorCode::None,
                    error_message: String::new(),
                }],
            }
            .into(),
        ),
        (
            "init_producer_id",
            InitProducerIdResponse {
                error_code: ErrorCode::None,
                error_message: String::new(),
                producer_id: 7,
                producer_epoch: 0,
            }
            .into(),
        ),
        (
            "offset_fetch",
            OffsetFetchResponse {
                error_code: ErrorCode::None,
                error_message: String::new(),
                entries: vec![OffsetFetchPartitionResult {
                    topic_id: 1,
                    partition: 2,
                    error_code: ErrorCode::None,
                    error_message: String::new(),
                    offset: 42,
                    metadata: "checkpoint".into(),
                }],
            }
            .into(),
        ),
        (
            "join_group",
            JoinGroupResponse {
                error_code: ErrorCode::None,
                error_message: String::new(),
                generation: 3,
                member_id: "biller-0001".into(),
                leader_id: "biller-0001".into(),
                strategy: "sticky".into(),
                members: vec!["biller-0001".into(), "biller-0002".into()],
            }
            .into(),
        ),
        (
            "sync_group",
            SyncGroupResponse {
                error_code: ErrorCode::None,
                error_message: String::new(),
                assignment: vec![TopicPartition {
                    topic_id: 1,
                    partition: 2,
                }],
            }
            .into(),
        ),
        (
            "heartbeat",
            HeartbeatResponse {
                error_code: ErrorCode::RebalanceInProgress,
                error_message: "the group is rebalancing".into(),
            }
            .into(),
        ),
        (
            "leave_group",
            LeaveGroupResponse {
                error_code: ErrorCode::None,
                error_message: String::new(),
            }
            .into(),
        ),
        (
            "list_groups",
            ListGroupsResponse {
                groups: vec![GroupListing {
                    group_id: "billing".into(),
                    state: "stable".into(),
                    member_count: 2,
                    strategy: "sticky".into(),
                }],
            }
            .into(),
        ),
        (
            "describe_groups",
            DescribeGroupsResponse {
                groups: vec![GroupDescription {
                    group_id: "billing".into(),
                    error_code: ErrorCode::None,
                    error_message: String::new(),
                    state: "stable".into(),
                    generation: 3,
                    strategy: "sticky".into(),
                    members: vec![GroupMemberDescription {
                        member_id: "biller-0001".into(),
                        client_id: "biller".into(),
                        client_host: "127.0.0.1:50000".into(),
                        assignment: vec![TopicPartition {
                            topic_id: 1,
                            partition: 2,
                        }],
                    }],
                    partitions: vec![GroupPartitionLag {
                        topic_id: 1,
                        partition: 2,
                        owner_member_id: "biller-0001".into(),
                        committed_offset: 42,
                        log_end_offset: 142,
                        lag_records: 100,
                        consume_rate_milli: 50_000,
                        lag_ms: 2_000,
                    }],
                }],
            }
            .into(),
        ),
        (
            "delete_groups",
            DeleteGroupsResponse {
                results: vec![
                    DeleteGroupResult {
                        group_id: "billing".into(),
                        error_code: ErrorCode::None,
                        error_message: String::new(),
                    },
                    DeleteGroupResult {
                        group_id: "audit".into(),
                        error_code: ErrorCode::NonEmptyGroup,
                        error_message: "group \"audit\" has 2 members".into(),
                    },
                ],
            }
            .into(),
        ),
        (
            "error_unsupported_version",
            Response::Error(ErrorResponse {
                api_key: ApiKey::Fetch.to_u16(),
                api_version: 9,
                error_code: ErrorCode::UnsupportedVersion,
                message: "Fetch version 9 is not supported (supported: 0..=0)".into(),
            }),
        ),
    ]
}

/// Header bytes then body: the input format of `fuzz_wire_request` and `fuzz_wire_response`.
fn without_length_prefix(frame: &[u8]) -> Vec<u8> {
    frame[LENGTH_PREFIX_BYTES..].to_vec()
}

fn request_frame(request: &Request, correlation_id: u32) -> Vec<u8> {
    let mut frame = BytesMut::new();
    request
        .encode_frame(correlation_id, Priority::Normal, &mut frame)
        .expect("encodes");
    frame.to_vec()
}

fn response_frame(response: &Response, correlation_id: u32) -> Vec<u8> {
    let mut frame = BytesMut::new();
    response
        .encode_frame(correlation_id, 0, &mut frame)
        .expect("encodes");
    frame.to_vec()
}

/// Every named seed: (corpus, file name, bytes).
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let requests = sample_requests();
    let responses = sample_responses();
    for (name, request) in &requests {
        let frame = request_frame(request, 1);
        seeds.push((
            "wire_request",
            name.to_string(),
            without_length_prefix(&frame),
        ));
    }
    for (name, response) in &responses {
        let frame = response_frame(response, 1);
        seeds.push((
            "wire_response",
            name.to_string(),
            without_length_prefix(&frame),
        ));
    }
    let rejected: [(&str, RequestHeader, &[u8]); 4] = [
        (
            "rejected_unknown_api_key",
            RequestHeader::from_raw(999, 0, 1, 0),
            b"",
        ),
        (
            "rejected_unsupported_version",
            RequestHeader::from_raw(21, 9, 1, 0),
            b"",
        ),
        (
            "rejected_reserved_flags",
            RequestHeader::from_raw(12, 0, 1, 0x8000),
            b"",
        ),
        (
            "rejected_huge_count",
            RequestHeader::from_raw(20, 0, 1, 0),
            &[1, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, 0, 0, 0],
        ),
    ];
    for (name, header, body) in rejected {
        let mut data = zerocopy::IntoBytes::as_bytes(&header).to_vec();
        data.extend_from_slice(body);
        seeds.push(("wire_request", name.to_owned(), data));
    }

    // Frame streams: a piece-size byte, then several frames back to back.
    let mut request_stream = vec![3u8];
    for (index, (_, request)) in requests.iter().enumerate() {
        request_stream.extend(request_frame(request, index as u32));
    }
    seeds.push(("wire_frame", "request_stream".into(), request_stream));
    let mut response_stream = vec![7u8];
    for (index, (_, response)) in responses.iter().enumerate() {
        response_stream.extend(response_frame(response, index as u32));
    }
    seeds.push(("wire_frame", "response_stream".into(), response_stream));
    let mut oversized = vec![0u8];
    oversized.extend(request_frame(&requests[0].1, 1));
    oversized.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    seeds.push(("wire_frame", "oversized_after_one_frame".into(), oversized));
    let mut too_short = vec![1u8];
    too_short.extend_from_slice(&3u32.to_be_bytes());
    too_short.extend_from_slice(&[0, 0, 0]);
    seeds.push(("wire_frame", "too_short".into(), too_short));
    let mut partial = vec![16u8];
    partial.extend(request_frame(&requests[6].1, 1));
    partial.truncate(partial.len() - 5);
    seeds.push(("wire_frame", "partial_produce".into(), partial));
    seeds
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn named_seeds_match_the_current_encoding() {
    let write = std::env::var_os("WEIR_WRITE_WIRE_SEEDS").is_some();
    for (target, name, bytes) in seeds() {
        let path = corpus_dir(target).join(&name);
        if write {
            fs::create_dir_all(corpus_dir(target)).expect("corpus directory");
            fs::write(&path, &bytes).expect("writes the seed");
        }
        let stored = fs::read(&path).unwrap_or_else(|error| {
            panic!(
                "seed {} is missing ({error}); see this file's header",
                path.display()
            )
        });
        assert_eq!(
            stored,
            bytes,
            "seed {} no longer matches the encoding",
            path.display()
        );
    }
}

/// A fuzz entry point.
type FuzzCheck = fn(&[u8]);

#[test]
fn every_seed_passes_the_fuzz_checks() {
    let checks: [(&str, FuzzCheck); 3] = [
        ("wire_frame", fuzz_wire_frame),
        ("wire_request", fuzz_wire_request),
        ("wire_response", fuzz_wire_response),
    ];
    for (target, check) in checks {
        let mut seeds = 0;
        for entry in fs::read_dir(corpus_dir(target)).expect("the seed corpus is checked in") {
            let path = entry.expect("readable entry").path();
            check(&fs::read(&path).expect("readable seed"));
            seeds += 1;
        }
        assert!(seeds >= 5, "{target}: {seeds} seeds");
    }
}

#[test]
fn request_seeds_reach_every_api_and_the_error_path() {
    let mut decoded = BTreeSet::new();
    let mut rejected = BTreeSet::new();
    for entry in fs::read_dir(corpus_dir("wire_request")).expect("the seed corpus is checked in") {
        let data = fs::read(entry.expect("readable entry").path()).expect("readable seed");
        let Ok((header, body)) = <RequestHeader as zerocopy::FromBytes>::read_from_prefix(&data)
        else {
            continue;
        };
        match Request::decode(&header, &Bytes::copy_from_slice(body)) {
            Ok(request) => {
                decoded.insert(request.api_key());
            }
            Err(error) => {
                rejected.insert(error.error_code().to_u16());
            }
        }
    }
    let every_api: BTreeSet<ApiKey> = ApiKey::ALL.iter().copied().collect();
    assert_eq!(decoded, every_api);
    let expected_rejections: BTreeSet<u16> = [
        ErrorCode::UnknownApiKey,
        ErrorCode::UnsupportedVersion,
        ErrorCode::InvalidRequest,
    ]
    .iter()
    .map(|code| code.to_u16())
    .collect();
    assert!(rejected.is_superset(&expected_rejections), "{rejected:?}");
}

#[test]
fn response_seeds_reach_every_api_and_the_error_body() {
    let mut decoded = BTreeSet::new();
    let mut error_bodies = 0;
    for entry in fs::read_dir(corpus_dir("wire_response")).expect("the seed corpus is checked in") {
        let data = fs::read(entry.expect("readable entry").path()).expect("readable seed");
        let Ok((header, body)) = <ResponseHeader as zerocopy::FromBytes>::read_from_prefix(&data)
        else {
            continue;
        };
        match Response::decode(&header, &Bytes::copy_from_slice(body)) {
            Ok(Response::Error(_)) => error_bodies += 1,
            Ok(response) => {
                decoded.insert(response.api_key_raw());
            }
            Err(_) => {}
        }
    }
    let every_api: BTreeSet<u16> = ApiKey::ALL.iter().map(|key| key.to_u16()).collect();
    assert_eq!(decoded, every_api);
    assert!(error_bodies >= 1);
}
