//! Example-based tests of the wire protocol: a table of malformed inputs and the typed error each
//! must produce; the frame decoder's limits and "need more bytes" answers; version and api-key
//! negotiation through error responses; zero-copy decoding and chunked encoding; the error-code
//! table; and the topic-name rule.

use bytes::{BufMut, Bytes, BytesMut};
use weir_proto::wire::*;

fn body(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

/// Concatenates byte pieces, for building bodies by hand.
fn cat(pieces: &[&[u8]]) -> Vec<u8> {
    pieces.concat()
}

// ---------------------------------------------------------------------------------------------
// Malformed bodies.

struct MalformedCase {
    name: &'static str,
    api_key: ApiKey,
    body: Vec<u8>,
    field: &'static str,
    kind: fn(&DecodeErrorKind) -> bool,
}

fn malformed_cases() -> Vec<MalformedCase> {
    let u32_max = u32::MAX.to_be_bytes();
    vec![
        MalformedCase {
            name: "empty produce body",
            api_key: ApiKey::Produce,
            body: vec![],
            field: "produce_request.acks",
            kind: |kind| {
                matches!(
                    kind,
                    DecodeErrorKind::Truncated {
                        needed_bytes: 1,
                        remaining_bytes: 0
                    }
                )
            },
        },
        MalformedCase {
            name: "produce acks 2 (reserved for acks=all)",
            api_key: ApiKey::Produce,
            body: cat(&[&[2], &[0, 0, 0, 100], &[0, 0, 0, 0]]),
            field: "produce_request.acks",
            kind: |kind| matches!(kind, DecodeErrorKind::InvalidTag { tag: 2 }),
        },
        MalformedCase {
            name: "produce with 4 billion entries in a 20-byte body",
            api_key: ApiKey::Produce,
            body: cat(&[&[1], &[0, 0, 0, 100], &u32_max, &[0u8; 11]]),
            field: "produce_request.entries",
            kind: |kind| {
                matches!(
                    kind,
                    DecodeErrorKind::CountTooLarge {
                        count: u32::MAX,
                        remaining_bytes: 11,
                        ..
                    }
                )
            },
        },
        MalformedCase {
            name: "produce records longer than the body",
            api_key: ApiKey::Produce,
            body: cat(&[
                &[1],
                &[0, 0, 0, 100],
                &[0, 0, 0, 1],
                &[0, 0, 0, 7],
                &[0, 0, 0, 3],
                &u32_max,
            ]),
            field: "produce_request.entries.records",
            kind: |kind| {
                matches!(
                    kind,
                    DecodeErrorKind::Truncated {
                        needed_bytes: 0xffff_ffff,
                        remaining_bytes: 0
                    }
                )
            },
        },
        MalformedCase {
            name: "produce with a trailing byte",
            api_key: ApiKey::Produce,
            body: cat(&[&[0], &[0, 0, 0, 100], &[0, 0, 0, 0], &[9]]),
            field: "produce_request",
            kind: |kind| matches!(kind, DecodeErrorKind::TrailingBytes { trailing_bytes: 1 }),
        },
        MalformedCase {
            name: "fetch with a huge entry count",
            api_key: ApiKey::Fetch,
            body: cat(&[&[0; 12], &u32_max, &[0; 8]]),
            field: "fetch_request.entries",
            kind: |kind| matches!(kind, DecodeErrorKind::CountTooLarge { .. }),
        },
        MalformedCase {
            name: "metadata with a huge topic count",
            api_key: ApiKey::Metadata,
            body: cat(&[&u32_max, &[0; 16]]),
            field: "metadata_request.topics",
            kind: |kind| matches!(kind, DecodeErrorKind::CountTooLarge { .. }),
        },
        MalformedCase {
            name: "metadata topic name that is not UTF-8",
            api_key: ApiKey::Metadata,
            body: cat(&[&[0, 0, 0, 1], &[0, 2], &[0xc3, 0x28]]),
            field: "metadata_request.topics",
            kind: |kind| matches!(kind, DecodeErrorKind::InvalidUtf8),
        },
        MalformedCase {
            name: "string length past the end of the body",
            api_key: ApiKey::DeleteTopic,
            body: cat(&[&[0xff, 0xff], b"abc"]),
            field: "delete_topic_request.name",
            kind: |kind| {
                matches!(
                    kind,
                    DecodeErrorKind::Truncated {
                        needed_bytes: 65535,
                        remaining_bytes: 3
                    }
                )
            },
        },
        MalformedCase {
            name: "create topic with flush presence tag 2",
            api_key: ApiKey::CreateTopic,
            body: cat(&[&[0, 1], b"t", &[0, 0, 0, 1], &[2]]),
            field: "topic_config_overrides.flush",
            kind: |kind| matches!(kind, DecodeErrorKind::InvalidTag { tag: 2 }),
        },
        MalformedCase {
            name: "create topic with a present flush of tag 3",
            api_key: ApiKey::CreateTopic,
            body: cat(&[&[0, 1], b"t", &[0, 0, 0, 1], &[1, 3]]),
            field: "topic_config_overrides.flush",
            kind: |kind| matches!(kind, DecodeErrorKind::InvalidTag { tag: 3 }),
        },
        MalformedCase {
            name: "create topic with a truncated flush interval",
            api_key: ApiKey::CreateTopic,
            body: cat(&[&[0, 1], b"t", &[0, 0, 0, 1], &[1, 1], &[0, 0]]),
            field: "topic_config_overrides.flush.interval_ms",
            kind: |kind| {
                matches!(
                    kind,
                    DecodeErrorKind::Truncated {
                        needed_bytes: 4,
                        remaining_bytes: 2
                    }
                )
            },
        },
        MalformedCase {
            name: "create topic with retention bytes presence tag 2",
            api_key: ApiKey::CreateTopic,
            body: cat(&[&[0, 1], b"t", &[0, 0, 0, 1], &[0], &[2]]),
            field: "topic_config_overrides.retention_bytes",
            kind: |kind| matches!(kind, DecodeErrorKind::InvalidTag { tag: 2 }),
        },
        MalformedCase {
            name: "create topic with retention bytes limit tag 2",
            api_key: ApiKey::CreateTopic,
            body: cat(&[&[0, 1], b"t", &[0, 0, 0, 1], &[0], &[1, 2]]),
            field: "topic_config_overrides.retention_bytes",
            kind: |kind| matches!(kind, DecodeErrorKind::InvalidTag { tag: 2 }),
        },
        MalformedCase {
            name: "create topic with a truncated retention ms value",
            api_key: ApiKey::CreateTopic,
            body: cat(&[&[0, 1], b"t", &[0, 0, 0, 1], &[0, 0], &[1, 1], &[0, 0, 0]]),
            field: "topic_config_overrides.retention_ms",
            kind: |kind| {
                matches!(
                    kind,
                    DecodeErrorKind::Truncated {
                        needed_bytes: 8,
                        remaining_bytes: 3
                    }
                )
            },
        },
        MalformedCase {
            name: "create topic with segment bytes presence tag 9",
            api_key: ApiKey::CreateTopic,
            body: cat(&[&[0, 1], b"t", &[0, 0, 0, 1], &[0, 0, 0], &[9]]),
            field: "topic_config_overrides.segment_bytes",
            kind: |kind| matches!(kind, DecodeErrorKind::InvalidTag { tag: 9 }),
        },
        MalformedCase {
            name: "create topic with segment ms limit tag 7",
            api_key: ApiKey::CreateTopic,
            body: cat(&[&[0, 1], b"t", &[0, 0, 0, 1], &[0, 0, 0, 0], &[1, 7]]),
            field: "topic_config_overrides.segment_ms",
            kind: |kind| matches!(kind, DecodeErrorKind::InvalidTag { tag: 7 }),
        },
        MalformedCase {
            name: "create topic cut before the segment ms override",
            api_key: ApiKey::CreateTopic,
            body: cat(&[&[0, 1], b"t", &[0, 0, 0, 1], &[0, 0, 0, 0]]),
            field: "topic_config_overrides.segment_ms",
            kind: |kind| {
                matches!(
                    kind,
                    DecodeErrorKind::Truncated {
                        needed_bytes: 1,
                        remaining_bytes: 0
                    }
                )
            },
        },
        MalformedCase {
            name: "create topic with a byte after its overrides",
            api_key: ApiKey::CreateTopic,
            body: cat(&[&[0, 1], b"t", &[0, 0, 0, 1], &[0, 0, 0, 0, 0], &[0]]),
            field: "create_topic_request",
            kind: |kind| matches!(kind, DecodeErrorKind::TrailingBytes { trailing_bytes: 1 }),
        },
        MalformedCase {
            name: "list offsets timestamp -3",
            api_key: ApiKey::ListOffsets,
            body: cat(&[
                &[0, 0, 0, 1],
                &[0, 0, 0, 1],
                &[0, 0, 0, 0],
                &(-3i64).to_be_bytes(),
            ]),
            field: "list_offsets_request.entries.timestamp",
            kind: |kind| matches!(kind, DecodeErrorKind::OutOfRange { value: -3, .. }),
        },
        MalformedCase {
            name: "list topics with a body",
            api_key: ApiKey::ListTopics,
            body: vec![0],
            field: "list_topics_request",
            kind: |kind| matches!(kind, DecodeErrorKind::TrailingBytes { trailing_bytes: 1 }),
        },
        MalformedCase {
            name: "offset commit with a truncated generation",
            api_key: ApiKey::OffsetCommit,
            body: cat(&[&[0, 1], b"g", &[0xff, 0xff]]),
            field: "offset_commit_request.generation",
            kind: |kind| {
                matches!(
                    kind,
                    DecodeErrorKind::Truncated {
                        needed_bytes: 4,
                        remaining_bytes: 2
                    }
                )
            },
        },
        MalformedCase {
            name: "offset fetch with a huge entry count",
            api_key: ApiKey::OffsetFetch,
            body: cat(&[&[0, 0], &u32_max, &[0; 14]]),
            field: "offset_fetch_request.entries",
            kind: |kind| matches!(kind, DecodeErrorKind::CountTooLarge { .. }),
        },
        MalformedCase {
            name: "join group with a huge strategy count",
            api_key: ApiKey::JoinGroup,
            body: cat(&[
                &[0, 1],
                b"g",
                &[0, 0],
                &[0, 1],
                b"c",
                &[0, 0, 0x17, 0x70],
                &[0, 0, 0x75, 0x30],
                &[0, 0, 0, 0],
                &u32_max,
                &[0; 6],
            ]),
            field: "join_group_request.strategies",
            kind: |kind| matches!(kind, DecodeErrorKind::CountTooLarge { .. }),
        },
        MalformedCase {
            name: "heartbeat with a truncated generation",
            api_key: ApiKey::Heartbeat,
            body: cat(&[&[0, 1], b"g", &[0, 0, 0]]),
            field: "heartbeat_request.generation",
            kind: |kind| {
                matches!(
                    kind,
                    DecodeErrorKind::Truncated {
                        needed_bytes: 4,
                        remaining_bytes: 3
                    }
                )
            },
        },
        MalformedCase {
            name: "delete groups with a truncated group id",
            api_key: ApiKey::DeleteGroups,
            body: cat(&[&[0, 0, 0, 1], &[0, 5], b"bil"]),
            field: "delete_groups_request.group_ids",
            kind: |kind| {
                matches!(
                    kind,
                    DecodeErrorKind::Truncated {
                        needed_bytes: 5,
                        remaining_bytes: 3
                    }
                )
            },
        },
        MalformedCase {
            name: "delete groups with a huge group count",
            api_key: ApiKey::DeleteGroups,
            body: cat(&[&u32_max, &[0; 6]]),
            field: "delete_groups_request.group_ids",
            kind: |kind| matches!(kind, DecodeErrorKind::CountTooLarge { .. }),
        },
        MalformedCase {
            name: "list groups with a body",
            api_key: ApiKey::ListGroups,
            body: vec![0],
            field: "list_groups_request",
            kind: |kind| matches!(kind, DecodeErrorKind::TrailingBytes { trailing_bytes: 1 }),
        },
    ]
}

#[test]
fn malformed_request_bodies_fail_with_the_expected_typed_error() {
    for case in malformed_cases() {
        let header = RequestHeader::new(case.api_key, 0, 9, Priority::Normal);
        let error = Request::decode(&header, &body(&case.body)).expect_err(case.name);
        let RequestError::InvalidBody { api_key, source } = &error else {
            panic!("{}: expected an invalid body, got {error:?}", case.name);
        };
        assert_eq!(*api_key, case.api_key, "{}", case.name);
        assert_eq!(source.field, case.field, "{}: {source}", case.name);
        assert!(
            (case.kind)(&source.kind),
            "{}: unexpected kind {:?}",
            case.name,
            source.kind
        );
        assert_eq!(
            error.error_code(),
            ErrorCode::InvalidRequest,
            "{}",
            case.name
        );
    }
}

#[test]
fn malformed_response_bodies_fail_with_the_expected_typed_error() {
    let u32_max = u32::MAX.to_be_bytes();
    let cases: Vec<(&str, ApiKey, Vec<u8>, &str)> = vec![
        (
            "fetch response with a huge entry count",
            ApiKey::Fetch,
            cat(&[&u32_max, &[0; 16]]),
            "fetch_response.entries",
        ),
        (
            "fetch records past the end",
            ApiKey::Fetch,
            cat(&[
                &[0, 0, 0, 1],
                &[0; 4 + 4 + 2 + 8 + 8],
                &[0, 0],
                &[0, 0, 1, 0],
                &[1, 2, 3],
            ]),
            "fetch_response.entries.records",
        ),
        (
            "metadata response truncated",
            ApiKey::Metadata,
            vec![0, 0, 0],
            "metadata_response.broker_id",
        ),
        (
            "api versions trailing byte",
            ApiKey::ApiVersions,
            cat(&[&[0; 4], &[0, 0], &[0, 0], &[1]]),
            "api_versions_response",
        ),
        (
            "delete groups response truncated in an error message",
            ApiKey::DeleteGroups,
            cat(&[&[0, 0, 0, 1], &[0, 1], b"g", &[0, 39], &[0, 4], b"no"]),
            "delete_groups_response.results.error_message",
        ),
        (
            "describe topic config tag 7",
            ApiKey::DescribeTopic,
            cat(&[&[0, 0], &[0, 0], &[0, 0], &[0, 0, 0, 1], &[7]]),
            "describe_topic_response.config",
        ),
    ];
    for (name, api_key, bytes, field) in cases {
        let header = ResponseHeader::new(1, 0, api_key.to_u16(), 0, ErrorCode::None);
        match Response::decode(&header, &body(&bytes)) {
            Err(ResponseError::InvalidBody {
                api_key: key,
                source,
            }) => {
                assert_eq!(key, api_key.to_u16(), "{name}");
                assert_eq!(source.field, field, "{name}: {source}");
            }
            other => panic!("{name}: expected an invalid body, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Framing.

#[test]
fn decoder_waits_for_whole_frames_without_consuming() {
    let mut stream = BytesMut::new();
    ListTopicsRequest
        .encode_frame(5, Priority::Normal, &mut stream)
        .expect("encodes");
    let whole = stream.clone();
    let mut decoder = RequestFrameDecoder::default();
    for cut in 0..whole.len() {
        let mut partial = BytesMut::from(&whole[..cut]);
        assert_eq!(decoder.decode(&mut partial), Ok(None), "cut at {cut}");
        assert_eq!(
            &partial[..],
            &whole[..cut],
            "Ok(None) consumed bytes at cut {cut}"
        );
    }
    let frame = decoder.decode(&mut stream).expect("frames").expect("whole");
    assert_eq!(frame.header.correlation_id(), 5);
    assert!(frame.body.is_empty());
}

#[test]
fn oversized_frames_are_rejected_from_the_length_prefix_alone() {
    let config = FrameDecoderConfig {
        frame_bytes_max: 1024,
    };
    let mut decoder = RequestFrameDecoder::new(config);
    let mut stream = BytesMut::new();
    stream.put_u32(1025);
    assert_eq!(
        decoder.decode(&mut stream),
        Err(FrameError::Oversized {
            frame_bytes: 1025,
            frame_bytes_max: 1024
        })
    );
    // Exactly at the limit is accepted once the bytes are there.
    let mut stream = BytesMut::new();
    stream.put_u32(1024);
    stream.put_slice(&[0u8; 1024]);
    let frame = decoder.decode(&mut stream).expect("frames").expect("whole");
    assert_eq!(frame.body.len(), 1024 - RequestHeader::BYTES);
    // The default limit applies to a u32::MAX prefix too.
    let mut stream = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    assert!(matches!(
        ResponseFrameDecoder::default().decode(&mut stream),
        Err(FrameError::Oversized {
            frame_bytes: u32::MAX,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT
        })
    ));
}

#[test]
fn frames_shorter_than_their_header_are_rejected() {
    let cases: [(u32, bool); 4] = [(0, true), (9, true), (10, false), (15, false)];
    for (frame_bytes, request_rejects) in cases {
        let mut stream = BytesMut::new();
        stream.put_u32(frame_bytes);
        let result = RequestFrameDecoder::default().decode(&mut stream);
        assert_eq!(
            result.is_err(),
            request_rejects,
            "request frame of {frame_bytes} bytes: {result:?}"
        );
        let mut stream = BytesMut::new();
        stream.put_u32(frame_bytes);
        assert_eq!(
            ResponseFrameDecoder::default().decode(&mut stream),
            Err(FrameError::TooShort {
                frame_bytes,
                header_bytes: 16
            })
        );
    }
}

#[test]
fn decoder_reserves_room_for_the_announced_frame() {
    let mut stream = BytesMut::new();
    stream.put_u32(10 + 100_000);
    let mut decoder = RequestFrameDecoder::default();
    assert_eq!(decoder.decode(&mut stream), Ok(None));
    assert!(stream.capacity() >= LENGTH_PREFIX_BYTES + 10 + 100_000);
}

// ---------------------------------------------------------------------------------------------
// Versions, unknown apis and flags: always answered with a readable error response.

fn answer(header: RequestHeader, body_bytes: &[u8]) -> Response {
    let error = Request::decode(&header, &body(body_bytes)).expect_err("rejected");
    let mut stream = BytesMut::new();
    ErrorResponse::for_request(&header, &error)
        .encode_frame(header.correlation_id(), 0, &mut stream)
        .expect("encodes");
    let frame = ResponseFrameDecoder::default()
        .decode(&mut stream)
        .expect("frames")
        .expect("whole");
    assert_eq!(frame.header.correlation_id(), header.correlation_id());
    assert_eq!(frame.header.api_key_raw(), header.api_key_raw());
    assert_eq!(frame.header.api_version(), header.api_version());
    Response::decode(&frame.header, &frame.body).expect("an error response decodes")
}

#[test]
fn unsupported_version_is_answered_with_a_typed_error() {
    let header = RequestHeader::from_raw(ApiKey::Fetch.to_u16(), 9, 77, 0);
    let Response::Error(rejection) = answer(header, &[1, 2, 3]) else {
        panic!("expected an error response");
    };
    assert_eq!(rejection.error_code, ErrorCode::UnsupportedVersion);
    assert!(
        rejection.message.contains("Fetch version 9"),
        "{}",
        rejection.message
    );
}

#[test]
fn unknown_api_key_is_answered_with_a_typed_error() {
    for api_key in [2u16, 24, 39, 999, u16::MAX] {
        let header = RequestHeader::from_raw(api_key, 0, 78, 0);
        let Response::Error(rejection) = answer(header, &[]) else {
            panic!("expected an error response");
        };
        assert_eq!(rejection.error_code, ErrorCode::UnknownApiKey);
        assert_eq!(rejection.api_key, api_key);
    }
}

#[test]
fn reserved_flag_bits_are_answered_with_invalid_request() {
    for flags in [0b11u16, 0b100, 0x8000] {
        let header = RequestHeader::from_raw(ApiKey::ListTopics.to_u16(), 0, 79, flags);
        assert_eq!(header.priority(), Err(InvalidFlags { flags }));
        let Response::Error(rejection) = answer(header, &[]) else {
            panic!("expected an error response");
        };
        assert_eq!(rejection.error_code, ErrorCode::InvalidRequest);
    }
}

#[test]
fn decode_response_rejects_a_response_for_another_api() {
    let mut stream = BytesMut::new();
    ListTopicsResponse::default()
        .encode_frame(3, 0, &mut stream)
        .expect("encodes");
    let frame = ResponseFrameDecoder::default()
        .decode(&mut stream)
        .expect("frames")
        .expect("whole");
    assert_eq!(
        decode_response::<FetchResponse>(&frame.header, &frame.body),
        Err(ResponseError::ApiKeyMismatch {
            expected: Some(ApiKey::Fetch),
            actual: ApiKey::ListTopics.to_u16(),
        })
    );
}

#[test]
fn version_ranges_negotiate_the_newest_common_version() {
    let ours = VersionRange { min: 0, max: 3 };
    assert_eq!(ours.negotiate(VersionRange { min: 1, max: 5 }), Some(3));
    assert_eq!(ours.negotiate(VersionRange { min: 2, max: 2 }), Some(2));
    assert_eq!(ours.negotiate(VersionRange { min: 4, max: 5 }), None);
    let advertised = ApiVersionsResponse {
        apis: ApiVersionsResponse::supported_apis(),
        broker_name: "weir-broker".into(),
        broker_version: "0.1.0".into(),
    };
    for api_key in ApiKey::ALL {
        assert_eq!(advertised.versions(*api_key), Some(api_key.versions()));
    }
}

#[test]
fn produce_with_acks_none_expects_no_response() {
    let mut produce = ProduceRequest {
        acks: Acks::None,
        ..ProduceRequest::default()
    };
    assert!(!Request::Produce(produce.clone()).expects_response());
    produce.acks = Acks::Leader;
    assert!(Request::Produce(produce).expects_response());
    assert!(Request::ListTopics(ListTopicsRequest).expects_response());
}

// ---------------------------------------------------------------------------------------------
// Zero copy.

#[test]
fn decoded_produce_records_are_slices_of_the_read_buffer() {
    let batch_a = Bytes::from(vec![0xaa; 300]);
    let batch_b = Bytes::from(vec![0xbb; 200]);
    let request = ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 1_000,
        entries: vec![
            ProducePartition {
                topic_id: 1,
                partition: 0,
                records: batch_a.clone(),
            },
            ProducePartition {
                topic_id: 1,
                partition: 1,
                records: batch_b.clone(),
            },
        ],
    };
    let mut read_buffer = BytesMut::new();
    request
        .encode_frame(1, Priority::Normal, &mut read_buffer)
        .expect("encodes");
    let buffer_start = read_buffer.as_ptr() as usize;
    let buffer_end = buffer_start + read_buffer.len();
    let frame = RequestFrameDecoder::default()
        .decode(&mut read_buffer)
        .expect("frames")
        .expect("whole");
    let Ok(Request::Produce(decoded)) = Request::decode(&frame.header, &frame.body) else {
        panic!("expected a produce request");
    };
    for (entry, expected) in decoded.entries.iter().zip([&batch_a, &batch_b]) {
        assert_eq!(&entry.records, expected);
        let start = entry.records.as_ptr() as usize;
        assert!(
            buffer_start <= start && start + entry.records.len() <= buffer_end,
            "records were copied out of the read buffer"
        );
    }
}

#[test]
fn fetch_response_chunks_pass_storage_bytes_through_uncopied() {
    let cached = Bytes::from(vec![1u8; 4096]);
    let from_segment = Bytes::from(vec![2u8; 8192]);
    let response = FetchResponse {
        entries: vec![
            FetchPartitionResult {
                topic_id: 3,
                partition: 0,
                error_code: ErrorCode::None,
                error_message: String::new(),
                high_watermark: 100,
                log_start_offset: 0,
                records: FetchRecords::from_chunks(vec![cached.clone(), from_segment.clone()]),
            },
            FetchPartitionResult {
                topic_id: 3,
                partition: 1,
                error_code: ErrorCode::OffsetOutOfRange,
                error_message: "offset 900 is after the log end 100".into(),
                high_watermark: 100,
                log_start_offset: 0,
                records: FetchRecords::new(),
            },
        ],
    };
    let mut scratch = BytesMut::with_capacity(256);
    let mut chunks = Vec::new();
    response
        .encode_frame_chunks(11, 0, &mut scratch, &mut chunks)
        .expect("encodes");
    // Head (length + header), fixed fields of entry 0, the two storage chunks, the rest.
    assert_eq!(chunks.len(), 5, "{chunks:?}");
    assert_eq!(chunks[2].as_ptr(), cached.as_ptr());
    assert_eq!(chunks[2].len(), cached.len());
    assert_eq!(chunks[3].as_ptr(), from_segment.as_ptr());
    assert_eq!(chunks[3].len(), from_segment.len());
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let prefix = u32::from_be_bytes([chunks[0][0], chunks[0][1], chunks[0][2], chunks[0][3]]);
    assert_eq!(prefix as usize, total - LENGTH_PREFIX_BYTES);

    // The client reads it back: one contiguous slice per partition.
    let mut stream = BytesMut::new();
    for chunk in &chunks {
        stream.put_slice(chunk);
    }
    let frame = ResponseFrameDecoder::default()
        .decode(&mut stream)
        .expect("frames")
        .expect("whole");
    let decoded: FetchResponse = decode_response(&frame.header, &frame.body).expect("decodes");
    assert_eq!(decoded, response);
    let records = decoded.entries[0].records.to_contiguous();
    assert_eq!(records.len(), 4096 + 8192);
    assert_eq!(decoded.entries[0].records.chunks().len(), 1);
    assert!(decoded.entries[1].records.is_empty());
}

#[test]
fn chunked_encoding_failure_leaves_the_chunk_list_unchanged() {
    let response = FetchResponse {
        entries: vec![FetchPartitionResult {
            topic_id: 1,
            partition: 0,
            error_code: ErrorCode::StorageError,
            error_message: "x".repeat(STRING_BYTES_MAX + 1),
            high_watermark: 0,
            log_start_offset: 0,
            records: FetchRecords::from(Bytes::from_static(b"batch")),
        }],
    };
    let mut chunks = vec![Bytes::from_static(b"earlier frame")];
    let error = response
        .encode_frame_chunks(1, 0, &mut BytesMut::new(), &mut chunks)
        .expect_err("the message is too long");
    assert_eq!(
        error,
        EncodeError::TooLong {
            field: "fetch_response.entries.error_message",
            length: STRING_BYTES_MAX as u64 + 1,
            length_max: STRING_BYTES_MAX as u64,
        }
    );
    assert_eq!(chunks, vec![Bytes::from_static(b"earlier frame")]);
    let mut dst = BytesMut::from(&b"earlier"[..]);
    assert!(response.encode_frame(1, 0, &mut dst).is_err());
    assert_eq!(&dst[..], b"earlier");
}

#[test]
fn error_response_messages_are_cut_to_the_string_limit_at_a_character_boundary() {
    let header = RequestHeader::new(ApiKey::Produce, 0, 1, Priority::Normal);
    let long = "é".repeat(STRING_BYTES_MAX); // two bytes each
    let rejection = ErrorResponse::new(&header, ErrorCode::StorageError, &long);
    assert!(rejection.message.len() <= STRING_BYTES_MAX);
    assert!(rejection.message.len() >= STRING_BYTES_MAX - 1);
    let mut dst = BytesMut::new();
    rejection.encode_frame(1, 0, &mut dst).expect("fits");
}

// ---------------------------------------------------------------------------------------------
// Error codes.

#[test]
fn error_codes_round_trip_and_are_unique() {
    let mut values = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_u16(code.to_u16()), *code);
        assert!(
            values.insert(code.to_u16()),
            "duplicate value {}",
            code.to_u16()
        );
        assert!(names.insert(code.name()), "duplicate name {}", code.name());
        assert!(!code.description().is_empty());
    }
    for value in 0..=u16::MAX {
        assert_eq!(ErrorCode::from_u16(value).to_u16(), value);
    }
    assert_eq!(ErrorCode::from_u16(999), ErrorCode::Unknown(999));
    assert!(!ErrorCode::Unknown(999).is_retriable());
    assert_eq!(ErrorCode::default(), ErrorCode::None);
    assert_eq!(
        ErrorCode::Unknown(999).to_string(),
        "unknown_error_code(999)"
    );
}

#[test]
fn error_codes_have_their_documented_numbers_and_retriability() {
    let table: &[(ErrorCode, u16, &str, bool)] = &[
        (ErrorCode::None, 0, "none", false),
        (
            ErrorCode::UnknownServerError,
            1,
            "unknown_server_error",
            false,
        ),
        (ErrorCode::CorruptMessage, 2, "corrupt_message", true),
        (ErrorCode::InvalidBatch, 3, "invalid_batch", false),
        (ErrorCode::MessageTooLarge, 4, "message_too_large", false),
        (ErrorCode::InvalidRequest, 5, "invalid_request", false),
        (
            ErrorCode::UnsupportedVersion,
            6,
            "unsupported_version",
            false,
        ),
        (ErrorCode::UnknownApiKey, 7, "unknown_api_key", false),
        (ErrorCode::UnknownTopic, 10, "unknown_topic", true),
        (ErrorCode::UnknownPartition, 11, "unknown_partition", true),
        (
            ErrorCode::TopicAlreadyExists,
            12,
            "topic_already_exists",
            false,
        ),
        (ErrorCode::InvalidTopicName, 13, "invalid_topic_name", false),
        (ErrorCode::InvalidConfig, 14, "invalid_config", false),
        (
            ErrorCode::OffsetOutOfRange,
            15,
            "offset_out_of_range",
            false,
        ),
        (
            ErrorCode::OffsetMetadataTooLarge,
            16,
            "offset_metadata_too_large",
            false,
        ),
        (ErrorCode::StorageError, 20, "storage_error", true),
        (ErrorCode::DiskFull, 21, "disk_full", true),
        (ErrorCode::NotOwner, 22, "not_owner", true),
        (ErrorCode::RequestTimedOut, 23, "request_timed_out", true),
        (ErrorCode::Throttled, 24, "throttled", true),
        (ErrorCode::Overloaded, 25, "overloaded", true),
        (
            ErrorCode::BrokerShuttingDown,
            26,
            "broker_shutting_down",
            true,
        ),
        (ErrorCode::UnknownGroup, 30, "unknown_group", false),
        (
            ErrorCode::IllegalGeneration,
            31,
            "illegal_generation",
            false,
        ),
        (ErrorCode::UnknownMemberId, 32, "unknown_member_id", false),
        (
            ErrorCode::RebalanceInProgress,
            33,
            "rebalance_in_progress",
            false,
        ),
        (
            ErrorCode::InconsistentGroupProtocol,
            34,
            "inconsistent_group_protocol",
            false,
        ),
        (
            ErrorCode::InvalidSessionTimeout,
            35,
            "invalid_session_timeout",
            false,
        ),
        (ErrorCode::GroupIdNotFound, 36, "group_id_not_found", false),
        (
            ErrorCode::GroupMaxSizeReached,
            37,
            "group_max_size_reached",
            false,
        ),
        (ErrorCode::GroupsMaxReached, 38, "groups_max_reached", false),
        (ErrorCode::NonEmptyGroup, 39, "non_empty_group", false),
        (
            ErrorCode::DuplicateSequence,
            40,
            "duplicate_sequence",
            false,
        ),
        (
            ErrorCode::OutOfOrderSequence,
            41,
            "out_of_order_sequence",
            false,
        ),
        (
            ErrorCode::InvalidProducerEpoch,
            42,
            "invalid_producer_epoch",
            false,
        ),
        (
            ErrorCode::UnknownProducerId,
            43,
            "unknown_producer_id",
            false,
        ),
    ];
    assert_eq!(table.len(), ErrorCode::ALL.len());
    for (code, value, name, retriable) in table {
        assert_eq!(code.to_u16(), *value, "{name}");
        assert_eq!(code.name(), *name);
        assert_eq!(code.is_retriable(), *retriable, "{name}");
    }
}

#[test]
fn api_keys_have_their_documented_numbers() {
    let table: &[(ApiKey, u16)] = &[
        (ApiKey::ApiVersions, 0),
        (ApiKey::Metadata, 1),
        (ApiKey::CreateTopic, 10),
        (ApiKey::DeleteTopic, 11),
        (ApiKey::ListTopics, 12),
        (ApiKey::DescribeTopic, 13),
        (ApiKey::Produce, 20),
        (ApiKey::Fetch, 21),
        (ApiKey::ListOffsets, 22),
        (ApiKey::InitProducerId, 23),
        (ApiKey::OffsetCommit, 30),
        (ApiKey::OffsetFetch, 31),
        (ApiKey::JoinGroup, 32),
        (ApiKey::SyncGroup, 33),
        (ApiKey::Heartbeat, 34),
        (ApiKey::LeaveGroup, 35),
        (ApiKey::ListGroups, 36),
        (ApiKey::DescribeGroups, 37),
        (ApiKey::DeleteGroups, 38),
    ];
    assert_eq!(table.len(), ApiKey::ALL.len());
    for (api_key, value) in table {
        assert_eq!(api_key.to_u16(), *value);
        assert_eq!(ApiKey::from_u16(*value), Some(*api_key));
    }
    let known: Vec<u16> = ApiKey::ALL.iter().map(|key| key.to_u16()).collect();
    for value in 0..=u16::MAX {
        assert_eq!(ApiKey::from_u16(value).is_some(), known.contains(&value));
    }
}

#[test]
fn request_errors_map_to_error_codes() {
    assert_eq!(
        RequestError::UnknownApiKey { api_key: 5 }.error_code(),
        ErrorCode::UnknownApiKey
    );
    assert_eq!(
        RequestError::UnsupportedVersion {
            api_key: ApiKey::Fetch,
            api_version: 3,
            supported: ApiKey::Fetch.versions(),
        }
        .error_code(),
        ErrorCode::UnsupportedVersion
    );
    assert_eq!(
        RequestError::InvalidFlags(InvalidFlags { flags: 4 }).error_code(),
        ErrorCode::InvalidRequest
    );
}

// ---------------------------------------------------------------------------------------------
// Topic names and special values.

#[test]
fn topic_names_follow_the_rule() {
    let valid = [
        "a",
        "orders",
        "orders.v2",
        "my_topic-1",
        "...",
        "a..b",
        &"x".repeat(249),
    ];
    for name in valid {
        assert_eq!(validate_topic_name(name), Ok(()), "{name:?}");
    }
    let long = "x".repeat(250);
    let invalid: [(&str, TopicNameError); 7] = [
        ("", TopicNameError::Empty),
        (".", TopicNameError::Reserved(".")),
        ("..", TopicNameError::Reserved("..")),
        (&long, TopicNameError::TooLong { chars: 250 }),
        (
            "a b",
            TopicNameError::InvalidCharacter {
                character: ' ',
                index: 1,
            },
        ),
        (
            "tópico",
            TopicNameError::InvalidCharacter {
                character: 'ó',
                index: 1,
            },
        ),
        (
            "a/b",
            TopicNameError::InvalidCharacter {
                character: '/',
                index: 1,
            },
        ),
    ];
    for (name, expected) in invalid {
        let error = validate_topic_name(name).expect_err(name);
        assert_eq!(error, expected, "{name:?}");
        assert_eq!(error.error_code(), ErrorCode::InvalidTopicName);
    }
}

#[test]
fn create_topic_overrides_have_the_documented_layout() {
    let encode = |request: &CreateTopicRequest| {
        let mut bytes = BytesMut::new();
        request.encode(&mut bytes).unwrap();
        bytes.to_vec()
    };
    // Nothing given: partition count 0 and five absent settings, all the broker's defaults.
    let defaults = CreateTopicRequest {
        name: "t".into(),
        ..CreateTopicRequest::default()
    };
    assert_eq!(
        encode(&defaults),
        cat(&[&[0, 1], b"t", &[0, 0, 0, 0], &[0, 0, 0, 0, 0]])
    );
    // PROTOCOL.md's example: flush never, explicitly unlimited retention bytes, the rest default.
    let example = TopicConfigOverrides {
        flush: Some(FlushPolicy::Never),
        retention_bytes: Some(Limit::Unlimited),
        ..TopicConfigOverrides::default()
    };
    let example_bytes = encode(&CreateTopicRequest {
        config: example,
        ..defaults.clone()
    });
    assert_eq!(example_bytes[7..], [1, 2, 1, 0, 0, 0, 0]);
    let explicit = CreateTopicRequest {
        name: "t".into(),
        partition_count: 3,
        config: TopicConfigOverrides {
            flush: Some(FlushPolicy::Interval { interval_ms: 258 }),
            retention_bytes: Some(Limit::Unlimited),
            retention_ms: Some(Limit::Value(5)),
            segment_bytes: Some(65_536),
            segment_ms: None,
        },
    };
    assert_eq!(
        encode(&explicit),
        cat(&[
            &[0, 1],
            b"t",
            &[0, 0, 0, 3],
            &[1, 1, 0, 0, 1, 2],             // flush: present, interval, 258 ms
            &[1, 0],                         // retention_bytes: present, unlimited
            &[1, 1, 0, 0, 0, 0, 0, 0, 0, 5], // retention_ms: present, value 5
            &[1, 0, 0, 0, 0, 0, 1, 0, 0],    // segment_bytes: present, 65536
            &[0],                            // segment_ms: the broker's default
        ])
    );
    for request in [defaults, explicit] {
        let header = RequestHeader::new(ApiKey::CreateTopic, 0, 1, Priority::Normal);
        let decoded = Request::decode(&header, &body(&encode(&request))).unwrap();
        assert_eq!(decoded, Request::CreateTopic(request));
    }
}

#[test]
fn limits_convert_to_and_from_resolved_settings() {
    assert_eq!(Limit::Unlimited.value(), None);
    assert_eq!(Limit::Value(7).value(), Some(7));
    assert_eq!(Limit::from_value(None), Limit::Unlimited);
    assert_eq!(Limit::from_value(Some(0)), Limit::Value(0));
    assert_eq!(Limit::from(5u64), Limit::Value(5));
    assert_eq!(Limit::Unlimited.to_string(), "unlimited");
    assert_eq!(Limit::Value(42).to_string(), "42");
}

#[test]
fn offset_queries_encode_their_special_values() {
    assert_eq!(OffsetQuery::Earliest.to_i64(), -2);
    assert_eq!(OffsetQuery::Latest.to_i64(), -1);
    assert_eq!(OffsetQuery::from_i64(-2), Some(OffsetQuery::Earliest));
    assert_eq!(OffsetQuery::from_i64(-1), Some(OffsetQuery::Latest));
    assert_eq!(
        OffsetQuery::from_i64(0),
        Some(OffsetQuery::Timestamp { timestamp_ms: 0 })
    );
    assert_eq!(OffsetQuery::from_i64(-3), None);
    assert_eq!(OffsetQuery::from_i64(i64::MIN), None);
}

#[test]
fn priority_bits_and_header_layout_are_as_documented() {
    let header = RequestHeader::new(ApiKey::Produce, 0, 0x0102_0304, Priority::Telemetry);
    assert_eq!(
        zerocopy::IntoBytes::as_bytes(&header),
        &[0, 20, 0, 0, 1, 2, 3, 4, 0, 2]
    );
    let response = ResponseHeader::new(0x0a0b_0c0d, 250, 21, 0, ErrorCode::Throttled);
    assert_eq!(
        zerocopy::IntoBytes::as_bytes(&response),
        &[0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 250, 0, 21, 0, 0, 0, 24, 0, 0]
    );
    for priority in [Priority::Normal, Priority::Critical, Priority::Telemetry] {
        assert_eq!(Priority::from_bits(priority.to_bits()), Some(priority));
    }
    assert_eq!(Priority::from_bits(0), Some(Priority::Normal));
    assert_eq!(Priority::from_bits(3), None);
}
