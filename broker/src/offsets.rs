//! Committed consumer-group offsets: the record format in the internal `__offsets` topic and the
//! in-memory table rebuilt from it.
//!
//! Sans-I/O: [`encode_commit_batch`] turns a commit into one record batch, [`OffsetTable::replay`]
//! folds a partition's batches into the table. The owning shard appends the batch (the topic is
//! `flush = always`) and updates the table only after the append returns, so the table never
//! holds an offset that a crash could lose. On restart the table is rebuilt by replaying the
//! partition from its start; a later record for the same key replaces an earlier one.
//!
//! Record layout (all integers big-endian):
//!
//! ```text
//! key:   version u16 = 0 | group length u16 | group UTF-8 | topic_id u32 | partition u32
//! value: version u16 = 0 | offset i64 | metadata length u16 | metadata UTF-8 | commit time ms i64
//! ```

use std::collections::HashMap;

use weir_proto::batch::{records, BatchBuilder};

use crate::catalog::TopicId;

/// Format version of keys and values written by this build.
const RECORD_VERSION: u16 = 0;
/// Longest group id, in bytes.
pub const GROUP_ID_BYTES_MAX: usize = 255;
/// Longest commit metadata, in bytes.
pub const METADATA_BYTES_MAX: usize = 4096;
/// Most committed `(group, topic, partition)` entries one offsets partition keeps in memory.
pub const ENTRIES_PER_PARTITION_MAX: usize = 1_000_000;

/// The identity of one committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitKey {
    /// The consumer group.
    pub group: String,
    /// The consumed topic's id.
    pub topic_id: TopicId,
    /// The consumed partition.
    pub partition: u32,
}

/// A committed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitValue {
    /// The next offset the group will consume.
    pub offset: i64,
    /// Free-form text the consumer stored with the commit.
    pub metadata: String,
    /// When the broker accepted the commit, in milliseconds since the epoch.
    pub commit_time_ms: i64,
}

/// Why a stored offsets record could not be read (the record is skipped and logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The batch's records could not be iterated.
    #[error("offsets batch is unreadable: {0}")]
    Batch(String),
    /// A key or value is shorter than its layout or has an unknown version.
    #[error("offsets record is malformed: {0}")]
    Malformed(&'static str),
}

/// Encodes a commit key.
pub fn encode_key(key: &CommitKey) -> Vec<u8> {
    let group = key.group.as_bytes();
    let mut out = Vec::with_capacity(2 + 2 + group.len() + 8);
    out.extend_from_slice(&RECORD_VERSION.to_be_bytes());
    out.extend_from_slice(&(group.len() as u16).to_be_bytes());
    out.extend_from_slice(group);
    out.extend_from_slice(&key.topic_id.to_be_bytes());
    out.extend_from_slice(&key.partition.to_be_bytes());
    out
}

