//! The producer: batches records per partition and sends them to the owning shards.
//!
//! [`Producer::send`] (or [`Producer::enqueue`]) reserves the record's bytes in the bounded
//! buffer, picks its partition (by [`ProducerConfig::partitioning`] — Kafka's key hash or a
//! consistent-hash ring — or the sticky partition for keyless records) and
//! appends it straight into that partition's open batch. A background sender task drains the
//! batches that are ready (full, lingered, or flushed), groups them by the address of the shard
//! that owns each partition into Produce requests of at most `request_bytes_max` bytes, and keeps
//! several requests in flight per connection (up to `inflight_requests_max`).
//!
//! The topic's id and partition count come from a per-producer cache keyed by topic name and
//! tied to [`Cluster::metadata_generation`]: every metadata refresh empties it, so a record is
//! placed with the partition count of the cluster's current snapshot, as if looked up there,
//! without a name lookup in the snapshot per record.
//!
//! Ordering: each partition has up to [`ProducerConfig::max_in_flight_per_partition`] batches in
//! flight (5 by default, like Kafka's `max.in.flight.requests.per.connection` with idempotence),
//! so a partition does not wait a round trip (and, under `flush=always`, a sync) per batch. The
//! requests for one owner are written to its connection in the order their batches were
//! drained, so the broker receives a partition's batches in order, and batches complete in that
//! order (an acknowledgement that overtakes an older batch of its partition is held until the
//! older one completes). A batch that fails with a retriable error goes back into its partition's
//! queue, in order, after a jittered backoff; the partition's later batches in flight then come
//! back too (a lost connection fails them all; an idempotent broker answers them
//! `out_of_order_sequence`, because the failed batch is missing before them, which is not an
//! error here but a retry), and once none is on the wire the batches are sent again in their
//! original order with their original sequences. Only an `out_of_order_sequence` for the oldest
//! outstanding batch of a partition is a real sequence gap (handled below). When a batch fails for
//! good and the epoch is bumped, batches already sent under the old epoch that come back for a
//! resend (its partition's later ones, or retries of other partitions) fail too, with
//! `out_of_order_sequence`, instead of being resent: their first send may have been stored, and
//! under a new epoch the broker could not recognise the resend.
//!
//! Without idempotence a retried batch could land after a later batch that was stored, so a
//! producer that is not idempotent keeps one batch in flight per partition whatever
//! `max_in_flight_per_partition` says (Kafka instead documents the reordering risk): retries
//! never reorder a partition, at the price of one round trip per batch per partition.
//!
//! Idempotence ([`ProducerConfig::idempotence`], on by default, like Kafka's
//! `enable.idempotence=true`): before its first batch the producer gets a producer id and epoch
//! (InitProducerId), and when a batch is first sent it is stamped with them and with its
//! partition's next sequence number. A retry resends the identical bytes, so after a lost response
//! or connection the broker recognises the batch and answers with its original offset instead of
//! storing it twice: every record is written exactly once, in send order. When a batch fails for
//! good, its partition's sequences are kept consistent with the broker: after a refusal that stored
//! nothing (an error code in the produce result, such as `message_too_large`) the next batch reuses
//! its sequence numbers; after an outcome the producer cannot know (a timeout, a lost connection,
//! the delivery timeout) or a sequence refusal (`out_of_order_sequence`, `unknown_producer_id`: the
//! broker lost or never had the producer's state), the producer bumps its epoch before sending
//! anything else, which restarts every partition's sequences at 0; the failed batch's records fail
//! with that error rather than be reordered. `invalid_producer_epoch` means another producer
//! instance with the same id fenced this one: it is fatal, every later send fails with it. Kafka
//! requires `acks=all` for idempotence; Weir has one copy of each partition, so [`Acks::Leader`] is
//! that; with [`Acks::None`] no answer comes back and the producer is not idempotent. A broker that
//! does not know InitProducerId answers `unknown_api_key`, which fails every send: turn
//! `idempotence` off for it. Without idempotence, a retry after a lost response can write a batch twice; it
//! never writes batches out of order.
//!
//! Memory: every accepted record holds its size in the buffer (`buffer_bytes_max`) until its
//! batch is acknowledged or failed; when the buffer is full, `send` waits (at most
//! `block_ms_max`) or, with `block_on_full = false`, fails at once with
//! [`ProduceError::BufferFull`].
//!
//! Failure: a batch is retried while its error is retriable, its retries last, and less than
//! `delivery_timeout_ms` has passed since it was opened; then every record in it fails with the
//! same error. Dropping the producer without [`Producer::close`] still delivers what it holds,
//! in the background.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use weir_proto::batch::set_producer;
use weir_proto::wire::{
    Acks, ApiKey, ErrorCode, InitProducerIdRequest, Priority, ProducePartition, ProduceRequest,
    ProduceResponse, RequestMessage, TopicId,
};

use crate::accumulator::{
    record_bytes_estimate, Accumulator, BatchOutcome, BatchingConfig, BufferPool, Header,
    ProducerStamp, ReadyBatch, TopicPartition, BATCH_HEADER_BYTES,
};
use crate::cluster::{ClientConfig, Cluster};
use crate::connection::PendingResponse;
use crate::error::{Error, ProduceError};
use crate::fx_hash::FxHashMap;
use crate::partitioner::Partitioning;
use crate::retry::{Retriable, RetryPolicy};

