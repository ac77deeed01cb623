//! Topic administration (create, delete, list and describe topics) and consumer-group
//! administration (list groups, describe a group's members, committed offsets and lag, delete
//! empty groups).
//!
//! [`Admin`] sends control requests to the bootstrap address (any shard serves them) and turns
//! each response's error code into a typed [`Error`]. It refreshes the cluster's metadata after
//! a create or delete so that producers and consumers sharing the cluster see the change at once.
//! Invariant: a setting left unset in [`TopicSettings`] is left out of the CreateTopic request,
//! so the broker fills in its own configured default (its `--default-*` settings); the client
//! holds no copy of the broker's defaults that could disagree with them.

use std::sync::Arc;

use weir_proto::wire::{
    CreateTopicRequest, DeleteGroupsRequest, DeleteTopicRequest, DescribeGroupsRequest,
    DescribeTopicRequest, ErrorCode, FlushPolicy, Limit, ListGroupsRequest, ListTopicsRequest,
    TopicConfig, TopicConfigOverrides, TopicId, OFFSET_NONE,
};

use crate::cluster::{ClientConfig, Cluster};
use crate::error::Error;

/// The settings of a new topic. Each one is optional: `None` takes the broker's default, so the
/// same code creates topics the way each broker's operator configured them.
///
/// Build with the field names or the chained setters:
///
/// ```
/// use weir_client::{FlushPolicy, Limit, TopicSettings};
///
/// let settings = TopicSettings::new()
///     .partitions(8)
///     .flush(FlushPolicy::Never)
///     .retention_bytes(Limit::Unlimited)
///     .retention_ms(3_600_000);
/// assert_eq!(settings.retention_ms, Some(Limit::Value(3_600_000)));
/// assert_eq!(settings.segment_bytes, None); // the broker's default
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicSettings {
    /// How many partitions the topic has, at least 1 (default: the broker's
    /// `--default-partitions`).
    pub partitions: Option<u32>,
    /// When appends are made durable (default: the broker's `--default-flush`).
    pub flush: Option<FlushPolicy>,
    /// The most bytes a partition retains before its oldest segments are deleted, or
    /// [`Limit::Unlimited`] (default: the broker's `--default-retention-bytes-max`).
    pub retention_bytes: Option<Limit>,
    /// The age in milliseconds after which segments are deleted, or [`Limit::Unlimited`]
    /// (default: the broker's `--default-retention-ms-max`).
    pub retention_ms: Option<Limit>,
    /// The size in bytes at which a new segment starts (default: the broker's
    /// `--default-segment-bytes-max`).
    pub segment_bytes: Option<u64>,
    /// The age in milliseconds at which a new segment starts, or [`Limit::Unlimited`] to roll by
    /// size only (default: the broker's `--default-segment-ms-max`).
    pub segment_ms: Option<Limit>,
}

impl TopicSettings {
    /// Every setting the broker's default.
    pub fn new() -> TopicSettings {
        TopicSettings::default()
    }

    /// Sets the partition count (at least 1).
    pub fn partitions(mut self, count: u32) -> TopicSettings {
        self.partitions = Some(count);
        self
    }

    /// Sets the flush policy.
    pub fn flush(mut self, policy: FlushPolicy) -> TopicSettings {
        self.flush = Some(policy);
        self
    }

    /// Sets the retention by size: a byte count, or [`Limit::Unlimited`].
    pub fn retention_bytes(mut self, limit: impl Into<Limit>) -> TopicSettings {
        self.retention_bytes = Some(limit.into());
        self
    }

    /// Sets the retention by age: milliseconds, or [`Limit::Unlimited`].
    pub fn retention_ms(mut self, limit: impl Into<Limit>) -> TopicSettings {
        self.retention_ms = Some(limit.into());
        self
    }

    /// Sets the segment size in bytes.
    pub fn segment_bytes(mut self, bytes: u64) -> TopicSettings {
        self.segment_bytes = Some(bytes);
        self
    }

    /// Sets the segment age: milliseconds, or [`Limit::Unlimited`] to roll by size only.
    pub fn segment_ms(mut self, limit: impl Into<Limit>) -> TopicSettings {
        self.segment_ms = Some(limit.into());
        self
    }

