//! The Produce api: append record batches to partitions.
//!
//! This module owns its bodies. Invariants: each entry's `records` is one or more whole record
//! batches carried as they are (the broker validates the batch headers and CRCs, never the
//! records); decoded records are zero-copy slices of the frame; with [`Acks::None`] the broker
//! sends no response at all, so a client must not wait for one.

use bytes::Bytes;

use super::api::ApiKey;
use super::codec::{DecodeError, DecodeErrorKind, Element, EncodeError, Reader, Writer};
use super::error_code::ErrorCode;
use super::message::wire_message;
use super::topic::TopicId;

/// When the broker acknowledges a produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Acks {
    /// No acknowledgement: the broker sends no response (wire value 0). Errors are only logged
    /// and counted by the broker.
    None,
    /// Acknowledge once the batches are appended by the partition's owner and durable under the
    /// topic's flush policy (wire value 1).
    #[default]
    Leader,
}

impl Acks {
    /// The wire value.
    pub const fn to_u8(self) -> u8 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
        }
    }

    /// Decodes a wire value; `None` for values without a meaning (2 is kept for `all`, once
    /// there is replication).
    pub const fn from_u8(value: u8) -> Option<Acks> {
        match value {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            _ => None,
        }
    }

    /// Whether the broker answers a produce with these acks.
    pub const fn expects_response(self) -> bool {
        !matches!(self, Acks::None)
    }
}

/// Record batches for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProducePartition {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
    /// One or more whole record batches (Kafka RecordBatch v2), concatenated.
    pub records: Bytes,
}

impl Element for ProducePartition {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 4;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        writer.byte_string(
            "produce_request.entries.records",
            std::slice::from_ref(&self.records),
        )
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ProducePartition {
            topic_id: reader.u32("produce_request.entries.topic_id")?,
            partition: reader.u32("produce_request.entries.partition")?,
            records: reader.byte_string("produce_request.entries.records")?,
        })
    }
}

/// Appends record batches to one or more partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ProduceRequest {
    /// When the broker acknowledges.
    pub acks: Acks,
    /// How long the broker may wait for durability before answering `request_timed_out`.
    pub timeout_ms: u32,
    /// The batches, per partition.
    pub entries: Vec<ProducePartition>,
}

impl ProduceRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u8(self.acks.to_u8());
        writer.u32(self.timeout_ms);
        writer.array_of("produce_request.entries", &self.entries)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = reader.u8("produce_request.acks")?;
        let acks = Acks::from_u8(tag).ok_or(DecodeError::new(
            "produce_request.acks",
            DecodeErrorKind::InvalidTag {
                tag: u16::from(tag),
            },
        ))?;
        Ok(ProduceRequest {
            acks,
            timeout_ms: reader.u32("produce_request.timeout_ms")?,
            entries: reader.array_of("produce_request.entries")?,
        })
    }

    /// The total bytes of record batches in the request.
    pub fn records_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|entry| entry.records.len() as u64)
            .sum()
    }
}

wire_message!(request ProduceRequest, ApiKey::Produce, "produce_request",
    response: ProduceResponse);

/// The outcome of the append to one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProducePartitionResult {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
    /// `none`, or why the batches were not appended (nothing of the entry was appended then).
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The offset given to the first record of the first batch (-1 on error).
    pub base_offset: i64,
    /// The partition's first offset still in the log (-1 on error).
    pub log_start_offset: i64,
}

impl Element for ProducePartitionResult {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 2 + 8 + 8 + 2;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        writer.error_code(self.error_code);
        writer.i64(self.base_offset);
        writer.i64(self.log_start_offset);
        writer.string(
            "produce_response.entries.error_message",
            &self.error_message,
        )
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ProducePartitionResult {
            topic_id: reader.u32("produce_response.entries.topic_id")?,
            partition: reader.u32("produce_response.entries.partition")?,
            error_code: reader.error_code("produce_response.entries.error_code")?,
            base_offset: reader.i64("produce_response.entries.base_offset")?,
            log_start_offset: reader.i64("produce_response.entries.log_start_offset")?,
            error_message: reader.string("produce_response.entries.error_message")?,
        })
    }
}

/// The outcome of a produce, one result per requested partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ProduceResponse {
    /// The results, in the order of the request's entries.
    pub entries: Vec<ProducePartitionResult>,
}

impl ProduceResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.array_of("produce_response.entries", &self.entries)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ProduceResponse {
            entries: reader.array_of("produce_response.entries")?,
        })
    }
}

wire_message!(response ProduceResponse, ApiKey::Produce, "produce_response");
