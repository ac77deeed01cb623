//! The consumer-group coordinator in a real `weir-broker` process, over the wire: two members
//! form a generation (one of them through a forwarding shard while the other's join is held),
//! get disjoint assignments, commit with generation fencing; ListGroups, DescribeGroups (lag) and
//! `/metrics` report the group; the generation, its members and the offsets survive a SIGTERM
//! restart and a SIGKILL, members of the recovered generation go on heartbeating and committing,
//! and when they stop they time out and the emptied group is itself recovered after a crash.
//! DeleteGroups removes empty groups (and their offsets) for good and refuses groups with members;
//! groups without members expire after `--group-offsets-retention-ms` and stay gone after a crash,
//! while a group with a live member stays.

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use weir_proto::wire::{
    DeleteGroupsRequest, DescribeGroupsRequest, ErrorCode, FlushPolicy, GroupDescription,
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest,
    OffsetCommitPartition, OffsetCommitRequest, OffsetFetchPartition, OffsetFetchRequest,
    SyncGroupRequest, TopicPartition, GENERATION_NONE, OFFSET_NONE,
};
use weir_tests::metrics::Metrics;
use weir_tests::wait::{wait_for, wait_until};
use weir_tests::wire::{build_values_batch, WireClient};
use weir_tests::{BrokerOptions, BrokerProcess};

const GROUP: &str = "billing";
const SESSION_MS: u32 = 6_000;
const DEADLINE: Duration = Duration::from_secs(30);

fn join_request(member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: GROUP.into(),
        member_id: member_id.into(),
        client_id: "biller".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: 20_000,
        topics: vec!["events".into()],
        strategies: vec!["sticky".into(), "range".into()],
        owned: Vec::new(),
    }
}

fn heartbeat(client: &mut WireClient, member_id: &str, generation: i32) -> ErrorCode {
    client
        .call_ok(&HeartbeatRequest {
            group_id: GROUP.into(),
            generation,
            member_id: member_id.into(),
        })
        .error_code
}

fn commit(
    client: &mut WireClient,
    generation: i32,
    member_id: &str,
    entries: &[(TopicPartition, i64)],
) -> Vec<ErrorCode> {
    let response = client.call_ok(&OffsetCommitRequest {
        group_id: GROUP.into(),
        generation,
        member_id: member_id.into(),
        entries: entries
            .iter()
            .map(|(partition, offset)| OffsetCommitPartition {
                topic_id: partition.topic_id,
                partition: partition.partition,
                offset: *offset,
                metadata: String::new(),
            })
            .collect(),
    });
    response.entries.iter().map(|e| e.error_code).collect()
}

fn committed(client: &mut WireClient, topic_id: u32, partitions: u32) -> Vec<i64> {
    let response = client.call_ok(&OffsetFetchRequest {
        group_id: GROUP.into(),
        entries: (0..partitions)
            .map(|partition| OffsetFetchPartition {
                topic_id,
                partition,
            })
            .collect(),
    });
    response.entries.iter().map(|e| e.offset).collect()
}

fn describe(client: &mut WireClient) -> GroupDescription {
    let mut response = client.call_ok(&DescribeGroupsRequest {
        group_ids: vec![GROUP.into()],
    });
    assert_eq!(response.groups.len(), 1);
    response.groups.remove(0)
}

fn assignments(description: &GroupDescription) -> Vec<(String, Vec<TopicPartition>)> {
    let mut members: Vec<(String, Vec<TopicPartition>)> = description
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.assignment.clone()))
        .collect();
    members.sort();
    members
}

