//! Per-partition batching and the producer's bounded buffer.
//!
//! [`Accumulator`] owns every record a producer has accepted but not yet seen acknowledged. Each
//! partition has at most one open batch (a [`BatchBuilder`] that records are appended to
//! directly, so a record costs no allocation of its own), a queue of closed batches waiting to be
//! sent, and at most `in_flight_max` batches in flight (sent and not yet completed). Invariants:
//! - a batch never holds more than `batch_bytes_max` bytes (a record that does not fit closes the
//!   open batch and starts the next one; a record that fits in no batch is refused);
//! - per partition, batches leave in the order their records were appended (each gets the next
//!   id of its partition when it closes), and at most `in_flight_max` of them are outstanding;
//! - a batch put back for a retry goes into the queue in id order, before every batch not sent
//!   yet, and is sent again only once none of its partition's batches is on the wire any more,
//!   so the retried batches leave again in their original order and nothing overtakes them;
//! - batches complete in send order: an outcome that arrives while an older batch of the same
//!   partition is outstanding is held ([`Accumulator::finish`]) until the older one completes;
//! - the bytes of every accepted record stay reserved in the [`BufferPool`] until its batch is
//!   acknowledged or has failed, so buffered memory never exceeds `buffer_bytes_max`.
//!
//! The accumulator is synchronous and takes the clock as an argument; the producer drives it under
//! a lock held only for one append or one drain.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{watch, Semaphore, TryAcquireError};
use weir_proto::batch::BatchBuilder;

use crate::error::ProduceError;
use crate::fx_hash::FxHashMap;
use crate::hash_ring::RingError;
use crate::partitioner::{KeyPartitioner, Partitioning, StickyPartitioner};
use crate::retry::RetryState;

/// The fixed size of a RecordBatch v2 header, which every batch carries before its records.
pub const BATCH_HEADER_BYTES: u64 = 61;
/// The most bytes a record's framing can take around its key, value and headers: length (varint,
/// 5), attributes (1), timestamp delta (varlong, 10), offset delta (5), key length (5), value
/// length (5) and header count (5).
const RECORD_OVERHEAD_BYTES_MAX: u64 = 36;
/// The most bytes one header's framing can take: key length and value length varints.
const HEADER_OVERHEAD_BYTES_MAX: u64 = 10;

/// A topic's numeric id, as the wire protocol addresses it.
pub type TopicId = weir_proto::wire::TopicId;

/// A header of a record: a key and an optional value.
pub type Header<'a> = (&'a [u8], Option<&'a [u8]>);

/// One partition of one topic, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition number inside the topic.
    pub partition: u32,
}

/// Returns an upper bound of the bytes a record takes inside a batch: its key, value and headers
/// plus the largest possible varint framing. The buffer reserves this many bytes per record.
pub fn record_bytes_estimate(key: Option<&[u8]>, value: &[u8], headers: &[Header<'_>]) -> u64 {
    let headers_bytes: u64 = headers
        .iter()
        .map(|(key, value)| {
            HEADER_OVERHEAD_BYTES_MAX + key.len() as u64 + value.map_or(0, |v| v.len() as u64)
        })
        .sum();
    RECORD_OVERHEAD_BYTES_MAX
        + key.map_or(0, |key| key.len() as u64)
        + value.len() as u64
        + headers_bytes
}

/// The state of a batch as its records' delivery handles see it.
#[derive(Debug, Clone)]
pub enum BatchOutcome {
    /// Not acknowledged yet.
    Pending,
    /// Acknowledged; the batch's first record got `base_offset`.
    Acked {
        /// The offset of the batch's first record.
        base_offset: i64,
    },
    /// Failed for good; every record of the batch fails with this error.
    Failed(ProduceError),
}

/// Batching limits and key placement, taken from the producer configuration.
#[derive(Debug, Clone, Copy)]
pub struct BatchingConfig {
    /// How long an open batch waits for more records before it is sent.
    pub linger_ms: u64,
    /// The largest batch, header included.
    pub batch_bytes_max: u64,
    /// How keyed records are placed.
    pub partitioning: Partitioning,
    /// The most batches of one partition outstanding at once (sent and not yet completed);
    /// at least 1.
    pub in_flight_max: usize,
}

/// A record appended to an open batch: where it went and how to learn its fate.
#[derive(Debug)]
pub struct Appended {
    /// The partition the record was appended to.
    pub partition: u32,
    /// The record's index inside its batch (its offset is the batch's base offset plus this).
    pub index: u32,
    /// Watches the outcome of the record's batch.
    pub outcome: watch::Receiver<BatchOutcome>,
    /// True when the append closed a full batch, so the sender has work.
    pub closed_batch: bool,
    /// True when the append opened a new batch, so the sender has a new linger deadline.
    pub opened_batch: bool,
}

/// A closed batch handed to the sender, with what it needs to retry or complete it.
#[derive(Debug)]
pub struct ReadyBatch {
    /// The partition the batch belongs to.
    pub topic_partition: TopicPartition,
    /// The batch's place in its partition's send order (increasing as batches close).
    pub id: u64,
    /// The encoded RecordBatch v2 bytes (base offset 0; the broker assigns it).
    pub records: Bytes,
    /// The number of records in the batch.
    pub records_count: u32,
    /// The buffer bytes reserved for the batch's records, released when it completes.
    pub reserved_bytes: u64,
    /// When the batch was opened: the delivery timeout counts from here.
    pub created: Instant,
    /// The retries done so far and those left, once a first attempt failed.
    pub retry: Option<RetryState>,
    /// Resolves the batch's records when it completes.
    pub completion: watch::Sender<BatchOutcome>,
    /// The idempotent producer's id, epoch and first sequence, stamped into `records` when the
    /// batch is first sent; a retry sends the same bytes.
    pub producer: Option<ProducerStamp>,
}

/// What an idempotent producer stamped into a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub epoch: i16,
    /// The sequence of the batch's first record in its partition.
    pub base_sequence: i32,
}

