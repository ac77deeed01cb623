//! The load itself: producer tasks that follow the schedule and consumer tasks that check what
//! comes back.
//!
//! Each producer has its own [`Cluster`] and [`Producer`]. It builds its value once, rewrites
//! the [`ValueHeader`] per message and hands the record to `Producer::enqueue` (which copies it
//! into the open batch). Records of one batch complete together, so the producer keeps each
//! batch's records as one group (their intended send times, in [`Unacknowledged`]) and passes
//! only the batch's first delivery to its acknowledger task. The acknowledger awaits the
//! batches in the order they were opened, reads the clock once when each completes, and sends
//! that completion time back; the producer then records every record of the batch at
//! `completion - intended`, so each record's produce-ack latency is measured exactly as if it
//! had been awaited on its own. Deliveries of one partition complete in order, so only a batch
//! of another partition that completes earlier than the one awaited is recorded late (an upper
//! bound). The producer stops sending while `unacked_messages_max` messages are unacknowledged:
//! that is the closed loop's bound.
//!
//! Each consumer has its own cluster and is assigned partitions round-robin, positioned at the
//! log end before the first message is sent. For every (partition, producer) stream it expects
//! sequences 0, 1, 2, … and counts repeats, gaps and foreign values; once the producers are done
//! it knows how many messages each stream should hold and stops when it has them or when the
//! drain timeout passes, counting what never came as lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};
use weir_client::{
    ClientConfig, Cluster, Consumer, ConsumerConfig, Delivery, Producer, ProducerConfig, SeekTo,
};

use super::header::{ValueHeader, HEADER_BYTES};
use super::pacer::Pacer;
use super::schedule::{global_index, partition_of, producer_share, Mode, Schedule};

/// The largest latency a histogram records exactly; longer ones count as this.
pub const LATENCY_NS_MAX: u64 = 600 * 1_000_000_000;
/// Significant decimal digits of every latency histogram.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// The longest single consumer poll, so the end of the run is noticed soon.
const POLL_MS_MAX: u64 = 100;
/// The byte that fills a value after its header.
const FILLER_BYTE: u8 = 0xA5;

/// When the producers stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many messages in all.
    Messages(u64),
    /// After this long (open loop: after the messages the schedule holds before it).
    Duration(Duration),
}

/// Everything the load needs, decided before it starts.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The bootstrap address.
    pub broker: String,
    /// The topic.
    pub topic: String,
    /// The topic's partition count.
    pub partitions: u32,
    /// Producer tasks.
    pub producers: u32,
    /// Consumer tasks (0: produce only).
    pub consumers: u32,
    /// Bytes of each value, header included.
    pub message_bytes: usize,
    /// How every producer batches and acknowledges.
    pub producer_config: ProducerConfig,
    /// When producers stop.
    pub stop: Stop,
    /// The open-loop schedule, or `None` for a closed loop.
    pub schedule: Option<Schedule>,
    /// Open loop: the shortest wait between a producer's sends (see `--pacing-quantum-us`).
    pub pacing_quantum: Duration,
    /// How producers spread over partitions.
    pub mode: Mode,
    /// `keys[p]` places a record on partition `p`.
    pub keys: Arc<Vec<Vec<u8>>>,
    /// The most messages one producer has sent and not seen acknowledged.
    pub unacked_messages_max: usize,
    /// How long consumers wait for missing messages after the producers are done.
    pub drain_timeout: Duration,
    /// The most bytes one fetch returns per partition.
    pub partition_fetch_bytes_max: u32,
}

/// Counters the progress display reads while the load runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages acknowledged (or failed) so far.
    pub acknowledged: AtomicU64,
    /// Messages consumed so far.
    pub consumed: AtomicU64,
}

/// What the producers did.
#[derive(Debug)]
pub struct ProduceOutcome {
    /// Messages handed to `enqueue`.
    pub sent: u64,
    /// Messages acknowledged.
    pub acknowledged: u64,
    /// Messages whose delivery failed.
    pub failed: u64,
    /// The first delivery error.
    pub first_error: Option<String>,
    /// From the epoch to the last acknowledgement.
    pub elapsed: Duration,
    /// Produce-ack latency in nanoseconds, from the intended send time.
    pub latency_ns: Histogram<u64>,
}

