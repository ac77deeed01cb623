//! The native wire protocol: framing, request/response headers, api messages, error codes.
//!
//! This module owns every byte the broker and the client exchange on the native listener; its
//! full description, with byte diagrams, is `docs/PROTOCOL.md`. It is sans-I/O: the caller reads
//! bytes into a `BytesMut`, [`FrameDecoder::decode`] splits off whole frames (a `u32` big-endian
//! length, a fixed-layout `zerocopy` header, a body), [`Request::decode`] or
//! [`decode_response`] turn bodies into typed messages, and the encoders append frames to a
//! `BytesMut` or, for responses carrying record batches, to a list of `Bytes` chunks for a
//! vectored write.
//!
//! Invariants: no decoder panics on any input, and each tells "need more bytes" (framing only)
//! from "invalid" (a typed [`FrameError`], [`DecodeError`] or [`RequestError`]); every count and
//! length is checked against the bytes left before anything is allocated; record batches are
//! never copied — decoded ones are slices of the frame, encoded ones are passed through as
//! chunks; every request with a readable header gets a response the client can decode (an
//! [`ErrorResponse`] for unknown apis, unsupported versions and invalid bodies), except a produce
//! with `acks = none`, which gets none.
//!
//! Broker side:
//!
//! ```
//! use bytes::BytesMut;
//! use weir_proto::wire::{
//!     ErrorResponse, FrameDecoderConfig, ProducePartitionResult, ProduceResponse, Request,
//!     RequestFrameDecoder, ResponseMessage,
//! };
//! # use weir_proto::wire::{Acks, Priority, ProducePartition, ProduceRequest, RequestMessage};
//! # let mut read_buffer = BytesMut::new();
//! # ProduceRequest { acks: Acks::Leader, timeout_ms: 1000, entries: vec![ProducePartition {
//! #     topic_id: 7, partition: 0, records: bytes::Bytes::from_static(b"batch") }] }
//! #     .encode_frame(1, Priority::Normal, &mut read_buffer).unwrap();
//! let mut decoder = RequestFrameDecoder::new(FrameDecoderConfig::default());
//! let mut write_buffer = BytesMut::new();
//! // `read_buffer` holds bytes read from the socket; an error closes the connection.
//! while let Some(frame) = decoder.decode(&mut read_buffer).expect("framing error") {
//!     let correlation_id = frame.header.correlation_id();
//!     match Request::decode(&frame.header, &frame.body) {
//!         Ok(Request::Produce(produce)) => {
//!             let entries = produce.entries.iter().map(|entry| ProducePartitionResult {
//!                 topic_id: entry.topic_id,
//!                 partition: entry.partition,
//!                 error_code: Default::default(),
//!                 error_message: String::new(),
//!                 base_offset: 0,
//!                 log_start_offset: 0,
//!             });
//!             let response = ProduceResponse { entries: entries.collect() };
//!             if produce.acks.expects_response() {
//!                 response.encode_frame(correlation_id, 0, &mut write_buffer)?;
//!             }
//!         }
//!         Ok(_other) => { /* the other apis */ }
//!         Err(error) => ErrorResponse::for_request(&frame.header, &error)
//!             .encode_frame(correlation_id, 0, &mut write_buffer)?,
//!     }
//! }
//! # Ok::<(), weir_proto::wire::EncodeError>(())
//! ```
//!
//! Client side:
//!
//! ```
//! use bytes::BytesMut;
//! use weir_proto::wire::{
//!     decode_response, FetchPartition, FetchRequest, FetchResponse, FrameDecoderConfig,
//!     Priority, RequestMessage, ResponseFrameDecoder,
//! };
//! # use weir_proto::wire::ResponseMessage;
//! let request = FetchRequest {
//!     max_wait_ms: 500,
//!     min_bytes: 1,
//!     max_bytes: 1 << 20,
//!     entries: vec![FetchPartition {
//!         topic_id: 7,
//!         partition: 0,
//!         fetch_offset: 0,
//!         partition_max_bytes: 1 << 20,
//!     }],
//! };
//! let mut write_buffer = BytesMut::new();
//! request.encode_frame(42, Priority::Normal, &mut write_buffer)?;
//! # let mut read_buffer = BytesMut::new();
//! # FetchResponse::default().encode_frame(42, 0, &mut read_buffer)?;
//! let mut decoder = ResponseFrameDecoder::new(FrameDecoderConfig::default());
//! if let Some(frame) = decoder.decode(&mut read_buffer).expect("framing error") {
//!     assert_eq!(frame.header.correlation_id(), 42);
//!     let response: FetchResponse =
//!         decode_response(&frame.header, &frame.body).expect("a fetch response");
//!     for entry in &response.entries {
//!         let _batches = entry.records.to_contiguous(); // iterate with batch::BatchIter
//!     }
//! }
//! # Ok::<(), weir_proto::wire::EncodeError>(())
//! ```

