//! Committed consumer-group offsets and group metadata: the record formats in the internal
//! `__offsets` topic and the in-memory table rebuilt from them.
//!
//! Sans-I/O: [`encode_commit_batch`] turns a commit into one record batch,
//! [`encode_group_batch`] a group's metadata (written when a generation completes and when the
//! group empties), [`OffsetTable::replay`] folds a partition's batches into the table. The owning
//! shard appends the batch (the topic is `flush = always`) and updates the table only after the
//! append returns, so the table never holds an offset that a crash could lose. On restart the
//! table is rebuilt by replaying the partition from its start; a later record for the same key
//! replaces an earlier one.
//!
//! Every key starts with a `u16` record type; type 0 is the offset commit (whose first field was
//! called its version before group records existed, so old logs read unchanged), type 1 the group
//! metadata, type 2 the group tombstone. Record layouts (all integers big-endian; string = u16
//! length + UTF-8):
//!
//! ```text
//! commit key:   type u16 = 0 | group string | topic_id u32 | partition u32
//! commit value: version u16 = 0 | offset i64 | metadata string | commit time ms i64
//!
//! group key:    type u16 = 1 | group string
//! group value:  version u16 = 0 | generation i32 | strategy string | leader string
//!               | member count u32 | member*
//! member:       member_id string | client_id string | client_host string
//!               | session_timeout_ms u32 | rebalance_timeout_ms u32
//!               | topic count u32 | topic string* | strategy count u32 | strategy string*
//!               | assignment count u32 | (topic_id u32 | partition u32)*
//!
//! tombstone key:   type u16 = 2 | group string
//! tombstone value: version u16 = 0 | removed at ms i64 (wall clock)
//! ```
//!
//! A group value with no members records that the group emptied at that generation. A tombstone
//! records that the group was deleted or expired: replay forgets the group's metadata and every
//! offset it committed before the tombstone (records after it start the group afresh). The
//! timestamp of the latest group record or commit is kept per group so a restarted coordinator
//! knows how long an empty group has been idle.

use std::collections::HashMap;

use weir_proto::batch::{records, BatchBuilder};
use weir_proto::wire::TopicPartition;

use crate::catalog::TopicId;

/// Format version of values written by this build (and the record type of commit keys).
const RECORD_VERSION: u16 = 0;
/// Record type of a group-metadata key.
const RECORD_TYPE_GROUP: u16 = 1;
/// Record type of a group-tombstone key.
const RECORD_TYPE_TOMBSTONE: u16 = 2;
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

/// A group's durable state: what a restarted coordinator resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// The group's id.
    pub group: String,
    /// The generation this record describes.
    pub generation: i32,
    /// The generation's strategy (empty when the group is empty).
    pub strategy: String,
    /// The leader's member id (empty when the group is empty).
    pub leader: String,
    /// The generation's members, oldest first; empty when the group emptied.
    pub members: Vec<MemberMetadata>,
}

/// One member of a persisted generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    /// The member's id.
    pub member_id: String,
    /// The client id it joined with.
    pub client_id: String,
    /// The address it joined from.
    pub client_host: String,
    /// Its session timeout, in milliseconds.
    pub session_timeout_ms: u32,
    /// Its rebalance timeout, in milliseconds.
    pub rebalance_timeout_ms: u32,
    /// Its subscribed topic names.
    pub topics: Vec<String>,
    /// Its strategies, in preference order.
    pub strategies: Vec<String>,
    /// Its partitions in the generation.
    pub assignment: Vec<TopicPartition>,
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