struct OpenBatch {
    builder: BatchBuilder,
    created: Instant,
    reserved_bytes: u64,
    completion: watch::Sender<BatchOutcome>,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    closed: VecDeque<ReadyBatch>,
    /// The batches of this partition handed to the sender and not completed yet, oldest first.
    in_flight: VecDeque<Slot>,
    /// The id of this partition's next closed batch.
    next_id: u64,
    /// The initial capacity of this partition's next batch: `batch_bytes_max` after a batch
    /// closed full, decaying by a quarter per batch sent before it filled (never below that
    /// batch's size), so a steady stream of full batches allocates each batch once instead of
    /// growing it by copies while a trickle of small batches allocates little.
    next_batch_bytes: usize,
}

impl PartitionQueue {
    /// The capacity to allocate for the partition's next batch: `next_batch_bytes` (at most
    /// `batch_bytes_max`), or 0, the builder's default growth, for a partition's first batch.
    fn next_batch_capacity(&self, batch_bytes_max: u64) -> usize {
        self.next_batch_bytes
            .min(usize::try_from(batch_bytes_max).unwrap_or(usize::MAX))
    }
}

/// One outstanding batch of a partition.
struct Slot {
    id: u64,
    watch: watch::Receiver<BatchOutcome>,
    state: SlotState,
}

enum SlotState {
    /// Handed to the sender, on the wire or about to be.
    Sent,
    /// Back in the partition's queue for a retry.
    Requeued,
    /// Answered, waiting for an older batch of the partition to complete first.
    Finished(Box<(ReadyBatch, BatchOutcome)>),
}

impl PartitionQueue {
    fn is_empty(&self) -> bool {
        self.open.is_none() && self.closed.is_empty() && self.in_flight.is_empty()
    }

    fn has_room(&self, in_flight_max: usize) -> bool {
        self.in_flight.len() < in_flight_max
    }
}

struct TopicSticky {
    partitioner: StickyPartitioner,
    partitions: u32,
}

/// The per-partition batches of one producer (see the module documentation).
pub struct Accumulator {
    config: BatchingConfig,
    /// Looked up once per record: keyed with `FxHashMap`, not SipHash.
    queues: FxHashMap<TopicPartition, PartitionQueue>,
    /// `next_batch_bytes` of partitions whose queue was dropped when it emptied, so their next
    /// batch still starts at the right capacity; at most one entry per partition written.
    batch_bytes_hints: FxHashMap<TopicPartition, usize>,
    sticky: FxHashMap<TopicId, TopicSticky>,
    keyed: KeyPartitioner,
    /// Starts each topic's sticky partition at a different place, so producers spread out.
    sticky_start: u32,
}

impl Accumulator {
    /// Creates an empty accumulator with the given batching limits.
    pub fn new(config: BatchingConfig) -> Self {
        Self {
            config,
            queues: FxHashMap::default(),
            batch_bytes_hints: FxHashMap::default(),
            sticky: FxHashMap::default(),
            keyed: KeyPartitioner::new(config.partitioning),
            sticky_start: rand::random(),
        }
    }

    /// Returns the batching limits.
    pub fn config(&self) -> BatchingConfig {
        self.config
    }

    /// Chooses the partition of a record: by the configured [`Partitioning`] when it has a key,
    /// else the topic's sticky partition. `partitions` is the topic's current partition count
    /// (at least 1). Fails only when a consistent-hash ring for `partitions` cannot be built.
    pub fn choose_partition(
        &mut self,
        topic_id: TopicId,
        partitions: u32,
        key: Option<&[u8]>,
    ) -> Result<u32, RingError> {
        if let Some(key) = key {
            return self.keyed.partition(key, partitions);
        }
        let start = self.sticky_start;
        let sticky = self.sticky.entry(topic_id).or_insert_with(|| TopicSticky {
            partitioner: StickyPartitioner::new(start),
            partitions,
        });
        sticky.partitions = partitions;
        Ok(sticky.partitioner.partition(partitions))
    }