/// How a producer batches, bounds its memory, and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerConfig {
    /// How long a partition's open batch waits for more records before it is sent.
    pub linger_ms: u64,
    /// The largest batch in bytes, header included; a larger record is refused.
    pub batch_bytes_max: u64,
    /// The most bytes of records held by the producer (buffered or in flight).
    pub buffer_bytes_max: u64,
    /// The largest Produce request, in record bytes (batches of several partitions share one).
    pub request_bytes_max: u64,
    /// The most Produce requests in flight on one connection.
    pub inflight_requests_max: usize,
    /// When the broker acknowledges: after the owner appended the batch durably
    /// ([`Acks::Leader`]), or never ([`Acks::None`]: records resolve with offset -1 once sent).
    pub acks: Acks,
    /// The most retries of one batch.
    pub retries_max: u32,
    /// The backoff ceiling before a batch's first retry; it doubles with each retry.
    pub retry_backoff_ms_initial: u64,
    /// The largest backoff ceiling.
    pub retry_backoff_ms_max: u64,
    /// How long after its batch opened a record may still be retried; then it fails.
    pub delivery_timeout_ms: u64,
    /// How long the broker may take to make a batch durable before answering a timeout.
    pub request_timeout_ms: u64,
    /// When the buffer is full: wait for room (true) or fail at once (false).
    pub block_on_full: bool,
    /// The longest `send` waits for room in a full buffer.
    pub block_ms_max: u64,
    /// How keyed records are placed: Kafka's key hash (the default) or a consistent-hash ring.
    /// Keyless records use the sticky partitioner either way.
    pub partitioning: Partitioning,
    /// Whether the producer is idempotent (default true): retries never duplicate a batch. Needs
    /// [`Acks::Leader`]; ignored with [`Acks::None`].
    pub idempotence: bool,
    /// The most batches of one partition in flight at once (default 5, like Kafka's
    /// `max.in.flight.requests.per.connection`); 1 to [`MAX_IN_FLIGHT_PER_PARTITION_LIMIT`]
    /// when the producer is idempotent. A producer that is not idempotent always uses 1, so a
    /// retry cannot reorder a partition.
    pub max_in_flight_per_partition: usize,
}

/// The largest [`ProducerConfig::max_in_flight_per_partition`] an idempotent producer accepts:
/// the broker remembers the last 5 batches of each producer and partition to recognise a
/// retried one as a duplicate, as Kafka does.
pub const MAX_IN_FLIGHT_PER_PARTITION_LIMIT: usize = 5;

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger_ms: 5,
            batch_bytes_max: 256 * 1024,
            buffer_bytes_max: 64 * 1024 * 1024,
            request_bytes_max: 4 * 1024 * 1024,
            inflight_requests_max: 8,
            acks: Acks::Leader,
            retries_max: 20,
            retry_backoff_ms_initial: 50,
            retry_backoff_ms_max: 2_000,
            delivery_timeout_ms: 120_000,
            request_timeout_ms: 30_000,
            block_on_full: true,
            block_ms_max: 60_000,
            partitioning: Partitioning::KeyHash,
            idempotence: true,
            max_in_flight_per_partition: MAX_IN_FLIGHT_PER_PARTITION_LIMIT,
        }
    }
}

impl ProducerConfig {
    /// Whether batches carry producer ids and sequences: idempotence with acknowledgements.
    pub fn is_idempotent(&self) -> bool {
        self.idempotence && self.acks.expects_response()
    }

    /// The batches of one partition in flight at once: `max_in_flight_per_partition` when
    /// idempotent, else 1.
    pub fn effective_in_flight_per_partition(&self) -> usize {
        if self.is_idempotent() {
            self.max_in_flight_per_partition
        } else {
            1
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries_max: self.retries_max,
            backoff_ms_initial: self.retry_backoff_ms_initial,
            backoff_ms_max: self.retry_backoff_ms_max,
            timeout_ms: self.delivery_timeout_ms,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.batch_bytes_max <= BATCH_HEADER_BYTES {
            return Err(Error::InvalidArgument(format!(
                "batch_bytes_max must exceed the {BATCH_HEADER_BYTES}-byte batch header"
            )));
        }
        if self.buffer_bytes_max < self.batch_bytes_max {
            return Err(Error::InvalidArgument(
                "buffer_bytes_max must be at least batch_bytes_max".to_string(),
            ));
        }
        if self.request_bytes_max < self.batch_bytes_max {
            return Err(Error::InvalidArgument(
                "request_bytes_max must be at least batch_bytes_max".to_string(),
            ));
        }
        if self.inflight_requests_max == 0 {
            return Err(Error::InvalidArgument(
                "inflight_requests_max must be at least 1".to_string(),
            ));
        }
        if self.max_in_flight_per_partition == 0 {
            return Err(Error::InvalidArgument(
                "max_in_flight_per_partition must be at least 1".to_string(),
            ));
        }
        if self.is_idempotent()
            && self.max_in_flight_per_partition > MAX_IN_FLIGHT_PER_PARTITION_LIMIT
        {
            return Err(Error::InvalidArgument(format!(
                "max_in_flight_per_partition is {} but an idempotent producer allows at most \
                 {MAX_IN_FLIGHT_PER_PARTITION_LIMIT} (the broker keeps the last \
                 {MAX_IN_FLIGHT_PER_PARTITION_LIMIT} batches per producer and partition to \
                 detect duplicates)",
                self.max_in_flight_per_partition
            )));
        }
        self.partitioning
            .validate()
            .map_err(|error| Error::InvalidArgument(format!("partitioning: {error}")))
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition the record went to.
    pub partition: u32,
    /// The record's offset in the partition; -1 with [`Acks::None`], where it is not known.
    pub offset: i64,
}

/// The pending delivery of one accepted record; [`Delivery::wait`] resolves once its batch is
/// acknowledged or has failed.
#[derive(Debug)]
pub struct Delivery {
    partition: u32,
    index: u32,
    outcome: watch::Receiver<BatchOutcome>,
}

impl Delivery {
    /// Returns the partition the record was placed in.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Returns the record's index inside its batch: records of one batch have consecutive
    /// indexes from 0 and complete together.
    pub fn index_in_batch(&self) -> u32 {
        self.index
    }

    /// Waits until the record's batch completes and returns where the record was written.
    pub async fn wait(mut self) -> Result<RecordMetadata, ProduceError> {
        let outcome = match self
            .outcome
            .wait_for(|outcome| !matches!(outcome, BatchOutcome::Pending))
            .await
        {
            Ok(outcome) => outcome.clone(),
            // The sender dropped the batch without completing it: the producer's task ended.
            Err(_) => return Err(ProduceError::Closed),
        };
        match outcome {
            BatchOutcome::Acked { base_offset } if base_offset < 0 => Ok(RecordMetadata {
                partition: self.partition,
                offset: -1,
            }),
            BatchOutcome::Acked { base_offset } => Ok(RecordMetadata {
                partition: self.partition,
                offset: base_offset + i64::from(self.index),
            }),
            BatchOutcome::Failed(error) => Err(error),
            BatchOutcome::Pending => Err(ProduceError::Closed),
        }
    }
}

struct ProducerShared {
    config: ProducerConfig,
    cluster: Arc<Cluster>,
    /// Held only for one append or one drain: never across an await.
    accumulator: Mutex<Accumulator>,
    buffer: BufferPool,
    wake: Notify,
    closing: AtomicBool,
    retry_policy: RetryPolicy,
    /// Bounds this producer's Produce requests in flight per shard address.
    inflight_by_address: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The idempotent producer's identity and sequences; held only for a stamp or an update.
    idempotence: Mutex<Idempotence>,
    /// Set (after `Idempotence::fenced`) once the broker fenced this producer, so `enqueue`
    /// checks one flag per record instead of taking the idempotence lock.
    fenced: AtomicBool,
    /// The topics `enqueue` has resolved, for the current metadata generation.
    topics: Mutex<TopicCache>,
    /// Serializes InitProducerId calls (first id, epoch bumps).
    identity_lock: tokio::sync::Mutex<()>,
}

/// An idempotent producer's identity and the next sequence of each partition.
#[derive(Debug, Default)]
struct Idempotence {
    /// Producer id and epoch, once the broker handed them out.
    identity: Option<(i64, i16)>,
    /// The first sequence of each partition's next batch under `identity`.
    next_sequence: FxHashMap<TopicPartition, i32>,
    /// Set when the broker fenced this producer: every later send fails with it.
    fenced: Option<Error>,
    /// Set when a batch failed in a way that leaves its partition's sequence unknown to the
    /// producer (it may or may not be stored) or refused by the broker: the next round bumps
    /// the epoch before stamping anything, so later batches start cleanly at sequence 0.
    bump_needed: bool,
}

/// The most topics one producer's [`TopicCache`] holds; a producer that writes more distinct
/// topics than this empties the cache and starts over (each topic then costs one cluster lookup
/// again, as it did before the cache).
const TOPIC_CACHE_ENTRIES_MAX: usize = 1_024;

/// What `enqueue` needs of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CachedTopic {
    topic_id: TopicId,
    partitions: u32,
}

/// The topics a producer has resolved, by name, all from metadata of one generation.
///
/// `enqueue` used to look its topic up in the cluster's snapshot by name on every record (a read
/// lock, two `Arc` clones and a SipHash of the name). Here a repeat topic costs one atomic load
/// (the cluster's generation), under an uncontended lock, and a comparison with the name last
/// found; another cached topic costs an FxHash of its name. The entries are valid only for the
/// generation they were read under: any refresh, periodic or after an error, empties the cache,
/// so a record is never placed with a partition count older than the cluster's snapshot.
#[derive(Debug, Default)]
struct TopicCache {
    generation: u64,
    /// The cached topics, in the order they were cached.
    entries: Vec<(Arc<str>, CachedTopic)>,
    /// The index in `entries` of each name.
    by_name: FxHashMap<Arc<str>, usize>,
    /// The index in `entries` of the topic found last, tried first.
    last: usize,
}

impl TopicCache {
    /// Returns the topic named `name` if it was cached under `generation`; a newer generation
    /// empties the cache first.
    fn get(&mut self, name: &str, generation: u64) -> Option<CachedTopic> {
        self.move_to(generation);
        if self.generation != generation {
            return None;
        }
        if let Some((last_name, topic)) = self.entries.get(self.last) {
            if **last_name == *name {
                return Some(*topic);
            }
        }
        let index = *self.by_name.get(name)?;
        self.last = index;
        self.entries.get(index).map(|(_, topic)| *topic)
    }

