//! Operations a shard performs on the partitions it owns: append, read, offset lookups, long-poll
//! watches, and committed group offsets.
//!
//! Every function here runs on the owning shard, whether the request arrived on one of its own
//! connections or was forwarded by another shard. Invariants: a produce is acknowledged only
//! after `PartitionLog::append` returned for every batch of the entry (so under `flush = always`
//! the data is fdatasynced); batches are validated with `weir_proto::batch` before any of an
//! entry's batches is appended, so an entry is all-or-nothing for invalid input (an entry of one
//! batch without producer fields, the common case, is validated by `PartitionLog::append`
//! itself, which refuses it whole, so its CRC is computed once); a fetch never
//! copies batch bytes (it hands out the storage `Bytes`); a committed offset enters the
//! in-memory table only after its record is durable in `__offsets`; a batch of an idempotent
//! producer is checked against the partition's producer table before it is appended and
//! recorded there only after its append returned (see `producer_state`), so a retried batch is
//! answered with its original offset and never stored twice.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, error, warn};
use weir_proto::batch::{
    split_validated, BatchError, BatchHeader, BatchLimits, ValidatedBatch, BATCH_HEADER_BYTES,
};
use weir_proto::wire::{
    DescribedPartition, ErrorCode, FetchPartition, FetchPartitionResult, FetchRecords,
    ListOffsetsPartition, ListOffsetsPartitionResult, OffsetCommitPartitionResult,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchPartitionResult, OffsetFetchRequest,
    OffsetFetchResponse, OffsetQuery, ProducePartition, ProducePartitionResult, TopicPartition,
    OFFSET_NONE,
};
use weir_storage::{AppendError, ReadError};

use crate::catalog::{TopicId, OFFSETS_PARTITIONS, OFFSETS_TOPIC};
use crate::hash::partition_for_group;
use crate::join::join_all;
use crate::metrics;
use crate::offsets::{self, CommitKey, CommitValue, GROUP_ID_BYTES_MAX, METADATA_BYTES_MAX};
use crate::partition::{Partition, PartitionKey};
use crate::producer_state::{ProducerBatch, SequenceError, Verdict};
use crate::shard::Shard;

/// Records in a stored batch, read from its header (`recordsCount`, the header's last field).
pub fn batch_records(batch: &[u8]) -> u64 {
    batch
        .get(BATCH_HEADER_BYTES - 4..BATCH_HEADER_BYTES)
        .map(|field| i32::from_be_bytes([field[0], field[1], field[2], field[3]]))
        .map_or(0, |count| u64::try_from(count).unwrap_or(0))
}

/// Why a partition cannot be served here, as a wire error code and message.
fn partition_error(shard: &Shard, key: PartitionKey) -> (ErrorCode, String) {
    let catalog = shard.catalog();
    match catalog.topic_by_id(key.0) {
        None => (
            ErrorCode::UnknownTopic,
            format!("no topic with id {}", key.0),
        ),
        Some(topic) if key.1 >= topic.config.partitions => (
            ErrorCode::UnknownPartition,
            format!(
                "topic {} has {} partitions, not {}",
                topic.name, topic.config.partitions, key.1
            ),
        ),
        Some(topic) => (
            ErrorCode::NotOwner,
            format!(
                "partition {}/{} is not open on shard {}",
                topic.name, key.1, shard.id
            ),
        ),
    }
}

pub(crate) fn append_error_code(error: &AppendError) -> ErrorCode {
    match error {
        AppendError::InvalidBatch(error) => batch_error_code(error),
        AppendError::DiskFull(_) => ErrorCode::DiskFull,
        AppendError::Io(_) | AppendError::OffsetOverflow { .. } => ErrorCode::StorageError,
    }
}

fn read_error_code(error: &ReadError) -> ErrorCode {
    match error {
        ReadError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        ReadError::Corrupt(_) | ReadError::Io(_) => ErrorCode::StorageError,
    }
}

