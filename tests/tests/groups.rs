//! Consumer groups against real `weir-broker` processes: members split a topic's partitions
//! (one owner per partition and generation), a member killed without leaving is replaced after
//! its session timeout with nothing lost, committed offsets survive SIGTERM and SIGKILL restarts,
//! `weir consume --group` resumes where the group left off, `weir groups describe` reports
//! lag as produced minus committed, and `weir groups delete` deletes empty groups, one line per
//! group, failing when a group has members or does not exist.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_client::{
    Admin, ClientConfig, Cluster, Consumer, ConsumerConfig, FlushPolicy, GroupSettings, Producer,
    ProducerConfig, TopicSettings,
};
use weir_tests::bins::{cli_path, describe_cli_run, run_cli};
use weir_tests::wait::wait_until;
use weir_tests::{connect_cluster, runtime, BrokerOptions, BrokerProcess};

/// The session timeout of the members in the test that kills one: short, so the killed member
/// is replaced soon.
const SESSION_TIMEOUT_MS: u32 = 2_000;
/// The session timeout where no member is killed: long enough that a loaded machine never
/// delays a heartbeat past it (which would fence a member and redeliver its uncommitted records).
const SESSION_TIMEOUT_LONG_MS: u32 = 10_000;
/// How long a test waits for a group to settle or for records to arrive.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `weir` run may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// A broker with two shards whose group coordinator accepts the tests' short session timeout.
fn start_broker() -> BrokerProcess {
    BrokerProcess::start(
        BrokerOptions::with_cores(2).args(["--group-session-timeout-ms-min", "500"]),
    )
}

/// One record a member consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    member: usize,
    generation: i32,
    partition: u32,
    offset: i64,
    value: String,
}

/// What the in-process members share with the test thread.
#[derive(Default)]
struct Observed {
    records: Mutex<Vec<Seen>>,
    /// Each member's latest `(generation, partitions)`.
    assignments: Mutex<HashMap<usize, (i32, Vec<u32>)>>,
    stop: AtomicBool,
}

impl Observed {
    fn records(&self) -> Vec<Seen> {
        self.records.lock().expect("records lock").clone()
    }

    /// Tells the members to stop, waits until each has closed (committing and leaving), and
    /// returns every record they saw.
    fn stop_and_join(
        &self,
        rt: &tokio::runtime::Runtime,
        members: Vec<tokio::task::JoinHandle<Result<(), weir_client::Error>>>,
    ) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        for member in members {
            rt.block_on(member)
                .expect("member task")
                .expect("member ran and closed");
        }
        self.records()
    }

    fn assignments(&self) -> HashMap<usize, (i32, Vec<u32>)> {
        self.assignments.lock().expect("assignments lock").clone()
    }

    /// Whether `members` hold one generation between them, each with `per_member` partitions,
    /// covering `partitions` with no partition twice.
    fn settled(&self, members: &[usize], per_member: usize, partitions: u32) -> bool {
        let assignments = self.assignments();
        let mut generations = BTreeSet::new();
        let mut owned = BTreeSet::new();
        let mut count = 0;
        for member in members {
            let Some((generation, assigned)) = assignments.get(member) else {
                return false;
            };
            if assigned.len() != per_member {
                return false;
            }
            generations.insert(*generation);
            count += assigned.len();
            owned.extend(assigned.iter().copied());
        }
        generations.len() == 1 && count == owned.len() && owned.len() == partitions as usize
    }
}

/// A member's settings; `auto_commit_interval_ms` may be set so long that the only commits are
/// those before a revoke and on close.
fn member_config(session_timeout_ms: u32, auto_commit_interval_ms: u64) -> ConsumerConfig {
    ConsumerConfig {
        fetch_max_wait_ms: 100,
        group: GroupSettings {
            session_timeout_ms,
            heartbeat_interval_ms: Some(session_timeout_ms / 4),
            rebalance_timeout_ms: 10_000,
            auto_commit_interval_ms,
            ..GroupSettings::default()
        },
        ..ConsumerConfig::default()
    }
}

