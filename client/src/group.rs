//! Consumer-group membership: the member's side of the eager join/sync/heartbeat protocol.
//!
//! This module owns what a subscribed [`Consumer`](crate::Consumer) needs to take part in a group:
//! the settings ([`GroupSettings`] inside `ConsumerConfig`) and their validation, the
//! [`RebalanceListener`] callbacks, the pure decisions that map the coordinator's error codes to
//! what the member does next ([`join_action`], [`heartbeat_signal`]), and the background heartbeat
//! task. Every group request goes to the broker's control path, which forwards it to the shard
//! that coordinates the group (the owner of the group's `__offsets` partition).
//!
//! Invariants:
//! - a member consumes only partitions of the generation whose SyncGroup succeeded; before it
//!   rejoins it gives up every partition (eager protocol), after committing their positions when
//!   auto-commit is on, and then calls [`RebalanceListener::on_partitions_revoked`];
//! - one heartbeat task runs per generation; it is aborted before the member rejoins or leaves,
//!   and it reports through a channel of its own, so a late answer of an old generation's
//!   heartbeat can never disturb a newer generation;
//! - the number of join attempts of one rebalance is bounded by `JOIN_ATTEMPTS_MAX`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_proto::wire::{ErrorCode, HeartbeatRequest};

use crate::cluster::Cluster;
use crate::error::Error;

/// The most JoinGroup/SyncGroup rounds one rebalance may take before `poll` fails with the last
/// error; each round that fails on a group error code waits `retry_backoff_ms` first.
pub const JOIN_ATTEMPTS_MAX: u32 = 20;

/// The longest session timeout the client accepts (the broker's own bounds apply too).
pub const SESSION_TIMEOUT_MS_MAX: u32 = 3_600_000;

/// How the coordinator divides a group's partitions among its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssignmentStrategy {
    /// Per topic, consecutive ranges of partitions to members in member order (Kafka's default).
    Range,
    /// All subscribed partitions dealt to members in turn.
    RoundRobin,
    /// Balanced like round-robin, keeping each member's previous partitions where it can, so a
    /// membership change moves as few partitions as possible.
    Sticky,
}

impl AssignmentStrategy {
    /// The strategy's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::RoundRobin => "roundrobin",
            AssignmentStrategy::Sticky => "sticky",
        }
    }

    /// Parses a wire name (`range`, `roundrobin`, `sticky`).
    pub fn from_name(name: &str) -> Option<AssignmentStrategy> {
        match name {
            "range" => Some(AssignmentStrategy::Range),
            "roundrobin" | "round-robin" => Some(AssignmentStrategy::RoundRobin),
            "sticky" => Some(AssignmentStrategy::Sticky),
            _ => None,
        }
    }
}

/// How a subscribed consumer takes part in its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// The coordinator drops a member it has not heard a heartbeat from for this long, and gives
    /// its partitions to the others. Must lie within the broker's
    /// `[group-session-timeout-ms-min, group-session-timeout-ms-max]`.
    pub session_timeout_ms: u32,
    /// How long the coordinator waits for every member to rejoin once a rebalance starts; a
    /// member that has not rejoined by then is dropped. JoinGroup is held up to this long, so it
    /// must be below the connection's `request_timeout_ms`.
    pub rebalance_timeout_ms: u32,
    /// How often the background task sends a heartbeat; `None` means a third of
    /// `session_timeout_ms`. Must be below `session_timeout_ms`.
    pub heartbeat_interval_ms: Option<u32>,
    /// The strategies this member supports, most preferred first. The coordinator uses the first
    /// strategy of the group leader's list that every member supports. The default,
    /// `[range, sticky]`, puts Kafka's default first and lists sticky so a group can move to
    /// sticky by restarting its members one by one without `inconsistent_group_protocol`.
    pub assignment_strategies: Vec<AssignmentStrategy>,
    /// Commit the positions of the records `poll` handed out: every `auto_commit_interval_ms`
    /// (checked at each poll), before partitions are revoked, and on close.
    pub auto_commit: bool,
    /// How often auto-commit commits, at most.
    pub auto_commit_interval_ms: u64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 25_000,
            heartbeat_interval_ms: None,
            assignment_strategies: vec![AssignmentStrategy::Range, AssignmentStrategy::Sticky],
            auto_commit: true,
            auto_commit_interval_ms: 5_000,
        }
    }
}

impl GroupSettings {
    /// Returns the heartbeat interval in force: the configured one, else a third of the session
    /// timeout (at least 1 ms).
    pub fn heartbeat_interval(&self) -> Duration {
        let ms = self
            .heartbeat_interval_ms
            .unwrap_or(self.session_timeout_ms / 3)
            .max(1);
        Duration::from_millis(u64::from(ms))
    }