    /// Appends a record to the open batch of `topic_partition`, closing that batch first if the
    /// record would overflow it. `reserved_bytes` must already be reserved in the buffer pool and
    /// be at least [`record_bytes_estimate`] of the record.
    ///
    /// Fails with [`ProduceError::RecordTooLarge`] when the record cannot fit even in an empty
    /// batch; nothing is appended then, and the caller releases its reservation.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        topic_partition: TopicPartition,
        now: Instant,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[Header<'_>],
        reserved_bytes: u64,
    ) -> Result<Appended, ProduceError> {
        self.append_reading_clock(
            topic_partition,
            || now,
            timestamp_ms,
            key,
            value,
            headers,
            reserved_bytes,
        )
    }

    /// [`Accumulator::append`] that calls `now` only when the record opens a batch (the
    /// batch's linger and delivery timeout start then), so a record that joins an open batch
    /// costs no monotonic clock read.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append_reading_clock(
        &mut self,
        topic_partition: TopicPartition,
        now: impl FnOnce() -> Instant,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[Header<'_>],
        reserved_bytes: u64,
    ) -> Result<Appended, ProduceError> {
        let record_bytes = record_bytes_estimate(key, value, headers);
        if BATCH_HEADER_BYTES + record_bytes > self.config.batch_bytes_max {
            return Err(ProduceError::RecordTooLarge {
                record_bytes,
                limit_bytes: self.config.batch_bytes_max,
            });
        }
        let batch_bytes_max = self.config.batch_bytes_max;
        let hints = &mut self.batch_bytes_hints;
        let queue = self
            .queues
            .entry(topic_partition)
            .or_insert_with(|| PartitionQueue {
                next_batch_bytes: hints.remove(&topic_partition).unwrap_or(0),
                ..PartitionQueue::default()
            });
        let mut closed_batch = false;
        if let Some(open) = &queue.open {
            let fits = open.builder.size_bytes() as u64 + record_bytes <= batch_bytes_max;
            if !fits {
                close_open_batch(queue, topic_partition);
                // Full: the next batch will likely fill up to the limit too.
                queue.next_batch_bytes = usize::try_from(batch_bytes_max).unwrap_or(usize::MAX);
                closed_batch = true;
            }
        }
        let opened_batch = queue.open.is_none();
        let capacity = queue.next_batch_capacity(batch_bytes_max);
        let open = queue.open.get_or_insert_with(|| OpenBatch {
            builder: BatchBuilder::with_capacity(timestamp_ms, capacity),
            created: now(),
            reserved_bytes: 0,
            completion: watch::channel(BatchOutcome::Pending).0,
        });
        let index = open.builder.records_count();
        if let Err(error) = open
            .builder
            .try_push(timestamp_ms, key, Some(value), headers)
        {
            // Only lengths past i32::MAX or an absurd timestamp fail here; the size check
            // above rules out the former, so this is a caller's bad timestamp.
            if open.builder.is_empty() {
                queue.open = None;
            }
            return Err(ProduceError::InvalidRecord {
                reason: error.to_string(),
            });
        }
        open.reserved_bytes += reserved_bytes;
        let outcome = open.completion.subscribe();
        if closed_batch {
            self.note_batch_closed(topic_partition);
        }
        Ok(Appended {
            partition: topic_partition.partition,
            index,
            outcome,
            closed_batch,
            opened_batch,
        })
    }

    /// Moves the batches that are ready into `ready`, oldest first per partition: batches put
    /// back for a retry once none of their partition's batches is on the wire, then closed
    /// batches (and the open batch once it has lingered `linger_ms`, or at once when `flush` is
    /// true) while the partition has fewer than `in_flight_max` batches outstanding. Each batch
    /// moved is marked in flight for its partition.
    pub fn drain_ready(&mut self, now: Instant, flush: bool, ready: &mut Vec<ReadyBatch>) {
        let linger = Duration::from_millis(self.config.linger_ms);
        let in_flight_max = self.config.in_flight_max.max(1);
        let mut closed_partitions = Vec::new();
        for (topic_partition, queue) in &mut self.queues {
            let requeued = queue
                .in_flight
                .iter()
                .any(|slot| matches!(slot.state, SlotState::Requeued));
            let on_wire = queue
                .in_flight
                .iter()
                .any(|slot| matches!(slot.state, SlotState::Sent));
            if requeued && on_wire {
                // Later batches still have to come back before the retried ones go out again.
                continue;
            }
            loop {
                let front_id = queue.closed.front().map(|batch| batch.id);
                if let Some(slot) = front_id.and_then(|id| {
                    queue
                        .in_flight
                        .iter_mut()
                        .find(|slot| slot.id == id && matches!(slot.state, SlotState::Requeued))
                }) {
                    slot.state = SlotState::Sent;
                    if let Some(batch) = queue.closed.pop_front() {
                        ready.push(batch);
                    }
                    continue;
                }
                if !queue.has_room(in_flight_max) {
                    break;
                }
                if queue.closed.is_empty() {
                    let lingered = queue.open.as_ref().is_some_and(|open| {
                        flush || now.saturating_duration_since(open.created) >= linger
                    });
                    if !lingered {
                        break;
                    }
                    close_open_batch(queue, *topic_partition);
                    closed_partitions.push(*topic_partition);
                }
                let Some(batch) = queue.closed.pop_front() else {
                    break;
                };
                queue.in_flight.push_back(Slot {
                    id: batch.id,
                    watch: batch.completion.subscribe(),
                    state: SlotState::Sent,
                });
                ready.push(batch);
            }
        }
        for topic_partition in closed_partitions {
            self.note_batch_closed(topic_partition);
        }
    }

