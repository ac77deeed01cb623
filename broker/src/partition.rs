//! A partition as its owning shard holds it: the storage log, the topic it belongs to, and the
//! signal that wakes long-polling fetches.
//!
//! This module owns the mapping from a topic's settings to the storage [`LogConfig`] and the
//! directory layout `<data-dir>/topics/<topic_id>-<name>/<partition>`. Invariants: only the
//! owning shard creates a [`Partition`]; `appended` is notified after every append that
//! returned, i.e. after the data is readable under the topic's flush policy. Crash behaviour is
//! the storage log's: recovery on the next open cuts any torn tail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_proto::batch::BatchLimits;
use weir_storage::{FlushPolicy, LogConfig, PartitionLog};

use crate::catalog::{TopicEntry, TopicId};
use crate::config::{Config, FlushSetting, TopicConfig};
use crate::notify::Signal;

/// Smallest tail cache a partition gets, whatever the per-shard budget divides to, in bytes.
pub const TAIL_CACHE_PARTITION_BYTES_MIN: u64 = 64 * 1024;
/// Directory under the data directory that holds every topic.
pub const TOPICS_DIR: &str = "topics";

/// A partition's identity: topic id and partition index.
pub type PartitionKey = (TopicId, u32);

/// A partition owned by this shard.
pub struct Partition {
    /// The topic, as the catalog described it when the partition was opened.
    pub topic: Arc<TopicEntry>,
    /// The partition index.
    pub index: u32,
    /// The storage log.
    pub log: PartitionLog,
    /// Notified after every successful append.
    pub appended: Signal,
}

/// The directory of one topic.
pub fn topic_dir(data_dir: &Path, topic: &TopicEntry) -> PathBuf {
    data_dir
        .join(TOPICS_DIR)
        .join(format!("{}-{}", topic.topic_id, topic.name))
}

/// The directory of one partition.
pub fn partition_dir(data_dir: &Path, topic: &TopicEntry, partition: u32) -> PathBuf {
    topic_dir(data_dir, topic).join(partition.to_string())
}

/// The topic id encoded in a topic directory name, if it is one.
pub fn topic_id_of_dir(name: &str) -> Option<TopicId> {
    let (id, _) = name.split_once('-')?;
    id.parse().ok()
}

/// The storage configuration of a partition of a topic with `topic` settings.
///
/// The largest batch is the broker's `batch_bytes_max`, but never more than a segment holds:
/// topics checked by [`TopicConfig::check`] have segments at least that large, while the
/// internal offsets topic has small segments for its small commit records.
pub fn log_config(topic: &TopicConfig, config: &Config, tail_cache_bytes: u64) -> LogConfig {
    let nonzero = |value: u64| (value > 0).then_some(value);
    let segment_batch_bytes_max = u32::try_from(topic.segment_bytes_max).unwrap_or(u32::MAX);
    LogConfig {
        segment_bytes_max: topic.segment_bytes_max,
        segment_age_ms_max: nonzero(topic.segment_ms_max),
        retention_bytes_max: nonzero(topic.retention_bytes_max),
        retention_age_ms_max: nonzero(topic.retention_ms_max),
        flush: match topic.flush {
            FlushSetting::Always => FlushPolicy::Always,
            FlushSetting::Never => FlushPolicy::Never,
            FlushSetting::Interval { interval_ms } => FlushPolicy::Interval { interval_ms },
        },
        batch_limits: BatchLimits {
            batch_bytes_max: config.batch_bytes_max.min(segment_batch_bytes_max),
            ..BatchLimits::default()
        },
        tail_cache_bytes_max: usize::try_from(tail_cache_bytes).unwrap_or(usize::MAX),
        ..LogConfig::default()
    }
}

/// The tail cache each of `owned` partitions gets from the shard budget.
pub fn tail_cache_share(shard_budget_bytes: u64, owned: usize) -> u64 {
    (shard_budget_bytes / owned.max(1) as u64).max(TAIL_CACHE_PARTITION_BYTES_MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_carry_topic_id_and_name() {
        let topic = TopicEntry {
            name: "orders".into(),
            topic_id: 12,
            config: crate::config::TopicConfig {
                partitions: 2,
                flush: FlushSetting::Always,
                retention_bytes_max: 0,
                retention_ms_max: 0,
                segment_bytes_max: 1 << 20,
                segment_ms_max: 0,
            },
        };
        let dir = partition_dir(Path::new("/d"), &topic, 1);
        assert_eq!(dir, PathBuf::from("/d/topics/12-orders/1"));
        assert_eq!(topic_id_of_dir("12-orders"), Some(12));
        assert_eq!(topic_id_of_dir("12-with-dashes"), Some(12));
        assert_eq!(topic_id_of_dir("junk"), None);
    }

    #[test]
    fn log_config_maps_zero_to_unlimited_and_flush_policies() {
        let flags = crate::config::Flags::default();
        let config = Config::resolve(flags, 1).unwrap();
        let mut topic = config.topic_defaults;
        topic.retention_bytes_max = 0;
        topic.retention_ms_max = 5;
        topic.flush = FlushSetting::Interval { interval_ms: 7 };
        let log = log_config(&topic, &config, 1000);
        assert_eq!(log.retention_bytes_max, None);
        assert_eq!(log.retention_age_ms_max, Some(5));
        assert_eq!(log.flush, FlushPolicy::Interval { interval_ms: 7 });
        assert_eq!(log.batch_limits.batch_bytes_max, config.batch_bytes_max);
        assert_eq!(log.tail_cache_bytes_max, 1000);
        assert!(log.validate().is_ok());
    }

    #[test]
    fn every_topic_of_a_default_broker_gets_a_valid_log_config() {
        let config = Config::resolve(crate::config::Flags::default(), 1).unwrap();
        let catalog = crate::catalog::Catalog::default().with_offsets_topic(&config.topic_defaults);
        let (catalog, _) = catalog
            .with_topic(
                "plain",
                config.topic_defaults,
                config.topic_partitions_max,
                config.batch_bytes_max,
                false,
            )
            .unwrap();
        for topic in catalog.topics() {
            let log = log_config(&topic.config, &config, 1 << 20);
            assert_eq!(log.validate(), Ok(()), "{}", topic.name);
            assert!(
                u64::from(log.batch_limits.batch_bytes_max) <= topic.config.segment_bytes_max,
                "{}",
                topic.name
            );
        }
        let plain = catalog.topic("plain").unwrap();
        let log = log_config(&plain.config, &config, 1 << 20);
        assert_eq!(
            log.batch_limits.batch_bytes_max, config.batch_bytes_max,
            "a topic's segments hold the broker's largest batch"
        );
    }

    #[test]
    fn tail_cache_is_divided_with_a_floor() {
        assert_eq!(tail_cache_share(64 << 20, 4), 16 << 20);
        assert_eq!(tail_cache_share(64 << 20, 0), 64 << 20);
        assert_eq!(
            tail_cache_share(1 << 20, 1000),
            TAIL_CACHE_PARTITION_BYTES_MIN
        );
    }
}
