//! Property tests of the wire protocol: every request and response type survives encode → decode
//! unchanged (body alone, and as a whole frame through the frame decoder and the `Request` /
//! `Response` enums); chunked encodings are byte-for-byte the contiguous ones; a stream of frames
//! split at arbitrary points decodes to the same frames; every strict prefix of a valid body is
//! rejected as truncated; and no input — arbitrary bytes, or a valid encoding with one byte changed
//! — makes a decoder panic or breaks the fuzz properties (canonical re-encoding, readable error
//! responses).

use std::fmt::Debug;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use weir_proto::wire::fuzz::{fuzz_wire_frame, fuzz_wire_request, fuzz_wire_response};
use weir_proto::wire::*;

// ---------------------------------------------------------------------------------------------
// Strategies.

fn text(chars_max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..chars_max).prop_map(String::from_iter)
}

fn blob(bytes_max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..bytes_max).prop_map(Bytes::from)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        select(ErrorCode::ALL.to_vec()),
        any::<u16>().prop_map(ErrorCode::from_u16),
    ]
}

fn flush_policy() -> impl Strategy<Value = FlushPolicy> {
    prop_oneof![
        Just(FlushPolicy::Always),
        any::<u32>().prop_map(|interval_ms| FlushPolicy::Interval { interval_ms }),
        Just(FlushPolicy::Never),
    ]
}

fn topic_config() -> impl Strategy<Value = TopicConfig> {
    (
        flush_policy(),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
        any::<u64>(),
        option::of(any::<u64>()),
    )
        .prop_map(
            |(flush, retention_bytes, retention_ms, segment_bytes, segment_ms)| TopicConfig {
                flush,
                retention_bytes,
                retention_ms,
                segment_bytes,
                segment_ms,
            },
        )
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![Just(Limit::Unlimited), any::<u64>().prop_map(Limit::Value),]
}

/// Overrides with each setting absent, unlimited or a value in turn.
fn topic_config_overrides() -> impl Strategy<Value = TopicConfigOverrides> {
    (
        option::of(flush_policy()),
        option::of(limit()),
        option::of(limit()),
        option::of(any::<u64>()),
        option::of(limit()),
    )
        .prop_map(
            |(flush, retention_bytes, retention_ms, segment_bytes, segment_ms)| {
                TopicConfigOverrides {
                    flush,
                    retention_bytes,
                    retention_ms,
                    segment_bytes,
                    segment_ms,
                }
            },
        )
}

fn api_versions_request() -> impl Strategy<Value = ApiVersionsRequest> {
    (text(20), text(20)).prop_map(|(client_id, client_software)| ApiVersionsRequest {
        client_id,
        client_software,
    })
}

fn api_versions_response() -> impl Strategy<Value = ApiVersionsResponse> {
    (
        vec((any::<u16>(), any::<u16>(), any::<u16>()), 0..8),
        text(12),
        text(12),
    )
        .prop_map(|(apis, broker_name, broker_version)| ApiVersionsResponse {
            apis: apis
                .into_iter()
                .map(|(api_key, min, max)| ApiVersionRange {
                    api_key,
                    versions: VersionRange { min, max },
                })
                .collect(),
            broker_name,
            broker_version,
        })
}

fn metadata_request() -> impl Strategy<Value = MetadataRequest> {
    vec(text(16), 0..5).prop_map(|topics| MetadataRequest { topics })
}

fn metadata_response() -> impl Strategy<Value = MetadataResponse> {
    let shard =
        (any::<u32>(), text(24)).prop_map(|(shard, address)| ShardMetadata { shard, address });
    let partition =
        (any::<u32>(), any::<u32>()).prop_map(|(partition, owner_shard)| PartitionMetadata {
            partition,
            owner_shard,
        });
    let topic = (
        error_code(),
        text(16),
        text(16),
        any::<u32>(),
        option::of(topic_config()),
        vec(partition, 0..6),
    )
        .prop_map(
            |(error_code, error_message, name, topic_id, config, partitions)| TopicMetadata {
                error_code,
                error_message,
                name,
                topic_id,
                config,
                partitions,
            },
        );
    (any::<u32>(), text(24), vec(shard, 0..4), vec(topic, 0..4)).prop_map(
        |(broker_id, shared_address, shards, topics)| MetadataResponse {
            broker_id,
            shared_address,
            shards,
            topics,
        },
    )
}