    /// Returns the earliest instant at which an open batch of a partition with room for another
    /// batch in flight finishes lingering, or `None` if there is no such batch.
    pub fn next_linger_deadline(&self) -> Option<Instant> {
        let linger = Duration::from_millis(self.config.linger_ms);
        let in_flight_max = self.config.in_flight_max.max(1);
        self.queues
            .values()
            .filter(|queue| queue.has_room(in_flight_max))
            .filter_map(|queue| queue.open.as_ref().map(|open| open.created + linger))
            .min()
    }

    /// Returns true when some partition with room for another batch in flight has a closed
    /// batch waiting.
    pub fn has_closed_batch_waiting(&self) -> bool {
        let in_flight_max = self.config.in_flight_max.max(1);
        self.queues
            .values()
            .any(|queue| queue.has_room(in_flight_max) && !queue.closed.is_empty())
    }

    /// Returns true when `batch` is the oldest outstanding batch of its partition: no batch
    /// sent before it is still waiting for its outcome.
    pub fn is_oldest_outstanding(&self, batch: &ReadyBatch) -> bool {
        self.queues
            .get(&batch.topic_partition)
            .and_then(|queue| queue.in_flight.front())
            .is_none_or(|slot| slot.id == batch.id)
    }

    /// Records the outcome of an in-flight batch and returns the batches that complete now, in
    /// send order: this one and the held ones after it once no older batch of the partition is
    /// outstanding, or none while an older batch still is (this outcome is held until then).
    pub fn finish(
        &mut self,
        batch: ReadyBatch,
        outcome: BatchOutcome,
    ) -> Vec<(ReadyBatch, BatchOutcome)> {
        let topic_partition = batch.topic_partition;
        let Some(queue) = self.queues.get_mut(&topic_partition) else {
            return vec![(batch, outcome)];
        };
        let Some(slot) = queue.in_flight.iter_mut().find(|slot| slot.id == batch.id) else {
            return vec![(batch, outcome)];
        };
        slot.state = SlotState::Finished(Box::new((batch, outcome)));
        let mut done = Vec::new();
        while queue
            .in_flight
            .front()
            .is_some_and(|slot| matches!(slot.state, SlotState::Finished(_)))
        {
            if let Some(Slot {
                state: SlotState::Finished(finished),
                ..
            }) = queue.in_flight.pop_front()
            {
                done.push(*finished);
            }
        }
        if queue.is_empty() {
            let next_batch_bytes = queue.next_batch_bytes;
            self.queues.remove(&topic_partition);
            if next_batch_bytes > 0 {
                self.batch_bytes_hints
                    .insert(topic_partition, next_batch_bytes);
            }
        }
        done
    }

    /// Puts an in-flight batch back into its partition's queue for a retry, in id order before
    /// every batch not sent yet; it is sent again once none of its partition's batches is on
    /// the wire (see [`Accumulator::drain_ready`]).
    pub fn requeue(&mut self, batch: ReadyBatch) {
        let queue = self.queues.entry(batch.topic_partition).or_default();
        match queue.in_flight.iter_mut().find(|slot| slot.id == batch.id) {
            Some(slot) => slot.state = SlotState::Requeued,
            None => queue.in_flight.push_back(Slot {
                id: batch.id,
                watch: batch.completion.subscribe(),
                state: SlotState::Requeued,
            }),
        }
        let position = queue
            .closed
            .iter()
            .position(|queued| queued.id > batch.id)
            .unwrap_or(queue.closed.len());
        queue.closed.insert(position, batch);
    }

