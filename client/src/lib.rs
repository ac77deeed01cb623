//! Weir's async client (tokio): [`Producer`], [`Consumer`] and [`Admin`].
//!
//! This crate owns everything a service needs to talk to a Weir broker. A [`Cluster`] holds the
//! broker's metadata and one connection per shard; every partition's traffic goes straight to
//! the shard that owns it, so the broker forwards nothing between its cores. Invariants: every
//! queue and buffer has a named, configurable bound (`buffer_bytes_max`,
//! `inflight_requests_max`, `fetch_bytes_max`, …); no public function panics on bad input or on
//! a broker's answer, failures are typed errors ([`Error`], [`ProduceError`]) that say whether a
//! retry may help ([`Retriable`]).
//!
//! The [`Producer`] is idempotent by default ([`ProducerConfig::idempotence`], with
//! [`Acks::Leader`]): it gets a producer id from the broker and numbers each partition's batches,
//! so a batch resent after a lost response or connection is recognised by the broker and answered
//! with its original offset, never stored twice or out of order. See the `producer` module for
//! what happens when the broker reports a sequence gap or fences the producer.
//!
//! Keyed records are placed by Kafka's key hash, or by a consistent-hash ring ([`HashRing`],
//! chosen with [`ProducerConfig::partitioning`]) for topics that grow. [`DeadLetterProcessor`]
//! runs a handler over a consumer's records with bounded retries and a dead-letter topic.
//!
//! A [`Consumer`] reads either partitions it assigns itself ([`Consumer::assign`]) or its share
//! of a consumer group's partitions ([`Consumer::subscribe`]): the broker's group coordinator
//! divides the subscribed topics among the members (strategies range, round-robin and sticky,
//! [`GroupSettings`]), heartbeats keep a member in, and a rebalance (a member joins, leaves or
//! times out) makes every member commit, give its partitions up ([`RebalanceListener`]) and
//! rejoin. [`Admin::describe_group`] shows a group's members, committed offsets and lag.
//!
//! # Quickstart
//!
//! `client/examples/quickstart.rs` is the runnable version of this tour (create a topic,
//! produce, consume in a group, commit): `cargo run -p weir-client --example quickstart` with a
//! broker on 127.0.0.1:9347 (or `WEIR_BROKER=host:port`).
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use weir_client::{
//!     Admin, ClientConfig, Cluster, Consumer, ConsumerConfig, Producer, ProducerConfig,
//!     TopicSettings,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = Cluster::connect(ClientConfig::new("127.0.0.1:9347")).await?;
//! Admin::new(cluster.clone()).create_topic("events", &TopicSettings::new().partitions(4)).await?;
//!
//! let producer = Producer::new(cluster.clone(), ProducerConfig::default())?;
//! let written = producer
//!     .send("events", Some(Bytes::from("key")), Bytes::from("hello"), &[])
//!     .await?;
//! producer.close().await;
//!
//! let mut consumer = Consumer::new(cluster, ConsumerConfig::default());
//! consumer.assign("events", &[written.partition]).await?;
//! let records = consumer.poll(Duration::from_secs(1)).await?;
//! assert_eq!(records[0].value.as_deref(), Some(&b"hello"[..]));
//! # Ok(())
//! # }
//! ```

pub mod accumulator;
pub mod admin;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod dead_letter;
pub mod error;
mod fx_hash;
pub mod group;
pub mod hash_ring;
pub mod partitioner;
pub mod producer;
pub mod retry;

pub use accumulator::{Header, TopicPartition};
pub use admin::{
    Admin, GroupDeletion, GroupDescription, GroupListing, GroupMember, GroupPartitionLag,
    PartitionDescription, TopicDescription, TopicListing, TopicSettings,
};
pub use cluster::{ClientConfig, Cluster, MetadataSnapshot, TopicInfo};
pub use connection::{Connection, ConnectionConfig, PendingResponse};
pub use consumer::{ConsumedRecord, Consumer, ConsumerConfig, OffsetReset, PartitionLag, SeekTo};
pub use dead_letter::{
    CommitMode, DeadLetterConfig, DeadLetterCounters, DeadLetterError, DeadLetterProcessor,
};
pub use error::{Error, ErrorCode, ProduceError};
pub use group::{AssignmentStrategy, GroupSettings, NoRebalanceListener, RebalanceListener};
pub use hash_ring::{HashRing, RingError, VIRTUAL_NODES_DEFAULT};
pub use partitioner::{partition_for_key, Partitioning};
pub use producer::{
    Delivery, Producer, ProducerConfig, RecordMetadata, MAX_IN_FLIGHT_PER_PARTITION_LIMIT,
};
pub use retry::{Retriable, RetryPolicy};
pub use weir_proto::wire::{Acks, FlushPolicy, Limit, TopicConfig, TopicConfigOverrides, TopicId};
