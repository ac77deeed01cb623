//! Per-partition batching and the producer's bounded buffer.
//!
//! [`Accumulator`] owns every record a producer has accepted but not yet seen acknowledged. Each
//! partition has at most one open batch (a [`BatchBuilder`] that records are appended to
//! directly, so a record costs no allocation of its own), a queue of closed batches waiting to be
//! sent, and at most one batch in flight. Invariants:
//! - a batch never holds more than `batch_bytes_max` bytes (a record that does not fit closes the
//!   open batch and starts the next one; a record that fits in no batch is refused);
//! - per partition, batches leave in the order their records were appended, and a batch handed
//!   to the sender is the only one in flight for its partition until it is acknowledged, failed,
//!   or put back at the head of the queue for a retry, so retries never reorder a partition;
//! - the bytes of every accepted record stay reserved in the [`BufferPool`] until its batch is
//!   acknowledged or has failed, so buffered memory never exceeds `buffer_bytes_max`.
//!
//! The accumulator is synchronous and takes the clock as an argument; the producer drives it under
//! a lock held only for one append or one drain.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{watch, Semaphore, TryAcquireError};
use weir_proto::batch::BatchBuilder;

use crate::error::ProduceError;
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
    /// Watches the batch of this partition that is in flight, if one is.
    in_flight: Option<watch::Receiver<BatchOutcome>>,
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

struct TopicSticky {
    partitioner: StickyPartitioner,
    partitions: u32,
}

/// The per-partition batches of one producer (see the module documentation).
pub struct Accumulator {
    config: BatchingConfig,
    queues: HashMap<TopicPartition, PartitionQueue>,
    /// `next_batch_bytes` of partitions whose queue was dropped when it emptied, so their next
    /// batch still starts at the right capacity; at most one entry per partition written.
    batch_bytes_hints: HashMap<TopicPartition, usize>,
    sticky: HashMap<TopicId, TopicSticky>,
    keyed: KeyPartitioner,
    /// Starts each topic's sticky partition at a different place, so producers spread out.
    sticky_start: u32,
}

impl Accumulator {
    /// Creates an empty accumulator with the given batching limits.
    pub fn new(config: BatchingConfig) -> Self {
        Self {
            config,
            queues: HashMap::new(),
            batch_bytes_hints: HashMap::new(),
            sticky: HashMap::new(),
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
            created: now,
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

    /// Moves the batches that are ready into `ready`: for each partition with nothing in flight,
    /// its oldest closed batch, or its open batch once it has lingered `linger_ms` (or at once
    /// when `flush` is true). Each batch moved is marked in flight for its partition.
    pub fn drain_ready(&mut self, now: Instant, flush: bool, ready: &mut Vec<ReadyBatch>) {
        let linger = Duration::from_millis(self.config.linger_ms);
        let mut closed_partitions = Vec::new();
        for (topic_partition, queue) in &mut self.queues {
            if queue.in_flight.is_some() {
                continue;
            }
            if queue.closed.is_empty() {
                let lingered = queue.open.as_ref().is_some_and(|open| {
                    flush || now.saturating_duration_since(open.created) >= linger
                });
                if !lingered {
                    continue;
                }
                close_open_batch(queue, *topic_partition);
                closed_partitions.push(*topic_partition);
            }
            if let Some(batch) = queue.closed.pop_front() {
                queue.in_flight = Some(batch.completion.subscribe());
                ready.push(batch);
            }
        }
        for topic_partition in closed_partitions {
            self.note_batch_closed(topic_partition);
        }
    }

    /// Returns the earliest instant at which an open batch of a partition with nothing in flight
    /// finishes lingering, or `None` if there is no such batch.
    pub fn next_linger_deadline(&self) -> Option<Instant> {
        let linger = Duration::from_millis(self.config.linger_ms);
        self.queues
            .values()
            .filter(|queue| queue.in_flight.is_none())
            .filter_map(|queue| queue.open.as_ref().map(|open| open.created + linger))
            .min()
    }

    /// Returns true when some partition with nothing in flight has a closed batch waiting.
    pub fn has_closed_batch_waiting(&self) -> bool {
        self.queues
            .values()
            .any(|queue| queue.in_flight.is_none() && !queue.closed.is_empty())
    }

    /// Marks the in-flight batch of `topic_partition` as finished (acknowledged or failed), so the
    /// partition's next batch may be sent.
    pub fn batch_finished(&mut self, topic_partition: TopicPartition) {
        if let Some(queue) = self.queues.get_mut(&topic_partition) {
            queue.in_flight = None;
            if queue.open.is_none() && queue.closed.is_empty() {
                let next_batch_bytes = queue.next_batch_bytes;
                self.queues.remove(&topic_partition);
                if next_batch_bytes > 0 {
                    self.batch_bytes_hints
                        .insert(topic_partition, next_batch_bytes);
                }
            }
        }
    }

    /// Puts an in-flight batch back at the head of its partition's queue so it is sent again
    /// before any later batch of that partition.
    pub fn requeue(&mut self, batch: ReadyBatch) {
        let queue = self.queues.entry(batch.topic_partition).or_default();
        queue.in_flight = None;
        queue.closed.push_front(batch);
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
            watches.extend(queue.in_flight.iter().cloned());
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

    /// Removes every batch that is not in flight and returns them (used to fail them when the
    /// producer shuts down without delivering).
    pub fn take_unsent(&mut self) -> Vec<ReadyBatch> {
        let mut unsent = Vec::new();
        for (topic_partition, queue) in &mut self.queues {
            if queue.open.is_some() {
                close_open_batch(queue, *topic_partition);
            }
            unsent.extend(queue.closed.drain(..));
        }
        self.queues.retain(|_, queue| queue.in_flight.is_some());
        unsent
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
        queue.closed.push_back(ReadyBatch {
            topic_partition,
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
        Accumulator::new(BatchingConfig {
            linger_ms,
            batch_bytes_max,
            partitioning: Partitioning::KeyHash,
        })
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
            acc.batch_finished(batch.topic_partition);
            batches.push(batch);
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
            acc.batch_finished(batch.topic_partition);
            acc.drain_ready(now, true, &mut ready);
            sent += usize::from(!ready.is_empty());
        }
        assert_eq!(sent, 3);
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