    /// Caches `topic`, read from metadata of `generation` or newer; ignored when the cache
    /// already holds a newer generation (the value may be stale).
    fn insert(&mut self, name: &str, generation: u64, topic: CachedTopic) {
        self.move_to(generation);
        if self.generation != generation {
            return;
        }
        if let Some(entry) = self
            .by_name
            .get(name)
            .and_then(|&index| self.entries.get_mut(index))
        {
            // Two enqueues missed at once: the later answer is at least as new.
            entry.1 = topic;
            return;
        }
        if self.entries.len() >= TOPIC_CACHE_ENTRIES_MAX {
            self.clear();
        }
        let name: Arc<str> = name.into();
        self.by_name.insert(name.clone(), self.entries.len());
        self.entries.push((name, topic));
    }

    fn move_to(&mut self, generation: u64) {
        if generation > self.generation {
            self.clear();
            self.generation = generation;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.by_name.clear();
        self.last = 0;
    }
}

impl Idempotence {
    /// Adjusts the sequences after `batch` failed for good with `error`.
    fn batch_failed(&mut self, batch: &ReadyBatch, stamp: ProducerStamp, error: &ProduceError) {
        if self.identity != Some((stamp.producer_id, stamp.epoch)) {
            // An epoch bump already restarted every sequence.
            return;
        }
        let code = match error {
            ProduceError::Request(Error::Broker { code, .. }) => Some(*code),
            _ => None,
        };
        match code {
            Some(ErrorCode::InvalidProducerEpoch) => {}
            // The broker refused the batch because of its sequence: the partition's state on
            // the broker and here disagree.
            Some(ErrorCode::OutOfOrderSequence | ErrorCode::UnknownProducerId) => {
                self.bump_needed = true
            }
            // Any other code in a produce result means nothing of the entry was stored (the
            // producer sends one batch per partition per request): its sequences are free again.
            Some(code) if code != ErrorCode::RequestTimedOut => {
                let records = i32::try_from(batch.records_count).unwrap_or(i32::MAX);
                let after = increment_sequence(stamp.base_sequence, records);
                match self.next_sequence.get_mut(&batch.topic_partition) {
                    Some(next) if *next == after => *next = stamp.base_sequence,
                    // Later batches of the partition were stamped after it: the gap can only
                    // be closed by restarting the sequences.
                    Some(_) => self.bump_needed = true,
                    None => {}
                }
            }
            // A timeout, a lost connection, a delivery timeout: the batch may be stored or not.
            _ => self.bump_needed = true,
        }
    }
}

impl ProducerShared {
    fn accumulator(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        self.accumulator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Resolves a batch for good and frees its partition and its buffer bytes.
    ///
    /// The outcome is held while an older batch of the partition is outstanding, so batches
    /// complete in send order.
    fn complete(&self, batch: ReadyBatch, outcome: BatchOutcome) {
        let done = {
            let mut accumulator = self.accumulator();
            let done = accumulator.finish(batch, outcome);
            for (batch, outcome) in &done {
                if let (Some(stamp), BatchOutcome::Failed(error)) = (batch.producer, outcome) {
                    // Under the accumulator's lock, so the partition's next batch is stamped
                    // after the adjustment.
                    self.idempotence().batch_failed(batch, stamp, error);
                }
            }
            done
        };
        for (batch, outcome) in done {
            self.buffer.release(batch.reserved_bytes);
            let _ = batch.completion.send(outcome);
        }
        self.wake.notify_one();
    }

    /// Returns the id and partition count of the topic named `name`: from the producer's cache
    /// while the cluster's metadata generation is the one it was cached under, else from the
    /// cluster (which refreshes the metadata once for a topic it does not know).
    async fn topic(&self, name: &str) -> Result<CachedTopic, Error> {
        // Read before the lookup, so what is cached under it is at least this new.
        let generation = self.cluster.metadata_generation();
        if let Some(topic) = self.topic_cache().get(name, generation) {
            return Ok(topic);
        }
        let info = self.cluster.topic(name).await?;
        let topic = CachedTopic {
            topic_id: info.topic_id,
            partitions: info.partition_count(),
        };
        self.topic_cache().insert(name, generation, topic);
        Ok(topic)
    }

    fn topic_cache(&self) -> std::sync::MutexGuard<'_, TopicCache> {
        self.topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn idempotence(&self) -> std::sync::MutexGuard<'_, Idempotence> {
        self.idempotence
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn inflight_limit(&self, address: &str) -> Arc<Semaphore> {
        let mut limits = self
            .inflight_by_address
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(limit) = limits.get(address) {
            return limit.clone();
        }
        let limit = Arc::new(Semaphore::new(self.config.inflight_requests_max));
        limits.insert(address.to_string(), limit.clone());
        limit
    }
}

/// Sends records to Weir in batches (see the module documentation).
///
/// ```no_run
/// use bytes::Bytes;
/// use weir_client::{ClientConfig, Cluster, Producer, ProducerConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = Cluster::connect(ClientConfig::new("127.0.0.1:9347")).await?;
/// let producer = Producer::new(cluster, ProducerConfig::default())?;
///
/// // Wait for one record's acknowledgement.
/// let metadata = producer
///     .send("events", Some(Bytes::from("user-42")), Bytes::from("signed up"), &[])
///     .await?;
/// println!("partition {} offset {}", metadata.partition, metadata.offset);
///
/// // Or queue many and collect the acknowledgements afterwards.
/// let mut deliveries = Vec::new();
/// for index in 0..1_000 {
///     let value = format!("event {index}");
///     deliveries.push(producer.enqueue("events", None, value.as_bytes(), &[]).await?);
/// }
/// producer.flush().await;
/// for delivery in deliveries {
///     delivery.wait().await?;
/// }
/// producer.close().await;
/// # Ok(())
/// # }
/// ```
pub struct Producer {
    shared: Arc<ProducerShared>,
    sender: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Producer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Creates a producer over a connected cluster and starts its sender task.
    pub fn new(cluster: Arc<Cluster>, config: ProducerConfig) -> Result<Producer, Error> {
        config.validate()?;
        let shared = Arc::new(ProducerShared {
            config,
            cluster,
            accumulator: Mutex::new(Accumulator::new(BatchingConfig {
                linger_ms: config.linger_ms,
                batch_bytes_max: config.batch_bytes_max,
                partitioning: config.partitioning,
                in_flight_max: config.effective_in_flight_per_partition(),
            })),
            buffer: BufferPool::new(config.buffer_bytes_max),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            retry_policy: config.retry_policy(),
            inflight_by_address: Mutex::new(HashMap::new()),
            idempotence: Mutex::new(Idempotence::default()),
            fenced: AtomicBool::new(false),
            topics: Mutex::new(TopicCache::default()),
            identity_lock: tokio::sync::Mutex::new(()),
        });
        let sender = tokio::spawn(run_sender(shared.clone()));
        Ok(Producer {
            shared,
            sender: Mutex::new(Some(sender)),
        })
    }