fn create_topic_request() -> impl Strategy<Value = CreateTopicRequest> {
    (text(24), any::<u32>(), topic_config_overrides()).prop_map(
        |(name, partition_count, config)| CreateTopicRequest {
            name,
            partition_count,
            config,
        },
    )
}

fn create_topic_response() -> impl Strategy<Value = CreateTopicResponse> {
    (error_code(), text(24), any::<u32>()).prop_map(|(error_code, error_message, topic_id)| {
        CreateTopicResponse {
            error_code,
            error_message,
            topic_id,
        }
    })
}

fn delete_topic_request() -> impl Strategy<Value = DeleteTopicRequest> {
    text(24).prop_map(|name| DeleteTopicRequest { name })
}

fn delete_topic_response() -> impl Strategy<Value = DeleteTopicResponse> {
    (error_code(), text(24)).prop_map(|(error_code, error_message)| DeleteTopicResponse {
        error_code,
        error_message,
    })
}

fn list_topics_request() -> impl Strategy<Value = ListTopicsRequest> {
    Just(ListTopicsRequest)
}

fn list_topics_response() -> impl Strategy<Value = ListTopicsResponse> {
    let topic =
        (text(16), any::<u32>(), any::<u32>()).prop_map(|(name, topic_id, partition_count)| {
            ListedTopic {
                name,
                topic_id,
                partition_count,
            }
        });
    vec(topic, 0..6).prop_map(|topics| ListTopicsResponse { topics })
}

fn describe_topic_request() -> impl Strategy<Value = DescribeTopicRequest> {
    text(24).prop_map(|name| DescribeTopicRequest { name })
}

fn describe_topic_response() -> impl Strategy<Value = DescribeTopicResponse> {
    let partition = (
        any::<u32>(),
        any::<u32>(),
        error_code(),
        text(12),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(
                partition,
                owner_shard,
                error_code,
                error_message,
                log_start_offset,
                log_end_offset,
            )| {
                DescribedPartition {
                    partition,
                    owner_shard,
                    error_code,
                    error_message,
                    log_start_offset,
                    log_end_offset,
                }
            },
        );
    (
        error_code(),
        text(16),
        text(16),
        any::<u32>(),
        option::of(topic_config()),
        vec(partition, 0..5),
    )
        .prop_map(
            |(error_code, error_message, name, topic_id, config, partitions)| {
                DescribeTopicResponse {
                    error_code,
                    error_message,
                    name,
                    topic_id,
                    config,
                    partitions,
                }
            },
        )
}

fn acks() -> impl Strategy<Value = Acks> {
    prop_oneof![Just(Acks::None), Just(Acks::Leader)]
}

fn produce_request() -> impl Strategy<Value = ProduceRequest> {
    let entry =
        (any::<u32>(), any::<u32>(), blob(96)).prop_map(|(topic_id, partition, records)| {
            ProducePartition {
                topic_id,
                partition,
                records,
            }
        });
    (acks(), any::<u32>(), vec(entry, 0..5)).prop_map(|(acks, timeout_ms, entries)| {
        ProduceRequest {
            acks,
            timeout_ms,
            entries,
        }
    })
}

fn produce_response() -> impl Strategy<Value = ProduceResponse> {
    let entry = (
        any::<u32>(),
        any::<u32>(),
        error_code(),
        text(16),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(topic_id, partition, error_code, error_message, base_offset, log_start_offset)| {
                ProducePartitionResult {
                    topic_id,
                    partition,
                    error_code,
                    error_message,
                    base_offset,
                    log_start_offset,
                }
            },
        );
    vec(entry, 0..5).prop_map(|entries| ProduceResponse { entries })
}

fn fetch_request() -> impl Strategy<Value = FetchRequest> {
    let entry = (any::<u32>(), any::<u32>(), any::<i64>(), any::<u32>()).prop_map(
        |(topic_id, partition, fetch_offset, partition_max_bytes)| FetchPartition {
            topic_id,
            partition,
            fetch_offset,
            partition_max_bytes,
        },
    );
    (any::<u32>(), any::<u32>(), any::<u32>(), vec(entry, 0..5)).prop_map(
        |(max_wait_ms, min_bytes, max_bytes, entries)| FetchRequest {
            max_wait_ms,
            min_bytes,
            max_bytes,
            entries,
        },
    )
}

/// Records as the broker holds them: several chunks, some possibly empty.
fn fetch_records() -> impl Strategy<Value = FetchRecords> {
    vec(blob(48), 0..4).prop_map(FetchRecords::from_chunks)
}

