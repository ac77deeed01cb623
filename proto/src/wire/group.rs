//! The consumer-group membership apis: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups,
//! DescribeGroups and DeleteGroups (keys 32–38).
//!
//! This module owns their bodies. Invariants: fields appear on the wire in the order the structs
//! declare them; a generation is an `i32` where -1 ([`GENERATION_NONE`]) means "not a member"; an
//! empty `member_id` in a JoinGroup asks the coordinator to assign one; the group `state` is one
//! of the strings of [`GroupState`] (the decoder accepts any string so that a newer broker's
//! states still decode; [`GroupState::from_name`] tells them apart). Assignment is computed by the
//! coordinator, so the wire carries assignments only as lists of [`TopicPartition`].
//!
//! [`GENERATION_NONE`]: super::offsets::GENERATION_NONE

use super::api::ApiKey;
use super::codec::{DecodeError, Element, EncodeError, Reader, Writer};
use super::error_code::ErrorCode;
use super::message::wire_message;
use super::topic::TopicId;

/// The assignment strategy names the coordinator implements, as members list them.
pub const GROUP_STRATEGIES: &[&str] = &["range", "roundrobin", "sticky"];

/// A group's state as ListGroups and DescribeGroups name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members (possibly committed offsets only).
    Empty,
    /// A rebalance started; the coordinator waits for members to (re)join.
    PreparingRebalance,
    /// The join phase completed; members fetch their assignment with SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment for the current generation.
    Stable,
}

impl GroupState {
    /// The state's wire name.
    pub const fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "empty",
            GroupState::PreparingRebalance => "preparing_rebalance",
            GroupState::CompletingRebalance => "completing_rebalance",
            GroupState::Stable => "stable",
        }
    }

    /// The state with this wire name, if any.
    pub fn from_name(name: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
        ]
        .into_iter()
        .find(|state| state.name() == name)
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A partition of a topic, as assignments and owned lists carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
}

impl Element for TopicPartition {
    const WIRE_BYTES_MIN: usize = 4 + 4;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        Ok(())
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TopicPartition {
            topic_id: reader.u32("topic_partition.topic_id")?,
            partition: reader.u32("topic_partition.partition")?,
        })
    }
}

fn write_strings(
    writer: &mut Writer<'_>,
    field: &'static str,
    values: &[String],
) -> Result<(), EncodeError> {
    writer.count(field, values.len())?;
    for value in values {
        writer.string(field, value)?;
    }
    Ok(())
}

fn read_strings(reader: &mut Reader<'_>, field: &'static str) -> Result<Vec<String>, DecodeError> {
    let count = reader.count(field, 2)?;
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        values.push(reader.string(field)?);
    }
    Ok(values)
}

/// Joins a group (or rejoins it after a rebalance started); answered when the join phase
/// completes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct JoinGroupRequest {
    /// The group's id.
    pub group_id: String,
    /// The member's id; empty on a first join (the coordinator assigns one).
    pub member_id: String,
    /// The client's id, the prefix of an assigned member id.
    pub client_id: String,
    /// How long the coordinator waits for a heartbeat before removing the member, in ms.
    pub session_timeout_ms: u32,
    /// How long the coordinator waits for every member to rejoin once a rebalance starts, in ms.
    pub rebalance_timeout_ms: u32,
    /// The names of the subscribed topics.
    pub topics: Vec<String>,
    /// The assignment strategies the member supports, in preference order.
    pub strategies: Vec<String>,
    /// The partitions the member owned in its last generation (kept where possible by sticky).
    pub owned: Vec<TopicPartition>,
}