/// Runs member `member` of `group` on its own connections until `observed.stop`, recording every
/// record it is handed and its assignment after each poll; closes (commit, leave) at the end.
async fn run_member(
    bootstrap: String,
    group: String,
    topic: String,
    member: usize,
    session_timeout_ms: u32,
    auto_commit_interval_ms: u64,
    observed: Arc<Observed>,
) -> Result<(), weir_client::Error> {
    let cluster = Cluster::connect(ClientConfig {
        client_id: format!("member-{member}"),
        ..ClientConfig::new(bootstrap)
    })
    .await?;
    let mut consumer = Consumer::new(
        cluster,
        member_config(session_timeout_ms, auto_commit_interval_ms),
    );
    consumer.subscribe(&group, &[&topic]).await?;
    while !observed.stop.load(Ordering::SeqCst) {
        let records = consumer.poll(Duration::from_millis(200)).await?;
        let generation = consumer.generation().unwrap_or(-1);
        {
            let mut seen = observed.records.lock().expect("records lock");
            for record in &records {
                seen.push(Seen {
                    member,
                    generation,
                    partition: record.partition,
                    offset: record.offset,
                    value: String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                        .into_owned(),
                });
            }
        }
        let mut partitions: Vec<u32> = consumer
            .assignment()
            .into_iter()
            .map(|(_, partition)| partition)
            .collect();
        partitions.sort_unstable();
        observed
            .assignments
            .lock()
            .expect("assignments lock")
            .insert(member, (generation, partitions));
    }
    consumer.close().await
}

/// Produces `values` with their own text as key and returns each value's partition.
async fn produce(cluster: &Arc<Cluster>, topic: &str, values: &[String]) -> HashMap<String, u32> {
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let mut deliveries = Vec::with_capacity(values.len());
    for value in values {
        let delivery = producer
            .enqueue(topic, Some(value.as_bytes()), value.as_bytes(), &[])
            .await
            .unwrap_or_else(|error| panic!("send {value}: {error}"));
        deliveries.push((value.clone(), delivery));
    }
    producer.flush().await;
    let mut placed = HashMap::with_capacity(deliveries.len());
    for (value, delivery) in deliveries {
        let written = delivery
            .wait()
            .await
            .unwrap_or_else(|error| panic!("deliver {value}: {error}"));
        placed.insert(value, written.partition);
    }
    producer.close().await;
    placed
}

fn values(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|index| format!("{prefix}-{index:05}")).collect()
}

async fn create_topic(cluster: &Arc<Cluster>, topic: &str, partitions: u32) {
    Admin::new(cluster.clone())
        .create_topic(
            topic,
            &TopicSettings::new()
                .partitions(partitions)
                .flush(FlushPolicy::Always),
        )
        .await
        .unwrap_or_else(|error| panic!("create {topic}: {error}"));
}

/// Asserts that within each generation no `(partition, offset)` reached two members.
fn assert_disjoint_within_generations(records: &[Seen]) {
    let mut owners: BTreeMap<(i32, u32, i64), usize> = BTreeMap::new();
    for record in records {
        if let Some(other) = owners.insert(
            (record.generation, record.partition, record.offset),
            record.member,
        ) {
            assert_eq!(
                other, record.member,
                "generation {} delivered partition {} offset {} to members {other} and {}",
                record.generation, record.partition, record.offset, record.member
            );
        }
    }
}

