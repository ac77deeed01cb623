//! `weir bench` against a real broker, run as a child process the way an operator runs it: a
//! closed-loop run of two producers and one consumer over four partitions on two shards, whose
//! JSON report must account for every message (produced and consumed exactly once), give ordered
//! latency percentiles, show no cross-shard forwarding, and measure the broker's CPU; the fresh
//! topic is deleted afterwards. An open-loop run (`--rate` with `--duration-s`, pinned) sends
//! exactly the messages its schedule holds, paced over the duration, and skips CPU with a note
//! when it has no pid. `--read-existing` on a topic kept by an earlier run reads every record
//! from the start, exactly once, without producing, and charges the broker's CPU per record
//! read. Command lines the bench refuses fail before any load runs.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use weir_tests::bins;
use weir_tests::BrokerProcess;

/// How long one `weir` invocation may take (a debug build sending 20,000 messages).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `weir <args>` to completion; fails the test if it does not finish within
/// [`COMMAND_TIMEOUT`].
fn weir(args: &[&str]) -> Output {
    bins::run_cli(args, b"", COMMAND_TIMEOUT)
}

fn describe(args: &[&str], output: &Output) -> String {
    bins::describe_cli_run(args, output)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("invalid JSON ({error}):\n{text}"))
}

/// The number at `pointer` (a JSON pointer) in `report`; fails the test if it is missing.
fn number(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("the report has no number at {pointer}:\n{report:#}"))
}

/// The report's verification: `received` records arrived, none lost, repeated or foreign.
fn assert_every_record_received_once(report: &Value, received: f64) {
    assert_eq!(number(report, "/summary/verification/received"), received);
    for field in ["lost", "duplicated", "foreign"] {
        assert_eq!(
            number(report, &format!("/summary/verification/{field}")),
            0.0,
            "{field}"
        );
    }
}

fn assert_percentiles_ordered(report: &Value, histogram: &str, messages: f64) {
    let base = format!("/histograms/{histogram}");
    assert_eq!(
        number(report, &format!("{base}/count")),
        messages,
        "{histogram} samples"
    );
    let named: Vec<f64> = ["p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"]
        .iter()
        .map(|field| number(report, &format!("{base}/{field}")))
        .collect();
    assert!(
        named[0] > 0.0,
        "{histogram}: a latency of 0 µs was not measured: {named:?}"
    );
    assert!(
        named.windows(2).all(|pair| pair[0] <= pair[1]),
        "{histogram}: p50 ≤ p90 ≤ p99 ≤ p99.9 ≤ max: {named:?}"
    );
    let listed: Vec<f64> = report
        .pointer(&format!("{base}/percentiles"))
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{histogram} has no percentile list"))
        .iter()
        .map(|pair| pair[1].as_f64().expect("[quantile, µs] pairs"))
        .collect();
    assert!(listed.len() >= 5, "{histogram}: {listed:?}");
    assert!(
        listed.windows(2).all(|pair| pair[0] <= pair[1]),
        "{histogram}: the percentile list rises: {listed:?}"
    );
}