fn fetch_response() -> impl Strategy<Value = FetchResponse> {
    let entry = (
        (any::<u32>(), any::<u32>(), error_code(), text(12)),
        (any::<i64>(), any::<i64>(), fetch_records()),
    )
        .prop_map(
            |(
                (topic_id, partition, error_code, error_message),
                (high_watermark, log_start_offset, records),
            )| FetchPartitionResult {
                topic_id,
                partition,
                error_code,
                error_message,
                high_watermark,
                log_start_offset,
                records,
            },
        );
    vec(entry, 0..5).prop_map(|entries| FetchResponse { entries })
}

fn offset_query() -> impl Strategy<Value = OffsetQuery> {
    prop_oneof![
        Just(OffsetQuery::Earliest),
        Just(OffsetQuery::Latest),
        (0..=i64::MAX).prop_map(|timestamp_ms| OffsetQuery::Timestamp { timestamp_ms }),
    ]
}

fn list_offsets_request() -> impl Strategy<Value = ListOffsetsRequest> {
    let entry =
        (any::<u32>(), any::<u32>(), offset_query()).prop_map(|(topic_id, partition, query)| {
            ListOffsetsPartition {
                topic_id,
                partition,
                query,
            }
        });
    vec(entry, 0..6).prop_map(|entries| ListOffsetsRequest { entries })
}

fn list_offsets_response() -> impl Strategy<Value = ListOffsetsResponse> {
    let entry = (
        any::<u32>(),
        any::<u32>(),
        error_code(),
        text(12),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(topic_id, partition, error_code, error_message, offset, timestamp_ms)| {
                ListOffsetsPartitionResult {
                    topic_id,
                    partition,
                    error_code,
                    error_message,
                    offset,
                    timestamp_ms,
                }
            },
        );
    vec(entry, 0..6).prop_map(|entries| ListOffsetsResponse { entries })
}

fn offset_commit_request() -> impl Strategy<Value = OffsetCommitRequest> {
    let entry = (any::<u32>(), any::<u32>(), any::<i64>(), text(16)).prop_map(
        |(topic_id, partition, offset, metadata)| OffsetCommitPartition {
            topic_id,
            partition,
            offset,
            metadata,
        },
    );
    (text(16), any::<i32>(), text(16), vec(entry, 0..5)).prop_map(
        |(group_id, generation, member_id, entries)| OffsetCommitRequest {
            group_id,
            generation,
            member_id,
            entries,
        },
    )
}

fn offset_commit_response() -> impl Strategy<Value = OffsetCommitResponse> {
    let entry = (any::<u32>(), any::<u32>(), error_code(), text(12)).prop_map(
        |(topic_id, partition, error_code, error_message)| OffsetCommitPartitionResult {
            topic_id,
            partition,
            error_code,
            error_message,
        },
    );
    vec(entry, 0..6).prop_map(|entries| OffsetCommitResponse { entries })
}

fn init_producer_id_request() -> impl Strategy<Value = InitProducerIdRequest> {
    (any::<i64>(), any::<i16>()).prop_map(|(producer_id, producer_epoch)| InitProducerIdRequest {
        producer_id,
        producer_epoch,
    })
}

fn init_producer_id_response() -> impl Strategy<Value = InitProducerIdResponse> {
    (error_code(), ".{0,20}", any::<i64>(), any::<i16>()).prop_map(
        |(error_code, error_message, producer_id, producer_epoch)| InitProducerIdResponse {
            error_code,
            error_message,
            producer_id,
            producer_epoch,
        },
    )
}

fn offset_fetch_request() -> impl Strategy<Value = OffsetFetchRequest> {
    let entry =
        (any::<u32>(), any::<u32>()).prop_map(|(topic_id, partition)| OffsetFetchPartition {
            topic_id,
            partition,
        });
    (text(16), vec(entry, 0..6))
        .prop_map(|(group_id, entries)| OffsetFetchRequest { group_id, entries })
}

fn offset_fetch_response() -> impl Strategy<Value = OffsetFetchResponse> {
    let entry = (
        any::<u32>(),
        any::<u32>(),
        error_code(),
        text(12),
        any::<i64>(),
        text(16),
    )
        .prop_map(
            |(topic_id, partition, error_code, error_message, offset, metadata)| {
                OffsetFetchPartitionResult {
                    topic_id,
                    partition,
                    error_code,
                    error_message,
                    offset,
                    metadata,
                }
            },
        );
    (error_code(), text(12), vec(entry, 0..5)).prop_map(|(error_code, error_message, entries)| {
        OffsetFetchResponse {
            error_code,
            error_message,
            entries,
        }
    })
}

