//! The offset apis: ListOffsets (offsets by position or time), OffsetCommit and OffsetFetch
//! (a group's committed offsets).
//!
//! This module owns their bodies. Invariants: the special values are explicit — a ListOffsets
//! timestamp of -2 means earliest and -1 latest (decoded as [`OffsetQuery`], other negative values
//! are invalid); a committed offset of -1 means "none committed"; a generation of -1 means the
//! committer is not a group member. The offset-metadata size limit is broker configuration
//! (default [`OFFSET_METADATA_BYTES_MAX_DEFAULT`]); an entry over it is answered with
//! `offset_metadata_too_large`, not rejected by the decoder.

use super::api::ApiKey;
use super::codec::{DecodeError, DecodeErrorKind, Element, EncodeError, Reader, Writer};
use super::error_code::ErrorCode;
use super::message::wire_message;
use super::topic::TopicId;

/// The default largest offset-commit metadata string, in bytes.
pub const OFFSET_METADATA_BYTES_MAX_DEFAULT: usize = 4096;

/// The generation an OffsetCommit carries when the committer is not a group member.
pub const GENERATION_NONE: i32 = -1;

/// The offset OffsetFetch answers for a partition without a committed offset.
pub const OFFSET_NONE: i64 = -1;

/// Which offset a ListOffsets entry asks for; an `i64` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetQuery {
    /// The log start offset (wire value -2).
    Earliest,
    /// The log end offset: where the next record will go (wire value -1).
    Latest,
    /// The first offset whose record timestamp is at or after this time (wire value ≥ 0).
    Timestamp {
        /// Milliseconds since the Unix epoch.
        timestamp_ms: i64,
    },
}

impl OffsetQuery {
    /// The wire value of [`OffsetQuery::Earliest`].
    pub const EARLIEST: i64 = -2;
    /// The wire value of [`OffsetQuery::Latest`].
    pub const LATEST: i64 = -1;

    /// The wire value.
    pub const fn to_i64(self) -> i64 {
        match self {
            OffsetQuery::Earliest => Self::EARLIEST,
            OffsetQuery::Latest => Self::LATEST,
            OffsetQuery::Timestamp { timestamp_ms } => timestamp_ms,
        }
    }

    /// Decodes a wire value; `None` below -2.
    pub const fn from_i64(value: i64) -> Option<OffsetQuery> {
        match value {
            Self::EARLIEST => Some(OffsetQuery::Earliest),
            Self::LATEST => Some(OffsetQuery::Latest),
            timestamp_ms if timestamp_ms >= 0 => Some(OffsetQuery::Timestamp { timestamp_ms }),
            _ => None,
        }
    }
}

/// One partition's offset query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListOffsetsPartition {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
    /// Which offset to find.
    pub query: OffsetQuery,
}

impl Element for ListOffsetsPartition {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 8;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        writer.i64(self.query.to_i64());
        Ok(())
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let topic_id = reader.u32("list_offsets_request.entries.topic_id")?;
        let partition = reader.u32("list_offsets_request.entries.partition")?;
        let value = reader.i64("list_offsets_request.entries.timestamp")?;
        let query = OffsetQuery::from_i64(value).ok_or(DecodeError::new(
            "list_offsets_request.entries.timestamp",
            DecodeErrorKind::OutOfRange {
                value,
                reason: "-2 (earliest), -1 (latest) or a timestamp in ms >= 0",
            },
        ))?;
        Ok(ListOffsetsPartition {
            topic_id,
            partition,
            query,
        })
    }
}

/// Finds offsets by position or time in one or more partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ListOffsetsRequest {
    /// The partitions and what to find in each.
    pub entries: Vec<ListOffsetsPartition>,
}

impl ListOffsetsRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.array_of("list_offsets_request.entries", &self.entries)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ListOffsetsRequest {
            entries: reader.array_of("list_offsets_request.entries")?,
        })
    }
}

wire_message!(request ListOffsetsRequest, ApiKey::ListOffsets, "list_offsets_request",
    response: ListOffsetsResponse);

