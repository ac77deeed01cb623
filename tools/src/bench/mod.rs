//! `weir bench`: a load generator built on the client crate, with a report of throughput,
//! latency percentiles and the broker's cost.
//!
//! [`header`] owns the bytes each message carries, [`schedule`] when and where each message
//! goes, [`load`] the producer and consumer tasks, [`probe`] what is read from the broker's
//! `/proc/<pid>/stat`, `/metrics` and ready file, and [`report`] the table and the JSON. This file
//! holds the grammar of `weir bench`, the checks that need the topic's partition count, and the
//! run: create the topic (unless `--topic`), probe the broker, run the load, probe again, delete
//! the topic (unless `--keep-topic` or `--topic`), report. A run whose consumers saw a loss, a
//! duplicate or a foreign record, or whose deliveries failed, exits with an error after it has
//! reported.

pub mod header;
pub mod load;
pub mod pacer;
pub mod probe;
pub mod report;
pub mod schedule;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::Serialize;
use weir_client::{
    Acks, Admin, ClientConfig, Cluster, FlushPolicy, ProducerConfig, TopicSettings,
    MAX_IN_FLIGHT_PER_PARTITION_LIMIT,
};

use crate::args::{parse_flush, FlushArg};
use header::HEADER_BYTES;
use load::{LoadOutcome, LoadPlan, Progress, Stop};
use report::{BrokerCost, Environment, Histograms, LatencyReport, Report, Summary, Throughput};
use schedule::{Mode, Schedule};

/// The metrics URL used when neither `--metrics-url` nor a `--ready-file` names one.
pub const DEFAULT_METRICS_URL: &str = "http://127.0.0.1:9348/metrics";
/// The most producer tasks.
pub const PRODUCERS_MAX: u32 = 1_024;
/// The most consumer tasks.
pub const CONSUMERS_MAX: u32 = 1_024;
/// The largest `--message-bytes`.
pub const MESSAGE_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// The messages run when neither `--messages` nor `--duration-s` is given.
pub const MESSAGES_DEFAULT: u64 = 100_000;
/// The default `--partition-fetch-bytes-max`: eight 1,000-record batches of 1 KiB records.
pub const PARTITION_FETCH_BYTES_MAX_DEFAULT: u32 = 8 * 1024 * 1024;

/// Default `--pacing-quantum-us`: open-loop producers wake at most 4,000 times a second and
/// send no message more than 250 µs late by their own pacing.
pub const PACING_QUANTUM_US_DEFAULT: u64 = 250;
/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// `--acks`: when the broker answers a produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AcksArg {
    /// Never: a record counts as delivered once sent.
    None,
    /// Once the owning shard appended it (durably, per the topic's flush policy).
    Leader,
}

