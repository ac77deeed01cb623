//! Coordinator tests: the protocol step by step, commit fencing, lag arithmetic, recovery, and a
//! seeded simulation of many members joining, heartbeating, committing, leaving and dying in
//! random order, checking that no partition has two owners in one generation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::testing::Rng;
use super::*;

const SESSION_MS: u32 = 10_000;
const REBALANCE_MS: u32 = 30_000;

fn topics() -> BTreeMap<String, (TopicId, u32)> {
    BTreeMap::from([("events".to_string(), (7, 12))])
}

fn join_request(member_id: &str, strategies: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        client_id: "c".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        topics: vec!["events".into()],
        strategies: strategies.iter().map(|s| s.to_string()).collect(),
        owned: Vec::new(),
    }
}

fn coordinator() -> Coordinator {
    Coordinator::new(GroupLimits::default(), 1)
}

/// Joins and returns the held ticket.
fn held(
    coordinator: &mut Coordinator,
    request: JoinGroupRequest,
    now: u64,
    out: &mut Output,
) -> Ticket {
    match coordinator.join(request, "127.0.0.1:1", now, &topics(), out) {
        JoinOutcome::Held(ticket) => ticket,
        JoinOutcome::Done(response) => panic!("expected a held join, got {response:?}"),
    }
}

fn answer(out: &mut Output, ticket: Ticket) -> JoinGroupResponse {
    let index = out
        .joins
        .iter()
        .position(|(t, _)| *t == ticket)
        .expect("the ticket was answered");
    out.joins.remove(index).1
}

fn sync(
    coordinator: &mut Coordinator,
    member: &str,
    generation: i32,
    now: u64,
) -> SyncGroupResponse {
    coordinator.sync(
        &SyncGroupRequest {
            group_id: "g".into(),
            generation,
            member_id: member.into(),
        },
        now,
    )
}

fn heartbeat(coordinator: &mut Coordinator, member: &str, generation: i32, now: u64) -> ErrorCode {
    coordinator
        .heartbeat(
            &HeartbeatRequest {
                group_id: "g".into(),
                generation,
                member_id: member.into(),
            },
            now,
        )
        .error_code
}

/// Forms a stable generation of `count` members that joined at once; returns their ids.
fn stable_group(coordinator: &mut Coordinator, count: usize) -> (Vec<String>, i32) {
    let mut out = Output::default();
    let first = held(coordinator, join_request("", &["sticky"]), 0, &mut out);
    let first = answer(&mut out, first);
    assert!(first.error_code.is_none());
    let mut ids = vec![first.member_id.clone()];
    for _ in 1..count {
        let ticket = held(coordinator, join_request("", &["sticky"]), 0, &mut out);
        // The others must rejoin for the new generation to form.
        let mut tickets = vec![ticket];
        for id in &ids {
            tickets.push(held(
                coordinator,
                join_request(id, &["sticky"]),
                0,
                &mut out,
            ));
        }
        let answers: Vec<JoinGroupResponse> =
            tickets.into_iter().map(|t| answer(&mut out, t)).collect();
        ids.push(answers[0].member_id.clone());
    }
    let generation = coordinator.describe("g").expect("group").generation;
    for id in &ids {
        assert!(sync(coordinator, id, generation, 0).error_code.is_none());
    }
    (ids, generation)
}

#[test]
fn a_single_member_forms_a_generation_at_once_and_owns_everything() {
    let mut coordinator = coordinator();
    let mut out = Output::default();
    let ticket = held(
        &mut coordinator,
        join_request("", &["range", "sticky"]),
        0,
        &mut out,
    );
    let response = answer(&mut out, ticket);
    assert_eq!(response.error_code, ErrorCode::None);
    assert_eq!(response.generation, 1);
    assert!(
        response.member_id.starts_with("c-"),
        "{}",
        response.member_id
    );
    assert_eq!(response.leader_id, response.member_id);
    assert_eq!(response.strategy, "range");
    assert_eq!(response.members, vec![response.member_id.clone()]);
    assert_eq!(out.records.len(), 1, "the generation is persisted");
    assert_eq!(out.records[0].generation, 1);
    let synced = sync(&mut coordinator, &response.member_id, 1, 1);
    assert_eq!(synced.assignment.len(), 12);
    assert_eq!(coordinator.list()[0].state, "stable");
}