#[test]
fn a_groups_generation_assignment_and_offsets_survive_sigterm_and_sigkill() {
    let mut broker = BrokerProcess::start(BrokerOptions::with_cores(2));
    let mut admin = WireClient::connect_and_handshake(broker.addresses().listen);
    let topic_id = admin.create_topic("events", 4, FlushPolicy::Always);
    for partition in 0..4 {
        let values: Vec<String> = (0..10).map(|i| format!("{partition}-{i}")).collect();
        let result = admin.produce(topic_id, partition, build_values_batch(&values));
        assert_eq!(result.error_code, ErrorCode::None);
    }

    // The first member forms generation 1 alone; each member talks to a different shard, so one
    // of them is forwarded to the coordinator.
    let mut a = WireClient::connect_and_handshake(broker.shard_address(0));
    let first = a.call_ok(&join_request(""));
    assert_eq!(first.error_code, ErrorCode::None, "{}", first.error_message);
    assert_eq!(first.generation, 1);
    let a_id = first.member_id.clone();
    assert!(a_id.starts_with("biller-"), "{a_id}");

    // The second member's join is held until the first rejoins; meanwhile the first is served.
    let b_address = broker.shard_address(1);
    let b_join = thread::spawn(move || {
        let mut b = WireClient::connect_and_handshake(b_address);
        let response: JoinGroupResponse = b.call_ok(&join_request(""));
        (b, response)
    });
    wait_until(DEADLINE, "the first member is told to rejoin", || {
        heartbeat(&mut a, &a_id, 1) == ErrorCode::RebalanceInProgress
    });
    let rejoined = a.call_ok(&join_request(&a_id));
    let (mut b, second) = b_join.join().expect("the second member's thread");
    for response in [&rejoined, &second] {
        assert_eq!(
            response.error_code,
            ErrorCode::None,
            "{}",
            response.error_message
        );
        assert_eq!(response.generation, 2);
        assert_eq!(response.leader_id, a_id, "the oldest member leads");
        assert_eq!(response.strategy, "sticky");
        assert_eq!(response.members.len(), 2);
    }
    let b_id = second.member_id.clone();
    let sync = |client: &mut WireClient, member_id: &str| {
        let response = client.call_ok(&SyncGroupRequest {
            group_id: GROUP.into(),
            generation: 2,
            member_id: member_id.into(),
        });
        assert_eq!(
            response.error_code,
            ErrorCode::None,
            "{}",
            response.error_message
        );
        response.assignment
    };
    let a_owns = sync(&mut a, &a_id);
    let b_owns = sync(&mut b, &b_id);
    assert_eq!((a_owns.len(), b_owns.len()), (2, 2));
    let all: BTreeSet<TopicPartition> = a_owns.iter().chain(&b_owns).copied().collect();
    assert_eq!(all.len(), 4, "disjoint and covering: {a_owns:?} {b_owns:?}");

    // Commits follow the generation rules; a refused commit stores nothing.
    let a_commits: Vec<(TopicPartition, i64)> = a_owns.iter().map(|p| (*p, 4)).collect();
    assert_eq!(
        commit(&mut a, 2, &a_id, &a_commits),
        vec![ErrorCode::None; 2]
    );
    assert_eq!(
        commit(&mut b, 1, &b_id, &[(b_owns[0], 9)]),
        vec![ErrorCode::IllegalGeneration]
    );
    assert_eq!(
        commit(&mut b, GENERATION_NONE, "", &[(b_owns[0], 9)]),
        vec![ErrorCode::UnknownMemberId],
        "a simple commit needs an empty group"
    );
    assert_eq!(
        commit(&mut b, 2, "stranger", &[(b_owns[0], 9)]),
        vec![ErrorCode::UnknownMemberId]
    );
    let b_commits: Vec<(TopicPartition, i64)> = b_owns.iter().map(|p| (*p, 7)).collect();
    assert_eq!(
        commit(&mut b, 2, &b_id, &b_commits),
        vec![ErrorCode::None; 2]
    );
    let expected_offsets: Vec<i64> = (0..4)
        .map(|partition| {
            let key = TopicPartition {
                topic_id,
                partition,
            };
            if a_owns.contains(&key) {
                4
            } else {
                7
            }
        })
        .collect();
    assert_eq!(committed(&mut admin, topic_id, 4), expected_offsets);

    // An offsets-only group is listed as empty.
    let solo = admin.call_ok(&OffsetCommitRequest {
        group_id: "solo".into(),
        entries: vec![OffsetCommitPartition {
            topic_id,
            partition: 0,
            offset: 1,
            metadata: String::new(),
        }],
        ..OffsetCommitRequest::default()
    });
    assert_eq!(solo.entries[0].error_code, ErrorCode::None);
    let listed = admin.call_ok(&ListGroupsRequest).groups;
    let states: Vec<(&str, &str, u32)> = listed
        .iter()
        .map(|g| (g.group_id.as_str(), g.state.as_str(), g.member_count))
        .collect();
    assert_eq!(states, vec![(GROUP, "stable", 2), ("solo", "empty", 0)]);

    // Describe: members, owners and lag (10 records per partition, committed 4 or 7).
    let described = describe(&mut admin);
    assert_eq!(
        (described.state.as_str(), described.generation),
        ("stable", 2)
    );
    assert_eq!(described.partitions.len(), 4);
    for partition in &described.partitions {
        let owner = if a_owns.contains(&TopicPartition {
            topic_id,
            partition: partition.partition,
        }) {
            &a_id
        } else {
            &b_id
        };
        assert_eq!(&partition.owner_member_id, owner);
        assert_eq!(partition.log_end_offset, 10);
        assert_eq!(partition.lag_records, 10 - partition.committed_offset);
        assert_eq!(partition.lag_ms, -1, "one commit each: the rate is unknown");
    }
    let unknown = admin.call_ok(&DescribeGroupsRequest {
        group_ids: vec!["nobody".into()],
    });
    assert_eq!(unknown.groups[0].error_code, ErrorCode::GroupIdNotFound);

    let metrics = Metrics::scrape(broker.metrics_address()).expect("metrics");
    assert_eq!(
        metrics.get("weir_group_members", &[("group", GROUP)]),
        Some(2.0)
    );
    assert!(
        metrics
            .get("weir_group_rebalances_total", &[("group", GROUP)])
            .is_some_and(|count| count >= 2.0),
        "two rebalances at least"
    );
    let partition = a_owns[0].partition.to_string();
    assert_eq!(
        metrics.get(
            "weir_group_lag_records",
            &[
                ("group", GROUP),
                ("topic", "events"),
                ("partition", &partition)
            ]
        ),
        Some(6.0)
    );
    assert_eq!(
        metrics.get(
            "weir_group_lag_seconds",
            &[("group", GROUP), ("partition", &partition)]
        ),
        None,
        "omitted while the consume rate is unknown"
    );

    // More commits give a consume rate, hence a lag in time.
    let mut a_offset = 4;
    let rated = loop {
        a_offset += 1;
        assert!(a_offset <= 9, "no consume rate after commits 5..=9");
        let a_commits: Vec<(TopicPartition, i64)> = a_owns.iter().map(|p| (*p, a_offset)).collect();
        assert_eq!(
            commit(&mut a, 2, &a_id, &a_commits),
            vec![ErrorCode::None; 2]
        );
        let described = describe(&mut admin);
        let row = described
            .partitions
            .into_iter()
            .find(|p| p.partition == a_owns[0].partition)
            .expect("a's partition is described");
        if row.consume_rate_milli > 0 {
            break row;
        }
    };
    assert_eq!(rated.lag_records, 10 - a_offset);
    assert!(
        rated.lag_ms >= 0,
        "a known rate gives a lag in time: {rated:?}"
    );
    let metrics = Metrics::scrape(broker.metrics_address()).expect("metrics");
    let labels = [
        ("group", GROUP),
        ("topic", "events"),
        ("partition", partition.as_str()),
    ];
    let lag_seconds = metrics.get("weir_group_lag_seconds", &labels);
    assert!(
        lag_seconds.is_some_and(|seconds| seconds >= 0.0),
        "lag in seconds exported once the rate is known: {lag_seconds:?}"
    );
    let mut expected_offsets = expected_offsets;
    for partition in &a_owns {
        expected_offsets[partition.partition as usize] = a_offset;
    }
    let before = assignments(&describe(&mut admin));
    for (round, crash) in [false, true].into_iter().enumerate() {
        if crash {
            broker.kill_9();
        } else {
            broker.terminate();
        }
        broker.restart();
        let mut admin = WireClient::connect_and_handshake(broker.addresses().listen);
        let recovered = describe(&mut admin);
        assert_eq!(
            (recovered.state.as_str(), recovered.generation),
            ("stable", 2),
            "after {}",
            if crash { "SIGKILL" } else { "SIGTERM" }
        );
        assert_eq!(assignments(&recovered), before);
        assert_eq!(committed(&mut admin, topic_id, 4), expected_offsets);
        // Members of the recovered generation go on as before.
        let mut a = WireClient::connect_and_handshake(broker.shard_address(0));
        let mut b = WireClient::connect_and_handshake(broker.shard_address(1));
        assert_eq!(heartbeat(&mut a, &a_id, 2), ErrorCode::None);
        assert_eq!(heartbeat(&mut b, &b_id, 2), ErrorCode::None);
        let offset = 8 + round as i64;
        let b_commits: Vec<(TopicPartition, i64)> = b_owns.iter().map(|p| (*p, offset)).collect();
        assert_eq!(
            commit(&mut b, 2, &b_id, &b_commits),
            vec![ErrorCode::None; 2]
        );
        for partition in &b_owns {
            expected_offsets[partition.partition as usize] = offset;
        }
        assert_eq!(committed(&mut admin, topic_id, 4), expected_offsets);
    }

    // The members stop: they time out, the group empties at a new generation, and that too
    // survives a crash.
    let mut admin = WireClient::connect_and_handshake(broker.addresses().listen);
    let emptied = wait_for(DEADLINE, "both members time out", || {
        let description = describe(&mut admin);
        (description.state == "empty").then_some(description)
    });
    assert!(emptied.members.is_empty());
    assert!(emptied.generation > 2);
    assert!(
        emptied
            .partitions
            .iter()
            .all(|p| p.owner_member_id.is_empty()),
        "an empty group owns nothing"
    );
    broker.kill_9();
    broker.restart();
    let mut admin = WireClient::connect_and_handshake(broker.addresses().listen);
    let recovered = describe(&mut admin);
    assert_eq!(
        (recovered.state.as_str(), recovered.generation),
        ("empty", emptied.generation)
    );
    assert_eq!(committed(&mut admin, topic_id, 4), expected_offsets);
    let mut a = WireClient::connect_and_handshake(broker.shard_address(0));
    assert_eq!(heartbeat(&mut a, &a_id, 2), ErrorCode::UnknownMemberId);
    let simple = commit(&mut a, GENERATION_NONE, "", &[(b_owns[0], 10)]);
    assert_eq!(
        simple,
        vec![ErrorCode::None],
        "an empty group takes simple commits"
    );
}