#[test]
fn three_members_own_four_partitions_each_and_no_record_reaches_two_in_one_generation() {
    let broker = start_broker();
    let rt = runtime();
    let cluster = rt.block_on(connect_cluster(&broker));
    rt.block_on(create_topic(&cluster, "orders", 12));
    let before = values("before", 0..600);
    rt.block_on(produce(&cluster, "orders", &before));

    let observed = Arc::new(Observed::default());
    let spawn_member = |member: usize| {
        rt.spawn(run_member(
            broker.bootstrap(),
            "billing".to_string(),
            "orders".to_string(),
            member,
            SESSION_TIMEOUT_LONG_MS,
            // Only the commits before revoking and on close: the members that join later
            // must start after what member 0 consumed, not at the earliest offset.
            3_600_000,
            observed.clone(),
        ))
    };
    // Member 0 alone owns all 12 partitions and consumes what is there; then two more join.
    let mut members = vec![spawn_member(0)];
    let before_set: BTreeSet<String> = before.iter().cloned().collect();
    wait_until(
        SETTLE_TIMEOUT,
        "member 0 alone consuming every record",
        || {
            let seen: BTreeSet<String> = observed.records().into_iter().map(|r| r.value).collect();
            observed.settled(&[0], 12, 12) && seen.is_superset(&before_set)
        },
    );
    let (alone_generation, _) = observed.assignments()[&0];
    members.push(spawn_member(1));
    members.push(spawn_member(2));
    wait_until(
        SETTLE_TIMEOUT,
        "three members owning 4 partitions each",
        || observed.settled(&[0, 1, 2], 4, 12),
    );
    let after = values("after", 0..600);
    rt.block_on(produce(&cluster, "orders", &after));
    let expected: BTreeSet<String> = before.iter().chain(&after).cloned().collect();
    wait_until(SETTLE_TIMEOUT, "every record consumed", || {
        let seen: BTreeSet<String> = observed.records().into_iter().map(|r| r.value).collect();
        seen.is_superset(&expected)
    });
    let settled = observed.assignments();
    assert!(
        settled
            .values()
            .all(|(generation, _)| *generation > alone_generation),
        "the members that joined formed a newer generation: {settled:?}"
    );
    let records = observed.stop_and_join(&rt, members);
    assert_disjoint_within_generations(&records);
    // Members commit before giving partitions up, so across generations too each record was
    // delivered once.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &records {
        *counts.entry(record.value.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, &count)| count > 1).collect();
    assert!(
        twice.is_empty(),
        "{} records delivered more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(counts.len(), 1_200);
    // The records produced once the group settled went to the owner of their partition.
    let (generation, _) = settled[&0];
    let owner_of: HashMap<u32, usize> = settled
        .iter()
        .flat_map(|(&member, (_, partitions))| {
            partitions.iter().map(move |&partition| (partition, member))
        })
        .collect();
    for record in records.iter().filter(|r| r.value.starts_with("after")) {
        if record.generation == generation {
            assert_eq!(owner_of[&record.partition], record.member, "{record:?}");
        }
    }
}

/// Starts `weir consume <topic> --group <group>` with its output in `stdout_path`.
fn spawn_cli_member(
    broker: &BrokerProcess,
    topic: &str,
    group: &str,
    stdout_path: &std::path::Path,
) -> Child {
    let stdout = std::fs::File::create(stdout_path).expect("create the member's stdout file");
    let stderr = std::fs::File::create(stdout_path.with_extension("stderr"))
        .expect("create the member's stderr file");
    Command::new(cli_path())
        .args([
            "--broker",
            &broker.bootstrap(),
            "consume",
            topic,
            "--group",
            group,
            "--session-timeout-ms",
            &SESSION_TIMEOUT_MS.to_string(),
        ])
        .env_remove("WEIR_BROKER")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start weir consume --group")
}

fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs `weir groups describe <group>` and parses its partition table into
/// `partition -> (owner, committed, log_end, lag)`.
fn describe_group(
    broker: &BrokerProcess,
    group: &str,
) -> BTreeMap<u32, (String, Option<i64>, i64, i64)> {
    let args = ["--broker", &broker.bootstrap(), "groups", "describe", group];
    let output = run_cli(&args, b"", CLI_TIMEOUT);
    assert!(
        output.status.success(),
        "{}",
        describe_cli_run(&args, &output)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut partitions = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("TOPIC") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if line.trim().is_empty() {
            break;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 7, "partition line {line:?} in\n{text}");
        let partition: u32 = fields[1].parse().expect("partition number");
        let committed = (fields[3] != "-").then(|| fields[3].parse().expect("committed offset"));
        let log_end = fields[4].parse().expect("log end");
        let lag = fields[5].parse().expect("lag");
        partitions.insert(partition, (fields[2].to_string(), committed, log_end, lag));
    }
    partitions
}