/// Arguments of `weir bench`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct BenchArgs {
    /// Use this existing topic (neither created nor deleted); without it, the run creates a
    /// fresh `bench-<random>` topic and deletes it afterwards.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["partitions", "flush", "keep_topic"])]
    pub topic: Option<String>,
    /// Keep the topic the run created.
    #[arg(long)]
    pub keep_topic: bool,
    /// Produce nothing: `--consumers` consumers read the existing `--topic` from its first
    /// record to the end it has when the run starts, as fast as they can (a consumer alone, from
    /// the tail cache when the topic fits in it). The topic must hold `weir bench` messages, for
    /// example from a run with `--keep-topic`; end-to-end latency is not measured.
    #[arg(long, requires = "topic",
          conflicts_with_all = ["producers", "messages", "duration_s", "rate", "acks", "mode"])]
    pub read_existing: bool,
    /// The partitions of the topic the run creates [default: 1].
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: Option<u32>,
    /// The flush policy of the topic the run creates: `always`, `interval:<ms>` or `never`
    /// [default: the broker's --default-flush].
    #[arg(long, value_name = "POLICY", value_parser = parse_flush)]
    #[serde(skip)]
    pub flush: Option<FlushArg>,
    /// Producer tasks, each with its own connection and producer.
    #[arg(long, default_value_t = 1, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(PRODUCERS_MAX)))]
    pub producers: u32,
    /// Consumer tasks, assigned partitions round-robin, reading from the start of the run
    /// (0: produce only).
    #[arg(long, default_value_t = 1, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(0..=i64::from(CONSUMERS_MAX)))]
    pub consumers: u32,
    /// Bytes of each message value, including the 24-byte bench header.
    #[arg(long, default_value_t = 1024, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(HEADER_BYTES as i64..=i64::from(MESSAGE_BYTES_MAX)))]
    pub message_bytes: u32,
    /// The largest batch in bytes.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub batch_bytes_max: u64,
    /// How long a batch waits for more records before it is sent.
    #[arg(long, default_value_t = 5, value_name = "MS")]
    pub linger_ms: u64,
    /// The most batches of one partition each producer has in flight (the client's
    /// `max_in_flight_per_partition`, whose default this is; 1 to 5 with `--acks leader`, where
    /// the producer is idempotent; with `--acks none` the producer keeps 1).
    #[arg(long, value_name = "COUNT",
          default_value_t = MAX_IN_FLIGHT_PER_PARTITION_LIMIT as u32,
          value_parser = clap::value_parser!(u32).range(1..=MAX_IN_FLIGHT_PER_PARTITION_LIMIT as i64))]
    pub max_in_flight: u32,
    /// When the broker acknowledges.
    #[arg(long, value_enum, default_value_t = AcksArg::Leader)]
    pub acks: AcksArg,
    /// Messages to send in all [default: 100000 unless --duration-s].
    #[arg(long, value_name = "COUNT", conflicts_with = "duration_s",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Send for this many seconds instead of a number of messages.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_s: Option<u64>,
    /// Open loop: send this many messages per second in all, on a fixed schedule, and measure
    /// latency from each message's intended send time. Without it: closed loop, as fast as the
    /// unacknowledged-message bound allows.
    #[arg(long, value_name = "MSGS_PER_S", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Open loop: the shortest wait of a producer between sends, in microseconds. Each wake-up
    /// sends every message due, so a message goes out at most this late (plus the kernel's
    /// wake-up latency; the lateness counts as latency) and a producer wakes at most
    /// 1,000,000 / this many times a second. Smaller is more exact and costs the generator more
    /// CPU, taken from the broker when they share cores.
    #[arg(long, default_value_t = PACING_QUANTUM_US_DEFAULT, value_name = "MICROS",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub pacing_quantum_us: u64,
    /// The most messages one producer has sent and not yet seen acknowledged.
    #[arg(long, default_value_t = 65_536, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    pub unacked_messages_max: u32,
    /// `pinned`: producer i writes only partition i mod P (needs producers ≤ partitions);
    /// `balanced`: every producer writes every partition in turn.
    #[arg(long, value_enum, default_value_t = Mode::Balanced)]
    pub mode: Mode,
    /// How long consumers wait for missing messages after the producers finish.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub drain_timeout_s: u64,
    /// The most bytes one fetch returns per partition (the consumer's
    /// `partition_fetch_bytes_max`, whose client default of 1 MiB holds a single batch of
    /// 1,000 1 KiB records, so each batch would cost a round trip). The client caps it at what
    /// one response frame carries (16 MiB frames by default).
    #[arg(long, default_value_t = PARTITION_FETCH_BYTES_MAX_DEFAULT, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub partition_fetch_bytes_max: u32,
    /// Also write configuration, environment, summary and percentiles as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The broker's Prometheus endpoint [default: the ready file's metrics address, else
    /// http://127.0.0.1:9348/metrics].
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,
    /// The broker's process id, for its CPU time [default: the ready file's pid; without
    /// either, CPU is not measured].
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// The broker's --ready-file, read for its pid and metrics address.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Threads of the load generator's runtime [default: the cores available].
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub client_threads: Option<u32>,
    /// No progress bar (it is also off when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

impl BenchArgs {
    /// Checks what the grammar alone cannot, given the topic's partition count.
    pub fn check_against(&self, partitions: u32) -> Result<(), String> {
        if self.mode == Mode::Pinned && self.producers > partitions {
            return Err(format!(
                "--mode pinned needs --producers ({}) ≤ the topic's partitions ({partitions})",
                self.producers
            ));
        }
        if self.read_existing && self.consumers == 0 {
            return Err("--read-existing needs at least one consumer".to_string());
        }
        if self.consumers > partitions {
            return Err(format!(
                "--consumers ({}) exceeds the topic's partitions ({partitions}): a consumer would read nothing",
                self.consumers
            ));
        }
        let record_bytes = u64::from(self.message_bytes) + 64;
        if record_bytes > self.batch_bytes_max {
            return Err(format!(
                "--batch-bytes-max ({}) cannot hold one {}-byte message",
                self.batch_bytes_max, self.message_bytes
            ));
        }
        Ok(())
    }

