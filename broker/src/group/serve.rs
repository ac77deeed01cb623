//! The shard side of the coordinator: routing group requests to the shard that owns the group's
//! `__offsets` partition, running the [`Coordinator`] there, persisting its records, answering
//! held joins, the timer loop, and lag (log offsets asked from the partitions' owners).
//!
//! This module owns the I/O around the sans-I/O [`Coordinator`]. Invariants: a group's state is
//! touched only on its coordinator shard (other shards forward [`GroupCall`]s); a coordinator
//! [`Output`] is finished in order — its records are appended (and durable: `__offsets` is
//! `flush = always`) before the join answers it carries are sent, so a member never holds a
//! generation that a crash could forget; every held join's waiter is registered before the output
//! that may answer it is finished. On a crash the coordinator is rebuilt from the records at
//! start ([`restore_partition`]). A deleted or expired group is removed from the coordinator and
//! its offsets table at once (so no request sees it half-removed), then its tombstone is appended
//! so the removal survives a restart.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::{error, info, warn};
use weir_proto::wire::{
    DeleteGroupResult, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, ErrorCode, GroupDescription, GroupListing, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsResponse, ListOffsetsPartition, ListOffsetsRequest, OffsetQuery, SyncGroupRequest,
    SyncGroupResponse, TopicPartition, GENERATION_NONE,
};

use super::{fill_lag, Coordinator, GroupMetricsRow, JoinOutcome, Output, Ticket, TopicLookup};
use crate::catalog::{Catalog, TopicId};
use crate::handlers;
use crate::metrics::{self, GroupPartitionSeries, GroupSeries};
use crate::notify::Latch;
use crate::offsets::{self, OffsetTable};
use crate::owner;
use crate::partition::Partition;
use crate::shard::{PeerReply, PeerRequest, Shard};

/// How often each shard runs its coordinator's timers, in milliseconds: the precision of session
/// and rebalance timeouts.
pub const GROUP_TICK_MS: u64 = 100;

/// A group request forwarded to the coordinator shard.
#[derive(Debug)]
pub enum GroupCall {
    /// A JoinGroup, with the address the member connected from.
    Join(JoinGroupRequest, String),
    /// A SyncGroup.
    Sync(SyncGroupRequest),
    /// A Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// A LeaveGroup.
    Leave(LeaveGroupRequest),
    /// Describe one group, lag included.
    Describe(String),
    /// List the groups this shard coordinates.
    List,
    /// This shard's group metrics rows, at most this many partitions.
    Metrics(usize),
    /// Delete one empty group and its committed offsets.
    Delete(String),
}

/// The coordinator shard's answer to a [`GroupCall`].
#[derive(Debug)]
pub enum GroupAnswer {
    /// Answer to [`GroupCall::Join`].
    Join(JoinGroupResponse),
    /// Answer to [`GroupCall::Sync`].
    Sync(SyncGroupResponse),
    /// Answer to [`GroupCall::Heartbeat`].
    Heartbeat(HeartbeatResponse),
    /// Answer to [`GroupCall::Leave`].
    Leave(LeaveGroupResponse),
    /// Answer to [`GroupCall::Describe`].
    Describe(GroupDescription),
    /// Answer to [`GroupCall::List`].
    List(Vec<GroupListing>),
    /// Answer to [`GroupCall::Metrics`].
    Metrics(Vec<GroupSeries>),
    /// Answer to [`GroupCall::Delete`].
    Delete(DeleteGroupResult),
}

/// A held JoinGroup's answer slot.
#[derive(Debug, Default)]
pub struct JoinWaiter {
    answer: std::cell::RefCell<Option<JoinGroupResponse>>,
    ready: Latch,
}

/// The catalog as the coordinator sees topics: name → (id, partition count); internal topics
/// cannot be subscribed to.
struct CatalogTopics(Arc<Catalog>);

impl TopicLookup for CatalogTopics {
    fn topic(&self, name: &str) -> Option<(TopicId, u32)> {
        let topic = self.0.topic(name)?;
        (!topic.is_internal()).then_some((topic.topic_id, topic.config.partitions))
    }
}

