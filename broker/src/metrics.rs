//! Per-shard counters and histograms, their mergeable snapshots, and Prometheus text rendering.
//!
//! Each shard owns one [`ShardMetrics`] and updates it without synchronisation (it is only ever
//! touched by its own executor thread). A scrape asks every shard for a [`MetricsSnapshot`] (a
//! plain `Send` value), merges them and renders the text format with [`render`]. Invariants:
//! counters only grow; histogram buckets are fixed ([`LATENCY_BUCKETS_US`]) so snapshots from
//! different shards add bucket by bucket; a snapshot carries the shard index so per-shard series
//! keep a `shard` label.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Upper bounds of the request latency histogram buckets, in microseconds (the rendered `le`
/// labels are in seconds, as Prometheus expects). A last `+Inf` bucket is implied.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with the fixed [`LATENCY_BUCKETS_US`] buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observation count per bucket (not cumulative); the last entry is the `+Inf` bucket.
    pub bucket_counts: [u64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of all observations, in microseconds.
    pub sum_us: u64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation of `value_us` microseconds.
    pub fn observe(&mut self, value_us: u64) {
        let index = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| value_us <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.bucket_counts[index] += 1;
        self.sum_us = self.sum_us.saturating_add(value_us);
        self.count += 1;
    }

    /// Adds `other`'s observations to this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self
            .bucket_counts
            .iter_mut()
            .zip(other.bucket_counts.iter())
        {
            *mine += theirs;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.count += other.count;
    }
}

/// Bytes and records that went in and out of one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicTraffic {
    /// Batch bytes appended.
    pub bytes_in: u64,
    /// Records appended.
    pub records_in: u64,
    /// Batch bytes served by fetches.
    pub bytes_out: u64,
    /// Records served by fetches (counted from batch headers, whole batches).
    pub records_out: u64,
}

impl TopicTraffic {
    fn merge(&mut self, other: &TopicTraffic) {
        self.bytes_in += other.bytes_in;
        self.records_in += other.records_in;
        self.bytes_out += other.bytes_out;
        self.records_out += other.records_out;
    }
}

/// Storage counters summed over a shard's partitions at snapshot time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageCounters {
    /// Reads served from the tail cache.
    pub tail_cache_hits: u64,
    /// Reads that went to a segment file.
    pub tail_cache_misses: u64,
    /// `fdatasync` calls issued.
    pub fsync_count: u64,
    /// Time spent in `fdatasync`, in microseconds.
    pub fsync_time_us: u64,
    /// Appends that found their partition's write buffer full and waited for the disk.
    pub write_buffer_full_count: u64,
    /// Time those appends waited, in microseconds.
    pub write_buffer_full_time_us: u64,
}

/// Idempotent-producer counters of a shard's partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerCounters {
    /// Retried batches answered with their original offsets instead of being stored again.
    pub duplicates: u64,
    /// Batches refused with `out_of_order_sequence`.
    pub sequence_errors: u64,
    /// Batches refused with `invalid_producer_epoch` (fenced).
    pub fenced: u64,
    /// Producers evicted from a full table (least recently used first).
    pub evicted: u64,
    /// Producers forgotten after being idle for longer than the expiry.
    pub expired: u64,
    /// Producers remembered now, over all partitions of the shard (a gauge).
    pub remembered: u64,
}