    /// Checks that need no broker; [`BenchArgs::check_against`] with the partitions the run
    /// will create, when they are known.
    pub fn check(&self) -> Result<(), String> {
        match (self.topic.is_some(), self.partitions) {
            (false, partitions) => self.check_against(partitions.unwrap_or(1)),
            (true, _) => Ok(()),
        }
    }

    /// When the producers stop.
    pub fn stop(&self) -> Stop {
        match (self.messages, self.duration_s) {
            (Some(messages), _) => Stop::Messages(messages),
            (None, Some(seconds)) => Stop::Duration(Duration::from_secs(seconds)),
            (None, None) => Stop::Messages(MESSAGES_DEFAULT),
        }
    }

    /// The threads of the generator's runtime.
    pub fn runtime_threads(&self) -> usize {
        self.client_threads
            .map_or_else(available_cores, |threads| threads as usize)
    }

    fn producer_config(&self) -> ProducerConfig {
        let defaults = ProducerConfig::default();
        ProducerConfig {
            linger_ms: self.linger_ms,
            batch_bytes_max: self.batch_bytes_max,
            buffer_bytes_max: defaults.buffer_bytes_max.max(self.batch_bytes_max * 4),
            request_bytes_max: defaults.request_bytes_max.max(self.batch_bytes_max),
            acks: match self.acks {
                AcksArg::None => Acks::None,
                AcksArg::Leader => Acks::Leader,
            },
            max_in_flight_per_partition: self.max_in_flight as usize,
            ..defaults
        }
    }
}

/// The cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The name of a fresh topic: `bench-` and 16 random hex digits (std's per-process random
/// hash keys, so no randomness crate is needed).
pub fn fresh_topic_name() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos()),
    );
    format!("bench-{:016x}", hasher.finish())
}

/// The client's flush policy for `--flush`.
pub fn flush_policy(flush: FlushArg) -> Result<FlushPolicy> {
    Ok(match flush {
        FlushArg::Always => FlushPolicy::Always,
        FlushArg::Never => FlushPolicy::Never,
        FlushArg::IntervalMs(milliseconds) => FlushPolicy::Interval {
            interval_ms: u32::try_from(milliseconds)
                .map_err(|_| anyhow!("--flush interval:{milliseconds} is too long"))?,
        },
    })
}

fn describe_flush(policy: Option<FlushPolicy>) -> String {
    match policy {
        Some(FlushPolicy::Always) => "always".to_string(),
        Some(FlushPolicy::Interval { interval_ms }) => format!("interval:{interval_ms}"),
        Some(FlushPolicy::Never) => "never".to_string(),
        None => "unknown".to_string(),
    }
}

/// The configuration recorded in the JSON report.
#[derive(Debug, Serialize)]
struct RunConfig<'a> {
    broker: &'a str,
    topic: &'a str,
    topic_created: bool,
    partitions: u32,
    flush: String,
    client_threads: usize,
    /// The command line's options as parsed.
    options: &'a BenchArgs,
}

/// Where the broker's figures come from.
struct Probes {
    metrics_url: String,
    pid: Option<u32>,
    notes: Vec<String>,
}

fn resolve_probes(args: &BenchArgs) -> Probes {
    let mut notes = Vec::new();
    let ready = args.ready_file.as_deref().map(probe::read_ready_file);
    let ready = match ready {
        Some(Ok(ready)) => Some(ready),
        Some(Err(error)) => {
            notes.push(format!("{error}"));
            None
        }
        None => None,
    };
    let metrics_url = args
        .metrics_url
        .clone()
        .or_else(|| {
            ready
                .as_ref()
                .and_then(|ready| ready.metrics.as_ref())
                .map(|address| format!("http://{address}/metrics"))
        })
        .unwrap_or_else(|| DEFAULT_METRICS_URL.to_string());
    let pid = args.broker_pid.or(ready.as_ref().map(|ready| ready.pid));
    if pid.is_none() {
        notes.push("broker CPU not measured: give --broker-pid or --ready-file".to_string());
    }
    Probes {
        metrics_url,
        pid,
        notes,
    }
}

