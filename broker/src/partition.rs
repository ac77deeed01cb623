//! A partition as its owning shard holds it: the storage log, the topic it belongs to, and the
//! signal that wakes long-polling fetches.
//!
//! This module owns the mapping from a topic's settings to the storage [`LogConfig`], the
//! directory layout `<data-dir>/topics/<topic_id>-<name>/<partition>`, and the partition's
//! idempotent-producer state ([`Producers`]) with its snapshot files
//! `<offset:020>.snapshot` next to the segments. Invariants: only the owning shard creates a
//! [`Partition`]; `appended` is notified after every append that returned, i.e. after the data
//! is readable under the topic's flush policy; at most one append per producer id is in
//! progress on a partition ([`Producers::claim`]), so a producer's check and record cannot
//! interleave with its own retry. Crash behaviour is the storage log's: recovery on the next
//! open cuts any torn tail; a snapshot is written to a temporary file, fdatasynced, renamed
//! and the directory fsynced, so a crash leaves either the old set of snapshots or the new one
//! (plus a `.tmp` file that the next open removes), and a snapshot past the recovered log end
//! or failing its checksum is skipped in favour of an older one or a scan from the log start.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Poll;

use weir_proto::batch::{BatchHeader, BatchLimits};
use weir_storage::{FlushPolicy, LogConfig, PartitionLog};

use crate::catalog::{TopicEntry, TopicId};
use crate::config::{Config, FlushSetting, TopicConfig};
use crate::notify::Signal;
use crate::producer_state::{decode_snapshot, ProducerTable, ProducerTableConfig};

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
    /// Idempotent-producer state.
    pub producers: Producers,
}

/// Extension of producer-state snapshot files.
pub const SNAPSHOT_EXTENSION: &str = "snapshot";
/// Extension of a snapshot being written (removed at open if a crash left it).
pub const SNAPSHOT_TEMP_EXTENSION: &str = "tmp";

/// The idempotent-producer state of a partition, owned by its shard.
#[derive(Debug, Default)]
pub struct Producers {
    /// Per producer: epoch and last batches.
    pub table: RefCell<ProducerTable>,
    /// Producer ids with an append in progress on this partition.
    busy: RefCell<HashSet<i64>>,
    /// Claims not granted yet, in arrival order, with the ticket each drew.
    waiting: RefCell<VecDeque<(u64, Vec<i64>)>>,
    /// The next claim's ticket.
    next_ticket: Cell<u64>,
    /// Notified when a producer id leaves `busy` or a claim leaves `waiting`.
    released: Signal,
    /// Active segment base offset when the last snapshot was written.
    snapshot_segment: Cell<Option<i64>>,
}

/// A claim waiting in [`Producers::claim`]'s queue; leaves the queue when dropped.
struct QueuedClaim<'a> {
    producers: &'a Producers,
    ticket: u64,
}

impl Drop for QueuedClaim<'_> {
    fn drop(&mut self) {
        self.producers
            .waiting
            .borrow_mut()
            .retain(|(ticket, _)| *ticket != self.ticket);
        self.producers.released.notify();
    }
}

/// Holds producer ids busy on a partition; releases them when dropped.
pub struct ProducerClaim<'a> {
    producers: &'a Producers,
    ids: Vec<i64>,
}

impl Drop for ProducerClaim<'_> {
    fn drop(&mut self) {
        let mut busy = self.producers.busy.borrow_mut();
        for id in &self.ids {
            busy.remove(id);
        }
        drop(busy);
        self.producers.released.notify();
    }
}

impl Producers {
    /// State starting from `table`.
    pub fn new(table: ProducerTable, snapshot_segment: Option<i64>) -> Producers {
        Producers {
            table: RefCell::new(table),
            busy: RefCell::default(),
            waiting: RefCell::default(),
            next_ticket: Cell::new(0),
            released: Signal::default(),
            snapshot_segment: Cell::new(snapshot_segment),
        }
    }

