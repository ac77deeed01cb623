//! Idempotent-producer state of one partition: per producer id, its epoch and the sequence ranges
//! and offsets of its last [`BATCHES_REMEMBERED`] batches, plus the snapshot file format that
//! lets a partition rebuild the table without reading its whole log.
//!
//! This module is sans-I/O: [`ProducerTable::check`] decides what a produced batch is (new,
//! duplicate, or refused), [`ProducerTable::record`] remembers a batch once it is in the log,
//! [`ProducerTable::replay`] rebuilds from stored batch headers, and [`encode_snapshot`] /
//! [`decode_snapshot`] turn the table into bytes and back. The owning shard does the I/O.
//!
//! Invariants: only the partition's owning shard touches its table (no locks); a batch is
//! recorded only after the log accepted it, so the table never remembers a batch the log does
//! not hold (a crash loses nothing here that a replay of the log cannot give back); per producer
//! the remembered batches are in log order, at most [`BATCHES_REMEMBERED`] of them, and each
//! starts at the sequence after the previous one's last (within one epoch); the table holds at
//! most `producers_max` producers (the least recently used one is evicted to make room) and
//! forgets a producer idle for longer than `producer_idle_ms_max`.
//!
//! Rules, as Kafka applies them to an idempotent (non-transactional) producer:
//! - an epoch below the remembered one is fenced (`invalid_producer_epoch`);
//! - a newer epoch resets the producer's sequences: its first batch must have sequence 0;
//! - a batch whose sequence range equals a remembered one is a duplicate (a retry): it is not
//!   stored again and is answered with the original offsets;
//! - a batch starting right after the last remembered sequence is appended;
//! - anything else is `out_of_order_sequence` (a gap or an overlap) and nothing is stored;
//! - a producer the table does not know (new, evicted, expired, or whose batches retention
//!   removed) is accepted at any sequence, like Kafka since 2.5 (KIP-360): after its state was
//!   dropped the broker cannot tell a gap from a legitimate continuation;
//! - sequences wrap from `i32::MAX` to 0.

use std::collections::{HashMap, VecDeque};

use weir_proto::batch::BatchHeader;
use weir_proto::wire::ErrorCode;

/// Batches remembered per producer, as in Kafka: a producer with at most this many requests in
/// flight per partition always finds its retried batch among them.
pub const BATCHES_REMEMBERED: usize = 5;

/// Default bound on producers remembered per partition.
pub const PRODUCERS_PER_PARTITION_MAX_DEFAULT: usize = 10_000;

/// Default idle time after which a producer is forgotten: one day, Kafka's
/// `producer.id.expiration.ms` default.
pub const PRODUCER_IDLE_MS_MAX_DEFAULT: u64 = 24 * 60 * 60 * 1000;

/// Limits of one partition's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerTableConfig {
    /// Most producers remembered; the least recently used one is evicted beyond it.
    pub producers_max: usize,
    /// A producer not seen for this long is forgotten, in milliseconds.
    pub producer_idle_ms_max: u64,
}

impl Default for ProducerTableConfig {
    fn default() -> Self {
        ProducerTableConfig {
            producers_max: PRODUCERS_PER_PARTITION_MAX_DEFAULT,
            producer_idle_ms_max: PRODUCER_IDLE_MS_MAX_DEFAULT,
        }
    }
}

/// The producer fields of one batch, read from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// The producer id (≥ 0).
    pub producer_id: i64,
    /// The producer epoch.
    pub epoch: i16,
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record (wrapped past `i32::MAX`).
    pub last_sequence: i32,
}