/// Why a produce entry's records cannot be split into whole, valid batches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The entry carries no bytes at all.
    #[error("no record batch in the produce entry")]
    Empty,
    /// A batch failed validation.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The bytes end inside a batch: its `batchLength` runs past the records the entry carries.
    #[error(
        "{bytes} trailing bytes after the last whole batch: a batch runs past the entry's end"
    )]
    TrailingPartialBatch {
        /// Bytes after the last whole batch.
        bytes: usize,
    },
}

impl SplitError {
    /// The wire code for this refusal, as `docs/PROTOCOL.md` assigns them: bytes that do not
    /// match their own CRC or lengths were damaged (in transit or by the producer) and are
    /// `corrupt_message`, which a client retries with freshly read bytes; bytes that are intact
    /// but not acceptable are `invalid_batch`, which no retry can fix; a batch over a configured
    /// limit is `message_too_large`.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            SplitError::Empty => ErrorCode::InvalidBatch,
            SplitError::TrailingPartialBatch { .. } => ErrorCode::CorruptMessage,
            SplitError::Batch(error) => batch_error_code(error),
        }
    }
}

fn batch_error_code(error: &BatchError) -> ErrorCode {
    match error {
        BatchError::CrcMismatch { .. }
        | BatchError::Truncated { .. }
        | BatchError::BadLength { .. }
        | BatchError::TrailingBytes { .. } => ErrorCode::CorruptMessage,
        BatchError::TooLarge { .. } | BatchError::TooManyRecords { .. } => {
            ErrorCode::MessageTooLarge
        }
        // Everything else describes intact bytes (the CRC matched) that break the format's
        // rules: wrong magic, record count, offsets, timestamps, producer fields, codec. The
        // enum is non-exhaustive, and a new reason is a refusal of the contents by default.
        _ => ErrorCode::InvalidBatch,
    }
}

/// Splits `records` into whole batches with valid headers and CRCs (zero-copy slices), or says
/// why it cannot.
pub fn split_batches(
    records: &Bytes,
    limits: &BatchLimits,
) -> Result<Vec<ValidatedBatch>, SplitError> {
    if records.is_empty() {
        return Err(SplitError::Empty);
    }
    // Header and CRC only, once per batch: the broker stores the producer's bytes without
    // decoding records, and the log's append takes the checked batch without checking again.
    let split = split_validated(records, limits)?;
    if split.trailing_bytes != 0 {
        return Err(SplitError::TrailingPartialBatch {
            bytes: split.trailing_bytes,
        });
    }
    Ok(split.batches)
}

/// Appends every entry to its partition (partitions concurrently, batches of one entry in order).
pub async fn produce(
    shard: &Rc<Shard>,
    entries: Vec<ProducePartition>,
) -> Vec<ProducePartitionResult> {
    let futures = entries.into_iter().map(|entry| produce_entry(shard, entry));
    join_all(futures.collect()).await
}