    /// Waits until none of `ids` has an append in progress here, then marks them busy until the
    /// claim is dropped. A retry that arrives while its original is still being appended waits
    /// here and then finds the original in the table.
    ///
    /// Claims on the same producer are granted in the order `claim` was first polled (first
    /// come, first served), so several in-flight batches of one producer are checked and
    /// appended in the order they arrived: a later arrival never takes a released claim ahead
    /// of a claim already waiting for it.
    pub async fn claim(&self, ids: Vec<i64>) -> ProducerClaim<'_> {
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket.wrapping_add(1));
        self.waiting.borrow_mut().push_back((ticket, ids.clone()));
        // Leaves the queue however the wait ends (granted or dropped).
        let _queued = QueuedClaim {
            producers: self,
            ticket,
        };
        futures_lite::future::poll_fn(|context| {
            let seen = self.released.count();
            let busy = self.busy.borrow().iter().any(|id| ids.contains(id))
                || self
                    .waiting
                    .borrow()
                    .iter()
                    .take_while(|(queued, _)| *queued != ticket)
                    .any(|(_, other)| other.iter().any(|id| ids.contains(id)));
            if busy {
                if self.released.changed_since(seen, context.waker()) {
                    context.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
            Poll::Ready(())
        })
        .await;
        self.busy.borrow_mut().extend(ids.iter().copied());
        ProducerClaim {
            producers: self,
            ids,
        }
    }

    /// Whether any producer has an append in progress (then the table may lag the log).
    pub fn any_busy(&self) -> bool {
        !self.busy.borrow().is_empty()
    }

    /// Whether a snapshot is due: the log rolled since the last one.
    pub fn snapshot_due(&self, active_segment_base_offset: i64) -> bool {
        self.snapshot_segment.get() != Some(active_segment_base_offset)
    }

    /// Notes that a snapshot was written while `active_segment_base_offset` was active.
    pub fn snapshot_written(&self, active_segment_base_offset: i64) {
        self.snapshot_segment.set(Some(active_segment_base_offset));
    }
}

/// The path of the snapshot of the producer state below `offset`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_EXTENSION}"))
}

/// Offsets of the snapshots in `dir`, ascending; removes leftover temporary snapshot files.
pub fn list_snapshots(dir: &Path) -> std::io::Result<Vec<i64>> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(&format!(".{SNAPSHOT_EXTENSION}")) {
            if let Ok(offset) = stem.parse::<i64>() {
                offsets.push(offset);
            }
        } else if name.ends_with(&format!(".{SNAPSHOT_EXTENSION}.{SNAPSHOT_TEMP_EXTENSION}")) {
            std::fs::remove_file(&path)?;
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// The newest snapshot in `dir` that is at or below `log_end_offset` and decodes, with the
/// offset it covers. Snapshots past the log end (the log lost a tail they describe) are
/// deleted; damaged ones are skipped (and kept for inspection). Also returns what was wrong
/// with the skipped ones, for the log.
pub fn newest_valid_snapshot(
    dir: &Path,
    log_end_offset: i64,
    config: ProducerTableConfig,
) -> (Option<(ProducerTable, i64)>, Vec<String>) {
    let mut problems = Vec::new();
    let offsets = match list_snapshots(dir) {
        Ok(offsets) => offsets,
        Err(error) => {
            problems.push(format!(
                "cannot list snapshots in {}: {error}",
                dir.display()
            ));
            return (None, problems);
        }
    };
    for offset in offsets.into_iter().rev() {
        let path = snapshot_path(dir, offset);
        if offset > log_end_offset {
            problems.push(format!(
                "{} is past the log end {log_end_offset}; deleted",
                path.display()
            ));
            if let Err(error) = std::fs::remove_file(&path) {
                problems.push(format!("cannot delete {}: {error}", path.display()));
            }
            continue;
        }
        let loaded = std::fs::read(&path)
            .map_err(|error| error.to_string())
            .and_then(|bytes| decode_snapshot(&bytes, config).map_err(|error| error.to_string()));
        match loaded {
            Ok((table, covered)) if covered == offset => return (Some((table, offset)), problems),
            Ok((_, covered)) => problems.push(format!(
                "{} covers offset {covered}, not its name's",
                path.display()
            )),
            Err(error) => problems.push(format!("{}: {error}", path.display())),
        }
    }
    (None, problems)
}

/// Deletes the snapshots below `log_start_offset` except the newest of them (retention removed
/// the segments they were taken at; the newest still spares a scan when nothing newer exists).
pub fn delete_snapshots_below(dir: &Path, log_start_offset: i64) -> std::io::Result<usize> {
    let offsets = list_snapshots(dir)?;
    let below: Vec<i64> = offsets
        .iter()
        .copied()
        .filter(|offset| *offset < log_start_offset)
        .collect();
    let keep_newest = offsets.iter().all(|offset| *offset < log_start_offset);
    let mut deleted = 0;
    let doomed = if keep_newest {
        &below[..below.len().saturating_sub(1)]
    } else {
        &below[..]
    };
    for offset in doomed {
        std::fs::remove_file(snapshot_path(dir, *offset))?;
        deleted += 1;
    }
    Ok(deleted)
}

/// Deletes every snapshot in `dir` (the partition is being deleted), so the log can remove its
/// directory.
pub fn delete_all_snapshots(dir: &Path) -> std::io::Result<()> {
    for offset in list_snapshots(dir)? {
        std::fs::remove_file(snapshot_path(dir, offset))?;
    }
    Ok(())
}

/// Writes `bytes` as the snapshot at `offset`: temporary file, fdatasync, rename, directory
/// fsync, through glommio's io_uring file APIs.
pub async fn write_snapshot(dir: &Path, offset: i64, bytes: Vec<u8>) -> std::io::Result<()> {
    let target = snapshot_path(dir, offset);
    let temp = target.with_extension(format!("{SNAPSHOT_EXTENSION}.{SNAPSHOT_TEMP_EXTENSION}"));
    let io = |error: glommio::GlommioError<()>| std::io::Error::other(error.to_string());
    let file = glommio::io::BufferedFile::create(&temp).await.map_err(io)?;
    let mut bytes = bytes;
    let mut position = 0u64;
    while !bytes.is_empty() {
        let written = file.write_at(bytes.clone(), position).await.map_err(io)?;
        if written == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
        }
        bytes.drain(..written);
        position += written as u64;
    }
    file.fdatasync().await.map_err(io)?;
    file.close().await.map_err(io)?;
    glommio::io::rename(&temp, &target).await.map_err(io)?;
    let directory = glommio::io::Directory::open(dir).await.map_err(io)?;
    directory.sync().await.map_err(io)?;
    directory.close().await.map_err(io)
}

