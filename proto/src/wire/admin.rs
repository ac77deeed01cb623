//! The topic administration apis: CreateTopic, DeleteTopic, ListTopics and DescribeTopic.
//!
//! This module owns their bodies. Invariants: topics are named by string here (the control plane)
//! and answered with their numeric id for the data path; a failure for the one topic a request
//! names is an error code with a message in the response body, not a request-level error.

use super::api::ApiKey;
use super::codec::{DecodeError, Element, EncodeError, Reader, Writer};
use super::error_code::ErrorCode;
use super::message::wire_message;
use super::topic::{TopicConfig, TopicConfigOverrides, TopicId};

/// Creates a topic with `partition_count` partitions and the settings in `config`; whatever the
/// request leaves out, the broker fills in from its own defaults.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CreateTopicRequest {
    /// The new topic's name (checked with [`crate::wire::validate_topic_name`]).
    pub name: String,
    /// How many partitions it has; 0 = the broker's default.
    pub partition_count: u32,
    /// The settings that differ from the broker's defaults.
    pub config: TopicConfigOverrides,
}

impl CreateTopicRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("create_topic_request.name", &self.name)?;
        writer.u32(self.partition_count);
        self.config.write(writer)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CreateTopicRequest {
            name: reader.string("create_topic_request.name")?,
            partition_count: reader.u32("create_topic_request.partition_count")?,
            config: TopicConfigOverrides::read(reader)?,
        })
    }
}

wire_message!(request CreateTopicRequest, ApiKey::CreateTopic, "create_topic_request",
    response: CreateTopicResponse);

/// The outcome of a CreateTopic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CreateTopicResponse {
    /// `none`, `topic_already_exists`, `invalid_topic_name`, `invalid_config`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The new topic's id (0 on error).
    pub topic_id: TopicId,
}

impl CreateTopicResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.error_code(self.error_code);
        writer.string("create_topic_response.error_message", &self.error_message)?;
        writer.u32(self.topic_id);
        Ok(())
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CreateTopicResponse {
            error_code: reader.error_code("create_topic_response.error_code")?,
            error_message: reader.string("create_topic_response.error_message")?,
            topic_id: reader.u32("create_topic_response.topic_id")?,
        })
    }
}

wire_message!(response CreateTopicResponse, ApiKey::CreateTopic, "create_topic_response");

/// Deletes a topic and all its data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DeleteTopicRequest {
    /// The topic's name.
    pub name: String,
}

impl DeleteTopicRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("delete_topic_request.name", &self.name)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DeleteTopicRequest {
            name: reader.string("delete_topic_request.name")?,
        })
    }
}

wire_message!(request DeleteTopicRequest, ApiKey::DeleteTopic, "delete_topic_request",
    response: DeleteTopicResponse);

/// The outcome of a DeleteTopic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DeleteTopicResponse {
    /// `none`, `unknown_topic`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
}

impl DeleteTopicResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.error_code(self.error_code);
        writer.string("delete_topic_response.error_message", &self.error_message)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DeleteTopicResponse {
            error_code: reader.error_code("delete_topic_response.error_code")?,
            error_message: reader.string("delete_topic_response.error_message")?,
        })
    }
}

wire_message!(response DeleteTopicResponse, ApiKey::DeleteTopic, "delete_topic_response");

/// Lists every topic; the body is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ListTopicsRequest;

impl ListTopicsRequest {
    fn write_fields(&self, _writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        Ok(())
    }

    fn read_fields(_reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ListTopicsRequest)
    }
}

wire_message!(request ListTopicsRequest, ApiKey::ListTopics, "list_topics_request",
    response: ListTopicsResponse);

/// One topic in a ListTopics answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListedTopic {
    /// The topic's name.
    pub name: String,
    /// The topic's id.
    pub topic_id: TopicId,
    /// How many partitions it has.
    pub partition_count: u32,
}