    /// Checks the settings against each other and against the connection's request timeout;
    /// the error says which setting is out of bounds and why.
    pub fn validate(&self, request_timeout_ms: u64) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidArgument(reason));
        if self.session_timeout_ms == 0 || self.session_timeout_ms > SESSION_TIMEOUT_MS_MAX {
            return invalid(format!(
                "session_timeout_ms {} must be within 1..={SESSION_TIMEOUT_MS_MAX}",
                self.session_timeout_ms
            ));
        }
        if let Some(interval) = self.heartbeat_interval_ms {
            if interval == 0 || interval >= self.session_timeout_ms {
                return invalid(format!(
                    "heartbeat_interval_ms {interval} must be at least 1 and below session_timeout_ms {}",
                    self.session_timeout_ms
                ));
            }
        }
        if self.rebalance_timeout_ms == 0
            || u64::from(self.rebalance_timeout_ms) >= request_timeout_ms
        {
            return invalid(format!(
                "rebalance_timeout_ms {} must be at least 1 and below the connection's request_timeout_ms {request_timeout_ms}, which bounds the held JoinGroup",
                self.rebalance_timeout_ms
            ));
        }
        if self.assignment_strategies.is_empty() {
            return invalid("assignment_strategies is empty; name at least one".to_string());
        }
        for (index, strategy) in self.assignment_strategies.iter().enumerate() {
            if self.assignment_strategies[..index].contains(strategy) {
                return invalid(format!(
                    "assignment_strategies names {} twice",
                    strategy.name()
                ));
            }
        }
        if self.auto_commit && self.auto_commit_interval_ms == 0 {
            return invalid("auto_commit_interval_ms must be at least 1".to_string());
        }
        Ok(())
    }
}

/// Callbacks a subscribed consumer calls from inside `poll` (and `close`) when its partitions
/// change. They run on the polling task, so they must not block; hand slow work to another task
/// (for example through a channel).
pub trait RebalanceListener: Send {
    /// The member was given `partitions` (`(topic, partition)`) for a new generation; their
    /// positions start at the group's committed offsets.
    fn on_partitions_assigned(&mut self, partitions: &[(Arc<str>, u32)]);
    /// The member gives up `partitions`: a rebalance started, the member was fenced, or it is
    /// closing. With auto-commit on, their positions were committed just before this call.
    fn on_partitions_revoked(&mut self, partitions: &[(Arc<str>, u32)]);
}

/// A listener that does nothing, for consumers that only need the records.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRebalanceListener;

impl RebalanceListener for NoRebalanceListener {
    fn on_partitions_assigned(&mut self, _partitions: &[(Arc<str>, u32)]) {}
    fn on_partitions_revoked(&mut self, _partitions: &[(Arc<str>, u32)]) {}
}

/// What the member must do about its membership, as the heartbeat task or a commit found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSignal {
    /// Keep consuming.
    Stable,
    /// A rebalance started or the generation is stale: revoke and rejoin with the member id.
    Rejoin,
    /// The coordinator no longer knows the member: revoke and rejoin with an empty member id.
    Fenced,
}

/// Maps a Heartbeat or OffsetCommit error code to what the member does; `None` for codes that
/// say nothing about membership (the caller reports or retries them).
pub fn heartbeat_signal(code: ErrorCode) -> Option<GroupSignal> {
    match code {
        ErrorCode::None => Some(GroupSignal::Stable),
        ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => Some(GroupSignal::Rejoin),
        // The coordinator lost the group (it answers a heartbeat for an unknown group with
        // `unknown_member_id`; a commit may say `unknown_group`): join as a new member.
        ErrorCode::UnknownMemberId | ErrorCode::UnknownGroup => Some(GroupSignal::Fenced),
        _ => None,
    }
}

/// What a member does after a JoinGroup or SyncGroup answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinAction {
    /// Go on to the next step (Sync after Join; consume after Sync).
    Proceed,
    /// Join again keeping the member id.
    Retry,
    /// Join again with an empty member id.
    RetryAsNewMember,
    /// Give up: the error will not go away by joining again.
    Fail,
}

/// Maps a JoinGroup or SyncGroup error code to the member's next step.
pub fn join_action(code: ErrorCode) -> JoinAction {
    match code {
        ErrorCode::None => JoinAction::Proceed,
        ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => JoinAction::Retry,
        ErrorCode::UnknownMemberId | ErrorCode::UnknownGroup => JoinAction::RetryAsNewMember,
        code if code.is_retriable() => JoinAction::Retry,
        _ => JoinAction::Fail,
    }
}

/// Aborts the task when dropped, so a heartbeat task never outlives its generation.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The identity a heartbeat task speaks for.
#[derive(Debug, Clone)]
pub(crate) struct HeartbeatTarget {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    pub(crate) interval: Duration,
}