    /// Closes every open batch and returns a watch on every batch that is open, closed or in
    /// flight now: once all of them have left [`BatchOutcome::Pending`], every record accepted
    /// before this call has completed.
    pub fn close_all_and_watch(&mut self) -> Vec<watch::Receiver<BatchOutcome>> {
        let mut watches = Vec::new();
        let mut closed_partitions = Vec::new();
        for (topic_partition, queue) in &mut self.queues {
            if queue.open.is_some() {
                close_open_batch(queue, *topic_partition);
                closed_partitions.push(*topic_partition);
            }
            watches.extend(queue.in_flight.iter().map(|slot| slot.watch.clone()));
            watches.extend(
                queue
                    .closed
                    .iter()
                    .map(|batch| batch.completion.subscribe()),
            );
        }
        for topic_partition in closed_partitions {
            self.note_batch_closed(topic_partition);
        }
        watches
    }

    /// Returns true when no record is buffered and no batch is in flight.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    fn note_batch_closed(&mut self, topic_partition: TopicPartition) {
        if let Some(sticky) = self.sticky.get_mut(&topic_partition.topic_id) {
            sticky
                .partitioner
                .batch_closed(topic_partition.partition, sticky.partitions);
        }
    }
}

fn close_open_batch(queue: &mut PartitionQueue, topic_partition: TopicPartition) {
    if let Some(open) = queue.open.take() {
        let records_count = open.builder.records_count();
        // A batch sent before it filled (linger, flush) lowers the hint slowly, so one short
        // batch among full ones does not make the next full one grow by copies.
        let decayed = queue.next_batch_bytes - queue.next_batch_bytes / 4;
        queue.next_batch_bytes = open.builder.size_bytes().max(decayed);
        let id = queue.next_id;
        queue.next_id += 1;
        queue.closed.push_back(ReadyBatch {
            topic_partition,
            id,
            records: Bytes::from(open.builder.finish()),
            records_count,
            reserved_bytes: open.reserved_bytes,
            created: open.created,
            retry: None,
            completion: open.completion,
            producer: None,
        });
    }
}

/// The producer's buffer budget in bytes: every accepted record holds its estimated size until
/// its batch completes.
#[derive(Debug)]
pub struct BufferPool {
    semaphore: Semaphore,
    buffer_bytes_max: u64,
}

impl BufferPool {
    /// Creates a pool of `buffer_bytes_max` bytes.
    pub fn new(buffer_bytes_max: u64) -> Self {
        let permits = buffer_bytes_max.min(Semaphore::MAX_PERMITS as u64) as usize;
        Self {
            semaphore: Semaphore::new(permits),
            buffer_bytes_max,
        }
    }

    /// Returns the pool's size.
    pub fn buffer_bytes_max(&self) -> u64 {
        self.buffer_bytes_max
    }

    /// Returns the bytes not reserved now.
    pub fn available_bytes(&self) -> u64 {
        self.semaphore.available_permits() as u64
    }

    /// Reserves `bytes` without waiting: fails with [`ProduceError::BufferFull`] when they are not
    /// free now.
    pub fn try_reserve(&self, bytes: u64) -> Result<(), ProduceError> {
        let permits = self.permits_for(bytes)?;
        match self.semaphore.try_acquire_many(permits) {
            Ok(permit) => {
                permit.forget();
                Ok(())
            }
            Err(TryAcquireError::NoPermits) => Err(ProduceError::BufferFull {
                buffer_bytes_max: self.buffer_bytes_max,
            }),
            Err(TryAcquireError::Closed) => Err(ProduceError::Closed),
        }
    }