#[test]
fn a_second_member_starts_a_rebalance_that_completes_when_the_first_rejoins() {
    let mut coordinator = coordinator();
    let (ids, generation) = stable_group(&mut coordinator, 1);
    let mut out = Output::default();
    let newcomer = held(&mut coordinator, join_request("", &["sticky"]), 5, &mut out);
    assert!(out.joins.is_empty(), "held until the first member rejoins");
    assert_eq!(coordinator.list()[0].state, "preparing_rebalance");
    assert_eq!(
        heartbeat(&mut coordinator, &ids[0], generation, 6),
        ErrorCode::RebalanceInProgress
    );
    let rejoin = held(
        &mut coordinator,
        join_request(&ids[0], &["sticky"]),
        7,
        &mut out,
    );
    let first = answer(&mut out, rejoin);
    let second = answer(&mut out, newcomer);
    assert_eq!(first.generation, generation + 1);
    assert_eq!(second.generation, generation + 1);
    assert_eq!(first.leader_id, ids[0], "the oldest member leads");
    let a = sync(&mut coordinator, &first.member_id, first.generation, 8).assignment;
    let b = sync(&mut coordinator, &second.member_id, second.generation, 8).assignment;
    assert_eq!((a.len(), b.len()), (6, 6));
    assert!(a.iter().all(|p| !b.contains(p)));
    assert_eq!(
        heartbeat(&mut coordinator, &ids[0], generation, 9),
        ErrorCode::IllegalGeneration,
        "the old generation is fenced"
    );
}

#[test]
fn join_errors_are_typed() {
    let mut coordinator = Coordinator::new(
        GroupLimits {
            members_per_group_max: 1,
            groups_per_shard_max: 1,
            ..GroupLimits::default()
        },
        1,
    );
    let mut out = Output::default();
    let cases: Vec<(JoinGroupRequest, ErrorCode)> = vec![
        (
            JoinGroupRequest {
                session_timeout_ms: 10,
                ..join_request("", &["range"])
            },
            ErrorCode::InvalidSessionTimeout,
        ),
        (
            JoinGroupRequest {
                session_timeout_ms: 300_001,
                ..join_request("", &["range"])
            },
            ErrorCode::InvalidSessionTimeout,
        ),
        (
            join_request("", &["cooperative"]),
            ErrorCode::InconsistentGroupProtocol,
        ),
        (
            join_request("nobody", &["range"]),
            ErrorCode::UnknownMemberId,
        ),
        (
            JoinGroupRequest {
                group_id: String::new(),
                ..join_request("", &["range"])
            },
            ErrorCode::InvalidRequest,
        ),
    ];
    for (request, expected) in cases {
        match coordinator.join(request, "h", 0, &topics(), &mut out) {
            JoinOutcome::Done(response) => assert_eq!(response.error_code, expected),
            JoinOutcome::Held(_) => panic!("expected {expected}"),
        }
    }
    let ticket = held(&mut coordinator, join_request("", &["range"]), 0, &mut out);
    assert!(answer(&mut out, ticket).error_code.is_none());
    let full = coordinator.join(join_request("", &["range"]), "h", 0, &topics(), &mut out);
    assert!(matches!(full, JoinOutcome::Done(r) if r.error_code == ErrorCode::GroupMaxSizeReached));
    let other_group = JoinGroupRequest {
        group_id: "h".into(),
        ..join_request("", &["range"])
    };
    let refused = coordinator.join(other_group, "h", 0, &topics(), &mut out);
    assert!(matches!(refused, JoinOutcome::Done(r) if r.error_code == ErrorCode::GroupsMaxReached));
    let roundrobin_only = coordinator.join(
        JoinGroupRequest {
            group_id: "g".into(),
            ..join_request("", &["roundrobin"])
        },
        "h",
        0,
        &topics(),
        &mut out,
    );
    assert!(matches!(
        roundrobin_only,
        JoinOutcome::Done(r) if r.error_code == ErrorCode::InconsistentGroupProtocol
    ));
}