/// One shard's counters at one instant; `Send`, so it can cross to the shard that serves the
/// scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// The shard these numbers come from.
    pub shard: usize,
    /// Traffic per topic name.
    pub topics: BTreeMap<String, TopicTraffic>,
    /// Request latency per api name.
    pub request_latency: BTreeMap<&'static str, Histogram>,
    /// Requests answered with an error, per api name.
    pub request_errors: BTreeMap<&'static str, u64>,
    /// Requests this shard forwarded to the owning shard (cross-shard crosstalk).
    pub forwarded_requests: u64,
    /// Forwarded requests this shard served for other shards.
    pub forwarded_served: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Requests being handled now (decoded, response not yet produced).
    pub requests_inflight: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections closed at accept because the shard was at its connection limit.
    pub connections_rejected: u64,
    /// Connections closed because of a protocol violation (bad frame, oversized frame, ...).
    pub protocol_errors: u64,
    /// Times a connection stopped reading because the shard's produce memory was exhausted.
    pub produce_throttled: u64,
    /// Produce payload bytes held in memory now.
    pub produce_memory_bytes: u64,
    /// Partitions this shard owns now.
    pub partitions_owned: u64,
    /// Storage counters of the shard's partitions.
    pub storage: StorageCounters,
    /// Idempotent-producer counters of the shard's partitions.
    pub producer: ProducerCounters,
    /// Consumer groups this shard's coordinator expired (no members for the retention time).
    pub groups_expired: u64,
}

/// A shard's live metrics; interior mutability because every handler holds `&ShardMetrics`.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    topics: RefCell<BTreeMap<String, TopicTraffic>>,
    request_latency: RefCell<BTreeMap<&'static str, Histogram>>,
    request_errors: RefCell<BTreeMap<&'static str, u64>>,
    /// Requests forwarded to another shard.
    pub forwarded_requests: Cell<u64>,
    /// Forwarded requests served for another shard.
    pub forwarded_served: Cell<u64>,
    /// Connections open now.
    pub connections_open: Cell<u64>,
    /// Requests being handled now.
    pub requests_inflight: Cell<u64>,
    /// Connections accepted since start.
    pub connections_accepted: Cell<u64>,
    /// Connections refused at the limit.
    pub connections_rejected: Cell<u64>,
    /// Connections closed for protocol violations.
    pub protocol_errors: Cell<u64>,
    /// Times reading stopped for lack of produce memory.
    pub produce_throttled: Cell<u64>,
    /// Idempotent-producer counters (`remembered` is filled in at snapshot time).
    pub producer: Cell<ProducerCounters>,
    /// Consumer groups expired by this shard's coordinator.
    pub groups_expired: Cell<u64>,
}

/// Updates the idempotent-producer counters of `metrics`.
pub fn count_producer(metrics: &ShardMetrics, update: impl FnOnce(&mut ProducerCounters)) {
    let mut counters = metrics.producer.get();
    update(&mut counters);
    metrics.producer.set(counters);
}

/// Adds one to a counter cell.
pub fn increment(cell: &Cell<u64>) {
    cell.set(cell.get() + 1);
}

impl ShardMetrics {
    /// Records a request's latency and whether it failed.
    pub fn observe_request(&self, api: &'static str, latency_us: u64, failed: bool) {
        self.request_latency
            .borrow_mut()
            .entry(api)
            .or_default()
            .observe(latency_us);
        if failed {
            *self.request_errors.borrow_mut().entry(api).or_default() += 1;
        }
    }

    /// Records an append of `bytes` bytes holding `records` records to `topic`.
    pub fn record_in(&self, topic: &str, bytes: u64, records: u64) {
        self.with_topic(topic, |traffic| {
            traffic.bytes_in += bytes;
            traffic.records_in += records;
        });
    }

    /// Records a fetch that served `bytes` bytes holding `records` records from `topic`.
    pub fn record_out(&self, topic: &str, bytes: u64, records: u64) {
        self.with_topic(topic, |traffic| {
            traffic.bytes_out += bytes;
            traffic.records_out += records;
        });
    }

    /// Forgets a deleted topic's traffic so its series disappear.
    pub fn forget_topic(&self, topic: &str) {
        self.topics.borrow_mut().remove(topic);
    }

    fn with_topic(&self, topic: &str, update: impl FnOnce(&mut TopicTraffic)) {
        let mut topics = self.topics.borrow_mut();
        if let Some(traffic) = topics.get_mut(topic) {
            update(traffic);
            return;
        }
        let mut traffic = TopicTraffic::default();
        update(&mut traffic);
        topics.insert(topic.to_string(), traffic);
    }