impl JoinGroupRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("join_group_request.group_id", &self.group_id)?;
        writer.string("join_group_request.member_id", &self.member_id)?;
        writer.string("join_group_request.client_id", &self.client_id)?;
        writer.u32(self.session_timeout_ms);
        writer.u32(self.rebalance_timeout_ms);
        write_strings(writer, "join_group_request.topics", &self.topics)?;
        write_strings(writer, "join_group_request.strategies", &self.strategies)?;
        writer.array_of("join_group_request.owned", &self.owned)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(JoinGroupRequest {
            group_id: reader.string("join_group_request.group_id")?,
            member_id: reader.string("join_group_request.member_id")?,
            client_id: reader.string("join_group_request.client_id")?,
            session_timeout_ms: reader.u32("join_group_request.session_timeout_ms")?,
            rebalance_timeout_ms: reader.u32("join_group_request.rebalance_timeout_ms")?,
            topics: read_strings(reader, "join_group_request.topics")?,
            strategies: read_strings(reader, "join_group_request.strategies")?,
            owned: reader.array_of("join_group_request.owned")?,
        })
    }
}

wire_message!(request JoinGroupRequest, ApiKey::JoinGroup, "join_group_request",
    response: JoinGroupResponse);

/// The outcome of the join phase for one member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct JoinGroupResponse {
    /// `none`, `invalid_session_timeout`, `inconsistent_group_protocol`, `unknown_member_id`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The generation formed (-1 on error).
    pub generation: i32,
    /// The member's id (assigned when the request's was empty).
    pub member_id: String,
    /// The leader's member id (the oldest member).
    pub leader_id: String,
    /// The strategy chosen for this generation.
    pub strategy: String,
    /// The member ids of the generation.
    pub members: Vec<String>,
}

impl JoinGroupResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.error_code(self.error_code);
        writer.string("join_group_response.error_message", &self.error_message)?;
        writer.i32(self.generation);
        writer.string("join_group_response.member_id", &self.member_id)?;
        writer.string("join_group_response.leader_id", &self.leader_id)?;
        writer.string("join_group_response.strategy", &self.strategy)?;
        write_strings(writer, "join_group_response.members", &self.members)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(JoinGroupResponse {
            error_code: reader.error_code("join_group_response.error_code")?,
            error_message: reader.string("join_group_response.error_message")?,
            generation: reader.i32("join_group_response.generation")?,
            member_id: reader.string("join_group_response.member_id")?,
            leader_id: reader.string("join_group_response.leader_id")?,
            strategy: reader.string("join_group_response.strategy")?,
            members: read_strings(reader, "join_group_response.members")?,
        })
    }
}

wire_message!(response JoinGroupResponse, ApiKey::JoinGroup, "join_group_response");

/// Fetches this member's assignment for a generation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SyncGroupRequest {
    /// The group's id.
    pub group_id: String,
    /// The generation the member joined.
    pub generation: i32,
    /// The member's id.
    pub member_id: String,
}

impl SyncGroupRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("sync_group_request.group_id", &self.group_id)?;
        writer.i32(self.generation);
        writer.string("sync_group_request.member_id", &self.member_id)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SyncGroupRequest {
            group_id: reader.string("sync_group_request.group_id")?,
            generation: reader.i32("sync_group_request.generation")?,
            member_id: reader.string("sync_group_request.member_id")?,
        })
    }
}

wire_message!(request SyncGroupRequest, ApiKey::SyncGroup, "sync_group_request",
    response: SyncGroupResponse);

/// A member's partitions for the generation it synced.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SyncGroupResponse {
    /// `none`, `rebalance_in_progress`, `illegal_generation`, `unknown_member_id`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The member's partitions.
    pub assignment: Vec<TopicPartition>,
}

impl SyncGroupResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.error_code(self.error_code);
        writer.string("sync_group_response.error_message", &self.error_message)?;
        writer.array_of("sync_group_response.assignment", &self.assignment)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SyncGroupResponse {
            error_code: reader.error_code("sync_group_response.error_code")?,
            error_message: reader.string("sync_group_response.error_message")?,
            assignment: reader.array_of("sync_group_response.assignment")?,
        })
    }
}

wire_message!(response SyncGroupResponse, ApiKey::SyncGroup, "sync_group_response");

/// Tells the coordinator the member is alive; the answer says whether to rejoin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct HeartbeatRequest {
    /// The group's id.
    pub group_id: String,
    /// The member's generation.
    pub generation: i32,
    /// The member's id.
    pub member_id: String,
}