#[test]
fn the_leaders_first_common_strategy_is_chosen() {
    let mut coordinator = coordinator();
    let mut out = Output::default();
    let first = held(
        &mut coordinator,
        join_request("", &["sticky", "range"]),
        0,
        &mut out,
    );
    let first = answer(&mut out, first).member_id;
    let second = held(
        &mut coordinator,
        join_request("", &["range", "roundrobin"]),
        1,
        &mut out,
    );
    let rejoin = held(
        &mut coordinator,
        join_request(&first, &["sticky", "range"]),
        1,
        &mut out,
    );
    assert_eq!(answer(&mut out, rejoin).strategy, "range");
    assert_eq!(answer(&mut out, second).strategy, "range");
}

#[test]
fn a_member_without_heartbeats_is_removed_after_its_session_timeout() {
    let mut coordinator = coordinator();
    let (ids, generation) = stable_group(&mut coordinator, 2);
    let mut out = Output::default();
    let late = u64::from(SESSION_MS) - 1;
    assert!(heartbeat(&mut coordinator, &ids[0], generation, late).is_none());
    coordinator.tick(late, &topics(), &mut out);
    assert_eq!(coordinator.list()[0].member_count, 2, "not yet");
    coordinator.tick(u64::from(SESSION_MS), &topics(), &mut out);
    assert_eq!(coordinator.list()[0].member_count, 1, "ids[1] timed out");
    assert_eq!(coordinator.list()[0].state, "preparing_rebalance");
    assert_eq!(
        heartbeat(&mut coordinator, &ids[1], generation, late + 2),
        ErrorCode::UnknownMemberId
    );
    let rejoin = held(
        &mut coordinator,
        join_request(&ids[0], &["sticky"]),
        late + 3,
        &mut out,
    );
    let response = answer(&mut out, rejoin);
    assert_eq!(response.members, vec![ids[0].clone()]);
    let assignment = sync(&mut coordinator, &ids[0], response.generation, late + 4).assignment;
    assert_eq!(assignment.len(), 12, "the survivor owns every partition");
}

#[test]
fn a_subscribed_topic_that_grows_or_appears_starts_a_rebalance() {
    let mut coordinator = coordinator();
    let (ids, generation) = stable_group(&mut coordinator, 1);
    let mut out = Output::default();
    coordinator.tick(1, &topics(), &mut out);
    assert_eq!(coordinator.list()[0].state, "stable", "nothing changed");
    let grown = BTreeMap::from([("events".to_string(), (7, 16))]);
    coordinator.tick(2, &grown, &mut out);
    assert_eq!(coordinator.list()[0].state, "preparing_rebalance");
    assert_eq!(
        heartbeat(&mut coordinator, &ids[0], generation, 3),
        ErrorCode::RebalanceInProgress
    );
    let ticket =
        match coordinator.join(join_request(&ids[0], &["sticky"]), "h", 4, &grown, &mut out) {
            JoinOutcome::Held(ticket) => ticket,
            JoinOutcome::Done(response) => panic!("{response:?}"),
        };
    let response = answer(&mut out, ticket);
    let assignment = sync(&mut coordinator, &ids[0], response.generation, 5).assignment;
    assert_eq!(assignment.len(), 16, "the new partitions are assigned");
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let mut coordinator = coordinator();
    let (ids, generation) = stable_group(&mut coordinator, 3);
    let mut out = Output::default();
    let leave = coordinator.leave(
        &LeaveGroupRequest {
            group_id: "g".into(),
            member_id: ids[2].clone(),
        },
        1,
        &topics(),
        &mut out,
    );
    assert!(leave.error_code.is_none());
    let ticket = held(
        &mut coordinator,
        join_request(&ids[0], &["sticky"]),
        2,
        &mut out,
    );
    // ids[1] keeps heartbeating (it is told to rejoin) but never does.
    for now in [1_000, 9_000, 17_000, 25_000] {
        assert_eq!(
            heartbeat(&mut coordinator, &ids[1], generation, now),
            ErrorCode::RebalanceInProgress
        );
        coordinator.tick(now, &topics(), &mut out);
        assert!(out.joins.is_empty());
    }
    coordinator.tick(1 + u64::from(REBALANCE_MS), &topics(), &mut out);
    let response = answer(&mut out, ticket);
    assert_eq!(response.members, vec![ids[0].clone()]);
    assert_eq!(response.generation, generation + 1);
}

