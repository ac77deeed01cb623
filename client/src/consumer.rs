//! The consumer: fetches assigned partitions from their owning shards and tracks positions.
//!
//! A [`Consumer`] holds an assignment, either manual ([`Consumer::assign`]) or handed out by a
//! consumer group it subscribed to ([`Consumer::subscribe`], see [`crate::group`]), and, per
//! assigned partition, the position: the offset of the next record to hand out. [`Consumer::poll`]
//! sends one Fetch per owning shard address covering all the partitions that shard owns, with
//! long polling (`fetch_max_wait_ms`, `fetch_min_bytes`); a fetch not answered when a poll times
//! out stays in flight and serves the next poll, and a poll that returns records first starts
//! the next fetch from the advanced positions, so it overlaps the caller's processing. Invariants:
//! - at most one fetch is in flight per shard address, so in-flight fetches are bounded by the
//!   number of shards and their bytes by `fetch_bytes_max` each;
//! - records come out per partition in offset order, each once: a fetch starting inside a batch
//!   returns the whole batch, and the records before the position are skipped;
//! - a fetch answer is applied to a partition only if the partition's position still equals the
//!   offset it was fetched from, so a `seek` during a fetch is never undone by its answer;
//! - positions move only forward, past the records handed out, except by `seek`.
//!
//! - a subscribed consumer fetches only the partitions of its current generation: before it
//!   rejoins, it drops every in-flight fetch, commits (with auto-commit) and revokes.
//!
//! A manually assigned consumer commits under `group_id` with generation -1 (a simple commit,
//! which the broker accepts only while the group has no members); a subscribed one commits with
//! its generation and member id, so a commit from a stale generation is rejected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinSet;
use weir_proto::batch::{records, BatchIter, BatchLimits};
use weir_proto::wire::{
    ErrorCode, FetchPartition, FetchPartitionResult, FetchRequest, FetchResponse, JoinGroupRequest,
    LeaveGroupRequest, ListOffsetsPartition, ListOffsetsRequest, OffsetCommitPartition,
    OffsetCommitRequest, OffsetFetchPartition, OffsetFetchRequest, OffsetQuery, SyncGroupRequest,
    GENERATION_NONE, OFFSET_NONE,
};

use crate::accumulator::TopicPartition;
use crate::cluster::{ClientConfig, Cluster};
use crate::error::Error;
use crate::group::{
    heartbeat_signal, join_action, spawn_heartbeat, AbortOnDrop, GroupSettings, GroupSignal,
    HeartbeatTarget, JoinAction, NoRebalanceListener, RebalanceListener, JOIN_ATTEMPTS_MAX,
};
use crate::producer::suggests_stale_metadata;
use crate::retry::Retriable;

/// Where the consumer starts when a partition has no position and no committed offset, or when
/// its position fell out of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// Start at the first retained record.
    #[default]
    Earliest,
    /// Start after the last record: only new records are read.
    Latest,
    /// Fail the poll with [`Error::Broker`] (`offset_out_of_range`) or [`Error::InvalidArgument`].
    Fail,
}

/// How a consumer fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// The group whose committed offsets are read and written; `None` disables commits.
    pub group_id: Option<String>,
    /// The longest a fetch waits on the broker for `fetch_min_bytes` to arrive.
    pub fetch_max_wait_ms: u32,
    /// A fetch answers as soon as this many record bytes are available.
    pub fetch_min_bytes: u32,
    /// The most record bytes in one fetch answer (one shard's partitions together); capped at
    /// what one response frame of the connection's `frame_bytes_max` can carry.
    pub fetch_bytes_max: u32,
    /// The most record bytes per partition in one fetch answer (a larger first batch is still
    /// returned whole); capped like `fetch_bytes_max`.
    pub partition_fetch_bytes_max: u32,
    /// Where to start without a position or a committed offset.
    pub offset_reset: OffsetReset,
    /// How long to wait before fetching again from a shard whose fetch failed (and before a
    /// subscribed consumer joins again after a group error).
    pub retry_backoff_ms: u64,
    /// How a subscribed consumer takes part in its group (see [`Consumer::subscribe`]).
    pub group: GroupSettings,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            group_id: None,
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
            fetch_bytes_max: 8 * 1024 * 1024,
            partition_fetch_bytes_max: 1024 * 1024,
            offset_reset: OffsetReset::Earliest,
            retry_backoff_ms: 100,
            group: GroupSettings::default(),
        }
    }
}

/// Where [`Consumer::seek`] moves a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The first retained record.
    Earliest,
    /// After the last record.
    Latest,
    /// This offset.
    Offset(i64),
    /// The first record whose timestamp is at or after this many milliseconds since the Unix
    /// epoch (after the last record if there is none).
    Timestamp(i64),
}

/// One record handed out by [`Consumer::poll`]; its key, value and headers are slices of the
/// fetched bytes, not copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The topic's name.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The key, if the record has one.
    pub key: Option<Bytes>,
    /// The value, or `None` for a null value.
    pub value: Option<Bytes>,
    /// The headers, in order.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

#[derive(Debug)]
struct Assigned {
    topic: Arc<str>,
    /// The next offset to hand out, once known.
    position: Option<i64>,
    /// The partition's high watermark in the latest fetch answer, once one arrived.
    log_end: Option<i64>,
}

/// One assigned partition's lag, as [`Consumer::lag`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic's name.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The offset of the next record the consumer hands out, once known.
    pub position: Option<i64>,
    /// The end of the readable log: from the latest fetch answer, else asked with ListOffsets.
    pub log_end: i64,
    /// `log_end - position` (at least 0), or `None` while the position is unknown.
    pub lag_records: Option<i64>,
}

/// A subscribed consumer's group membership.
struct Membership {
    group_id: String,
    topics: Vec<String>,
    /// Empty until the coordinator assigned one.
    member_id: String,
    /// [`GENERATION_NONE`] while not a member of a formed generation.
    generation: i32,
    listener: Box<dyn RebalanceListener>,
    /// What the current generation's heartbeat task reported.
    signal: watch::Receiver<GroupSignal>,
    /// A membership change a commit answer reported (the heartbeat may not have seen it yet).
    forced: GroupSignal,
    heartbeat: Option<AbortOnDrop>,
    last_auto_commit: Instant,
    /// The partitions of the member's last generation, sent with the next JoinGroup so the
    /// sticky strategy can keep them.
    owned_before: Vec<weir_proto::wire::TopicPartition>,
}