    /// The CreateTopic request for a topic `name` with these settings; unset ones are left out
    /// for the broker to fill in (a partition count of 0 on the wire).
    ///
    /// Fails on a partition count of 0, which the wire would read as "the broker's default".
    pub fn to_request(&self, name: &str) -> Result<CreateTopicRequest, Error> {
        if self.partitions == Some(0) {
            return Err(Error::InvalidArgument(
                "a topic needs at least one partition; leave the count unset for the broker's \
                 default"
                    .to_string(),
            ));
        }
        Ok(CreateTopicRequest {
            name: name.to_string(),
            partition_count: self.partitions.unwrap_or(0),
            config: TopicConfigOverrides {
                flush: self.flush,
                retention_bytes: self.retention_bytes,
                retention_ms: self.retention_ms,
                segment_bytes: self.segment_bytes,
                segment_ms: self.segment_ms,
            },
        })
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

/// A consumer group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group's id.
    pub group_id: String,
    /// `empty`, `preparing_rebalance`, `completing_rebalance` or `stable`.
    pub state: String,
    /// How many members the group has.
    pub member_count: u32,
    /// The assignment strategy of the current generation (empty without members).
    pub strategy: String,
}

/// The outcome of deleting one consumer group.
#[derive(Debug)]
pub struct GroupDeletion {
    /// The group's id.
    pub group_id: String,
    /// `Ok` when the group and its committed offsets are gone; else [`Error::Broker`] with
    /// `non_empty_group` (it has members) or `group_id_not_found`.
    pub result: Result<(), Error>,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The id the coordinator gave the member.
    pub member_id: String,
    /// The client id the member declared.
    pub client_id: String,
    /// The address the member connected from.
    pub client_host: String,
    /// The member's partitions in the current generation, as `(topic, partition)`.
    pub assignment: Vec<(String, u32)>,
}

/// One partition of a described group: its owner, committed offset and lag.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPartitionLag {
    /// The topic's name (`id N` if the topic is no longer in the metadata).
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The member that owns it in the current generation, if one does.
    pub owner_member_id: Option<String>,
    /// The group's committed offset, if it committed one.
    pub committed_offset: Option<i64>,
    /// The partition's log end offset.
    pub log_end_offset: i64,
    /// Records between the committed offset (or the log start) and the log end.
    pub lag_records: i64,
    /// The group's recent consume rate on the partition, records per second (from its commits).
    pub consume_rate_per_second: f64,
    /// How long the lag takes to consume at that rate, in milliseconds; `None` when the rate is
    /// unknown or zero and there is lag.
    pub lag_ms: Option<i64>,
}

/// A consumer group: its state, members and, per partition, committed offset and lag.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDescription {
    /// The group's id.
    pub group_id: String,
    /// `empty`, `preparing_rebalance`, `completing_rebalance` or `stable`.
    pub state: String,
    /// The current generation.
    pub generation: i32,
    /// The assignment strategy of the current generation.
    pub strategy: String,
    /// The members, in the coordinator's order.
    pub members: Vec<GroupMember>,
    /// The partitions the group committed for or assigned, by topic and partition.
    pub partitions: Vec<GroupPartitionLag>,
}