fn topic_partition() -> impl Strategy<Value = TopicPartition> {
    (any::<u32>(), any::<u32>()).prop_map(|(topic_id, partition)| TopicPartition {
        topic_id,
        partition,
    })
}

fn join_group_request() -> impl Strategy<Value = JoinGroupRequest> {
    (
        (text(12), text(12), text(8), any::<u32>(), any::<u32>()),
        vec(text(8), 0..4),
        vec(text(10), 0..4),
        vec(topic_partition(), 0..5),
    )
        .prop_map(
            |(
                (group_id, member_id, client_id, session_timeout_ms, rebalance_timeout_ms),
                topics,
                strategies,
                owned,
            )| JoinGroupRequest {
                group_id,
                member_id,
                client_id,
                session_timeout_ms,
                rebalance_timeout_ms,
                topics,
                strategies,
                owned,
            },
        )
}

fn join_group_response() -> impl Strategy<Value = JoinGroupResponse> {
    (
        (error_code(), text(12), any::<i32>()),
        (text(12), text(12), text(10)),
        vec(text(12), 0..4),
    )
        .prop_map(
            |(
                (error_code, error_message, generation),
                (member_id, leader_id, strategy),
                members,
            )| {
                JoinGroupResponse {
                    error_code,
                    error_message,
                    generation,
                    member_id,
                    leader_id,
                    strategy,
                    members,
                }
            },
        )
}

fn sync_group_request() -> impl Strategy<Value = SyncGroupRequest> {
    (text(12), any::<i32>(), text(12)).prop_map(|(group_id, generation, member_id)| {
        SyncGroupRequest {
            group_id,
            generation,
            member_id,
        }
    })
}

fn sync_group_response() -> impl Strategy<Value = SyncGroupResponse> {
    (error_code(), text(12), vec(topic_partition(), 0..5)).prop_map(
        |(error_code, error_message, assignment)| SyncGroupResponse {
            error_code,
            error_message,
            assignment,
        },
    )
}

fn heartbeat_request() -> impl Strategy<Value = HeartbeatRequest> {
    (text(12), any::<i32>(), text(12)).prop_map(|(group_id, generation, member_id)| {
        HeartbeatRequest {
            group_id,
            generation,
            member_id,
        }
    })
}

fn heartbeat_response() -> impl Strategy<Value = HeartbeatResponse> {
    (error_code(), text(12)).prop_map(|(error_code, error_message)| HeartbeatResponse {
        error_code,
        error_message,
    })
}

fn leave_group_request() -> impl Strategy<Value = LeaveGroupRequest> {
    (text(12), text(12)).prop_map(|(group_id, member_id)| LeaveGroupRequest {
        group_id,
        member_id,
    })
}

fn leave_group_response() -> impl Strategy<Value = LeaveGroupResponse> {
    (error_code(), text(12)).prop_map(|(error_code, error_message)| LeaveGroupResponse {
        error_code,
        error_message,
    })
}

fn list_groups_response() -> impl Strategy<Value = ListGroupsResponse> {
    let listing = (text(12), text(20), any::<u32>(), text(10)).prop_map(
        |(group_id, state, member_count, strategy)| GroupListing {
            group_id,
            state,
            member_count,
            strategy,
        },
    );
    vec(listing, 0..5).prop_map(|groups| ListGroupsResponse { groups })
}

fn describe_groups_request() -> impl Strategy<Value = DescribeGroupsRequest> {
    vec(text(12), 0..5).prop_map(|group_ids| DescribeGroupsRequest { group_ids })
}

fn delete_groups_request() -> impl Strategy<Value = DeleteGroupsRequest> {
    vec(text(12), 0..5).prop_map(|group_ids| DeleteGroupsRequest { group_ids })
}

fn delete_groups_response() -> impl Strategy<Value = DeleteGroupsResponse> {
    let result =
        (text(12), error_code(), text(16)).prop_map(|(group_id, error_code, error_message)| {
            DeleteGroupResult {
                group_id,
                error_code,
                error_message,
            }
        });
    vec(result, 0..5).prop_map(|results| DeleteGroupsResponse { results })
}

