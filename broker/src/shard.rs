//! A shard: one pinned glommio executor with the partitions, connections and metrics it owns.
//!
//! This module owns [`Shard`], the per-executor state every task on the shard shares through an
//! `Rc`, and [`run`], the shard's life: connect to peers, open owned partitions, accept, serve,
//! drain, close. Invariants: a `Shard` is never sent to another thread; state reached from other
//! shards arrives only as [`PeerRequest`] messages; the catalog a shard sees is an immutable
//! `Arc<Catalog>` replaced whole by shard 0's publications. On a crash nothing here needs
//! recovery: partitions recover in storage, the catalog on disk is always whole.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::sync::Semaphore;
use tracing::{debug, error, info, warn};
use weir_proto::wire::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse,
    DescribedPartition, ErrorCode, FetchPartition, FetchPartitionResult, InitProducerIdRequest,
    InitProducerIdResponse, ListOffsetsPartition, ListOffsetsPartitionResult, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ProducePartition,
    ProducePartitionResult,
};
use weir_storage::PartitionLog;

use crate::catalog::{Catalog, TopicId, OFFSETS_TOPIC};
use crate::config::Config;
use crate::conn::{trim_heap, HeapTrim};
use crate::group::serve::{self as group_serve, GroupAnswer, GroupCall, JoinWaiter};
use crate::group::{Coordinator, Ticket};
use crate::hash::shard_for_partition;
use crate::http;
use crate::metrics::{self, MetricsSnapshot, ShardMetrics, StorageCounters};
use crate::net::{self, Addresses};
use crate::notify::{Latch, Signal};
use crate::offsets::{CommitKey, CommitValue, OffsetTable};
use crate::owner;
use crate::partition::{self, Partition, PartitionKey, Producers};
use crate::peers::{self, Envelope, Inbox, Peers};
use crate::producer_ids::{self, ProducerIds};
use crate::producer_state::{encode_snapshot, ProducerTableConfig};
use crate::runtime::{Command, Event, ShardSetup};

/// A request from one shard to another.
#[derive(Debug)]
pub enum PeerRequest {
    /// Report your metrics.
    Metrics,
    /// Replace your catalog with this newer one and open/close partitions to match.
    ApplyCatalog(Arc<Catalog>),
    /// Create a topic (sent to shard 0, the catalog's only writer).
    CreateTopic(CreateTopicRequest),
    /// Delete a topic (sent to shard 0).
    DeleteTopic(DeleteTopicRequest),
    /// Append to partitions you own.
    Produce(Vec<ProducePartition>),
    /// Read from partitions you own, without waiting, within this many bytes in total.
    Fetch(Vec<FetchPartition>, u32),
    /// Answer when any partition's stable end passes its offset, or after `wait_ms`.
    Watch {
        /// Chosen by the caller to cancel the watch.
        watch_id: u64,
        /// `(partition, stable end offset already seen)`.
        watched: Vec<(PartitionKey, i64)>,
        /// Longest wait, in milliseconds.
        wait_ms: u64,
    },
    /// Stop watch `watch_id` of the calling shard now.
    CancelWatch(u64),
    /// Answer offset queries for partitions you own.
    ListOffsets(Vec<ListOffsetsPartition>),
    /// Log offsets of partitions of one topic you own.
    Describe(TopicId, Vec<u32>),
    /// Commit offsets of a group whose offsets partition you own.
    OffsetCommit(OffsetCommitRequest),
    /// Read offsets of a group whose offsets partition you own.
    OffsetFetch(OffsetFetchRequest),
    /// Hand out a producer id or epoch (sent to shard 0, the allocator's owner).
    InitProducerId(InitProducerIdRequest),
    /// Serve a consumer-group call on your coordinator.
    Group(GroupCall),
}

impl PeerRequest {
    /// Whether this is a data-path request (counted as cross-shard crosstalk).
    pub fn is_data_path(&self) -> bool {
        matches!(
            self,
            PeerRequest::Produce(_)
                | PeerRequest::Fetch(..)
                | PeerRequest::Watch { .. }
                | PeerRequest::ListOffsets(_)
                | PeerRequest::OffsetCommit(_)
                | PeerRequest::OffsetFetch(_)
        )
    }
}