/// One partition's answer to an offset query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListOffsetsPartitionResult {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
    /// `none`, `unknown_partition`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The offset found; -1 when no record is at or after the timestamp.
    pub offset: i64,
    /// The timestamp of the record at `offset` for a time query; -1 for earliest/latest or when
    /// nothing was found.
    pub timestamp_ms: i64,
}

impl Element for ListOffsetsPartitionResult {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 2 + 8 + 8 + 2;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        writer.error_code(self.error_code);
        writer.i64(self.offset);
        writer.i64(self.timestamp_ms);
        writer.string(
            "list_offsets_response.entries.error_message",
            &self.error_message,
        )
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ListOffsetsPartitionResult {
            topic_id: reader.u32("list_offsets_response.entries.topic_id")?,
            partition: reader.u32("list_offsets_response.entries.partition")?,
            error_code: reader.error_code("list_offsets_response.entries.error_code")?,
            offset: reader.i64("list_offsets_response.entries.offset")?,
            timestamp_ms: reader.i64("list_offsets_response.entries.timestamp")?,
            error_message: reader.string("list_offsets_response.entries.error_message")?,
        })
    }
}

/// The answers to a ListOffsets, one per requested partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ListOffsetsResponse {
    /// The results, in the order of the request's entries.
    pub entries: Vec<ListOffsetsPartitionResult>,
}

impl ListOffsetsResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.array_of("list_offsets_response.entries", &self.entries)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ListOffsetsResponse {
            entries: reader.array_of("list_offsets_response.entries")?,
        })
    }
}

wire_message!(response ListOffsetsResponse, ApiKey::ListOffsets, "list_offsets_response");

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetCommitPartition {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
    /// The next offset the group will consume.
    pub offset: i64,
    /// Free-form text stored with the offset (at most the broker's limit, in bytes).
    pub metadata: String,
}

impl Element for OffsetCommitPartition {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 8 + 2;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        writer.i64(self.offset);
        writer.string("offset_commit_request.entries.metadata", &self.metadata)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OffsetCommitPartition {
            topic_id: reader.u32("offset_commit_request.entries.topic_id")?,
            partition: reader.u32("offset_commit_request.entries.partition")?,
            offset: reader.i64("offset_commit_request.entries.offset")?,
            metadata: reader.string("offset_commit_request.entries.metadata")?,
        })
    }
}

/// Commits a group's offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetCommitRequest {
    /// The consumer group's id.
    pub group_id: String,
    /// The committer's group generation, or [`GENERATION_NONE`] when it is not a member.
    pub generation: i32,
    /// The committer's member id (empty when not a member).
    pub member_id: String,
    /// The offsets.
    pub entries: Vec<OffsetCommitPartition>,
}

impl Default for OffsetCommitRequest {
    fn default() -> Self {
        OffsetCommitRequest {
            group_id: String::new(),
            generation: GENERATION_NONE,
            member_id: String::new(),
            entries: Vec::new(),
        }
    }
}

impl OffsetCommitRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("offset_commit_request.group_id", &self.group_id)?;
        writer.i32(self.generation);
        writer.string("offset_commit_request.member_id", &self.member_id)?;
        writer.array_of("offset_commit_request.entries", &self.entries)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OffsetCommitRequest {
            group_id: reader.string("offset_commit_request.group_id")?,
            generation: reader.i32("offset_commit_request.generation")?,
            member_id: reader.string("offset_commit_request.member_id")?,
            entries: reader.array_of("offset_commit_request.entries")?,
        })
    }
}

wire_message!(request OffsetCommitRequest, ApiKey::OffsetCommit, "offset_commit_request",
    response: OffsetCommitResponse);

/// One partition's commit outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetCommitPartitionResult {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
    /// `none`, `offset_metadata_too_large`, `illegal_generation`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
}