#[test]
fn group_requests_with_bad_input_get_typed_errors() {
    let broker =
        BrokerProcess::start(BrokerOptions::with_cores(2).args(["--group-members-max", "1"]));
    let mut client = WireClient::connect_and_handshake(broker.addresses().listen);
    client.create_topic("events", 2, FlushPolicy::Always);
    let cases: Vec<(JoinGroupRequest, ErrorCode)> = vec![
        (
            JoinGroupRequest {
                session_timeout_ms: 10,
                ..join_request("")
            },
            ErrorCode::InvalidSessionTimeout,
        ),
        (
            JoinGroupRequest {
                strategies: vec!["cooperative-sticky".into()],
                ..join_request("")
            },
            ErrorCode::InconsistentGroupProtocol,
        ),
        (join_request("ghost"), ErrorCode::UnknownMemberId),
        (
            JoinGroupRequest {
                group_id: String::new(),
                ..join_request("")
            },
            ErrorCode::InvalidRequest,
        ),
    ];
    for (request, expected) in cases {
        let response = client.call_ok(&request);
        assert_eq!(response.error_code, expected, "{}", response.error_message);
        assert!(!response.error_message.is_empty());
        assert_eq!(response.generation, GENERATION_NONE);
    }
    let member = client.call_ok(&join_request(""));
    assert_eq!(member.error_code, ErrorCode::None);
    let full = client.call_ok(&join_request(""));
    assert_eq!(full.error_code, ErrorCode::GroupMaxSizeReached);
    let sync = client.call_ok(&SyncGroupRequest {
        group_id: GROUP.into(),
        generation: member.generation + 1,
        member_id: member.member_id.clone(),
    });
    assert_eq!(sync.error_code, ErrorCode::IllegalGeneration);
    let leave = client.call_ok(&LeaveGroupRequest {
        group_id: GROUP.into(),
        member_id: member.member_id.clone(),
    });
    assert_eq!(leave.error_code, ErrorCode::None);
    let again = client.call_ok(&LeaveGroupRequest {
        group_id: GROUP.into(),
        member_id: member.member_id,
    });
    assert_eq!(again.error_code, ErrorCode::UnknownMemberId);
    let offsets = committed(&mut client, 1, 1);
    assert_eq!(offsets, vec![OFFSET_NONE]);
}