impl Element for ListedTopic {
    const WIRE_BYTES_MIN: usize = 2 + 4 + 4;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("list_topics_response.topics.name", &self.name)?;
        writer.u32(self.topic_id);
        writer.u32(self.partition_count);
        Ok(())
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ListedTopic {
            name: reader.string("list_topics_response.topics.name")?,
            topic_id: reader.u32("list_topics_response.topics.topic_id")?,
            partition_count: reader.u32("list_topics_response.topics.partition_count")?,
        })
    }
}

/// Every topic's name and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ListTopicsResponse {
    /// The topics, in no particular order.
    pub topics: Vec<ListedTopic>,
}

impl ListTopicsResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.array_of("list_topics_response.topics", &self.topics)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ListTopicsResponse {
            topics: reader.array_of("list_topics_response.topics")?,
        })
    }
}

wire_message!(response ListTopicsResponse, ApiKey::ListTopics, "list_topics_response");

/// Asks for one topic's configuration, partitions and log offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DescribeTopicRequest {
    /// The topic's name.
    pub name: String,
}

impl DescribeTopicRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("describe_topic_request.name", &self.name)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DescribeTopicRequest {
            name: reader.string("describe_topic_request.name")?,
        })
    }
}

wire_message!(request DescribeTopicRequest, ApiKey::DescribeTopic, "describe_topic_request",
    response: DescribeTopicResponse);

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DescribedPartition {
    /// The partition's index.
    pub partition: u32,
    /// The shard that owns it.
    pub owner_shard: u32,
    /// `none`, or why its offsets could not be read (e.g. `storage_error`).
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The first offset still in the log.
    pub log_start_offset: i64,
    /// The offset the next appended record will get.
    pub log_end_offset: i64,
}

impl Element for DescribedPartition {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 2 + 2 + 8 + 8;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.partition);
        writer.u32(self.owner_shard);
        writer.error_code(self.error_code);
        writer.string(
            "describe_topic_response.partitions.error_message",
            &self.error_message,
        )?;
        writer.i64(self.log_start_offset);
        writer.i64(self.log_end_offset);
        Ok(())
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DescribedPartition {
            partition: reader.u32("describe_topic_response.partitions.partition")?,
            owner_shard: reader.u32("describe_topic_response.partitions.owner_shard")?,
            error_code: reader.error_code("describe_topic_response.partitions.error_code")?,
            error_message: reader.string("describe_topic_response.partitions.error_message")?,
            log_start_offset: reader.i64("describe_topic_response.partitions.log_start_offset")?,
            log_end_offset: reader.i64("describe_topic_response.partitions.log_end_offset")?,
        })
    }
}

/// A topic's configuration, partitions and their log offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DescribeTopicResponse {
    /// `none`, `unknown_topic`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The topic's name, as asked.
    pub name: String,
    /// The topic's id (0 on error).
    pub topic_id: TopicId,
    /// The topic's configuration; present exactly when `error_code` is `none`.
    pub config: Option<TopicConfig>,
    /// Every partition, by index.
    pub partitions: Vec<DescribedPartition>,
}

impl DescribeTopicResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.error_code(self.error_code);
        writer.string("describe_topic_response.error_message", &self.error_message)?;
        writer.string("describe_topic_response.name", &self.name)?;
        writer.u32(self.topic_id);
        TopicConfig::write_option(&self.config, writer)?;
        writer.array_of("describe_topic_response.partitions", &self.partitions)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DescribeTopicResponse {
            error_code: reader.error_code("describe_topic_response.error_code")?,
            error_message: reader.string("describe_topic_response.error_message")?,
            name: reader.string("describe_topic_response.name")?,
            topic_id: reader.u32("describe_topic_response.topic_id")?,
            config: TopicConfig::read_option(reader, "describe_topic_response.config")?,
            partitions: reader.array_of("describe_topic_response.partitions")?,
        })
    }
}

wire_message!(response DescribeTopicResponse, ApiKey::DescribeTopic, "describe_topic_response");