/// The answer to a [`PeerRequest`].
#[derive(Debug)]
pub enum PeerReply {
    /// The shard's metrics.
    Metrics(Box<MetricsSnapshot>),
    /// The catalog was applied (with the partitions that failed to open), or the shard is
    /// stopping and applied nothing.
    CatalogApplied(Result<Vec<PartitionFailure>, ShardStopping>),
    /// Answer to [`PeerRequest::CreateTopic`].
    CreateTopic(CreateTopicResponse),
    /// Answer to [`PeerRequest::DeleteTopic`].
    DeleteTopic(DeleteTopicResponse),
    /// Answer to [`PeerRequest::Produce`], in entry order.
    Produce(Vec<ProducePartitionResult>),
    /// Answer to [`PeerRequest::Fetch`], in entry order.
    Fetch(Vec<FetchPartitionResult>),
    /// A watch or its cancellation completed.
    Watched,
    /// Answer to [`PeerRequest::ListOffsets`], in entry order.
    ListOffsets(Vec<ListOffsetsPartitionResult>),
    /// Answer to [`PeerRequest::Describe`], in partition order.
    Describe(Vec<DescribedPartition>),
    /// Answer to [`PeerRequest::OffsetCommit`].
    OffsetCommit(OffsetCommitResponse),
    /// Answer to [`PeerRequest::OffsetFetch`].
    OffsetFetch(OffsetFetchResponse),
    /// Answer to [`PeerRequest::InitProducerId`].
    InitProducerId(InitProducerIdResponse),
    /// Answer to [`PeerRequest::Group`].
    Group(GroupAnswer),
}

/// Why a shard stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The control socket from the main thread failed.
    #[error("control socket: {0}")]
    Control(String),
    /// Partitions the shard owns could not be opened at start, so it refused to serve.
    #[error("cannot open {} partition(s) at start: {}", .0.len(), join_failures(.0))]
    PartitionsNotOpened(Vec<PartitionFailure>),
}

/// A partition that could not be opened (or whose committed offsets could not be replayed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{topic_name}/{partition}: {reason}")]
pub struct PartitionFailure {
    /// The partition's topic id.
    pub topic_id: TopicId,
    /// The partition's topic name.
    pub topic_name: String,
    /// The partition index.
    pub partition: u32,
    /// What failed.
    pub reason: String,
}

/// The shard is stopping and no longer applies catalogs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shard is stopping")]
pub struct ShardStopping;