/// The broker's counters at one moment.
struct BrokerSample {
    forwarded: Option<f64>,
    cpu_ticks: Option<u64>,
    run_queue_wait_ns: Option<u64>,
}

async fn sample_broker(probes: &Probes, notes: &mut Vec<String>) -> BrokerSample {
    let forwarded = match probe::scrape(&probes.metrics_url).await {
        Ok(page) => match probe::sum_metric(&page, "weir_forwarded_requests_total") {
            Ok(Some(value)) => Some(value),
            Ok(None) => {
                notes.push(format!(
                    "{} has no weir_forwarded_requests_total",
                    probes.metrics_url
                ));
                None
            }
            Err(error) => {
                notes.push(error.to_string());
                None
            }
        },
        Err(error) => {
            notes.push(error.to_string());
            None
        }
    };
    let cpu_ticks = match probes.pid.map(probe::read_cpu_ticks) {
        Some(Ok(ticks)) => Some(ticks.total()),
        Some(Err(error)) => {
            notes.push(error.to_string());
            None
        }
        None => None,
    };
    let run_queue_wait_ns = match probes.pid.map(probe::read_run_queue_wait_ns) {
        Some(Ok(nanoseconds)) => Some(nanoseconds),
        Some(Err(error)) => {
            notes.push(error.to_string());
            None
        }
        None => None,
    };
    BrokerSample {
        forwarded,
        cpu_ticks,
        run_queue_wait_ns,
    }
}

/// The running kernel's release (`uname -r`), or `unknown`.
pub fn kernel_release() -> String {
    if let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        return release.trim().to_string();
    }
    std::process::Command::new("uname")
        .arg("-r")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map_or_else(
            || "unknown".to_string(),
            |release| release.trim().to_string(),
        )
}

/// The current UTC time in RFC 3339, or `unknown`.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Where [`run`] prints its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableOutput {
    /// To stdout: `weir bench` itself.
    Stdout,
    /// Nowhere: a caller (`weir usl sweep`) that reports the returned [`Summary`] its own way.
    Omit,
}

/// Runs `weir bench` against `broker`, prints the table to `table` and, with `--json`, writes
/// the report; returns the summary. A run whose deliveries failed or whose consumers saw a
/// loss, duplicate or foreign record returns an error (after it has reported).
pub async fn run(broker: &str, args: BenchArgs, table: TableOutput) -> Result<Summary> {
    args.check().map_err(|reason| anyhow!(reason))?;
    let date = now_rfc3339();
    let client = ClientConfig {
        client_id: "weir-bench-admin".to_string(),
        ..ClientConfig::new(broker.to_string())
    };
    let admin = Admin::new(Cluster::connect(client).await?);
    let (topic, created) = match &args.topic {
        Some(topic) => (topic.clone(), false),
        None => {
            let topic = fresh_topic_name();
            let mut settings = TopicSettings::new().partitions(args.partitions.unwrap_or(1));
            if let Some(flush) = args.flush {
                settings = settings.flush(flush_policy(flush)?);
            }
            admin
                .create_topic(&topic, &settings)
                .await
                .with_context(|| format!("cannot create topic \"{topic}\""))?;
            (topic, true)
        }
    };
    let outcome = run_on_topic(broker, &args, &admin, &topic, created, date, table).await;
    if created && !args.keep_topic {
        if let Err(error) = admin.delete_topic(&topic).await {
            eprintln!("warning: cannot delete topic \"{topic}\": {error}");
        }
    } else if created {
        eprintln!("kept topic \"{topic}\"");
    }
    outcome
}