/// Commits `offset` for partition 0 of `topic_id` as a group that has no members.
fn commit_as_no_member(client: &mut WireClient, group: &str, topic_id: u32, offset: i64) {
    let response = client.call_ok(&OffsetCommitRequest {
        group_id: group.into(),
        entries: vec![OffsetCommitPartition {
            topic_id,
            partition: 0,
            offset,
            metadata: String::new(),
        }],
        ..OffsetCommitRequest::default()
    });
    assert_eq!(response.entries[0].error_code, ErrorCode::None, "{group}");
}

/// The committed offset of partition 0 of `topic_id` for `group`.
fn committed_of(client: &mut WireClient, group: &str, topic_id: u32) -> i64 {
    let response = client.call_ok(&OffsetFetchRequest {
        group_id: group.into(),
        entries: vec![OffsetFetchPartition {
            topic_id,
            partition: 0,
        }],
    });
    assert_eq!(response.error_code, ErrorCode::None, "{group}");
    response.entries[0].offset
}

fn listed(client: &mut WireClient) -> Vec<String> {
    let groups = client.call_ok(&ListGroupsRequest).groups;
    groups.into_iter().map(|group| group.group_id).collect()
}

fn describe_code(client: &mut WireClient, group: &str) -> ErrorCode {
    let response = client.call_ok(&DescribeGroupsRequest {
        group_ids: vec![group.into()],
    });
    response.groups[0].error_code
}