/// Starts the heartbeat task of one generation; it reports the first membership change on
/// `signal` and then stops. Transport failures are logged and the next beat tried: if they last
/// past the session timeout, the coordinator's answer will be `unknown_member_id`.
pub(crate) fn spawn_heartbeat(
    cluster: Arc<Cluster>,
    target: HeartbeatTarget,
    signal: watch::Sender<GroupSignal>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(target.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the Sync that just succeeded counts as a beat.
        ticks.tick().await;
        let request = HeartbeatRequest {
            group_id: target.group_id.clone(),
            generation: target.generation,
            member_id: target.member_id.clone(),
        };
        loop {
            ticks.tick().await;
            let response = match cluster.control_request(&request).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::warn!(%error, group = %target.group_id, "heartbeat failed");
                    continue;
                }
            };
            match heartbeat_signal(response.error_code) {
                Some(GroupSignal::Stable) => {}
                Some(change) => {
                    tracing::info!(
                        group = %target.group_id,
                        member = %target.member_id,
                        generation = target.generation,
                        code = %response.error_code,
                        "heartbeat asks the member to rejoin"
                    );
                    let _ = signal.send(change);
                    return;
                }
                None => tracing::warn!(
                    group = %target.group_id,
                    code = %response.error_code,
                    message = %response.error_message,
                    "heartbeat answered with an error"
                ),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_beat_three_times_per_session() {
        let settings = GroupSettings::default();
        settings.validate(30_000).expect("defaults valid");
        assert_eq!(settings.heartbeat_interval(), Duration::from_millis(3_333));
        let explicit = GroupSettings {
            heartbeat_interval_ms: Some(250),
            ..GroupSettings::default()
        };
        assert_eq!(explicit.heartbeat_interval(), Duration::from_millis(250));
    }

    #[test]
    fn out_of_bounds_settings_are_rejected_naming_the_setting() {
        let cases: Vec<(GroupSettings, &str)> = vec![
            (
                GroupSettings {
                    session_timeout_ms: 0,
                    ..GroupSettings::default()
                },
                "session_timeout_ms",
            ),
            (
                GroupSettings {
                    heartbeat_interval_ms: Some(10_000),
                    ..GroupSettings::default()
                },
                "heartbeat_interval_ms",
            ),
            (
                GroupSettings {
                    heartbeat_interval_ms: Some(0),
                    ..GroupSettings::default()
                },
                "heartbeat_interval_ms",
            ),
            (
                GroupSettings {
                    rebalance_timeout_ms: 30_000,
                    ..GroupSettings::default()
                },
                "rebalance_timeout_ms",
            ),
            (
                GroupSettings {
                    assignment_strategies: Vec::new(),
                    ..GroupSettings::default()
                },
                "assignment_strategies",
            ),
            (
                GroupSettings {
                    assignment_strategies: vec![
                        AssignmentStrategy::Sticky,
                        AssignmentStrategy::Range,
                        AssignmentStrategy::Sticky,
                    ],
                    ..GroupSettings::default()
                },
                "sticky twice",
            ),
            (
                GroupSettings {
                    auto_commit_interval_ms: 0,
                    ..GroupSettings::default()
                },
                "auto_commit_interval_ms",
            ),
        ];
        for (settings, named) in cases {
            match settings.validate(30_000) {
                Err(Error::InvalidArgument(reason)) => {
                    assert!(reason.contains(named), "{reason:?} should name {named}")
                }
                other => {
                    panic!("{settings:?}: expected InvalidArgument naming {named}, got {other:?}")
                }
            }
        }
        // Auto-commit off ignores its interval.
        GroupSettings {
            auto_commit: false,
            auto_commit_interval_ms: 0,
            ..GroupSettings::default()
        }
        .validate(30_000)
        .expect("interval unused");
    }

    #[test]
    fn strategy_names_round_trip() {
        for strategy in [
            AssignmentStrategy::Range,
            AssignmentStrategy::RoundRobin,
            AssignmentStrategy::Sticky,
        ] {
            assert_eq!(
                AssignmentStrategy::from_name(strategy.name()),
                Some(strategy)
            );
        }
        assert_eq!(AssignmentStrategy::from_name("cooperative"), None);
    }

    #[test]
    fn error_codes_map_to_the_members_next_step() {
        let cases = [
            (
                ErrorCode::None,
                JoinAction::Proceed,
                Some(GroupSignal::Stable),
            ),
            (
                ErrorCode::RebalanceInProgress,
                JoinAction::Retry,
                Some(GroupSignal::Rejoin),
            ),
            (
                ErrorCode::IllegalGeneration,
                JoinAction::Retry,
                Some(GroupSignal::Rejoin),
            ),
            (
                ErrorCode::UnknownMemberId,
                JoinAction::RetryAsNewMember,
                Some(GroupSignal::Fenced),
            ),
            (
                ErrorCode::UnknownGroup,
                JoinAction::RetryAsNewMember,
                Some(GroupSignal::Fenced),
            ),
            (ErrorCode::NotOwner, JoinAction::Retry, None),
            (ErrorCode::InconsistentGroupProtocol, JoinAction::Fail, None),
            (ErrorCode::InvalidSessionTimeout, JoinAction::Fail, None),
            (ErrorCode::GroupMaxSizeReached, JoinAction::Fail, None),
            (ErrorCode::InvalidRequest, JoinAction::Fail, None),
        ];
        for (code, join, heartbeat) in cases {
            assert_eq!(join_action(code), join, "join action of {code}");
            assert_eq!(
                heartbeat_signal(code),
                heartbeat,
                "heartbeat signal of {code}"
            );
        }
    }
}