#[test]
fn the_last_member_leaving_empties_the_group_and_persists_it() {
    let mut coordinator = coordinator();
    let (ids, generation) = stable_group(&mut coordinator, 1);
    let mut out = Output::default();
    coordinator.leave(
        &LeaveGroupRequest {
            group_id: "g".into(),
            member_id: ids[0].clone(),
        },
        1,
        &topics(),
        &mut out,
    );
    let listed = &coordinator.list()[0];
    assert_eq!((listed.state.as_str(), listed.member_count), ("empty", 0));
    assert_eq!(out.records.len(), 1);
    assert!(out.records[0].members.is_empty());
    assert!(out.records[0].generation > generation);
    let unknown = coordinator.leave(
        &LeaveGroupRequest {
            group_id: "g".into(),
            member_id: ids[0].clone(),
        },
        2,
        &topics(),
        &mut out,
    );
    assert_eq!(unknown.error_code, ErrorCode::UnknownMemberId);
}

#[test]
fn offset_commits_follow_the_generation_rules() {
    let mut coordinator = coordinator();
    assert_eq!(
        coordinator.check_commit("solo", GENERATION_NONE, "", 0),
        Ok(())
    );
    assert_eq!(
        coordinator
            .check_commit("solo", 3, "m", 0)
            .map_err(|r| r.error_code),
        Err(ErrorCode::UnknownMemberId)
    );
    let (ids, generation) = stable_group(&mut coordinator, 2);
    let code = |c: &mut Coordinator, generation: i32, member: &str| {
        c.check_commit("g", generation, member, 1)
            .err()
            .map(|r| r.error_code)
    };
    assert_eq!(code(&mut coordinator, generation, &ids[0]), None);
    assert_eq!(
        code(&mut coordinator, GENERATION_NONE, ""),
        Some(ErrorCode::UnknownMemberId),
        "a simple commit needs an empty group"
    );
    assert_eq!(
        code(&mut coordinator, generation, "x"),
        Some(ErrorCode::UnknownMemberId)
    );
    assert_eq!(
        code(&mut coordinator, generation - 1, &ids[0]),
        Some(ErrorCode::IllegalGeneration)
    );
    // A rebalance starts: members may still commit before they revoke.
    let mut out = Output::default();
    let newcomer = held(&mut coordinator, join_request("", &["sticky"]), 2, &mut out);
    assert_eq!(code(&mut coordinator, generation, &ids[1]), None);
    let a = held(
        &mut coordinator,
        join_request(&ids[0], &["sticky"]),
        3,
        &mut out,
    );
    let b = held(
        &mut coordinator,
        join_request(&ids[1], &["sticky"]),
        3,
        &mut out,
    );
    let next = answer(&mut out, a).generation;
    answer(&mut out, b);
    answer(&mut out, newcomer);
    // Completing: only a member that synced the new generation commits.
    assert_eq!(
        code(&mut coordinator, generation, &ids[0]),
        Some(ErrorCode::RebalanceInProgress)
    );
    assert!(sync(&mut coordinator, &ids[0], next, 4)
        .error_code
        .is_none());
    assert_eq!(code(&mut coordinator, next, &ids[0]), None);
    assert_eq!(
        code(&mut coordinator, next, &ids[1]),
        Some(ErrorCode::RebalanceInProgress)
    );
}

#[test]
fn lag_is_log_end_minus_committed_and_lag_ms_follows_the_rate() {
    let mut coordinator = coordinator();
    let partition = TopicPartition {
        topic_id: 7,
        partition: 0,
    };
    coordinator.committed("g", &[(partition, 100)], 1_000, 0);
    coordinator.committed("g", &[(partition, 300)], 3_000, 0);
    let mut described = coordinator.describe("g").expect("known").partitions;
    assert_eq!(described.len(), 1);
    let row = &mut described[0];
    assert_eq!(row.committed_offset, 300);
    assert_eq!(row.consume_rate_milli, 100_000, "200 records in 2 s");
    fill_lag(row, Some((0, 500)));
    assert_eq!(
        (row.log_end_offset, row.lag_records, row.lag_ms),
        (500, 200, 2_000)
    );
    fill_lag(row, Some((0, 300)));
    assert_eq!((row.lag_records, row.lag_ms), (0, 0));
    row.consume_rate_milli = 0;
    fill_lag(row, Some((0, 301)));
    assert_eq!((row.lag_records, row.lag_ms), (1, -1), "rate unknown");
    row.committed_offset = OFFSET_NONE;
    fill_lag(row, Some((40, 50)));
    assert_eq!(row.lag_records, 10, "nothing committed: from the log start");
    fill_lag(row, None);
    assert_eq!((row.log_end_offset, row.lag_ms), (OFFSET_NONE, -1));

    let mut progress = Progress::default();
    for index in 0..100 {
        progress.record(index * 10, index * 1_000);
    }
    assert_eq!(progress.samples.len(), RATE_SAMPLES_MAX, "bounded");
    assert_eq!(progress.rate_milli(), 10_000);
}