fn describe_groups_response() -> impl Strategy<Value = DescribeGroupsResponse> {
    let member = (text(12), text(8), text(16), vec(topic_partition(), 0..4)).prop_map(
        |(member_id, client_id, client_host, assignment)| GroupMemberDescription {
            member_id,
            client_id,
            client_host,
            assignment,
        },
    );
    let partition = (
        (any::<u32>(), any::<u32>(), text(12)),
        (
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<u64>(),
            any::<i64>(),
        ),
    )
        .prop_map(
            |(
                (topic_id, partition, owner_member_id),
                (committed_offset, log_end_offset, lag_records, consume_rate_milli, lag_ms),
            )| GroupPartitionLag {
                topic_id,
                partition,
                owner_member_id,
                committed_offset,
                log_end_offset,
                lag_records,
                consume_rate_milli,
                lag_ms,
            },
        );
    let group = (
        (
            text(12),
            error_code(),
            text(12),
            text(20),
            any::<i32>(),
            text(10),
        ),
        vec(member, 0..3),
        vec(partition, 0..4),
    )
        .prop_map(
            |(
                (group_id, error_code, error_message, state, generation, strategy),
                members,
                partitions,
            )| {
                GroupDescription {
                    group_id,
                    error_code,
                    error_message,
                    state,
                    generation,
                    strategy,
                    members,
                    partitions,
                }
            },
        );
    vec(group, 0..3).prop_map(|groups| DescribeGroupsResponse { groups })
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![
        Just(Priority::Normal),
        Just(Priority::Critical),
        Just(Priority::Telemetry)
    ]
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// The body alone: encode, decode at the encoded version, compare; the chunked encoding is the
/// same bytes; every strict prefix is rejected as truncated, never accepted.
fn check_body<M: WireMessage + PartialEq + Debug>(message: &M) -> Bytes {
    let mut dst = BytesMut::new();
    message.encode(&mut dst).expect("encodes");
    let body = dst.freeze();
    let decoded = M::decode(&body, M::API_VERSION).expect("decodes");
    assert_eq!(&decoded, message);

    let mut scratch = BytesMut::new();
    let mut chunks = Vec::new();
    message
        .encode_chunks(&mut scratch, &mut chunks)
        .expect("encodes as chunks");
    assert_eq!(concat(&chunks), body);

    for cut in 0..body.len() {
        let prefix = body.slice(..cut);
        let error = M::decode(&prefix, M::API_VERSION).expect_err("a strict prefix is invalid");
        assert!(
            matches!(
                error.kind,
                DecodeErrorKind::Truncated { .. } | DecodeErrorKind::CountTooLarge { .. }
            ),
            "prefix of {cut} bytes: {error}"
        );
    }
    body
}

/// A whole request frame: through the frame decoder and `Request::decode`, and the chunked
/// frame equals the contiguous one.
fn check_request<M>(message: M, correlation_id: u32, priority: Priority)
where
    M: RequestMessage + PartialEq + Debug + Clone + Into<Request>,
{
    let body = check_body(&message);
    let mut stream = BytesMut::new();
    message
        .encode_frame(correlation_id, priority, &mut stream)
        .expect("encodes a frame");
    let encoded = stream.clone().freeze();
    assert_eq!(
        encoded.len(),
        LENGTH_PREFIX_BYTES + RequestHeader::BYTES + body.len()
    );

    let mut scratch = BytesMut::new();
    let mut chunks = Vec::new();
    message
        .encode_frame_chunks(correlation_id, priority, &mut scratch, &mut chunks)
        .expect("encodes a frame as chunks");
    assert_eq!(concat(&chunks), encoded);

    let frame = RequestFrameDecoder::default()
        .decode(&mut stream)
        .expect("frames")
        .expect("a whole frame");
    assert!(stream.is_empty());
    assert_eq!(frame.header.api_key(), Some(M::API_KEY));
    assert_eq!(frame.header.api_version(), M::API_VERSION);
    assert_eq!(frame.header.correlation_id(), correlation_id);
    assert_eq!(frame.header.priority(), Ok(priority));
    assert_eq!(frame.body, body);
    let request = Request::decode(&frame.header, &frame.body).expect("decodes");
    assert_eq!(request.api_key(), M::API_KEY);
    assert_eq!(request, message.into());
}

/// A whole response frame: through the frame decoder, `Response::decode` and
/// `decode_response`, and the chunked frame equals the contiguous one.
fn check_response<M>(message: M, correlation_id: u32, throttle_time_ms: u32)
where
    M: ResponseMessage + PartialEq + Debug + Clone + Into<Response>,
{
    let body = check_body(&message);
    let mut stream = BytesMut::new();
    message
        .encode_frame(correlation_id, throttle_time_ms, &mut stream)
        .expect("encodes a frame");
    let encoded = stream.clone().freeze();

    let mut scratch = BytesMut::new();
    let mut chunks = Vec::new();
    message
        .encode_frame_chunks(correlation_id, throttle_time_ms, &mut scratch, &mut chunks)
        .expect("encodes a frame as chunks");
    assert_eq!(concat(&chunks), encoded);
    let prefix = u32::from_be_bytes([encoded[0], encoded[1], encoded[2], encoded[3]]);
    assert_eq!(prefix as usize, encoded.len() - LENGTH_PREFIX_BYTES);

    let frame = ResponseFrameDecoder::default()
        .decode(&mut stream)
        .expect("frames")
        .expect("a whole frame");
    assert!(stream.is_empty());
    assert_eq!(frame.header.correlation_id(), correlation_id);
    assert_eq!(frame.header.throttle_time_ms(), throttle_time_ms);
    assert_eq!(frame.header.api_key(), Some(M::API_KEY));
    assert_eq!(frame.header.error_code(), ErrorCode::None);
    assert_eq!(frame.body, body);
    let typed: M = decode_response(&frame.header, &frame.body).expect("decodes as M");
    assert_eq!(typed, message);
    let any = Response::decode(&frame.header, &frame.body).expect("decodes");
    assert_eq!(any, message.into());
}

fn concat(chunks: &[Bytes]) -> Bytes {
    let mut joined = BytesMut::new();
    for chunk in chunks {
        joined.put_slice(chunk);
    }
    joined.freeze()
}

/// Encodes a request frame for `message` and returns header bytes followed by the body, the
/// input format of `fuzz_wire_request`.
fn request_bytes(request: &Request) -> Vec<u8> {
    let mut frame = BytesMut::new();
    request
        .encode_frame(7, Priority::Normal, &mut frame)
        .expect("encodes");
    frame[LENGTH_PREFIX_BYTES..].to_vec()
}

fn response_bytes(response: &Response) -> Vec<u8> {
    let mut frame = BytesMut::new();
    response.encode_frame(7, 0, &mut frame).expect("encodes");
    frame[LENGTH_PREFIX_BYTES..].to_vec()
}

fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        api_versions_request().prop_map(Request::from),
        metadata_request().prop_map(Request::from),
        create_topic_request().prop_map(Request::from),
        delete_topic_request().prop_map(Request::from),
        list_topics_request().prop_map(Request::from),
        describe_topic_request().prop_map(Request::from),
        produce_request().prop_map(Request::from),
        fetch_request().prop_map(Request::from),
        list_offsets_request().prop_map(Request::from),
        offset_commit_request().prop_map(Request::from),
        offset_fetch_request().prop_map(Request::from),
        init_producer_id_request().prop_map(Request::from),
        join_group_request().prop_map(Request::from),
        sync_group_request().prop_map(Request::from),
        heartbeat_request().prop_map(Request::from),
        leave_group_request().prop_map(Request::from),
        Just(Request::from(ListGroupsRequest)),
        describe_groups_request().prop_map(Request::from),
        delete_groups_request().prop_map(Request::from),
    ]
}