/// What the consumers saw.
#[derive(Debug)]
pub struct ConsumeOutcome {
    /// Records received.
    pub received: u64,
    /// Records that arrived in sequence, each once.
    pub in_order: u64,
    /// Records whose sequence was already seen (a repeat or a reordering).
    pub duplicated: u64,
    /// Records sent and acknowledged-or-not that never arrived in sequence.
    pub lost: u64,
    /// Records that are not bench messages of this run (bad header, unknown producer, or a
    /// sequence beyond what was sent).
    pub foreign: u64,
    /// From the epoch to the last record received.
    pub elapsed: Duration,
    /// End-to-end latency in nanoseconds, from the intended send time to receipt.
    pub latency_ns: Histogram<u64>,
}

impl ConsumeOutcome {
    /// Whether every sent message arrived exactly once and in order.
    pub fn is_exact(&self) -> bool {
        self.duplicated == 0 && self.lost == 0 && self.foreign == 0
    }
}

/// The outcome of a whole load.
#[derive(Debug)]
pub struct LoadOutcome {
    /// The producers' side.
    pub produce: ProduceOutcome,
    /// The consumers' side, if there were consumers.
    pub consume: Option<ConsumeOutcome>,
}

/// A new, empty latency histogram.
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

fn nanoseconds_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

async fn connect(broker: &str, role: &str) -> Result<Arc<Cluster>> {
    let client = ClientConfig {
        client_id: format!("weir-bench-{role}"),
        ..ClientConfig::new(broker.to_string())
    };
    Cluster::connect(client)
        .await
        .with_context(|| format!("{role} cannot connect to {broker}"))
}

/// Runs the load: sets up every consumer and producer, starts the clock, and waits for both
/// sides to finish.
pub async fn run(plan: &LoadPlan, progress: Arc<Progress>) -> Result<LoadOutcome> {
    let mut consumers = Vec::new();
    for consumer_index in 0..plan.consumers {
        consumers.push(prepare_consumer(plan, consumer_index).await?);
    }
    let mut producers = Vec::new();
    for producer_index in 0..plan.producers {
        let cluster = connect(&plan.broker, &format!("producer-{producer_index}")).await?;
        // Learn the topic's metadata before the clock starts.
        cluster.topic(&plan.topic).await?;
        producers.push(Producer::new(cluster, plan.producer_config)?);
    }

    let epoch = Instant::now();
    let (expected_sender, expected_receiver) = watch::channel::<Option<Arc<Vec<Vec<u64>>>>>(None);
    let mut consumer_tasks = Vec::new();
    for (consumer, partitions) in consumers {
        let stream = ConsumerStreams::new(&partitions, plan.partitions, plan.producers);
        consumer_tasks.push(tokio::spawn(run_consumer(
            consumer,
            stream,
            epoch,
            expected_receiver.clone(),
            plan.drain_timeout,
            progress.clone(),
        )));
    }
    let mut producer_tasks = Vec::new();
    for (producer_index, producer) in producers.into_iter().enumerate() {
        let producer_index = u32::try_from(producer_index).context("producer index fits u32")?;
        producer_tasks.push(tokio::spawn(run_producer(
            plan.clone(),
            producer,
            producer_index,
            epoch,
            progress.clone(),
        )));
    }

    let mut produce = ProduceOutcome {
        sent: 0,
        acknowledged: 0,
        failed: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latency_ns: latency_histogram(),
    };
    let mut expected = Vec::with_capacity(producer_tasks.len());
    let mut producer_failure = None;
    for task in producer_tasks {
        match task.await.context("a producer task panicked")? {
            Ok(result) => {
                produce.sent += result.sent_per_partition.iter().sum::<u64>();
                produce.acknowledged += result.acknowledged;
                produce.failed += result.failed;
                if produce.first_error.is_none() {
                    produce.first_error = result.first_error;
                }
                produce.elapsed = produce.elapsed.max(result.last_acknowledged);
                produce.latency_ns.add(&result.latency_ns)?;
                expected.push(result.sent_per_partition);
            }
            Err(error) => {
                producer_failure.get_or_insert(error);
                expected.push(vec![0; plan.partitions as usize]);
            }
        }
    }
    // Consumers learn what to expect, and stop once they have it.
    let _ = expected_sender.send(Some(Arc::new(expected)));
    if let Some(error) = producer_failure {
        for task in &consumer_tasks {
            task.abort();
        }
        return Err(error);
    }

    let consume = if consumer_tasks.is_empty() {
        None
    } else {
        Some(join_consumers(consumer_tasks).await?)
    };
    Ok(LoadOutcome { produce, consume })
}