    /// Connects to `client.bootstrap` and creates a producer: [`Cluster::connect`] then
    /// [`Producer::new`].
    pub async fn connect(client: ClientConfig, config: ProducerConfig) -> Result<Producer, Error> {
        let cluster = Cluster::connect(client).await?;
        Producer::new(cluster, config)
    }

    /// Returns the producer's configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// Sends one record and waits for its acknowledgement.
    ///
    /// Waits for buffer room first (see [`ProducerConfig::block_on_full`]); the record then
    /// waits up to `linger_ms` for its batch to fill before it is sent.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<Bytes>,
        value: Bytes,
        headers: &[Header<'_>],
    ) -> Result<RecordMetadata, ProduceError> {
        self.enqueue(topic, key.as_deref(), &value, headers)
            .await?
            .wait()
            .await
    }

    /// Accepts one record into its partition's batch and returns its pending [`Delivery`]
    /// without waiting for the acknowledgement. The key, value and headers are copied into the
    /// batch; nothing else is allocated for the record.
    pub async fn enqueue(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[Header<'_>],
    ) -> Result<Delivery, ProduceError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(ProduceError::Closed);
        }
        if self.shared.fenced.load(Ordering::Acquire) {
            if let Some(fenced) = self.shared.idempotence().fenced.clone() {
                return Err(fenced.into());
            }
        }
        let record_bytes = record_bytes_estimate(key, value, headers);
        if BATCH_HEADER_BYTES + record_bytes > self.shared.config.batch_bytes_max {
            return Err(ProduceError::RecordTooLarge {
                record_bytes,
                limit_bytes: self.shared.config.batch_bytes_max,
            });
        }
        let topic_info = self.shared.topic(topic).await?;
        let partitions = topic_info.partitions;
        if partitions == 0 {
            return Err(Error::Protocol {
                address: self.shared.cluster.config().bootstrap.clone(),
                reason: format!("metadata gives topic \"{topic}\" no partitions"),
            }
            .into());
        }
        if self.shared.config.block_on_full {
            self.shared
                .buffer
                .reserve(record_bytes, self.shared.config.block_ms_max)
                .await?;
        } else {
            self.shared.buffer.try_reserve(record_bytes)?;
        }
        let appended = {
            let mut accumulator = self.shared.accumulator();
            let partition = accumulator
                .choose_partition(topic_info.topic_id, partitions, key)
                .map_err(|error| {
                    Error::InvalidArgument(format!("cannot place a record in \"{topic}\": {error}"))
                });
            let partition = match partition {
                Ok(partition) => partition,
                Err(error) => {
                    drop(accumulator);
                    self.shared.buffer.release(record_bytes);
                    return Err(error.into());
                }
            };
            let topic_partition = TopicPartition {
                topic_id: topic_info.topic_id,
                partition,
            };
            // The monotonic clock is read only when the record opens a batch; the record's own
            // timestamp is the one clock read every record pays.
            accumulator.append_reading_clock(
                topic_partition,
                Instant::now,
                now_ms(),
                key,
                value,
                headers,
                record_bytes,
            )
        };
        let appended = match appended {
            Ok(appended) => appended,
            Err(error) => {
                self.shared.buffer.release(record_bytes);
                return Err(error);
            }
        };
        if appended.closed_batch || appended.opened_batch {
            self.shared.wake.notify_one();
        }
        Ok(Delivery {
            partition: appended.partition,
            index: appended.index,
            outcome: appended.outcome,
        })
    }