/// `failures` as one line, separated by "; ".
pub fn join_failures(failures: &[PartitionFailure]) -> String {
    let lines: Vec<String> = failures.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

/// One shard's state, shared by every task on its executor.
pub struct Shard {
    /// This shard's index.
    pub id: usize,
    /// The broker configuration.
    pub config: Arc<Config>,
    /// Every address the broker listens on.
    pub addresses: Arc<Addresses>,
    /// The shard's counters.
    pub metrics: ShardMetrics,
    /// Channels to the other shards.
    pub peers: Peers<PeerRequest, PeerReply>,
    /// Set when the shard starts draining: stop accepting and reading new requests.
    pub draining: Latch,
    /// Bytes of request frames (produce payloads above all) held in memory by this shard.
    pub request_memory: Rc<Semaphore>,
    /// Notified whenever a connection closes (drain waits on it).
    pub connection_closed: Signal,
    /// When to give the memory of closed connections back to the OS.
    pub heap_trim: HeapTrim,
    /// The consumer groups whose `__offsets` partitions this shard owns.
    pub groups: RefCell<Coordinator>,
    /// Held JoinGroup requests waiting for their answer, by ticket.
    pub join_waiters: RefCell<HashMap<Ticket, Rc<JoinWaiter>>>,
    /// The origin of [`Shard::clock_ms`].
    clock_origin: Instant,
    catalog: RefCell<Arc<Catalog>>,
    /// Serializes catalog applications on this shard.
    catalog_lock: Semaphore,
    /// Serializes catalog changes (used on shard 0, the only writer).
    catalog_write_lock: Semaphore,
    partitions: RefCell<HashMap<PartitionKey, Rc<Partition>>>,
    offset_tables: RefCell<HashMap<PartitionKey, OffsetTable>>,
    watches: RefCell<HashMap<(usize, u64), Rc<Latch>>>,
    next_watch_id: Cell<u64>,
    /// The producer-id allocator (shard 0 only), loaded on first use.
    producer_ids: RefCell<Option<ProducerIds>>,
    /// Serializes InitProducerId on shard 0 (a reservation awaits a durable write).
    producer_ids_lock: Semaphore,
}

impl Shard {
    /// Milliseconds since the shard started, from the monotonic clock: the coordinator's time.
    pub fn clock_ms(&self) -> u64 {
        u64::try_from(self.clock_origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A shard with no partitions open yet (an empty catalog).
    fn new(
        id: usize,
        config: Arc<Config>,
        addresses: Arc<Addresses>,
        peers: Peers<PeerRequest, PeerReply>,
    ) -> Shard {
        let request_memory = Rc::new(Semaphore::new(config.produce_memory_bytes_max));
        let config_groups = config.groups;
        Shard {
            id,
            config,
            addresses,
            metrics: ShardMetrics::default(),
            peers,
            draining: Latch::default(),
            request_memory,
            connection_closed: Signal::default(),
            heap_trim: HeapTrim::default(),
            catalog: RefCell::new(Arc::new(Catalog::default())),
            catalog_lock: Semaphore::new(1),
            catalog_write_lock: Semaphore::new(1),
            partitions: RefCell::new(HashMap::new()),
            offset_tables: RefCell::new(HashMap::new()),
            watches: RefCell::new(HashMap::new()),
            next_watch_id: Cell::new(0),
            groups: RefCell::new(Coordinator::new(config_groups, member_id_seed(id))),
            join_waiters: RefCell::new(HashMap::new()),
            clock_origin: Instant::now(),
            producer_ids: RefCell::new(None),
            producer_ids_lock: Semaphore::new(1),
        }
    }

    /// The only shard of a one-shard broker, with the partitions of `catalog` open under
    /// `config.data_dir`, but no listeners, no peers and no background tasks (maintenance,
    /// interval flushes): for driving [`crate::handlers::handle`] in-process, as the criterion
    /// benches of the produce and fetch paths do. Call it on a glommio executor; `config.cores`
    /// must be 1, so that every partition is this shard's. Retention runs only when the caller
    /// calls [`Shard::maintain`].
    pub async fn standalone(
        config: Arc<Config>,
        catalog: Catalog,
    ) -> Result<Rc<Shard>, ShardError> {
        assert_eq!(
            config.cores, 1,
            "a standalone shard is the broker's only one"
        );
        // A mesh of one shard: this shard's ends, with no channel in them.
        let ends = peers::mesh(1, 1).remove(0);
        let (peers, _inbox) = Peers::connect(0, ends).await;
        let addresses = Arc::new(Addresses {
            listen: config.listen,
            shards: vec![config.listen],
            metrics: config.metrics_listen,
        });
        let shard = Rc::new(Shard::new(0, config, addresses, peers));
        let failures = shard
            .apply_catalog(Arc::new(catalog))
            .await
            .unwrap_or_default();
        if failures.is_empty() {
            Ok(shard)
        } else {
            shard.close_partitions().await;
            Err(ShardError::PartitionsNotOpened(failures))
        }
    }

    /// The number of shards in the broker.
    pub fn shard_count(&self) -> usize {
        self.config.cores
    }

    /// The catalog snapshot this shard currently serves from.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.borrow())
    }

    /// The shard that owns partition `key`.
    pub fn owner_of(&self, key: PartitionKey) -> usize {
        shard_for_partition(key.0, key.1, self.shard_count())
    }

    /// An owned, open partition.
    pub fn partition(&self, key: PartitionKey) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&key).cloned()
    }

    /// Whether the offsets table of `key` can take `keys` more commits.
    pub fn offset_table_has_room(&self, key: PartitionKey, keys: &[&CommitKey]) -> bool {
        self.offset_tables
            .borrow()
            .get(&key)
            .is_none_or(|table| table.has_room_for(keys))
    }

    /// Records durable commits in the table of offsets partition `key`.
    pub fn record_commits(&self, key: PartitionKey, commits: Vec<(CommitKey, CommitValue)>) {
        let mut tables = self.offset_tables.borrow_mut();
        let table = tables.entry(key).or_default();
        for (commit_key, value) in commits {
            table.insert(commit_key, value);
        }
    }

    /// Forgets the committed offsets of `group` in offsets partition `key` (the group was
    /// deleted or expired).
    pub fn forget_group_offsets(&self, key: PartitionKey, group: &str) {
        if let Some(table) = self.offset_tables.borrow_mut().get_mut(&key) {
            table.remove_group(group);
        }
    }

    /// The committed value of `commit_key` in offsets partition `key`.
    pub fn committed_offset(
        &self,
        key: PartitionKey,
        commit_key: &CommitKey,
    ) -> Option<CommitValue> {
        self.offset_tables
            .borrow()
            .get(&key)
            .and_then(|table| table.get(commit_key).cloned())
    }

    /// A fresh id for a watch this shard asks another shard to run.
    pub fn next_watch_id(&self) -> u64 {
        let id = self.next_watch_id.get();
        self.next_watch_id.set(id + 1);
        id
    }

    /// Installs a catalog snapshot (older versions are ignored) and opens or deletes this
    /// shard's partitions to match it. Returns the partitions that failed to open.
    pub async fn apply_catalog(
        self: &Rc<Self>,
        catalog: Arc<Catalog>,
    ) -> Result<Vec<PartitionFailure>, ShardStopping> {
        let Ok(_lock) = self.catalog_lock.acquire_permit(1).await else {
            return Err(ShardStopping);
        };
        if catalog.version() < self.catalog.borrow().version() {
            return Ok(Vec::new());
        }
        *self.catalog.borrow_mut() = Arc::clone(&catalog);
        let wanted: BTreeSet<PartitionKey> = catalog
            .topics()
            .flat_map(|topic| {
                (0..topic.config.partitions).map(move |index| (topic.topic_id, index))
            })
            .filter(|key| self.owner_of(*key) == self.id)
            .collect();
        let removed: Vec<Rc<Partition>> = {
            let mut partitions = self.partitions.borrow_mut();
            let gone: Vec<PartitionKey> = partitions
                .keys()
                .filter(|key| !wanted.contains(key))
                .copied()
                .collect();
            gone.iter()
                .filter_map(|key| partitions.remove(key))
                .collect()
        };
        for partition in removed {
            self.offset_tables
                .borrow_mut()
                .remove(&(partition.topic.topic_id, partition.index));
            self.metrics.forget_topic(&partition.topic.name);
            self.delete_partition(partition);
        }
        // Internal partitions (`__offsets`) are read in order once, at start, and never served
        // from the tail: they get the floor, and the budget is divided among the others, those
        // already open included, so the shard's tail caches stay within one budget as topics
        // come and go.
        let served = wanted
            .iter()
            .filter(|key| {
                catalog
                    .topic_by_id(key.0)
                    .is_some_and(|topic| !topic.is_internal())
            })
            .count();
        let tail_cache = partition::tail_cache_share(self.config.tail_cache_bytes_max, served);
        for partition in self.partitions.borrow().values() {
            if !partition.topic.is_internal() {
                partition
                    .log
                    .set_tail_cache_bytes_max(usize::try_from(tail_cache).unwrap_or(usize::MAX));
            }
        }
        let mut failures = Vec::new();
        for key in wanted {
            if self.partitions.borrow().contains_key(&key) {
                continue;
            }
            let Some(topic) = catalog.topic_by_id(key.0) else {
                continue;
            };
            let dir = partition::partition_dir(&self.config.data_dir, topic, key.1);
            let partition_tail_cache = if topic.is_internal() {
                partition::TAIL_CACHE_PARTITION_BYTES_MIN
            } else {
                tail_cache
            };
            let log_config =
                partition::log_config(&topic.config, &self.config, partition_tail_cache);
            match PartitionLog::open(&dir, log_config).await {
                Ok(log) => {
                    // Clients cannot produce to internal topics: no producer state to keep.
                    let producers = if topic.is_internal() {
                        Producers::default()
                    } else {
                        self.open_producers(&topic.name, key.1, &log).await
                    };
                    let opened = Rc::new(Partition {
                        topic: Arc::clone(topic),
                        index: key.1,
                        log,
                        appended: Signal::default(),
                        producers,
                    });
                    if topic.name == OFFSETS_TOPIC {
                        match owner::replay_offsets(&opened, self.config.fetch_response_bytes_max)
                            .await
                        {
                            Ok(mut table) => {
                                group_serve::restore_partition(
                                    &mut self.groups.borrow_mut(),
                                    &mut table,
                                    self.clock_ms(),
                                    weir_storage::wall_clock_ms(),
                                );
                                self.offset_tables.borrow_mut().insert(key, table);
                            }
                            Err(error) => {
                                error!(partition = key.1, %error, "cannot replay committed offsets");
                                failures.push(PartitionFailure {
                                    topic_id: key.0,
                                    topic_name: OFFSETS_TOPIC.to_string(),
                                    partition: key.1,
                                    reason: format!("cannot replay committed offsets: {error}"),
                                });
                                continue;
                            }
                        }
                    }
                    self.partitions.borrow_mut().insert(key, opened);
                }
                Err(error) => {
                    error!(topic = %topic.name, partition = key.1, dir = %dir.display(), %error, "cannot open partition log");
                    failures.push(PartitionFailure {
                        topic_id: key.0,
                        topic_name: topic.name.clone(),
                        partition: key.1,
                        reason: format!("cannot open the log in {}: {error}", dir.display()),
                    });
                }
            }
        }
        Ok(failures)
    }

    /// Answers an InitProducerId; must run on [`crate::control::CATALOG_SHARD`], the only
    /// owner of the producer-id allocator.
    pub async fn init_producer_id(&self, request: InitProducerIdRequest) -> InitProducerIdResponse {
        let Ok(_permit) = self.producer_ids_lock.acquire_permit(1).await else {
            return InitProducerIdResponse {
                error_code: ErrorCode::BrokerShuttingDown,
                error_message: "the broker is shutting down".to_string(),
                ..InitProducerIdResponse::default()
            };
        };
        let mut state = self.producer_ids.take();
        let response =
            producer_ids::init_producer_id(&mut state, &self.config.data_dir, &request).await;
        *self.producer_ids.borrow_mut() = state;
        response
    }

    /// The producer-table limits of this broker.
    pub fn producer_table_config(&self) -> ProducerTableConfig {
        ProducerTableConfig {
            producers_max: self.config.producers_per_partition_max as usize,
            producer_idle_ms_max: self.config.producer_idle_ms_max,
        }
    }

    /// Rebuilds an opened log's producer state from its newest valid snapshot and the batch
    /// headers after it.
    async fn open_producers(&self, topic: &str, index: u32, log: &PartitionLog) -> Producers {
        let started = Instant::now();
        let (table, snapshot, problems) = partition::rebuild_producers(
            log,
            self.producer_table_config(),
            self.config.fetch_response_bytes_max,
        )
        .await;
        for problem in &problems {
            warn!(topic, partition = index, %problem, "producer state: a snapshot or log range was skipped");
        }
        debug!(
            topic,
            partition = index,
            producers = table.len(),
            snapshot_offset = ?snapshot,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "producer state rebuilt"
        );
        // A snapshot at the current active segment already bounds the next open's scan.
        let active = log.active_segment_base_offset();
        let current = snapshot.filter(|offset| *offset >= active).map(|_| active);
        Producers::new(table, current)
    }

    /// Writes a producer-state snapshot of `partition` at its log end, unless an idempotent
    /// append is in progress (the table may then lag the log; the next tick retries). Internal
    /// topics have no producer state, and an empty log needs no snapshot to bound its scan.
    async fn snapshot_producers(&self, partition: &Partition) -> bool {
        if partition.producers.any_busy() || partition.topic.is_internal() {
            return false;
        }
        let offset = partition.log.log_end_offset();
        let active = partition.log.active_segment_base_offset();
        if offset == partition.log.log_start_offset() {
            partition.producers.snapshot_written(active);
            return false;
        }
        let bytes = encode_snapshot(&partition.producers.table.borrow(), offset);
        match partition::write_snapshot(partition.log.dir(), offset, bytes).await {
            Ok(()) => {
                partition.producers.snapshot_written(active);
                true
            }
            Err(error) => {
                error!(topic = %partition.topic.name, partition = partition.index, %error, "cannot write a producer-state snapshot");
                false
            }
        }
    }

    /// Deletes a removed partition's log once no request holds it any more.
    fn delete_partition(self: &Rc<Self>, partition: Rc<Partition>) {
        let retry = Duration::from_millis(self.config.maintenance_interval_ms);
        glommio::spawn_local(async move {
            let mut partition = partition;
            loop {
                match Rc::try_unwrap(partition) {
                    Ok(owned) => {
                        let (name, index) = (owned.topic.name.clone(), owned.index);
                        if let Err(error) = partition::delete_all_snapshots(owned.log.dir()) {
                            error!(topic = %name, partition = index, %error, "cannot delete producer-state snapshots");
                        }
                        if let Err(error) = owned.log.delete().await {
                            error!(topic = %name, partition = index, %error, "cannot delete partition log");
                        }
                        return;
                    }
                    // A request still holds it; it finishes within its own bounds.
                    Err(shared) => partition = shared,
                }
                glommio::timer::sleep(retry).await;
            }
        })
        .detach();
    }

    /// Flushes and closes every owned partition (shutdown).
    pub async fn close_partitions(&self) {
        let partitions: Vec<Rc<Partition>> = self
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        for partition in partitions {
            let (name, index) = (partition.topic.name.clone(), partition.index);
            // A clean close leaves a snapshot at the log end: the next open scans nothing.
            self.snapshot_producers(&partition).await;
            match Rc::try_unwrap(partition) {
                Ok(owned) => {
                    if let Err(error) = owned.log.close().await {
                        error!(topic = %name, partition = index, %error, "cannot close partition log");
                    }
                }
                Err(shared) => {
                    if let Err(error) = shared.log.flush().await {
                        error!(topic = %name, partition = index, %error, "cannot flush partition log");
                    }
                }
            }
        }
    }

    /// This shard's metrics snapshot, with gauges filled in.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let mut snapshot = self.metrics.snapshot(self.id);
        let partitions = self.partitions.borrow();
        snapshot.partitions_owned = partitions.len() as u64;
        snapshot.produce_memory_bytes = self
            .config
            .produce_memory_bytes_max
            .saturating_sub(self.request_memory.available());
        let mut storage = StorageCounters::default();
        for partition in partitions.values() {
            let stats = partition.log.stats();
            storage.tail_cache_hits += stats.tail_cache_hits;
            storage.tail_cache_misses += stats.tail_cache_misses;
            storage.fsync_count += stats.fsync_count;
            storage.fsync_time_us += stats.fsync_time_total_us;
            storage.write_buffer_full_count += stats.write_buffer_full_count;
            storage.write_buffer_full_time_us += stats.write_buffer_full_time_total_us;
            snapshot.producer.remembered += partition.producers.table.borrow().len() as u64;
        }
        snapshot.storage = storage;
        snapshot
    }

    /// The shortest flush interval among owned `flush = interval` partitions, if any.
    pub fn flush_interval_min_ms(&self) -> Option<u64> {
        self.partitions
            .borrow()
            .values()
            .filter_map(|partition| match partition.topic.config.flush {
                crate::config::FlushSetting::Interval { interval_ms } => Some(interval_ms),
                _ => None,
            })
            .min()
    }

    /// Flushes owned `flush = interval` partitions whose interval has passed.
    pub async fn flush_due(&self) {
        let now_ms = weir_storage::wall_clock_ms();
        let partitions: Vec<Rc<Partition>> = self
            .partitions
            .borrow()
            .values()
            .filter(|partition| {
                matches!(
                    partition.topic.config.flush,
                    crate::config::FlushSetting::Interval { .. }
                )
            })
            .cloned()
            .collect();
        for partition in partitions {
            if let Err(error) = partition.log.flush_if_due(now_ms).await {
                error!(topic = %partition.topic.name, partition = partition.index, %error, "interval flush failed");
            }
        }
    }

    /// Runs periodic storage work on owned partitions: age rolls and retention.
    pub async fn maintain(&self) {
        let open = self.metrics.connections_open.get();
        if self.heap_trim.due(open) {
            debug!(
                shard = self.id,
                open, "many connections closed; trimming the heap"
            );
            trim_heap();
        }
        let now_ms = weir_storage::wall_clock_ms();
        let partitions: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        for partition in partitions {
            let (name, index) = (&partition.topic.name, partition.index);
            if let Err(error) = partition.log.roll_if_due(now_ms).await {
                error!(topic = %name, partition = index, %error, "segment roll failed");
            }
            let expired = partition.producers.table.borrow_mut().expire(now_ms);
            if expired > 0 {
                metrics::count_producer(&self.metrics, |counters| {
                    counters.expired += expired as u64
                });
            }
            if partition
                .producers
                .snapshot_due(partition.log.active_segment_base_offset())
            {
                self.snapshot_producers(&partition).await;
            }
            match partition.log.enforce_retention(now_ms).await {
                Ok(report) if report.segments_deleted > 0 => {
                    info!(
                        topic = %name,
                        partition = index,
                        segments = report.segments_deleted,
                        bytes = report.bytes_deleted,
                        log_start_offset = report.log_start_offset,
                        "retention deleted segments"
                    );
                    // Snapshots go with the segments they were taken at.
                    let dir = partition.log.dir();
                    if let Err(error) =
                        partition::delete_snapshots_below(dir, report.log_start_offset)
                    {
                        error!(topic = %name, partition = index, %error, "cannot delete old producer-state snapshots");
                    }
                }
                Ok(_) => {}
                Err(error) => error!(topic = %name, partition = index, %error, "retention failed"),
            }
        }
    }

    /// Serves a request from another shard.
    pub async fn serve_peer(self: &Rc<Self>, from: usize, request: PeerRequest) -> PeerReply {
        match request {
            PeerRequest::Metrics => PeerReply::Metrics(Box::new(self.metrics_snapshot())),
            PeerRequest::Group(call) => PeerReply::Group(group_serve::serve(self, call).await),
            PeerRequest::ApplyCatalog(catalog) => {
                PeerReply::CatalogApplied(self.apply_catalog(catalog).await)
            }
            PeerRequest::CreateTopic(request) => {
                PeerReply::CreateTopic(crate::control::create_topic(self, request).await)
            }
            PeerRequest::DeleteTopic(request) => {
                PeerReply::DeleteTopic(crate::control::delete_topic(self, request).await)
            }
            PeerRequest::Produce(entries) => {
                PeerReply::Produce(owner::produce(self, entries).await)
            }
            PeerRequest::Fetch(entries, bytes_max) => {
                PeerReply::Fetch(owner::fetch_now(self, &entries, bytes_max).await)
            }
            PeerRequest::Watch {
                watch_id,
                watched,
                wait_ms,
            } => {
                let cancelled = Rc::new(Latch::default());
                self.watches
                    .borrow_mut()
                    .insert((from, watch_id), Rc::clone(&cancelled));
                let deadline = Instant::now()
                    + Duration::from_millis(wait_ms.min(u64::from(self.config.fetch_wait_ms_max)));
                owner::watch(self, &watched, deadline, &cancelled).await;
                self.watches.borrow_mut().remove(&(from, watch_id));
                PeerReply::Watched
            }
            PeerRequest::CancelWatch(watch_id) => {
                if let Some(latch) = self.watches.borrow_mut().remove(&(from, watch_id)) {
                    latch.set();
                }
                PeerReply::Watched
            }
            PeerRequest::ListOffsets(entries) => {
                PeerReply::ListOffsets(owner::list_offsets(self, entries).await)
            }
            PeerRequest::Describe(topic_id, partitions) => {
                PeerReply::Describe(owner::describe(self, topic_id, &partitions))
            }
            PeerRequest::OffsetCommit(request) => {
                PeerReply::OffsetCommit(owner::commit_offsets(self, request).await)
            }
            PeerRequest::OffsetFetch(request) => {
                PeerReply::OffsetFetch(owner::fetch_offsets(self, request))
            }
            PeerRequest::InitProducerId(request) => {
                PeerReply::InitProducerId(self.init_producer_id(request).await)
            }
        }
    }

    /// Runs `change` with the catalog write lock held (shard 0 only).
    pub async fn with_catalog_lock<T>(
        &self,
        change: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let _lock = self.catalog_write_lock.acquire_permit(1).await.ok()?;
        Some(change.await)
    }

    /// Every shard's metrics rendered in the Prometheus text format.
    pub async fn render_metrics(self: &Rc<Self>) -> String {
        let mut snapshots = Vec::with_capacity(self.shard_count());
        for shard in 0..self.shard_count() {
            if shard == self.id {
                snapshots.push(self.metrics_snapshot());
                continue;
            }
            match self.peers.call(shard, PeerRequest::Metrics).await {
                Ok(PeerReply::Metrics(snapshot)) => snapshots.push(*snapshot),
                Ok(other) => warn!(shard, ?other, "unexpected reply to a metrics request"),
                Err(error) => warn!(shard, %error, "no metrics from shard"),
            }
        }
        let mut out = metrics::render(&snapshots);
        let partitions_max = self.config.group_lag_metrics_partitions_max as usize;
        metrics::render_groups(&mut out, &group_serve::metrics(self, partitions_max).await);
        out
    }
}