#[test]
fn bench_reports_every_message_latencies_and_broker_cost() {
    let broker = BrokerProcess::start_with_cores(2);
    let json = broker.work_dir().join("bench.json");
    let metrics_url = format!("http://{}/metrics", broker.metrics_address());
    let pid = broker.pid().to_string();
    let bootstrap = broker.bootstrap();
    let args = [
        "--broker",
        bootstrap.as_str(),
        "bench",
        "--messages",
        "20000",
        "--message-bytes",
        "100",
        "--producers",
        "2",
        "--consumers",
        "1",
        "--partitions",
        "4",
        "--json",
        json.to_str().expect("UTF-8 path"),
        "--metrics-url",
        metrics_url.as_str(),
        "--broker-pid",
        pid.as_str(),
        "--quiet",
    ];
    let output = weir(&args);
    assert!(output.status.success(), "{}", describe(&args, &output));
    let table = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "produce",
        "consume",
        "produce-ack",
        "end-to-end",
        "broker CPU",
    ] {
        assert!(
            table.contains(needle),
            "the table lacks {needle:?}:\n{table}"
        );
    }

    let report = read_json(&json);
    assert_eq!(number(&report, "/summary/sent"), 20_000.0);
    assert_eq!(number(&report, "/summary/failed"), 0.0);
    assert_eq!(number(&report, "/summary/produce/messages"), 20_000.0);
    assert_eq!(number(&report, "/summary/consume/messages"), 20_000.0);
    assert_every_record_received_once(&report, 20_000.0);
    assert!(number(&report, "/summary/produce/records_per_s") > 0.0);
    assert!(number(&report, "/summary/consume/megabytes_per_s") > 0.0);
    assert_percentiles_ordered(&report, "produce_ack", 20_000.0);
    assert_percentiles_ordered(&report, "end_to_end", 20_000.0);
    assert_eq!(
        number(&report, "/summary/broker/forwarded_requests_delta"),
        0.0,
        "a shard-aware client causes no cross-shard forwarding"
    );
    let cpu = number(&report, "/summary/broker/cpu_s_per_million_records");
    assert!(cpu > 0.0, "the broker used CPU for 20,000 records: {cpu}");
    assert!(number(&report, "/summary/generator_cpu_s") >= 0.0);
    assert_eq!(number(&report, "/config/partitions"), 4.0);
    assert!(number(&report, "/environment/cores") >= 1.0);
    for field in ["kernel", "topic_flush", "date"] {
        assert!(
            report
                .pointer(&format!("/environment/{field}"))
                .and_then(Value::as_str)
                .is_some_and(|text| !text.is_empty()),
            "environment.{field} is missing:\n{report:#}"
        );
    }

    // The run deleted the topic it created.
    let topic = report
        .pointer("/config/topic")
        .and_then(Value::as_str)
        .expect("the report names its topic")
        .to_string();
    assert!(topic.starts_with("bench-"), "{topic}");
    let list_args = ["--broker", bootstrap.as_str(), "topic", "list"];
    let listed = weir(&list_args);
    assert!(listed.status.success(), "{}", describe(&list_args, &listed));
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !listed.contains(&topic),
        "{topic} is still listed:\n{listed}"
    );
}