/// Serves a JoinGroup from any shard.
pub async fn join_group(
    shard: &Rc<Shard>,
    request: JoinGroupRequest,
    client_host: &str,
) -> JoinGroupResponse {
    let group_id = request.group_id.clone();
    match route(
        shard,
        &group_id,
        GroupCall::Join(request, client_host.to_string()),
    )
    .await
    {
        Ok(GroupAnswer::Join(response)) => response,
        other => JoinGroupResponse {
            error_code: ErrorCode::UnknownServerError,
            error_message: unreachable_message(other),
            generation: GENERATION_NONE,
            ..JoinGroupResponse::default()
        },
    }
}

/// Serves a SyncGroup from any shard.
pub async fn sync_group(shard: &Rc<Shard>, request: SyncGroupRequest) -> SyncGroupResponse {
    let group_id = request.group_id.clone();
    match route(shard, &group_id, GroupCall::Sync(request)).await {
        Ok(GroupAnswer::Sync(response)) => response,
        other => SyncGroupResponse {
            error_code: ErrorCode::UnknownServerError,
            error_message: unreachable_message(other),
            assignment: Vec::new(),
        },
    }
}

/// Serves a Heartbeat from any shard.
pub async fn heartbeat(shard: &Rc<Shard>, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.clone();
    match route(shard, &group_id, GroupCall::Heartbeat(request)).await {
        Ok(GroupAnswer::Heartbeat(response)) => response,
        other => HeartbeatResponse {
            error_code: ErrorCode::UnknownServerError,
            error_message: unreachable_message(other),
        },
    }
}

/// Serves a LeaveGroup from any shard.
pub async fn leave_group(shard: &Rc<Shard>, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = request.group_id.clone();
    match route(shard, &group_id, GroupCall::Leave(request)).await {
        Ok(GroupAnswer::Leave(response)) => response,
        other => LeaveGroupResponse {
            error_code: ErrorCode::UnknownServerError,
            error_message: unreachable_message(other),
        },
    }
}

/// Serves a ListGroups: every shard's groups, sorted by id.
pub async fn list_groups(shard: &Rc<Shard>) -> ListGroupsResponse {
    let mut groups = Vec::new();
    for to in 0..shard.shard_count() {
        match on_shard(shard, to, GroupCall::List).await {
            Ok(GroupAnswer::List(listed)) => groups.extend(listed),
            other => warn!(shard = to, ?other, "no group list from shard"),
        }
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    ListGroupsResponse { groups }
}

/// Serves a DescribeGroups: each group from its coordinator, in the order asked.
pub async fn describe_groups(
    shard: &Rc<Shard>,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for group_id in request.group_ids {
        let answer = route(shard, &group_id, GroupCall::Describe(group_id.clone())).await;
        groups.push(match answer {
            Ok(GroupAnswer::Describe(description)) => description,
            other => GroupDescription {
                group_id,
                error_code: ErrorCode::UnknownServerError,
                error_message: unreachable_message(other),
                state: String::new(),
                generation: 0,
                strategy: String::new(),
                members: Vec::new(),
                partitions: Vec::new(),
            },
        });
    }
    DescribeGroupsResponse { groups }
}

/// Serves a DeleteGroups: each group deleted by its coordinator, in the order asked.
pub async fn delete_groups(
    shard: &Rc<Shard>,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.group_ids.len());
    for group_id in request.group_ids {
        let answer = route(shard, &group_id, GroupCall::Delete(group_id.clone())).await;
        results.push(match answer {
            Ok(GroupAnswer::Delete(result)) => result,
            other => DeleteGroupResult {
                group_id,
                error_code: ErrorCode::UnknownServerError,
                error_message: unreachable_message(other),
            },
        });
    }
    DeleteGroupsResponse { results }
}

/// Every shard's group metrics, at most `partitions_max` partition series in all.
pub async fn metrics(shard: &Rc<Shard>, partitions_max: usize) -> Vec<GroupSeries> {
    let mut series = Vec::new();
    let mut budget = partitions_max;
    for to in 0..shard.shard_count() {
        match on_shard(shard, to, GroupCall::Metrics(budget)).await {
            Ok(GroupAnswer::Metrics(rows)) => {
                budget -= rows
                    .iter()
                    .map(|row| row.partitions.len())
                    .sum::<usize>()
                    .min(budget);
                series.extend(rows);
            }
            other => warn!(shard = to, ?other, "no group metrics from shard"),
        }
    }
    series
}

fn unreachable_message(answer: Result<GroupAnswer, String>) -> String {
    match answer {
        Err(message) => message,
        Ok(other) => format!("unexpected coordinator answer {other:?}"),
    }
}