    /// Copies the counters into a snapshot; the caller fills in gauges it owns elsewhere.
    pub fn snapshot(&self, shard: usize) -> MetricsSnapshot {
        MetricsSnapshot {
            shard,
            topics: self.topics.borrow().clone(),
            request_latency: self.request_latency.borrow().clone(),
            request_errors: self.request_errors.borrow().clone(),
            forwarded_requests: self.forwarded_requests.get(),
            forwarded_served: self.forwarded_served.get(),
            connections_open: self.connections_open.get(),
            requests_inflight: self.requests_inflight.get(),
            connections_accepted: self.connections_accepted.get(),
            connections_rejected: self.connections_rejected.get(),
            protocol_errors: self.protocol_errors.get(),
            produce_throttled: self.produce_throttled.get(),
            producer: self.producer.get(),
            groups_expired: self.groups_expired.get(),
            ..MetricsSnapshot::default()
        }
    }
}

/// A per-topic series: name, help text, and the value it reads.
type TopicSeries = (&'static str, &'static str, fn(&TopicTraffic) -> u64);
/// A per-shard series: name, type, help text, and the value it reads.
type ShardSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&MetricsSnapshot) -> String,
);

/// Renders shard snapshots in the Prometheus text exposition format (version 0.0.4).
///
/// Per-topic traffic and request latency are summed over shards; per-shard series carry a
/// `shard` label.
pub fn render(snapshots: &[MetricsSnapshot]) -> String {
    let mut out = String::with_capacity(4096);
    let mut topics: BTreeMap<&str, TopicTraffic> = BTreeMap::new();
    let mut latency: BTreeMap<&'static str, Histogram> = BTreeMap::new();
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    for snapshot in snapshots {
        for (topic, traffic) in &snapshot.topics {
            topics.entry(topic.as_str()).or_default().merge(traffic);
        }
        for (api, histogram) in &snapshot.request_latency {
            latency.entry(api).or_default().merge(histogram);
        }
        for (api, count) in &snapshot.request_errors {
            *errors.entry(api).or_default() += count;
        }
    }

    header(
        &mut out,
        "weir_shards",
        "gauge",
        "Shards (executors) running.",
    );
    let _ = writeln!(out, "weir_shards {}", snapshots.len());

    let topic_series: [TopicSeries; 4] = [
        (
            "weir_topic_bytes_in_total",
            "Batch bytes appended to the topic.",
            |t| t.bytes_in,
        ),
        (
            "weir_topic_records_in_total",
            "Records appended to the topic.",
            |t| t.records_in,
        ),
        (
            "weir_topic_bytes_out_total",
            "Batch bytes served from the topic by fetches.",
            |t| t.bytes_out,
        ),
        (
            "weir_topic_records_out_total",
            "Records served from the topic by fetches.",
            |t| t.records_out,
        ),
    ];
    for (name, help, value) in topic_series {
        header(&mut out, name, "counter", help);
        for (topic, traffic) in &topics {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\"}} {}",
                escape(topic),
                value(traffic)
            );
        }
    }

    render_latency(&mut out, &latency);
    header(
        &mut out,
        "weir_request_errors_total",
        "counter",
        "Requests answered with an error code.",
    );
    for (api, count) in &errors {
        let _ = writeln!(out, "weir_request_errors_total{{api=\"{api}\"}} {count}");
    }

    let shard_series: [ShardSeries; 24] = [
        (
            "weir_forwarded_requests_total",
            "counter",
            "Requests forwarded to the owning shard (cross-shard crosstalk).",
            |s| s.forwarded_requests.to_string(),
        ),
        (
            "weir_forwarded_served_total",
            "counter",
            "Forwarded requests served for another shard.",
            |s| s.forwarded_served.to_string(),
        ),
        (
            "weir_connections_open",
            "gauge",
            "Client connections open.",
            |s| s.connections_open.to_string(),
        ),
        (
            "weir_requests_inflight",
            "gauge",
            "Requests being handled (decoded, response not yet produced).",
            |s| s.requests_inflight.to_string(),
        ),
        (
            "weir_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            |s| s.connections_accepted.to_string(),
        ),
        (
            "weir_connections_rejected_total",
            "counter",
            "Connections closed at accept because the shard was at connections-max.",
            |s| s.connections_rejected.to_string(),
        ),
        (
            "weir_protocol_errors_total",
            "counter",
            "Connections closed for a protocol violation (bad, oversized or truncated frame).",
            |s| s.protocol_errors.to_string(),
        ),
        (
            "weir_produce_throttled_total",
            "counter",
            "Times a connection stopped reading because produce memory was exhausted.",
            |s| s.produce_throttled.to_string(),
        ),
        (
            "weir_produce_memory_bytes",
            "gauge",
            "Produce payload bytes held in memory.",
            |s| s.produce_memory_bytes.to_string(),
        ),
        (
            "weir_producer_duplicate_batches_total",
            "counter",
            "Retried idempotent batches answered with their original offsets, not stored again.",
            |s| s.producer.duplicates.to_string(),
        ),
        (
            "weir_producer_sequence_errors_total",
            "counter",
            "Idempotent batches refused with out_of_order_sequence (a gap or an overlap).",
            |s| s.producer.sequence_errors.to_string(),
        ),
        (
            "weir_producer_fenced_total",
            "counter",
            "Idempotent batches refused with invalid_producer_epoch (an older epoch).",
            |s| s.producer.fenced.to_string(),
        ),
        (
            "weir_producer_evictions_total",
            "counter",
            "Producers evicted from a full per-partition table (least recently used first).",
            |s| s.producer.evicted.to_string(),
        ),
        (
            "weir_groups_expired_total",
            "counter",
            "Consumer groups removed with their offsets after having no members for group-offsets-retention-ms.",
            |s| s.groups_expired.to_string(),
        ),
        (
            "weir_producer_expirations_total",
            "counter",
            "Producers forgotten after being idle longer than producer-idle-ms-max.",
            |s| s.producer.expired.to_string(),
        ),
        (
            "weir_producers_remembered",
            "gauge",
            "Idempotent producers remembered over the shard's partitions.",
            |s| s.producer.remembered.to_string(),
        ),
        (
            "weir_partitions_owned",
            "gauge",
            "Partitions whose log this shard owns.",
            |s| s.partitions_owned.to_string(),
        ),
        (
            "weir_tail_cache_hits_total",
            "counter",
            "Log reads served from the tail cache.",
            |s| s.storage.tail_cache_hits.to_string(),
        ),
        (
            "weir_tail_cache_misses_total",
            "counter",
            "Log reads that went to a segment file.",
            |s| s.storage.tail_cache_misses.to_string(),
        ),
        (
            "weir_fsync_total",
            "counter",
            "fdatasync calls on partition logs.",
            |s| s.storage.fsync_count.to_string(),
        ),
        (
            "weir_fsync_seconds_total",
            "counter",
            "Time spent in fdatasync on partition logs, in seconds.",
            |s| seconds(s.storage.fsync_time_us),
        ),
        (
            "weir_write_buffer_full_total",
            "counter",
            "Appends that found their partition's write buffer full and waited for the disk.",
            |s| s.storage.write_buffer_full_count.to_string(),
        ),
        (
            "weir_write_buffer_full_seconds_total",
            "counter",
            "Time appends waited for room in a full write buffer, in seconds.",
            |s| seconds(s.storage.write_buffer_full_time_us),
        ),
        (
            "weir_fsync_seconds_average",
            "gauge",
            "Mean fdatasync latency since start, in seconds.",
            |s| {
                seconds(
                    s.storage
                        .fsync_time_us
                        .checked_div(s.storage.fsync_count)
                        .unwrap_or(0),
                )
            },
        ),
    ];
    for (name, kind, help, value) in shard_series {
        header(&mut out, name, kind, help);
        for snapshot in snapshots {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{}\"}} {}",
                snapshot.shard,
                value(snapshot)
            );
        }
    }
    out
}