/// Runs shard `setup.shard` until the main thread sends [`Command::Close`].
pub async fn run(setup: ShardSetup) -> Result<(), ShardError> {
    let ShardSetup {
        shard: id,
        config,
        addresses,
        catalog,
        shared_listener,
        direct_listener,
        metrics_listener,
        control,
        peers,
        events,
    } = setup;
    let (peers, inbox) = Peers::connect(id, peers).await;
    let shard = Rc::new(Shard::new(id, config, addresses, peers));
    // Peers must be served while partitions open: another shard may already ask for metrics.
    let inbox_tasks = spawn_inbox(&shard, inbox);
    // A partition that does not open at start is not served as an error to clients: the broker
    // refuses to start, before the ready file is written, so an operator sees the cause at once
    // instead of a broker that is ready but fails CreateTopic and OffsetCommit.
    let failures = shard.apply_catalog(catalog).await.unwrap_or_default();
    if !failures.is_empty() {
        for failure in &failures {
            error!(
                shard = id,
                topic = %failure.topic_name,
                partition = failure.partition,
                reason = %failure.reason,
                "cannot open partition {}/{} at start; the broker will not start",
                failure.topic_name,
                failure.partition
            );
        }
        // Nothing was served yet: close what did open and leave. Cancelling the inbox tasks
        // drops this shard's inboxes, so a peer's call to it fails instead of waiting.
        shard.draining.set();
        shard.close_partitions().await;
        shard.peers.close();
        for task in inbox_tasks {
            task.cancel();
        }
        return Err(ShardError::PartitionsNotOpened(failures));
    }
    let metrics_task = metrics_listener.map(|socket| {
        let listener = net::glommio_listener(socket);
        glommio::spawn_local(serve_metrics(Rc::clone(&shard), listener))
    });
    let accept_tasks = [shared_listener, direct_listener].map(|socket| {
        let listener = net::glommio_listener(socket);
        glommio::spawn_local(crate::conn::accept_loop(Rc::clone(&shard), listener))
    });
    let maintenance_task = glommio::spawn_local(maintenance_loop(Rc::clone(&shard)));
    let group_task = glommio::spawn_local(group_serve::tick_loop(Rc::clone(&shard)));
    let flush_task = glommio::spawn_local(flush_loop(Rc::clone(&shard)));
    let _ = events.send(Event::Ready(id));
    debug!(shard = id, "shard ready");

    let mut control = control_stream(control)?;
    wait_for(&mut control, Command::Drain).await?;
    shard.draining.set();
    drop(accept_tasks);
    drop(metrics_task);
    drain_connections(&shard).await;
    let _ = events.send(Event::Drained(id));
    wait_for(&mut control, Command::Close).await?;
    drop(maintenance_task);
    drop(flush_task);
    drop(group_task);
    shard.close_partitions().await;
    shard.peers.close();
    for task in inbox_tasks {
        task.await;
    }
    info!(shard = id, "shard closed");
    Ok(())
}