impl HeartbeatRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("heartbeat_request.group_id", &self.group_id)?;
        writer.i32(self.generation);
        writer.string("heartbeat_request.member_id", &self.member_id)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(HeartbeatRequest {
            group_id: reader.string("heartbeat_request.group_id")?,
            generation: reader.i32("heartbeat_request.generation")?,
            member_id: reader.string("heartbeat_request.member_id")?,
        })
    }
}

wire_message!(request HeartbeatRequest, ApiKey::Heartbeat, "heartbeat_request",
    response: HeartbeatResponse);

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct HeartbeatResponse {
    /// `none`, `rebalance_in_progress`, `illegal_generation`, `unknown_member_id`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
}

impl HeartbeatResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.error_code(self.error_code);
        writer.string("heartbeat_response.error_message", &self.error_message)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(HeartbeatResponse {
            error_code: reader.error_code("heartbeat_response.error_code")?,
            error_message: reader.string("heartbeat_response.error_message")?,
        })
    }
}

wire_message!(response HeartbeatResponse, ApiKey::Heartbeat, "heartbeat_response");

/// Leaves a group; the others rebalance at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LeaveGroupRequest {
    /// The group's id.
    pub group_id: String,
    /// The member's id.
    pub member_id: String,
}

impl LeaveGroupRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("leave_group_request.group_id", &self.group_id)?;
        writer.string("leave_group_request.member_id", &self.member_id)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(LeaveGroupRequest {
            group_id: reader.string("leave_group_request.group_id")?,
            member_id: reader.string("leave_group_request.member_id")?,
        })
    }
}

wire_message!(request LeaveGroupRequest, ApiKey::LeaveGroup, "leave_group_request",
    response: LeaveGroupResponse);

/// The answer to a LeaveGroup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LeaveGroupResponse {
    /// `none`, `unknown_member_id`, `unknown_group`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
}

impl LeaveGroupResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.error_code(self.error_code);
        writer.string("leave_group_response.error_message", &self.error_message)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(LeaveGroupResponse {
            error_code: reader.error_code("leave_group_response.error_code")?,
            error_message: reader.string("leave_group_response.error_message")?,
        })
    }
}

wire_message!(response LeaveGroupResponse, ApiKey::LeaveGroup, "leave_group_response");

/// Lists every group the broker coordinates; the body is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ListGroupsRequest;

impl ListGroupsRequest {
    fn write_fields(&self, _writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        Ok(())
    }

    fn read_fields(_reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ListGroupsRequest)
    }
}

wire_message!(request ListGroupsRequest, ApiKey::ListGroups, "list_groups_request",
    response: ListGroupsResponse);

/// One group in a ListGroups answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupListing {
    /// The group's id.
    pub group_id: String,
    /// The group's state name (see [`GroupState`]).
    pub state: String,
    /// How many members the group has.
    pub member_count: u32,
    /// The current generation's strategy; empty when none.
    pub strategy: String,
}

impl Element for GroupListing {
    const WIRE_BYTES_MIN: usize = 2 + 2 + 4 + 2;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("list_groups_response.groups.group_id", &self.group_id)?;
        writer.string("list_groups_response.groups.state", &self.state)?;
        writer.u32(self.member_count);
        writer.string("list_groups_response.groups.strategy", &self.strategy)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(GroupListing {
            group_id: reader.string("list_groups_response.groups.group_id")?,
            state: reader.string("list_groups_response.groups.state")?,
            member_count: reader.u32("list_groups_response.groups.member_count")?,
            strategy: reader.string("list_groups_response.groups.strategy")?,
        })
    }
}

/// Every group the broker coordinates, including groups that only commit offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ListGroupsResponse {
    /// The groups.
    pub groups: Vec<GroupListing>,
}

impl ListGroupsResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.array_of("list_groups_response.groups", &self.groups)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ListGroupsResponse {
            groups: reader.array_of("list_groups_response.groups")?,
        })
    }
}