fn put_string(out: &mut Vec<u8>, value: &str) {
    // Callers bound every string to the wire's u16 length (ids, names, hosts), so the cut never
    // happens for data the broker accepted; it keeps the record decodable if it did.
    let bytes = &value.as_bytes()[..value.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_strings(out: &mut Vec<u8>, values: &[String]) {
    out.extend_from_slice(&(values.len() as u32).to_be_bytes());
    for value in values {
        put_string(out, value);
    }
}

/// Encodes a group-metadata key.
pub fn encode_group_key(group: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + group.len());
    out.extend_from_slice(&RECORD_TYPE_GROUP.to_be_bytes());
    put_string(&mut out, group);
    out
}

/// Encodes a group-metadata value.
pub fn encode_group_value(metadata: &GroupMetadata) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + metadata.members.len() * 128);
    out.extend_from_slice(&RECORD_VERSION.to_be_bytes());
    out.extend_from_slice(&metadata.generation.to_be_bytes());
    put_string(&mut out, &metadata.strategy);
    put_string(&mut out, &metadata.leader);
    out.extend_from_slice(&(metadata.members.len() as u32).to_be_bytes());
    for member in &metadata.members {
        put_string(&mut out, &member.member_id);
        put_string(&mut out, &member.client_id);
        put_string(&mut out, &member.client_host);
        out.extend_from_slice(&member.session_timeout_ms.to_be_bytes());
        out.extend_from_slice(&member.rebalance_timeout_ms.to_be_bytes());
        put_strings(&mut out, &member.topics);
        put_strings(&mut out, &member.strategies);
        out.extend_from_slice(&(member.assignment.len() as u32).to_be_bytes());
        for partition in &member.assignment {
            out.extend_from_slice(&partition.topic_id.to_be_bytes());
            out.extend_from_slice(&partition.partition.to_be_bytes());
        }
    }
    out
}

/// One record batch holding a group's metadata, stamped `now_ms`.
pub fn encode_group_batch(metadata: &GroupMetadata, now_ms: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(now_ms);
    let key = encode_group_key(&metadata.group);
    let value = encode_group_value(metadata);
    builder.push(now_ms, Some(&key), Some(&value), &[]);
    builder.finish()
}

/// Encodes a group-tombstone key.
pub fn encode_tombstone_key(group: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + group.len());
    out.extend_from_slice(&RECORD_TYPE_TOMBSTONE.to_be_bytes());
    put_string(&mut out, group);
    out
}

/// Encodes a group-tombstone value: the wall-clock time of the removal.
pub fn encode_tombstone_value(removed_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 8);
    out.extend_from_slice(&RECORD_VERSION.to_be_bytes());
    out.extend_from_slice(&removed_ms.to_be_bytes());
    out
}

/// One record batch holding the tombstone of `group`, stamped `now_ms`.
pub fn encode_tombstone_batch(group: &str, now_ms: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(now_ms);
    let key = encode_tombstone_key(group);
    let value = encode_tombstone_value(now_ms);
    builder.push(now_ms, Some(&key), Some(&value), &[]);
    builder.finish()
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

    fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        Ok(self.u32(what)? as i32)
    }

    /// A `u32` count of elements that take at least `element_bytes_min` bytes each, checked
    /// against the bytes left so a corrupt count cannot allocate.
    fn count(
        &mut self,
        element_bytes_min: usize,
        what: &'static str,
    ) -> Result<usize, RecordError> {
        let count = self.u32(what)? as usize;
        if count.saturating_mul(element_bytes_min) > self.bytes.len() {
            return Err(RecordError::Malformed(what));
        }
        Ok(count)
    }

    fn strings(&mut self, what: &'static str) -> Result<Vec<String>, RecordError> {
        let count = self.count(2, what)?;
        (0..count).map(|_| self.string(what)).collect()
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

/// Decodes a group-metadata value for `group`.
pub fn decode_group_value(group: String, bytes: &[u8]) -> Result<GroupMetadata, RecordError> {
    let mut cursor = Cursor { bytes };
    if cursor.u16("group value version")? != RECORD_VERSION {
        return Err(RecordError::Malformed("unknown group value version"));
    }
    let generation = cursor.i32("group generation")?;
    let strategy = cursor.string("group strategy")?;
    let leader = cursor.string("group leader")?;
    let member_count = cursor.count(2 * 3 + 4 * 5, "group member count")?;
    let mut members = Vec::with_capacity(member_count);
    for _ in 0..member_count {
        let member_id = cursor.string("member id")?;
        let client_id = cursor.string("member client id")?;
        let client_host = cursor.string("member client host")?;
        let session_timeout_ms = cursor.u32("member session timeout")?;
        let rebalance_timeout_ms = cursor.u32("member rebalance timeout")?;
        let topics = cursor.strings("member topics")?;
        let strategies = cursor.strings("member strategies")?;
        let assignment_count = cursor.count(8, "member assignment count")?;
        let mut assignment = Vec::with_capacity(assignment_count);
        for _ in 0..assignment_count {
            assignment.push(TopicPartition {
                topic_id: cursor.u32("assignment topic_id")?,
                partition: cursor.u32("assignment partition")?,
            });
        }
        members.push(MemberMetadata {
            member_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            topics,
            strategies,
            assignment,
        });
    }
    if !cursor.bytes.is_empty() {
        return Err(RecordError::Malformed("bytes after the group value"));
    }
    Ok(GroupMetadata {
        group,
        generation,
        strategy,
        leader,
        members,
    })
}

/// What one `__offsets` record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    /// A committed offset.
    Commit(CommitKey, CommitValue),
    /// A group's metadata.
    Group(GroupMetadata),
    /// A group was deleted or expired at this wall-clock time (ms).
    Tombstone(String, i64),
}