#[test]
fn a_member_killed_without_leaving_is_replaced_after_its_session_timeout_and_nothing_is_lost() {
    let broker = start_broker();
    let rt = runtime();
    let cluster = rt.block_on(connect_cluster(&broker));
    rt.block_on(create_topic(&cluster, "orders", 12));
    let before = values("before", 0..600);
    rt.block_on(produce(&cluster, "orders", &before));

    // The child process joins first and, alone, consumes everything produced so far.
    let work = tempfile::tempdir().expect("temporary directory");
    let cli_stdout = work.path().join("killed.stdout");
    let mut killed = spawn_cli_member(&broker, "orders", "billing", &cli_stdout);
    wait_until(
        SETTLE_TIMEOUT,
        "the child member alone printing every record",
        || read_lines(&cli_stdout).len() >= before.len(),
    );
    // Two in-process members join: three members with 4 partitions each.
    let observed = Arc::new(Observed::default());
    let members: Vec<_> = (0..2)
        .map(|member| {
            rt.spawn(run_member(
                broker.bootstrap(),
                "billing".to_string(),
                "orders".to_string(),
                member,
                SESSION_TIMEOUT_MS,
                200,
                observed.clone(),
            ))
        })
        .collect();
    wait_until(
        SETTLE_TIMEOUT,
        "two in-process members owning 4 partitions each",
        || {
            let assignments = observed.assignments();
            [0, 1].iter().all(|member| {
                assignments
                    .get(member)
                    .is_some_and(|(_, partitions)| partitions.len() == 4)
            })
        },
    );
    let in_process: BTreeSet<u32> = observed
        .assignments()
        .values()
        .flat_map(|(_, partitions)| partitions.clone())
        .collect();
    let killed_partitions: BTreeSet<u32> = (0..12)
        .filter(|partition| !in_process.contains(partition))
        .collect();
    assert_eq!(killed_partitions.len(), 4, "the child owns the other 4");

    // More records, consumed by the three and committed: the child's last commit covers all
    // it printed.
    let middle = values("middle", 0..600);
    let placed_middle = rt.block_on(produce(&cluster, "orders", &middle));
    let consumed_so_far: BTreeSet<String> = before.iter().chain(&middle).cloned().collect();
    wait_until(
        SETTLE_TIMEOUT,
        "every record so far consumed, and every partition committed up to its log end",
        || {
            let mut seen: BTreeSet<String> = read_lines(&cli_stdout).into_iter().collect();
            seen.extend(observed.records().into_iter().map(|r| r.value));
            if !seen.is_superset(&consumed_so_far) {
                return false;
            }
            let partitions = describe_group(&broker, "billing");
            partitions.len() == 12
                && partitions.values().all(|(owner, committed, log_end, _)| {
                    owner != "-" && *committed == Some(*log_end)
                })
        },
    );
    let printed_before_kill = read_lines(&cli_stdout);
    assert!(
        printed_before_kill.iter().any(|value| placed_middle
            .get(value)
            .is_some_and(|p| killed_partitions.contains(p))),
        "the child consumed records of its 4 partitions as one of three members"
    );

    // SIGKILL: no LeaveGroup, no more heartbeats.
    killed.kill().expect("SIGKILL the child member");
    killed.wait().expect("reap the child member");
    let after = values("after", 0..600);
    let placed = rt.block_on(produce(&cluster, "orders", &after));
    assert!(
        after
            .iter()
            .any(|value| killed_partitions.contains(&placed[value])),
        "some new records go to the killed member's partitions"
    );

    wait_until(
        SETTLE_TIMEOUT,
        "the two survivors owning all 12 partitions",
        || observed.settled(&[0, 1], 6, 12),
    );
    let expected: BTreeSet<String> = before
        .iter()
        .chain(&middle)
        .chain(&after)
        .cloned()
        .collect();
    wait_until(SETTLE_TIMEOUT, "every record consumed by someone", || {
        let mut seen: BTreeSet<String> = read_lines(&cli_stdout).into_iter().collect();
        seen.extend(observed.records().into_iter().map(|r| r.value));
        seen.is_superset(&expected)
    });
    let records = observed.stop_and_join(&rt, members);
    assert_disjoint_within_generations(&records);
    // The child committed everything it printed before it was killed, so the survivors resumed
    // after it: no record was consumed twice, and none was lost.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for value in read_lines(&cli_stdout)
        .into_iter()
        .chain(records.iter().map(|r| r.value.clone()))
    {
        *counts.entry(value).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, &count)| count > 1).collect();
    assert!(
        twice.is_empty(),
        "{} records consumed more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    // The killed member's partitions moved to the survivors, who read their new records.
    let took_over = records
        .iter()
        .filter(|r| r.value.starts_with("after") && killed_partitions.contains(&r.partition))
        .count();
    assert!(
        took_over > 0,
        "the survivors consumed the killed member's partitions"
    );
}