impl Membership {
    fn needs(&self) -> GroupSignal {
        let reported = *self.signal.borrow();
        match (reported, self.forced) {
            (GroupSignal::Fenced, _) | (_, GroupSignal::Fenced) => GroupSignal::Fenced,
            (GroupSignal::Rejoin, _) | (_, GroupSignal::Rejoin) => GroupSignal::Rejoin,
            _ => GroupSignal::Stable,
        }
    }
}

/// A group's identity on the commits of a subscribed consumer.
#[derive(Debug, Clone)]
struct CommitIdentity {
    group_id: String,
    generation: i32,
    member_id: String,
}

/// What one in-flight fetch asked for and what came back.
struct FetchOutcome {
    address: String,
    /// The offset each partition was fetched from.
    fetched_from: HashMap<TopicPartition, i64>,
    result: Result<FetchResponse, Error>,
}

/// Reads records from assigned partitions (see the module documentation).
///
/// ```no_run
/// use std::time::Duration;
/// use weir_client::{ClientConfig, Cluster, Consumer, ConsumerConfig, SeekTo};
///
/// # async fn run() -> Result<(), weir_client::Error> {
/// let cluster = Cluster::connect(ClientConfig::new("127.0.0.1:9347")).await?;
/// let config = ConsumerConfig {
///     group_id: Some("billing".to_string()),
///     ..ConsumerConfig::default()
/// };
/// let mut consumer = Consumer::new(cluster, config);
/// consumer.assign_all("events").await?;
/// consumer.seek("events", 0, SeekTo::Earliest).await?;
/// loop {
///     let records = consumer.poll(Duration::from_secs(1)).await?;
///     for record in &records {
///         println!("{}/{} @{}: {:?}", record.topic, record.partition, record.offset, record.value);
///     }
///     consumer.commit().await?;
/// #   break;
/// }
/// # Ok(())
/// # }
/// ```
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    assignment: BTreeMap<TopicPartition, Assigned>,
    fetches: JoinSet<FetchOutcome>,
    fetching: HashSet<String>,
    /// Shards whose last fetch failed are not fetched from again before this instant.
    backoff_until: HashMap<String, Instant>,
    batch_limits: BatchLimits,
    membership: Option<Membership>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Consumer")
            .field("config", &self.config)
            .field("assignment", &self.assignment)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Creates a consumer with no assignment over a connected cluster.
    pub fn new(cluster: Arc<Cluster>, config: ConsumerConfig) -> Consumer {
        let batch_limits = BatchLimits {
            // A fetched batch is bounded by the frame that carried it.
            batch_bytes_max: cluster.config().connection.frame_bytes_max,
            records_per_batch_max: u32::MAX,
        };
        Consumer {
            cluster,
            config,
            assignment: BTreeMap::new(),
            fetches: JoinSet::new(),
            fetching: HashSet::new(),
            backoff_until: HashMap::new(),
            batch_limits,
            membership: None,
        }
    }

    /// Connects to `client.bootstrap` and creates a consumer.
    pub async fn connect(client: ClientConfig, config: ConsumerConfig) -> Result<Consumer, Error> {
        Ok(Consumer::new(Cluster::connect(client).await?, config))
    }

    /// Returns the cluster this consumer reads from.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Returns the consumer's configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Adds `partitions` of `topic` to the assignment, each without a position (the next poll
    /// starts it at the group's committed offset, else per `offset_reset`). Partitions already
    /// assigned keep their position.
    pub async fn assign(&mut self, topic: &str, partitions: &[u32]) -> Result<(), Error> {
        self.check_not_subscribed()?;
        let info = self.cluster.topic(topic).await?;
        let name: Arc<str> = Arc::from(topic);
        for &partition in partitions {
            if partition >= info.partition_count() {
                return Err(Error::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                    partitions: info.partition_count(),
                });
            }
        }
        for &partition in partitions {
            let key = TopicPartition {
                topic_id: info.topic_id,
                partition,
            };
            self.assignment.entry(key).or_insert_with(|| Assigned {
                topic: name.clone(),
                position: None,
                log_end: None,
            });
        }
        Ok(())
    }

    /// Assigns every partition of `topic`.
    pub async fn assign_all(&mut self, topic: &str) -> Result<(), Error> {
        let info = self.cluster.topic(topic).await?;
        let partitions: Vec<u32> = (0..info.partition_count()).collect();
        self.assign(topic, &partitions).await
    }

    /// Removes every partition from the assignment (of a manually assigned consumer; a
    /// subscribed one gives partitions up through its group).
    pub fn unassign_all(&mut self) {
        if self.membership.is_none() {
            self.assignment.clear();
        }
    }

    /// Subscribes to `topics` as a member of consumer group `group_id`, with no rebalance
    /// listener; see [`Consumer::subscribe_with_listener`].
    pub async fn subscribe(&mut self, group_id: &str, topics: &[&str]) -> Result<(), Error> {
        self.subscribe_with_listener(group_id, topics, NoRebalanceListener)
            .await
    }

    /// Subscribes to `topics` as a member of consumer group `group_id`. The group's coordinator
    /// divides the topics' partitions among the members (per `config.group`); the next
    /// [`Consumer::poll`] joins the group and consumes this member's share, each partition from
    /// the group's committed offset (else per `offset_reset`). When the group rebalances (a
    /// member joins, leaves or times out), a poll commits the positions (with auto-commit),
    /// calls `listener.on_partitions_revoked`, rejoins and calls
    /// `listener.on_partitions_assigned`. [`Consumer::close`] leaves the group, so the others
    /// take over at once.
    ///
    /// Fails with [`Error::InvalidArgument`] for an empty group id or topic list, settings out
    /// of bounds, or a consumer that is already assigned or subscribed, and with
    /// [`Error::UnknownTopic`] for a topic the broker does not know.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use weir_client::{ClientConfig, Consumer, ConsumerConfig, RebalanceListener};
    ///
    /// struct Log;
    /// impl RebalanceListener for Log {
    ///     fn on_partitions_assigned(&mut self, partitions: &[(Arc<str>, u32)]) {
    ///         println!("assigned {partitions:?}");
    ///     }
    ///     fn on_partitions_revoked(&mut self, partitions: &[(Arc<str>, u32)]) {
    ///         println!("revoked {partitions:?}");
    ///     }
    /// }
    ///
    /// # async fn run() -> Result<(), weir_client::Error> {
    /// let client = ClientConfig::new("127.0.0.1:9347");
    /// let mut consumer = Consumer::connect(client, ConsumerConfig::default()).await?;
    /// consumer.subscribe_with_listener("billing", &["orders"], Log).await?;
    /// for _ in 0..100 {
    ///     for record in consumer.poll(Duration::from_secs(1)).await? {
    ///         println!("{}/{} @{}", record.topic, record.partition, record.offset);
    ///     }
    /// }
    /// consumer.close().await?; // commits and leaves the group
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe_with_listener(
        &mut self,
        group_id: &str,
        topics: &[&str],
        listener: impl RebalanceListener + 'static,
    ) -> Result<(), Error> {
        if group_id.is_empty() {
            return Err(Error::InvalidArgument("the group id is empty".to_string()));
        }
        if topics.is_empty() {
            return Err(Error::InvalidArgument(
                "subscribe needs at least one topic".to_string(),
            ));
        }
        self.check_not_subscribed()?;
        if !self.assignment.is_empty() {
            return Err(Error::InvalidArgument(
                "the consumer has a manual assignment; a consumer either assigns or subscribes"
                    .to_string(),
            ));
        }
        self.config
            .group
            .validate(self.cluster.config().connection.request_timeout_ms)?;
        let mut names: Vec<String> = Vec::with_capacity(topics.len());
        for &topic in topics {
            self.cluster.topic(topic).await?;
            if !names.iter().any(|name| name == topic) {
                names.push(topic.to_string());
            }
        }
        self.config.group_id = Some(group_id.to_string());
        let (_, signal) = watch::channel(GroupSignal::Stable);
        self.membership = Some(Membership {
            group_id: group_id.to_string(),
            topics: names,
            member_id: String::new(),
            generation: GENERATION_NONE,
            listener: Box::new(listener),
            signal,
            forced: GroupSignal::Stable,
            heartbeat: None,
            last_auto_commit: Instant::now(),
            owned_before: Vec::new(),
        });
        Ok(())
    }

    /// Returns the member id the group's coordinator gave this consumer, once it joined.
    pub fn member_id(&self) -> Option<&str> {
        self.membership
            .as_ref()
            .map(|membership| membership.member_id.as_str())
            .filter(|member_id| !member_id.is_empty())
    }

    /// Returns the generation of the group this consumer consumes for, once it joined.
    pub fn generation(&self) -> Option<i32> {
        self.membership
            .as_ref()
            .map(|membership| membership.generation)
            .filter(|&generation| generation != GENERATION_NONE)
    }

    /// Commits (with auto-commit), revokes the partitions and leaves the group, so the other
    /// members rebalance at once instead of after the session timeout. A manually assigned
    /// consumer only drops its fetches. Returns the commit's error, if it failed, after leaving.
    pub async fn close(mut self) -> Result<(), Error> {
        let committed = self.give_up_partitions().await;
        let left = self.leave_group().await;
        committed.and(left)
    }

    /// Returns, per assigned partition, the log end and how far the position is behind it.
    /// The log end comes from the latest fetch answer; partitions not fetched yet are asked
    /// with ListOffsets.
    pub async fn lag(&self) -> Result<Vec<PartitionLag>, Error> {
        let unknown: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|(_, assigned)| assigned.log_end.is_none())
            .map(|(key, _)| *key)
            .collect();
        let listed = if unknown.is_empty() {
            HashMap::new()
        } else {
            list_offsets(&self.cluster, &unknown, OffsetQuery::Latest).await?
        };
        Ok(self
            .assignment
            .iter()
            .map(|(key, assigned)| {
                let log_end = assigned
                    .log_end
                    .or_else(|| listed.get(key).copied())
                    .unwrap_or(0);
                PartitionLag {
                    topic: assigned.topic.clone(),
                    partition: key.partition,
                    position: assigned.position,
                    log_end,
                    lag_records: assigned
                        .position
                        .map(|position| (log_end - position).max(0)),
                }
            })
            .collect())
    }

    /// Returns the assigned partitions as `(topic, partition)`.
    pub fn assignment(&self) -> Vec<(Arc<str>, u32)> {
        self.assignment
            .iter()
            .map(|(key, assigned)| (assigned.topic.clone(), key.partition))
            .collect()
    }

    /// Moves the position of an assigned partition; `Earliest`, `Latest` and `Timestamp` are
    /// resolved with a ListOffsets request to the owning shard.
    pub async fn seek(&mut self, topic: &str, partition: u32, to: SeekTo) -> Result<(), Error> {
        let key = self.assigned_key(topic, partition)?;
        let offset = match to {
            SeekTo::Offset(offset) if offset < 0 => {
                return Err(Error::InvalidArgument(format!(
                    "offset {offset} is negative"
                )))
            }
            SeekTo::Offset(offset) => offset,
            SeekTo::Earliest => self.list_offset(key, OffsetQuery::Earliest).await?,
            SeekTo::Latest => self.list_offset(key, OffsetQuery::Latest).await?,
            SeekTo::Timestamp(timestamp_ms) if timestamp_ms < 0 => {
                return Err(Error::InvalidArgument(format!(
                    "timestamp {timestamp_ms} is negative"
                )))
            }
            SeekTo::Timestamp(timestamp_ms) => {
                let found = self
                    .list_offset(key, OffsetQuery::Timestamp { timestamp_ms })
                    .await?;
                if found < 0 {
                    self.list_offset(key, OffsetQuery::Latest).await?
                } else {
                    found
                }
            }
        };
        if let Some(assigned) = self.assignment.get_mut(&key) {
            assigned.position = Some(offset);
        }
        Ok(())
    }

    /// Returns the position (the offset of the next record to hand out) of an assigned
    /// partition, or `None` before it is known.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        let key = self.assigned_key(topic, partition).ok()?;
        self.assignment.get(&key)?.position
    }

    /// Fetches records from the assigned partitions, waiting up to `timeout` for some to arrive.
    /// Returns an empty list when none did. Positions advance past the records returned.
    ///
    /// A subscribed consumer also does its group work here: it joins (or rejoins after a
    /// rebalance, revoking first) and auto-commits when the interval has passed; a rebalance
    /// reported while the poll waits is handled in the same poll.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, Error> {
        let deadline = Instant::now() + timeout;
        self.maintain_membership().await?;
        self.resolve_positions().await?;
        loop {
            self.start_fetches(deadline);
            let next_backoff = self.backoff_until.values().min().copied();
            let wake_at = match next_backoff {
                Some(backoff) if backoff < deadline => backoff,
                _ => deadline,
            };
            let signal = self
                .membership
                .as_mut()
                .map(|membership| &mut membership.signal);
            let outcome = tokio::select! {
                joined = self.fetches.join_next(), if !self.fetches.is_empty() => joined,
                _ = tokio::time::sleep_until(wake_at.into()) => None,
                _ = signal_changed(signal) => None,
            };
            if let Some(joined) = outcome {
                let outcome = joined.map_err(|error| Error::Protocol {
                    address: self.cluster.config().bootstrap.clone(),
                    reason: format!("fetch task failed: {error}"),
                })?;
                let records = self.apply(outcome).await?;
                if !records.is_empty() {
                    self.prefetch();
                    return Ok(records);
                }
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            self.maintain_membership().await?;
            self.resolve_positions().await?;
        }
    }

    /// Commits the position of every assigned partition that has one, under the configured
    /// group.
    pub async fn commit(&mut self) -> Result<(), Error> {
        let offsets = self.positions();
        self.commit_keys(&offsets).await
    }

    /// Commits the given offsets (`(topic, partition, next offset to consume)`) under the
    /// configured group; the partitions need not be assigned (a subscribed consumer's commit of
    /// a partition it does not own is still accepted by the coordinator while its generation is
    /// current, as in Kafka).
    pub async fn commit_offsets(&mut self, offsets: &[(&str, u32, i64)]) -> Result<(), Error> {
        let mut keys = Vec::with_capacity(offsets.len());
        for &(topic, partition, offset) in offsets {
            let info = self.cluster.topic(topic).await?;
            keys.push((
                TopicPartition {
                    topic_id: info.topic_id,
                    partition,
                },
                offset,
            ));
        }
        self.commit_keys(&keys).await
    }

    /// Returns the group's committed offset for each of `partitions` of `topic` (`None` where
    /// nothing is committed).
    pub async fn committed(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Vec<(u32, Option<i64>)>, Error> {
        let group_id = self.group_id()?;
        let info = self.cluster.topic(topic).await?;
        let keys: Vec<TopicPartition> = partitions
            .iter()
            .map(|&partition| TopicPartition {
                topic_id: info.topic_id,
                partition,
            })
            .collect();
        let committed = fetch_committed(&self.cluster, group_id, &keys).await?;
        Ok(partitions
            .iter()
            .map(|&partition| {
                let key = TopicPartition {
                    topic_id: info.topic_id,
                    partition,
                };
                (partition, committed.get(&key).copied())
            })
            .collect())
    }

    fn group_id(&self) -> Result<&str, Error> {
        self.config
            .group_id
            .as_deref()
            .ok_or_else(|| Error::InvalidArgument("the consumer has no group_id".to_string()))
    }

    fn assigned_key(&self, topic: &str, partition: u32) -> Result<TopicPartition, Error> {
        self.assignment
            .iter()
            .find(|(key, assigned)| key.partition == partition && &*assigned.topic == topic)
            .map(|(key, _)| *key)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "partition {partition} of topic \"{topic}\" is not assigned"
                ))
            })
    }

    fn check_not_subscribed(&self) -> Result<(), Error> {
        match &self.membership {
            Some(membership) => Err(Error::InvalidArgument(format!(
                "the consumer is subscribed as a member of group \"{}\"; its group assigns its partitions",
                membership.group_id
            ))),
            None => Ok(()),
        }
    }

    /// The position of every assigned partition that has one.
    fn positions(&self) -> Vec<(TopicPartition, i64)> {
        self.assignment
            .iter()
            .filter_map(|(key, assigned)| assigned.position.map(|position| (*key, position)))
            .collect()
    }

    fn commit_identity(&self) -> Result<CommitIdentity, Error> {
        let group_id = self.group_id()?.to_string();
        Ok(match &self.membership {
            Some(membership) => CommitIdentity {
                group_id,
                generation: membership.generation,
                member_id: membership.member_id.clone(),
            },
            None => CommitIdentity {
                group_id,
                generation: GENERATION_NONE,
                member_id: String::new(),
            },
        })
    }

    async fn commit_keys(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), Error> {
        let identity = self.commit_identity()?;
        if offsets.is_empty() {
            return Ok(());
        }
        if let Some(membership) = &self.membership {
            if membership.generation == GENERATION_NONE {
                return Err(Error::Broker {
                    code: ErrorCode::RebalanceInProgress,
                    message: format!(
                        "the consumer is not in a generation of group \"{}\" yet; poll to join",
                        identity.group_id
                    ),
                });
            }
        }
        let result = commit_with(&self.cluster, identity, offsets).await;
        if let (Err(Error::Broker { code, .. }), Some(membership)) =
            (&result, self.membership.as_mut())
        {
            if let Some(change) = heartbeat_signal(*code).filter(|s| *s != GroupSignal::Stable) {
                membership.forced = change;
            }
        }
        result
    }

    /// Joins or rejoins the group when needed, else auto-commits when due.
    async fn maintain_membership(&mut self) -> Result<(), Error> {
        let Some(membership) = self.membership.as_ref() else {
            return Ok(());
        };
        let needs = membership.needs();
        if membership.generation == GENERATION_NONE || needs != GroupSignal::Stable {
            return self.rebalance(needs).await;
        }
        let settings = &self.config.group;
        let due = membership.last_auto_commit.elapsed()
            >= Duration::from_millis(settings.auto_commit_interval_ms);
        if settings.auto_commit && due {
            self.auto_commit().await;
        }
        Ok(())
    }

    /// Commits the positions, logging a failure: auto-commit never fails a poll, and what it
    /// could not commit is consumed again by the partition's next owner.
    async fn auto_commit(&mut self) {
        if let Some(membership) = self.membership.as_mut() {
            membership.last_auto_commit = Instant::now();
        }
        let offsets = self.positions();
        if let Err(error) = self.commit_keys(&offsets).await {
            tracing::warn!(%error, "auto-commit failed");
        }
    }

    /// Commits (with auto-commit) and revokes every assigned partition; stops the heartbeat.
    async fn give_up_partitions(&mut self) -> Result<(), Error> {
        let Some(membership) = self.membership.as_mut() else {
            self.drop_fetches();
            return Ok(());
        };
        membership.heartbeat = None;
        let joined = membership.generation != GENERATION_NONE;
        let mut committed = Ok(());
        if joined && self.config.group.auto_commit {
            let offsets = self.positions();
            committed = self.commit_keys(&offsets).await;
            if let Err(error) = &committed {
                tracing::warn!(%error, "commit before revoking failed");
            }
        }
        let revoked = self.assignment();
        self.assignment.clear();
        self.drop_fetches();
        if let Some(membership) = self.membership.as_mut() {
            if !revoked.is_empty() {
                membership.listener.on_partitions_revoked(&revoked);
            }
            membership.generation = GENERATION_NONE;
        }
        committed
    }

    fn drop_fetches(&mut self) {
        // Dropping the set aborts its tasks; their answers are for partitions given up.
        self.fetches = JoinSet::new();
        self.fetching.clear();
        self.backoff_until.clear();
    }

    /// Sends LeaveGroup if the consumer is a member; failures are returned (the coordinator
    /// then drops the member after its session timeout).
    async fn leave_group(&mut self) -> Result<(), Error> {
        let Some(membership) = self.membership.as_mut() else {
            return Ok(());
        };
        membership.heartbeat = None;
        if membership.member_id.is_empty() {
            return Ok(());
        }
        let request = LeaveGroupRequest {
            group_id: membership.group_id.clone(),
            member_id: std::mem::take(&mut membership.member_id),
        };
        let response = self.cluster.control_request(&request).await?;
        match response.error_code {
            ErrorCode::None | ErrorCode::UnknownMemberId => Ok(()),
            code => Err(Error::Broker {
                code,
                message: format!(
                    "leave group \"{}\": {}",
                    request.group_id, response.error_message
                ),
            }),
        }
    }

    /// Revokes what the member holds and runs JoinGroup and SyncGroup until a generation
    /// forms with this member in it; then consumes its assignment.
    async fn rebalance(&mut self, needs: GroupSignal) -> Result<(), Error> {
        if let Err(error) = self.give_up_partitions().await {
            tracing::debug!(%error, "rejoining after a failed final commit");
        }
        let Some(membership) = self.membership.as_mut() else {
            return Ok(());
        };
        if needs == GroupSignal::Fenced {
            membership.member_id.clear();
        }
        membership.forced = GroupSignal::Stable;
        let mut last_error = None;
        for attempt in 0..JOIN_ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(self.config.retry_backoff_ms)).await;
            }
            match self.join_and_sync().await {
                Ok(true) => return Ok(()),
                Ok(false) => continue,
                Err(error) => {
                    if !error.is_retriable() {
                        return Err(error);
                    }
                    tracing::debug!(%error, attempt, "join failed; retrying");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Broker {
            code: ErrorCode::RebalanceInProgress,
            message: format!("no generation formed after {JOIN_ATTEMPTS_MAX} join attempts"),
        }))
    }

    /// One JoinGroup + SyncGroup round: `Ok(true)` once the member consumes its new
    /// assignment, `Ok(false)` when it must join again.
    async fn join_and_sync(&mut self) -> Result<bool, Error> {
        let Some(membership) = self.membership.as_mut() else {
            return Ok(true);
        };
        let settings = &self.config.group;
        let join = JoinGroupRequest {
            group_id: membership.group_id.clone(),
            member_id: membership.member_id.clone(),
            client_id: self.cluster.config().client_id.clone(),
            session_timeout_ms: settings.session_timeout_ms,
            rebalance_timeout_ms: settings.rebalance_timeout_ms,
            topics: membership.topics.clone(),
            strategies: settings
                .assignment_strategies
                .iter()
                .map(|strategy| strategy.name().to_string())
                .collect(),
            owned: std::mem::take(&mut membership.owned_before),
        };
        let owned_before = join.owned.clone();
        let joined = self.cluster.control_request(&join).await?;
        let membership = self.membership.as_mut().ok_or(Error::Closed)?;
        membership.owned_before = owned_before;
        if !join_step(
            membership,
            joined.error_code,
            &joined.error_message,
            "join",
            &join.group_id,
        )? {
            return Ok(false);
        }
        membership.member_id = joined.member_id.clone();
        let sync = SyncGroupRequest {
            group_id: join.group_id.clone(),
            generation: joined.generation,
            member_id: joined.member_id.clone(),
        };
        let synced = self.cluster.control_request(&sync).await?;
        let membership = self.membership.as_mut().ok_or(Error::Closed)?;
        if !join_step(
            membership,
            synced.error_code,
            &synced.error_message,
            "sync",
            &join.group_id,
        )? {
            return Ok(false);
        }
        membership.generation = joined.generation;
        membership.last_auto_commit = Instant::now();
        tracing::info!(
            group = %join.group_id,
            member = %joined.member_id,
            generation = joined.generation,
            strategy = %joined.strategy,
            partitions = synced.assignment.len(),
            "joined the group"
        );
        let mut snapshot = self.cluster.metadata();
        for entry in &synced.assignment {
            if snapshot.topic_by_id(entry.topic_id).is_none() {
                snapshot = self.cluster.refresh_metadata().await?;
                break;
            }
        }
        self.assignment.clear();
        for entry in &synced.assignment {
            let Some(topic) = snapshot.topic_by_id(entry.topic_id) else {
                tracing::warn!(
                    topic_id = entry.topic_id,
                    "assigned a partition of a topic the metadata does not know; skipping it"
                );
                continue;
            };
            self.assignment.insert(
                TopicPartition {
                    topic_id: entry.topic_id,
                    partition: entry.partition,
                },
                Assigned {
                    topic: Arc::from(topic.name.as_str()),
                    position: None,
                    log_end: None,
                },
            );
        }
        let assigned = self.assignment();
        let (sender, receiver) = watch::channel(GroupSignal::Stable);
        let target = HeartbeatTarget {
            group_id: join.group_id.clone(),
            member_id: joined.member_id.clone(),
            generation: joined.generation,
            interval: self.config.group.heartbeat_interval(),
        };
        let heartbeat = spawn_heartbeat(self.cluster.clone(), target, sender);
        let membership = self.membership.as_mut().ok_or(Error::Closed)?;
        membership.owned_before = synced
            .assignment
            .iter()
            .map(|entry| weir_proto::wire::TopicPartition {
                topic_id: entry.topic_id,
                partition: entry.partition,
            })
            .collect();
        membership.signal = receiver;
        membership.heartbeat = Some(heartbeat);
        membership.listener.on_partitions_assigned(&assigned);
        Ok(true)
    }
}