async fn run_on_topic(
    broker: &str,
    args: &BenchArgs,
    admin: &Admin,
    topic: &str,
    created: bool,
    date: String,
    table: TableOutput,
) -> Result<Summary> {
    let description = admin
        .describe_topic(topic)
        .await
        .with_context(|| format!("cannot describe topic \"{topic}\""))?;
    let partitions =
        u32::try_from(description.partitions.len()).context("the partition count fits u32")?;
    args.check_against(partitions)
        .map_err(|reason| anyhow!(reason))?;
    let keys = schedule::keys_for_partitions(partitions).map_err(|reason| anyhow!(reason))?;
    let flush = describe_flush(description.config.as_ref().map(|config| config.flush));
    let plan = LoadPlan {
        broker: broker.to_string(),
        topic: topic.to_string(),
        partitions,
        producers: if args.read_existing {
            0
        } else {
            args.producers
        },
        consumers: args.consumers,
        message_bytes: args.message_bytes as usize,
        producer_config: args.producer_config(),
        stop: args.stop(),
        schedule: args.rate.and_then(Schedule::new),
        pacing_quantum: Duration::from_micros(args.pacing_quantum_us),
        mode: args.mode,
        keys: Arc::new(keys),
        unacked_messages_max: args.unacked_messages_max as usize,
        drain_timeout: Duration::from_secs(args.drain_timeout_s),
        partition_fetch_bytes_max: args.partition_fetch_bytes_max,
    };

    let probes = resolve_probes(args);
    let mut notes = probes.notes.clone();
    let before = sample_broker(&probes, &mut notes).await;
    let progress = Arc::new(Progress::default());
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let (stop_ticker, ticker_stopped) = tokio::sync::oneshot::channel();
    let ticker = show_progress.then(|| {
        tokio::spawn(show_progress_bar(
            plan.stop,
            progress.clone(),
            ticker_stopped,
        ))
    });
    let generator_before = probe::read_cpu_ticks(std::process::id()).ok();
    let generator_wait_before = probe::read_run_queue_wait_ns(std::process::id()).ok();
    let machine_before = probe::read_machine_ticks().ok();
    let started = Instant::now();
    let outcome = if args.read_existing {
        load::read_existing(&plan, PRODUCERS_MAX, progress).await
    } else {
        load::run(&plan, progress).await
    };
    let wall = started.elapsed();
    let generator_after = probe::read_cpu_ticks(std::process::id()).ok();
    let generator_wait_after = probe::read_run_queue_wait_ns(std::process::id()).ok();
    let machine_after = probe::read_machine_ticks().ok();
    let _ = stop_ticker.send(());
    if let Some(ticker) = ticker {
        let _ = ticker.await;
    }
    let outcome = outcome?;
    let after = sample_broker(&probes, &mut notes).await;
    let generator_cpu_s = generator_before
        .zip(generator_after)
        .map(|(before, after)| ticks_to_seconds(after.total().saturating_sub(before.total())));

    let mut summary = summarise(&plan, &outcome, &before, &after, notes);
    summary.generator_cpu_s = generator_cpu_s;
    summary.machine_cpu = machine_before.zip(machine_after).map(|(before, after)| {
        let grown = after.since(&before);
        report::MachineCpu {
            user_s: ticks_to_seconds(grown.user),
            system_s: ticks_to_seconds(grown.system),
            idle_s: ticks_to_seconds(grown.idle),
            steal_s: ticks_to_seconds(grown.steal),
        }
    });
    summary.generator_cpu_wait_s = generator_wait_before
        .zip(generator_wait_after)
        .map(|(before, after)| after.saturating_sub(before) as f64 / 1e9);
    let histograms = Histograms {
        produce_ack: LatencyReport::from_histogram(&outcome.produce.latency_ns),
        end_to_end: outcome
            .consume
            .as_ref()
            .and_then(|consume| LatencyReport::from_histogram(&consume.latency_ns)),
    };
    if table == TableOutput::Stdout {
        let mut stdout = std::io::stdout().lock();
        report::write_table(&mut stdout, &summary, &histograms)?;
    }
    if let Some(path) = &args.json {
        let document = Report {
            config: RunConfig {
                broker,
                topic,
                topic_created: created,
                partitions,
                flush: flush.clone(),
                client_threads: args.runtime_threads(),
                options: args,
            },
            environment: Environment {
                cores: available_cores(),
                kernel: kernel_release(),
                topic_flush: flush,
                date,
            },
            summary: summary.clone(),
            histograms,
        };
        let text = serde_json::to_string_pretty(&document)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!("ran {:.3} s on topic \"{topic}\"", wall.as_secs_f64());
    if let Some(error) = &outcome.produce.first_error {
        bail!(
            "{} deliveries failed; the first: {error}",
            outcome.produce.failed
        );
    }
    if let Some(consume) = &outcome.consume {
        if !consume.is_exact() {
            bail!(
                "consumers did not receive every message exactly once in order: {} lost, {} duplicated, {} foreign",
                consume.lost,
                consume.duplicated,
                consume.foreign
            );
        }
    }
    Ok(summary)
}

fn summarise(
    plan: &LoadPlan,
    outcome: &LoadOutcome,
    before: &BrokerSample,
    after: &BrokerSample,
    notes: Vec<String>,
) -> Summary {
    let produce = Throughput::new(
        outcome.produce.acknowledged,
        plan.message_bytes,
        outcome.produce.elapsed.as_secs_f64(),
    );
    let consume = outcome.consume.as_ref().map(|consume| {
        Throughput::new(
            consume.in_order,
            plan.message_bytes,
            consume.elapsed.as_secs_f64(),
        )
    });
    let verification = outcome
        .consume
        .as_ref()
        .map(|consume| report::Verification {
            received: consume.received,
            lost: consume.lost,
            duplicated: consume.duplicated,
            foreign: consume.foreign,
        });
    let forwarded_requests_delta = before
        .forwarded
        .zip(after.forwarded)
        .map(|(before, after)| after - before);
    let cpu_s = before
        .cpu_ticks
        .zip(after.cpu_ticks)
        .map(|(before, after)| ticks_to_seconds(after.saturating_sub(before)));
    // Records the broker handled: produced, or read when nothing was produced.
    let records = match &outcome.consume {
        Some(consume) if outcome.produce.sent == 0 => consume.received,
        _ => outcome.produce.acknowledged,
    };
    let cpu_wait_s = before
        .run_queue_wait_ns
        .zip(after.run_queue_wait_ns)
        .map(|(before, after)| after.saturating_sub(before) as f64 / 1e9);
    let cpu_s_per_million_records = cpu_s
        .filter(|_| records > 0)
        .map(|seconds| seconds / records as f64 * 1e6);
    Summary {
        sent: outcome.produce.sent,
        failed: outcome.produce.failed,
        produce,
        consume,
        verification,
        broker: BrokerCost {
            forwarded_requests_delta,
            cpu_s,
            cpu_s_per_million_records,
            cpu_wait_s,
            notes,
        },
        generator_cpu_s: None,
        generator_cpu_wait_s: None,
        machine_cpu: None,
    }
}

fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / probe::clock_ticks_per_second() as f64
}

