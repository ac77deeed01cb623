//! The consumer-group coordinator: membership, generations, assignment, commit fencing and lag,
//! as a sans-I/O state machine per group.
//!
//! This module owns the groups whose `__offsets` partition the shard owns. It is driven by
//! requests and ticks, each with the shard's monotonic clock `now_ms`, and returns responses, the
//! JoinGroup answers that became ready ([`Output::joins`], keyed by the [`Ticket`] a held join
//! got) and the group records to persist ([`Output::records`]). The shard appends the records to
//! the group's `__offsets` partition before it sends the answers, and runs [`Coordinator::tick`]
//! periodically for timeouts. Nothing here does I/O, reads a clock or draws random numbers.
//!
//! Protocol (eager): a join by a new member, a leave, a member's session timeout, a changed
//! subscription, or a subscribed topic that appears, disappears or grows starts a rebalance
//! (`preparing_rebalance`); every member must rejoin; the
//! generation forms when every known member has rejoined or the rebalance timeout (the largest of
//! the members') passed, dropping those that did not; the coordinator computes the assignment with
//! the strategy chosen from the leader's (oldest member's) list, answers every held join, and the
//! group is `completing_rebalance` until every member has fetched its assignment (SyncGroup), then
//! `stable`.
//!
//! Invariants: within one generation no partition has two owners (the assignors guarantee it and
//! the simulation test checks it across random schedules); the generation only grows; a member
//! whose join is held never times out by session; every held join is answered exactly once
//! (formed, superseded, or the member left); the number of groups and of members per group is
//! bounded by [`GroupLimits`]; per partition at most [`RATE_SAMPLES_MAX`] commit samples are kept.
//!
//! Removal: a group with no members whose last change (it became empty, was created, or
//! committed) is at least [`GroupLimits::offsets_retention_ms`] old is expired by
//! [`Coordinator::tick`] and reported in [`Output::expired`]; [`Coordinator::delete`] removes an
//! empty group on request. A group with members is never removed. The shard makes either removal
//! durable with a tombstone and drops the group's committed offsets.

pub mod assign;
pub mod serve;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use weir_proto::wire::{
    DeleteGroupResult, ErrorCode, GroupDescription, GroupListing, GroupMemberDescription,
    GroupPartitionLag, GroupState, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
    TopicPartition, GENERATION_NONE, OFFSET_NONE,
};

use crate::catalog::TopicId;
use crate::offsets::{GroupMetadata, MemberMetadata, GROUP_ID_BYTES_MAX};
use assign::{MemberSubscription, Strategy};

/// Commit samples kept per partition to estimate the consume rate.
pub const RATE_SAMPLES_MAX: usize = 16;
/// Samples older than this (relative to the newest) do not count toward the consume rate.
pub const RATE_WINDOW_MS: i64 = 5 * 60 * 1000;
/// The most topics one member may subscribe to.
pub const MEMBER_TOPICS_MAX: usize = 1024;
/// The most strategies one member may list.
pub const MEMBER_STRATEGIES_MAX: usize = 16;
/// The longest rebalance timeout a member may ask for, in milliseconds; a larger one is cut to
/// this, so one member cannot hold its group's join phase open indefinitely. A rebalance timeout
/// of 0 means the member's session timeout.
pub const REBALANCE_TIMEOUT_MS_MAX: u32 = 30 * 60 * 1000;

/// The coordinator's configured limits (from the broker configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Smallest session timeout a member may ask for, in milliseconds.
    pub session_timeout_ms_min: u32,
    /// Largest session timeout a member may ask for, in milliseconds.
    pub session_timeout_ms_max: u32,
    /// Most members one group may have.
    pub members_per_group_max: u32,
    /// Most groups one shard coordinates.
    pub groups_per_shard_max: u32,
    /// How long an empty group's first rebalance waits for more members, in milliseconds.
    pub initial_rebalance_delay_ms: u32,
    /// How long a group without members is kept after its last change (it became empty or
    /// committed) before it expires with its committed offsets, in milliseconds.
    pub offsets_retention_ms: u64,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 300_000,
            members_per_group_max: 1_000,
            groups_per_shard_max: 10_000,
            initial_rebalance_delay_ms: 0,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
        }
    }
}

/// Identifies a held JoinGroup until its answer is ready.
pub type Ticket = u64;

/// Resolves subscribed topic names to ids and partition counts.
pub trait TopicLookup {
    /// The topic's id and partition count, if it exists.
    fn topic(&self, name: &str) -> Option<(TopicId, u32)>;
}

impl TopicLookup for BTreeMap<String, (TopicId, u32)> {
    fn topic(&self, name: &str) -> Option<(TopicId, u32)> {
        self.get(name).copied()
    }
}