struct ProducerResult {
    sent_per_partition: Vec<u64>,
    acknowledged: u64,
    failed: u64,
    first_error: Option<String>,
    last_acknowledged: Duration,
    latency_ns: Histogram<u64>,
}

/// What the acknowledger reports for one batch, in the order the batches were handed to it.
struct Settled {
    /// When the batch's completion was seen, from the epoch.
    completed_ns: u64,
    /// The batch's outcome, shared by all its records.
    result: Result<(), String>,
}

/// The most emptied groups an [`Unacknowledged`] keeps to reuse their allocations.
const SPARE_GROUPS_MAX: usize = 64;

/// One producer's messages sent and not yet settled, grouped by batch, and the counts and
/// latencies of those settled so far.
struct Unacknowledged {
    /// The intended send times of each batch's records, oldest batch first: the order in which
    /// the acknowledger reports them.
    groups: VecDeque<Vec<u64>>,
    /// The number of batches settled so far: the group number of `groups[0]`.
    settled_groups: u64,
    /// Per partition, the number of the group its records join while they land in the same
    /// batch.
    open_group: Vec<Option<u64>>,
    /// Records in `groups`.
    messages: usize,
    /// Emptied groups kept for reuse, at most [`SPARE_GROUPS_MAX`].
    spare: Vec<Vec<u64>>,
    acknowledged: u64,
    failed: u64,
    first_error: Option<String>,
    last_acknowledged: Duration,
    latency_ns: Histogram<u64>,
    progress: Arc<Progress>,
}

impl Unacknowledged {
    fn new(partitions: u32, progress: Arc<Progress>) -> Unacknowledged {
        Unacknowledged {
            groups: VecDeque::new(),
            settled_groups: 0,
            open_group: vec![None; partitions as usize],
            messages: 0,
            spare: Vec::new(),
            acknowledged: 0,
            failed: 0,
            first_error: None,
            last_acknowledged: Duration::ZERO,
            latency_ns: latency_histogram(),
            progress,
        }
    }

    /// Adds a record just enqueued, placed at `index_in_batch` of a batch of `partition`.
    /// Returns true when the record opened a new group, whose delivery the acknowledger must
    /// watch; false when it joined the batch of the record before it in its partition, whose
    /// delivery is already watched.
    fn add(&mut self, partition: u32, index_in_batch: u32, intended_ns: u64) -> bool {
        self.messages += 1;
        let partition = partition as usize;
        if partition >= self.open_group.len() {
            self.open_group.resize(partition + 1, None);
        }
        // A record joins its partition's open group when its index follows the group's last
        // one: the same batch, since a batch's records have consecutive indexes from 0 and all of
        // this producer's records pass here in enqueue order. A settled group is gone: its
        // batch was closed, so no later record lands in it.
        let open = self.open_group[partition]
            .and_then(|group| group.checked_sub(self.settled_groups))
            .and_then(|index| self.groups.get_mut(usize::try_from(index).ok()?));
        if let Some(group) = open {
            if index_in_batch as usize == group.len() {
                group.push(intended_ns);
                return false;
            }
        }
        let mut group = self.spare.pop().unwrap_or_default();
        group.push(intended_ns);
        self.open_group[partition] = Some(self.settled_groups + self.groups.len() as u64);
        self.groups.push_back(group);
        true
    }

    /// Records the oldest batch's outcome for each of its records.
    fn settle(&mut self, settled: Settled) {
        let Some(mut group) = self.groups.pop_front() else {
            return;
        };
        self.settled_groups += 1;
        let count = group.len() as u64;
        self.messages -= group.len();
        match settled.result {
            Ok(()) => {
                self.acknowledged += count;
                for &intended_ns in &group {
                    self.latency_ns
                        .saturating_record(settled.completed_ns.saturating_sub(intended_ns).max(1));
                }
                self.last_acknowledged = self
                    .last_acknowledged
                    .max(Duration::from_nanos(settled.completed_ns));
            }
            Err(error) => {
                self.failed += count;
                self.first_error.get_or_insert(error);
            }
        }
        self.progress
            .acknowledged
            .fetch_add(count, Ordering::Relaxed);
        if self.spare.len() < SPARE_GROUPS_MAX {
            group.clear();
            self.spare.push(group);
        }
    }
}