fn any_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        api_versions_response().prop_map(Response::from),
        metadata_response().prop_map(Response::from),
        create_topic_response().prop_map(Response::from),
        delete_topic_response().prop_map(Response::from),
        list_topics_response().prop_map(Response::from),
        describe_topic_response().prop_map(Response::from),
        produce_response().prop_map(Response::from),
        fetch_response().prop_map(Response::from),
        list_offsets_response().prop_map(Response::from),
        offset_commit_response().prop_map(Response::from),
        offset_fetch_response().prop_map(Response::from),
        init_producer_id_response().prop_map(Response::from),
        join_group_response().prop_map(Response::from),
        sync_group_response().prop_map(Response::from),
        heartbeat_response().prop_map(Response::from),
        leave_group_response().prop_map(Response::from),
        list_groups_response().prop_map(Response::from),
        describe_groups_response().prop_map(Response::from),
        delete_groups_response().prop_map(Response::from),
    ]
}

/// A raw frame as a test stream holds it: header bytes (any values) and a body.
#[derive(Debug, Clone)]
struct RawFrame {
    header: Vec<u8>,
    body: Vec<u8>,
}

fn raw_frames(header_bytes: usize) -> impl Strategy<Value = Vec<RawFrame>> {
    let frame = (
        vec(any::<u8>(), header_bytes..=header_bytes),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(header, body)| RawFrame { header, body });
    vec(frame, 0..8)
}