/// What a coordinator call produced besides its direct answer.
#[derive(Debug, Default)]
pub struct Output {
    /// Answers to held joins that are now ready.
    pub joins: Vec<(Ticket, JoinGroupResponse)>,
    /// Group records to append to the groups' `__offsets` partitions, in order.
    pub records: Vec<GroupMetadata>,
    /// Members removed, as `(group, member, why)`, for the log.
    pub removed: Vec<(String, String, &'static str)>,
    /// Groups that expired (no members for the retention time): their tombstones must be
    /// appended and their committed offsets dropped.
    pub expired: Vec<String>,
}

/// The immediate outcome of a JoinGroup.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Answered now (an error, or a known member rejoining a stable group unchanged).
    Done(JoinGroupResponse),
    /// Held; the answer comes in an [`Output`] under this ticket.
    Held(Ticket),
}

/// Why an offset commit is refused by the group (the commit stores nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRefused {
    /// The code every entry gets.
    pub error_code: ErrorCode,
    /// Why.
    pub message: String,
}

/// One group's lag row for the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetricsRow {
    /// The group.
    pub group: String,
    /// Members now.
    pub members: u32,
    /// Rebalances started since the coordinator started.
    pub rebalances_total: u64,
    /// The partitions to report lag for, with their committed offset and consume rate.
    pub partitions: Vec<GroupPartitionLag>,
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    client_id: String,
    client_host: String,
    session_timeout_ms: u32,
    rebalance_timeout_ms: u32,
    topics: Vec<String>,
    strategies: Vec<String>,
    /// What the member said it owned at its last join; sticky keeps these.
    owned: Vec<TopicPartition>,
    assignment: Vec<TopicPartition>,
    session_deadline_ms: u64,
    /// Its held join in the current rebalance.
    pending: Option<Ticket>,
    /// Whether it fetched its assignment of the current generation.
    synced: bool,
}

impl Member {
    fn metadata(&self) -> MemberMetadata {
        MemberMetadata {
            member_id: self.member_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            topics: self.topics.clone(),
            strategies: self.strategies.clone(),
            assignment: self.assignment.clone(),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Progress {
    offset: i64,
    /// `(commit time ms, offset)`, oldest first, at most [`RATE_SAMPLES_MAX`].
    samples: VecDeque<(i64, i64)>,
}

impl Progress {
    fn record(&mut self, offset: i64, commit_time_ms: i64) {
        self.offset = offset;
        if self.samples.len() == RATE_SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back((commit_time_ms, offset));
    }

    /// Records per second × 1000 over the samples within [`RATE_WINDOW_MS`] of the newest; 0
    /// when fewer than two samples span a positive time.
    fn rate_milli(&self) -> u64 {
        let Some(&(newest_ms, newest_offset)) = self.samples.back() else {
            return 0;
        };
        let Some(&(oldest_ms, oldest_offset)) = self
            .samples
            .iter()
            .find(|(time_ms, _)| newest_ms - *time_ms <= RATE_WINDOW_MS)
        else {
            return 0;
        };
        let elapsed_ms = newest_ms - oldest_ms;
        let consumed = newest_offset - oldest_offset;
        if elapsed_ms <= 0 || consumed <= 0 {
            return 0;
        }
        let rate = i128::from(consumed) * 1_000_000 / i128::from(elapsed_ms);
        u64::try_from(rate).unwrap_or(u64::MAX)
    }
}

#[derive(Debug)]
struct Group {
    group_id: String,
    state: GroupState,
    generation: i32,
    strategy: String,
    /// Oldest first; the first is the leader.
    members: Vec<Member>,
    /// When the join phase gives up on members that did not rejoin.
    rebalance_deadline_ms: u64,
    /// The join phase does not complete before this (initial rebalance delay).
    join_ready_ms: u64,
    rebalances_total: u64,
    progress: BTreeMap<TopicPartition, Progress>,
    /// The subscribed topics as the current generation's assignment saw them; a change (a topic
    /// created, deleted or grown) starts a rebalance.
    topics_seen: BTreeMap<String, Option<(TopicId, u32)>>,
    /// When the group last changed (created, emptied, committed), on the coordinator's clock;
    /// negative for changes before the clock's origin (restored from the log).
    changed_ms: i64,
}

impl Group {
    fn new(group_id: &str, now_ms: u64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            strategy: String::new(),
            members: Vec::new(),
            rebalance_deadline_ms: 0,
            join_ready_ms: 0,
            rebalances_total: 0,
            progress: BTreeMap::new(),
            topics_seen: BTreeMap::new(),
            changed_ms: clock_ms(now_ms),
        }
    }

    fn member(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.member_id == member_id)
    }

    fn leader(&self) -> String {
        self.members
            .first()
            .map(|m| m.member_id.clone())
            .unwrap_or_default()
    }

    fn metadata(&self) -> GroupMetadata {
        GroupMetadata {
            group: self.group_id.clone(),
            generation: self.generation,
            strategy: self.strategy.clone(),
            leader: self.leader(),
            members: self.members.iter().map(Member::metadata).collect(),
        }
    }

    /// Whether every member supports some strategy the coordinator implements, with `extra`
    /// (a joining member's list) included.
    fn has_common_strategy(&self, skip: Option<usize>, extra: &[String]) -> bool {
        Strategy::ALL.iter().any(|strategy| {
            let name = strategy.name();
            extra.iter().any(|s| s == name)
                && self
                    .members
                    .iter()
                    .enumerate()
                    .filter(|(index, _)| Some(*index) != skip)
                    .all(|(_, m)| m.strategies.iter().any(|s| s == name))
        })
    }

    /// The first strategy of the leader's list that every member supports.
    fn choose_strategy(&self) -> Option<Strategy> {
        let leader = self.members.first()?;
        leader.strategies.iter().find_map(|name| {
            let strategy = Strategy::from_name(name)?;
            self.members
                .iter()
                .all(|m| m.strategies.iter().any(|s| s == name))
                .then_some(strategy)
        })
    }

    fn join_response(&self, member_id: &str) -> JoinGroupResponse {
        JoinGroupResponse {
            error_code: ErrorCode::None,
            error_message: String::new(),
            generation: self.generation,
            member_id: member_id.to_string(),
            leader_id: self.leader(),
            strategy: self.strategy.clone(),
            members: self.members.iter().map(|m| m.member_id.clone()).collect(),
        }
    }

    fn owner_of(&self) -> BTreeMap<TopicPartition, &str> {
        if !matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) {
            return BTreeMap::new();
        }
        self.members
            .iter()
            .flat_map(|m| m.assignment.iter().map(|p| (*p, m.member_id.as_str())))
            .collect()
    }
}