/// The producer's ends of the channels to and from its acknowledger.
struct AcknowledgerLink {
    /// The first delivery of each batch, in the order the batches were opened.
    batches: mpsc::Sender<Delivery>,
    /// Each batch's completion, in the same order.
    settled: mpsc::Receiver<Settled>,
}

async fn run_producer(
    plan: LoadPlan,
    producer: Producer,
    producer_index: u32,
    epoch: Instant,
    progress: Arc<Progress>,
) -> Result<ProducerResult> {
    // Neither channel ever waits: each holds at most one entry per unacknowledged batch, and
    // there are at most `unacked_messages_max` of those.
    let (batches, batch_receiver) = mpsc::channel(plan.unacked_messages_max);
    let (settled_sender, settled) = mpsc::channel(plan.unacked_messages_max);
    let acknowledger = tokio::spawn(acknowledge(batch_receiver, settled_sender, epoch));
    let mut link = AcknowledgerLink { batches, settled };
    let mut unacknowledged = Unacknowledged::new(plan.partitions, progress);
    let sent = produce_messages(
        &plan,
        &producer,
        producer_index,
        epoch,
        &mut link,
        &mut unacknowledged,
    )
    .await;
    // Send what lingers, then settle everything the acknowledger reports until it ends.
    producer.flush().await;
    let AcknowledgerLink {
        batches,
        mut settled,
    } = link;
    drop(batches);
    while let Some(batch) = settled.recv().await {
        unacknowledged.settle(batch);
    }
    acknowledger
        .await
        .context("a producer's acknowledger panicked")?;
    producer.close().await;
    let sent_per_partition = sent?;
    Ok(ProducerResult {
        sent_per_partition,
        acknowledged: unacknowledged.acknowledged,
        failed: unacknowledged.failed,
        first_error: unacknowledged.first_error,
        last_acknowledged: unacknowledged.last_acknowledged,
        latency_ns: unacknowledged.latency_ns,
    })
}