#[test]
fn a_restored_generation_keeps_its_members_and_assignment() {
    let mut coordinator = coordinator();
    let (ids, generation) = stable_group(&mut coordinator, 2);
    let record = coordinator.groups["g"].metadata();
    let mut restarted = Coordinator::new(GroupLimits::default(), 2);
    restarted.restore(record, 50_000);
    let description = restarted.describe("g").expect("restored");
    assert_eq!(description.generation, generation);
    assert_eq!(description.state, "stable");
    assert_eq!(description.members.len(), 2);
    assert_eq!(
        restarted.check_commit("g", generation, &ids[1], 50_001),
        Ok(())
    );
    assert!(heartbeat(&mut restarted, &ids[0], generation, 55_000).is_none());
    let mut out = Output::default();
    restarted.tick(50_001 + u64::from(SESSION_MS), &topics(), &mut out);
    let description = restarted.describe("g").expect("restored");
    let remaining: Vec<&str> = description
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(
        remaining,
        vec![ids[0].as_str()],
        "ids[1] stopped after its commit and timed out"
    );
}

// ---------------------------------------------------------------------------------------------
// Simulation.

/// What a simulated client believes.
#[derive(Debug, Clone)]
struct Client {
    member_id: String,
    generation: i32,
    /// Held join ticket.
    joining: Option<Ticket>,
    /// Partitions it consumes (after a successful sync of `generation`).
    owned: Vec<TopicPartition>,
    alive: bool,
}

