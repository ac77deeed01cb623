//! The connection and discovery apis: ApiVersions (the handshake) and Metadata.
//!
//! This module owns their bodies. ApiVersions is how a connection declares its client id (used
//! for quotas and logs) and learns which versions the broker speaks; Metadata is how a client
//! learns the shards, their addresses, and which shard owns each partition. Invariant: ApiVersions
//! v0 stays decodable by every broker, so a client can always negotiate.

use super::api::{ApiKey, VersionRange};
use super::codec::{DecodeError, Element, EncodeError, Reader, Writer};
use super::error_code::ErrorCode;
use super::message::wire_message;
use super::topic::{TopicConfig, TopicId};

/// The handshake a client sends first on each connection: who it is, to learn what the broker
/// speaks. The client id it declares applies to every later request on the connection; a
/// connection that never sends one has the empty client id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ApiVersionsRequest {
    /// The client's id, for quotas and logs (may be empty).
    pub client_id: String,
    /// The client software's name and version, for logs, e.g. `weir-client/0.1.0`.
    pub client_software: String,
}

impl ApiVersionsRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("api_versions_request.client_id", &self.client_id)?;
        writer.string(
            "api_versions_request.client_software",
            &self.client_software,
        )
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ApiVersionsRequest {
            client_id: reader.string("api_versions_request.client_id")?,
            client_software: reader.string("api_versions_request.client_software")?,
        })
    }
}

wire_message!(request ApiVersionsRequest, ApiKey::ApiVersions, "api_versions_request",
    response: ApiVersionsResponse);

/// One api the broker supports and its version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiVersionRange {
    /// The api key, raw: a newer broker may list apis this build does not know.
    pub api_key: u16,
    /// The supported versions.
    pub versions: VersionRange,
}

impl Element for ApiVersionRange {
    const WIRE_BYTES_MIN: usize = 6;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u16(self.api_key);
        writer.u16(self.versions.min);
        writer.u16(self.versions.max);
        Ok(())
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ApiVersionRange {
            api_key: reader.u16("api_versions_response.apis.api_key")?,
            versions: VersionRange {
                min: reader.u16("api_versions_response.apis.min_version")?,
                max: reader.u16("api_versions_response.apis.max_version")?,
            },
        })
    }
}

/// What the broker speaks: every api with its version range, and the broker software.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ApiVersionsResponse {
    /// The supported apis.
    pub apis: Vec<ApiVersionRange>,
    /// The broker software's name, e.g. `weir-broker`.
    pub broker_name: String,
    /// The broker software's version, e.g. `0.1.0`.
    pub broker_version: String,
}

impl ApiVersionsResponse {
    /// The version ranges this build supports, for a broker to answer with.
    pub fn supported_apis() -> Vec<ApiVersionRange> {
        ApiKey::ALL
            .iter()
            .map(|api_key| ApiVersionRange {
                api_key: api_key.to_u16(),
                versions: api_key.versions(),
            })
            .collect()
    }

    /// The broker's range for `api_key`, if it listed one.
    pub fn versions(&self, api_key: ApiKey) -> Option<VersionRange> {
        self.apis
            .iter()
            .find(|range| range.api_key == api_key.to_u16())
            .map(|range| range.versions)
    }

    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.array_of("api_versions_response.apis", &self.apis)?;
        writer.string("api_versions_response.broker_name", &self.broker_name)?;
        writer.string("api_versions_response.broker_version", &self.broker_version)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ApiVersionsResponse {
            apis: reader.array_of("api_versions_response.apis")?,
            broker_name: reader.string("api_versions_response.broker_name")?,
            broker_version: reader.string("api_versions_response.broker_version")?,
        })
    }
}

wire_message!(response ApiVersionsResponse, ApiKey::ApiVersions, "api_versions_response");

/// Asks for the shards and for the named topics (all topics when `topics` is empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MetadataRequest {
    /// Topic names; empty means every topic.
    pub topics: Vec<String>,
}