/// Encodes a commit value.
pub fn encode_value(value: &CommitValue) -> Vec<u8> {
    let metadata = value.metadata.as_bytes();
    let mut out = Vec::with_capacity(2 + 8 + 2 + metadata.len() + 8);
    out.extend_from_slice(&RECORD_VERSION.to_be_bytes());
    out.extend_from_slice(&value.offset.to_be_bytes());
    out.extend_from_slice(&(metadata.len() as u16).to_be_bytes());
    out.extend_from_slice(metadata);
    out.extend_from_slice(&value.commit_time_ms.to_be_bytes());
    out
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, count: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.bytes.len() < count {
            return Err(RecordError::Malformed(what));
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, RecordError> {
        let bytes = self.take(2, what)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, RecordError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, RecordError> {
        let bytes = self.take(8, what)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(i64::from_be_bytes(array))
    }

    fn string(&mut self, what: &'static str) -> Result<String, RecordError> {
        let length = usize::from(self.u16(what)?);
        let bytes = self.take(length, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError::Malformed(what))
    }
}

/// Decodes a commit key.
pub fn decode_key(bytes: &[u8]) -> Result<CommitKey, RecordError> {
    let mut cursor = Cursor { bytes };
    if cursor.u16("key version")? != RECORD_VERSION {
        return Err(RecordError::Malformed("unknown key version"));
    }
    let group = cursor.string("key group")?;
    let topic_id = cursor.u32("key topic_id")?;
    let partition = cursor.u32("key partition")?;
    Ok(CommitKey {
        group,
        topic_id,
        partition,
    })
}

/// Decodes a commit value.
pub fn decode_value(bytes: &[u8]) -> Result<CommitValue, RecordError> {
    let mut cursor = Cursor { bytes };
    if cursor.u16("value version")? != RECORD_VERSION {
        return Err(RecordError::Malformed("unknown value version"));
    }
    let offset = cursor.i64("value offset")?;
    let metadata = cursor.string("value metadata")?;
    let commit_time_ms = cursor.i64("value commit time")?;
    Ok(CommitValue {
        offset,
        metadata,
        commit_time_ms,
    })
}

/// One record batch holding every `(key, value)` commit, all stamped `now_ms`.
pub fn encode_commit_batch(commits: &[(CommitKey, CommitValue)], now_ms: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(now_ms);
    for (key, value) in commits {
        let key = encode_key(key);
        let value = encode_value(value);
        builder.push(now_ms, Some(&key), Some(&value), &[]);
    }
    builder.finish()
}

/// The committed offsets of the groups hashed to one offsets partition.
#[derive(Debug, Default)]
pub struct OffsetTable {
    entries: HashMap<CommitKey, CommitValue>,
}

impl OffsetTable {
    /// The committed value for `key`.
    pub fn get(&self, key: &CommitKey) -> Option<&CommitValue> {
        self.entries.get(key)
    }

    /// Number of committed entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no offsets are committed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `count` new keys still fit under [`ENTRIES_PER_PARTITION_MAX`].
    pub fn has_room_for(&self, keys: &[&CommitKey]) -> bool {
        let new_keys = keys
            .iter()
            .filter(|key| !self.entries.contains_key(**key))
            .count();
        self.entries.len() + new_keys <= ENTRIES_PER_PARTITION_MAX
    }

    /// Records a commit that is durable.
    pub fn insert(&mut self, key: CommitKey, value: CommitValue) {
        self.entries.insert(key, value);
    }

    /// Folds one stored batch into the table; returns how many records were applied. Malformed
    /// records are skipped and reported in `skipped`.
    pub fn replay(&mut self, batch: &[u8], skipped: &mut Vec<RecordError>) -> usize {
        let iter = match records(batch) {
            Ok(iter) => iter,
            Err(error) => {
                skipped.push(RecordError::Batch(error.to_string()));
                return 0;
            }
        };
        let mut applied = 0;
        for record in iter {
            let record = match record {
                Ok(record) => record,
                Err(error) => {
                    skipped.push(RecordError::Batch(error.to_string()));
                    break;
                }
            };
            let (Some(key), Some(value)) = (record.key, record.value) else {
                skipped.push(RecordError::Malformed("null key or value"));
                continue;
            };
            match (decode_key(key), decode_value(value)) {
                (Ok(key), Ok(value)) => {
                    self.entries.insert(key, value);
                    applied += 1;
                }
                (Err(error), _) | (_, Err(error)) => skipped.push(error),
            }
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, topic_id: u32, partition: u32) -> CommitKey {
        CommitKey {
            group: group.to_string(),
            topic_id,
            partition,
        }
    }

    fn value(offset: i64, metadata: &str) -> CommitValue {
        CommitValue {
            offset,
            metadata: metadata.to_string(),
            commit_time_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn key_and_value_round_trip_with_fixed_layout() {
        let k = key("g", 0x0102_0304, 5);
        let bytes = encode_key(&k);
        assert_eq!(bytes, [0, 0, 0, 1, b'g', 1, 2, 3, 4, 0, 0, 0, 5]);
        assert_eq!(decode_key(&bytes), Ok(k));
        let v = value(-1, "meta");
        assert_eq!(decode_value(&encode_value(&v)), Ok(v));
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let full = encode_key(&key("group", 1, 2));
        for cut in 0..full.len() {
            assert!(decode_key(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_key(&[0, 1, 0, 0]).is_err(), "unknown version");
        let full = encode_value(&value(7, "m"));
        for cut in 0..full.len() {
            assert!(decode_value(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            decode_key(&[0, 0, 0, 2, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "bad UTF-8"
        );
    }

    #[test]
    fn replay_keeps_the_latest_commit_per_key() {
        let first = encode_commit_batch(
            &[
                (key("a", 1, 0), value(10, "")),
                (key("a", 1, 1), value(20, "x")),
            ],
            1,
        );
        let second = encode_commit_batch(&[(key("a", 1, 0), value(15, "later"))], 2);
        let mut table = OffsetTable::default();
        let mut skipped = Vec::new();
        assert_eq!(table.replay(&first, &mut skipped), 2);
        assert_eq!(table.replay(&second, &mut skipped), 1);
        assert!(skipped.is_empty());
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(&key("a", 1, 0)).map(|v| v.offset), Some(15));
        assert_eq!(
            table.get(&key("a", 1, 0)).map(|v| v.metadata.as_str()),
            Some("later")
        );
        assert_eq!(table.get(&key("a", 1, 1)).map(|v| v.offset), Some(20));
        assert_eq!(table.get(&key("b", 1, 0)), None);
    }

    #[test]
    fn replay_skips_foreign_records_and_garbage() {
        let mut builder = BatchBuilder::new(0);
        builder.push(0, Some(b"not a key"), Some(b"nor a value"), &[]);
        builder.push(0, None, Some(b"x"), &[]);
        let batch = builder.finish();
        let mut table = OffsetTable::default();
        let mut skipped = Vec::new();
        assert_eq!(table.replay(&batch, &mut skipped), 0);
        assert_eq!(skipped.len(), 2);
        assert_eq!(table.replay(b"garbage", &mut skipped), 0);
        assert_eq!(skipped.len(), 3);
        assert!(table.is_empty());
    }
}
