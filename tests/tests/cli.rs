//! The `weir` command line against a real broker, run as a child process the way an operator
//! runs it: `weir topic create`, `weir produce` from standard input with `--key-separator`,
//! `weir consume --from earliest --max N`, `weir consume --group G` resuming after the previous
//! run's commit, `weir topic list|describe`, and a one-line error with a non-zero exit status for
//! an unknown topic.

use std::process::Output;
use std::time::Duration;

use weir_tests::bins;
use weir_tests::BrokerProcess;

/// How long one `weir` invocation may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `weir --broker <broker> <args>` with `stdin` as standard input; fails the test if it
/// does not finish within [`COMMAND_TIMEOUT`].
fn weir(broker: &BrokerProcess, args: &[&str], stdin: &[u8]) -> Output {
    let bootstrap = broker.bootstrap();
    let mut full = vec!["--broker", bootstrap.as_str()];
    full.extend_from_slice(args);
    bins::run_cli(&full, stdin, COMMAND_TIMEOUT)
}

/// Runs `weir` and fails the test unless it exits with status 0; returns its stdout.
fn weir_ok(broker: &BrokerProcess, args: &[&str], stdin: &[u8]) -> String {
    let output = weir(broker, args, stdin);
    assert!(
        output.status.success(),
        "`weir {}` failed with {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("weir prints UTF-8")
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn create_produce_and_consume_from_the_command_line() {
    let broker = BrokerProcess::start_with_cores(2);
    weir_ok(&broker, &["topic", "create", "T", "--partitions", "2"], b"");
    weir_ok(
        &broker,
        &["produce", "T", "--key-separator", ":"],
        b"a:1\nb:2\n",
    );

    let printed = weir_ok(
        &broker,
        &["consume", "T", "--from", "earliest", "--max", "2"],
        b"",
    );
    let mut values = lines(&printed);
    // The two keys may land on different partitions, whose order relative to each other is free.
    values.sort_unstable();
    assert_eq!(
        values,
        ["1", "2"],
        "consume prints the two values:\n{printed}"
    );

    let printed = weir_ok(
        &broker,
        &[
            "consume",
            "T",
            "--from",
            "earliest",
            "--max",
            "2",
            "--print-key",
            "--key-separator",
            "=",
        ],
        b"",
    );
    let mut pairs = lines(&printed);
    pairs.sort_unstable();
    assert_eq!(
        pairs,
        ["a=1", "b=2"],
        "keys were split at the separator:\n{printed}"
    );

    let listed = weir_ok(&broker, &["topic", "list"], b"");
    assert!(
        listed.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.first() == Some(&"T") && fields.last() == Some(&"2")
        }),
        "topic list shows T with 2 partitions:\n{listed}"
    );
    let described = weir_ok(&broker, &["topic", "describe", "T"], b"");
    assert!(
        described.contains("partitions: 2"),
        "describe:\n{described}"
    );
}

#[test]
fn consume_with_a_group_resumes_after_the_previous_commit() {
    let broker = BrokerProcess::start_with_cores(1);
    weir_ok(&broker, &["topic", "create", "G", "--partitions", "1"], b"");
    weir_ok(&broker, &["produce", "G"], b"m1\nm2\nm3\nm4\nm5\n");

    let first = weir_ok(
        &broker,
        &["consume", "G", "--group", "readers", "--max", "2"],
        b"",
    );
    assert_eq!(
        lines(&first),
        ["m1", "m2"],
        "the first run starts at the beginning"
    );
    let second = weir_ok(
        &broker,
        &["consume", "G", "--group", "readers", "--max", "2"],
        b"",
    );
    assert_eq!(
        lines(&second),
        ["m3", "m4"],
        "the second run resumes after the first's commit"
    );
    let third = weir_ok(
        &broker,
        &["consume", "G", "--group", "readers", "--timeout-ms", "1500"],
        b"",
    );
    assert_eq!(
        lines(&third),
        ["m5"],
        "the third run reads the rest, then stops when idle"
    );
    // Another group has its own position.
    let other = weir_ok(
        &broker,
        &["consume", "G", "--group", "auditors", "--max", "1"],
        b"",
    );
    assert_eq!(lines(&other), ["m1"], "a new group starts at the beginning");
}

#[test]
fn an_unknown_topic_is_a_one_line_error_and_a_failure_status() {
    let broker = BrokerProcess::start_with_cores(1);
    for args in [
        &["consume", "missing-topic", "--max", "1"][..],
        &["produce", "missing-topic"][..],
        &["topic", "describe", "missing-topic"][..],
        &["topic", "delete", "missing-topic"][..],
    ] {
        let output = weir(&broker, args, b"x\n");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "`weir {}` succeeded on an unknown topic",
            args.join(" ")
        );
        assert!(
            output.stdout.is_empty(),
            "`weir {}` printed to stdout",
            args.join(" ")
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "`weir {}` explains the failure in one line:\n{stderr}",
            args.join(" ")
        );
        assert!(
            stderr.starts_with("error: ") && stderr.contains("missing-topic"),
            "`weir {}`: the error names the topic:\n{stderr}",
            args.join(" ")
        );
    }
}