/// Sends `call` to the coordinator of `group_id`.
async fn route(shard: &Rc<Shard>, group_id: &str, call: GroupCall) -> Result<GroupAnswer, String> {
    let Some(key) = owner::offsets_partition_for(shard, group_id) else {
        return Err("the offsets topic is missing".to_string());
    };
    on_shard(shard, shard.owner_of(key), call).await
}

async fn on_shard(shard: &Rc<Shard>, to: usize, call: GroupCall) -> Result<GroupAnswer, String> {
    if to == shard.id {
        return Ok(serve(shard, call).await);
    }
    match shard.peers.call(to, PeerRequest::Group(call)).await {
        Ok(PeerReply::Group(answer)) => Ok(answer),
        Ok(other) => Err(format!("unexpected reply from shard {to}: {other:?}")),
        Err(error) => Err(format!(
            "the group's coordinator shard {to} did not answer: {error}"
        )),
    }
}

/// Runs a group call on this shard's coordinator.
pub async fn serve(shard: &Rc<Shard>, call: GroupCall) -> GroupAnswer {
    let now_ms = shard.clock_ms();
    let topics = CatalogTopics(shard.catalog());
    match call {
        GroupCall::Join(request, client_host) => {
            let mut out = Output::default();
            let outcome =
                shard
                    .groups
                    .borrow_mut()
                    .join(request, &client_host, now_ms, &topics, &mut out);
            let waiter = match &outcome {
                JoinOutcome::Held(ticket) => Some(register(shard, *ticket)),
                JoinOutcome::Done(_) => None,
            };
            finish(shard, out).await;
            GroupAnswer::Join(match (outcome, waiter) {
                (JoinOutcome::Done(response), _) => response,
                (JoinOutcome::Held(_), Some(waiter)) => {
                    waiter.ready.wait().await;
                    waiter
                        .answer
                        .borrow_mut()
                        .take()
                        .unwrap_or_else(|| JoinGroupResponse {
                            error_code: ErrorCode::UnknownServerError,
                            error_message: "the held join was answered twice".to_string(),
                            generation: GENERATION_NONE,
                            ..JoinGroupResponse::default()
                        })
                }
                (JoinOutcome::Held(_), None) => unreachable!("a held join always has a waiter"),
            })
        }
        GroupCall::Sync(request) => {
            GroupAnswer::Sync(shard.groups.borrow_mut().sync(&request, now_ms))
        }
        GroupCall::Heartbeat(request) => {
            GroupAnswer::Heartbeat(shard.groups.borrow_mut().heartbeat(&request, now_ms))
        }
        GroupCall::Leave(request) => {
            let mut out = Output::default();
            let response = shard
                .groups
                .borrow_mut()
                .leave(&request, now_ms, &topics, &mut out);
            finish(shard, out).await;
            GroupAnswer::Leave(response)
        }
        GroupCall::Describe(group_id) => GroupAnswer::Describe(describe(shard, &group_id).await),
        GroupCall::List => GroupAnswer::List(shard.groups.borrow().list()),
        GroupCall::Metrics(partitions_max) => {
            GroupAnswer::Metrics(metrics_rows(shard, partitions_max).await)
        }
        GroupCall::Delete(group_id) => {
            let mut result = shard.groups.borrow_mut().delete(&group_id);
            if result.error_code.is_none() {
                info!(group = %group_id, "group deleted");
                if let Err((code, message)) = remove_group(shard, &group_id).await {
                    result.error_code = code;
                    result.error_message = message;
                }
            }
            GroupAnswer::Delete(result)
        }
    }
}

fn register(shard: &Shard, ticket: Ticket) -> Rc<JoinWaiter> {
    let waiter = Rc::new(JoinWaiter::default());
    shard
        .join_waiters
        .borrow_mut()
        .insert(ticket, Rc::clone(&waiter));
    waiter
}

