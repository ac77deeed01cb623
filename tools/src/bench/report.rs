//! The bench report: the summary table on stdout and the `--json` document.
//!
//! Latencies are kept in nanoseconds and reported in microseconds. Throughput counts the
//! messages a side completed over the time from the run's epoch to that side's last completion.

use std::io::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The quantiles reported for each latency distribution, in order.
pub const QUANTILES: [f64; 10] = [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0];

/// One latency distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyReport {
    /// Samples recorded.
    pub count: u64,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 90th percentile, microseconds.
    pub p90_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile, microseconds.
    pub p99_9_us: f64,
    /// Largest, microseconds.
    pub max_us: f64,
    /// Mean, microseconds.
    pub mean_us: f64,
    /// `[quantile, microseconds]` for each of [`QUANTILES`].
    pub percentiles: Vec<[f64; 2]>,
}

fn microseconds(nanoseconds: u64) -> f64 {
    nanoseconds as f64 / 1_000.0
}

impl LatencyReport {
    /// Summarises a histogram of nanoseconds; `None` if it is empty.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Option<LatencyReport> {
        if histogram.is_empty() {
            return None;
        }
        let at = |quantile: f64| microseconds(histogram.value_at_quantile(quantile));
        Some(LatencyReport {
            count: histogram.len(),
            p50_us: at(0.5),
            p90_us: at(0.9),
            p99_us: at(0.99),
            p99_9_us: at(0.999),
            max_us: microseconds(histogram.max()),
            mean_us: histogram.mean() / 1_000.0,
            percentiles: QUANTILES
                .iter()
                .map(|&quantile| [quantile, at(quantile)])
                .collect(),
        })
    }
}

/// One side's throughput.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// Messages completed (acknowledged, or received).
    pub messages: u64,
    /// Seconds from the epoch to the last completion.
    pub seconds: f64,
    /// Messages per second.
    pub records_per_s: f64,
    /// Value bytes per second, in millions of bytes.
    pub megabytes_per_s: f64,
}

impl Throughput {
    /// `messages` of `message_bytes` each over `seconds`.
    pub fn new(messages: u64, message_bytes: usize, seconds: f64) -> Throughput {
        let per_second = |amount: f64| if seconds > 0.0 { amount / seconds } else { 0.0 };
        Throughput {
            messages,
            seconds,
            records_per_s: per_second(messages as f64),
            megabytes_per_s: per_second(messages as f64 * message_bytes as f64) / 1e6,
        }
    }
}

/// The broker's cost and crosstalk over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokerCost {
    /// Growth of `weir_forwarded_requests_total`, if /metrics was scraped before and after.
    pub forwarded_requests_delta: Option<f64>,
    /// The broker's user + system CPU seconds over the run, if its pid was known.
    pub cpu_s: Option<f64>,
    /// CPU seconds per million produced records.
    pub cpu_s_per_million_records: Option<f64>,
    /// Seconds the broker's threads were runnable but waiting for a CPU over the run (their
    /// run-queue wait from `/proc/<pid>/task/*/schedstat`), if its pid was known.
    pub cpu_wait_s: Option<f64>,
    /// Why a figure is missing.
    pub notes: Vec<String>,
}

/// What the consumers verified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// Records received.
    pub received: u64,
    /// Sent messages that never arrived in sequence.
    pub lost: u64,
    /// Records received again or out of order.
    pub duplicated: u64,
    /// Records that are not this run's bench messages.
    pub foreign: u64,
}

/// The summary of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Messages handed to the producers.
    pub sent: u64,
    /// Messages whose delivery failed.
    pub failed: u64,
    /// Produce side.
    pub produce: Throughput,
    /// Consume side, if there were consumers.
    pub consume: Option<Throughput>,
    /// Consumer checks, if there were consumers.
    pub verification: Option<Verification>,
    /// The broker's cost.
    pub broker: BrokerCost,
    /// This generator's own user + system CPU seconds over the load (to tell whether the
    /// generator, rather than the broker, was the limit).
    pub generator_cpu_s: Option<f64>,
    /// Seconds this generator's threads were runnable but waiting for a CPU over the load.
    pub generator_cpu_wait_s: Option<f64>,
    /// The whole machine's CPU time by state over the load, all CPUs summed.
    pub machine_cpu: Option<MachineCpu>,
}