/// Runs one seeded schedule of joins, syncs, heartbeats, commits, leaves, deaths and clock
/// jumps; checks the invariants after every step. Returns (commits accepted, last generation).
fn simulate(seed: u64) -> (u64, i32) {
    let mut accepted = 0;
    let mut rng = Rng::new(seed);
    let limits = GroupLimits {
        initial_rebalance_delay_ms: (rng.below(2) * 500) as u32,
        ..GroupLimits::default()
    };
    let mut coordinator = Coordinator::new(limits, seed);
    let lookup = topics();
    let strategies: [&[&str]; 3] = [&["sticky"], &["range", "sticky"], &["roundrobin", "sticky"]];
    let mut clients: Vec<Client> = Vec::new();
    let mut now: u64 = 0;
    // generation -> partition -> member that synced it.
    let mut owners: HashMap<i32, BTreeMap<TopicPartition, String>> = HashMap::new();
    let mut answered: BTreeSet<Ticket> = BTreeSet::new();
    let mut last_generation = 0;

    for _step in 0..400 {
        let mut out = Output::default();
        match rng.below(10) {
            0 if clients.len() < 8 => {
                let strategy = strategies[rng.below(3) as usize];
                let request = join_request("", strategy);
                match coordinator.join(request, "h", now, &lookup, &mut out) {
                    JoinOutcome::Held(ticket) => clients.push(Client {
                        member_id: String::new(),
                        generation: GENERATION_NONE,
                        joining: Some(ticket),
                        owned: Vec::new(),
                        alive: true,
                    }),
                    JoinOutcome::Done(response) => assert!(!response.error_code.is_none()),
                }
            }
            1..=3 if !clients.is_empty() => {
                // Heartbeat; on rebalance, revoke and rejoin; when fenced, rejoin.
                let index = rng.below(clients.len() as u64) as usize;
                let client = clients[index].clone();
                if !client.alive || client.joining.is_some() {
                    continue;
                }
                let code = if client.member_id.is_empty() {
                    ErrorCode::UnknownMemberId
                } else {
                    heartbeat(&mut coordinator, &client.member_id, client.generation, now)
                };
                let rejoin_id = match code {
                    ErrorCode::None => None,
                    ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => {
                        Some(client.member_id.clone())
                    }
                    ErrorCode::UnknownMemberId => Some(String::new()),
                    other => panic!("unexpected heartbeat answer {other}"),
                };
                if let Some(id) = rejoin_id {
                    clients[index].owned.clear();
                    let request = JoinGroupRequest {
                        owned: client.owned.clone(),
                        ..join_request(&id, &["sticky", "range", "roundrobin"])
                    };
                    match coordinator.join(request, "h", now, &lookup, &mut out) {
                        JoinOutcome::Held(ticket) => clients[index].joining = Some(ticket),
                        JoinOutcome::Done(response) if response.error_code.is_none() => {
                            clients[index].generation = response.generation;
                        }
                        JoinOutcome::Done(_) => clients[index].member_id.clear(),
                    }
                }
            }
            4 | 5 if !clients.is_empty() => {
                // Sync, then commit the owned partitions.
                let index = rng.below(clients.len() as u64) as usize;
                let client = clients[index].clone();
                if !client.alive || client.joining.is_some() || client.member_id.is_empty() {
                    continue;
                }
                if client.owned.is_empty() {
                    let response =
                        sync(&mut coordinator, &client.member_id, client.generation, now);
                    if response.error_code.is_none() {
                        let generation_owners = owners.entry(client.generation).or_default();
                        for partition in &response.assignment {
                            let previous =
                                generation_owners.insert(*partition, client.member_id.clone());
                            assert!(
                                previous.is_none() || previous.as_ref() == Some(&client.member_id),
                                "seed {seed}: {partition:?} owned by {previous:?} and {} in \
                                 generation {}",
                                client.member_id,
                                client.generation
                            );
                        }
                        clients[index].owned = response.assignment;
                    }
                } else if coordinator
                    .check_commit("g", client.generation, &client.member_id, now)
                    .is_ok()
                {
                    let current = coordinator.describe("g").expect("group").generation;
                    assert_eq!(
                        current, client.generation,
                        "seed {seed}: commit from an old generation accepted"
                    );
                    for partition in &client.owned {
                        assert_eq!(
                            owners[&client.generation].get(partition),
                            Some(&client.member_id),
                            "seed {seed}: commit for a partition the member does not own"
                        );
                    }
                    let commits: Vec<(TopicPartition, i64)> =
                        client.owned.iter().map(|p| (*p, now as i64)).collect();
                    coordinator.committed("g", &commits, now as i64, now);
                    accepted += 1;
                }
            }
            6 if !clients.is_empty() => {
                // Leave politely.
                let index = rng.below(clients.len() as u64) as usize;
                if clients[index].alive && !clients[index].member_id.is_empty() {
                    let request = LeaveGroupRequest {
                        group_id: "g".into(),
                        member_id: clients[index].member_id.clone(),
                    };
                    coordinator.leave(&request, now, &lookup, &mut out);
                    clients[index].alive = false;
                }
            }
            7 if !clients.is_empty() => {
                // Die silently.
                let index = rng.below(clients.len() as u64) as usize;
                clients[index].alive = false;
            }
            _ => {
                now += rng.below(u64::from(SESSION_MS) / 2);
                coordinator.tick(now, &lookup, &mut out);
            }
        }
        for (ticket, response) in out.joins {
            assert!(
                answered.insert(ticket),
                "seed {seed}: ticket {ticket} answered twice"
            );
            let Some(client) = clients.iter_mut().find(|c| c.joining == Some(ticket)) else {
                continue; // a superseded or removed member's old ticket
            };
            client.joining = None;
            client.owned.clear();
            if response.error_code.is_none() {
                client.member_id = response.member_id;
                client.generation = response.generation;
            } else {
                client.member_id.clear();
            }
        }
        clients.retain(|c| c.alive || c.joining.is_some());
        for client in clients.iter_mut().filter(|c| !c.alive) {
            client.joining = None;
        }
        clients.retain(|c| c.alive);
        if let Some(description) = coordinator.describe("g") {
            assert!(
                description.generation >= last_generation,
                "seed {seed}: generation went back"
            );
            last_generation = description.generation;
            assert!(description.members.len() <= limits.members_per_group_max as usize);
            let mut seen = BTreeSet::new();
            for member in &description.members {
                for partition in &member.assignment {
                    assert!(
                        seen.insert(*partition),
                        "seed {seed}: {partition:?} assigned twice"
                    );
                }
            }
        }
    }
    (accepted, last_generation)
}