fn join_error(code: ErrorCode, message: impl Into<String>, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse {
        error_code: code,
        error_message: message.into(),
        generation: GENERATION_NONE,
        member_id: member_id.to_string(),
        ..JoinGroupResponse::default()
    }
}

/// The groups one shard coordinates.
#[derive(Debug)]
pub struct Coordinator {
    limits: GroupLimits,
    groups: HashMap<String, Group>,
    next_ticket: Ticket,
    /// Mixed into member ids so ids differ across restarts (from the shard's randomness).
    id_seed: u64,
    next_member_index: u64,
}

impl Coordinator {
    /// An empty coordinator; `id_seed` makes member ids unique across restarts.
    pub fn new(limits: GroupLimits, id_seed: u64) -> Coordinator {
        Coordinator {
            limits,
            groups: HashMap::new(),
            next_ticket: 1,
            id_seed,
            next_member_index: 0,
        }
    }

    /// Whether this coordinator holds group `group_id`.
    pub fn contains(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// How many groups this coordinator holds.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member_index += 1;
        let high = splitmix64(self.id_seed ^ self.next_member_index);
        let low = splitmix64(high ^ self.next_member_index.rotate_left(32));
        let client: String = client_id.chars().take(64).collect();
        format!(
            "{client}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xffff,
            low >> 48,
            low & 0xffff_ffff_ffff
        )
    }

    fn group_or_create(
        &mut self,
        group_id: &str,
        now_ms: u64,
    ) -> Result<&mut Group, CommitRefused> {
        if !self.groups.contains_key(group_id) {
            if self.groups.len() >= self.limits.groups_per_shard_max as usize {
                return Err(CommitRefused {
                    error_code: ErrorCode::GroupsMaxReached,
                    message: format!(
                        "this shard already coordinates {} groups (groups-per-shard-max)",
                        self.limits.groups_per_shard_max
                    ),
                });
            }
            self.groups
                .insert(group_id.to_string(), Group::new(group_id, now_ms));
        }
        Ok(self
            .groups
            .get_mut(group_id)
            .expect("the group was just found or inserted"))
    }