/// Decodes one `__offsets` record by the type its key starts with.
pub fn decode_record(key: &[u8], value: &[u8]) -> Result<OffsetsRecord, RecordError> {
    let mut cursor = Cursor { bytes: key };
    match cursor.u16("key type")? {
        RECORD_VERSION => Ok(OffsetsRecord::Commit(
            decode_key(key)?,
            decode_value(value)?,
        )),
        RECORD_TYPE_GROUP => {
            let group = cursor.string("group key")?;
            if !cursor.bytes.is_empty() {
                return Err(RecordError::Malformed("bytes after the group key"));
            }
            Ok(OffsetsRecord::Group(decode_group_value(group, value)?))
        }
        RECORD_TYPE_TOMBSTONE => {
            let group = cursor.string("tombstone key")?;
            if !cursor.bytes.is_empty() {
                return Err(RecordError::Malformed("bytes after the tombstone key"));
            }
            let mut value = Cursor { bytes: value };
            if value.u16("tombstone value version")? != RECORD_VERSION {
                return Err(RecordError::Malformed("unknown tombstone value version"));
            }
            let removed_ms = value.i64("tombstone removed at")?;
            if !value.bytes.is_empty() {
                return Err(RecordError::Malformed("bytes after the tombstone value"));
            }
            Ok(OffsetsRecord::Tombstone(group, removed_ms))
        }
        _ => Err(RecordError::Malformed("unknown key type")),
    }
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
    groups: HashMap<String, GroupMetadata>,
    /// Per group, the timestamp (wall clock, ms) of its latest replayed group record.
    group_times: HashMap<String, i64>,
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

    /// Every committed entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (&CommitKey, &CommitValue)> {
        self.entries.iter()
    }

    /// Takes the latest metadata of every group replayed from the partition.
    pub fn take_groups(&mut self) -> Vec<GroupMetadata> {
        self.groups.drain().map(|(_, metadata)| metadata).collect()
    }

    /// Takes the timestamp (wall clock, ms) of every group's latest replayed group record.
    pub fn take_group_times(&mut self) -> HashMap<String, i64> {
        std::mem::take(&mut self.group_times)
    }

    /// Forgets a group's metadata and committed offsets (its tombstone is durable, or it is
    /// being replayed). Scans the table: removals are rare next to commits.
    pub fn remove_group(&mut self, group: &str) {
        self.entries.retain(|key, _| key.group != group);
        self.groups.remove(group);
        self.group_times.remove(group);
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
            match decode_record(key, value) {
                Ok(OffsetsRecord::Commit(key, value)) => {
                    self.entries.insert(key, value);
                    applied += 1;
                }
                Ok(OffsetsRecord::Group(metadata)) => {
                    self.group_times
                        .insert(metadata.group.clone(), record.timestamp);
                    self.groups.insert(metadata.group.clone(), metadata);
                    applied += 1;
                }
                Ok(OffsetsRecord::Tombstone(group, _)) => {
                    self.remove_group(&group);
                    applied += 1;
                }
                Err(error) => skipped.push(error),
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

    fn group(name: &str, generation: i32, members: usize) -> GroupMetadata {
        GroupMetadata {
            group: name.to_string(),
            generation,
            strategy: if members == 0 {
                String::new()
            } else {
                "sticky".into()
            },
            leader: if members == 0 {
                String::new()
            } else {
                "c-0".into()
            },
            members: (0..members)
                .map(|index| MemberMetadata {
                    member_id: format!("c-{index}"),
                    client_id: "c".into(),
                    client_host: "127.0.0.1:4000".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 30_000,
                    topics: vec!["events".into()],
                    strategies: vec!["sticky".into(), "range".into()],
                    assignment: vec![TopicPartition {
                        topic_id: 3,
                        partition: index as u32,
                    }],
                })
                .collect(),
        }
    }

    #[test]
    fn group_records_round_trip_with_a_typed_key() {
        let metadata = group("g", 7, 2);
        assert_eq!(encode_group_key("g"), [0, 1, 0, 1, b'g']);
        let value = encode_group_value(&metadata);
        assert_eq!(&value[..6], &[0, 0, 0, 0, 0, 7], "version 0, generation 7");
        assert_eq!(
            decode_record(&encode_group_key("g"), &value),
            Ok(OffsetsRecord::Group(metadata.clone()))
        );
        for cut in 0..value.len() {
            assert!(
                decode_group_value("g".into(), &value[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut huge_count = encode_group_value(&group("g", 1, 0));
        let at = huge_count.len() - 4;
        huge_count[at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_group_value("g".into(), &huge_count).is_err());
        assert!(
            decode_record(&[0, 3, 0, 0], &value).is_err(),
            "unknown type"
        );
    }

    #[test]
    fn replay_reads_old_commits_and_keeps_the_latest_group_record() {
        // A log written before group records existed: commits only, still read.
        let old = encode_commit_batch(&[(key("g", 1, 0), value(10, ""))], 1);
        let first = encode_group_batch(&group("g", 1, 3), 2);
        let commit = encode_commit_batch(&[(key("g", 1, 0), value(12, ""))], 3);
        let second = encode_group_batch(&group("g", 2, 0), 4);
        let mut table = OffsetTable::default();
        let mut skipped = Vec::new();
        for batch in [&old, &first, &commit, &second] {
            assert_eq!(table.replay(batch, &mut skipped), 1);
        }
        assert!(skipped.is_empty());
        assert_eq!(table.get(&key("g", 1, 0)).map(|v| v.offset), Some(12));
        assert_eq!(table.take_groups(), vec![group("g", 2, 0)]);
    }

    #[test]
    fn tombstones_have_a_fixed_layout_and_reject_truncation() {
        let key = encode_tombstone_key("g");
        let value = encode_tombstone_value(0x0102);
        assert_eq!(key, [0, 2, 0, 1, b'g']);
        assert_eq!(value, [0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            decode_record(&key, &value),
            Ok(OffsetsRecord::Tombstone("g".into(), 0x0102))
        );
        for cut in 0..value.len() {
            assert!(decode_record(&key, &value[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_record(&key, &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_record(&[0, 2, 0, 1, b'g', 0], &value).is_err());
    }

    #[test]
    fn replay_forgets_a_group_at_its_tombstone_and_keeps_what_follows() {
        let commits = encode_commit_batch(
            &[
                (key("g", 1, 0), value(10, "")),
                (key("h", 1, 0), value(5, "")),
            ],
            1,
        );
        let metadata = encode_group_batch(&group("g", 2, 0), 2);
        let tombstone = encode_tombstone_batch("g", 3);
        let later = encode_commit_batch(&[(key("g", 1, 1), value(7, ""))], 4);
        let mut table = OffsetTable::default();
        let mut skipped = Vec::new();
        for batch in [&commits, &metadata, &tombstone] {
            table.replay(batch, &mut skipped);
        }
        assert!(skipped.is_empty());
        assert_eq!(
            table.get(&key("g", 1, 0)),
            None,
            "commit before the tombstone"
        );
        assert_eq!(table.get(&key("h", 1, 0)).map(|v| v.offset), Some(5));
        assert!(table.take_group_times().is_empty());
        assert!(table.take_groups().is_empty());
        table.replay(&later, &mut skipped);
        assert_eq!(table.get(&key("g", 1, 1)).map(|v| v.offset), Some(7));
        let mut table = OffsetTable::default();
        table.replay(&metadata, &mut skipped);
        assert_eq!(table.take_group_times().get("g"), Some(&2));
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