/// Creates, deletes, lists and describes topics; lists and describes consumer groups.
///
/// ```no_run
/// use weir_client::{Admin, ClientConfig, TopicSettings};
///
/// # async fn run() -> Result<(), weir_client::Error> {
/// let admin = Admin::connect(ClientConfig::new("127.0.0.1:9347")).await?;
/// let topic_id = admin.create_topic("events", &TopicSettings::new().partitions(8)).await?;
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

    /// Creates a topic with `settings` (unset ones take the broker's defaults) and returns its
    /// id. [`Admin::describe_topic`] shows the settings it got.
    pub async fn create_topic(
        &self,
        name: &str,
        settings: &TopicSettings,
    ) -> Result<TopicId, Error> {
        weir_proto::wire::validate_topic_name(name)
            .map_err(|error| Error::InvalidArgument(error.to_string()))?;
        let request = settings.to_request(name)?;
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

    /// Lists every consumer group the broker knows (with members or only committed offsets),
    /// by group id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, Error> {
        let response = self.cluster.control_request(&ListGroupsRequest).await?;
        let mut groups: Vec<GroupListing> = response
            .groups
            .into_iter()
            .map(|group| GroupListing {
                group_id: group.group_id,
                state: group.state,
                member_count: group.member_count,
                strategy: group.strategy,
            })
            .collect();
        groups.sort_by(|left, right| left.group_id.cmp(&right.group_id));
        Ok(groups)
    }

    /// Deletes consumer groups and their committed offsets, one result per id in the order
    /// given. Only a group without members can be deleted. The call fails as a whole only when
    /// the request cannot be sent or answered.
    pub async fn delete_groups(&self, group_ids: &[String]) -> Result<Vec<GroupDeletion>, Error> {
        let request = DeleteGroupsRequest {
            group_ids: group_ids.to_vec(),
        };
        let response = self.cluster.control_request(&request).await?;
        if response.results.len() != group_ids.len() {
            return Err(Error::Protocol {
                address: self.cluster.config().bootstrap.clone(),
                reason: format!(
                    "the DeleteGroups response has {} results for {} groups",
                    response.results.len(),
                    group_ids.len()
                ),
            });
        }
        Ok(response
            .results
            .into_iter()
            .map(|result| GroupDeletion {
                result: if result.error_code.is_none() {
                    Ok(())
                } else {
                    Err(Error::Broker {
                        code: result.error_code,
                        message: result.error_message,
                    })
                },
                group_id: result.group_id,
            })
            .collect())
    }

    /// Describes consumer group `group_id`: members with their assignments and, per partition,
    /// the owner, committed offset, log end and lag. Fails with [`Error::Broker`]
    /// (`group_id_not_found`) for a group the broker does not know.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription, Error> {
        let request = DescribeGroupsRequest {
            group_ids: vec![group_id.to_string()],
        };
        let response = self.cluster.control_request(&request).await?;
        let group = response
            .groups
            .into_iter()
            .find(|group| group.group_id == group_id)
            .ok_or_else(|| Error::Protocol {
                address: self.cluster.config().bootstrap.clone(),
                reason: format!("the DescribeGroups response has no entry for \"{group_id}\""),
            })?;
        if !group.error_code.is_none() {
            return Err(Error::Broker {
                code: group.error_code,
                message: group.error_message,
            });
        }
        let mut snapshot = self.cluster.metadata();
        let known = |snapshot: &crate::cluster::MetadataSnapshot, topic_id| {
            snapshot.topic_by_id(topic_id).is_some()
        };
        let all_known = group
            .partitions
            .iter()
            .map(|partition| partition.topic_id)
            .chain(
                group
                    .members
                    .iter()
                    .flat_map(|member| member.assignment.iter().map(|entry| entry.topic_id)),
            )
            .all(|topic_id| known(&snapshot, topic_id));
        if !all_known {
            snapshot = self.cluster.refresh_metadata().await?;
        }
        let name = |topic_id: TopicId| match snapshot.topic_by_id(topic_id) {
            Some(topic) => topic.name.clone(),
            None => format!("id {topic_id}"),
        };
        let members = group
            .members
            .into_iter()
            .map(|member| GroupMember {
                member_id: member.member_id,
                client_id: member.client_id,
                client_host: member.client_host,
                assignment: member
                    .assignment
                    .iter()
                    .map(|entry| (name(entry.topic_id), entry.partition))
                    .collect(),
            })
            .collect();
        let mut partitions: Vec<GroupPartitionLag> = group
            .partitions
            .into_iter()
            .map(|partition| GroupPartitionLag {
                topic: name(partition.topic_id),
                partition: partition.partition,
                owner_member_id: (!partition.owner_member_id.is_empty())
                    .then_some(partition.owner_member_id),
                committed_offset: (partition.committed_offset != OFFSET_NONE)
                    .then_some(partition.committed_offset),
                log_end_offset: partition.log_end_offset,
                lag_records: partition.lag_records,
                consume_rate_per_second: partition.consume_rate_milli as f64 / 1000.0,
                lag_ms: (partition.lag_ms >= 0).then_some(partition.lag_ms),
            })
            .collect();
        partitions.sort_by(|left, right| {
            (left.topic.as_str(), left.partition).cmp(&(right.topic.as_str(), right.partition))
        });
        Ok(GroupDescription {
            group_id: group.group_id,
            state: group.state,
            generation: group.generation,
            strategy: group.strategy,
            members,
            partitions,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_settings_are_left_for_the_broker() {
        let request = TopicSettings::new().to_request("t").unwrap();
        assert_eq!(
            request.partition_count, 0,
            "0 asks for the broker's default"
        );
        assert_eq!(request.config, TopicConfigOverrides::default());
    }

    #[test]
    fn setters_and_fields_give_the_same_request() {
        let chained = TopicSettings::new()
            .partitions(4)
            .flush(FlushPolicy::Interval { interval_ms: 10 })
            .retention_bytes(Limit::Unlimited)
            .retention_ms(60_000)
            .segment_bytes(1 << 20)
            .segment_ms(Limit::Unlimited);
        let literal = TopicSettings {
            partitions: Some(4),
            flush: Some(FlushPolicy::Interval { interval_ms: 10 }),
            retention_bytes: Some(Limit::Unlimited),
            retention_ms: Some(Limit::Value(60_000)),
            segment_bytes: Some(1 << 20),
            segment_ms: Some(Limit::Unlimited),
        };
        assert_eq!(chained, literal);
        let request = chained.to_request("t").unwrap();
        assert_eq!(request.partition_count, 4);
        assert_eq!(
            request.config,
            TopicConfigOverrides {
                flush: Some(FlushPolicy::Interval { interval_ms: 10 }),
                retention_bytes: Some(Limit::Unlimited),
                retention_ms: Some(Limit::Value(60_000)),
                segment_bytes: Some(1 << 20),
                segment_ms: Some(Limit::Unlimited),
            }
        );
    }

    #[test]
    fn zero_partitions_is_refused_rather_than_read_as_the_default() {
        let error = TopicSettings::new()
            .partitions(0)
            .to_request("t")
            .unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
    }
}