async fn produce_entry(shard: &Rc<Shard>, entry: ProducePartition) -> ProducePartitionResult {
    let key = (entry.topic_id, entry.partition);
    let mut result = ProducePartitionResult {
        topic_id: entry.topic_id,
        partition: entry.partition,
        error_code: ErrorCode::None,
        error_message: String::new(),
        base_offset: OFFSET_NONE,
        log_start_offset: OFFSET_NONE,
    };
    let Some(partition) = shard.partition(key) else {
        (result.error_code, result.error_message) = partition_error(shard, key);
        return result;
    };
    if partition.topic.is_internal() {
        result.error_code = ErrorCode::InvalidRequest;
        result.error_message = format!(
            "{} is internal; clients cannot produce to it",
            partition.topic.name
        );
        return result;
    }
    let limits = partition.log.config().batch_limits;
    // Split, then let go of the entry's handle on the frame: a batch that is the last handle on
    // its bytes is appended without a copy (`PartitionLog::append`).
    let records = entry.records;
    let split = split_batches(&records, &limits);
    drop(records);
    let batches = match split {
        Ok(batches) => batches,
        Err(error) => {
            result.error_code = error.error_code();
            result.error_message = error.to_string();
            return result;
        }
    };
    let producer_batches: Vec<Option<ProducerBatch>> = batches
        .iter()
        .map(|batch| BatchHeader::view(batch.bytes()).and_then(ProducerBatch::from_header))
        .collect();
    let appended = if producer_batches.iter().all(Option::is_none) {
        append_batches(&partition, batches).await
    } else {
        match append_idempotent(shard, &partition, batches, &producer_batches).await {
            Ok(appended) => appended,
            Err(error) => {
                result.error_code = error.error_code();
                result.error_message = error.to_string();
                return result;
            }
        }
    };
    match appended {
        Ok((base_offset, log_start_offset, bytes, records)) => {
            shard
                .metrics
                .record_in(&partition.topic.name, bytes, records);
            result.base_offset = base_offset;
            result.log_start_offset = log_start_offset;
        }
        // A batch the log refused as invalid is the producer's error, not the broker's.
        Err(error @ AppendError::InvalidBatch(_)) => {
            debug!(
                topic = %partition.topic.name,
                partition = partition.index,
                %error,
                "produced batch refused"
            );
            result.error_code = append_error_code(&error);
            result.error_message = error.to_string();
        }
        Err(error) => {
            error!(
                topic = %partition.topic.name,
                partition = partition.index,
                %error,
                "append failed"
            );
            result.error_code = append_error_code(&error);
            result.error_message = error.to_string();
        }
    }
    result
}

/// Appends `batches` in order; returns (first base offset, log start, bytes, records).
async fn append_batches(
    partition: &Partition,
    batches: Vec<ValidatedBatch>,
) -> Result<(i64, i64, u64, u64), AppendError> {
    let mut base_offset = None;
    let mut log_start_offset = OFFSET_NONE;
    let mut bytes = 0u64;
    let mut records = 0u64;
    // Appends of one entry go in order; storage shares one fdatasync among concurrent appends
    // of other entries and connections.
    for batch in batches {
        let record_count = batch_records(batch.bytes());
        let info = partition.log.append_validated(batch).await?;
        partition.appended.notify();
        base_offset.get_or_insert(info.base_offset);
        log_start_offset = info.log_start_offset;
        bytes += u64::from(info.size_bytes);
        records += record_count;
    }
    Ok((
        base_offset.unwrap_or(OFFSET_NONE),
        log_start_offset,
        bytes,
        records,
    ))
}