    /// Reserves `bytes`, waiting for earlier batches to complete while the buffer is full, at most
    /// `block_ms_max` milliseconds.
    pub async fn reserve(&self, bytes: u64, block_ms_max: u64) -> Result<(), ProduceError> {
        let permits = self.permits_for(bytes)?;
        // Room is usually there: take it without setting up the timed wait.
        if let Ok(permit) = self.semaphore.try_acquire_many(permits) {
            permit.forget();
            return Ok(());
        }
        let acquire = self.semaphore.acquire_many(permits);
        match tokio::time::timeout(Duration::from_millis(block_ms_max), acquire).await {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(())
            }
            Ok(Err(_closed)) => Err(ProduceError::Closed),
            Err(_elapsed) => Err(ProduceError::BufferFullTimeout { block_ms_max }),
        }
    }

    /// Returns `bytes` to the pool, waking senders that wait for room.
    pub fn release(&self, bytes: u64) {
        self.semaphore.add_permits(bytes as usize);
    }

    /// Closes the pool: every waiting and later reservation fails with [`ProduceError::Closed`].
    pub fn close(&self) {
        self.semaphore.close();
    }

    fn permits_for(&self, bytes: u64) -> Result<u32, ProduceError> {
        if bytes > self.buffer_bytes_max {
            return Err(ProduceError::RecordTooLarge {
                record_bytes: bytes,
                limit_bytes: self.buffer_bytes_max,
            });
        }
        u32::try_from(bytes).map_err(|_| ProduceError::RecordTooLarge {
            record_bytes: bytes,
            limit_bytes: u64::from(u32::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_ring::HashRing;
    use crate::partitioner::partition_for_key;
    use weir_proto::batch::{records, BatchIter, BatchLimits};

    const TOPIC: TopicId = 7;

    fn partition(partition: u32) -> TopicPartition {
        TopicPartition {
            topic_id: TOPIC,
            partition,
        }
    }

    fn accumulator(linger_ms: u64, batch_bytes_max: u64) -> Accumulator {
        accumulator_in_flight(linger_ms, batch_bytes_max, 1)
    }

    fn accumulator_in_flight(
        linger_ms: u64,
        batch_bytes_max: u64,
        in_flight_max: usize,
    ) -> Accumulator {
        Accumulator::new(BatchingConfig {
            linger_ms,
            batch_bytes_max,
            partitioning: Partitioning::KeyHash,
            in_flight_max,
        })
    }

    fn acked() -> BatchOutcome {
        BatchOutcome::Acked { base_offset: 0 }
    }

    fn append(acc: &mut Accumulator, at: Instant, partition_number: u32, value: &[u8]) -> Appended {
        let reserved = record_bytes_estimate(None, value, &[]);
        acc.append(
            partition(partition_number),
            at,
            1_000,
            None,
            value,
            &[],
            reserved,
        )
        .expect("record fits")
    }

    fn decoded_values(batch: &ReadyBatch) -> Vec<Vec<u8>> {
        let limits = BatchLimits::default();
        let mut values = Vec::new();
        for item in BatchIter::new(&batch.records, &limits) {
            let (_info, bytes) = item.expect("valid batch");
            for record in records(bytes).expect("valid records") {
                let record = record.expect("valid record");
                values.push(record.value.expect("value").to_vec());
            }
        }
        values
    }

    #[test]
    fn a_record_that_would_overflow_the_batch_closes_it() {
        let value = [b'x'; 20];
        let per_record = record_bytes_estimate(None, &value, &[]);
        let batch_bytes_max = 300;
        let mut acc = accumulator(0, batch_bytes_max);
        let now = Instant::now();
        let mut expected_index = 0;
        let mut closes = 0;
        for _ in 0..40 {
            let appended = append(&mut acc, now, 0, &value);
            if appended.closed_batch {
                closes += 1;
                expected_index = 0;
            }
            assert_eq!(appended.index, expected_index);
            expected_index += 1;
        }
        assert!(
            closes >= 3,
            "40 records of 20 bytes need several 300-byte batches"
        );

        let mut batches = Vec::new();
        let mut ready = Vec::new();
        loop {
            acc.drain_ready(now, true, &mut ready);
            let Some(batch) = ready.pop() else { break };
            let id = batch.id;
            let done = acc.finish(batch, acked());
            assert_eq!(done.len(), 1);
            assert_eq!(done[0].0.id, id);
            batches.extend(done.into_iter().map(|(batch, _)| batch));
        }
        assert_eq!(batches.len(), closes + 1);
        let mut values = Vec::new();
        for (index, batch) in batches.iter().enumerate() {
            let size = batch.records.len() as u64;
            assert!(size <= batch_bytes_max, "batch {index} has {size} bytes");
            if index + 1 < batches.len() {
                // A batch closes only when the next record might not have fit.
                assert!(
                    size + per_record > batch_bytes_max,
                    "batch {index} closed early at {size} bytes"
                );
            }
            let decoded = decoded_values(batch);
            assert_eq!(decoded.len() as u32, batch.records_count);
            values.extend(decoded);
        }
        assert_eq!(
            values,
            vec![value.to_vec(); 40],
            "every record once, in order"
        );
    }

    #[test]
    fn a_record_larger_than_a_batch_is_refused() {
        let mut acc = accumulator(0, 200);
        let value = [0_u8; 200];
        let error = acc
            .append(partition(0), Instant::now(), 0, None, &value, &[], 0)
            .expect_err("too large");
        assert!(matches!(
            error,
            ProduceError::RecordTooLarge {
                limit_bytes: 200,
                ..
            }
        ));
        assert!(acc.is_empty());
    }

    #[test]
    fn an_open_batch_is_ready_once_it_has_lingered() {
        let mut acc = accumulator(50, 1 << 20);
        let start = Instant::now();
        append(&mut acc, start, 0, b"a");
        append(&mut acc, start + Duration::from_millis(10), 0, b"b");
        assert_eq!(
            acc.next_linger_deadline(),
            Some(start + Duration::from_millis(50))
        );

        let mut ready = Vec::new();
        acc.drain_ready(start + Duration::from_millis(49), false, &mut ready);
        assert!(ready.is_empty());
        acc.drain_ready(start + Duration::from_millis(50), false, &mut ready);
        assert_eq!(ready.len(), 1);
        assert_eq!(
            decoded_values(&ready[0]),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(acc.next_linger_deadline(), None);
    }

    #[test]
    fn flush_makes_open_batches_ready_at_once() {
        let mut acc = accumulator(60_000, 1 << 20);
        let now = Instant::now();
        append(&mut acc, now, 0, b"a");
        append(&mut acc, now, 1, b"b");
        let mut ready = Vec::new();
        acc.drain_ready(now, false, &mut ready);
        assert!(ready.is_empty());
        acc.drain_ready(now, true, &mut ready);
        let mut partitions: Vec<u32> = ready
            .iter()
            .map(|batch| batch.topic_partition.partition)
            .collect();
        partitions.sort_unstable();
        assert_eq!(partitions, vec![0, 1]);
    }

    #[test]
    fn a_partition_has_at_most_one_batch_in_flight_and_retries_keep_order() {
        let value = [b'v'; 8];
        let per_record = record_bytes_estimate(None, &value, &[]);
        let mut acc = accumulator(0, BATCH_HEADER_BYTES + per_record);
        let now = Instant::now();
        for _ in 0..3 {
            append(&mut acc, now, 0, &value);
        }
        let mut ready = Vec::new();
        acc.drain_ready(now, false, &mut ready);
        assert_eq!(ready.len(), 1);
        let first = ready.pop().expect("first batch");
        acc.drain_ready(now, true, &mut ready);
        assert!(
            ready.is_empty(),
            "the partition's first batch is still in flight"
        );

        // A retry goes back to the head: the same batch is sent again before the others.
        let first_bytes = first.records.clone();
        acc.requeue(first);
        acc.drain_ready(now, false, &mut ready);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].records, first_bytes);

        let mut sent = 1;
        while let Some(batch) = ready.pop() {
            let _ = batch
                .completion
                .send(BatchOutcome::Acked { base_offset: 0 });
            acc.finish(batch, acked());
            acc.drain_ready(now, true, &mut ready);
            sent += usize::from(!ready.is_empty());
        }
        assert_eq!(sent, 3);
        assert!(acc.is_empty());
    }

    #[test]
    fn several_batches_fly_per_partition_complete_in_order_and_retries_go_first_in_order() {
        let value = [b'v'; 8];
        let per_record = record_bytes_estimate(None, &value, &[]);
        let mut acc = accumulator_in_flight(0, BATCH_HEADER_BYTES + per_record, 3);
        let now = Instant::now();
        for _ in 0..6 {
            append(&mut acc, now, 0, &value);
        }
        let mut ready = Vec::new();
        acc.drain_ready(now, true, &mut ready);
        let ids: Vec<u64> = ready.iter().map(|batch| batch.id).collect();
        assert_eq!(ids, [0, 1, 2], "three in flight, in order");
        let mut more = Vec::new();
        acc.drain_ready(now, true, &mut more);
        assert!(more.is_empty(), "no fourth batch while three are in flight");

        let third = ready.pop().expect("batch 2");
        let second = ready.pop().expect("batch 1");
        let first = ready.pop().expect("batch 0");
        assert!(acc.is_oldest_outstanding(&first));
        assert!(!acc.is_oldest_outstanding(&second));

        // Batch 1 fails and is put back; batch 2's answer (acked) is held behind it.
        acc.requeue(second);
        assert!(acc.finish(third, acked()).is_empty(), "held behind batch 1");
        // Batch 0 is still on the wire: the retry waits, and nothing new is sent.
        acc.drain_ready(now, true, &mut more);
        assert!(more.is_empty());
        // Batch 0 completes alone; now batch 1 goes again, before batch 3.
        let done = acc.finish(first, acked());
        assert_eq!(done.iter().map(|(b, _)| b.id).collect::<Vec<_>>(), [0]);
        acc.drain_ready(now, true, &mut more);
        let ids: Vec<u64> = more.iter().map(|batch| batch.id).collect();
        assert_eq!(ids, [1, 3], "the retry first, then room for one new batch");
        let fourth = more.pop().expect("batch 3");
        let second = more.pop().expect("batch 1 again");
        assert!(acc.is_oldest_outstanding(&second));
        // Batch 1 acked: it and the held batch 2 complete together, in order.
        let done = acc.finish(second, acked());
        assert_eq!(done.iter().map(|(b, _)| b.id).collect::<Vec<_>>(), [1, 2]);
        let done = acc.finish(fourth, acked());
        assert_eq!(done.iter().map(|(b, _)| b.id).collect::<Vec<_>>(), [3]);
        acc.drain_ready(now, true, &mut more);
        let ids: Vec<u64> = more.iter().map(|batch| batch.id).collect();
        assert_eq!(ids, [4, 5]);
        for batch in more.drain(..) {
            assert_eq!(acc.finish(batch, acked()).len(), 1);
        }
        assert!(acc.is_empty());
    }

    #[test]
    fn keyless_records_stick_to_a_partition_until_its_batch_closes() {
        let value = [b'k'; 40];
        let mut acc = accumulator(60_000, 400);
        let now = Instant::now();
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for _ in 0..60 {
            let chosen = acc.choose_partition(TOPIC, 3, None).expect("keyless");
            let appended = append(&mut acc, now, chosen, &value);
            match runs.last_mut() {
                // The record that closes a full batch still lands on the sticky partition (in
                // its next batch); only the record after it moves on.
                Some((partition, count)) if *partition == chosen => *count += 1,
                _ => runs.push((chosen, 1)),
            }
            if appended.closed_batch {
                assert_ne!(
                    acc.choose_partition(TOPIC, 3, None).expect("keyless"),
                    chosen,
                    "closing a batch moves on"
                );
            }
        }
        assert!(runs.len() >= 3, "{runs:?}");
        // Every run but the last fills a batch and then some: the partition changes only then.
        for (partition, count) in &runs[..runs.len() - 1] {
            assert!(
                *count > 1,
                "partition {partition} got a run of {count}: {runs:?}"
            );
        }
        // Consecutive runs visit the partitions in turn.
        for pair in runs.windows(2) {
            assert_eq!(pair[1].0, (pair[0].0 + 1) % 3, "{runs:?}");
        }

        // Keyed records follow the hash, whatever the sticky partition.
        assert_eq!(
            acc.choose_partition(TOPIC, 3, Some(b"foobar")),
            Ok(partition_for_key(b"foobar", 3))
        );
    }

    #[test]
    fn consistent_hashing_places_keyed_records_on_the_ring_and_keeps_keyless_ones_sticky() {
        let mut acc = Accumulator::new(BatchingConfig {
            linger_ms: 60_000,
            batch_bytes_max: 1 << 20,
            partitioning: Partitioning::ConsistentHash { virtual_nodes: 64 },
            in_flight_max: 1,
        });
        let ring = HashRing::new(6, 64).expect("ring");
        for index in 0..500 {
            let key = format!("order-{index}");
            assert_eq!(
                acc.choose_partition(TOPIC, 6, Some(key.as_bytes())),
                Ok(ring.partition_for(key.as_bytes()))
            );
        }
        // Keyless records ignore the ring: they stay on the sticky partition.
        let sticky = acc.choose_partition(TOPIC, 6, None).expect("keyless");
        for _ in 0..10 {
            assert_eq!(acc.choose_partition(TOPIC, 6, None), Ok(sticky));
        }
    }

    #[test]
    fn close_all_and_watch_covers_open_closed_and_in_flight_batches() {
        let mut acc = accumulator(60_000, 1 << 20);
        let now = Instant::now();
        append(&mut acc, now, 0, b"in flight");
        let mut ready = Vec::new();
        acc.drain_ready(now, true, &mut ready);
        append(&mut acc, now, 0, b"open");
        append(&mut acc, now, 1, b"open too");
        let watches = acc.close_all_and_watch();
        assert_eq!(watches.len(), 3);
        assert!(acc.has_closed_batch_waiting());
    }

    #[test]
    fn try_reserve_fails_fast_when_the_buffer_is_full() {
        let pool = BufferPool::new(100);
        pool.try_reserve(60).expect("room");
        pool.try_reserve(40).expect("room");
        assert!(matches!(
            pool.try_reserve(1),
            Err(ProduceError::BufferFull {
                buffer_bytes_max: 100
            })
        ));
        pool.release(40);
        pool.try_reserve(30).expect("room after release");
        assert_eq!(pool.available_bytes(), 10);
        assert!(matches!(
            pool.try_reserve(101),
            Err(ProduceError::RecordTooLarge { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_waits_for_room_and_times_out() {
        let pool = std::sync::Arc::new(BufferPool::new(100));
        pool.reserve(100, 1_000).await.expect("room");

        // With the buffer full, a reservation waits its whole budget and then fails.
        let error = pool.reserve(10, 1_000).await.expect_err("full");
        assert!(matches!(
            error,
            ProduceError::BufferFullTimeout {
                block_ms_max: 1_000
            }
        ));

        // A waiting reservation completes as soon as a batch releases its bytes.
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.reserve(10, 60_000).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        pool.release(10);
        waiter.await.expect("task").expect("reserved after release");
        assert_eq!(pool.available_bytes(), 0);
    }

    #[tokio::test]
    async fn closing_the_pool_fails_waiters() {
        let pool = std::sync::Arc::new(BufferPool::new(10));
        pool.try_reserve(10).expect("room");
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.reserve(5, 60_000).await }
        });
        pool.close();
        let result = waiter.await.expect("task");
        assert!(matches!(result, Err(ProduceError::Closed)));
    }
}