impl ProducerBatch {
    /// The producer fields of a batch header, or `None` for a batch without a producer id.
    pub fn from_header(header: &BatchHeader) -> Option<ProducerBatch> {
        let producer_id = header.producer_id.get();
        if producer_id < 0 {
            return None;
        }
        let first_sequence = header.base_sequence.get();
        Some(ProducerBatch {
            producer_id,
            epoch: header.producer_epoch.get(),
            first_sequence,
            last_sequence: increment_sequence(
                first_sequence,
                header.last_offset_delta.get().max(0),
            ),
        })
    }
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0 as Kafka does.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of its first record.
    pub first_sequence: i32,
    /// Sequence of its last record.
    pub last_sequence: i32,
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// When it was appended (broker wall clock; a replayed batch's `maxTimestamp`), in ms.
    pub timestamp_ms: i64,
}

/// What the table knows of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The newest epoch seen.
    pub epoch: i16,
    /// The last batches of that epoch, oldest first.
    pub batches: VecDeque<BatchMetadata>,
    /// When the producer last appended, in ms (drives expiry and eviction).
    pub last_used_ms: i64,
}

/// What to do with a produced batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Store it, then [`ProducerTable::record`] it.
    Append,
    /// A retry of a stored batch: answer with its original offsets and store nothing.
    Duplicate {
        /// Offset of the original's first record.
        base_offset: i64,
        /// Offset of the original's last record.
        last_offset: i64,
    },
}

/// Why a batch of an idempotent producer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// The epoch is older than the newest one seen: another instance fenced this producer.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current_epoch}")]
    Fenced {
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The newest epoch seen.
        current_epoch: i16,
    },
    /// The batch does not continue the producer's sequence.
    #[error(
        "producer {producer_id} epoch {epoch}: sequence {first_sequence} is out of order, \
         expected {expected_sequence}"
    )]
    OutOfOrder {
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The batch's first sequence.
        first_sequence: i32,
        /// The sequence the next batch must start at.
        expected_sequence: i32,
    },
}

impl SequenceError {
    /// The wire code for this refusal.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            SequenceError::Fenced { .. } => ErrorCode::InvalidProducerEpoch,
            SequenceError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequence,
        }
    }
}

/// The idempotent-producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerTable {
    config: ProducerTableConfig,
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerTable {
    /// An empty table with these limits.
    pub fn new(config: ProducerTableConfig) -> ProducerTable {
        ProducerTable {
            config,
            producers: HashMap::new(),
        }
    }

    /// The number of producers remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// What the table knows of `producer_id`.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Decides what `batch` is, without changing the table.
    pub fn check(&self, batch: &ProducerBatch) -> Result<Verdict, SequenceError> {
        check_entry(self.producers.get(&batch.producer_id), batch)
    }

    /// Checks the batches of one produce entry in order, as if each accepted one had been
    /// stored, without changing the table: the verdict of every batch, or the first refusal.
    pub fn check_all(&self, batches: &[ProducerBatch]) -> Result<Vec<Verdict>, SequenceError> {
        if let [batch] = batches {
            // The common case (one batch per partition per request): nothing to simulate.
            return self.check(batch).map(|verdict| vec![verdict]);
        }
        let mut pending: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut verdicts = Vec::with_capacity(batches.len());
        for batch in batches {
            let entry = pending
                .get(&batch.producer_id)
                .or_else(|| self.producers.get(&batch.producer_id));
            let verdict = check_entry(entry, batch)?;
            if verdict == Verdict::Append {
                let mut next = entry.cloned().unwrap_or_else(|| empty_entry(batch.epoch));
                // Offsets are not known before the append; the dry run needs only sequences.
                push_batch(&mut next, batch, -1, -1, 0);
                pending.insert(batch.producer_id, next);
            }
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }

    /// Remembers a batch the log accepted at `base_offset..=last_offset`. Returns whether a
    /// producer was evicted to make room.
    pub fn record(
        &mut self,
        batch: &ProducerBatch,
        base_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> bool {
        let evicted = if self.producers.contains_key(&batch.producer_id) {
            false
        } else {
            self.make_room()
        };
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| empty_entry(batch.epoch));
        push_batch(entry, batch, base_offset, last_offset, now_ms);
        evicted
    }

    /// Applies a stored batch while rebuilding from the log, from its header alone: no checks
    /// (the log is the truth), a newer epoch resets the producer's batches. Returns whether a
    /// producer was evicted.
    pub fn replay(&mut self, header: &BatchHeader) -> bool {
        let Some(batch) = ProducerBatch::from_header(header) else {
            return false;
        };
        if let Some(entry) = self.producers.get(&batch.producer_id) {
            if batch.epoch < entry.epoch {
                // A fenced producer's batch can only be in the log if it was appended before
                // the newer epoch's first batch; the log order makes this unreachable.
                return false;
            }
        }
        let base_offset = header.base_offset.get();
        let last_offset =
            base_offset.saturating_add(i64::from(header.last_offset_delta.get().max(0)));
        self.record(&batch, base_offset, last_offset, header.max_timestamp.get())
    }

    /// Forgets producers idle for longer than the configured limit; returns how many.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let idle_ms_max = i64::try_from(self.config.producer_idle_ms_max).unwrap_or(i64::MAX);
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last_used_ms) <= idle_ms_max);
        before - self.producers.len()
    }

    /// Evicts the least recently used producer if the table is full.
    fn make_room(&mut self) -> bool {
        if self.producers.len() < self.config.producers_max.max(1) {
            return false;
        }
        // A linear scan: it runs only when a new producer arrives at a full table.
        let oldest = self
            .producers
            .iter()
            .min_by_key(|(id, entry)| (entry.last_used_ms, **id))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
        oldest.is_some()
    }

    /// Every producer, in id order (for snapshots and tests).
    pub fn producers(&self) -> Vec<(i64, &ProducerEntry)> {
        let mut all: Vec<(i64, &ProducerEntry)> =
            self.producers.iter().map(|(id, e)| (*id, e)).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }
}

