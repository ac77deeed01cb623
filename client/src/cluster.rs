//! The client's view of a broker: its metadata and one connection per shard address.
//!
//! [`Cluster`] owns the metadata cache (shards with their direct addresses; topics with their
//! ids, partition counts and each partition's owner shard) and the connections. Requests for a
//! partition go to the connection of the shard that owns it, so a client that follows this
//! metadata causes no cross-shard forwarding on the broker. Invariants:
//! - the cache is an immutable snapshot behind an `Arc`, replaced whole by a refresh, so a reader
//!   never sees half of one answer and half of another;
//! - every refresh gives the new snapshot the next [`Cluster::metadata_generation`], published
//!   after the snapshot, so a value derived from a snapshot of generation `g` (a producer's
//!   cached topic) is current for as long as the cluster's generation is still `g`;
//! - at most one metadata refresh runs at a time; callers that asked while it ran take its
//!   result instead of starting another;
//! - the cache is refreshed when a caller reports a retriable error (unknown topic or partition,
//!   not the owner, a lost connection) and every `metadata_max_age_ms` by a background task that
//!   stops once the cluster is dropped;
//! - a failed connection is replaced by a new one on next use, never reused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use weir_proto::wire::{
    ApiVersionsRequest, MetadataRequest, MetadataResponse, Priority, RequestMessage, TopicConfig,
    TopicId, WireMessage,
};

use crate::connection::{Connection, ConnectionConfig};
use crate::error::Error;
use crate::retry::RetryPolicy;

/// The broker address used when none is given.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9347";

/// How a client reaches the broker and how it treats failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The address (`host:port`) asked for metadata; any shard's address or the shared port.
    pub bootstrap: String,
    /// The client id declared on every connection (for the broker's quotas and logs).
    pub client_id: String,
    /// Limits and timeouts of each connection.
    pub connection: ConnectionConfig,
    /// The metadata cache is refreshed at least this often.
    pub metadata_max_age_ms: u64,
    /// How control-plane requests (metadata, admin, offsets) are retried.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// A configuration with default limits that bootstraps from `bootstrap`.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            ..Self::default()
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bootstrap: DEFAULT_BOOTSTRAP.to_string(),
            client_id: String::new(),
            connection: ConnectionConfig::default(),
            metadata_max_age_ms: 60_000,
            retry: RetryPolicy::default(),
        }
    }
}

/// One topic as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// The topic's id, which addresses it on the data path.
    pub topic_id: TopicId,
    /// The topic's configuration, when the broker sent it.
    pub config: Option<TopicConfig>,
    /// The owner shard of each partition, indexed by partition number.
    pub owner_shards: Vec<u32>,
}

impl TopicInfo {
    /// Returns the number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.owner_shards.len() as u32
    }
}

/// One metadata answer, as the cache holds it.
#[derive(Debug, Clone)]
pub struct MetadataSnapshot {
    /// The direct address of each shard, indexed by shard number.
    pub shard_addresses: Vec<String>,
    topics_by_name: HashMap<String, Arc<TopicInfo>>,
    topics_by_id: HashMap<TopicId, Arc<TopicInfo>>,
    refreshed_at: Option<Instant>,
    generation: u64,
}

impl MetadataSnapshot {
    fn empty() -> Self {
        Self {
            shard_addresses: Vec::new(),
            topics_by_name: HashMap::new(),
            topics_by_id: HashMap::new(),
            refreshed_at: None,
            generation: 0,
        }
    }

    /// Builds a snapshot from a Metadata response received at `refreshed_at`; topics the
    /// broker answered with an error are left out.
    pub fn from_response(response: MetadataResponse, refreshed_at: Instant) -> Self {
        let mut shard_addresses = vec![String::new(); response.shards.len()];
        for shard in response.shards {
            if let Some(slot) = shard_addresses.get_mut(shard.shard as usize) {
                *slot = shard.address;
            }
        }
        let mut topics_by_name = HashMap::with_capacity(response.topics.len());
        let mut topics_by_id = HashMap::with_capacity(response.topics.len());
        for topic in response.topics {
            if !topic.error_code.is_none() {
                continue;
            }
            let mut owner_shards = vec![0; topic.partitions.len()];
            for partition in &topic.partitions {
                if let Some(slot) = owner_shards.get_mut(partition.partition as usize) {
                    *slot = partition.owner_shard;
                }
            }
            let info = Arc::new(TopicInfo {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
                config: topic.config,
                owner_shards,
            });
            topics_by_id.insert(topic.topic_id, info.clone());
            topics_by_name.insert(topic.name, info);
        }
        Self {
            shard_addresses,
            topics_by_name,
            topics_by_id,
            refreshed_at: Some(refreshed_at),
            generation: 0,
        }
    }