    /// Handles a JoinGroup from `client_host`.
    pub fn join(
        &mut self,
        request: JoinGroupRequest,
        client_host: &str,
        now_ms: u64,
        topics: &dyn TopicLookup,
        out: &mut Output,
    ) -> JoinOutcome {
        let fail = |code, message: String| JoinOutcome::Done(join_error(code, message, ""));
        if request.group_id.is_empty() || request.group_id.len() > GROUP_ID_BYTES_MAX {
            return fail(
                ErrorCode::InvalidRequest,
                format!("group id must be 1..={GROUP_ID_BYTES_MAX} bytes"),
            );
        }
        if request.topics.len() > MEMBER_TOPICS_MAX
            || request.strategies.len() > MEMBER_STRATEGIES_MAX
        {
            return fail(
                ErrorCode::InvalidRequest,
                format!(
                    "a member may list at most {MEMBER_TOPICS_MAX} topics and \
                     {MEMBER_STRATEGIES_MAX} strategies"
                ),
            );
        }
        let (min, max) = (
            self.limits.session_timeout_ms_min,
            self.limits.session_timeout_ms_max,
        );
        if !(min..=max).contains(&request.session_timeout_ms) {
            return fail(
                ErrorCode::InvalidSessionTimeout,
                format!(
                    "session_timeout_ms {} is outside the broker's [{min}, {max}]",
                    request.session_timeout_ms
                ),
            );
        }
        if !request
            .strategies
            .iter()
            .any(|name| Strategy::from_name(name).is_some())
        {
            return fail(
                ErrorCode::InconsistentGroupProtocol,
                format!(
                    "no known strategy in {:?}; the broker implements range, roundrobin, sticky",
                    request.strategies
                ),
            );
        }
        let mut request = request;
        request.rebalance_timeout_ms = match request.rebalance_timeout_ms {
            0 => request.session_timeout_ms,
            timeout_ms => timeout_ms.min(REBALANCE_TIMEOUT_MS_MAX),
        };
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let delay_ms = self.limits.initial_rebalance_delay_ms;
        let new_id = request
            .member_id
            .is_empty()
            .then(|| self.new_member_id(&request.client_id));
        let members_max = self.limits.members_per_group_max as usize;
        let group = match self.group_or_create(&request.group_id, now_ms) {
            Ok(group) => group,
            Err(refused) => return fail(refused.error_code, refused.message),
        };
        let existing = group.member(&request.member_id);
        if new_id.is_none() && existing.is_none() {
            return JoinOutcome::Done(join_error(
                ErrorCode::UnknownMemberId,
                format!(
                    "member {:?} is not in group {:?}; rejoin with an empty member id",
                    request.member_id, request.group_id
                ),
                &request.member_id,
            ));
        }
        if !group.has_common_strategy(existing, &request.strategies) {
            return JoinOutcome::Done(join_error(
                ErrorCode::InconsistentGroupProtocol,
                format!(
                    "strategies {:?} share none with every member of group {:?}",
                    request.strategies, request.group_id
                ),
                &request.member_id,
            ));
        }
        if existing.is_none() && group.members.len() >= members_max {
            return JoinOutcome::Done(join_error(
                ErrorCode::GroupMaxSizeReached,
                format!(
                    "group {:?} already has {members_max} members (group-members-max)",
                    request.group_id
                ),
                "",
            ));
        }
        let member_id = new_id.unwrap_or_else(|| request.member_id.clone());
        let session_deadline_ms = now_ms + u64::from(request.session_timeout_ms);
        let index = match existing {
            Some(index) => {
                let member = &mut group.members[index];
                let unchanged =
                    member.topics == request.topics && member.strategies == request.strategies;
                member.client_id = request.client_id;
                member.client_host = client_host.to_string();
                member.session_timeout_ms = request.session_timeout_ms;
                member.rebalance_timeout_ms = request.rebalance_timeout_ms;
                member.topics = request.topics;
                member.strategies = request.strategies;
                member.owned = request.owned;
                member.session_deadline_ms = session_deadline_ms;
                let settled = matches!(
                    group.state,
                    GroupState::Stable | GroupState::CompletingRebalance
                );
                if settled && unchanged {
                    // A member that lost its answer rejoins: it gets the current generation.
                    return JoinOutcome::Done(group.join_response(&member_id));
                }
                index
            }
            None => {
                group.members.push(Member {
                    member_id: member_id.clone(),
                    client_id: request.client_id,
                    client_host: client_host.to_string(),
                    session_timeout_ms: request.session_timeout_ms,
                    rebalance_timeout_ms: request.rebalance_timeout_ms,
                    topics: request.topics,
                    strategies: request.strategies,
                    owned: request.owned,
                    assignment: Vec::new(),
                    session_deadline_ms,
                    pending: None,
                    synced: false,
                });
                group.members.len() - 1
            }
        };
        if let Some(superseded) = group.members[index].pending.replace(ticket) {
            out.joins.push((
                superseded,
                join_error(
                    ErrorCode::RebalanceInProgress,
                    "superseded by a newer JoinGroup of the same member",
                    &member_id,
                ),
            ));
        }
        if group.state != GroupState::PreparingRebalance {
            prepare_rebalance(group, now_ms, delay_ms);
        }
        try_complete_join(group, now_ms, topics, out);
        JoinOutcome::Held(ticket)
    }