/// A seed for member ids that differs between shards and restarts: randomness enters the
/// coordinator here, at the edge.
fn member_id_seed(shard: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos ^ ((shard as u64) << 56) ^ u64::from(std::process::id())
}

/// Waits until every connection of the shard has closed, or `shutdown-timeout-ms` passed.
async fn drain_connections(shard: &Rc<Shard>) {
    let deadline = Instant::now() + Duration::from_millis(shard.config.shutdown_timeout_ms);
    let all_closed = futures_lite::future::poll_fn(|context| {
        let count = shard.connection_closed.count();
        if shard.metrics.connections_open.get() == 0 {
            return std::task::Poll::Ready(());
        }
        shard
            .connection_closed
            .changed_since(count, context.waker());
        std::task::Poll::Pending
    });
    let timed_out = futures_lite::future::or(
        async {
            all_closed.await;
            false
        },
        async {
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            true
        },
    )
    .await;
    if timed_out {
        warn!(
            shard = shard.id,
            open = shard.metrics.connections_open.get(),
            "shutdown timeout: closing connections with requests in flight"
        );
    }
}

async fn maintenance_loop(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.maintenance_interval_ms);
    loop {
        glommio::timer::sleep(interval).await;
        shard.maintain().await;
    }
}

/// Ticks at the shortest flush interval of the shard's `flush = interval` partitions (or the
/// maintenance interval when there are none) and flushes those that are due.
async fn flush_loop(shard: Rc<Shard>) {
    loop {
        let tick_ms = shard
            .flush_interval_min_ms()
            .unwrap_or(shard.config.maintenance_interval_ms)
            .max(1);
        glommio::timer::sleep(Duration::from_millis(tick_ms)).await;
        shard.flush_due().await;
    }
}