/// Joins `GROUP` alone and fetches the assignment; returns `(member id, generation)`.
fn join_alone(client: &mut WireClient) -> (String, i32) {
    let joined = client.call_ok(&join_request(""));
    assert_eq!(
        joined.error_code,
        ErrorCode::None,
        "{}",
        joined.error_message
    );
    let sync = client.call_ok(&SyncGroupRequest {
        group_id: GROUP.into(),
        generation: joined.generation,
        member_id: joined.member_id.clone(),
    });
    assert_eq!(sync.error_code, ErrorCode::None, "{}", sync.error_message);
    (joined.member_id, joined.generation)
}

#[test]
fn delete_groups_removes_empty_groups_for_good_and_refuses_groups_with_members() {
    let data = tempfile::tempdir().expect("data dir");
    let mut broker =
        BrokerProcess::start(BrokerOptions::with_cores(2).data_dir(data.path().join("data")));
    let mut admin = WireClient::connect_and_handshake(broker.addresses().listen);
    let topic_id = admin.create_topic("events", 2, FlushPolicy::Always);
    let mut member = WireClient::connect_and_handshake(broker.shard_address(0));
    join_alone(&mut member);
    // Several groups, so that both shards coordinate some and deletion is forwarded.
    let old: Vec<String> = (0..6).map(|index| format!("old-{index}")).collect();
    for (index, group) in old.iter().enumerate() {
        commit_as_no_member(&mut admin, group, topic_id, 10 + index as i64);
    }

    let mut other = WireClient::connect_and_handshake(broker.shard_address(1));
    let mut ids: Vec<String> = old[..5].to_vec();
    ids.extend([GROUP.to_string(), "never-existed".to_string()]);
    let response = other.call_ok(&DeleteGroupsRequest {
        group_ids: ids.clone(),
    });
    let results: Vec<(&str, ErrorCode)> = response
        .results
        .iter()
        .map(|r| (r.group_id.as_str(), r.error_code))
        .collect();
    let mut expected: Vec<(&str, ErrorCode)> = old[..5]
        .iter()
        .map(|g| (g.as_str(), ErrorCode::None))
        .collect();
    expected.push((GROUP, ErrorCode::NonEmptyGroup));
    expected.push(("never-existed", ErrorCode::GroupIdNotFound));
    assert_eq!(results, expected);
    assert!(!response.results[5].error_message.is_empty());

    let check = |client: &mut WireClient, when: &str| {
        assert_eq!(
            listed(client),
            vec![GROUP.to_string(), "old-5".to_string()],
            "{when}"
        );
        for group in &old[..5] {
            assert_eq!(
                describe_code(client, group),
                ErrorCode::GroupIdNotFound,
                "{when}"
            );
            assert_eq!(committed_of(client, group, topic_id), OFFSET_NONE, "{when}");
        }
        assert_eq!(committed_of(client, "old-5", topic_id), 15, "{when}");
        assert_eq!(describe(client).members.len(), 1, "{when}");
    };
    check(&mut admin, "after the deletion");

    // A deleted id can be used again; what it commits afterwards is kept across a crash.
    commit_as_no_member(&mut admin, "old-1", topic_id, 99);
    broker.kill_9();
    broker.restart();
    let mut admin = WireClient::connect_and_handshake(broker.addresses().listen);
    assert_eq!(committed_of(&mut admin, "old-1", topic_id), 99);
    let response = admin.call_ok(&DeleteGroupsRequest {
        group_ids: vec!["old-1".into()],
    });
    assert_eq!(response.results[0].error_code, ErrorCode::None);
    broker.kill_9();
    broker.restart();
    let mut admin = WireClient::connect_and_handshake(broker.addresses().listen);
    check(&mut admin, "after SIGKILL restarts");
}