/// One consumer group's series, computed by its coordinator shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSeries {
    /// The group's id.
    pub group: String,
    /// Members now.
    pub members: u32,
    /// Rebalances started since the broker started.
    pub rebalances_total: u64,
    /// Lag per partition (bounded by `group-lag-metrics-partitions-max`).
    pub partitions: Vec<GroupPartitionSeries>,
}

/// One partition's lag for a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPartitionSeries {
    /// The topic's name.
    pub topic: String,
    /// The partition's index.
    pub partition: u32,
    /// Records between the committed offset and the log end.
    pub lag_records: i64,
    /// The lag in milliseconds at the recent consume rate; `None` when unknown.
    pub lag_ms: Option<i64>,
}

/// Appends the consumer-group series to a rendered exposition: members and rebalances per
/// group, lag in records and (when the consume rate is known) seconds per group and partition.
pub fn render_groups(out: &mut String, groups: &[GroupSeries]) {
    header(
        out,
        "weir_group_members",
        "gauge",
        "Members of the consumer group now.",
    );
    for group in groups {
        let _ = writeln!(
            out,
            "weir_group_members{{group=\"{}\"}} {}",
            escape(&group.group),
            group.members
        );
    }
    header(
        out,
        "weir_group_rebalances_total",
        "counter",
        "Rebalances the consumer group started since the broker started.",
    );
    for group in groups {
        let _ = writeln!(
            out,
            "weir_group_rebalances_total{{group=\"{}\"}} {}",
            escape(&group.group),
            group.rebalances_total
        );
    }
    header(
        out,
        "weir_group_lag_records",
        "gauge",
        "Records between the group's committed offset and the partition's log end.",
    );
    for group in groups {
        for partition in &group.partitions {
            let _ = writeln!(
                out,
                "weir_group_lag_records{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                escape(&group.group),
                escape(&partition.topic),
                partition.partition,
                partition.lag_records
            );
        }
    }
    header(
        out,
        "weir_group_lag_seconds",
        "gauge",
        "The lag at the group's recent consume rate, in seconds (absent when the rate is unknown).",
    );
    for group in groups {
        for partition in &group.partitions {
            let Some(lag_ms) = partition.lag_ms else {
                continue;
            };
            let _ = writeln!(
                out,
                "weir_group_lag_seconds{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}.{:03}",
                escape(&group.group),
                escape(&partition.topic),
                partition.partition,
                lag_ms / 1000,
                lag_ms % 1000
            );
        }
    }
}