    /// Returns the [`Cluster::metadata_generation`] this snapshot was published under (0 for a
    /// snapshot no cluster published).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Returns the topic named `name`, if the snapshot has it.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicInfo>> {
        self.topics_by_name.get(name)
    }

    /// Returns the topic with id `topic_id`, if the snapshot has it.
    pub fn topic_by_id(&self, topic_id: TopicId) -> Option<&Arc<TopicInfo>> {
        self.topics_by_id.get(&topic_id)
    }

    /// Returns the direct address of the shard owning `partition` of `topic_id`, if known.
    pub fn owner_address(&self, topic_id: TopicId, partition: u32) -> Option<&str> {
        let topic = self.topics_by_id.get(&topic_id)?;
        let shard = *topic.owner_shards.get(partition as usize)?;
        self.shard_addresses
            .get(shard as usize)
            .map(String::as_str)
            .filter(|address| !address.is_empty())
    }
}

/// Metadata cache and connections to one broker (see the module documentation).
pub struct Cluster {
    config: ClientConfig,
    metadata: RwLock<Arc<MetadataSnapshot>>,
    /// The generation of the snapshot in `metadata`, stored after the snapshot.
    generation: AtomicU64,
    connections: tokio::sync::Mutex<HashMap<String, Connection>>,
    refresh_gate: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Cluster")
            .field("bootstrap", &self.config.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the bootstrap address, loads the metadata, and starts the periodic refresh.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>, Error> {
        let cluster = Arc::new(Cluster {
            config,
            metadata: RwLock::new(Arc::new(MetadataSnapshot::empty())),
            generation: AtomicU64::new(0),
            connections: tokio::sync::Mutex::new(HashMap::new()),
            refresh_gate: tokio::sync::Mutex::new(()),
        });
        cluster.refresh_metadata().await?;
        tokio::spawn(refresh_periodically(
            Arc::downgrade(&cluster),
            Duration::from_millis(cluster.config.metadata_max_age_ms.max(1)),
        ));
        Ok(cluster)
    }

    /// Returns the configuration the cluster was connected with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Returns the current metadata snapshot.
    pub fn metadata(&self) -> Arc<MetadataSnapshot> {
        match self.metadata.read() {
            Ok(snapshot) => snapshot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Returns the generation of the metadata snapshot in force: it grows by one with every
    /// refresh (a refresh that found nothing new included). Anything derived from a snapshot of
    /// generation `g` is current while this still returns `g`; one atomic load, so a per-record
    /// cache can check it.
    pub fn metadata_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reloads the metadata from the broker, unless a refresh that started after this call
    /// already did; returns the snapshot in force afterwards.
    pub async fn refresh_metadata(&self) -> Result<Arc<MetadataSnapshot>, Error> {
        let requested = Instant::now();
        let _gate = self.refresh_gate.lock().await;
        let current = self.metadata();
        if current.refreshed_at.is_some_and(|at| at >= requested) {
            return Ok(current);
        }
        let connection = self.connection(&self.config.bootstrap).await?;
        let response = connection
            .request(&MetadataRequest { topics: Vec::new() })
            .await?;
        let mut snapshot = MetadataSnapshot::from_response(response, Instant::now());
        // Refreshes are serialized by the gate, so the generation grows by one per snapshot.
        snapshot.generation = current.generation + 1;
        let snapshot = Arc::new(snapshot);
        match self.metadata.write() {
            Ok(mut slot) => *slot = snapshot.clone(),
            Err(poisoned) => *poisoned.into_inner() = snapshot.clone(),
        }
        // After the snapshot: whoever sees the new generation reads the new snapshot.
        self.generation
            .store(snapshot.generation, Ordering::Release);
        tracing::debug!(
            shards = snapshot.shard_addresses.len(),
            topics = snapshot.topics_by_name.len(),
            "metadata refreshed"
        );
        Ok(snapshot)
    }

    /// Returns the topic named `name`, refreshing the metadata once if the cache does not know
    /// it; fails with [`Error::UnknownTopic`] if the broker does not know it either.
    pub async fn topic(&self, name: &str) -> Result<Arc<TopicInfo>, Error> {
        if let Some(topic) = self.metadata().topic(name) {
            return Ok(topic.clone());
        }
        let snapshot = self.refresh_metadata().await?;
        snapshot
            .topic(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic {
                topic: name.to_string(),
            })
    }

    /// Returns the connection to the shard that owns `partition` of `topic_id`.
    pub async fn owner_connection(
        &self,
        topic_id: TopicId,
        partition: u32,
    ) -> Result<Connection, Error> {
        let address = self.owner_address(topic_id, partition)?;
        self.connection(&address).await
    }

    /// Returns the direct address of the shard that owns `partition` of `topic_id`, per the
    /// cached metadata.
    pub fn owner_address(&self, topic_id: TopicId, partition: u32) -> Result<String, Error> {
        let snapshot = self.metadata();
        if let Some(address) = snapshot.owner_address(topic_id, partition) {
            return Ok(address.to_string());
        }
        match snapshot.topic_by_id(topic_id) {
            Some(topic) if partition >= topic.partition_count() => Err(Error::UnknownPartition {
                topic: topic.name.clone(),
                partition,
                partitions: topic.partition_count(),
            }),
            Some(_) => Err(Error::Protocol {
                address: self.config.bootstrap.clone(),
                reason: format!("metadata names no address for the owner of topic id {topic_id} partition {partition}"),
            }),
            None => Err(Error::UnknownTopic {
                topic: format!("id {topic_id}"),
            }),
        }
    }

    /// Returns the connection to the bootstrap address, for requests any shard can answer.
    pub async fn bootstrap_connection(&self) -> Result<Connection, Error> {
        self.connection(&self.config.bootstrap).await
    }

    /// Returns a live connection to `address`, opening one (with the ApiVersions handshake) if
    /// there is none or the previous one failed.
    pub async fn connection(&self, address: &str) -> Result<Connection, Error> {
        let mut connections = self.connections.lock().await;
        if let Some(connection) = connections.get(address) {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
        }
        let connection = Connection::connect(address, self.config.connection).await?;
        connection
            .request(&ApiVersionsRequest {
                client_id: self.config.client_id.clone(),
                client_software: concat!("weir-client/", env!("CARGO_PKG_VERSION")).to_string(),
            })
            .await?;
        connections.insert(address.to_string(), connection.clone());
        Ok(connection)
    }

    /// Sends `request` to the bootstrap connection, retrying retriable failures per the
    /// client's retry policy (refreshing nothing: control requests go to any shard).
    pub async fn control_request<R>(&self, request: &R) -> Result<R::Response, Error>
    where
        R: RequestMessage,
    {
        crate::retry::with_retries(
            &self.config.retry,
            || async {
                let connection = self.bootstrap_connection().await?;
                connection.request(request).await
            },
            |_| async {},
        )
        .await
    }
}

impl Connection {
    /// Sends a typed request and decodes its typed response.
    pub async fn request<R>(&self, request: &R) -> Result<R::Response, Error>
    where
        R: RequestMessage,
    {
        let frame = self
            .call(R::API_KEY, |correlation_id, chunks| {
                let mut scratch = BytesMut::new();
                request.encode_frame_chunks(correlation_id, Priority::Normal, &mut scratch, chunks)
            })
            .await?;
        <R::Response as WireMessage>::decode(&frame.body, frame.header.api_version()).map_err(
            |error| Error::Protocol {
                address: self.address().to_string(),
                reason: format!("cannot decode the {} response: {error}", R::API_KEY),
            },
        )
    }
}

async fn refresh_periodically(cluster: Weak<Cluster>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; the metadata was just loaded.
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        if let Err(error) = cluster.refresh_metadata().await {
            tracing::warn!(%error, "periodic metadata refresh failed");
        }
    }
}