fn stream_of(frames: &[RawFrame]) -> Vec<u8> {
    let mut stream = Vec::new();
    for frame in frames {
        let length = (frame.header.len() + frame.body.len()) as u32;
        stream.extend_from_slice(&length.to_be_bytes());
        stream.extend_from_slice(&frame.header);
        stream.extend_from_slice(&frame.body);
    }
    stream
}

/// Feeds `stream` to a fresh decoder in pieces of the given sizes (cycled), collecting frames as
/// (header bytes, body).
fn decode_in_pieces<H: FrameHeader>(
    stream: &[u8],
    piece_sizes: &[usize],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut decoder = FrameDecoder::<H>::default();
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    let mut position = 0;
    let mut sizes = piece_sizes.iter().cycle();
    while position < stream.len() {
        let size = sizes.next().copied().unwrap_or(1).max(1);
        let end = (position + size).min(stream.len());
        buffer.extend_from_slice(&stream[position..end]);
        position = end;
        while let Some(frame) = decoder.decode(&mut buffer).expect("valid framing") {
            frames.push((
                zerocopy::IntoBytes::as_bytes(&frame.header).to_vec(),
                frame.body.to_vec(),
            ));
        }
    }
    assert!(buffer.is_empty(), "bytes left after the last whole frame");
    frames
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn api_versions_round_trip(request in api_versions_request(), response in api_versions_response(),
                               correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn metadata_round_trip(request in metadata_request(), response in metadata_response(),
                           correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn create_topic_round_trip(request in create_topic_request(), response in create_topic_response(),
                               correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn overrides_from_a_config_give_every_setting_as_it_is(config in topic_config()) {
        let overrides = TopicConfigOverrides::from(config);
        prop_assert_eq!(overrides.flush, Some(config.flush));
        prop_assert_eq!(overrides.retention_bytes.map(Limit::value), Some(config.retention_bytes));
        prop_assert_eq!(overrides.retention_ms.map(Limit::value), Some(config.retention_ms));
        prop_assert_eq!(overrides.segment_bytes, Some(config.segment_bytes));
        prop_assert_eq!(overrides.segment_ms.map(Limit::value), Some(config.segment_ms));
    }

    #[test]
    fn delete_topic_round_trip(request in delete_topic_request(), response in delete_topic_response(),
                               correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn list_topics_round_trip(request in list_topics_request(), response in list_topics_response(),
                              correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn describe_topic_round_trip(request in describe_topic_request(), response in describe_topic_response(),
                                 correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn produce_round_trip(request in produce_request(), response in produce_response(),
                          correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn fetch_round_trip(request in fetch_request(), response in fetch_response(),
                        correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn list_offsets_round_trip(request in list_offsets_request(), response in list_offsets_response(),
                               correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn offset_commit_round_trip(request in offset_commit_request(), response in offset_commit_response(),
                                correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn init_producer_id_round_trip(request in init_producer_id_request(), response in init_producer_id_response(),
                                   correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn offset_fetch_round_trip(request in offset_fetch_request(), response in offset_fetch_response(),
                               correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn join_group_round_trip(request in join_group_request(), response in join_group_response(),
                             correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn sync_group_round_trip(request in sync_group_request(), response in sync_group_response(),
                             correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn heartbeat_round_trip(request in heartbeat_request(), response in heartbeat_response(),
                            correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn leave_group_round_trip(request in leave_group_request(), response in leave_group_response(),
                              correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn list_groups_round_trip(response in list_groups_response(),
                              correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(ListGroupsRequest, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn describe_groups_round_trip(request in describe_groups_request(), response in describe_groups_response(),
                                  correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn delete_groups_round_trip(request in delete_groups_request(), response in delete_groups_response(),
                                correlation_id in any::<u32>(), priority in priority(), throttle in any::<u32>()) {
        check_request(request, correlation_id, priority);
        check_response(response, correlation_id, throttle);
    }

    #[test]
    fn error_response_round_trip(api_key in any::<u16>(), api_version in any::<u16>(),
                                 code in error_code().prop_filter("an error", |code| !code.is_none()),
                                 message in text(40), correlation_id in any::<u32>(), throttle in any::<u32>()) {
        let request_header = RequestHeader::from_raw(api_key, api_version, correlation_id, 0);
        let rejection = ErrorResponse::new(&request_header, code, &message);
        let mut stream = BytesMut::new();
        rejection.encode_frame(correlation_id, throttle, &mut stream).expect("encodes");
        let frame = ResponseFrameDecoder::default().decode(&mut stream).expect("frames").expect("whole");
        prop_assert_eq!(frame.header.error_code(), code);
        prop_assert_eq!(frame.header.api_key_raw(), api_key);
        prop_assert_eq!(frame.header.api_version(), api_version);
        prop_assert_eq!(Response::decode(&frame.header, &frame.body), Ok(Response::Error(rejection.clone())));
        prop_assert_eq!(
            decode_response::<ProduceResponse>(&frame.header, &frame.body),
            Err(ResponseError::Rejected(rejection))
        );
    }

    #[test]
    fn request_frames_survive_any_split(frames in raw_frames(RequestHeader::BYTES),
                                        piece_sizes in vec(1usize..40, 1..10)) {
        let stream = stream_of(&frames);
        let decoded = decode_in_pieces::<RequestHeader>(&stream, &piece_sizes);
        let expected: Vec<_> = frames.iter().map(|frame| (frame.header.clone(), frame.body.clone())).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn response_frames_survive_any_split(frames in raw_frames(ResponseHeader::BYTES),
                                         piece_sizes in vec(1usize..40, 1..10)) {
        let stream = stream_of(&frames);
        let decoded = decode_in_pieces::<ResponseHeader>(&stream, &piece_sizes);
        let expected: Vec<_> = frames.iter().map(|frame| (frame.header.clone(), frame.body.clone())).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn encoded_request_frames_survive_any_split(requests in vec(any_request(), 1..6),
                                                piece_sizes in vec(1usize..64, 1..10)) {
        let mut stream = BytesMut::new();
        for (index, request) in requests.iter().enumerate() {
            request.encode_frame(index as u32, Priority::Normal, &mut stream).expect("encodes");
        }
        let frames = decode_in_pieces::<RequestHeader>(&stream, &piece_sizes);
        prop_assert_eq!(frames.len(), requests.len());
        for ((header, body), request) in frames.iter().zip(&requests) {
            let header: RequestHeader = zerocopy::FromBytes::read_from_bytes(&header[..]).expect("header bytes");
            let decoded = Request::decode(&header, &Bytes::copy_from_slice(body)).expect("decodes");
            prop_assert_eq!(&decoded, request);
        }
    }

    #[test]
    fn arbitrary_bytes_never_break_a_decoder(data in vec(any::<u8>(), 0..512)) {
        fuzz_wire_frame(&data);
        fuzz_wire_request(&data);
        fuzz_wire_response(&data);
    }

    #[test]
    fn mutated_requests_never_break_a_decoder(request in any_request(), index in any::<usize>(), byte in any::<u8>(),
                                             cut in any::<usize>()) {
        let mut data = request_bytes(&request);
        let position = index % data.len();
        data[position] = byte;
        fuzz_wire_request(&data);
        fuzz_wire_request(&data[..cut % (data.len() + 1)]);
    }

    #[test]
    fn mutated_responses_never_break_a_decoder(response in any_response(), index in any::<usize>(), byte in any::<u8>(),
                                              cut in any::<usize>()) {
        let mut data = response_bytes(&response);
        let position = index % data.len();
        data[position] = byte;
        fuzz_wire_response(&data);
        fuzz_wire_response(&data[..cut % (data.len() + 1)]);
    }

    #[test]
    fn mutated_streams_never_break_the_frame_decoder(requests in vec(any_request(), 1..4), index in any::<usize>(),
                                                     byte in any::<u8>(), piece_seed in any::<u8>()) {
        let mut data = vec![piece_seed];
        for request in &requests {
            let mut frame = BytesMut::new();
            request.encode_frame(1, Priority::Critical, &mut frame).expect("encodes");
            data.extend_from_slice(&frame);
        }
        let position = 1 + index % (data.len() - 1);
        data[position] = byte;
        fuzz_wire_frame(&data);
    }
}

/// Every api is covered by the strategies above: a new api added to `ApiKey` without a round-trip
/// property here fails this test.
#[test]
fn every_api_has_a_round_trip_property() {
    let covered = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopic,
        ApiKey::DeleteTopic,
        ApiKey::ListTopics,
        ApiKey::DescribeTopic,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::InitProducerId,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::ListGroups,
        ApiKey::DescribeGroups,
        ApiKey::DeleteGroups,
    ];
    assert_eq!(ApiKey::ALL, &covered[..]);
}