#[test]
fn simulated_schedules_never_give_a_partition_two_owners_in_one_generation() {
    let mut accepted_total = 0;
    let mut generation_max = 0;
    for seed in 0..300 {
        let (accepted, generation) = simulate(seed);
        accepted_total += accepted;
        generation_max = generation_max.max(generation);
    }
    // The schedules must reach the interesting states, or the checks above prove nothing.
    assert!(
        accepted_total > 1_000,
        "only {accepted_total} commits accepted"
    );
    assert!(
        generation_max > 10,
        "generations only reached {generation_max}"
    );
}

fn retention_coordinator(retention_ms: u64) -> Coordinator {
    Coordinator::new(
        GroupLimits {
            offsets_retention_ms: retention_ms,
            groups_per_shard_max: 2,
            ..GroupLimits::default()
        },
        1,
    )
}

fn leave(coordinator: &mut Coordinator, member: &str, now: u64, out: &mut Output) -> ErrorCode {
    coordinator
        .leave(
            &LeaveGroupRequest {
                group_id: "g".into(),
                member_id: member.into(),
            },
            now,
            &topics(),
            out,
        )
        .error_code
}

const PARTITION: TopicPartition = TopicPartition {
    topic_id: 7,
    partition: 0,
};

#[test]
fn an_emptied_group_expires_exactly_at_the_retention_with_its_offsets() {
    let mut coordinator = retention_coordinator(60_000);
    let (ids, _) = stable_group(&mut coordinator, 1);
    coordinator.committed("g", &[(PARTITION, 5)], 1_700_000_000_000, 500);
    let mut out = Output::default();
    assert!(leave(&mut coordinator, &ids[0], 1_000, &mut out).is_none());
    assert_eq!(coordinator.describe("g").expect("kept").state, "empty");
    coordinator.tick(60_999, &topics(), &mut out);
    assert!(out.expired.is_empty(), "59.999 s after it emptied");
    assert!(coordinator.describe("g").is_some());
    coordinator.tick(61_000, &topics(), &mut out);
    assert_eq!(out.expired, vec!["g".to_string()]);
    assert_eq!(coordinator.describe("g"), None);
    assert!(coordinator.list().is_empty());
    assert_eq!(coordinator.group_count(), 0);
    let mut again = Output::default();
    coordinator.tick(120_000, &topics(), &mut again);
    assert!(again.expired.is_empty(), "expired once");
}

#[test]
fn a_commit_restarts_the_retention_of_an_offsets_only_group() {
    let mut coordinator = retention_coordinator(60_000);
    coordinator.committed("o", &[(PARTITION, 1)], 1_700_000_000_000, 0);
    let mut out = Output::default();
    coordinator.tick(30_000, &topics(), &mut out);
    coordinator.committed("o", &[(PARTITION, 2)], 1_700_000_030_000, 30_000);
    coordinator.tick(89_999, &topics(), &mut out);
    assert!(out.expired.is_empty(), "the second commit counts");
    assert_eq!(coordinator.list().len(), 1);
    coordinator.tick(90_000, &topics(), &mut out);
    assert_eq!(out.expired, vec!["o".to_string()]);
    assert!(coordinator.list().is_empty());
}

#[test]
fn a_group_with_members_never_expires() {
    let mut coordinator = retention_coordinator(20_000);
    let (ids, generation) = stable_group(&mut coordinator, 1);
    let mut out = Output::default();
    for now in (5_000..=200_000).step_by(5_000) {
        assert!(heartbeat(&mut coordinator, &ids[0], generation, now).is_none());
        coordinator.tick(now, &topics(), &mut out);
    }
    assert!(out.expired.is_empty());
    let description = coordinator.describe("g").expect("alive");
    assert_eq!(description.members.len(), 1);
    // Once it empties, retention counts from then.
    assert!(leave(&mut coordinator, &ids[0], 200_000, &mut out).is_none());
    coordinator.tick(219_999, &topics(), &mut out);
    assert!(out.expired.is_empty());
    coordinator.tick(220_000, &topics(), &mut out);
    assert_eq!(out.expired, vec!["g".to_string()]);
}