/// Runs `weir consume <topic> --group <group>` with `extra` flags and returns the printed lines.
fn consume_with_cli(
    broker: &BrokerProcess,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> Vec<String> {
    let bootstrap = broker.bootstrap();
    let mut args = vec!["--broker", &bootstrap, "consume", topic, "--group", group];
    args.extend_from_slice(extra);
    let output = run_cli(&args, b"", CLI_TIMEOUT);
    assert!(
        output.status.success(),
        "{}",
        describe_cli_run(&args, &output)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Consumes part of a topic with `weir consume --group` twice (the second run resumes after
/// the first), stops the broker with `stop`, restarts it, and checks a third run resumes after
/// the second: every record exactly once over the three runs.
fn group_resumes_across_runs_and_a_restart(stop: impl FnOnce(&mut BrokerProcess)) {
    let mut broker = start_broker();
    let rt = runtime();
    let cluster = rt.block_on(connect_cluster(&broker));
    rt.block_on(create_topic(&cluster, "events", 4));
    let produced = values("event", 0..100);
    rt.block_on(produce(&cluster, "events", &produced));
    drop(cluster);

    let first = consume_with_cli(&broker, "events", "audit", &["--max", "40"]);
    assert_eq!(first.len(), 40);
    let second = consume_with_cli(&broker, "events", "audit", &["--max", "25"]);
    assert_eq!(second.len(), 25);
    let overlap: Vec<_> = second
        .iter()
        .filter(|value| first.contains(value))
        .collect();
    assert!(
        overlap.is_empty(),
        "the second run resumed after the first: {overlap:?}"
    );

    stop(&mut broker);
    broker.restart();

    let third = consume_with_cli(&broker, "events", "audit", &["--timeout-ms", "3000"]);
    let mut all: Vec<String> = first.into_iter().chain(second).chain(third).collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        total,
        all.len(),
        "no record printed twice over the three runs"
    );
    let expected: Vec<String> = produced.clone();
    assert_eq!(
        all, expected,
        "every record printed once over the three runs"
    );
}

#[test]
fn weir_consume_group_resumes_across_runs_and_a_sigterm_restart() {
    group_resumes_across_runs_and_a_restart(|broker| broker.terminate());
}

#[test]
fn weir_consume_group_resumes_across_runs_and_a_sigkill_restart() {
    group_resumes_across_runs_and_a_restart(|broker| broker.kill_9());
}

#[test]
fn groups_describe_reports_lag_as_produced_minus_committed() {
    let broker = start_broker();
    let rt = runtime();
    let cluster = rt.block_on(connect_cluster(&broker));
    rt.block_on(create_topic(&cluster, "clicks", 6));
    let produced = values("click", 0..300);
    let placed = rt.block_on(produce(&cluster, "clicks", &produced));
    drop(cluster);

    let printed = consume_with_cli(&broker, "clicks", "stats", &["--max", "70"]);
    assert_eq!(printed.len(), 70);
    // Per partition: records produced, and records printed (= the committed offset, since each
    // partition is read in order from offset 0 and the run commits what it printed).
    let mut produced_per: BTreeMap<u32, i64> = BTreeMap::new();
    for value in &produced {
        *produced_per.entry(placed[value]).or_default() += 1;
    }
    let mut printed_per: BTreeMap<u32, i64> = BTreeMap::new();
    for value in &printed {
        *printed_per.entry(placed[value]).or_default() += 1;
    }

    let described = describe_group(&broker, "stats");
    for (partition, &log_end) in &produced_per {
        let consumed = printed_per.get(partition).copied().unwrap_or(0);
        let Some((owner, committed, described_end, lag)) = described.get(partition) else {
            assert_eq!(
                consumed, 0,
                "partition {partition} with commits is described"
            );
            continue;
        };
        assert_eq!(
            owner, "-",
            "the run left the group, so nobody owns {partition}"
        );
        assert_eq!(*described_end, log_end, "log end of partition {partition}");
        assert_eq!(
            committed.unwrap_or(0),
            consumed,
            "committed offset of partition {partition}"
        );
        assert_eq!(*lag, log_end - consumed, "lag of partition {partition}");
    }
    let total_lag: i64 = described.values().map(|(_, _, _, lag)| lag).sum();
    let described_produced: i64 = described
        .keys()
        .map(|partition| produced_per.get(partition).copied().unwrap_or(0))
        .sum();
    assert_eq!(total_lag, described_produced - 70);

    let args = ["--broker", &broker.bootstrap(), "groups", "list"];
    let output = run_cli(&args, b"", CLI_TIMEOUT);
    assert!(
        output.status.success(),
        "{}",
        describe_cli_run(&args, &output)
    );
    let listing = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = listing
        .lines()
        .find(|line| line.split_whitespace().next() == Some("stats"))
        .unwrap_or_else(|| panic!("group stats listed:\n{listing}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1], "empty", "a group whose only member left: {line}");
    assert_eq!(fields[2], "0", "no members: {line}");
}

#[test]
fn a_session_timeout_below_the_brokers_minimum_and_an_unknown_group_are_clear_errors() {
    let broker = start_broker();
    let rt = runtime();
    let cluster = rt.block_on(connect_cluster(&broker));
    rt.block_on(create_topic(&cluster, "orders", 2));
    let error = rt.block_on(async {
        let mut consumer = Consumer::new(cluster.clone(), member_config(100, 1_000));
        consumer
            .subscribe("short", &["orders"])
            .await
            .expect("the client accepts 100 ms; the broker's minimum is 500");
        consumer
            .poll(Duration::from_millis(100))
            .await
            .expect_err("the join is refused")
    });
    assert!(
        matches!(
            error,
            weir_client::Error::Broker {
                code: weir_client::ErrorCode::InvalidSessionTimeout,
                ..
            }
        ),
        "{error}"
    );

    let args = [
        "--broker",
        &broker.bootstrap(),
        "groups",
        "describe",
        "nobody",
    ];
    let output = run_cli(&args, b"", CLI_TIMEOUT);
    assert!(
        !output.status.success(),
        "{}",
        describe_cli_run(&args, &output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: group \"nobody\" does not exist"),
        "{}",
        describe_cli_run(&args, &output)
    );
}

#[test]
fn weir_groups_delete_removes_empty_groups_and_fails_for_busy_or_unknown_ones() {
    use weir_proto::wire::{JoinGroupRequest, OffsetCommitPartition, OffsetCommitRequest};
    use weir_tests::wire::WireClient;

    let broker = start_broker();
    let mut wire = WireClient::connect_and_handshake(broker.addresses().listen);
    let topic_id = wire.create_topic("orders", 1, weir_proto::wire::FlushPolicy::Always);
    for group in ["done", "finished"] {
        let committed = wire.call_ok(&OffsetCommitRequest {
            group_id: group.into(),
            entries: vec![OffsetCommitPartition {
                topic_id,
                partition: 0,
                offset: 3,
                metadata: String::new(),
            }],
            ..OffsetCommitRequest::default()
        });
        assert!(committed.entries[0].error_code.is_none(), "{group}");
    }
    // A member that stays for the whole test (its session outlasts it).
    let joined = wire.call_ok(&JoinGroupRequest {
        group_id: "busy".into(),
        member_id: String::new(),
        client_id: "worker".into(),
        session_timeout_ms: 60_000,
        rebalance_timeout_ms: 60_000,
        topics: vec!["orders".into()],
        strategies: vec!["range".into()],
        owned: Vec::new(),
    });
    assert!(joined.error_code.is_none(), "{}", joined.error_message);

    let bootstrap = broker.bootstrap();
    let args = [
        "--broker", &bootstrap, "groups", "delete", "done", "finished",
    ];
    let output = run_cli(&args, b"", CLI_TIMEOUT);
    assert!(
        output.status.success(),
        "{}",
        describe_cli_run(&args, &output)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "done: deleted\nfinished: deleted\n"
    );

    let args = ["--broker", &bootstrap, "groups", "delete", "busy", "done"];
    let output = run_cli(&args, b"", CLI_TIMEOUT);
    let context = describe_cli_run(&args, &output);
    assert_eq!(output.status.code(), Some(1), "{context}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{context}");
    assert!(
        lines[0].starts_with("busy: not deleted: non_empty_group: "),
        "{context}"
    );
    assert!(
        lines[1].starts_with("done: not deleted: group_id_not_found: "),
        "{context}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("2 of 2 groups were not deleted"),
        "{context}"
    );

    let args = ["--broker", &bootstrap, "groups", "list"];
    let output = run_cli(&args, b"", CLI_TIMEOUT);
    let listed: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(
        listed,
        vec!["busy".to_string()],
        "{}",
        describe_cli_run(&args, &output)
    );
}