/// Redraws the progress bar every [`PROGRESS_INTERVAL`] until `stopped` fires, then leaves it
/// at its final state.
async fn show_progress_bar(
    stop: Stop,
    progress: Arc<Progress>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let (bar, template) = match stop {
        Stop::Messages(total) => (
            indicatif::ProgressBar::new(total),
            "{elapsed_precise} [{bar:30}] {pos}/{len} acked  {msg}",
        ),
        Stop::Duration(_) => (
            indicatif::ProgressBar::new_spinner(),
            "{elapsed_precise} {spinner} {pos} acked  {msg}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
    let mut last = (Instant::now(), 0u64);
    loop {
        let finished = tokio::select! {
            _ = interval.tick() => false,
            _ = &mut stopped => true,
        };
        let acknowledged = progress.acknowledged.load(Ordering::Relaxed);
        let consumed = progress.consumed.load(Ordering::Relaxed);
        let seconds = last.0.elapsed().as_secs_f64().max(1e-3);
        let rate = acknowledged.saturating_sub(last.1) as f64 / seconds;
        last = (Instant::now(), acknowledged);
        bar.set_position(acknowledged);
        bar.set_message(format!("{rate:>10.0} msg/s  consumed {consumed}"));
        if finished {
            bar.abandon();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        let cli = Cli::try_parse_from(["weir", "bench"].into_iter().chain(args.iter().copied()))?;
        match cli.command {
            Command::Bench(bench) => Ok(*bench),
            other => panic!("expected bench, got {other:?}"),
        }
    }

    #[test]
    fn max_in_flight_goes_to_the_producer_and_is_bounded() {
        let args = parse(&["--max-in-flight", "1"]).expect("valid");
        assert_eq!(args.producer_config().max_in_flight_per_partition, 1);
        assert!(parse(&["--max-in-flight", "0"]).is_err());
        assert!(parse(&["--max-in-flight", "6"]).is_err());
    }

    #[test]
    fn defaults_are_a_fresh_single_partition_closed_loop() {
        let args = parse(&[]).expect("valid");
        assert_eq!(args.topic, None);
        assert_eq!(args.partitions, None);
        assert_eq!(args.producers, 1);
        assert_eq!(args.consumers, 1);
        assert_eq!(args.message_bytes, 1024);
        assert_eq!(args.batch_bytes_max, 1024 * 1024);
        assert_eq!(args.acks, AcksArg::Leader);
        assert_eq!(
            args.producer_config().max_in_flight_per_partition,
            ProducerConfig::default().max_in_flight_per_partition,
            "the client's default"
        );
        assert_eq!(args.mode, Mode::Balanced);
        assert_eq!(args.rate, None);
        assert_eq!(args.stop(), Stop::Messages(MESSAGES_DEFAULT));
        assert_eq!(args.metrics_url, None);
        assert!(args.check().is_ok());
    }

    #[test]
    fn every_option_parses() {
        let args = parse(&[
            "--partitions",
            "4",
            "--flush",
            "interval:10",
            "--producers",
            "2",
            "--consumers",
            "0",
            "--message-bytes",
            "100",
            "--batch-bytes-max",
            "65536",
            "--linger-ms",
            "1",
            "--acks",
            "none",
            "--duration-s",
            "5",
            "--rate",
            "1000",
            "--mode",
            "pinned",
            "--json",
            "out.json",
            "--metrics-url",
            "http://127.0.0.1:1/metrics",
            "--broker-pid",
            "42",
            "--ready-file",
            "ready.toml",
            "--quiet",
            "--keep-topic",
            "--unacked-messages-max",
            "10",
            "--client-threads",
            "3",
        ])
        .expect("valid");
        assert_eq!(args.partitions, Some(4));
        assert_eq!(args.flush, Some(FlushArg::IntervalMs(10)));
        assert_eq!((args.producers, args.consumers), (2, 0));
        assert_eq!(args.message_bytes, 100);
        assert_eq!(args.acks, AcksArg::None);
        assert_eq!(args.stop(), Stop::Duration(Duration::from_secs(5)));
        assert_eq!(args.rate, Some(1000));
        assert_eq!(args.mode, Mode::Pinned);
        assert_eq!(args.broker_pid, Some(42));
        assert_eq!(args.runtime_threads(), 3);
        assert!(args.quiet && args.keep_topic);
        assert!(args.check().is_ok());
    }

    #[test]
    fn conflicting_or_out_of_range_options_are_rejected_by_the_grammar() {
        for args in [
            &["--messages", "10", "--duration-s", "5"][..],
            &["--topic", "t", "--partitions", "2"],
            &["--topic", "t", "--flush", "never"],
            &["--topic", "t", "--keep-topic"],
            &["--message-bytes", "23"],
            &["--producers", "0"],
            &["--producers", "1025"],
            &["--partitions", "0"],
            &["--messages", "0"],
            &["--rate", "0"],
            &["--acks", "all"],
            &["--mode", "random"],
            &["--flush", "sometimes"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be rejected");
        }
    }

    #[test]
    fn pinned_needs_a_partition_per_producer() {
        let args = parse(&["--mode", "pinned", "--producers", "3", "--partitions", "2"])
            .expect("the grammar accepts it");
        assert!(args.check().is_err());
        assert!(args.check_against(3).is_ok());
        // Without --partitions the run creates one partition.
        let args = parse(&["--mode", "pinned", "--producers", "2"]).expect("grammar");
        assert!(args.check().is_err());
        // An existing topic is checked once its partitions are known.
        let args =
            parse(&["--mode", "pinned", "--producers", "3", "--topic", "t"]).expect("grammar");
        assert!(args.check().is_ok());
        assert!(args.check_against(2).is_err());
        // Balanced spreads any number of producers.
        let args =
            parse(&["--producers", "8", "--partitions", "2", "--consumers", "2"]).expect("grammar");
        assert!(args.check().is_ok());
    }

    #[test]
    fn consumers_need_a_partition_each_and_batches_must_hold_a_message() {
        let args = parse(&["--consumers", "3", "--partitions", "2"]).expect("grammar");
        assert!(args.check().is_err());
        let args =
            parse(&["--message-bytes", "4096", "--batch-bytes-max", "4096"]).expect("grammar");
        assert!(args.check().is_err());
    }

    #[test]
    fn fresh_topic_names_differ() {
        let first = fresh_topic_name();
        let second = fresh_topic_name();
        assert!(
            first.starts_with("bench-") && first.len() == "bench-".len() + 16,
            "{first}"
        );
        assert_ne!(first, second);
    }
}