/// The whole machine's CPU seconds by state over a run, all CPUs summed: what else ran, how
/// much was idle, and how much a hypervisor took.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MachineCpu {
    /// User mode, niced included.
    pub user_s: f64,
    /// Kernel mode, interrupts and softirqs included.
    pub system_s: f64,
    /// Idle, waiting for I/O included.
    pub idle_s: f64,
    /// Steal: time the hypervisor ran other guests while this machine had work.
    pub steal_s: f64,
}

/// Both latency distributions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histograms {
    /// From intended send time to acknowledgement.
    pub produce_ack: Option<LatencyReport>,
    /// From intended send time to receipt by a consumer.
    pub end_to_end: Option<LatencyReport>,
}

/// Where and when the run happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    /// Cores available to this process (as `nproc` counts them).
    pub cores: usize,
    /// The kernel release.
    pub kernel: String,
    /// The topic's flush policy as the broker describes it.
    pub topic_flush: String,
    /// When the run started, RFC 3339 UTC.
    pub date: String,
}

/// The whole `--json` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report<C: Serialize> {
    /// The run's configuration.
    pub config: C,
    /// Where and when.
    pub environment: Environment,
    /// The figures.
    pub summary: Summary,
    /// The latency distributions.
    pub histograms: Histograms,
}

fn latency_row(
    out: &mut impl Write,
    name: &str,
    report: Option<&LatencyReport>,
) -> std::io::Result<()> {
    match report {
        Some(report) => writeln!(
            out,
            "{name:<12} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            report.p50_us, report.p90_us, report.p99_us, report.p99_9_us, report.max_us
        ),
        None => writeln!(out, "{name:<12} {:>10}", "-"),
    }
}