    /// Handles a SyncGroup: the member's assignment for its generation.
    pub fn sync(&mut self, request: &SyncGroupRequest, now_ms: u64) -> SyncGroupResponse {
        let error = |code, message: String| SyncGroupResponse {
            error_code: code,
            error_message: message,
            assignment: Vec::new(),
        };
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return error(
                ErrorCode::UnknownGroup,
                format!("no group {:?}", request.group_id),
            );
        };
        let Some(index) = group.member(&request.member_id) else {
            return error(
                ErrorCode::UnknownMemberId,
                format!("member {:?} is not in the group", request.member_id),
            );
        };
        if request.generation != group.generation {
            return error(
                ErrorCode::IllegalGeneration,
                format!(
                    "generation {} is not the group's {}",
                    request.generation, group.generation
                ),
            );
        }
        if group.state == GroupState::PreparingRebalance {
            return error(
                ErrorCode::RebalanceInProgress,
                "the group is rebalancing; rejoin".to_string(),
            );
        }
        let member = &mut group.members[index];
        member.synced = true;
        member.session_deadline_ms = now_ms + u64::from(member.session_timeout_ms);
        let assignment = member.assignment.clone();
        if group.members.iter().all(|m| m.synced) {
            group.state = GroupState::Stable;
        }
        SyncGroupResponse {
            error_code: ErrorCode::None,
            error_message: String::new(),
            assignment,
        }
    }

    /// Handles a Heartbeat: extends the member's session and says whether to rejoin.
    pub fn heartbeat(&mut self, request: &HeartbeatRequest, now_ms: u64) -> HeartbeatResponse {
        let answer = |code, message: String| HeartbeatResponse {
            error_code: code,
            error_message: message,
        };
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return answer(
                ErrorCode::UnknownMemberId,
                format!(
                    "no group {:?}; rejoin with an empty member id",
                    request.group_id
                ),
            );
        };
        let Some(index) = group.member(&request.member_id) else {
            return answer(
                ErrorCode::UnknownMemberId,
                format!(
                    "member {:?} is not in the group; rejoin with an empty member id",
                    request.member_id
                ),
            );
        };
        if request.generation != group.generation {
            return answer(
                ErrorCode::IllegalGeneration,
                format!(
                    "generation {} is not the group's {}; rejoin",
                    request.generation, group.generation
                ),
            );
        }
        let member = &mut group.members[index];
        member.session_deadline_ms = now_ms + u64::from(member.session_timeout_ms);
        if group.state == GroupState::PreparingRebalance {
            return answer(
                ErrorCode::RebalanceInProgress,
                "the group is rebalancing: commit, revoke and rejoin".to_string(),
            );
        }
        answer(ErrorCode::None, String::new())
    }

    /// Handles a LeaveGroup: removes the member and rebalances the rest at once.
    pub fn leave(
        &mut self,
        request: &LeaveGroupRequest,
        now_ms: u64,
        topics: &dyn TopicLookup,
        out: &mut Output,
    ) -> LeaveGroupResponse {
        let answer = |code, message: String| LeaveGroupResponse {
            error_code: code,
            error_message: message,
        };
        let delay_ms = self.limits.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return answer(
                ErrorCode::UnknownGroup,
                format!("no group {:?}", request.group_id),
            );
        };
        let Some(index) = group.member(&request.member_id) else {
            return answer(
                ErrorCode::UnknownMemberId,
                format!("member {:?} is not in the group", request.member_id),
            );
        };
        remove_member(group, index, "the member left the group", out);
        membership_changed(group, now_ms, delay_ms, topics, out);
        answer(ErrorCode::None, String::new())
    }

    /// Runs the timers: expires sessions, completes join phases whose time came, and expires
    /// groups that had no members for the retention time (into [`Output::expired`]).
    pub fn tick(&mut self, now_ms: u64, topics: &dyn TopicLookup, out: &mut Output) {
        let delay_ms = self.limits.initial_rebalance_delay_ms;
        let retention_ms = i64::try_from(self.limits.offsets_retention_ms).unwrap_or(i64::MAX);
        let now = clock_ms(now_ms);
        let mut expired: Vec<String> = self
            .groups
            .values()
            .filter(|group| {
                group.members.is_empty() && now.saturating_sub(group.changed_ms) >= retention_ms
            })
            .map(|group| group.group_id.clone())
            .collect();
        expired.sort();
        for group_id in &expired {
            self.groups.remove(group_id);
        }
        out.expired.extend(expired);
        for group in self.groups.values_mut() {
            let mut expired = false;
            let mut index = 0;
            while index < group.members.len() {
                let member = &group.members[index];
                if member.pending.is_none() && member.session_deadline_ms <= now_ms {
                    remove_member(group, index, "the member's session timed out", out);
                    expired = true;
                } else {
                    index += 1;
                }
            }
            if expired {
                membership_changed(group, now_ms, delay_ms, topics, out);
            } else if group.state == GroupState::PreparingRebalance {
                try_complete_join(group, now_ms, topics, out);
            } else if group.state != GroupState::Empty && topics_changed(group, topics) {
                // Members learn it from their next heartbeat and rejoin.
                prepare_rebalance(group, now_ms, delay_ms);
            }
        }
    }

    /// Checks an offset commit against the group (Kafka's rules); on success the committing
    /// member's session is extended. Call [`Coordinator::committed`] once the commit is durable.
    pub fn check_commit(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        now_ms: u64,
    ) -> Result<(), CommitRefused> {
        let refuse = |code, message: String| {
            Err(CommitRefused {
                error_code: code,
                message,
            })
        };
        let simple = generation == GENERATION_NONE && member_id.is_empty();
        let Some(group) = self.groups.get_mut(group_id) else {
            if simple {
                if self.groups.len() >= self.limits.groups_per_shard_max as usize {
                    return refuse(
                        ErrorCode::GroupsMaxReached,
                        format!(
                            "this shard already coordinates {} groups (groups-per-shard-max)",
                            self.limits.groups_per_shard_max
                        ),
                    );
                }
                return Ok(());
            }
            return refuse(
                ErrorCode::UnknownMemberId,
                format!("group {group_id:?} has no member {member_id:?}"),
            );
        };
        if simple && group.members.is_empty() {
            return Ok(());
        }
        let index = group.member(member_id);
        let synced_current = index
            .is_some_and(|index| group.members[index].synced && generation == group.generation);
        if group.state == GroupState::CompletingRebalance && !synced_current {
            return refuse(
                ErrorCode::RebalanceInProgress,
                "the group is completing a rebalance; sync first".to_string(),
            );
        }
        let Some(index) = index else {
            return refuse(
                ErrorCode::UnknownMemberId,
                format!("member {member_id:?} is not in group {group_id:?}"),
            );
        };
        if generation != group.generation {
            return refuse(
                ErrorCode::IllegalGeneration,
                format!(
                    "generation {generation} is not the group's {}",
                    group.generation
                ),
            );
        }
        let member = &mut group.members[index];
        member.session_deadline_ms = now_ms + u64::from(member.session_timeout_ms);
        Ok(())
    }

    /// Records durable commits of `group_id` (for listing, describing and the consume rate);
    /// `commit_time_ms` is the commits' wall-clock time, `now_ms` the coordinator's clock (the
    /// group's last change, for expiry).
    pub fn committed(
        &mut self,
        group_id: &str,
        commits: &[(TopicPartition, i64)],
        commit_time_ms: i64,
        now_ms: u64,
    ) {
        let Ok(group) = self.group_or_create(group_id, now_ms) else {
            return;
        };
        group.changed_ms = group.changed_ms.max(clock_ms(now_ms));
        for (partition, offset) in commits {
            group
                .progress
                .entry(*partition)
                .or_default()
                .record(*offset, commit_time_ms);
        }
    }

    /// Restores a group from its last persisted record (at start): members of the recovered
    /// generation get a fresh session from `now_ms` and may go on heartbeating and committing.
    pub fn restore(&mut self, metadata: GroupMetadata, now_ms: u64) {
        let Ok(group) = self.group_or_create(&metadata.group, now_ms) else {
            return;
        };
        group.generation = metadata.generation;
        group.strategy = metadata.strategy;
        group.members = metadata
            .members
            .into_iter()
            .map(|m| Member {
                session_deadline_ms: now_ms + u64::from(m.session_timeout_ms),
                member_id: m.member_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                topics: m.topics,
                strategies: m.strategies,
                owned: m.assignment.clone(),
                assignment: m.assignment,
                pending: None,
                synced: true,
            })
            .collect();
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }

    /// Sets when a restored group last changed, on the coordinator's clock (negative for a change
    /// before the clock's origin): from the timestamps of its latest records in the log.
    pub fn restored_change(&mut self, group_id: &str, changed_ms: i64) {
        if let Some(group) = self.groups.get_mut(group_id) {
            group.changed_ms = changed_ms;
        }
    }

    /// Deletes an empty group (DeleteGroups). The caller persists the tombstone and drops the
    /// group's committed offsets. Refused with `non_empty_group` while it has members, and with
    /// `group_id_not_found` for a group this coordinator does not know.
    pub fn delete(&mut self, group_id: &str) -> DeleteGroupResult {
        let result = |code, message: String| DeleteGroupResult {
            group_id: group_id.to_string(),
            error_code: code,
            error_message: message,
        };
        let Some(group) = self.groups.get(group_id) else {
            return result(ErrorCode::GroupIdNotFound, format!("no group {group_id:?}"));
        };
        if !group.members.is_empty() {
            return result(
                ErrorCode::NonEmptyGroup,
                format!(
                    "group {group_id:?} has {} members; only an empty group can be deleted",
                    group.members.len()
                ),
            );
        }
        self.groups.remove(group_id);
        result(ErrorCode::None, String::new())
    }

    /// Every group, for ListGroups.
    pub fn list(&self) -> Vec<GroupListing> {
        let mut groups: Vec<GroupListing> = self
            .groups
            .values()
            .map(|group| GroupListing {
                group_id: group.group_id.clone(),
                state: group.state.name().to_string(),
                member_count: group.members.len() as u32,
                strategy: group.strategy.clone(),
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups
    }

    /// Describes a group without log end offsets: every partition's `log_end_offset` and lag
    /// are filled in by [`fill_lag`] once the owners answered. `None` for an unknown group.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.groups.get(group_id)?;
        let owners = group.owner_of();
        let mut partitions: BTreeSet<TopicPartition> = group.progress.keys().copied().collect();
        partitions.extend(owners.keys().copied());
        Some(GroupDescription {
            group_id: group.group_id.clone(),
            error_code: ErrorCode::None,
            error_message: String::new(),
            state: group.state.name().to_string(),
            generation: group.generation,
            strategy: group.strategy.clone(),
            members: group
                .members
                .iter()
                .map(|m| GroupMemberDescription {
                    member_id: m.member_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
            partitions: partitions
                .into_iter()
                .map(|partition| {
                    let progress = group.progress.get(&partition);
                    GroupPartitionLag {
                        topic_id: partition.topic_id,
                        partition: partition.partition,
                        owner_member_id: owners
                            .get(&partition)
                            .map(|id| id.to_string())
                            .unwrap_or_default(),
                        committed_offset: progress.map_or(OFFSET_NONE, |p| p.offset),
                        log_end_offset: OFFSET_NONE,
                        lag_records: 0,
                        consume_rate_milli: progress.map_or(0, Progress::rate_milli),
                        lag_ms: -1,
                    }
                })
                .collect(),
        })
    }

    /// Every group's metrics rows, sorted by group, with at most `partitions_max` partitions
    /// in total (the rest are left out).
    pub fn metrics_rows(&self, partitions_max: usize) -> Vec<GroupMetricsRow> {
        let mut ids: Vec<&String> = self.groups.keys().collect();
        ids.sort();
        let mut budget = partitions_max;
        ids.into_iter()
            .filter_map(|id| {
                let group = self.groups.get(id)?;
                let mut description = self.describe(id)?;
                let take = description.partitions.len().min(budget);
                budget -= take;
                description.partitions.truncate(take);
                Some(GroupMetricsRow {
                    group: id.clone(),
                    members: group.members.len() as u32,
                    rebalances_total: group.rebalances_total,
                    partitions: description.partitions,
                })
            })
            .collect()
    }
}

/// Fills a described partition's log end offset, lag in records and lag in ms from the
/// partition's log start and end (`None` when its owner could not tell).
pub fn fill_lag(partition: &mut GroupPartitionLag, log_offsets: Option<(i64, i64)>) {
    let Some((log_start, log_end)) = log_offsets else {
        partition.log_end_offset = OFFSET_NONE;
        partition.lag_records = 0;
        partition.lag_ms = -1;
        return;
    };
    partition.log_end_offset = log_end;
    let position = if partition.committed_offset == OFFSET_NONE {
        log_start
    } else {
        partition.committed_offset.max(log_start)
    };
    partition.lag_records = (log_end - position).max(0);
    partition.lag_ms = if partition.lag_records == 0 {
        0
    } else if partition.consume_rate_milli == 0 {
        -1
    } else {
        let ms = i128::from(partition.lag_records) * 1_000_000
            / i128::from(partition.consume_rate_milli);
        i64::try_from(ms).unwrap_or(i64::MAX)
    };
}

fn prepare_rebalance(group: &mut Group, now_ms: u64, initial_delay_ms: u32) {
    let was_empty = group.state == GroupState::Empty;
    group.state = GroupState::PreparingRebalance;
    group.rebalances_total += 1;
    let timeout_ms = group
        .members
        .iter()
        .map(|m| m.rebalance_timeout_ms)
        .max()
        .unwrap_or(0);
    group.rebalance_deadline_ms = now_ms + u64::from(timeout_ms);
    group.join_ready_ms = if was_empty {
        now_ms + u64::from(initial_delay_ms.min(timeout_ms))
    } else {
        now_ms
    };
    for member in &mut group.members {
        member.synced = false;
        member.assignment.clear();
    }
}

/// Removes member `index`, answering its held join if it had one.
fn remove_member(group: &mut Group, index: usize, why: &'static str, out: &mut Output) {
    let member = group.members.remove(index);
    out.removed
        .push((group.group_id.clone(), member.member_id.clone(), why));
    if let Some(ticket) = member.pending {
        out.joins.push((
            ticket,
            join_error(ErrorCode::UnknownMemberId, why, &member.member_id),
        ));
    }
}

/// After members were removed: empties the group or (re)starts the join phase.
fn membership_changed(
    group: &mut Group,
    now_ms: u64,
    initial_delay_ms: u32,
    topics: &dyn TopicLookup,
    out: &mut Output,
) {
    if group.members.is_empty() {
        if group.state != GroupState::Empty {
            become_empty(group, now_ms, out);
        }
        return;
    }
    if group.state != GroupState::PreparingRebalance {
        prepare_rebalance(group, now_ms, initial_delay_ms);
    }
    try_complete_join(group, now_ms, topics, out);
}

/// Whether a subscribed topic appeared, disappeared or changed its partition count since the
/// current generation was assigned.
fn topics_changed(group: &Group, topics: &dyn TopicLookup) -> bool {
    group
        .topics_seen
        .iter()
        .any(|(name, seen)| topics.topic(name) != *seen)
}

fn become_empty(group: &mut Group, now_ms: u64, out: &mut Output) {
    group.changed_ms = clock_ms(now_ms);
    group.state = GroupState::Empty;
    group.generation += 1;
    group.strategy.clear();
    out.records.push(group.metadata());
}

/// Completes the join phase when every member rejoined (after the initial delay) or the
/// rebalance timeout passed.
fn try_complete_join(group: &mut Group, now_ms: u64, topics: &dyn TopicLookup, out: &mut Output) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    let all_joined = group.members.iter().all(|m| m.pending.is_some());
    let timed_out = now_ms >= group.rebalance_deadline_ms;
    if !(timed_out || all_joined && now_ms >= group.join_ready_ms) {
        return;
    }
    for member in group.members.iter().filter(|m| m.pending.is_none()) {
        out.removed.push((
            group.group_id.clone(),
            member.member_id.clone(),
            "the member did not rejoin within the rebalance timeout",
        ));
    }
    group.members.retain(|m| m.pending.is_some());
    if group.members.is_empty() {
        become_empty(group, now_ms, out);
        return;
    }
    let strategy = loop {
        match group.choose_strategy() {
            Some(strategy) => break strategy,
            None => {
                // Members that do not support the leader's first choice leave with an error;
                // the join checks make this rare (a member changed its list mid-rebalance).
                let first = group.members[0].strategies.first().cloned();
                let index = group
                    .members
                    .iter()
                    .rposition(|m| first.as_ref().is_none_or(|f| !m.strategies.contains(f)))
                    .unwrap_or(0);
                let member = group.members.remove(index);
                if let Some(ticket) = member.pending {
                    out.joins.push((
                        ticket,
                        join_error(
                            ErrorCode::InconsistentGroupProtocol,
                            "no strategy in common with the group's leader",
                            &member.member_id,
                        ),
                    ));
                }
                if group.members.is_empty() {
                    become_empty(group, now_ms, out);
                    return;
                }
            }
        }
    };
    group.generation += 1;
    group.strategy = strategy.name().to_string();
    let mut partition_counts = BTreeMap::new();
    let subscriptions: Vec<MemberSubscription> = group
        .members
        .iter()
        .map(|m| MemberSubscription {
            member_id: m.member_id.clone(),
            topics: m
                .topics
                .iter()
                .filter_map(|name| {
                    let (topic_id, count) = topics.topic(name)?;
                    partition_counts.insert(topic_id, count);
                    Some(topic_id)
                })
                .collect(),
            owned: m.owned.clone(),
        })
        .collect();
    group.topics_seen = group
        .members
        .iter()
        .flat_map(|m| m.topics.iter())
        .map(|name| (name.clone(), topics.topic(name)))
        .collect();
    let assignment = assign::assign(strategy, &subscriptions, &partition_counts);
    for (member, partitions) in group.members.iter_mut().zip(assignment) {
        member.assignment = partitions;
        member.synced = false;
        member.session_deadline_ms = now_ms + u64::from(member.session_timeout_ms);
    }
    group.state = GroupState::CompletingRebalance;
    out.records.push(group.metadata());
    let tickets: Vec<(Ticket, String)> = group
        .members
        .iter_mut()
        .filter_map(|m| Some((m.pending.take()?, m.member_id.clone())))
        .collect();
    for (ticket, member_id) in tickets {
        out.joins.push((ticket, group.join_response(&member_id)));
    }
}

/// The coordinator's clock as a signed value (restored changes may lie before its origin).
fn clock_ms(now_ms: u64) -> i64 {
    i64::try_from(now_ms).unwrap_or(i64::MAX)
}

/// A well-mixed 64-bit function (splitmix64's finaliser), for member ids.
fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seeded randomness for the tests (property and simulation).
#[cfg(test)]
pub(crate) mod testing {
    /// A small deterministic generator: the same seed replays the same run.
    pub struct Rng(u64);

    impl Rng {
        /// A generator from `seed`.
        pub fn new(seed: u64) -> Rng {
            Rng(seed)
        }

        /// The next 64 random bits.
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            super::splitmix64(self.0)
        }

        /// A number in `0..bound` (0 when `bound` is 0).
        pub fn below(&mut self, bound: u64) -> u64 {
            if bound == 0 {
                0
            } else {
                self.next_u64() % bound
            }
        }
    }
}

#[cfg(test)]
mod tests;