#[test]
fn groups_without_members_expire_after_the_retention_and_stay_gone_after_a_crash() {
    let data = tempfile::tempdir().expect("data dir");
    let data_dir = data.path().join("data");
    let mut broker = BrokerProcess::start(
        BrokerOptions::with_cores(2)
            .data_dir(&data_dir)
            .args(["--group-offsets-retention-ms", "1500"]),
    );
    let mut admin = WireClient::connect_and_handshake(broker.addresses().listen);
    let topic_id = admin.create_topic("events", 2, FlushPolicy::Always);
    let mut member = WireClient::connect_and_handshake(broker.shard_address(0));
    let (member_id, generation) = join_alone(&mut member);
    let idle: Vec<String> = (0..4).map(|index| format!("idle-{index}")).collect();
    for group in &idle {
        commit_as_no_member(&mut admin, group, topic_id, 7);
    }
    assert_eq!(listed(&mut admin).len(), 1 + idle.len());

    // The member keeps its session alive while the offsets-only groups age out. It joined
    // before they committed, so it would have expired first if members did not hold it.
    wait_until(DEADLINE, "the offsets-only groups expire", || {
        assert_eq!(
            heartbeat(&mut member, &member_id, generation),
            ErrorCode::None
        );
        listed(&mut admin) == vec![GROUP.to_string()]
    });
    assert_eq!(describe(&mut admin).members.len(), 1);
    for group in &idle {
        assert_eq!(committed_of(&mut admin, group, topic_id), OFFSET_NONE);
        assert_eq!(describe_code(&mut admin, group), ErrorCode::GroupIdNotFound);
    }
    let expired = wait_for(DEADLINE, "weir_groups_expired_total", || {
        let metrics = Metrics::scrape(broker.metrics_address()).ok()?;
        metrics.sum("weir_groups_expired_total")
    });
    assert_eq!(expired, idle.len() as f64);

    // After a crash, a broker that would keep empty groups for a week still does not have them:
    // the tombstones hold. The group with a member is restored with it.
    broker.kill_9();
    drop(broker);
    let broker = BrokerProcess::start(BrokerOptions::with_cores(2).data_dir(&data_dir));
    let mut admin = WireClient::connect_and_handshake(broker.addresses().listen);
    assert_eq!(listed(&mut admin), vec![GROUP.to_string()]);
    for group in &idle {
        assert_eq!(committed_of(&mut admin, group, topic_id), OFFSET_NONE);
    }
    let restored = describe(&mut admin);
    assert_eq!(restored.members.len(), 1);
    assert_eq!(restored.members[0].member_id, member_id);
}