/// Writes the final table.
pub fn write_table(
    out: &mut impl Write,
    summary: &Summary,
    histograms: &Histograms,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<12} {:>12} {:>10} {:>12} {:>10}",
        "", "messages", "MB/s", "records/s", "seconds"
    )?;
    let sides = [
        // A run that only read (`--read-existing`) has no produce side.
        ("produce", (summary.sent > 0).then_some(&summary.produce)),
        ("consume", summary.consume.as_ref()),
    ];
    for (name, throughput) in sides {
        if let Some(throughput) = throughput {
            writeln!(
                out,
                "{name:<12} {:>12} {:>10.1} {:>12.0} {:>10.3}",
                throughput.messages,
                throughput.megabytes_per_s,
                throughput.records_per_s,
                throughput.seconds
            )?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "latency µs", "p50", "p90", "p99", "p99.9", "max"
    )?;
    latency_row(out, "produce-ack", histograms.produce_ack.as_ref())?;
    if summary.consume.is_some() {
        latency_row(out, "end-to-end", histograms.end_to_end.as_ref())?;
    }
    writeln!(out)?;
    let forwarded = summary
        .broker
        .forwarded_requests_delta
        .map_or("n/a".to_string(), |delta| format!("{delta:.0}"));
    let cpu = match (
        summary.broker.cpu_s,
        summary.broker.cpu_s_per_million_records,
    ) {
        (Some(total), Some(per_million)) => {
            format!("{total:.2} s ({per_million:.2} s per million records)")
        }
        (Some(total), None) => format!("{total:.2} s"),
        _ => "n/a".to_string(),
    };
    writeln!(out, "broker forwarded requests: {forwarded}")?;
    writeln!(out, "broker CPU:                {cpu}")?;
    if let Some(seconds) = summary.generator_cpu_s {
        writeln!(out, "generator CPU:             {seconds:.2} s")?;
    }
    let waits = [
        ("broker", summary.broker.cpu_wait_s),
        ("generator", summary.generator_cpu_wait_s),
    ];
    if waits.iter().any(|(_, wait)| wait.is_some()) {
        let waits: Vec<String> = waits
            .iter()
            .filter_map(|(who, wait)| wait.map(|seconds| format!("{who} {seconds:.2} s")))
            .collect();
        writeln!(out, "waited for a CPU:          {}", waits.join(", "))?;
    }
    if let Some(machine) = summary.machine_cpu {
        writeln!(
            out,
            "machine CPU:               user {:.2} s, system {:.2} s, idle {:.2} s, steal {:.2} s",
            machine.user_s, machine.system_s, machine.idle_s, machine.steal_s
        )?;
    }
    for note in &summary.broker.notes {
        writeln!(out, "note: {note}")?;
    }
    if let Some(verification) = &summary.verification {
        writeln!(
            out,
            "verified:                  {} received, {} lost, {} duplicated, {} foreign",
            verification.received, verification.lost, verification.duplicated, verification.foreign
        )?;
    }
    if summary.failed > 0 {
        writeln!(out, "failed deliveries:         {}", summary.failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_microseconds_and_in_order() {
        let mut histogram = crate::bench::load::latency_histogram();
        for microsecond in 1..=1_000u64 {
            histogram.record(microsecond * 1_000).expect("in range");
        }
        let report = LatencyReport::from_histogram(&histogram).expect("not empty");
        assert_eq!(report.count, 1_000);
        assert!((report.p50_us - 500.0).abs() <= 1.0, "{report:?}");
        assert!((report.p99_us - 990.0).abs() <= 1.0, "{report:?}");
        assert!((report.max_us - 1_000.0).abs() <= 1.0, "{report:?}");
        let values: Vec<f64> = report.percentiles.iter().map(|pair| pair[1]).collect();
        assert!(
            values.windows(2).all(|pair| pair[0] <= pair[1]),
            "{values:?}"
        );
        assert!(LatencyReport::from_histogram(&crate::bench::load::latency_histogram()).is_none());
    }

    #[test]
    fn throughput_divides_by_elapsed_seconds() {
        let throughput = Throughput::new(1_000_000, 1_024, 2.0);
        assert_eq!(throughput.records_per_s, 500_000.0);
        assert!((throughput.megabytes_per_s - 512.0).abs() < 1e-9);
        assert_eq!(Throughput::new(5, 10, 0.0).records_per_s, 0.0);
    }

    #[test]
    fn the_table_names_missing_broker_figures_and_their_reasons() {
        let summary = Summary {
            sent: 10,
            failed: 0,
            produce: Throughput::new(10, 100, 1.0),
            consume: None,
            verification: None,
            broker: BrokerCost {
                forwarded_requests_delta: None,
                cpu_s: None,
                cpu_s_per_million_records: None,
                cpu_wait_s: None,
                notes: vec!["broker CPU not measured".to_string()],
            },
            generator_cpu_s: Some(0.5),
            generator_cpu_wait_s: Some(0.25),
            machine_cpu: Some(MachineCpu {
                user_s: 1.0,
                system_s: 0.5,
                idle_s: 0.25,
                steal_s: 0.125,
            }),
        };
        let histograms = Histograms {
            produce_ack: None,
            end_to_end: None,
        };
        let mut out = Vec::new();
        write_table(&mut out, &summary, &histograms).expect("write to a Vec");
        let table = String::from_utf8(out).expect("UTF-8");
        for needle in [
            "produce",
            "broker forwarded requests: n/a",
            "broker CPU:                n/a",
            "note: broker CPU not measured",
            "generator CPU:             0.50 s",
            "waited for a CPU:          generator 0.25 s",
            "machine CPU:               user 1.00 s, system 0.50 s, idle 0.25 s, steal 0.12 s",
        ] {
            assert!(table.contains(needle), "{needle:?} missing from:\n{table}");
        }
        // No consumers: no consume row and no end-to-end row.
        assert!(!table.contains("consume"), "{table}");
        assert!(!table.contains("end-to-end"), "{table}");
    }
}