fn render_latency(out: &mut String, latency: &BTreeMap<&'static str, Histogram>) {
    let name = "weir_request_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from a request's decoding to its response being queued, per api.",
    );
    for (api, histogram) in latency {
        let mut cumulative = 0u64;
        for (bound_us, count) in LATENCY_BUCKETS_US
            .iter()
            .zip(histogram.bucket_counts.iter())
        {
            cumulative += count;
            let _ = writeln!(
                out,
                "{name}_bucket{{api=\"{api}\",le=\"{}\"}} {cumulative}",
                seconds(*bound_us)
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{api=\"{api}\",le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(
            out,
            "{name}_sum{{api=\"{api}\"}} {}",
            seconds(histogram.sum_us)
        );
        let _ = writeln!(out, "{name}_count{{api=\"{api}\"}} {}", histogram.count);
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Microseconds as decimal seconds without floating-point rounding surprises.
fn seconds(us: u64) -> String {
    let whole = us / 1_000_000;
    let fraction = us % 1_000_000;
    if fraction == 0 {
        return whole.to_string();
    }
    let text = format!("{whole}.{fraction:06}");
    text.trim_end_matches('0').to_string()
}

/// Escapes a label value as the text format requires (backslash, quote, newline).
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_merge() {
        let mut first = Histogram::default();
        for value in [50, 100, 101, 20_000_000] {
            first.observe(value);
        }
        assert_eq!(first.bucket_counts[0], 2, "<= 100us");
        assert_eq!(first.bucket_counts[1], 1, "<= 250us");
        assert_eq!(first.bucket_counts[LATENCY_BUCKETS_US.len()], 1, "+Inf");
        assert_eq!(first.count, 4);
        assert_eq!(first.sum_us, 20_000_251);
        let mut second = Histogram::default();
        second.observe(300);
        second.merge(&first);
        assert_eq!(second.count, 5);
        assert_eq!(second.bucket_counts[2], 1);
        assert_eq!(second.bucket_counts[0], 2);
    }

    #[test]
    fn seconds_are_exact_decimals() {
        let cases = [
            (0, "0"),
            (100, "0.0001"),
            (250_000, "0.25"),
            (1_000_000, "1"),
            (2_500_000, "2.5"),
        ];
        for (us, text) in cases {
            assert_eq!(seconds(us), text);
        }
    }

    #[test]
    fn render_sums_topics_and_latency_and_labels_shards() {
        let first = ShardMetrics::default();
        first.record_in("orders", 1000, 10);
        first.record_out("orders", 400, 4);
        first.observe_request("produce", 120, false);
        first.observe_request("produce", 3_000, true);
        increment(&first.forwarded_requests);
        let second = ShardMetrics::default();
        second.record_in("orders", 500, 5);
        second.record_in("we\"ird", 1, 1);
        second.observe_request("produce", 90, false);
        let mut snapshot_two = second.snapshot(1);
        snapshot_two.storage = StorageCounters {
            tail_cache_hits: 7,
            tail_cache_misses: 3,
            fsync_count: 4,
            fsync_time_us: 2_000,
            write_buffer_full_count: 2,
            write_buffer_full_time_us: 1_500,
        };
        let text = render(&[first.snapshot(0), snapshot_two]);

        for line in [
            "weir_shards 2",
            "weir_topic_bytes_in_total{topic=\"orders\"} 1500",
            "weir_topic_records_in_total{topic=\"orders\"} 15",
            "weir_topic_bytes_out_total{topic=\"orders\"} 400",
            "weir_topic_records_out_total{topic=\"orders\"} 4",
            "weir_topic_bytes_in_total{topic=\"we\\\"ird\"} 1",
            "weir_request_duration_seconds_bucket{api=\"produce\",le=\"0.0001\"} 1",
            "weir_request_duration_seconds_bucket{api=\"produce\",le=\"0.00025\"} 2",
            "weir_request_duration_seconds_bucket{api=\"produce\",le=\"0.005\"} 3",
            "weir_request_duration_seconds_bucket{api=\"produce\",le=\"+Inf\"} 3",
            "weir_request_duration_seconds_count{api=\"produce\"} 3",
            "weir_request_duration_seconds_sum{api=\"produce\"} 0.00321",
            "weir_request_errors_total{api=\"produce\"} 1",
            "weir_forwarded_requests_total{shard=\"0\"} 1",
            "weir_forwarded_requests_total{shard=\"1\"} 0",
            "weir_tail_cache_hits_total{shard=\"1\"} 7",
            "weir_fsync_total{shard=\"1\"} 4",
            "weir_fsync_seconds_total{shard=\"1\"} 0.002",
            "weir_fsync_seconds_average{shard=\"1\"} 0.0005",
            "weir_write_buffer_full_total{shard=\"1\"} 2",
            "weir_write_buffer_full_seconds_total{shard=\"1\"} 0.0015",
            "# TYPE weir_request_duration_seconds histogram",
            "# TYPE weir_forwarded_requests_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing line {line:?} in:\n{text}"
            );
        }
        // Every sample line is `name{labels} value` or `name value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample {line:?}");
        }
    }

    #[test]
    fn forgetting_a_topic_drops_its_series() {
        let metrics = ShardMetrics::default();
        metrics.record_in("gone", 1, 1);
        metrics.forget_topic("gone");
        assert!(!render(&[metrics.snapshot(0)]).contains("gone"));
    }
}