fn empty_entry(epoch: i16) -> ProducerEntry {
    ProducerEntry {
        epoch,
        batches: VecDeque::with_capacity(BATCHES_REMEMBERED),
        last_used_ms: 0,
    }
}

fn push_batch(
    entry: &mut ProducerEntry,
    batch: &ProducerBatch,
    base_offset: i64,
    last_offset: i64,
    now_ms: i64,
) {
    if batch.epoch != entry.epoch {
        entry.epoch = batch.epoch;
        entry.batches.clear();
    }
    if entry.batches.len() == BATCHES_REMEMBERED {
        entry.batches.pop_front();
    }
    entry.batches.push_back(BatchMetadata {
        first_sequence: batch.first_sequence,
        last_sequence: batch.last_sequence,
        base_offset,
        last_offset,
        timestamp_ms: now_ms,
    });
    entry.last_used_ms = entry.last_used_ms.max(now_ms);
}

fn check_entry(
    entry: Option<&ProducerEntry>,
    batch: &ProducerBatch,
) -> Result<Verdict, SequenceError> {
    let Some(entry) = entry else {
        return Ok(Verdict::Append);
    };
    if batch.epoch < entry.epoch {
        return Err(SequenceError::Fenced {
            producer_id: batch.producer_id,
            epoch: batch.epoch,
            current_epoch: entry.epoch,
        });
    }
    let out_of_order = |expected_sequence| SequenceError::OutOfOrder {
        producer_id: batch.producer_id,
        epoch: batch.epoch,
        first_sequence: batch.first_sequence,
        expected_sequence,
    };
    if batch.epoch > entry.epoch {
        return if batch.first_sequence == 0 {
            Ok(Verdict::Append)
        } else {
            Err(out_of_order(0))
        };
    }
    if let Some(original) = entry.batches.iter().find(|remembered| {
        remembered.first_sequence == batch.first_sequence
            && remembered.last_sequence == batch.last_sequence
    }) {
        return Ok(Verdict::Duplicate {
            base_offset: original.base_offset,
            last_offset: original.last_offset,
        });
    }
    let Some(last) = entry.batches.back() else {
        return Ok(Verdict::Append);
    };
    let expected = increment_sequence(last.last_sequence, 1);
    if batch.first_sequence == expected {
        Ok(Verdict::Append)
    } else {
        Err(out_of_order(expected))
    }
}