/// Rebuilds the producer table of an opened log: the newest valid snapshot, then the headers of
/// the batches after it (or of the whole log without one). Returns the table, the snapshot
/// offset used (if any) and the problems met. A log that cannot be read to its end (a damaged
/// sealed segment) leaves the table as far as it got: producers it lacks are accepted at any
/// sequence, so the partition stays available and only a retry across the damage can be stored
/// twice.
pub async fn rebuild_producers(
    log: &PartitionLog,
    config: ProducerTableConfig,
    read_bytes_max: u32,
) -> (ProducerTable, Option<i64>, Vec<String>) {
    let (loaded, mut problems) = newest_valid_snapshot(log.dir(), log.log_end_offset(), config);
    let snapshot_offset = loaded.as_ref().map(|(_, offset)| *offset);
    let (mut table, mut offset) = loaded.unwrap_or_else(|| (ProducerTable::new(config), 0));
    offset = offset.max(log.log_start_offset());
    let end = log.log_end_offset();
    while offset < end {
        let read = match log.read(offset, read_bytes_max).await {
            Ok(read) => read,
            Err(error) => {
                problems.push(format!(
                    "the log cannot be read from offset {offset}: {error}"
                ));
                break;
            }
        };
        let before = offset;
        for batch in &read.batches {
            let Some(header) = BatchHeader::view(batch) else {
                break;
            };
            let base_offset = header.base_offset.get();
            let next = base_offset
                .saturating_add(i64::from(header.last_offset_delta.get().max(0)))
                .saturating_add(1);
            // The first batch of a read may start before `offset` (it contains it).
            if next > offset {
                table.replay(header);
                offset = next;
            }
        }
        if offset == before {
            break;
        }
    }
    (table, snapshot_offset, problems)
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
        // Checked by `Config::validate` to fit.
        write_buffer_bytes_max: usize::try_from(config.write_buffer_bytes_max)
            .unwrap_or(usize::MAX),
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
        assert_eq!(log.write_buffer_bytes_max, 16 << 20);
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
    fn a_damaged_or_too_new_snapshot_falls_back_to_an_older_one() {
        use crate::producer_state::{encode_snapshot, ProducerBatch};
        let dir = tempfile::tempdir().unwrap();
        let config = ProducerTableConfig::default();
        let table_at = |offset: i64| {
            let mut table = ProducerTable::new(config);
            let batch = ProducerBatch {
                producer_id: offset,
                epoch: 0,
                first_sequence: 0,
                last_sequence: 0,
            };
            table.record(&batch, offset - 1, offset - 1, 5);
            table
        };
        for offset in [10, 20, 30, 40] {
            std::fs::write(
                snapshot_path(dir.path(), offset),
                encode_snapshot(&table_at(offset), offset),
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join("00000000000000000050.snapshot.tmp"),
            b"partial",
        )
        .unwrap();
        // 40 is past the log end (a lost tail), 30 is damaged, 20 names another offset.
        let mut damaged = std::fs::read(snapshot_path(dir.path(), 30)).unwrap();
        damaged[25] ^= 1;
        std::fs::write(snapshot_path(dir.path(), 30), damaged).unwrap();
        std::fs::rename(snapshot_path(dir.path(), 20), snapshot_path(dir.path(), 25)).unwrap();
        let (loaded, problems) = newest_valid_snapshot(dir.path(), 35, config);
        let (table, offset) = loaded.expect("snapshot 10 is intact");
        assert_eq!(offset, 10);
        assert_eq!(table, table_at(10));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            !snapshot_path(dir.path(), 40).exists(),
            "past the log end: deleted"
        );
        assert_eq!(
            list_snapshots(dir.path()).unwrap(),
            vec![10, 25, 30],
            "tmp removed"
        );
        let (none, _) = newest_valid_snapshot(dir.path(), 5, config);
        assert!(none.is_none(), "every snapshot is past the log end");
        assert_eq!(
            delete_snapshots_below(dir.path(), 100).unwrap(),
            0,
            "all gone above"
        );
    }

    #[test]
    fn claims_on_one_producer_are_granted_in_arrival_order() {
        use std::rc::Rc;
        let order = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let producers = Rc::new(Producers::default());
                let order = Rc::new(RefCell::new(Vec::new()));
                let first = producers.claim(vec![1]).await;
                let mut waiters = Vec::new();
                for batch in 2..=4 {
                    let (producers, order) = (producers.clone(), order.clone());
                    waiters.push(glommio::spawn_local(async move {
                        let _claim = producers.claim(vec![1]).await;
                        order.borrow_mut().push(batch);
                        // Held across a yield, as an append is.
                        futures_lite::future::yield_now().await;
                    }));
                    // Each waiter queues before the next is spawned.
                    futures_lite::future::yield_now().await;
                }
                drop(first);
                // A claim that arrives after the release still queues behind the waiters.
                let late = producers.claim(vec![1]).await;
                order.borrow_mut().push(5);
                drop(late);
                for waiter in waiters {
                    waiter.await;
                }
                assert!(!producers.any_busy());
                let result = order.borrow().clone();
                result
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(order, [2, 3, 4, 5]);
    }

    #[test]
    fn a_producer_is_claimed_by_one_append_at_a_time_and_others_are_not_blocked() {
        use futures_lite::FutureExt;
        use std::rc::Rc;
        let order = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let producers = Rc::new(Producers::default());
                let order = Rc::new(RefCell::new(Vec::new()));
                let first = producers.claim(vec![1, 2]).await;
                assert!(producers.any_busy());
                let retry = {
                    let (producers, order) = (producers.clone(), order.clone());
                    glommio::spawn_local(async move {
                        let _claim = producers.claim(vec![1]).await;
                        order.borrow_mut().push("retry of 1");
                    })
                };
                // Another producer proceeds while 1 and 2 are busy.
                drop(producers.claim(vec![3]).await);
                order.borrow_mut().push("producer 3");
                // However often the retry runs, it cannot pass before the original is done.
                for _ in 0..10 {
                    futures_lite::future::yield_now().await;
                }
                order.borrow_mut().push("original done");
                drop(first);
                let deadline = async {
                    glommio::timer::sleep(std::time::Duration::from_secs(10)).await;
                    panic!("the retry never got its claim");
                };
                retry.or(deadline).await;
                assert!(!producers.any_busy());
                let result = order.borrow().clone();
                result
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(order, ["producer 3", "original done", "retry of 1"]);
    }

    #[test]
    fn retention_deletes_snapshots_below_the_log_start_but_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for offset in [0, 10, 20, 30] {
            std::fs::write(snapshot_path(dir.path(), offset), b"x").unwrap();
        }
        assert_eq!(delete_snapshots_below(dir.path(), 15).unwrap(), 2);
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![20, 30]);
        assert_eq!(delete_snapshots_below(dir.path(), 40).unwrap(), 1);
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![30]);
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