/// Sends one producer's messages; returns how many went to each partition.
async fn produce_messages(
    plan: &LoadPlan,
    producer: &Producer,
    producer_index: u32,
    epoch: Instant,
    link: &mut AcknowledgerLink,
    unacknowledged: &mut Unacknowledged,
) -> Result<Vec<u64>> {
    let mut sequences = vec![0u64; plan.partitions as usize];
    let mut value = vec![FILLER_BYTE; plan.message_bytes.max(HEADER_BYTES)];
    let limit = match (plan.stop, plan.schedule) {
        (Stop::Messages(total), _) => Some(producer_share(total, plan.producers, producer_index)),
        (Stop::Duration(duration), Some(schedule)) => {
            let total =
                schedule.messages_before(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
            Some(producer_share(total, plan.producers, producer_index))
        }
        (Stop::Duration(_), None) => None,
    };
    let deadline_ns = match plan.stop {
        Stop::Duration(duration) => u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
        Stop::Messages(_) => u64::MAX,
    };
    // Open loop: sub-millisecond waits, so the generator itself sends on time (see `pacer`).
    let pacing_quantum_ns = u64::try_from(plan.pacing_quantum.as_nanos()).unwrap_or(u64::MAX);
    let mut pacer = match plan.schedule {
        Some(_) => Some(Pacer::new().context("cannot create the open-loop send timer")?),
        None => None,
    };
    let mut message_index: u64 = 0;
    loop {
        if limit.is_some_and(|limit| message_index >= limit) {
            break;
        }
        while unacknowledged.messages >= plan.unacked_messages_max {
            let settled = link
                .settled
                .recv()
                .await
                .context("a producer's acknowledger stopped early")?;
            unacknowledged.settle(settled);
        }
        let now_ns = nanoseconds_since(epoch);
        let intended_ns = match plan.schedule {
            Some(schedule) => {
                let intended_ns = schedule.intended_ns(global_index(
                    producer_index,
                    plan.producers,
                    message_index,
                ));
                if let Some(pacer) = pacer.as_mut().filter(|_| intended_ns > now_ns) {
                    // At least one quantum per wait: each wake-up sends every message due by
                    // then, so a high rate costs at most one wake-up per quantum, and no message
                    // goes out more than a quantum (plus the wake-up latency) late.
                    let wake_ns = intended_ns.max(now_ns.saturating_add(pacing_quantum_ns));
                    pacer
                        .sleep_until(epoch + Duration::from_nanos(wake_ns))
                        .await
                        .context("the open-loop send timer failed")?;
                }
                intended_ns
            }
            None if now_ns >= deadline_ns => break,
            None => now_ns,
        };
        let partition = partition_of(plan.mode, producer_index, message_index, plan.partitions);
        let sequence = &mut sequences[partition as usize];
        ValueHeader {
            producer: producer_index,
            sequence: *sequence,
            intended_ns,
        }
        .encode(&mut value);
        *sequence += 1;
        let delivery = producer
            .enqueue(
                &plan.topic,
                Some(&plan.keys[partition as usize]),
                &value,
                &[],
            )
            .await
            .with_context(|| format!("producer {producer_index} cannot enqueue"))?;
        debug_assert_eq!(delivery.partition(), partition);
        if unacknowledged.add(delivery.partition(), delivery.index_in_batch(), intended_ns) {
            link.batches
                .send(delivery)
                .await
                .context("a producer's acknowledger stopped early")?;
            // Once per batch, settle what has completed, so the progress display moves.
            while let Ok(settled) = link.settled.try_recv() {
                unacknowledged.settle(settled);
            }
        }
        message_index += 1;
    }
    Ok(sequences)
}

/// Awaits each batch's first delivery in order and reports when it completed and how.
async fn acknowledge(
    mut batches: mpsc::Receiver<Delivery>,
    settled: mpsc::Sender<Settled>,
    epoch: Instant,
) {
    while let Some(delivery) = batches.recv().await {
        let result = delivery.wait().await;
        let completed_ns = nanoseconds_since(epoch);
        let report = Settled {
            completed_ns,
            result: result.map(|_| ()).map_err(|error| error.to_string()),
        };
        if settled.send(report).await.is_err() {
            return;
        }
    }
}

/// Connects consumer `consumer_index`, assigns its partitions and positions them at the log
/// end, so it reads exactly what this run produces.
async fn prepare_consumer(plan: &LoadPlan, consumer_index: u32) -> Result<(Consumer, Vec<u32>)> {
    let cluster = connect(&plan.broker, &format!("consumer-{consumer_index}")).await?;
    let config = ConsumerConfig {
        fetch_max_wait_ms: u32::try_from(POLL_MS_MAX).unwrap_or(u32::MAX),
        partition_fetch_bytes_max: plan.partition_fetch_bytes_max,
        fetch_bytes_max: plan
            .partition_fetch_bytes_max
            .max(ConsumerConfig::default().fetch_bytes_max),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(cluster, config);
    let partitions: Vec<u32> = (0..plan.partitions)
        .filter(|partition| partition % plan.consumers == consumer_index)
        .collect();
    consumer.assign(&plan.topic, &partitions).await?;
    for &partition in &partitions {
        consumer
            .seek(&plan.topic, partition, SeekTo::Latest)
            .await?;
    }
    Ok((consumer, partitions))
}

/// Waits for every consumer task and adds their outcomes up: counts summed, the longest
/// elapsed time, the latency histograms merged.
async fn join_consumers(
    tasks: Vec<tokio::task::JoinHandle<Result<ConsumeOutcome>>>,
) -> Result<ConsumeOutcome> {
    let mut consume = ConsumeOutcome {
        received: 0,
        in_order: 0,
        duplicated: 0,
        lost: 0,
        foreign: 0,
        elapsed: Duration::ZERO,
        latency_ns: latency_histogram(),
    };
    for task in tasks {
        let result = task.await.context("a consumer task panicked")??;
        consume.received += result.received;
        consume.in_order += result.in_order;
        consume.duplicated += result.duplicated;
        consume.lost += result.lost;
        consume.foreign += result.foreign;
        consume.elapsed = consume.elapsed.max(result.elapsed);
        consume.latency_ns.add(&result.latency_ns)?;
    }
    Ok(consume)
}

/// Reads the topic as it is, with no producers: every consumer reads its partitions from their
/// first retained record to the log end they had when the run started, as fast as it can.
///
/// This measures a consumer alone: from the tail cache when the topic fits in it (a topic just
/// written by `weir bench --keep-topic`), else from the segment files. The records are checked
/// as bench messages of up to `producers_max` producers (sequences in order per partition and
/// producer); end-to-end latency means nothing for records written before the run and is not
/// recorded. A consumer that sees nothing new for `drain_timeout` stops and counts the records
/// it did not reach as lost.
pub async fn read_existing(
    plan: &LoadPlan,
    producers_max: u32,
    progress: Arc<Progress>,
) -> Result<LoadOutcome> {
    let mut readers = Vec::new();
    for consumer_index in 0..plan.consumers {
        readers.push(prepare_reader(plan, consumer_index).await?);
    }
    let epoch = Instant::now();
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|(consumer, ends)| {
            let partitions: Vec<u32> = ends.iter().map(|&(partition, _)| partition).collect();
            let streams = ConsumerStreams::new(&partitions, plan.partitions, producers_max);
            tokio::spawn(run_reader(
                consumer,
                plan.topic.clone(),
                ends,
                streams,
                epoch,
                plan.drain_timeout,
                progress.clone(),
            ))
        })
        .collect();
    let consume = join_consumers(tasks).await?;
    Ok(LoadOutcome {
        produce: ProduceOutcome {
            sent: 0,
            acknowledged: 0,
            failed: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            latency_ns: latency_histogram(),
        },
        consume: Some(consume),
    })
}

/// Connects reader `consumer_index`, assigns its partitions, and positions each at its first
/// retained record; returns the consumer and each partition's log end offset at this moment.
async fn prepare_reader(
    plan: &LoadPlan,
    consumer_index: u32,
) -> Result<(Consumer, Vec<(u32, i64)>)> {
    let (mut consumer, partitions) = prepare_consumer(plan, consumer_index).await?;
    let mut ends = Vec::with_capacity(partitions.len());
    for &partition in &partitions {
        let end = consumer
            .position(&plan.topic, partition)
            .context("an assigned partition has a position after a seek")?;
        consumer
            .seek(&plan.topic, partition, SeekTo::Earliest)
            .await?;
        ends.push((partition, end));
    }
    Ok((consumer, ends))
}

async fn run_reader(
    mut consumer: Consumer,
    topic: String,
    ends: Vec<(u32, i64)>,
    mut streams: ConsumerStreams,
    epoch: Instant,
    idle_timeout: Duration,
    progress: Arc<Progress>,
) -> Result<ConsumeOutcome> {
    let mut last_received = Duration::ZERO;
    let mut last_progress = Instant::now();
    let remaining = |consumer: &Consumer| -> u64 {
        ends.iter()
            .map(|&(partition, end)| {
                let position = consumer.position(&topic, partition).unwrap_or(0);
                u64::try_from(end - position).unwrap_or(0)
            })
            .sum()
    };
    while remaining(&consumer) > 0 && last_progress.elapsed() < idle_timeout {
        let records = consumer.poll(Duration::from_millis(POLL_MS_MAX)).await?;
        if records.is_empty() {
            continue;
        }
        for record in &records {
            streams.observe(
                record.partition,
                record.value.as_deref().unwrap_or_default(),
            );
        }
        last_progress = Instant::now();
        last_received = Duration::from_nanos(nanoseconds_since(epoch));
        progress
            .consumed
            .fetch_add(records.len() as u64, Ordering::Relaxed);
    }
    Ok(ConsumeOutcome {
        received: streams.received,
        in_order: streams.in_order,
        duplicated: streams.duplicated,
        lost: streams.skipped + remaining(&consumer),
        foreign: streams.foreign,
        elapsed: last_received,
        latency_ns: latency_histogram(),
    })
}

/// The next expected sequence of every (partition, producer) stream one consumer reads.
#[derive(Debug, Clone)]
pub struct ConsumerStreams {
    /// `local[p]` is the index of partition `p` among this consumer's, if it is one of them.
    local: Vec<Option<usize>>,
    partitions: Vec<u32>,
    producers: u32,
    /// `next[local * producers + producer]`.
    next: Vec<u64>,
    /// Counts so far.
    pub received: u64,
    /// Records that arrived in sequence.
    pub in_order: u64,
    /// Sequences seen before.
    pub duplicated: u64,
    /// Sequences skipped over.
    pub skipped: u64,
    /// Values that are not bench messages of this run's producers and partitions.
    pub foreign: u64,
}

impl ConsumerStreams {
    /// Streams for `partitions` (of a topic with `partition_count`), each from `producers`.
    pub fn new(partitions: &[u32], partition_count: u32, producers: u32) -> ConsumerStreams {
        let mut local = vec![None; partition_count as usize];
        for (index, &partition) in partitions.iter().enumerate() {
            local[partition as usize] = Some(index);
        }
        ConsumerStreams {
            local,
            partitions: partitions.to_vec(),
            producers,
            next: vec![0; partitions.len() * producers as usize],
            received: 0,
            in_order: 0,
            duplicated: 0,
            skipped: 0,
            foreign: 0,
        }
    }

    /// Checks one received value of `partition`; returns its header if it is a bench message.
    pub fn observe(&mut self, partition: u32, value: &[u8]) -> Option<ValueHeader> {
        self.received += 1;
        let slot = self
            .local
            .get(partition as usize)
            .copied()
            .flatten()
            .zip(ValueHeader::decode(value).ok())
            .filter(|(_, header)| header.producer < self.producers);
        let Some((local, header)) = slot else {
            self.foreign += 1;
            return None;
        };
        let next = &mut self.next[local * self.producers as usize + header.producer as usize];
        if header.sequence == *next {
            self.in_order += 1;
            *next += 1;
        } else if header.sequence < *next {
            self.duplicated += 1;
        } else {
            self.skipped += header.sequence - *next;
            self.in_order += 1;
            *next = header.sequence + 1;
        }
        Some(header)
    }

    /// Whether every stream reached the count `expected[producer][partition]`.
    pub fn is_complete(&self, expected: &[Vec<u64>]) -> bool {
        self.shortfall_and_excess(expected) == (0, 0)
    }

    /// Messages still missing from each stream's expected count, and sequences received beyond
    /// it.
    pub fn shortfall_and_excess(&self, expected: &[Vec<u64>]) -> (u64, u64) {
        let mut shortfall = 0;
        let mut excess = 0;
        for (local, &partition) in self.partitions.iter().enumerate() {
            for producer in 0..self.producers as usize {
                let want = expected
                    .get(producer)
                    .and_then(|counts| counts.get(partition as usize))
                    .copied()
                    .unwrap_or(0);
                let next = self.next[local * self.producers as usize + producer];
                shortfall += want.saturating_sub(next);
                excess += next.saturating_sub(want);
            }
        }
        (shortfall, excess)
    }
}

async fn run_consumer(
    mut consumer: Consumer,
    mut streams: ConsumerStreams,
    epoch: Instant,
    mut expected: watch::Receiver<Option<Arc<Vec<Vec<u64>>>>>,
    drain_timeout: Duration,
    progress: Arc<Progress>,
) -> Result<ConsumeOutcome> {
    let mut latency_ns = latency_histogram();
    let mut last_received = Duration::ZERO;
    let mut drain_deadline: Option<Instant> = None;
    let final_counts = loop {
        let known = expected.borrow_and_update().clone();
        if let Some(counts) = &known {
            if streams.is_complete(counts) {
                break counts.clone();
            }
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + drain_timeout);
            if Instant::now() >= deadline {
                break counts.clone();
            }
        }
        let records = consumer.poll(Duration::from_millis(POLL_MS_MAX)).await?;
        if records.is_empty() {
            continue;
        }
        let now_ns = nanoseconds_since(epoch);
        for record in &records {
            let value = record.value.as_deref().unwrap_or_default();
            if let Some(header) = streams.observe(record.partition, value) {
                latency_ns.saturating_record(now_ns.saturating_sub(header.intended_ns).max(1));
            }
        }
        last_received = Duration::from_nanos(now_ns);
        progress
            .consumed
            .fetch_add(records.len() as u64, Ordering::Relaxed);
    };
    let (shortfall, excess) = streams.shortfall_and_excess(&final_counts);
    Ok(ConsumeOutcome {
        received: streams.received,
        in_order: streams.in_order,
        duplicated: streams.duplicated,
        lost: streams.skipped + shortfall,
        foreign: streams.foreign + excess,
        elapsed: last_received,
        latency_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(producer: u32, sequence: u64) -> Vec<u8> {
        let mut value = vec![0u8; HEADER_BYTES + 4];
        ValueHeader {
            producer,
            sequence,
            intended_ns: 5,
        }
        .encode(&mut value);
        value
    }

    fn settled(completed_ns: u64) -> Settled {
        Settled {
            completed_ns,
            result: Ok(()),
        }
    }

    #[test]
    fn records_of_one_batch_share_a_group_and_each_gets_its_own_latency() {
        let progress = Arc::new(Progress::default());
        let mut unacknowledged = Unacknowledged::new(2, progress.clone());
        // (partition, index in batch, intended ns, opens a group)
        let records = [
            (0, 0, 10, true),
            (0, 1, 20, false),
            (1, 0, 25, true),
            (0, 2, 30, false),
            (1, 1, 35, false),
            // Partition 0's next batch.
            (0, 0, 40, true),
        ];
        for (partition, index, intended_ns, opens) in records {
            assert_eq!(
                unacknowledged.add(partition, index, intended_ns),
                opens,
                "{partition}/{index}"
            );
        }
        assert_eq!(unacknowledged.messages, 6);

        // The first batch (partition 0, three records) completes at 100.
        unacknowledged.settle(settled(100));
        assert_eq!(unacknowledged.acknowledged, 3);
        assert_eq!(unacknowledged.messages, 3);
        assert_eq!(unacknowledged.latency_ns.len(), 3);
        assert_eq!(unacknowledged.latency_ns.min(), 70);
        assert_eq!(unacknowledged.latency_ns.max(), 90);
        // The second (partition 1, two records) fails: both records fail.
        unacknowledged.settle(Settled {
            completed_ns: 120,
            result: Err("broker said no".to_string()),
        });
        assert_eq!(unacknowledged.failed, 2);
        assert_eq!(
            unacknowledged.first_error.as_deref(),
            Some("broker said no")
        );
        // A record of partition 1 after its batch settled starts a new group.
        assert!(unacknowledged.add(1, 0, 130));
        unacknowledged.settle(settled(150));
        unacknowledged.settle(settled(160));
        assert_eq!(unacknowledged.acknowledged, 5);
        assert_eq!(unacknowledged.messages, 0);
        assert_eq!(unacknowledged.latency_ns.max(), 110);
        assert_eq!(unacknowledged.last_acknowledged, Duration::from_nanos(160));
        assert_eq!(progress.acknowledged.load(Ordering::Relaxed), 7);
        // Nothing left: a stray report changes nothing.
        unacknowledged.settle(settled(170));
        assert_eq!(unacknowledged.acknowledged + unacknowledged.failed, 7);
    }

    #[test]
    fn streams_in_sequence_are_complete_and_exact() {
        // This consumer owns partitions 1 and 3 of 4; two producers.
        let mut streams = ConsumerStreams::new(&[1, 3], 4, 2);
        for sequence in 0..3 {
            for producer in 0..2 {
                assert!(streams.observe(1, &value(producer, sequence)).is_some());
            }
            assert!(streams.observe(3, &value(0, sequence)).is_some());
        }
        let expected = vec![vec![0, 3, 0, 3], vec![0, 3, 0, 0]];
        assert!(streams.is_complete(&expected));
        assert_eq!(streams.received, 9);
        assert_eq!(streams.in_order, 9);
        assert_eq!(
            (streams.duplicated, streams.skipped, streams.foreign),
            (0, 0, 0)
        );
    }

    #[test]
    fn repeats_gaps_and_foreign_values_are_counted() {
        let mut streams = ConsumerStreams::new(&[0], 2, 1);
        streams.observe(0, &value(0, 0));
        streams.observe(0, &value(0, 0)); // a repeat
        streams.observe(0, &value(0, 3)); // 1 and 2 skipped
        streams.observe(0, b"not a bench value at all!"); // foreign
        streams.observe(0, &value(9, 0)); // no such producer
        streams.observe(1, &value(0, 0)); // not this consumer's partition
        assert_eq!(streams.duplicated, 1);
        assert_eq!(streams.skipped, 2);
        assert_eq!(streams.foreign, 3);
        // Expecting 6: two more are missing; expecting 2: two were beyond what was sent.
        assert_eq!(streams.shortfall_and_excess(&[vec![6, 0]]), (2, 0));
        assert_eq!(streams.shortfall_and_excess(&[vec![2, 0]]), (0, 2));
        assert!(!streams.is_complete(&[vec![6, 0]]));
    }
}