/// First bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"WPST";
/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_VERSION: u16 = 1;
/// Bytes of the snapshot header: magic, version, reserved, offset, producer count.
pub const SNAPSHOT_HEADER_BYTES: usize = 4 + 2 + 2 + 8 + 4;
/// Bytes of one producer in a snapshot before its batches.
pub const SNAPSHOT_PRODUCER_BYTES: usize = 8 + 2 + 1 + 1 + 8;
/// Bytes of one remembered batch in a snapshot.
pub const SNAPSHOT_BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;
/// Bytes of the trailing CRC-32C.
pub const SNAPSHOT_CRC_BYTES: usize = 4;

/// Why snapshot bytes cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Shorter than its header and CRC, or than its counts say.
    #[error("snapshot is truncated ({bytes} bytes)")]
    Truncated {
        /// The file's size.
        bytes: usize,
    },
    /// The first four bytes are not [`SNAPSHOT_MAGIC`].
    #[error("not a producer-state snapshot (bad magic)")]
    BadMagic,
    /// A version this build does not read.
    #[error("snapshot version {0} is not supported")]
    UnsupportedVersion(u16),
    /// The CRC does not match the bytes.
    #[error("snapshot checksum mismatch")]
    CrcMismatch,
    /// Bytes after the last producer.
    #[error("{0} bytes after the last producer")]
    TrailingBytes(usize),
    /// A producer with more than [`BATCHES_REMEMBERED`] batches.
    #[error("producer {0} has too many batches")]
    TooManyBatches(i64),
}