impl Drop for Consumer {
    /// A consumer dropped without [`Consumer::close`] still leaves its group, if a tokio runtime
    /// is there to send LeaveGroup, so the others need not wait out its session timeout.
    fn drop(&mut self) {
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        membership.heartbeat = None;
        if membership.member_id.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let request = LeaveGroupRequest {
            group_id: membership.group_id.clone(),
            member_id: std::mem::take(&mut membership.member_id),
        };
        let cluster = self.cluster.clone();
        runtime.spawn(async move {
            if let Err(error) = cluster.control_request(&request).await {
                tracing::debug!(%error, group = %request.group_id, "leave on drop failed");
            }
        });
    }
}

/// Waits until the heartbeat task reports a change; never, without a membership or once the
/// task has ended without one.
async fn signal_changed(signal: Option<&mut watch::Receiver<GroupSignal>>) {
    match signal {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

async fn commit_with(
    cluster: &Cluster,
    identity: CommitIdentity,
    offsets: &[(TopicPartition, i64)],
) -> Result<(), Error> {
    {
        let group_id = identity.group_id.as_str();
        let request = OffsetCommitRequest {
            group_id: group_id.to_string(),
            generation: identity.generation,
            member_id: identity.member_id,
            entries: offsets
                .iter()
                .map(|(key, offset)| OffsetCommitPartition {
                    topic_id: key.topic_id,
                    partition: key.partition,
                    offset: *offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        let response = cluster.control_request(&request).await?;
        match response
            .entries
            .into_iter()
            .find(|entry| !entry.error_code.is_none())
        {
            Some(failed) => Err(Error::Broker {
                code: failed.error_code,
                message: format!(
                    "commit of topic id {} partition {}: {}",
                    failed.topic_id, failed.partition, failed.error_message
                ),
            }),
            None => Ok(()),
        }
    }
}

impl Consumer {
    async fn list_offset(&self, key: TopicPartition, query: OffsetQuery) -> Result<i64, Error> {
        let offsets = list_offsets(&self.cluster, &[key], query).await?;
        offsets.get(&key).copied().ok_or_else(|| Error::Protocol {
            address: self.cluster.config().bootstrap.clone(),
            reason: format!(
                "the ListOffsets response has no result for topic id {} partition {}",
                key.topic_id, key.partition
            ),
        })
    }

    /// Gives every assigned partition without a position one: the group's committed offset if
    /// there is one, else the `offset_reset` policy.
    async fn resolve_positions(&mut self) -> Result<(), Error> {
        let unknown: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|(_, assigned)| assigned.position.is_none())
            .map(|(key, _)| *key)
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut resolved = HashMap::new();
        if let Some(group_id) = self.config.group_id.as_deref() {
            resolved = fetch_committed(&self.cluster, group_id, &unknown).await?;
        }
        let remaining: Vec<TopicPartition> = unknown
            .iter()
            .filter(|key| !resolved.contains_key(key))
            .copied()
            .collect();
        if !remaining.is_empty() {
            let query = match self.config.offset_reset {
                OffsetReset::Earliest => OffsetQuery::Earliest,
                OffsetReset::Latest => OffsetQuery::Latest,
                OffsetReset::Fail => {
                    return Err(Error::InvalidArgument(format!(
                        "{} assigned partitions have no position, no committed offset, and offset_reset is Fail",
                        remaining.len()
                    )))
                }
            };
            resolved.extend(list_offsets(&self.cluster, &remaining, query).await?);
        }
        for (key, offset) in resolved {
            if let Some(assigned) = self.assignment.get_mut(&key) {
                assigned.position.get_or_insert(offset);
            }
        }
        Ok(())
    }

    /// Starts the next fetches from the positions just advanced, before the records go to the
    /// caller: the round trip then overlaps the caller's processing instead of following it.
    /// Each waits up to `fetch_max_wait_ms` on the broker; the next `poll` takes its answer
    /// (an answer for a position the caller moved away from with `seek` is dropped).
    fn prefetch(&mut self) {
        let wait = Duration::from_millis(u64::from(self.config.fetch_max_wait_ms));
        self.start_fetches(Instant::now() + wait);
    }

    /// Starts a fetch to every owning shard address that has none in flight and is not backing
    /// off, covering the assigned partitions it owns that have a position.
    fn start_fetches(&mut self, deadline: Instant) {
        let now = Instant::now();
        self.backoff_until.retain(|_, until| *until > now);
        let snapshot = self.cluster.metadata();
        let mut by_address: HashMap<String, Vec<FetchPartition>> = HashMap::new();
        for (key, assigned) in &self.assignment {
            let Some(position) = assigned.position else {
                continue;
            };
            let Some(address) = snapshot.owner_address(key.topic_id, key.partition) else {
                continue;
            };
            if self.fetching.contains(address) || self.backoff_until.contains_key(address) {
                continue;
            }
            by_address
                .entry(address.to_string())
                .or_default()
                .push(FetchPartition {
                    topic_id: key.topic_id,
                    partition: key.partition,
                    fetch_offset: position,
                    partition_max_bytes: self.config.partition_fetch_bytes_max,
                });
        }
        let frame_bytes_max = self.cluster.config().connection.frame_bytes_max;
        let remaining_ms = deadline.saturating_duration_since(now).as_millis();
        let max_wait_ms = (remaining_ms.min(u128::from(self.config.fetch_max_wait_ms))) as u32;
        for (address, mut entries) in by_address {
            // An answer larger than the connection's frame limit could never be read (the
            // connection would fail and the fetch be retried for ever): ask for at most what
            // one frame carries besides the answer's framing.
            let room = fetch_room_bytes(frame_bytes_max, entries.len());
            for entry in &mut entries {
                entry.partition_max_bytes = entry.partition_max_bytes.min(room);
            }
            let fetched_from = entries
                .iter()
                .map(|entry| {
                    let key = TopicPartition {
                        topic_id: entry.topic_id,
                        partition: entry.partition,
                    };
                    (key, entry.fetch_offset)
                })
                .collect();
            let request = FetchRequest {
                max_wait_ms,
                min_bytes: self.config.fetch_min_bytes,
                max_bytes: self.config.fetch_bytes_max.min(room),
                entries,
            };
            let cluster = self.cluster.clone();
            self.fetching.insert(address.clone());
            self.fetches.spawn(async move {
                let result = match cluster.connection(&address).await {
                    Ok(connection) => connection.request(&request).await,
                    Err(error) => Err(error),
                };
                FetchOutcome {
                    address,
                    fetched_from,
                    result,
                }
            });
        }
    }

    /// Turns one fetch answer into records, advancing positions; handles per-partition errors.
    async fn apply(&mut self, outcome: FetchOutcome) -> Result<Vec<ConsumedRecord>, Error> {
        self.fetching.remove(&outcome.address);
        let response = match outcome.result {
            Ok(response) => response,
            Err(error) if error.is_retriable() => {
                self.back_off(&outcome.address, &error).await;
                return Ok(Vec::new());
            }
            Err(error) => return Err(error),
        };
        let mut records = Vec::new();
        let mut stale_metadata = None;
        for entry in response.entries {
            let key = TopicPartition {
                topic_id: entry.topic_id,
                partition: entry.partition,
            };
            let Some(&fetched_from) = outcome.fetched_from.get(&key) else {
                continue;
            };
            let Some(assigned) = self.assignment.get_mut(&key) else {
                continue;
            };
            if assigned.position != Some(fetched_from) {
                // Seeked while the fetch was in flight: this answer is for an old position.
                continue;
            }
            if !entry.error_code.is_none() {
                match handle_partition_error(assigned, &entry, self.config.offset_reset)? {
                    PartitionErrorAction::Reset => {}
                    PartitionErrorAction::Retry(error) => stale_metadata = Some(error),
                }
                continue;
            }
            let topic = assigned.topic.clone();
            let position = decode_records(
                &entry,
                fetched_from,
                &topic,
                &self.batch_limits,
                &mut records,
            )
            .map_err(|reason| Error::Protocol {
                address: outcome.address.clone(),
                reason,
            })?;
            assigned.position = Some(position);
            assigned.log_end = Some(entry.high_watermark);
        }
        if let Some(error) = stale_metadata {
            self.back_off(&outcome.address, &error).await;
        }
        Ok(records)
    }

    async fn back_off(&mut self, address: &str, error: &Error) {
        tracing::debug!(%error, address, "fetch failed; backing off");
        let until = Instant::now() + Duration::from_millis(self.config.retry_backoff_ms);
        self.backoff_until.insert(address.to_string(), until);
        if suggests_stale_metadata(error) {
            if let Err(refresh_error) = self.cluster.refresh_metadata().await {
                tracing::debug!(%refresh_error, "metadata refresh after a failed fetch failed");
            }
        }
    }
}

/// What a JoinGroup or SyncGroup answer (`step`) means for the join loop: `Ok(true)` to go on,
/// `Ok(false)` to join again (as a new member if the coordinator no longer knows this one), or
/// the error that ends it.
fn join_step(
    membership: &mut Membership,
    code: ErrorCode,
    message: &str,
    step: &str,
    group: &str,
) -> Result<bool, Error> {
    match join_action(code) {
        JoinAction::Proceed => Ok(true),
        JoinAction::Retry => Ok(false),
        JoinAction::RetryAsNewMember => {
            membership.member_id.clear();
            Ok(false)
        }
        JoinAction::Fail => Err(Error::Broker {
            code,
            message: format!("{step} group \"{group}\": {message}"),
        }),
    }
}

/// Bytes of a fetch answer's framing allowed for besides its records: the frame and response
/// headers, plus this much per partition entry (its fields, and an error message if any).
const FETCH_ANSWER_FRAMING_BYTES: u32 = 64 * 1024;
/// Per partition entry; see [`FETCH_ANSWER_FRAMING_BYTES`].
const FETCH_ANSWER_ENTRY_FRAMING_BYTES: u32 = 1024;

/// The most record bytes a fetch of `entries` partitions may ask for so that the answer fits a
/// frame of `frame_bytes_max` bytes (at least one byte: the broker still returns a first batch
/// whole).
fn fetch_room_bytes(frame_bytes_max: u32, entries: usize) -> u32 {
    let entries = u32::try_from(entries).unwrap_or(u32::MAX);
    let framing = FETCH_ANSWER_FRAMING_BYTES
        .saturating_add(entries.saturating_mul(FETCH_ANSWER_ENTRY_FRAMING_BYTES));
    frame_bytes_max.saturating_sub(framing).max(1)
}

enum PartitionErrorAction {
    /// The position was cleared and is resolved again on the next poll.
    Reset,
    /// Fetch again after a backoff.
    Retry(Error),
}

fn handle_partition_error(
    assigned: &mut Assigned,
    entry: &FetchPartitionResult,
    offset_reset: OffsetReset,
) -> Result<PartitionErrorAction, Error> {
    let error = Error::Broker {
        code: entry.error_code,
        message: format!(
            "fetch of partition {} of topic \"{}\": {}",
            entry.partition, assigned.topic, entry.error_message
        ),
    };
    if entry.error_code == ErrorCode::OffsetOutOfRange && offset_reset != OffsetReset::Fail {
        tracing::info!(topic = %assigned.topic, partition = entry.partition, ?offset_reset, "position out of range; resetting");
        assigned.position = None;
        return Ok(PartitionErrorAction::Reset);
    }
    if error.is_retriable() {
        return Ok(PartitionErrorAction::Retry(error));
    }
    Err(error)
}

/// Appends the records of `entry` at or after `position` to `out` and returns the new position:
/// after the last whole batch read (a trailing partial batch is left for the next fetch).
fn decode_records(
    entry: &FetchPartitionResult,
    position: i64,
    topic: &Arc<str>,
    limits: &BatchLimits,
    out: &mut Vec<ConsumedRecord>,
) -> Result<i64, String> {
    let bytes = entry.records.to_contiguous();
    let mut next_position = position;
    for batch in BatchIter::new_with_record_walk(&bytes, limits) {
        let (info, batch_bytes) = batch.map_err(|error| {
            format!(
                "corrupt batch in partition {} of topic \"{topic}\": {error}",
                entry.partition
            )
        })?;
        if info.last_offset() < next_position {
            continue;
        }
        let iter = records(batch_bytes).map_err(|error| error.to_string())?;
        for record in iter {
            let record = record.map_err(|error| error.to_string())?;
            if record.offset < next_position {
                continue;
            }
            let mut headers = Vec::new();
            for header in record.headers {
                let (key, value) = header.map_err(|error| error.to_string())?;
                headers.push((
                    bytes.slice_ref(key),
                    value.map(|value| bytes.slice_ref(value)),
                ));
            }
            out.push(ConsumedRecord {
                topic: topic.clone(),
                partition: entry.partition,
                offset: record.offset,
                timestamp_ms: record.timestamp,
                key: record.key.map(|key| bytes.slice_ref(key)),
                value: record.value.map(|value| bytes.slice_ref(value)),
                headers,
            });
        }
        next_position = info.last_offset() + 1;
    }
    Ok(next_position)
}

/// Looks up `query` for each partition with one ListOffsets request per owning shard.
async fn list_offsets(
    cluster: &Cluster,
    keys: &[TopicPartition],
    query: OffsetQuery,
) -> Result<HashMap<TopicPartition, i64>, Error> {
    let mut by_address: HashMap<String, Vec<ListOffsetsPartition>> = HashMap::new();
    for key in keys {
        let address = cluster.owner_address(key.topic_id, key.partition)?;
        by_address
            .entry(address)
            .or_default()
            .push(ListOffsetsPartition {
                topic_id: key.topic_id,
                partition: key.partition,
                query,
            });
    }
    let mut offsets = HashMap::with_capacity(keys.len());
    for (address, entries) in by_address {
        let request = ListOffsetsRequest { entries };
        let response = crate::retry::with_retries(
            &cluster.config().retry,
            || async {
                let connection = cluster.connection(&address).await?;
                connection.request(&request).await
            },
            |error| {
                let stale = suggests_stale_metadata(error);
                async move {
                    if stale {
                        let _ = cluster.refresh_metadata().await;
                    }
                }
            },
        )
        .await?;
        for entry in response.entries {
            if !entry.error_code.is_none() {
                return Err(Error::Broker {
                    code: entry.error_code,
                    message: format!(
                        "list offsets of topic id {} partition {}: {}",
                        entry.topic_id, entry.partition, entry.error_message
                    ),
                });
            }
            let key = TopicPartition {
                topic_id: entry.topic_id,
                partition: entry.partition,
            };
            offsets.insert(key, entry.offset);
        }
    }
    Ok(offsets)
}

/// Reads the group's committed offsets for `keys`; partitions without one are left out.
async fn fetch_committed(
    cluster: &Cluster,
    group_id: &str,
    keys: &[TopicPartition],
) -> Result<HashMap<TopicPartition, i64>, Error> {
    let request = OffsetFetchRequest {
        group_id: group_id.to_string(),
        entries: keys
            .iter()
            .map(|key| OffsetFetchPartition {
                topic_id: key.topic_id,
                partition: key.partition,
            })
            .collect(),
    };
    let response = cluster.control_request(&request).await?;
    if !response.error_code.is_none() && response.error_code != ErrorCode::UnknownGroup {
        return Err(Error::Broker {
            code: response.error_code,
            message: response.error_message,
        });
    }
    let mut committed = HashMap::new();
    for entry in response.entries {
        if !entry.error_code.is_none() {
            return Err(Error::Broker {
                code: entry.error_code,
                message: format!(
                    "committed offset of topic id {} partition {}: {}",
                    entry.topic_id, entry.partition, entry.error_message
                ),
            });
        }
        if entry.offset != OFFSET_NONE {
            let key = TopicPartition {
                topic_id: entry.topic_id,
                partition: entry.partition,
            };
            committed.insert(key, entry.offset);
        }
    }
    Ok(committed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_asks_for_no_more_than_its_answer_frame_carries() {
        let frame = 16 << 20;
        assert_eq!(
            fetch_room_bytes(frame, 1),
            frame - FETCH_ANSWER_FRAMING_BYTES - FETCH_ANSWER_ENTRY_FRAMING_BYTES
        );
        assert!(fetch_room_bytes(frame, 1_000) < fetch_room_bytes(frame, 1));
        // Framing larger than the frame still asks for a byte: the first batch comes whole.
        assert_eq!(fetch_room_bytes(4096, 10), 1);
        assert_eq!(fetch_room_bytes(frame, usize::MAX), 1);
    }
}