mod admin;
mod api;
mod codec;
mod control;
mod dispatch;
mod error_code;
mod fetch;
mod frame;
#[doc(hidden)]
pub mod fuzz;
mod group;
mod header;
mod message;
mod offsets;
mod produce;
mod producer;
mod topic;

pub use admin::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse,
    DescribeTopicRequest, DescribeTopicResponse, DescribedPartition, ListTopicsRequest,
    ListTopicsResponse, ListedTopic,
};
pub use api::{ApiKey, Priority, VersionRange};
pub use codec::{
    DecodeError, DecodeErrorKind, EncodeError, ARRAY_COUNT_MAX, BYTE_STRING_BYTES_MAX,
    STRING_BYTES_MAX,
};
pub use control::{
    ApiVersionRange, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    PartitionMetadata, ShardMetadata, TopicMetadata,
};
pub use dispatch::{
    decode_response, ErrorResponse, Request, RequestError, Response, ResponseError,
};
pub use error_code::ErrorCode;
pub use fetch::{FetchPartition, FetchPartitionResult, FetchRecords, FetchRequest, FetchResponse};
pub use frame::{
    Frame, FrameDecoder, FrameDecoderConfig, FrameError, RequestFrame, RequestFrameDecoder,
    ResponseFrame, ResponseFrameDecoder, FRAME_BYTES_MAX_DEFAULT, LENGTH_PREFIX_BYTES,
};
pub use group::{
    DeleteGroupResult, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupDescription, GroupListing, GroupMemberDescription,
    GroupPartitionLag, GroupState, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, SyncGroupRequest, SyncGroupResponse, TopicPartition, GROUP_STRATEGIES,
};
pub use header::{
    FrameHeader, InvalidFlags, RequestHeader, ResponseHeader, REQUEST_FLAGS_RESERVED_MASK,
};
pub use message::{RequestMessage, ResponseMessage, WireMessage};
pub use offsets::{
    ListOffsetsPartition, ListOffsetsPartitionResult, ListOffsetsRequest, ListOffsetsResponse,
    OffsetCommitPartition, OffsetCommitPartitionResult, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchPartition, OffsetFetchPartitionResult, OffsetFetchRequest, OffsetFetchResponse,
    OffsetQuery, GENERATION_NONE, OFFSET_METADATA_BYTES_MAX_DEFAULT, OFFSET_NONE,
};
pub use produce::{
    Acks, ProducePartition, ProducePartitionResult, ProduceRequest, ProduceResponse,
};
pub use producer::{
    InitProducerIdRequest, InitProducerIdResponse, PRODUCER_EPOCH_NONE, PRODUCER_ID_NONE,
    SEQUENCE_NONE,
};
pub use topic::{
    validate_topic_name, FlushPolicy, Limit, TopicConfig, TopicConfigOverrides, TopicId,
    TopicNameError, TOPIC_NAME_CHARS_MAX,
};
