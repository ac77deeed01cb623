//! The Fetch api: read record batches from partitions, with long polling.
//!
//! This module owns its bodies and [`FetchRecords`], the record bytes of one partition's answer.
//! Invariants: the broker's response is written without copying batch bytes — each partition's
//! records are kept as the `Bytes` chunks storage handed out (tail cache or segment reads) and
//! [`crate::wire::ResponseMessage::encode_frame_chunks`] emits them as their own chunks for a
//! vectored write; the client decodes a partition's records as one zero-copy slice of the frame,
//! which `crate::batch::BatchIter` iterates (a trailing partial batch ends the iteration).

use bytes::{BufMut, Bytes, BytesMut};

use super::api::ApiKey;
use super::codec::{DecodeError, Element, EncodeError, Reader, Writer};
use super::error_code::ErrorCode;
use super::message::wire_message;
use super::topic::TopicId;

/// What to read from one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FetchPartition {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
    /// The first offset wanted; the batch holding it is returned whole.
    pub fetch_offset: i64,
    /// The most record bytes to return for this partition (at least one whole batch is returned
    /// if the first one is larger, so a consumer can always make progress).
    pub partition_max_bytes: u32,
}

impl Element for FetchPartition {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 8 + 4;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        writer.i64(self.fetch_offset);
        writer.u32(self.partition_max_bytes);
        Ok(())
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FetchPartition {
            topic_id: reader.u32("fetch_request.entries.topic_id")?,
            partition: reader.u32("fetch_request.entries.partition")?,
            fetch_offset: reader.i64("fetch_request.entries.fetch_offset")?,
            partition_max_bytes: reader.u32("fetch_request.entries.partition_max_bytes")?,
        })
    }
}

/// Reads from one or more partitions; the broker waits up to `max_wait_ms` for `min_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FetchRequest {
    /// The longest the broker may hold the request waiting for `min_bytes`.
    pub max_wait_ms: u32,
    /// Answer as soon as this many record bytes are available (0 = answer at once).
    pub min_bytes: u32,
    /// The most record bytes in the whole response (soft, like `partition_max_bytes`).
    pub max_bytes: u32,
    /// The partitions to read.
    pub entries: Vec<FetchPartition>,
}

impl FetchRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.max_wait_ms);
        writer.u32(self.min_bytes);
        writer.u32(self.max_bytes);
        writer.array_of("fetch_request.entries", &self.entries)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FetchRequest {
            max_wait_ms: reader.u32("fetch_request.max_wait_ms")?,
            min_bytes: reader.u32("fetch_request.min_bytes")?,
            max_bytes: reader.u32("fetch_request.max_bytes")?,
            entries: reader.array_of("fetch_request.entries")?,
        })
    }
}

wire_message!(request FetchRequest, ApiKey::Fetch, "fetch_request", response: FetchResponse);

/// The record bytes of one partition's fetch answer: whole record batches, concatenated.
///
/// On the broker it is a list of chunks exactly as storage returned them (none is copied when
/// the response is encoded with `encode_frame_chunks`); decoded on the client it is one chunk, a
/// slice of the received frame. Two values are equal when their concatenated bytes are.
#[derive(Debug, Clone, Default)]
pub struct FetchRecords {
    chunks: Vec<Bytes>,
}

impl FetchRecords {
    /// No records.
    pub const fn new() -> Self {
        FetchRecords { chunks: Vec::new() }
    }

    /// Records made of `chunks`, in order.
    pub fn from_chunks(chunks: Vec<Bytes>) -> Self {
        FetchRecords { chunks }
    }

    /// Appends a chunk (one or more whole batches, or part of a batch continued by the next).
    pub fn push(&mut self, chunk: Bytes) {
        self.chunks.push(chunk);
    }

    /// The chunks, in order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The total length in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.len() as u64).sum()
    }

    /// Whether there are no record bytes.
    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(Bytes::is_empty)
    }

    /// The records as one contiguous `Bytes`, ready for `crate::batch::BatchIter`.
    ///
    /// Free for decoded records (one chunk: the slice is shared, not copied); copies only when
    /// the value was built from several non-empty chunks.
    pub fn to_contiguous(&self) -> Bytes {
        let mut non_empty = self.chunks.iter().filter(|chunk| !chunk.is_empty());
        match (non_empty.next(), non_empty.next()) {
            (None, _) => Bytes::new(),
            (Some(only), None) => only.clone(),
            (Some(_), Some(_)) => {
                let mut joined = BytesMut::with_capacity(self.len_bytes() as usize);
                for chunk in &self.chunks {
                    joined.put_slice(chunk);
                }
                joined.freeze()
            }
        }
    }
}

impl From<Bytes> for FetchRecords {
    fn from(chunk: Bytes) -> Self {
        FetchRecords {
            chunks: vec![chunk],
        }
    }
}

impl PartialEq for FetchRecords {
    fn eq(&self, other: &Self) -> bool {
        if self.len_bytes() != other.len_bytes() {
            return false;
        }
        let mine = self.chunks.iter().flat_map(|chunk| chunk.iter());
        let theirs = other.chunks.iter().flat_map(|chunk| chunk.iter());
        mine.eq(theirs)
    }
}

impl Eq for FetchRecords {}

/// One partition's fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResult {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
    /// `none`, or why nothing was read (`offset_out_of_range`, `unknown_partition`, …).
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The end of the readable log: the offset after the last record a consumer may read.
    pub high_watermark: i64,
    /// The first offset still in the log.
    pub log_start_offset: i64,
    /// Whole batches from the one holding `fetch_offset` on (may be empty).
    pub records: FetchRecords,
}

impl Element for FetchPartitionResult {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 2 + 8 + 8 + 2 + 4;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        writer.error_code(self.error_code);
        writer.i64(self.high_watermark);
        writer.i64(self.log_start_offset);
        writer.string("fetch_response.entries.error_message", &self.error_message)?;
        writer.byte_string("fetch_response.entries.records", self.records.chunks())
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FetchPartitionResult {
            topic_id: reader.u32("fetch_response.entries.topic_id")?,
            partition: reader.u32("fetch_response.entries.partition")?,
            error_code: reader.error_code("fetch_response.entries.error_code")?,
            high_watermark: reader.i64("fetch_response.entries.high_watermark")?,
            log_start_offset: reader.i64("fetch_response.entries.log_start_offset")?,
            error_message: reader.string("fetch_response.entries.error_message")?,
            records: FetchRecords::from(reader.byte_string("fetch_response.entries.records")?),
        })
    }
}

/// The answer to a fetch, one result per requested partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchResponse {
    /// The results, in the order of the request's entries.
    pub entries: Vec<FetchPartitionResult>,
}

impl FetchResponse {
    /// The total record bytes in the response.
    pub fn records_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|entry| entry.records.len_bytes())
            .sum()
    }

    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.array_of("fetch_response.entries", &self.entries)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FetchResponse {
            entries: reader.array_of("fetch_response.entries")?,
        })
    }
}

wire_message!(response FetchResponse, ApiKey::Fetch, "fetch_response");