/// Checks an entry's batches against the partition's producer table and appends the new ones:
/// duplicates are answered with their original offsets, a refused batch refuses the whole entry
/// (nothing stored). The producers involved are claimed for the duration, so a retry waits for
/// its original's append and then finds it in the table.
async fn append_idempotent(
    shard: &Shard,
    partition: &Partition,
    batches: Vec<ValidatedBatch>,
    producer_batches: &[Option<ProducerBatch>],
) -> Result<Result<(i64, i64, u64, u64), AppendError>, SequenceError> {
    let mut ids: Vec<i64> = producer_batches
        .iter()
        .flatten()
        .map(|batch| batch.producer_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let _claim = partition.producers.claim(ids).await;
    let checked: Vec<ProducerBatch> = producer_batches.iter().flatten().copied().collect();
    let verdicts = match partition.producers.table.borrow().check_all(&checked) {
        Ok(verdicts) => verdicts,
        Err(error) => {
            metrics::count_producer(&shard.metrics, |counters| match error {
                SequenceError::Fenced { .. } => counters.fenced += 1,
                SequenceError::OutOfOrder { .. } => counters.sequence_errors += 1,
            });
            return Err(error);
        }
    };
    let mut verdicts = verdicts.into_iter();
    let mut base_offset = None;
    let mut log_start_offset = partition.log.log_start_offset();
    let mut bytes = 0u64;
    let mut records = 0u64;
    for (batch, producer_batch) in batches.into_iter().zip(producer_batches) {
        let verdict = match producer_batch {
            Some(_) => verdicts.next().unwrap_or(Verdict::Append),
            None => Verdict::Append,
        };
        if let Verdict::Duplicate {
            base_offset: original,
            ..
        } = verdict
        {
            metrics::count_producer(&shard.metrics, |counters| counters.duplicates += 1);
            base_offset.get_or_insert(original);
            continue;
        }
        let record_count = batch_records(batch.bytes());
        let info = match partition.log.append_validated(batch).await {
            Ok(info) => info,
            Err(error) => return Ok(Err(error)),
        };
        partition.appended.notify();
        if let Some(producer_batch) = producer_batch {
            let evicted = partition.producers.table.borrow_mut().record(
                producer_batch,
                info.base_offset,
                info.last_offset,
                weir_storage::wall_clock_ms(),
            );
            if evicted {
                metrics::count_producer(&shard.metrics, |counters| counters.evicted += 1);
            }
        }
        base_offset.get_or_insert(info.base_offset);
        log_start_offset = info.log_start_offset;
        bytes += u64::from(info.size_bytes);
        records += record_count;
    }
    Ok(Ok((
        base_offset.unwrap_or(OFFSET_NONE),
        log_start_offset,
        bytes,
        records,
    )))
}

/// Reads every entry once, without waiting, within `response_bytes_max` in total (the first
/// partition with data always gets at least one whole batch).
pub async fn fetch_now(
    shard: &Rc<Shard>,
    entries: &[FetchPartition],
    response_bytes_max: u32,
) -> Vec<FetchPartitionResult> {
    let mut results = Vec::with_capacity(entries.len());
    let mut remaining = u64::from(response_bytes_max);
    for entry in entries {
        let result = fetch_entry(shard, entry, remaining).await;
        remaining = remaining.saturating_sub(result.records.len_bytes());
        results.push(result);
    }
    results
}

async fn fetch_entry(
    shard: &Rc<Shard>,
    entry: &FetchPartition,
    remaining: u64,
) -> FetchPartitionResult {
    let key = (entry.topic_id, entry.partition);
    let mut result = FetchPartitionResult {
        topic_id: entry.topic_id,
        partition: entry.partition,
        error_code: ErrorCode::None,
        error_message: String::new(),
        high_watermark: OFFSET_NONE,
        log_start_offset: OFFSET_NONE,
        records: FetchRecords::new(),
    };
    let Some(partition) = shard.partition(key) else {
        (result.error_code, result.error_message) = partition_error(shard, key);
        return result;
    };
    result.high_watermark = partition.log.stable_end_offset();
    result.log_start_offset = partition.log.log_start_offset();
    if remaining == 0 || entry.partition_max_bytes == 0 {
        return result;
    }
    let max_bytes =
        u32::try_from(remaining.min(u64::from(entry.partition_max_bytes))).unwrap_or(u32::MAX);
    match partition.log.read(entry.fetch_offset, max_bytes).await {
        Ok(read) => {
            result.high_watermark = read.stable_end_offset;
            result.log_start_offset = read.log_start_offset;
            let bytes: u64 = read.batches.iter().map(|batch| batch.len() as u64).sum();
            let records: u64 = read.batches.iter().map(|batch| batch_records(batch)).sum();
            if bytes > 0 {
                shard
                    .metrics
                    .record_out(&partition.topic.name, bytes, records);
            }
            result.records = FetchRecords::from_chunks(read.batches);
        }
        Err(error) => {
            if !matches!(error, ReadError::OffsetOutOfRange { .. }) {
                error!(topic = %partition.topic.name, partition = partition.index, %error, "read failed");
            }
            result.error_code = read_error_code(&error);
            result.error_message = error.to_string();
        }
    }
    result
}

/// Waits until any of `watched` partitions' stable end offset passes the given offset, the
/// deadline passes, `cancelled` is set, or the shard starts draining.
pub async fn watch(
    shard: &Rc<Shard>,
    watched: &[(PartitionKey, i64)],
    deadline: Instant,
    cancelled: &crate::notify::Latch,
) {
    let partitions: Vec<(Rc<Partition>, i64)> = watched
        .iter()
        .filter_map(|(key, seen)| shard.partition(*key).map(|partition| (partition, *seen)))
        .collect();
    let changed = futures_lite::future::poll_fn(|context| {
        let mut any = false;
        for (partition, seen) in &partitions {
            let count = partition.appended.count();
            if partition.log.stable_end_offset() > *seen
                || partition.appended.changed_since(count, context.waker())
            {
                any = true;
            }
        }
        if any {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    let stop = futures_lite::future::or(cancelled.wait(), shard.draining.wait());
    futures_lite::future::or(futures_lite::future::or(changed, timeout), stop).await;
}

/// Answers offset queries for owned partitions.
pub async fn list_offsets(
    shard: &Rc<Shard>,
    entries: Vec<ListOffsetsPartition>,
) -> Vec<ListOffsetsPartitionResult> {
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        let key = (entry.topic_id, entry.partition);
        let mut result = ListOffsetsPartitionResult {
            topic_id: entry.topic_id,
            partition: entry.partition,
            error_code: ErrorCode::None,
            error_message: String::new(),
            offset: OFFSET_NONE,
            timestamp_ms: -1,
        };
        match shard.partition(key) {
            None => (result.error_code, result.error_message) = partition_error(shard, key),
            Some(partition) => match entry.query {
                OffsetQuery::Earliest => result.offset = partition.log.log_start_offset(),
                OffsetQuery::Latest => result.offset = partition.log.stable_end_offset(),
                OffsetQuery::Timestamp { timestamp_ms } => {
                    match partition.log.offset_for_timestamp(timestamp_ms).await {
                        Ok(Some(offset)) => result.offset = offset,
                        Ok(None) => result.offset = OFFSET_NONE,
                        Err(error) => {
                            result.error_code = read_error_code(&error);
                            result.error_message = error.to_string();
                        }
                    }
                }
            },
        }
        results.push(result);
    }
    results
}

/// Log start and end offsets of owned partitions of one topic.
pub fn describe(
    shard: &Rc<Shard>,
    topic_id: TopicId,
    partitions: &[u32],
) -> Vec<DescribedPartition> {
    partitions
        .iter()
        .map(|index| {
            let key = (topic_id, *index);
            let mut described = DescribedPartition {
                partition: *index,
                owner_shard: shard.id as u32,
                error_code: ErrorCode::None,
                error_message: String::new(),
                log_start_offset: OFFSET_NONE,
                log_end_offset: OFFSET_NONE,
            };
            match shard.partition(key) {
                Some(partition) => {
                    described.log_start_offset = partition.log.log_start_offset();
                    described.log_end_offset = partition.log.log_end_offset();
                }
                None => {
                    (described.error_code, described.error_message) = partition_error(shard, key)
                }
            }
            described
        })
        .collect()
}

/// The `__offsets` partition that holds `group`'s commits.
pub fn offsets_partition_for(shard: &Shard, group: &str) -> Option<PartitionKey> {
    let catalog = shard.catalog();
    let topic = catalog.topic(OFFSETS_TOPIC)?;
    Some((
        topic.topic_id,
        partition_for_group(group, OFFSETS_PARTITIONS),
    ))
}

fn check_group(group: &str) -> Result<(), String> {
    if group.is_empty() || group.len() > GROUP_ID_BYTES_MAX {
        return Err(format!("group id must be 1..={GROUP_ID_BYTES_MAX} bytes"));
    }
    Ok(())
}

/// Commits offsets for a group whose offsets partition this shard owns.
pub async fn commit_offsets(
    shard: &Rc<Shard>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let now_ms = weir_storage::wall_clock_ms();
    let catalog = shard.catalog();
    let mut results: Vec<OffsetCommitPartitionResult> = request
        .entries
        .iter()
        .map(|entry| OffsetCommitPartitionResult {
            topic_id: entry.topic_id,
            partition: entry.partition,
            error_code: ErrorCode::None,
            error_message: String::new(),
        })
        .collect();
    let fail_all = |results: &mut Vec<OffsetCommitPartitionResult>, code, message: &str| {
        for result in results.iter_mut().filter(|r| r.error_code.is_none()) {
            result.error_code = code;
            result.error_message = message.to_string();
        }
    };
    if let Err(reason) = check_group(&request.group_id) {
        fail_all(&mut results, ErrorCode::InvalidRequest, &reason);
        return OffsetCommitResponse { entries: results };
    }
    // The group's generation rules come first: a refused commit stores nothing.
    let fenced = shard.groups.borrow_mut().check_commit(
        &request.group_id,
        request.generation,
        &request.member_id,
        shard.clock_ms(),
    );
    if let Err(refused) = fenced {
        fail_all(&mut results, refused.error_code, &refused.message);
        return OffsetCommitResponse { entries: results };
    }
    let mut commits = Vec::new();
    let mut committed_indexes = Vec::new();
    for (index, entry) in request.entries.iter().enumerate() {
        let result = &mut results[index];
        match catalog.topic_by_id(entry.topic_id) {
            None => {
                result.error_code = ErrorCode::UnknownTopic;
                result.error_message = format!("no topic with id {}", entry.topic_id);
            }
            Some(topic) if entry.partition >= topic.config.partitions => {
                result.error_code = ErrorCode::UnknownPartition;
                result.error_message = format!(
                    "topic {} has {} partitions",
                    topic.name, topic.config.partitions
                );
            }
            Some(_) if entry.metadata.len() > METADATA_BYTES_MAX => {
                result.error_code = ErrorCode::OffsetMetadataTooLarge;
                result.error_message =
                    format!("metadata is longer than {METADATA_BYTES_MAX} bytes");
            }
            Some(_) => {
                commits.push((
                    CommitKey {
                        group: request.group_id.clone(),
                        topic_id: entry.topic_id,
                        partition: entry.partition,
                    },
                    CommitValue {
                        offset: entry.offset,
                        metadata: entry.metadata.clone(),
                        commit_time_ms: now_ms,
                    },
                ));
                committed_indexes.push(index);
            }
        }
    }
    if commits.is_empty() {
        return OffsetCommitResponse { entries: results };
    }
    let Some(key) = offsets_partition_for(shard, &request.group_id) else {
        fail_all(
            &mut results,
            ErrorCode::UnknownServerError,
            "the offsets topic is missing",
        );
        return OffsetCommitResponse { entries: results };
    };
    let Some(partition) = shard.partition(key) else {
        let (code, message) = partition_error(shard, key);
        fail_all(&mut results, code, &message);
        return OffsetCommitResponse { entries: results };
    };
    let keys: Vec<&CommitKey> = commits.iter().map(|(key, _)| key).collect();
    if !shard.offset_table_has_room(key, &keys) {
        fail_all(
            &mut results,
            ErrorCode::Overloaded,
            "too many committed offsets in this offsets partition",
        );
        return OffsetCommitResponse { entries: results };
    }
    let existed = shard.groups.borrow().contains(&request.group_id);
    let batch = Bytes::from(offsets::encode_commit_batch(&commits, now_ms));
    match partition.log.append(batch).await {
        Ok(_) if existed && !shard.groups.borrow().contains(&request.group_id) => {
            // The group was deleted or expired while the commit was written: its tombstone
            // follows the commit in the log, so replay forgets the commit; memory does too.
            partition.appended.notify();
            warn!(group = %request.group_id, "group removed while its commit was written");
        }
        Ok(_) => {
            partition.appended.notify();
            let progress: Vec<(TopicPartition, i64)> = commits
                .iter()
                .map(|(key, value)| {
                    let partition = TopicPartition {
                        topic_id: key.topic_id,
                        partition: key.partition,
                    };
                    (partition, value.offset)
                })
                .collect();
            shard.groups.borrow_mut().committed(
                &request.group_id,
                &progress,
                now_ms,
                shard.clock_ms(),
            );
            shard.record_commits(key, commits);
        }
        Err(error) => {
            error!(group = %request.group_id, partition = key.1, %error, "offset commit append failed");
            let code = append_error_code(&error);
            for index in committed_indexes {
                results[index].error_code = code;
                results[index].error_message = error.to_string();
            }
        }
    }
    OffsetCommitResponse { entries: results }
}

/// Reads a group's committed offsets from the table of its offsets partition.
pub fn fetch_offsets(shard: &Rc<Shard>, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse {
        error_code: ErrorCode::None,
        error_message: String::new(),
        entries: Vec::with_capacity(request.entries.len()),
    };
    if let Err(reason) = check_group(&request.group_id) {
        response.error_code = ErrorCode::InvalidRequest;
        response.error_message = reason;
        return response;
    }
    let Some(key) = offsets_partition_for(shard, &request.group_id) else {
        response.error_code = ErrorCode::UnknownServerError;
        response.error_message = "the offsets topic is missing".to_string();
        return response;
    };
    if shard.partition(key).is_none() {
        (response.error_code, response.error_message) = partition_error(shard, key);
        return response;
    }
    for entry in request.entries {
        let commit_key = CommitKey {
            group: request.group_id.clone(),
            topic_id: entry.topic_id,
            partition: entry.partition,
        };
        let committed = shard.committed_offset(key, &commit_key);
        response.entries.push(OffsetFetchPartitionResult {
            topic_id: entry.topic_id,
            partition: entry.partition,
            error_code: ErrorCode::None,
            error_message: String::new(),
            offset: committed.as_ref().map_or(OFFSET_NONE, |value| value.offset),
            metadata: committed.map(|value| value.metadata).unwrap_or_default(),
        });
    }
    response
}

/// Rebuilds the commit table of an owned `__offsets` partition by reading it from its start.
pub async fn replay_offsets(
    partition: &Partition,
    read_bytes_max: u32,
) -> Result<offsets::OffsetTable, ReadError> {
    let mut table = offsets::OffsetTable::default();
    let mut offset = partition.log.log_start_offset();
    let end = partition.log.stable_end_offset();
    let mut skipped = Vec::new();
    while offset < end {
        let read = partition.log.read(offset, read_bytes_max).await?;
        if read.batches.is_empty() {
            break;
        }
        for batch in &read.batches {
            table.replay(batch, &mut skipped);
            let Some(next) = next_offset(batch) else {
                warn!(
                    partition = partition.index,
                    "offsets batch without a readable header; replay stops"
                );
                return Ok(table);
            };
            offset = offset.max(next);
        }
    }
    for problem in skipped.iter().take(10) {
        warn!(partition = partition.index, %problem, "skipped an offsets record during replay");
    }
    Ok(table)
}

/// The offset after a stored batch: `baseOffset + lastOffsetDelta + 1`, from its header.
fn next_offset(batch: &[u8]) -> Option<i64> {
    let base = i64::from_be_bytes(batch.get(0..8)?.try_into().ok()?);
    let delta = i32::from_be_bytes(batch.get(23..27)?.try_into().ok()?);
    base.checked_add(i64::from(delta))?.checked_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::batch::{BatchBuilder, CRC_COVERED_START};

    fn batch(values: &[&[u8]]) -> Vec<u8> {
        let mut builder = BatchBuilder::new(1000);
        for value in values {
            builder.push(1000, None, Some(value), &[]);
        }
        builder.finish()
    }

    #[test]
    fn split_batches_accepts_concatenated_batches_and_rejects_the_rest() {
        let limits = BatchLimits::default();
        let one = batch(&[b"a", b"b"]);
        let two = batch(&[b"c"]);
        let mut both = one.clone();
        both.extend_from_slice(&two);
        let both = Bytes::from(both);
        let split = split_batches(&both, &limits).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(&split[0].bytes()[..], &one[..]);
        assert_eq!(&split[1].bytes()[..], &two[..]);
        assert_eq!(batch_records(split[0].bytes()), 2);
        assert_eq!(batch_records(split[1].bytes()), 1);
        assert_eq!(
            next_offset(split[0].bytes()),
            Some(2),
            "base 0 + last delta 1 + 1"
        );

        assert!(split_batches(&Bytes::new(), &limits).is_err());
        let truncated = both.slice(..both.len() - 1);
        assert!(split_batches(&truncated, &limits).is_err());
        let mut corrupt = both.to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(split_batches(&Bytes::from(corrupt), &limits).is_err());
        assert!(split_batches(&Bytes::from_static(b"garbage garbage garbage"), &limits).is_err());
        let tiny = BatchLimits {
            batch_bytes_max: 64,
            ..limits
        };
        assert!(
            split_batches(&both, &tiny).is_err(),
            "batch over the size limit"
        );
    }

    fn set_batch_length(batch: &mut [u8], length: i32) {
        batch[8..12].copy_from_slice(&length.to_be_bytes());
    }

    #[test]
    fn split_errors_get_the_codes_the_protocol_assigns() {
        let limits = BatchLimits::default();
        let good = batch(&[b"a", b"b"]);
        let length = i32::from_be_bytes(good[8..12].try_into().unwrap());
        type Mutation = fn(&mut Vec<u8>, i32);
        let cases: [(&str, Mutation, ErrorCode); 9] = [
            (
                "record byte flipped",
                |b, _| *b.last_mut().unwrap() ^= 0x40,
                ErrorCode::CorruptMessage,
            ),
            (
                "attributes flipped",
                |b, _| b[CRC_COVERED_START + 1] ^= 0x01,
                ErrorCode::CorruptMessage,
            ),
            ("wrong magic", |b, _| b[16] = 1, ErrorCode::InvalidBatch),
            (
                "batchLength past the bytes",
                |b, length| set_batch_length(b, length + 10),
                ErrorCode::CorruptMessage,
            ),
            (
                "batchLength short of the bytes",
                |b, length| set_batch_length(b, length - 5),
                ErrorCode::CorruptMessage,
            ),
            (
                "batchLength below the header",
                |b, _| set_batch_length(b, 20),
                ErrorCode::CorruptMessage,
            ),
            (
                "cut short",
                |b, _| b.truncate(b.len() - 7),
                ErrorCode::CorruptMessage,
            ),
            (
                "batchLength over the limit",
                |b, _| set_batch_length(b, i32::MAX),
                ErrorCode::MessageTooLarge,
            ),
            ("no bytes", |b, _| b.clear(), ErrorCode::InvalidBatch),
        ];
        for (case, mutate, expected) in cases {
            let mut bytes = good.clone();
            mutate(&mut bytes, length);
            let error = split_batches(&Bytes::from(bytes), &limits).expect_err(case);
            assert_eq!(error.error_code(), expected, "{case}: {error}");
        }
        let records_count = BatchError::RecordCount {
            records_count: 0,
            last_offset_delta: 0,
        };
        assert_eq!(batch_error_code(&records_count), ErrorCode::InvalidBatch);
        let timestamps = BatchError::BadTimestamps {
            base_timestamp: 5,
            max_timestamp: 1,
        };
        assert_eq!(batch_error_code(&timestamps), ErrorCode::InvalidBatch);
    }
}