/// Encodes the table as a snapshot of the state below log offset `offset`.
///
/// Layout (big-endian):
///
/// ```text
/// magic "WPST" | version u16 | reserved u16 | offset i64 | producer_count u32
/// producer_count × ( producer_id i64 | epoch i16 | batch_count u8 | reserved u8 |
///                    last_used_ms i64 |
///                    batch_count × ( first_sequence i32 | last_sequence i32 |
///                                    base_offset i64 | last_offset i64 | timestamp_ms i64 ) )
/// crc32c u32 (of every byte before it)
/// ```
pub fn encode_snapshot(table: &ProducerTable, offset: i64) -> Vec<u8> {
    let producers = table.producers();
    let mut out = Vec::with_capacity(
        SNAPSHOT_HEADER_BYTES
            + producers.len() * (SNAPSHOT_PRODUCER_BYTES + 2 * SNAPSHOT_BATCH_BYTES)
            + SNAPSHOT_CRC_BYTES,
    );
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(producers.len() as u32).to_be_bytes());
    for (id, entry) in producers {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&entry.epoch.to_be_bytes());
        out.push(entry.batches.len() as u8);
        out.push(0);
        out.extend_from_slice(&entry.last_used_ms.to_be_bytes());
        for batch in &entry.batches {
            out.extend_from_slice(&batch.first_sequence.to_be_bytes());
            out.extend_from_slice(&batch.last_sequence.to_be_bytes());
            out.extend_from_slice(&batch.base_offset.to_be_bytes());
            out.extend_from_slice(&batch.last_offset.to_be_bytes());
            out.extend_from_slice(&batch.timestamp_ms.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a snapshot into a table with `config` limits; returns the table and the offset it
/// covers (every batch below it is in the table).
pub fn decode_snapshot(
    bytes: &[u8],
    config: ProducerTableConfig,
) -> Result<(ProducerTable, i64), SnapshotError> {
    let truncated = SnapshotError::Truncated { bytes: bytes.len() };
    if bytes.len() < SNAPSHOT_HEADER_BYTES + SNAPSHOT_CRC_BYTES {
        return Err(truncated);
    }
    if bytes[..4] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let (body, crc) = bytes.split_at(bytes.len() - SNAPSHOT_CRC_BYTES);
    if crc32c::crc32c(body) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(SnapshotError::CrcMismatch);
    }
    let mut reader = Cursor { bytes: body, at: 4 };
    let version = u16::from_be_bytes(reader.take::<2>().ok_or(truncated.clone())?);
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    reader.take::<2>().ok_or(truncated.clone())?;
    let offset = i64::from_be_bytes(reader.take().ok_or(truncated.clone())?);
    let count = u32::from_be_bytes(reader.take().ok_or(truncated.clone())?);
    let mut table = ProducerTable::new(config);
    for _ in 0..count {
        let id = i64::from_be_bytes(reader.take().ok_or(truncated.clone())?);
        let epoch = i16::from_be_bytes(reader.take().ok_or(truncated.clone())?);
        let [batch_count, _] = reader.take::<2>().ok_or(truncated.clone())?;
        if usize::from(batch_count) > BATCHES_REMEMBERED {
            return Err(SnapshotError::TooManyBatches(id));
        }
        let last_used_ms = i64::from_be_bytes(reader.take().ok_or(truncated.clone())?);
        let mut entry = empty_entry(epoch);
        entry.last_used_ms = last_used_ms;
        for _ in 0..batch_count {
            entry.batches.push_back(BatchMetadata {
                first_sequence: i32::from_be_bytes(reader.take().ok_or(truncated.clone())?),
                last_sequence: i32::from_be_bytes(reader.take().ok_or(truncated.clone())?),
                base_offset: i64::from_be_bytes(reader.take().ok_or(truncated.clone())?),
                last_offset: i64::from_be_bytes(reader.take().ok_or(truncated.clone())?),
                timestamp_ms: i64::from_be_bytes(reader.take().ok_or(truncated.clone())?),
            });
        }
        table.make_room();
        table.producers.insert(id, entry);
    }
    if reader.at != body.len() {
        return Err(SnapshotError::TrailingBytes(body.len() - reader.at));
    }
    Ok((table, offset))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let field = self.bytes.get(self.at..self.at + N)?;
        self.at += N;
        field.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, first: i32, count: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id,
            epoch,
            first_sequence: first,
            last_sequence: increment_sequence(first, count - 1),
        }
    }

    /// Checks and, if accepted, records `batch` at the next offsets, like the owner does.
    fn produce(
        table: &mut ProducerTable,
        next_offset: &mut i64,
        batch: ProducerBatch,
    ) -> Result<Verdict, SequenceError> {
        let verdict = table.check(&batch)?;
        if verdict == Verdict::Append {
            let span = i64::from(batch.last_sequence) - i64::from(batch.first_sequence);
            let count = span.rem_euclid(i64::from(i32::MAX) + 1) + 1;
            table.record(&batch, *next_offset, *next_offset + count - 1, 1_000);
            *next_offset += count;
        }
        Ok(verdict)
    }

    #[test]
    fn sequences_continue_duplicates_return_the_original_and_gaps_are_refused() {
        let mut table = ProducerTable::default();
        let mut next = 0;
        assert_eq!(
            produce(&mut table, &mut next, batch(7, 0, 0, 3)),
            Ok(Verdict::Append)
        );
        assert_eq!(
            produce(&mut table, &mut next, batch(7, 0, 3, 2)),
            Ok(Verdict::Append)
        );
        assert_eq!(next, 5);
        assert_eq!(
            produce(&mut table, &mut next, batch(7, 0, 0, 3)),
            Ok(Verdict::Duplicate {
                base_offset: 0,
                last_offset: 2
            }),
            "a retry of the first batch"
        );
        assert_eq!(
            produce(&mut table, &mut next, batch(7, 0, 3, 2)),
            Ok(Verdict::Duplicate {
                base_offset: 3,
                last_offset: 4
            })
        );
        let gap = produce(&mut table, &mut next, batch(7, 0, 6, 1));
        assert_eq!(
            gap,
            Err(SequenceError::OutOfOrder {
                producer_id: 7,
                epoch: 0,
                first_sequence: 6,
                expected_sequence: 5
            })
        );
        assert_eq!(gap.unwrap_err().error_code(), ErrorCode::OutOfOrderSequence);
        let overlap = produce(&mut table, &mut next, batch(7, 0, 4, 2));
        assert!(
            matches!(overlap, Err(SequenceError::OutOfOrder { .. })),
            "{overlap:?}"
        );
        assert_eq!(next, 5, "refused batches store nothing");
        // Another producer on the same partition is independent.
        assert_eq!(
            produce(&mut table, &mut next, batch(8, 0, 0, 1)),
            Ok(Verdict::Append)
        );
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut table = ProducerTable::default();
        let mut next = 0;
        for sequence in 0..7 {
            assert_eq!(
                produce(&mut table, &mut next, batch(1, 0, sequence, 1)),
                Ok(Verdict::Append)
            );
        }
        assert_eq!(table.entry(1).unwrap().batches.len(), BATCHES_REMEMBERED);
        assert_eq!(
            produce(&mut table, &mut next, batch(1, 0, 2, 1)),
            Ok(Verdict::Duplicate {
                base_offset: 2,
                last_offset: 2
            })
        );
        assert!(
            matches!(
                produce(&mut table, &mut next, batch(1, 0, 1, 1)),
                Err(SequenceError::OutOfOrder { .. })
            ),
            "older than the remembered window: Kafka answers out of order too"
        );
    }

    #[test]
    fn an_old_epoch_is_fenced_and_a_new_epoch_restarts_at_zero() {
        let mut table = ProducerTable::default();
        let mut next = 0;
        produce(&mut table, &mut next, batch(3, 2, 0, 5)).unwrap();
        let fenced = produce(&mut table, &mut next, batch(3, 1, 5, 1));
        assert_eq!(
            fenced,
            Err(SequenceError::Fenced {
                producer_id: 3,
                epoch: 1,
                current_epoch: 2
            })
        );
        assert_eq!(
            fenced.unwrap_err().error_code(),
            ErrorCode::InvalidProducerEpoch
        );
        assert!(matches!(
            produce(&mut table, &mut next, batch(3, 3, 5, 1)),
            Err(SequenceError::OutOfOrder {
                expected_sequence: 0,
                ..
            })
        ));
        assert_eq!(
            produce(&mut table, &mut next, batch(3, 3, 0, 1)),
            Ok(Verdict::Append)
        );
        let entry = table.entry(3).unwrap();
        assert_eq!(entry.epoch, 3);
        assert_eq!(
            entry.batches.len(),
            1,
            "the bump forgot the old epoch's batches"
        );
        assert!(matches!(
            produce(&mut table, &mut next, batch(3, 2, 5, 1)),
            Err(SequenceError::Fenced { .. })
        ));
    }

    #[test]
    fn an_unknown_producer_is_accepted_at_any_sequence() {
        let table = ProducerTable::default();
        assert_eq!(table.check(&batch(9, 4, 1234, 2)), Ok(Verdict::Append));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 0), 5);
        let mut table = ProducerTable::default();
        let mut next = 0;
        let across = batch(1, 0, i32::MAX - 1, 4);
        assert_eq!(across.last_sequence, 1, "MAX-1, MAX, 0, 1");
        assert_eq!(
            produce(&mut table, &mut next, batch(1, 0, i32::MAX - 3, 2)),
            Ok(Verdict::Append)
        );
        assert_eq!(produce(&mut table, &mut next, across), Ok(Verdict::Append));
        assert!(matches!(
            produce(&mut table, &mut next, batch(1, 0, 3, 1)),
            Err(SequenceError::OutOfOrder {
                expected_sequence: 2,
                ..
            })
        ));
        assert_eq!(
            produce(&mut table, &mut next, batch(1, 0, 2, 1)),
            Ok(Verdict::Append)
        );
        assert_eq!(
            produce(&mut table, &mut next, across),
            Ok(Verdict::Duplicate {
                base_offset: 2,
                last_offset: 5
            })
        );
    }

    #[test]
    fn several_batches_of_one_entry_are_checked_in_order() {
        let mut table = ProducerTable::default();
        let mut next = 0;
        produce(&mut table, &mut next, batch(1, 0, 0, 2)).unwrap();
        let verdicts = table.check_all(&[batch(1, 0, 2, 1), batch(1, 0, 3, 1), batch(2, 0, 0, 1)]);
        assert_eq!(verdicts, Ok(vec![Verdict::Append; 3]));
        let with_gap = table.check_all(&[batch(1, 0, 2, 1), batch(1, 0, 4, 1)]);
        assert!(matches!(
            with_gap,
            Err(SequenceError::OutOfOrder {
                expected_sequence: 3,
                ..
            })
        ));
        let retry_then_new = table.check_all(&[batch(1, 0, 0, 2), batch(1, 0, 2, 1)]);
        assert_eq!(
            retry_then_new,
            Ok(vec![
                Verdict::Duplicate {
                    base_offset: 0,
                    last_offset: 1
                },
                Verdict::Append
            ])
        );
        assert_eq!(
            table.entry(1).unwrap().batches.len(),
            1,
            "check_all changes nothing"
        );
    }

    #[test]
    fn the_least_recently_used_producer_is_evicted_and_idle_ones_expire() {
        let config = ProducerTableConfig {
            producers_max: 2,
            producer_idle_ms_max: 100,
        };
        let mut table = ProducerTable::new(config);
        assert!(!table.record(&batch(1, 0, 0, 1), 0, 0, 10));
        assert!(!table.record(&batch(2, 0, 0, 1), 1, 1, 20));
        assert!(
            !table.record(&batch(1, 0, 1, 1), 2, 2, 30),
            "known producer: no eviction"
        );
        assert!(
            table.record(&batch(3, 0, 0, 1), 3, 3, 40),
            "full: evicts producer 2"
        );
        assert!(table.entry(2).is_none());
        assert!(table.entry(1).is_some() && table.entry(3).is_some());
        assert_eq!(table.expire(135), 1, "producer 1 was last used at 30");
        assert!(table.entry(1).is_none());
        assert_eq!(table.expire(140), 0);
        assert_eq!(table.expire(141), 1);
        assert!(table.is_empty());
    }

    fn sample_table() -> ProducerTable {
        let mut table = ProducerTable::default();
        let mut next = 0;
        for sequence in 0..7 {
            produce(&mut table, &mut next, batch(1, 0, sequence * 2, 2)).unwrap();
        }
        produce(&mut table, &mut next, batch(42, 3, i32::MAX, 2)).unwrap();
        table
    }

    #[test]
    fn snapshots_round_trip() {
        let table = sample_table();
        let bytes = encode_snapshot(&table, 99);
        let (decoded, offset) = decode_snapshot(&bytes, ProducerTableConfig::default()).unwrap();
        assert_eq!(offset, 99);
        assert_eq!(decoded, table);
        let empty = encode_snapshot(&ProducerTable::default(), 0);
        assert_eq!(empty.len(), SNAPSHOT_HEADER_BYTES + SNAPSHOT_CRC_BYTES);
        assert_eq!(
            decode_snapshot(&empty, ProducerTableConfig::default())
                .unwrap()
                .1,
            0
        );
    }

    #[test]
    fn damaged_snapshots_are_refused() {
        let bytes = encode_snapshot(&sample_table(), 99);
        let config = ProducerTableConfig::default();
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x10;
            assert!(
                decode_snapshot(&damaged, config).is_err(),
                "flipped byte {index}"
            );
        }
        for length in 0..bytes.len() {
            assert!(
                decode_snapshot(&bytes[..length], config).is_err(),
                "cut at {length}"
            );
        }
        let mut future = bytes.clone();
        future[5] = 9;
        let body = future.len() - SNAPSHOT_CRC_BYTES;
        let crc = crc32c::crc32c(&future[..body]);
        future[body..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            decode_snapshot(&future, config),
            Err(SnapshotError::UnsupportedVersion(9))
        );
    }
}