/// Appends the output's records, then hands out its join answers.
async fn finish(shard: &Rc<Shard>, out: Output) {
    // The coordinator already dropped the expired groups: drop their offsets in the same turn,
    // before anything waits, so no reader sees a group gone from the list with its offsets
    // still served. Their tombstones follow.
    let expired: Vec<_> = out
        .expired
        .iter()
        .map(|group| (group, forget_group(shard, group)))
        .collect();
    for (group, member, why) in &out.removed {
        info!(%group, %member, why, "group member removed");
    }
    for record in &out.records {
        if record.members.is_empty() {
            info!(group = %record.group, generation = record.generation, "group emptied");
        } else {
            info!(
                group = %record.group,
                generation = record.generation,
                strategy = %record.strategy,
                leader = %record.leader,
                members = record.members.len(),
                "group generation formed"
            );
        }
        persist(shard, record).await;
    }
    for (group, forgotten) in expired {
        info!(%group, "group expired: no members for group-offsets-retention-ms");
        metrics::increment(&shard.metrics.groups_expired);
        let written = match forgotten {
            Ok(partition) => write_tombstone(&partition, group).await,
            Err(error) => Err(error),
        };
        if let Err((_, message)) = written {
            error!(%group, %message, "expired group's tombstone not persisted");
        }
    }
    let mut waiters = shard.join_waiters.borrow_mut();
    for (ticket, response) in out.joins {
        if let Some(waiter) = waiters.remove(&ticket) {
            *waiter.answer.borrow_mut() = Some(response);
            waiter.ready.set();
        }
    }
}

/// Drops the committed offsets of a group the coordinator already removed, then appends its
/// tombstone. On failure the group is gone from memory but may return after a restart; the
/// error says so.
async fn remove_group(shard: &Rc<Shard>, group: &str) -> Result<(), (ErrorCode, String)> {
    let partition = forget_group(shard, group)?;
    write_tombstone(&partition, group).await
}

/// Drops the committed offsets of a group the coordinator already removed, without waiting;
/// returns the offsets partition its tombstone goes to.
fn forget_group(shard: &Rc<Shard>, group: &str) -> Result<Rc<Partition>, (ErrorCode, String)> {
    let Some(key) = owner::offsets_partition_for(shard, group) else {
        return Err((
            ErrorCode::UnknownServerError,
            "the offsets topic is missing".to_string(),
        ));
    };
    shard.forget_group_offsets(key, group);
    shard.partition(key).ok_or_else(|| {
        (
            ErrorCode::NotOwner,
            format!("the group's offsets partition {} is not open here", key.1),
        )
    })
}

/// Appends the tombstone of a forgotten group, so a restart does not bring it back.
async fn write_tombstone(partition: &Partition, group: &str) -> Result<(), (ErrorCode, String)> {
    let batch = Bytes::from(offsets::encode_tombstone_batch(
        group,
        weir_storage::wall_clock_ms(),
    ));
    match partition.log.append(batch).await {
        Ok(_) => {
            partition.appended.notify();
            Ok(())
        }
        Err(error) => Err((
            owner::append_error_code(&error),
            format!(
                "the group was removed but its tombstone could not be written ({error}); \
                 it may reappear after a restart"
            ),
        )),
    }
}

async fn persist(shard: &Rc<Shard>, record: &offsets::GroupMetadata) {
    let Some(key) = owner::offsets_partition_for(shard, &record.group) else {
        error!(group = %record.group, "the offsets topic is missing; group state not persisted");
        return;
    };
    let Some(partition) = shard.partition(key) else {
        error!(group = %record.group, partition = key.1, "the group's offsets partition is not open here");
        return;
    };
    let now_ms = weir_storage::wall_clock_ms();
    let batch = Bytes::from(offsets::encode_group_batch(record, now_ms));
    match partition.log.append(batch).await {
        Ok(_) => partition.appended.notify(),
        Err(error) => {
            error!(group = %record.group, partition = key.1, %error, "cannot persist group metadata")
        }
    }
}

/// Runs the coordinator's timers every [`GROUP_TICK_MS`] until the task is dropped.
pub async fn tick_loop(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(GROUP_TICK_MS)).await;
        if shard.groups.borrow().group_count() == 0 {
            continue;
        }
        let topics = CatalogTopics(shard.catalog());
        let mut out = Output::default();
        shard
            .groups
            .borrow_mut()
            .tick(shard.clock_ms(), &topics, &mut out);
        finish(&shard, out).await;
    }
}