#[test]
fn only_an_empty_known_group_can_be_deleted_and_its_slot_is_freed() {
    let mut coordinator = retention_coordinator(60_000);
    let (ids, _) = stable_group(&mut coordinator, 2);
    coordinator.committed("other", &[(PARTITION, 3)], 1_700_000_000_000, 0);
    let refused = coordinator.delete("g");
    assert_eq!(refused.error_code, ErrorCode::NonEmptyGroup);
    assert!(refused.error_message.contains("2 members"), "{refused:?}");
    assert_eq!(coordinator.describe("g").expect("kept").members.len(), 2);
    let missing = coordinator.delete("nope");
    assert_eq!(
        (missing.group_id.as_str(), missing.error_code),
        ("nope", ErrorCode::GroupIdNotFound)
    );
    let mut out = Output::default();
    assert!(leave(&mut coordinator, &ids[0], 1_000, &mut out).is_none());
    assert_eq!(
        coordinator.delete("g").error_code,
        ErrorCode::NonEmptyGroup,
        "one member left"
    );
    assert!(leave(&mut coordinator, &ids[1], 1_000, &mut out).is_none());
    let deleted = coordinator.delete("g");
    assert!(deleted.error_code.is_none(), "{deleted:?}");
    assert_eq!(coordinator.describe("g"), None);
    assert_eq!(
        coordinator.delete("g").error_code,
        ErrorCode::GroupIdNotFound
    );
    // groups-per-shard-max is 2: "other" and "g" filled it; the deletion made room again.
    let mut request = join_request("", &["sticky"]);
    request.group_id = "third".into();
    assert!(matches!(
        coordinator.join(request, "h", 2_000, &topics(), &mut out),
        JoinOutcome::Held(_)
    ));
    assert_eq!(coordinator.group_count(), 2);
    assert!(out.expired.is_empty(), "deletion is not expiry");
}

#[test]
fn restored_groups_count_the_time_before_the_restart_toward_retention() {
    use crate::offsets::{
        encode_commit_batch, encode_group_batch, encode_tombstone_batch, CommitKey, CommitValue,
        OffsetTable,
    };
    let wall = 1_700_000_000_000_i64;
    let commit = |group: &str, offset: i64, at: i64| {
        encode_commit_batch(
            &[(
                CommitKey {
                    group: group.into(),
                    topic_id: 7,
                    partition: 0,
                },
                CommitValue {
                    offset,
                    metadata: String::new(),
                    commit_time_ms: at,
                },
            )],
            at,
        )
    };
    let emptied = GroupMetadata {
        group: "e".into(),
        generation: 4,
        strategy: String::new(),
        leader: String::new(),
        members: Vec::new(),
    };
    let mut table = OffsetTable::default();
    let mut skipped = Vec::new();
    for batch in [
        commit("o", 10, wall),
        commit("e", 3, wall),
        encode_group_batch(&emptied, wall + 30_000),
        commit("t", 1, wall),
        encode_tombstone_batch("t", wall + 1_000),
    ] {
        table.replay(&batch, &mut skipped);
    }
    assert!(skipped.is_empty());
    let mut coordinator = retention_coordinator(60_000);
    // The broker restarts 50 s after the commits; its clock reads 5 s.
    serve::restore_partition(&mut coordinator, &mut table, 5_000, wall + 50_000);
    let listed: Vec<String> = coordinator.list().into_iter().map(|g| g.group_id).collect();
    assert_eq!(
        listed,
        vec!["e".to_string(), "o".to_string()],
        "t was deleted"
    );
    let mut out = Output::default();
    coordinator.tick(14_999, &topics(), &mut out);
    assert!(out.expired.is_empty());
    coordinator.tick(15_000, &topics(), &mut out);
    assert_eq!(out.expired, vec!["o".to_string()], "60 s after its commit");
    coordinator.tick(44_999, &topics(), &mut out);
    assert_eq!(out.expired.len(), 1);
    coordinator.tick(45_000, &topics(), &mut out);
    assert_eq!(
        out.expired,
        vec!["o".to_string(), "e".to_string()],
        "60 s after it emptied (its later record), not after its commit"
    );
}