fn control_stream(
    control: std::os::unix::net::UnixStream,
) -> Result<glommio::net::UnixStream, ShardError> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    control
        .set_nonblocking(true)
        .map_err(|error| ShardError::Control(error.to_string()))?;
    // SAFETY: the descriptor is a connected Unix stream socket owned by `control`, consumed here.
    Ok(unsafe { glommio::net::UnixStream::from_raw_fd(control.into_raw_fd()) })
}

/// Waits for `expected` on the control socket. End of file (the main thread died) counts as any
/// command, so the shard still drains and closes.
async fn wait_for(
    stream: &mut glommio::net::UnixStream,
    expected: Command,
) -> Result<(), ShardError> {
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte).await {
            Ok(0) => return Ok(()),
            Ok(_) if byte[0] == expected as u8 => return Ok(()),
            Ok(_) => continue,
            Err(error) => return Err(ShardError::Control(error.to_string())),
        }
    }
}

fn spawn_inbox(
    shard: &Rc<Shard>,
    inbox: Inbox<PeerRequest, PeerReply>,
) -> Vec<glommio::task::JoinHandle<()>> {
    inbox
        .into_iter()
        .map(|(from, receiver)| {
            let shard = Rc::clone(shard);
            glommio::spawn_local(async move {
                while let Some(envelope) = receiver.recv().await {
                    match envelope {
                        Envelope::Request { id, from, request } => {
                            let shard = Rc::clone(&shard);
                            glommio::spawn_local(async move {
                                if request.is_data_path() {
                                    metrics::increment(&shard.metrics.forwarded_served);
                                }
                                let reply = shard.serve_peer(from, request).await;
                                if let Err(error) = shard.peers.reply(from, id, reply).await {
                                    debug!(shard = shard.id, to = from, %error, "reply not delivered");
                                }
                            })
                            .detach();
                        }
                        Envelope::Reply { id, reply } => shard.peers.deliver(id, reply),
                    }
                }
                debug!(shard = shard.id, from, "peer channel closed");
            })
            .detach()
        })
        .collect()
}