impl Element for OffsetCommitPartitionResult {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 2 + 2;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        writer.error_code(self.error_code);
        writer.string(
            "offset_commit_response.entries.error_message",
            &self.error_message,
        )
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OffsetCommitPartitionResult {
            topic_id: reader.u32("offset_commit_response.entries.topic_id")?,
            partition: reader.u32("offset_commit_response.entries.partition")?,
            error_code: reader.error_code("offset_commit_response.entries.error_code")?,
            error_message: reader.string("offset_commit_response.entries.error_message")?,
        })
    }
}

/// The outcome of an OffsetCommit, one result per committed partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct OffsetCommitResponse {
    /// The results, in the order of the request's entries.
    pub entries: Vec<OffsetCommitPartitionResult>,
}

impl OffsetCommitResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.array_of("offset_commit_response.entries", &self.entries)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OffsetCommitResponse {
            entries: reader.array_of("offset_commit_response.entries")?,
        })
    }
}

wire_message!(response OffsetCommitResponse, ApiKey::OffsetCommit, "offset_commit_response");

/// A partition whose committed offset is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffsetFetchPartition {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
}

impl Element for OffsetFetchPartition {
    const WIRE_BYTES_MIN: usize = 4 + 4;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        Ok(())
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OffsetFetchPartition {
            topic_id: reader.u32("offset_fetch_request.entries.topic_id")?,
            partition: reader.u32("offset_fetch_request.entries.partition")?,
        })
    }
}

/// Reads a group's committed offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct OffsetFetchRequest {
    /// The consumer group's id.
    pub group_id: String,
    /// The partitions; empty means every partition the group has committed for.
    pub entries: Vec<OffsetFetchPartition>,
}

impl OffsetFetchRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("offset_fetch_request.group_id", &self.group_id)?;
        writer.array_of("offset_fetch_request.entries", &self.entries)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OffsetFetchRequest {
            group_id: reader.string("offset_fetch_request.group_id")?,
            entries: reader.array_of("offset_fetch_request.entries")?,
        })
    }
}

wire_message!(request OffsetFetchRequest, ApiKey::OffsetFetch, "offset_fetch_request",
    response: OffsetFetchResponse);

/// One partition's committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetFetchPartitionResult {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
    /// `none`, `unknown_partition`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The committed offset, or [`OFFSET_NONE`] when none is committed.
    pub offset: i64,
    /// The metadata stored with the offset (empty when none).
    pub metadata: String,
}

impl Element for OffsetFetchPartitionResult {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 2 + 8 + 2 + 2;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        writer.error_code(self.error_code);
        writer.i64(self.offset);
        writer.string("offset_fetch_response.entries.metadata", &self.metadata)?;
        writer.string(
            "offset_fetch_response.entries.error_message",
            &self.error_message,
        )
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OffsetFetchPartitionResult {
            topic_id: reader.u32("offset_fetch_response.entries.topic_id")?,
            partition: reader.u32("offset_fetch_response.entries.partition")?,
            error_code: reader.error_code("offset_fetch_response.entries.error_code")?,
            offset: reader.i64("offset_fetch_response.entries.offset")?,
            metadata: reader.string("offset_fetch_response.entries.metadata")?,
            error_message: reader.string("offset_fetch_response.entries.error_message")?,
        })
    }
}

/// A group's committed offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct OffsetFetchResponse {
    /// A group-level error (e.g. `unknown_group`), which applies when no entries can be listed.
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The offsets, in the order of the request's entries (or every committed partition).
    pub entries: Vec<OffsetFetchPartitionResult>,
}

impl OffsetFetchResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.error_code(self.error_code);
        writer.string("offset_fetch_response.error_message", &self.error_message)?;
        writer.array_of("offset_fetch_response.entries", &self.entries)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OffsetFetchResponse {
            error_code: reader.error_code("offset_fetch_response.error_code")?,
            error_message: reader.string("offset_fetch_response.error_message")?,
            entries: reader.array_of("offset_fetch_response.entries")?,
        })
    }
}

wire_message!(response OffsetFetchResponse, ApiKey::OffsetFetch, "offset_fetch_response");