wire_message!(response ListGroupsResponse, ApiKey::ListGroups, "list_groups_response");

/// Describes groups: members, assignments, committed offsets and lag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DescribeGroupsRequest {
    /// The groups' ids.
    pub group_ids: Vec<String>,
}

impl DescribeGroupsRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        write_strings(writer, "describe_groups_request.group_ids", &self.group_ids)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DescribeGroupsRequest {
            group_ids: read_strings(reader, "describe_groups_request.group_ids")?,
        })
    }
}

wire_message!(request DescribeGroupsRequest, ApiKey::DescribeGroups, "describe_groups_request",
    response: DescribeGroupsResponse);

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupMemberDescription {
    /// The member's id.
    pub member_id: String,
    /// The client id it joined with.
    pub client_id: String,
    /// The address of the connection it joined from (`host:port`; empty when unknown).
    pub client_host: String,
    /// Its partitions in the current generation.
    pub assignment: Vec<TopicPartition>,
}

impl Element for GroupMemberDescription {
    const WIRE_BYTES_MIN: usize = 2 + 2 + 2 + 4;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string(
            "describe_groups_response.members.member_id",
            &self.member_id,
        )?;
        writer.string(
            "describe_groups_response.members.client_id",
            &self.client_id,
        )?;
        writer.string(
            "describe_groups_response.members.client_host",
            &self.client_host,
        )?;
        writer.array_of(
            "describe_groups_response.members.assignment",
            &self.assignment,
        )
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(GroupMemberDescription {
            member_id: reader.string("describe_groups_response.members.member_id")?,
            client_id: reader.string("describe_groups_response.members.client_id")?,
            client_host: reader.string("describe_groups_response.members.client_host")?,
            assignment: reader.array_of("describe_groups_response.members.assignment")?,
        })
    }
}

/// A group's position and lag in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupPartitionLag {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: u32,
    /// The member that owns it in the current generation; empty if unassigned.
    pub owner_member_id: String,
    /// The committed offset; -1 when none is committed.
    pub committed_offset: i64,
    /// The partition's log end offset (-1 when it could not be read).
    pub log_end_offset: i64,
    /// Records between the committed offset (or the log start when none) and the log end.
    pub lag_records: i64,
    /// The recent consume rate: records per second × 1000, over the recent commit window.
    pub consume_rate_milli: u64,
    /// `lag_records` / consume rate in ms; -1 when the rate is unknown or zero and the lag is
    /// positive; 0 when the lag is 0.
    pub lag_ms: i64,
}

impl Element for GroupPartitionLag {
    const WIRE_BYTES_MIN: usize = 4 + 4 + 2 + 8 + 8 + 8 + 8 + 8;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.u32(self.topic_id);
        writer.u32(self.partition);
        writer.string(
            "describe_groups_response.partitions.owner_member_id",
            &self.owner_member_id,
        )?;
        writer.i64(self.committed_offset);
        writer.i64(self.log_end_offset);
        writer.i64(self.lag_records);
        writer.u64(self.consume_rate_milli);
        writer.i64(self.lag_ms);
        Ok(())
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(GroupPartitionLag {
            topic_id: reader.u32("describe_groups_response.partitions.topic_id")?,
            partition: reader.u32("describe_groups_response.partitions.partition")?,
            owner_member_id: reader
                .string("describe_groups_response.partitions.owner_member_id")?,
            committed_offset: reader.i64("describe_groups_response.partitions.committed_offset")?,
            log_end_offset: reader.i64("describe_groups_response.partitions.log_end_offset")?,
            lag_records: reader.i64("describe_groups_response.partitions.lag_records")?,
            consume_rate_milli: reader
                .u64("describe_groups_response.partitions.consume_rate_milli")?,
            lag_ms: reader.i64("describe_groups_response.partitions.lag_ms")?,
        })
    }
}