/// Loads the groups and commits replayed from an `__offsets` partition into the coordinator.
/// Each group's last change is the wall-clock time of its latest group record or commit, moved
/// onto the coordinator's clock (`now_ms`, read at `wall_now_ms`), so retention counts the time
/// before the restart too.
pub fn restore_partition(
    coordinator: &mut Coordinator,
    table: &mut OffsetTable,
    now_ms: u64,
    wall_now_ms: i64,
) {
    let mut changed: HashMap<String, i64> = table.take_group_times();
    for metadata in table.take_groups() {
        coordinator.restore(metadata, now_ms);
    }
    let mut commits: Vec<(&offsets::CommitKey, &offsets::CommitValue)> = table.entries().collect();
    commits.sort_by_key(|(_, value)| value.commit_time_ms);
    for (key, value) in commits {
        let partition = TopicPartition {
            topic_id: key.topic_id,
            partition: key.partition,
        };
        coordinator.committed(
            &key.group,
            &[(partition, value.offset)],
            value.commit_time_ms,
            now_ms,
        );
        let latest = changed.entry(key.group.clone()).or_insert(i64::MIN);
        *latest = (*latest).max(value.commit_time_ms);
    }
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
    for (group, changed_wall_ms) in changed {
        let age_ms = wall_now_ms.saturating_sub(changed_wall_ms).max(0);
        coordinator.restored_change(&group, now.saturating_sub(age_ms));
    }
}

/// Describes a group this shard coordinates, with log end offsets and lag from the owners.
async fn describe(shard: &Rc<Shard>, group_id: &str) -> GroupDescription {
    let Some(mut description) = shard.groups.borrow().describe(group_id) else {
        return GroupDescription {
            group_id: group_id.to_string(),
            error_code: ErrorCode::GroupIdNotFound,
            error_message: format!("no group {group_id:?}"),
            state: String::new(),
            generation: 0,
            strategy: String::new(),
            members: Vec::new(),
            partitions: Vec::new(),
        };
    };
    let keys: Vec<TopicPartition> = description
        .partitions
        .iter()
        .map(|p| TopicPartition {
            topic_id: p.topic_id,
            partition: p.partition,
        })
        .collect();
    let offsets = log_offsets(shard, &keys).await;
    for partition in &mut description.partitions {
        let key = TopicPartition {
            topic_id: partition.topic_id,
            partition: partition.partition,
        };
        fill_lag(partition, offsets.get(&key).copied());
    }
    description
}

async fn metrics_rows(shard: &Rc<Shard>, partitions_max: usize) -> Vec<GroupSeries> {
    let rows: Vec<GroupMetricsRow> = shard.groups.borrow().metrics_rows(partitions_max);
    let keys: Vec<TopicPartition> = rows
        .iter()
        .flat_map(|row| row.partitions.iter())
        .map(|p| TopicPartition {
            topic_id: p.topic_id,
            partition: p.partition,
        })
        .collect();
    let offsets = log_offsets(shard, &keys).await;
    let catalog = shard.catalog();
    rows.into_iter()
        .map(|row| GroupSeries {
            group: row.group,
            members: row.members,
            rebalances_total: row.rebalances_total,
            partitions: row
                .partitions
                .into_iter()
                .filter_map(|mut partition| {
                    let topic = catalog.topic_by_id(partition.topic_id)?;
                    let key = TopicPartition {
                        topic_id: partition.topic_id,
                        partition: partition.partition,
                    };
                    let log = offsets.get(&key).copied();
                    log?;
                    fill_lag(&mut partition, log);
                    Some(GroupPartitionSeries {
                        topic: topic.name.clone(),
                        partition: partition.partition,
                        lag_records: partition.lag_records,
                        lag_ms: (partition.lag_ms >= 0).then_some(partition.lag_ms),
                    })
                })
                .collect(),
        })
        .collect()
}

/// `(log start, log end)` of each partition, asked from its owner; partitions whose owner did
/// not answer (or that no longer exist) are missing from the map.
async fn log_offsets(
    shard: &Rc<Shard>,
    partitions: &[TopicPartition],
) -> HashMap<TopicPartition, (i64, i64)> {
    let entries: Vec<ListOffsetsPartition> = partitions
        .iter()
        .flat_map(|p| {
            [OffsetQuery::Earliest, OffsetQuery::Latest].map(|query| ListOffsetsPartition {
                topic_id: p.topic_id,
                partition: p.partition,
                query,
            })
        })
        .collect();
    let results = handlers::list_offsets(shard, ListOffsetsRequest { entries })
        .await
        .entries;
    let mut offsets = HashMap::with_capacity(partitions.len());
    for (index, partition) in partitions.iter().enumerate() {
        let (Some(start), Some(end)) = (results.get(2 * index), results.get(2 * index + 1)) else {
            continue;
        };
        if start.error_code.is_none() && end.error_code.is_none() {
            offsets.insert(*partition, (start.offset, end.offset));
        }
    }
    offsets
}