async fn serve_metrics(shard: Rc<Shard>, listener: glommio::net::TcpListener) {
    let slots = Rc::new(glommio::sync::Semaphore::new(http::METRICS_CONNECTIONS_MAX));
    loop {
        let Ok(permit) = slots.acquire_static_permit(1).await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                warn!(%error, "metrics accept failed");
                continue;
            }
        };
        let shard = Rc::clone(&shard);
        glommio::spawn_local(async move {
            let _permit = permit;
            if let Err(error) = serve_scrape(&shard, stream).await {
                debug!(%error, "metrics connection ended with an error");
            }
        })
        .detach();
    }
}

async fn serve_scrape(
    shard: &Rc<Shard>,
    mut stream: glommio::net::TcpStream,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read_head = async {
        while !http::head_complete(&head) {
            let count = stream.read(&mut chunk).await?;
            if count == 0 || head.len() + count > http::REQUEST_HEAD_BYTES_MAX {
                return Ok(false);
            }
            head.extend_from_slice(&chunk[..count]);
        }
        Ok::<bool, std::io::Error>(true)
    };
    let complete = futures_lite::future::or(read_head, async {
        glommio::timer::sleep(http::REQUEST_HEAD_TIMEOUT).await;
        Ok(false)
    })
    .await?;
    if !complete {
        return Ok(());
    }
    let route = http::route(&head);
    let body = match route {
        http::Route::Metrics => shard.render_metrics().await,
        _ => String::new(),
    };
    stream.write_all(&http::response(route, &body)).await?;
    stream.close().await
}