#[test]
fn bench_refuses_impossible_command_lines_before_any_load() {
    for args in [
        &[
            "bench",
            "--mode",
            "pinned",
            "--producers",
            "3",
            "--partitions",
            "2",
        ][..],
        &["bench", "--messages", "10", "--duration-s", "1"],
        &["bench", "--consumers", "3", "--partitions", "2"],
        // Reading needs an existing topic and has no producers.
        &["bench", "--read-existing"],
        &["bench", "--read-existing", "--topic", "t", "--rate", "10"],
    ] {
        // No broker listens on port 1: the refusal must come before any connection attempt.
        let mut full = vec!["--broker", "127.0.0.1:1"];
        full.extend_from_slice(args);
        let output = weir(&full);
        assert!(!output.status.success(), "{}", describe(&full, &output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("cannot connect"),
            "refused only at connect time:\n{stderr}"
        );
    }
}

#[test]
fn read_existing_reads_a_kept_topic_from_its_start_without_producing() {
    let broker = BrokerProcess::start_with_cores(2);
    let metrics_url = format!("http://{}/metrics", broker.metrics_address());
    let pid = broker.pid().to_string();
    let bootstrap = broker.bootstrap();
    let produced = broker.work_dir().join("produced.json");
    let produce_args = [
        "--broker",
        bootstrap.as_str(),
        "bench",
        "--messages",
        "20000",
        "--message-bytes",
        "200",
        "--producers",
        "2",
        "--consumers",
        "0",
        "--partitions",
        "2",
        "--keep-topic",
        "--json",
        produced.to_str().expect("UTF-8 path"),
        "--metrics-url",
        metrics_url.as_str(),
        "--quiet",
    ];
    let output = weir(&produce_args);
    assert!(
        output.status.success(),
        "{}",
        describe(&produce_args, &output)
    );
    let topic = read_json(&produced)
        .pointer("/config/topic")
        .and_then(Value::as_str)
        .expect("the report names its topic")
        .to_string();

    let read = broker.work_dir().join("read.json");
    let read_args = [
        "--broker",
        bootstrap.as_str(),
        "bench",
        "--topic",
        topic.as_str(),
        "--read-existing",
        "--consumers",
        "2",
        "--message-bytes",
        "200",
        "--json",
        read.to_str().expect("UTF-8 path"),
        "--metrics-url",
        metrics_url.as_str(),
        "--broker-pid",
        pid.as_str(),
        "--quiet",
    ];
    let output = weir(&read_args);
    assert!(output.status.success(), "{}", describe(&read_args, &output));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("consume"), "{table}");
    assert!(
        !table.contains("produce  "),
        "nothing was produced:\n{table}"
    );
    let report = read_json(&read);
    assert_eq!(number(&report, "/summary/sent"), 0.0);
    assert_eq!(number(&report, "/summary/consume/messages"), 20_000.0);
    assert_every_record_received_once(&report, 20_000.0);
    assert!(number(&report, "/summary/consume/megabytes_per_s") > 0.0);
    // Per record read when nothing was produced (null if it were per record produced); the
    // figure itself may round to 0 at /proc's 10 ms resolution.
    let cpu = number(&report, "/summary/broker/cpu_s_per_million_records");
    assert!(cpu >= 0.0, "{cpu}");

    // Reading again finds the same records: the run neither deleted nor added to the topic.
    let output = weir(&read_args);
    assert!(output.status.success(), "{}", describe(&read_args, &output));
    assert_eq!(
        number(&read_json(&read), "/summary/verification/received"),
        20_000.0
    );
}

#[test]
fn open_loop_sends_exactly_what_the_schedule_holds() {
    let broker = BrokerProcess::start_with_cores(2);
    let json = broker.work_dir().join("open-loop.json");
    let metrics_url = format!("http://{}/metrics", broker.metrics_address());
    let bootstrap = broker.bootstrap();
    // 2,000 messages per second for one second: global messages 0..2000 are meant to be sent
    // before the second ends. Pinned: producer i writes partition i only.
    let args = [
        "--broker",
        bootstrap.as_str(),
        "bench",
        "--rate",
        "2000",
        "--duration-s",
        "1",
        "--message-bytes",
        "64",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--partitions",
        "2",
        "--mode",
        "pinned",
        "--json",
        json.to_str().expect("UTF-8 path"),
        "--metrics-url",
        metrics_url.as_str(),
        "--quiet",
    ];
    let output = weir(&args);
    assert!(output.status.success(), "{}", describe(&args, &output));
    let report = read_json(&json);
    assert_eq!(number(&report, "/summary/sent"), 2_000.0);
    assert_eq!(number(&report, "/summary/produce/messages"), 2_000.0);
    assert_eq!(number(&report, "/summary/consume/messages"), 2_000.0);
    assert_eq!(number(&report, "/summary/verification/lost"), 0.0);
    // Paced over a second, not sent in a burst.
    assert!(
        number(&report, "/summary/produce/seconds") >= 0.99,
        "{report:#}"
    );
    assert_eq!(
        number(&report, "/summary/broker/forwarded_requests_delta"),
        0.0
    );
    // No pid and no ready file: CPU is skipped with a note, not failed.
    assert!(report
        .pointer("/summary/broker/cpu_s")
        .is_some_and(Value::is_null));
    let notes = report
        .pointer("/summary/broker/notes")
        .and_then(Value::as_array)
        .expect("notes");
    assert!(
        notes
            .iter()
            .any(|note| note.as_str().is_some_and(|text| text.contains("CPU"))),
        "{notes:?}"
    );
    assert_percentiles_ordered(&report, "produce_ack", 2_000.0);
    assert_percentiles_ordered(&report, "end_to_end", 2_000.0);
}