/// One described group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupDescription {
    /// The group's id.
    pub group_id: String,
    /// `none`, or `group_id_not_found` when the broker knows no such group.
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The group's state name (see [`GroupState`]).
    pub state: String,
    /// The current generation (0 before the first one formed).
    pub generation: i32,
    /// The current generation's strategy; empty when none.
    pub strategy: String,
    /// The members.
    pub members: Vec<GroupMemberDescription>,
    /// The partitions the group committed for, and those assigned to members.
    pub partitions: Vec<GroupPartitionLag>,
}

impl Element for GroupDescription {
    const WIRE_BYTES_MIN: usize = 2 + 2 + 2 + 2 + 4 + 2 + 4 + 4;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("describe_groups_response.groups.group_id", &self.group_id)?;
        writer.error_code(self.error_code);
        writer.string(
            "describe_groups_response.groups.error_message",
            &self.error_message,
        )?;
        writer.string("describe_groups_response.groups.state", &self.state)?;
        writer.i32(self.generation);
        writer.string("describe_groups_response.groups.strategy", &self.strategy)?;
        writer.array_of("describe_groups_response.members", &self.members)?;
        writer.array_of("describe_groups_response.partitions", &self.partitions)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(GroupDescription {
            group_id: reader.string("describe_groups_response.groups.group_id")?,
            error_code: reader.error_code("describe_groups_response.groups.error_code")?,
            error_message: reader.string("describe_groups_response.groups.error_message")?,
            state: reader.string("describe_groups_response.groups.state")?,
            generation: reader.i32("describe_groups_response.groups.generation")?,
            strategy: reader.string("describe_groups_response.groups.strategy")?,
            members: reader.array_of("describe_groups_response.members")?,
            partitions: reader.array_of("describe_groups_response.partitions")?,
        })
    }
}

/// The described groups, in the order of the request's ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DescribeGroupsResponse {
    /// The groups.
    pub groups: Vec<GroupDescription>,
}

impl DescribeGroupsResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.array_of("describe_groups_response.groups", &self.groups)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DescribeGroupsResponse {
            groups: reader.array_of("describe_groups_response.groups")?,
        })
    }
}

wire_message!(response DescribeGroupsResponse, ApiKey::DescribeGroups, "describe_groups_response");

/// Deletes empty groups and their committed offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DeleteGroupsRequest {
    /// The groups' ids.
    pub group_ids: Vec<String>,
}

impl DeleteGroupsRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        write_strings(writer, "delete_groups_request.group_ids", &self.group_ids)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DeleteGroupsRequest {
            group_ids: read_strings(reader, "delete_groups_request.group_ids")?,
        })
    }
}

wire_message!(request DeleteGroupsRequest, ApiKey::DeleteGroups, "delete_groups_request",
    response: DeleteGroupsResponse);

/// The outcome of deleting one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeleteGroupResult {
    /// The group's id.
    pub group_id: String,
    /// `none` when the group and its offsets are gone; `non_empty_group` when it has members,
    /// `group_id_not_found` when the broker knows no such group.
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
}

impl Element for DeleteGroupResult {
    const WIRE_BYTES_MIN: usize = 2 + 2 + 2;

    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.string("delete_groups_response.results.group_id", &self.group_id)?;
        writer.error_code(self.error_code);
        writer.string(
            "delete_groups_response.results.error_message",
            &self.error_message,
        )
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DeleteGroupResult {
            group_id: reader.string("delete_groups_response.results.group_id")?,
            error_code: reader.error_code("delete_groups_response.results.error_code")?,
            error_message: reader.string("delete_groups_response.results.error_message")?,
        })
    }
}

/// One result per requested group, in the order of the request's ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DeleteGroupsResponse {
    /// The results.
    pub results: Vec<DeleteGroupResult>,
}

impl DeleteGroupsResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.array_of("delete_groups_response.results", &self.results)
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DeleteGroupsResponse {
            results: reader.array_of("delete_groups_response.results")?,
        })
    }
}

wire_message!(response DeleteGroupsResponse, ApiKey::DeleteGroups, "delete_groups_response");
