//! Topic administration: create, delete, list and describe topics.
//!
//! [`Admin`] sends control requests to the bootstrap address (any shard serves them) and turns
//! each response's error code into a typed [`Error`]. It refreshes the cluster's metadata after
//! a create or delete so that producers and consumers sharing the cluster see the change at once.
//! Invariant: an unset setting in [`TopicSettings`] is sent as the broker's documented default
//! (the CreateTopic message carries every field).

use std::sync::Arc;

use weir_proto::wire::{
    CreateTopicRequest, DeleteTopicRequest, DescribeTopicRequest, ErrorCode, FlushPolicy,
    ListTopicsRequest, TopicConfig, TopicId,
};

use crate::cluster::{ClientConfig, Cluster};
use crate::error::Error;

/// The broker's default segment size, used when [`TopicSettings::segment_bytes`] is unset.
pub const SEGMENT_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
/// The broker's default retention and segment age, seven days, used when unset.
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;

/// The settings of a new topic; `None` takes the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicSettings {
    /// When appends are made durable (default: always).
    pub flush: Option<FlushPolicy>,
    /// The most bytes a partition retains (default: no limit).
    pub retention_bytes: Option<u64>,
    /// The age after which segments are deleted (default: seven days).
    pub retention_ms: Option<u64>,
    /// The size at which a new segment starts (default: 256 MiB).
    pub segment_bytes: Option<u64>,
}

impl TopicSettings {
    /// Returns the wire configuration with defaults filled in.
    pub fn to_config(&self) -> TopicConfig {
        TopicConfig {
            flush: self.flush.unwrap_or_default(),
            retention_bytes: self.retention_bytes,
            retention_ms: Some(self.retention_ms.unwrap_or(RETENTION_MS_DEFAULT)),
            segment_bytes: self.segment_bytes.unwrap_or(SEGMENT_BYTES_DEFAULT),
            segment_ms: Some(RETENTION_MS_DEFAULT),
        }
    }
}

/// A topic in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// The topic's name.
    pub name: String,
    /// The topic's id.
    pub topic_id: TopicId,
    /// How many partitions it has.
    pub partition_count: u32,
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition's index.
    pub partition: u32,
    /// The shard that owns it.
    pub owner_shard: u32,
    /// The first offset still in the log (-1 if it could not be read).
    pub log_start_offset: i64,
    /// The offset the next record will get (-1 if it could not be read).
    pub log_end_offset: i64,
    /// Why the offsets could not be read, if they could not.
    pub error: Option<String>,
}

/// A topic's configuration and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic's name.
    pub name: String,
    /// The topic's id.
    pub topic_id: TopicId,
    /// The topic's configuration.
    pub config: Option<TopicConfig>,
    /// Every partition, by index.
    pub partitions: Vec<PartitionDescription>,
}

/// Creates, deletes, lists and describes topics.
///
/// ```no_run
/// use weir_client::{Admin, ClientConfig, TopicSettings};
///
/// # async fn run() -> Result<(), weir_client::Error> {
/// let admin = Admin::connect(ClientConfig::new("127.0.0.1:9347")).await?;
/// let topic_id = admin.create_topic("events", 8, &TopicSettings::default()).await?;
/// for topic in admin.list_topics().await? {
///     println!("{} (id {}): {} partitions", topic.name, topic.topic_id, topic.partition_count);
/// }
/// # let _ = topic_id;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
}

impl Admin {
    /// Creates an admin client over a connected cluster.
    pub fn new(cluster: Arc<Cluster>) -> Admin {
        Admin { cluster }
    }

    /// Connects to `client.bootstrap` and creates an admin client.
    pub async fn connect(client: ClientConfig) -> Result<Admin, Error> {
        Ok(Admin::new(Cluster::connect(client).await?))
    }

    /// Returns the cluster this client talks to.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Creates a topic with `partitions` partitions and returns its id.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        settings: &TopicSettings,
    ) -> Result<TopicId, Error> {
        weir_proto::wire::validate_topic_name(name)
            .map_err(|error| Error::InvalidArgument(error.to_string()))?;
        if partitions == 0 {
            return Err(Error::InvalidArgument(
                "a topic needs at least one partition".to_string(),
            ));
        }
        let request = CreateTopicRequest {
            name: name.to_string(),
            partition_count: partitions,
            config: settings.to_config(),
        };
        let response = self.cluster.control_request(&request).await?;
        check(response.error_code, response.error_message, name)?;
        self.refresh_quietly().await;
        Ok(response.topic_id)
    }

    /// Deletes a topic and all its records.
    pub async fn delete_topic(&self, name: &str) -> Result<(), Error> {
        let request = DeleteTopicRequest {
            name: name.to_string(),
        };
        let response = self.cluster.control_request(&request).await?;
        check(response.error_code, response.error_message, name)?;
        self.refresh_quietly().await;
        Ok(())
    }

    /// Lists every topic.
    pub async fn list_topics(&self) -> Result<Vec<TopicListing>, Error> {
        let response = self.cluster.control_request(&ListTopicsRequest).await?;
        let mut topics: Vec<TopicListing> = response
            .topics
            .into_iter()
            .map(|topic| TopicListing {
                name: topic.name,
                topic_id: topic.topic_id,
                partition_count: topic.partition_count,
            })
            .collect();
        topics.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(topics)
    }

    /// Describes a topic: its configuration and, per partition, the owner shard and log bounds.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, Error> {
        let request = DescribeTopicRequest {
            name: name.to_string(),
        };
        let response = self.cluster.control_request(&request).await?;
        check(response.error_code, response.error_message, name)?;
        Ok(TopicDescription {
            name: response.name,
            topic_id: response.topic_id,
            config: response.config,
            partitions: response
                .partitions
                .into_iter()
                .map(|partition| PartitionDescription {
                    partition: partition.partition,
                    owner_shard: partition.owner_shard,
                    log_start_offset: partition.log_start_offset,
                    log_end_offset: partition.log_end_offset,
                    error: (!partition.error_code.is_none())
                        .then(|| format!("{}: {}", partition.error_code, partition.error_message)),
                })
                .collect(),
        })
    }

    async fn refresh_quietly(&self) {
        if let Err(error) = self.cluster.refresh_metadata().await {
            tracing::debug!(%error, "metadata refresh after a topic change failed");
        }
    }
}

/// Turns a response's error code into a typed error about topic `name`.
fn check(code: ErrorCode, message: String, name: &str) -> Result<(), Error> {
    match code {
        ErrorCode::None => Ok(()),
        ErrorCode::UnknownTopic => Err(Error::UnknownTopic {
            topic: name.to_string(),
        }),
        code => Err(Error::Broker { code, message }),
    }
}