    /// Sends every record accepted so far without waiting for `linger_ms`, and waits until all
    /// of them are acknowledged or have failed.
    pub async fn flush(&self) {
        let watches = self.shared.accumulator().close_all_and_watch();
        self.shared.wake.notify_one();
        for mut watch in watches {
            let _ = watch
                .wait_for(|outcome| !matches!(outcome, BatchOutcome::Pending))
                .await;
        }
    }

    /// Stops accepting records, delivers every record already accepted (or fails it per the
    /// retry rules), and stops the sender task.
    pub async fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.buffer.close();
        self.flush().await;
        self.shared.wake.notify_one();
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(sender) = sender {
            let _ = sender.await;
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender task delivers what is left and then ends by itself.
        self.shared.closing.store(true, Ordering::Release);
        self.shared.buffer.close();
        self.shared.wake.notify_one();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// The sender task: drains ready batches, sends them, and ends once the producer is closing and
/// holds nothing.
async fn run_sender(shared: Arc<ProducerShared>) {
    let mut ready = Vec::new();
    let mut requests = JoinSet::new();
    let mut lanes = HashMap::new();
    loop {
        let closing = shared.closing.load(Ordering::Acquire);
        let linger_deadline = {
            let mut accumulator = shared.accumulator();
            accumulator.drain_ready(Instant::now(), closing, &mut ready);
            if closing && accumulator.is_empty() && ready.is_empty() && requests.is_empty() {
                return;
            }
            accumulator.next_linger_deadline()
        };
        if !ready.is_empty() {
            if shared.config.is_idempotent() {
                if let Err(error) = ensure_identity(&shared).await {
                    for batch in ready.drain(..) {
                        requests.spawn(retry_or_fail(shared.clone(), vec![batch], error.clone()));
                    }
                    continue;
                }
            }
            dispatch(&shared, &mut ready, &mut requests, &mut lanes);
            while requests.try_join_next().is_some() {}
            continue;
        }
        let sleep = async {
            match linger_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = sleep => {}
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
        }
    }
}

/// The request queue of one owner address: its lane task writes the requests in this order.
type Lane = mpsc::UnboundedSender<Vec<ReadyBatch>>;

/// Groups ready batches by owner address into requests of at most `request_bytes_max` record
/// bytes and one batch per partition, and hands them, in order, to the address's lane.
fn dispatch(
    shared: &Arc<ProducerShared>,
    ready: &mut Vec<ReadyBatch>,
    requests: &mut JoinSet<()>,
    lanes: &mut HashMap<String, Lane>,
) {
    let now = Instant::now();
    let delivery_timeout = Duration::from_millis(shared.config.delivery_timeout_ms);
    let mut by_address: HashMap<String, Vec<ReadyBatch>> = HashMap::new();
    for mut batch in ready.drain(..) {
        if now.saturating_duration_since(batch.created) >= delivery_timeout {
            let error = ProduceError::DeliveryTimeout {
                delivery_timeout_ms: shared.config.delivery_timeout_ms,
                last_error: None,
            };
            shared.complete(batch, BatchOutcome::Failed(error));
            continue;
        }
        if shared.config.is_idempotent() && stale_stamp(shared, &batch) {
            // An older batch of the partition failed for good and the epoch is being (or was)
            // bumped: this batch went out under the old epoch and may be stored, so resending
            // it under the new one could store it twice. It fails instead, like the older one.
            let error = Error::Broker {
                code: ErrorCode::OutOfOrderSequence,
                message: "an earlier batch of the partition failed and the producer epoch was \
                          bumped; this batch, sent under the old epoch, is not resent"
                    .to_string(),
            };
            shared.complete(batch, BatchOutcome::Failed(error.into()));
            continue;
        }
        if shared.config.is_idempotent() && batch.producer.is_none() && !stamp(shared, &mut batch) {
            // The identity is being replaced (a failed epoch bump): the next round gets one.
            shared.accumulator().requeue(batch);
            shared.wake.notify_one();
            continue;
        }
        let topic_partition = batch.topic_partition;
        match shared
            .cluster
            .owner_address(topic_partition.topic_id, topic_partition.partition)
        {
            Ok(address) => by_address.entry(address).or_default().push(batch),
            Err(error) => {
                requests.spawn(retry_or_fail(
                    shared.clone(),
                    vec![batch],
                    metadata_error(error),
                ));
            }
        }
    }
    let request_bytes_max = shared.config.request_bytes_max;
    for (address, batches) in by_address {
        // A request carries at most one batch per partition (its result is per partition, and
        // the broker appends a request's entries concurrently): round `i` holds the `i`-th batch
        // of each partition, and rounds go out in order.
        let mut rounds: Vec<Vec<ReadyBatch>> = Vec::new();
        let mut seen: FxHashMap<TopicPartition, usize> = FxHashMap::default();
        for batch in batches {
            let round = seen.entry(batch.topic_partition).or_insert(0);
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            rounds[*round].push(batch);
            *round += 1;
        }
        for round in rounds {
            let mut group = Vec::new();
            let mut group_bytes = 0_u64;
            for batch in round {
                let batch_bytes = batch.records.len() as u64;
                if !group.is_empty() && group_bytes + batch_bytes > request_bytes_max {
                    to_lane(shared, lanes, &address, std::mem::take(&mut group));
                    group_bytes = 0;
                }
                group_bytes += batch_bytes;
                group.push(batch);
            }
            if !group.is_empty() {
                to_lane(shared, lanes, &address, group);
            }
        }
    }
}

/// Queues one request's batches on the lane of `address`, starting the lane if it has none.
fn to_lane(
    shared: &Arc<ProducerShared>,
    lanes: &mut HashMap<String, Lane>,
    address: &str,
    batches: Vec<ReadyBatch>,
) {
    let lane = lanes.entry(address.to_string()).or_insert_with(|| {
        let (lane, queued) = mpsc::unbounded_channel();
        tokio::spawn(run_lane(shared.clone(), address.to_string(), queued));
        lane
    });
    // The lane ends only when its sender is dropped, with the sender task.
    if let Err(mpsc::error::SendError(batches)) = lane.send(batches) {
        let error = Error::ConnectionLost {
            address: address.to_string(),
            reason: "the producer's request lane ended".to_string(),
        };
        tokio::spawn(retry_or_fail(shared.clone(), batches, error));
    }
}

/// Writes the requests of one owner address in the order they were queued (so a partition's
/// batches reach the broker in order, several in flight), and settles each one when its response
/// arrives, in its own task.
async fn run_lane(
    shared: Arc<ProducerShared>,
    address: String,
    mut queued: mpsc::UnboundedReceiver<Vec<ReadyBatch>>,
) {
    while let Some(batches) = queued.recv().await {
        let limit = shared.inflight_limit(&address);
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = limit.acquire_owned().await;
        match submit(&shared, &address, &batches).await {
            Ok(Some(pending)) => {
                let shared = shared.clone();
                let address = address.clone();
                tokio::spawn(async move {
                    let outcome = receive(pending, &address).await;
                    drop(permit);
                    match outcome {
                        Ok(response) => settle(shared, batches, response, &address).await,
                        Err(error) => retry_or_fail(shared, batches, error).await,
                    }
                });
            }
            Ok(None) => {
                drop(permit);
                for batch in batches {
                    shared.complete(batch, BatchOutcome::Acked { base_offset: -1 });
                }
            }
            Err(error) => {
                drop(permit);
                tokio::spawn(retry_or_fail(shared.clone(), batches, error));
            }
        }
    }
}

/// True when `batch` was stamped under an identity the producer has since replaced (an epoch
/// bump) or is about to replace.
fn stale_stamp(shared: &ProducerShared, batch: &ReadyBatch) -> bool {
    let state = shared.idempotence();
    batch.producer.is_some_and(|stamp| {
        state.identity != Some((stamp.producer_id, stamp.epoch)) || state.bump_needed
    })
}

/// Gets a producer id and epoch from the broker if the producer has none, or bumps its epoch if
/// a failed batch asked for it; fails with the fencing error once the producer was fenced.
async fn ensure_identity(shared: &ProducerShared) -> Result<(), Error> {
    let settled = |shared: &ProducerShared| {
        let state = shared.idempotence();
        match &state.fenced {
            Some(fenced) => Some(Err(fenced.clone())),
            None if state.identity.is_some() && !state.bump_needed => Some(Ok(())),
            None => None,
        }
    };
    if let Some(settled) = settled(shared) {
        return settled;
    }
    let _guard = shared.identity_lock.lock().await;
    if let Some(settled) = settled(shared) {
        return settled;
    }
    let current = shared.idempotence().identity;
    let request = match current {
        // KIP-360: the same id at the next epoch; every partition restarts at sequence 0.
        Some((producer_id, epoch)) => InitProducerIdRequest {
            producer_id,
            producer_epoch: epoch,
        },
        None => InitProducerIdRequest::default(),
    };
    let assigned = match init_producer_id(shared, request).await {
        Ok(assigned) => assigned,
        // The broker cannot bump this id (for example it was issued by a broker whose state
        // was lost): start over with a new id.
        Err(error) if current.is_some() && !error.is_retriable() => {
            tracing::debug!(%error, "epoch bump refused; asking for a new producer id");
            init_producer_id(shared, InitProducerIdRequest::default()).await?
        }
        Err(error) => return Err(error),
    };
    let mut state = shared.idempotence();
    state.identity = Some(assigned);
    state.next_sequence.clear();
    state.bump_needed = false;
    tracing::debug!(
        producer_id = assigned.0,
        epoch = assigned.1,
        "idempotent producer id and epoch assigned"
    );
    Ok(())
}

async fn init_producer_id(
    shared: &ProducerShared,
    request: InitProducerIdRequest,
) -> Result<(i64, i16), Error> {
    let response = shared.cluster.control_request(&request).await?;
    if !response.error_code.is_none() {
        return Err(Error::Broker {
            code: response.error_code,
            message: response.error_message,
        });
    }
    Ok((response.producer_id, response.producer_epoch))
}

/// Stamps a batch's first send with the producer's identity and its partition's next sequence;
/// false if the producer has no usable identity right now (the next round gets one).
fn stamp(shared: &ProducerShared, batch: &mut ReadyBatch) -> bool {
    let mut state = shared.idempotence();
    let Some((producer_id, epoch)) = state.identity.filter(|_| !state.bump_needed) else {
        return false;
    };
    let next = state
        .next_sequence
        .entry(batch.topic_partition)
        .or_insert(0);
    let base_sequence = *next;
    let records = i32::try_from(batch.records_count).unwrap_or(i32::MAX);
    *next = increment_sequence(base_sequence, records);
    drop(state);
    // The accumulator's bytes are not shared yet, so this normally stamps them in place.
    let records = std::mem::take(&mut batch.records);
    let mut bytes = records
        .try_into_mut()
        .unwrap_or_else(|shared_bytes| BytesMut::from(&shared_bytes[..]));
    if set_producer(&mut bytes, producer_id, epoch, base_sequence).is_ok() {
        batch.producer = Some(ProducerStamp {
            producer_id,
            epoch,
            base_sequence,
        });
    }
    batch.records = bytes.freeze();
    true
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0 as the broker (and Kafka) expects.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// An owner that the metadata cannot name is a stale cache: retry after a refresh.
fn metadata_error(error: Error) -> Error {
    match error {
        Error::UnknownTopic { .. } | Error::UnknownPartition { .. } | Error::Protocol { .. } => {
            Error::Broker {
                code: ErrorCode::NotOwner,
                message: error.to_string(),
            }
        }
        other => other,
    }
}

/// Queues the Produce request for `batches` on the connection to `address`; `None` when
/// `acks = none` asks for no response (the request is then handed to the writer).
async fn submit(
    shared: &ProducerShared,
    address: &str,
    batches: &[ReadyBatch],
) -> Result<Option<PendingResponse>, Error> {
    let connection = shared.cluster.connection(address).await?;
    let request = ProduceRequest {
        acks: shared.config.acks,
        timeout_ms: u32::try_from(shared.config.request_timeout_ms).unwrap_or(u32::MAX),
        entries: batches
            .iter()
            .map(|batch| ProducePartition {
                topic_id: batch.topic_partition.topic_id,
                partition: batch.topic_partition.partition,
                records: batch.records.clone(),
            })
            .collect(),
    };
    let encode = |correlation_id, chunks: &mut Vec<Bytes>| {
        let mut scratch = BytesMut::new();
        request.encode_frame_chunks(correlation_id, Priority::Normal, &mut scratch, chunks)
    };
    if !shared.config.acks.expects_response() {
        connection.send_without_response(encode).await?;
        return Ok(None);
    }
    connection.submit(ApiKey::Produce, encode).await.map(Some)
}

/// Waits for a submitted Produce request's response and decodes it.
async fn receive(pending: PendingResponse, address: &str) -> Result<ProduceResponse, Error> {
    let frame = pending.response().await?;
    ProduceResponse::decode(&frame.body, frame.header.api_version()).map_err(|error| {
        Error::Protocol {
            address: address.to_string(),
            reason: format!("cannot decode the Produce response: {error}"),
        }
    })
}

/// Completes, retries or fails each batch according to its partition's result.
async fn settle(
    shared: Arc<ProducerShared>,
    batches: Vec<ReadyBatch>,
    response: ProduceResponse,
    address: &str,
) {
    let mut results: FxHashMap<TopicPartition, _> = response
        .entries
        .into_iter()
        .map(|entry| {
            let key = TopicPartition {
                topic_id: entry.topic_id,
                partition: entry.partition,
            };
            (key, entry)
        })
        .collect();
    let mut retriable = Vec::new();
    let mut out_of_order = Vec::new();
    let mut last_error = None;
    for batch in batches {
        let Some(result) = results.remove(&batch.topic_partition) else {
            let error = Error::Protocol {
                address: address.to_string(),
                reason: format!(
                    "the Produce response has no result for topic id {} partition {}",
                    batch.topic_partition.topic_id, batch.topic_partition.partition
                ),
            };
            shared.complete(batch, BatchOutcome::Failed(error.into()));
            continue;
        };
        if result.error_code.is_none() {
            shared.complete(
                batch,
                BatchOutcome::Acked {
                    base_offset: result.base_offset,
                },
            );
            continue;
        }
        let error = Error::Broker {
            code: result.error_code,
            message: result.error_message,
        };
        if result.error_code == ErrorCode::InvalidProducerEpoch
            && batch.producer.is_some()
            && !stale_stamp(&shared, &batch)
        {
            tracing::warn!(%error, "the idempotent producer was fenced; it fails every send from now on");
            shared.idempotence().fenced.get_or_insert(error.clone());
            shared.fenced.store(true, Ordering::Release);
        }
        if result.error_code == ErrorCode::OutOfOrderSequence
            && batch.producer.is_some()
            && !shared.accumulator().is_oldest_outstanding(&batch)
        {
            // An older batch of the partition failed and will be resent first: this one is
            // resent after it, with its original sequence.
            out_of_order.push(batch);
            continue;
        }
        if error.is_retriable() {
            retriable.push(batch);
            last_error = Some(error);
        } else {
            shared.complete(batch, BatchOutcome::Failed(error.into()));
        }
    }
    let out_of_order_retry = (!out_of_order.is_empty()).then(|| {
        let error = Error::Broker {
            code: ErrorCode::OutOfOrderSequence,
            message: "an older batch of the partition is being retried".to_string(),
        };
        retry_later(shared.clone(), out_of_order, error)
    });
    let retry = last_error.map(|error| retry_or_fail(shared, retriable, error));
    if let Some(out_of_order_retry) = out_of_order_retry {
        out_of_order_retry.await;
    }
    if let Some(retry) = retry {
        retry.await;
    }
}

/// Puts retriable failures back at the head of their partitions after a backoff (refreshing the
/// metadata first when the error says it is stale); fails the batches whose retries ran out.
async fn retry_or_fail(shared: Arc<ProducerShared>, batches: Vec<ReadyBatch>, error: Error) {
    if !error.is_retriable() {
        for batch in batches {
            shared.complete(batch, BatchOutcome::Failed(error.clone().into()));
        }
        return;
    }
    retry_later(shared, batches, error).await;
}

/// Puts batches back into their partitions' queues after a backoff, counting a retry for each;
/// fails those whose retries or delivery time ran out.
async fn retry_later(shared: Arc<ProducerShared>, batches: Vec<ReadyBatch>, error: Error) {
    let now = Instant::now();
    let mut delay_max = Duration::ZERO;
    let mut waiting = Vec::with_capacity(batches.len());
    for mut batch in batches {
        let created = batch.created;
        let retry = batch
            .retry
            .get_or_insert_with(|| shared.retry_policy.start(created));
        match retry.next_delay(now, &mut rand::thread_rng()) {
            Some(delay) => {
                delay_max = delay_max.max(delay);
                waiting.push(batch);
            }
            None => {
                let timed_out = now >= retry.deadline();
                let failure = if timed_out {
                    ProduceError::DeliveryTimeout {
                        delivery_timeout_ms: shared.config.delivery_timeout_ms,
                        last_error: Some(Box::new(error.clone())),
                    }
                } else {
                    error.clone().into()
                };
                shared.complete(batch, BatchOutcome::Failed(failure));
            }
        }
    }
    if waiting.is_empty() {
        return;
    }
    tracing::debug!(%error, batches = waiting.len(), delay_ms = delay_max.as_millis() as u64, "retrying produce");
    if suggests_stale_metadata(&error) {
        if let Err(refresh_error) = shared.cluster.refresh_metadata().await {
            tracing::debug!(%refresh_error, "metadata refresh before a produce retry failed");
        }
    }
    tokio::time::sleep(delay_max).await;
    {
        let mut accumulator = shared.accumulator();
        for batch in waiting {
            accumulator.requeue(batch);
        }
    }
    shared.wake.notify_one();
}

/// Returns true for errors after which the partition may have moved or the topic changed.
pub(crate) fn suggests_stale_metadata(error: &Error) -> bool {
    match error {
        Error::Connect { .. } | Error::ConnectionLost { .. } => true,
        Error::Broker { code, .. } => matches!(
            code,
            ErrorCode::NotOwner | ErrorCode::UnknownTopic | ErrorCode::UnknownPartition
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTITION: TopicPartition = TopicPartition {
        topic_id: 7,
        partition: 1,
    };

    fn stamped_batch(base_sequence: i32, records_count: u32, epoch: i16) -> ReadyBatch {
        ReadyBatch {
            topic_partition: PARTITION,
            id: 0,
            records: Bytes::new(),
            records_count,
            reserved_bytes: 0,
            created: Instant::now(),
            retry: None,
            completion: watch::channel(BatchOutcome::Pending).0,
            producer: Some(ProducerStamp {
                producer_id: 1,
                epoch,
                base_sequence,
            }),
        }
    }

    /// The state after batch `3..=4` of producer 1 epoch 2 was stamped.
    fn state() -> Idempotence {
        Idempotence {
            identity: Some((1, 2)),
            next_sequence: [(PARTITION, 5)].into_iter().collect(),
            ..Idempotence::default()
        }
    }

    fn broker(code: ErrorCode) -> ProduceError {
        Error::Broker {
            code,
            message: String::new(),
        }
        .into()
    }

    #[test]
    fn a_failed_batch_frees_its_sequences_or_asks_for_an_epoch_bump() {
        let lost = Error::ConnectionLost {
            address: "a".into(),
            reason: "reset".into(),
        };
        let timeout = ProduceError::DeliveryTimeout {
            delivery_timeout_ms: 1,
            last_error: None,
        };
        // (error, next sequence afterwards, bump needed)
        let cases = [
            (broker(ErrorCode::MessageTooLarge), 3, false),
            (broker(ErrorCode::InvalidBatch), 3, false),
            (broker(ErrorCode::RequestTimedOut), 5, true),
            (broker(ErrorCode::OutOfOrderSequence), 5, true),
            (broker(ErrorCode::UnknownProducerId), 5, true),
            (broker(ErrorCode::InvalidProducerEpoch), 5, false),
            (lost.into(), 5, true),
            (timeout, 5, true),
        ];
        for (error, next, bump) in cases {
            let mut idempotence = state();
            let batch = stamped_batch(3, 2, 2);
            let stamp = batch.producer.expect("stamped");
            idempotence.batch_failed(&batch, stamp, &error);
            assert_eq!(idempotence.next_sequence[&PARTITION], next, "{error}");
            assert_eq!(idempotence.bump_needed, bump, "{error}");
        }
        // A batch of an older epoch changes nothing: a bump already reset the sequences.
        let mut idempotence = state();
        let old = stamped_batch(3, 2, 1);
        idempotence.batch_failed(&old, old.producer.expect("stamped"), &timeout_error());
        assert_eq!(idempotence.next_sequence[&PARTITION], 5);
        assert!(!idempotence.bump_needed);
    }

    fn timeout_error() -> ProduceError {
        broker(ErrorCode::RequestTimedOut)
    }

    #[test]
    fn the_topic_cache_serves_one_generation_and_empties_on_a_newer_one() {
        let three = CachedTopic {
            topic_id: 7,
            partitions: 3,
        };
        let six = CachedTopic {
            topic_id: 7,
            partitions: 6,
        };
        let mut cache = TopicCache::default();
        assert_eq!(cache.get("events", 1), None);
        cache.insert("events", 1, three);
        assert_eq!(cache.get("events", 1), Some(three));
        assert_eq!(cache.get("other", 1), None);
        // A refresh: the old partition count is never served under the new generation.
        assert_eq!(cache.get("events", 2), None);
        cache.insert("events", 2, six);
        assert_eq!(cache.get("events", 2), Some(six));
        // A value read before the cache moved on may be stale: it is not kept.
        cache.insert("late", 1, three);
        assert_eq!(cache.get("late", 2), None);
        assert_eq!(
            cache.get("events", 1),
            None,
            "an older generation is no hit"
        );
    }

    #[test]
    fn the_topic_cache_finds_each_of_several_topics_in_any_order() {
        let mut cache = TopicCache::default();
        let topic = |topic_id| CachedTopic {
            topic_id,
            partitions: topic_id * 2,
        };
        for topic_id in 0..5 {
            cache.insert(&format!("topic-{topic_id}"), 3, topic(topic_id));
        }
        for topic_id in [4, 4, 0, 2, 2, 4, 1, 3, 0] {
            assert_eq!(
                cache.get(&format!("topic-{topic_id}"), 3),
                Some(topic(topic_id))
            );
        }
        // A name that only shares a prefix with the last one found is not it.
        assert_eq!(cache.get("topic-", 3), None);
        assert_eq!(cache.get("topic-00", 3), None);
        // Caching a topic again updates it in place.
        cache.insert("topic-1", 3, topic(9));
        assert_eq!(cache.get("topic-1", 3), Some(topic(9)));
        assert_eq!(cache.entries.len(), 5);
    }

    #[test]
    fn the_topic_cache_holds_at_most_its_limit() {
        let topic = CachedTopic {
            topic_id: 1,
            partitions: 1,
        };
        let mut cache = TopicCache::default();
        for index in 0..=TOPIC_CACHE_ENTRIES_MAX {
            cache.insert(&format!("topic-{index}"), 1, topic);
            assert!(cache.entries.len() <= TOPIC_CACHE_ENTRIES_MAX);
            assert_eq!(cache.by_name.len(), cache.entries.len());
        }
        let last = format!("topic-{TOPIC_CACHE_ENTRIES_MAX}");
        assert_eq!(cache.get(&last, 1), Some(topic));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(0, 3), 3);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }
}