impl MetadataRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.count("metadata_request.topics", self.topics.len())?;
        for topic in &self.topics {
            writer.string("metadata_request.topics", topic)?;
        }
        Ok(())
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let count = reader.count("metadata_request.topics", 2)?;
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            topics.push(reader.string("metadata_request.topics")?);
        }
        Ok(MetadataRequest { topics })
    }
}

wire_message!(request MetadataRequest, ApiKey::Metadata, "metadata_request",
    response: MetadataResponse);

/// A shard of the broker and the address that connects straight to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShardMetadata {
    /// The shard's index, `0..shard_count`.
    pub shard: u32,
    /// `host:port` of the shard's own listener.
    pub address: String,
}

impl Element for ShardMetadata {
    const WIRE_BYTES_MIN: usize = 4 + 2;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.shard);
        writer.string("metadata_response.shards.address", &self.address)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ShardMetadata {
            shard: reader.u32("metadata_response.shards.shard")?,
            address: reader.string("metadata_response.shards.address")?,
        })
    }
}

/// A partition and the shard that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionMetadata {
    /// The partition's index within its topic.
    pub partition: u32,
    /// The index of the shard that owns it.
    pub owner_shard: u32,
}

impl Element for PartitionMetadata {
    const WIRE_BYTES_MIN: usize = 8;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.partition);
        writer.u32(self.owner_shard);
        Ok(())
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PartitionMetadata {
            partition: reader.u32("metadata_response.topics.partitions.partition")?,
            owner_shard: reader.u32("metadata_response.topics.partitions.owner_shard")?,
        })
    }
}

/// One topic's metadata, or why it could not be given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicMetadata {
    /// `none`, or why this topic is missing (e.g. `unknown_topic`, `invalid_topic_name`).
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The topic's name.
    pub name: String,
    /// The topic's id (0 when `error_code` is not `none`).
    pub topic_id: TopicId,
    /// The topic's configuration; present exactly when `error_code` is `none`.
    pub config: Option<TopicConfig>,
    /// Every partition with its owner shard, by partition index.
    pub partitions: Vec<PartitionMetadata>,
}

impl Element for TopicMetadata {
    const WIRE_BYTES_MIN: usize = 2 + 2 + 2 + 4 + 1 + 4;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.error_code(self.error_code);
        writer.string(
            "metadata_response.topics.error_message",
            &self.error_message,
        )?;
        writer.string("metadata_response.topics.name", &self.name)?;
        writer.u32(self.topic_id);
        TopicConfig::write_option(&self.config, writer)?;
        writer.array_of("metadata_response.topics.partitions", &self.partitions)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TopicMetadata {
            error_code: reader.error_code("metadata_response.topics.error_code")?,
            error_message: reader.string("metadata_response.topics.error_message")?,
            name: reader.string("metadata_response.topics.name")?,
            topic_id: reader.u32("metadata_response.topics.topic_id")?,
            config: TopicConfig::read_option(reader, "metadata_response.topics.config")?,
            partitions: reader.array_of("metadata_response.topics.partitions")?,
        })
    }
}

/// The broker's shards and the requested topics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MetadataResponse {
    /// The answering broker's node id (0 on a single node).
    pub broker_id: u32,
    /// `host:port` of the shared listener, which accepts connections for any shard.
    pub shared_address: String,
    /// Every shard, by index; the shard count is its length.
    pub shards: Vec<ShardMetadata>,
    /// The requested topics (all of them when the request named none).
    pub topics: Vec<TopicMetadata>,
}

impl MetadataResponse {
    /// How many shards the broker runs.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.broker_id);
        writer.string("metadata_response.shared_address", &self.shared_address)?;
        writer.array_of("metadata_response.shards", &self.shards)?;
        writer.array_of("metadata_response.topics", &self.topics)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MetadataResponse {
            broker_id: reader.u32("metadata_response.broker_id")?,
            shared_address: reader.string("metadata_response.shared_address")?,
            shards: reader.array_of("metadata_response.shards")?,
            topics: reader.array_of("metadata_response.topics")?,
        })
    }
}

wire_message!(response MetadataResponse, ApiKey::Metadata, "metadata_response");
