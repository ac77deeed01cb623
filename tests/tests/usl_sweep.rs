//! `weir usl sweep --over producers` against a real broker, run as a child process the way an
//! operator runs it: three levels of one short run each, whose JSON report must hold one point
//! per run with a positive throughput, a summary per level with the broker's CPU and forwarded
//! requests, and a fit with finite λ, α and β. Runs this small fit poorly, so only the report's
//! structure and the fit's finiteness are asserted, not its values. A sweep the fit could never
//! use (fewer than three levels) fails before it runs anything.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use weir_tests::bins;
use weir_tests::BrokerProcess;

/// How long one `weir usl sweep` may take (a debug build sending 3 × 3,000 messages).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `weir <args>` to completion; fails the test if it does not finish within
/// [`COMMAND_TIMEOUT`].
fn weir(args: &[&str]) -> Output {
    bins::run_cli(args, b"", COMMAND_TIMEOUT)
}

fn describe(args: &[&str], output: &Output) -> String {
    bins::describe_cli_run(args, output)
}

/// The number at `pointer` (a JSON pointer) in `report`; fails the test if it is missing.
fn number(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("the report has no number at {pointer}:\n{report:#}"))
}

#[test]
fn a_producer_sweep_reports_every_run_and_a_finite_fit() {
    let broker = BrokerProcess::start_with_cores(1);
    let json = broker.work_dir().join("sweep.json");
    let plot = broker.work_dir().join("sweep.svg");
    let bootstrap = broker.bootstrap();
    let pid = broker.pid().to_string();
    let metrics_url = format!("http://{}/metrics", broker.metrics_address());
    let args = [
        "--broker",
        bootstrap.as_str(),
        "usl",
        "sweep",
        "--over",
        "producers",
        "--values",
        "1,2,3",
        "--repeats",
        "1",
        "--messages",
        "3000",
        "--message-bytes",
        "100",
        "--broker-pid",
        pid.as_str(),
        "--metrics-url",
        metrics_url.as_str(),
        "--json",
        json.to_str().expect("UTF-8 path"),
        "--plot",
        plot.to_str().expect("UTF-8 path"),
    ];
    let output = weir(&args);
    assert!(output.status.success(), "{}", describe(&args, &output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "mean rec/s",
        "CPU s/M rec",
        "lambda =",
        "alpha  =",
        "beta   =",
    ] {
        assert!(
            stdout.contains(needle),
            "stdout lacks {needle:?}:\n{stdout}"
        );
    }

    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", json.display()));
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("invalid JSON ({error}):\n{text}"));
    let points = report["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points:\n{report:#}"));
    assert_eq!(points.len(), 3, "one point per run:\n{report:#}");
    for (index, level) in [1, 2, 3].into_iter().enumerate() {
        let base = format!("/points/{index}");
        assert_eq!(number(&report, &format!("{base}/level")), f64::from(level));
        assert_eq!(number(&report, &format!("{base}/records")), 3000.0);
        let throughput = number(&report, &format!("{base}/records_per_s"));
        assert!(
            throughput.is_finite() && throughput > 0.0,
            "N = {level}: throughput {throughput}"
        );
        // With one shard nothing crosses shards, and the pid was given, so CPU is measured.
        assert_eq!(
            number(&report, &format!("{base}/forwarded_requests_delta")),
            0.0
        );
        assert!(number(&report, &format!("{base}/cpu_s_per_million_records")) >= 0.0);
        assert_eq!(number(&report, &format!("/levels/{index}/repeats")), 1.0);
    }
    for parameter in ["lambda", "alpha", "beta"] {
        let value = number(&report, &format!("/fit/parameters/{parameter}"));
        assert!(value.is_finite(), "{parameter} = {value}");
    }
    assert!(number(&report, "/fit/parameters/lambda") > 0.0);
    assert_eq!(report["fit"]["points"].as_array().map(Vec::len), Some(3));
    assert_eq!(report["config"]["options"]["over"], "producers");
    assert!(number(&report, "/environment/cores") >= 1.0);
    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    assert!(svg.contains("<svg"), "{svg}");
}

#[test]
fn a_sweep_with_too_few_levels_fails_before_it_runs() {
    // No broker listens here: the sweep must refuse before it tries to connect.
    let args = [
        "--broker",
        "127.0.0.1:1",
        "usl",
        "sweep",
        "--over",
        "producers",
        "--values",
        "1,2",
    ];
    let output = weir(&args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        describe(&args, &output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("at least 3 levels") && !stderr.contains("connect"),
        "{stderr}"
    );
}
