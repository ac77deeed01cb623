//! `weir usl sweep`: run `weir bench` at several levels of concurrency N, repeatedly, and fit the
//! Universal Scalability Law to what it measured.
//!
//! N is one of three things (`--over`):
//!
//! - `producers`: N producer tasks in balanced mode (each writes every partition in turn) on a
//!   topic with a fixed partition count (`--partitions`, by default the largest N), against the
//!   running broker named by `--broker`.
//! - `partitions`: a topic of N partitions with N producers, pinned one per partition, against the
//!   running broker. Producers grow with partitions on purpose: with a fixed producer count a
//!   single producer would be the bottleneck at small N and the sweep would measure the client.
//! - `shards`: for each N a fresh `weir-broker --cores N` child process (ephemeral ports, a
//!   temporary data directory, `--ready-file`), a topic of N × `--partitions-per-shard`
//!   partitions with one pinned producer per partition, then SIGTERM. The broker places
//!   partitions on shards by hash, so the sweep creates each run's topic itself and creates it
//!   again (a new topic id, so a new placement), at most [`PLACEMENT_ATTEMPTS_MAX`] times, until
//!   every shard owns a partition: a level where some shard idles would not measure N shards.
//!
//! Each (N, repeat) is one in-process call of [`crate::bench::run`] on a fresh topic; a failed
//! run (failed deliveries, or consumers that saw a loss) ends the sweep with its error. The
//! throughput of a run is its acknowledged records per second. Every repeat is a point of the
//! fit (so the fit weighs each N by its repeats, and its residuals show the noise), and each N is
//! summarised by its mean, minimum, maximum, the spread `(max − min) / mean`, and the means of the
//! broker's CPU per million records and forwarded-request delta.
//!
//! Invariants: the levels are distinct and at least [`DISTINCT_CONCURRENCY_MIN`]; every level's
//! bench options pass [`BenchArgs::check`] before the first run, so a sweep does not fail half-way
//! on an option; a broker child never outlives its [`BrokerChild`] (drop sends SIGKILL and reaps
//! it) and its temporary directory is removed with it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::Serialize;
use weir_client::{Admin, ClientConfig, Cluster, TopicSettings};

use super::fit::{self, Point, UslFit, DISTINCT_CONCURRENCY_MIN};
use crate::args::{parse_flush, FlushArg};
use crate::bench::header::HEADER_BYTES;
use crate::bench::report::Summary;
use crate::bench::schedule::Mode;
use crate::bench::{self, probe, AcksArg, BenchArgs, TableOutput, MESSAGE_BYTES_MAX};

/// The largest N of any sweep (the bench's producer maximum).
pub const LEVEL_MAX: u32 = bench::PRODUCERS_MAX;
/// The largest N of `--over shards`.
pub const SHARDS_MAX: u32 = 256;
/// The most levels in one sweep.
pub const LEVELS_MAX: usize = 64;
/// The most repeats per level.
pub const REPEATS_MAX: u32 = 100;
/// The most partitions a sweep's topic may have (the broker's default topic maximum).
pub const PARTITIONS_MAX: u32 = 4_096;
/// The broker binary's file name, looked up next to `weir` and then on `PATH`.
pub const BROKER_BINARY: &str = "weir-broker";
/// How long a started broker may take to write its ready file.
pub const BROKER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker may take to exit after SIGTERM before it is killed.
pub const BROKER_EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// `weir bench`'s default `--unacked-messages-max`, used for every run.
const UNACKED_MESSAGES_MAX: u32 = 65_536;
/// `weir bench`'s default `--drain-timeout-s`, used for every run.
const DRAIN_TIMEOUT_S: u64 = 30;
/// How many topics `--over shards` creates, at most, looking for one whose partitions cover
/// every shard.
pub const PLACEMENT_ATTEMPTS_MAX: u32 = 32;
/// How often a broker's ready file and exit are polled for.
const BROKER_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bytes of a failed broker's stderr quoted in the error.
const BROKER_LOG_TAIL_BYTES: usize = 4 * 1024;

/// What N counts in a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// Broker shards (`weir-broker --cores N`), each sweep level on a fresh broker.
    Shards,
    /// Topic partitions, one pinned producer each.
    Partitions,
    /// Producers, balanced over a fixed number of partitions.
    Producers,
}

/// Arguments of `weir usl sweep`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct UslSweepArgs {
    /// What N is: `producers` (balanced over a fixed partition count, against --broker),
    /// `partitions` (N partitions with one pinned producer each, against --broker) or `shards`
    /// (a fresh `weir-broker --cores N` per level, N × --partitions-per-shard partitions with
    /// one pinned producer each).
    #[arg(long, value_enum)]
    pub over: Dimension,
    /// The levels of N, comma-separated, distinct, at least three (e.g. 1,2,4,8).
    #[arg(long, required = true, value_name = "N,...", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..=i64::from(LEVEL_MAX)))]
    pub values: Vec<u32>,
    /// Bench runs per level; each is a point of the fit.
    #[arg(long, default_value_t = 3, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(REPEATS_MAX)))]
    pub repeats: u32,
    /// `--over producers` only: the topic's partitions [default: the largest N].
    #[arg(long, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(PARTITIONS_MAX)))]
    pub partitions: Option<u32>,
    /// `--over shards` only: partitions per shard; each run's topic is recreated until every
    /// shard owns at least one of them.
    #[arg(long, default_value_t = 2, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub partitions_per_shard: u32,
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
    /// The flush policy of each run's topic: `always`, `interval:<ms>` or `never`
    /// [default: the broker's --default-flush].
    #[arg(long, value_name = "POLICY", value_parser = parse_flush)]
    #[serde(skip)]
    pub flush: Option<FlushArg>,
    /// Messages per run, in all [default: 100000 unless --duration-s].
    #[arg(long, value_name = "COUNT", conflicts_with = "duration_s",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Send for this many seconds per run instead of a number of messages.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_s: Option<u64>,
    /// When the broker acknowledges.
    #[arg(long, value_enum, default_value_t = AcksArg::Leader)]
    pub acks: AcksArg,
    /// Consumer tasks per run (0: produce only); at most the partitions of the smallest level.
    #[arg(long, default_value_t = 0, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(0..=i64::from(bench::CONSUMERS_MAX)))]
    pub consumers: u32,
    /// `--over shards`: the broker to start [default: `weir-broker` next to this executable,
    /// else on PATH].
    #[arg(long, value_name = "PATH")]
    pub broker_bin: Option<PathBuf>,
    /// `--over producers|partitions`: the running broker's --ready-file, for its CPU and
    /// metrics address.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// `--over producers|partitions`: the running broker's process id, for its CPU.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// `--over producers|partitions`: the running broker's Prometheus endpoint
    /// [default: from --ready-file, else http://127.0.0.1:9348/metrics].
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,
    /// Also draw the points and the fitted curve into this SVG file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Also write the configuration, environment, every run, each level's summary and the fit
    /// as JSON into this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// How one level of a sweep runs the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LevelPlan {
    /// N.
    pub level: u32,
    /// The partitions of each run's topic.
    pub partitions: u32,
    /// The producer tasks.
    pub producers: u32,
    /// How producers spread over partitions.
    pub mode: Mode,
    /// `--over shards`: the shards of the broker started for this level.
    pub shards: Option<u32>,
}

impl UslSweepArgs {
    /// How level `level` runs: its partitions, producers, placement and shards.
    pub fn level_plan(&self, level: u32) -> LevelPlan {
        match self.over {
            Dimension::Producers => LevelPlan {
                level,
                partitions: self.producer_sweep_partitions(),
                producers: level,
                mode: Mode::Balanced,
                shards: None,
            },
            Dimension::Partitions => LevelPlan {
                level,
                partitions: level,
                producers: level,
                mode: Mode::Pinned,
                shards: None,
            },
            Dimension::Shards => {
                let partitions = level.saturating_mul(self.partitions_per_shard);
                LevelPlan {
                    level,
                    partitions,
                    producers: partitions,
                    mode: Mode::Pinned,
                    shards: Some(level),
                }
            }
        }
    }

    fn producer_sweep_partitions(&self) -> u32 {
        self.partitions
            .unwrap_or_else(|| self.values.iter().copied().max().unwrap_or(1))
    }

    /// The `weir bench` options of one run at `plan`; `ready_file` is the started broker's
    /// (`--over shards`), else the sweep's own `--ready-file`.
    pub fn bench_args(&self, plan: &LevelPlan, ready_file: Option<&Path>) -> BenchArgs {
        let started_broker = plan.shards.is_some();
        BenchArgs {
            topic: None,
            keep_topic: false,
            read_existing: false,
            partitions: Some(plan.partitions),
            flush: self.flush,
            producers: plan.producers,
            consumers: self.consumers,
            message_bytes: self.message_bytes,
            batch_bytes_max: self.batch_bytes_max,
            linger_ms: self.linger_ms,
            max_in_flight: weir_client::ProducerConfig::default().max_in_flight_per_partition
                as u32,
            acks: self.acks,
            messages: self.messages,
            duration_s: self.duration_s,
            rate: None,
            pacing_quantum_us: bench::PACING_QUANTUM_US_DEFAULT,
            unacked_messages_max: UNACKED_MESSAGES_MAX,
            mode: plan.mode,
            drain_timeout_s: DRAIN_TIMEOUT_S,
            partition_fetch_bytes_max: bench::PARTITION_FETCH_BYTES_MAX_DEFAULT,
            json: None,
            metrics_url: if started_broker {
                None
            } else {
                self.metrics_url.clone()
            },
            broker_pid: if started_broker {
                None
            } else {
                self.broker_pid
            },
            ready_file: ready_file
                .map(Path::to_path_buf)
                .or_else(|| self.ready_file.clone()),
            client_threads: None,
            quiet: true,
        }
    }

    /// Checks the whole sweep before anything runs: the levels, the options that belong to one
    /// dimension only, and every level's bench options. Returns the levels' plans in order.
    pub fn check(&self) -> Result<Vec<LevelPlan>, String> {
        let mut sorted = self.values.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.values.len() {
            return Err(format!(
                "--values {:?} repeats a level; give each N once and use --repeats",
                self.values
            ));
        }
        if sorted.len() < DISTINCT_CONCURRENCY_MIN {
            return Err(format!(
                "--values needs at least {DISTINCT_CONCURRENCY_MIN} levels for the three-parameter fit, got {}",
                sorted.len()
            ));
        }
        if sorted.len() > LEVELS_MAX {
            return Err(format!(
                "--values has {} levels; at most {LEVELS_MAX}",
                sorted.len()
            ));
        }
        let running_broker_options =
            self.ready_file.is_some() || self.broker_pid.is_some() || self.metrics_url.is_some();
        match self.over {
            Dimension::Shards => {
                if running_broker_options {
                    return Err("--over shards starts its own brokers: --ready-file, --broker-pid and --metrics-url belong to --over producers|partitions".to_string());
                }
                if self.partitions.is_some() {
                    return Err("--partitions belongs to --over producers; --over shards uses --partitions-per-shard".to_string());
                }
                if let Some(&level) = sorted.iter().find(|&&level| level > SHARDS_MAX) {
                    return Err(format!(
                        "--over shards: {level} shards is more than {SHARDS_MAX}"
                    ));
                }
            }
            Dimension::Partitions => {
                if self.partitions.is_some() {
                    return Err("--over partitions sets the partitions to N; --partitions belongs to --over producers".to_string());
                }
            }
            Dimension::Producers => {}
        }
        if self.broker_bin.is_some() && self.over != Dimension::Shards {
            return Err("--broker-bin belongs to --over shards".to_string());
        }
        let mut plans = Vec::with_capacity(self.values.len());
        for &level in &self.values {
            let plan = self.level_plan(level);
            if plan.partitions > PARTITIONS_MAX {
                return Err(format!(
                    "N = {level} needs {} partitions; at most {PARTITIONS_MAX}",
                    plan.partitions
                ));
            }
            self.bench_args(&plan, None)
                .check()
                .map_err(|reason| format!("at N = {level}: {reason}"))?;
            plans.push(plan);
        }
        Ok(plans)
    }
}

/// One bench run of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    /// N.
    pub level: u32,
    /// Which repeat at this N, from 1.
    pub repeat: u32,
    /// Acknowledged records per second.
    pub records_per_s: f64,
    /// Produced value megabytes (10⁶ bytes) per second.
    pub megabytes_per_s: f64,
    /// Acknowledged records.
    pub records: u64,
    /// The produce side's wall time, in seconds.
    pub seconds: f64,
    /// The broker's CPU seconds per million records, when its pid was known.
    pub cpu_s_per_million_records: Option<f64>,
    /// The growth of `weir_forwarded_requests_total` over the run, when scraped.
    pub forwarded_requests_delta: Option<f64>,
    /// Why a broker figure is missing, if one is.
    pub notes: Vec<String>,
}

impl Measurement {
    /// The measurement of repeat `repeat` at `level` from the bench's summary.
    pub fn from_summary(level: u32, repeat: u32, summary: &Summary) -> Measurement {
        Measurement {
            level,
            repeat,
            records_per_s: summary.produce.records_per_s,
            megabytes_per_s: summary.produce.megabytes_per_s,
            records: summary.produce.messages,
            seconds: summary.produce.seconds,
            cpu_s_per_million_records: summary.broker.cpu_s_per_million_records,
            forwarded_requests_delta: summary.broker.forwarded_requests_delta,
            notes: summary.broker.notes.clone(),
        }
    }
}

/// One level of a sweep, summarised over its repeats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelSummary {
    /// N.
    pub level: u32,
    /// The runs at this N.
    pub repeats: usize,
    /// The mean records per second.
    pub mean_records_per_s: f64,
    /// The lowest records per second.
    pub min_records_per_s: f64,
    /// The highest records per second.
    pub max_records_per_s: f64,
    /// `(max − min) / mean`, in percent: how far the repeats disagree.
    pub spread_percent: f64,
    /// The mean broker CPU seconds per million records over the runs that measured it.
    pub cpu_s_per_million_records: Option<f64>,
    /// The mean forwarded-request delta over the runs that measured it.
    pub forwarded_requests_delta: Option<f64>,
}

/// The fit's points: every run, N against its records per second, in run order.
pub fn fit_points(measurements: &[Measurement]) -> Vec<Point> {
    measurements
        .iter()
        .map(|measurement| Point {
            concurrency: measurement.level,
            throughput: measurement.records_per_s,
        })
        .collect()
}

fn mean_of_present(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.flatten().collect();
    (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
}

/// Summarises `measurements` per level, in the order of `levels`; a level with no measurement
/// is left out.
pub fn summarise_levels(levels: &[u32], measurements: &[Measurement]) -> Vec<LevelSummary> {
    levels
        .iter()
        .filter_map(|&level| {
            let runs: Vec<&Measurement> = measurements
                .iter()
                .filter(|measurement| measurement.level == level)
                .collect();
            if runs.is_empty() {
                return None;
            }
            let rates: Vec<f64> = runs.iter().map(|run| run.records_per_s).collect();
            let mean = rates.iter().sum::<f64>() / rates.len() as f64;
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Some(LevelSummary {
                level,
                repeats: runs.len(),
                mean_records_per_s: mean,
                min_records_per_s: min,
                max_records_per_s: max,
                spread_percent: if mean > 0.0 {
                    100.0 * (max - min) / mean
                } else {
                    0.0
                },
                cpu_s_per_million_records: mean_of_present(
                    runs.iter().map(|run| run.cpu_s_per_million_records),
                ),
                forwarded_requests_delta: mean_of_present(
                    runs.iter().map(|run| run.forwarded_requests_delta),
                ),
            })
        })
        .collect()
}

/// Notes about what a sweep measures on this machine.
pub fn environment_notes(over: Dimension, levels: &[u32], cores: usize) -> Vec<String> {
    let mut notes = Vec::new();
    let level_max = levels.iter().copied().max().unwrap_or(1);
    if over == Dimension::Shards && level_max as usize > cores {
        notes.push(format!(
            "this machine has {cores} cores: at N > {cores} shards share cores (and share them with the load generator), so those levels measure oversubscription, not more parallelism"
        ));
    }
    if cores <= 2 {
        notes.push(format!(
            "the load generator and the broker share this machine's {cores} cores: the sweep measures the machine, not Weir's scalability alone"
        ));
    }
    notes
}

/// Writes the per-level table: mean throughput, its range and spread, and the broker's cost.
pub fn write_levels(out: &mut impl Write, levels: &[LevelSummary]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>6}  {:>7}  {:>14}  {:>14}  {:>14}  {:>7}  {:>11}  {:>9}",
        "N",
        "repeats",
        "mean rec/s",
        "min rec/s",
        "max rec/s",
        "spread",
        "CPU s/M rec",
        "forwarded"
    )?;
    for level in levels {
        let cpu = level
            .cpu_s_per_million_records
            .map_or_else(|| "-".to_string(), |cpu| format!("{cpu:.3}"));
        let forwarded = level
            .forwarded_requests_delta
            .map_or_else(|| "-".to_string(), |forwarded| format!("{forwarded:.0}"));
        writeln!(
            out,
            "{:>6}  {:>7}  {:>14.0}  {:>14.0}  {:>14.0}  {:>6.1}%  {:>11}  {:>9}",
            level.level,
            level.repeats,
            level.mean_records_per_s,
            level.min_records_per_s,
            level.max_records_per_s,
            level.spread_percent,
            cpu,
            forwarded
        )?;
    }
    Ok(())
}

/// The sweep's configuration in the JSON report.
#[derive(Debug, Serialize)]
struct SweepConfig<'a> {
    /// `--broker`, or `started` for `--over shards`.
    broker: &'a str,
    flush: String,
    plans: &'a [LevelPlan],
    options: &'a UslSweepArgs,
}

/// Where and when the sweep ran.
#[derive(Debug, Serialize)]
struct SweepEnvironment {
    cores: usize,
    kernel: String,
    date: String,
}

/// The JSON report of `weir usl sweep`.
#[derive(Debug, Serialize)]
struct SweepReport<'a> {
    config: SweepConfig<'a>,
    environment: SweepEnvironment,
    notes: &'a [String],
    points: &'a [Measurement],
    levels: &'a [LevelSummary],
    /// The fit, or `null` when it failed (see `fit_error`).
    fit: Option<&'a UslFit>,
    fit_error: Option<String>,
}

fn describe_flush(flush: Option<FlushArg>) -> String {
    match flush {
        None => "broker default".to_string(),
        Some(FlushArg::Always) => "always".to_string(),
        Some(FlushArg::Never) => "never".to_string(),
        Some(FlushArg::IntervalMs(milliseconds)) => format!("interval:{milliseconds}"),
    }
}

/// Runs `weir usl sweep`: every level's runs, then the tables, the fit, the plot and the JSON.
pub async fn run(broker: &str, args: &UslSweepArgs) -> Result<()> {
    let plans = args.check().map_err(|reason| anyhow!(reason))?;
    let date = bench::now_rfc3339();
    let cores = bench::available_cores();
    let notes = environment_notes(args.over, &args.values, cores);
    for note in &notes {
        eprintln!("note: {note}");
    }
    let broker_bin = broker_binary(args.broker_bin.as_deref());
    let mut measurements = Vec::with_capacity(plans.len() * args.repeats as usize);
    for plan in &plans {
        match plan.shards {
            Some(shards) => {
                let mut child = BrokerChild::start(&broker_bin, shards).await?;
                let measured = run_level(&child.listen, args, plan, Some(&child.ready_file)).await;
                let stopped = child.stop().await;
                measurements.extend(measured?);
                stopped?;
            }
            None => measurements.extend(run_level(broker, args, plan, None).await?),
        }
    }
    let levels = summarise_levels(&args.values, &measurements);
    let fitted = fit::fit(&fit_points(&measurements));

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "over {}: {} run(s) per level",
        over_name(args.over),
        args.repeats
    )?;
    write_levels(&mut out, &levels)?;
    writeln!(out)?;
    if let Ok(fitted) = &fitted {
        super::write_report(&mut out, fitted)?;
    }
    for note in &notes {
        writeln!(out, "note: {note}")?;
    }
    drop(out);

    if let Some(path) = &args.json {
        let report = SweepReport {
            config: SweepConfig {
                broker: if args.over == Dimension::Shards {
                    "started"
                } else {
                    broker
                },
                flush: describe_flush(args.flush),
                plans: &plans,
                options: args,
            },
            environment: SweepEnvironment {
                cores,
                kernel: bench::kernel_release(),
                date,
            },
            notes: &notes,
            points: &measurements,
            levels: &levels,
            fit: fitted.as_ref().ok(),
            fit_error: fitted.as_ref().err().map(ToString::to_string),
        };
        let mut text =
            serde_json::to_string_pretty(&report).context("encoding the sweep as JSON")?;
        text.push('\n');
        std::fs::write(path, text)
            .with_context(|| format!("writing the sweep to {}", path.display()))?;
        eprintln!("wrote the sweep to {}", path.display());
    }
    let fitted = fitted.context("the sweep ran, but its points cannot be fitted")?;
    if let Some(path) = &args.plot {
        super::plot::write_svg(&fitted, path)?;
        eprintln!("wrote the plot to {}", path.display());
    }
    Ok(())
}

fn over_name(over: Dimension) -> &'static str {
    match over {
        Dimension::Shards => "shards",
        Dimension::Partitions => "partitions",
        Dimension::Producers => "producers",
    }
}

/// Runs every repeat of one level against `broker`.
async fn run_level(
    broker: &str,
    args: &UslSweepArgs,
    plan: &LevelPlan,
    ready_file: Option<&Path>,
) -> Result<Vec<Measurement>> {
    let mut measurements = Vec::with_capacity(args.repeats as usize);
    for repeat in 1..=args.repeats {
        let mut bench_args = args.bench_args(plan, ready_file);
        let summary = match plan.shards {
            Some(shards) => {
                let admin = connect_admin(broker).await?;
                let topic = create_topic_on_every_shard(&admin, plan, shards, args.flush).await?;
                bench_args.topic = Some(topic.clone());
                bench_args.partitions = None;
                bench_args.flush = None;
                let summary = bench::run(broker, bench_args, TableOutput::Omit).await;
                if let Err(error) = admin.delete_topic(&topic).await {
                    eprintln!("warning: cannot delete topic \"{topic}\": {error}");
                }
                summary
            }
            None => bench::run(broker, bench_args, TableOutput::Omit).await,
        }
        .with_context(|| format!("N = {}, run {repeat}", plan.level))?;
        let measurement = Measurement::from_summary(plan.level, repeat, &summary);
        eprintln!(
            "N = {:>4}  run {repeat}/{}: {:>12.0} records/s  ({} partitions, {} producers{})",
            plan.level,
            args.repeats,
            measurement.records_per_s,
            plan.partitions,
            plan.producers,
            plan.shards
                .map_or_else(String::new, |shards| format!(", {shards} shards"))
        );
        measurements.push(measurement);
    }
    Ok(measurements)
}

/// How many distinct shards of `shards` own one of the partitions whose owners are `owners`.
pub fn shards_covered(owners: &[u32], shards: u32) -> u32 {
    let mut distinct: Vec<u32> = owners
        .iter()
        .copied()
        .filter(|&owner| owner < shards)
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    // At most `shards` distinct values below `shards`, which is a u32.
    distinct.len() as u32
}

async fn connect_admin(broker: &str) -> Result<Admin> {
    let client = ClientConfig {
        client_id: "weir-usl-sweep".to_string(),
        ..ClientConfig::new(broker.to_string())
    };
    Ok(Admin::new(Cluster::connect(client).await.with_context(
        || format!("cannot connect to the started broker {broker}"),
    )?))
}

/// Creates a fresh topic of `plan.partitions` partitions whose partitions cover all `shards`
/// shards, trying at most [`PLACEMENT_ATTEMPTS_MAX`] topics; returns its name.
async fn create_topic_on_every_shard(
    admin: &Admin,
    plan: &LevelPlan,
    shards: u32,
    flush: Option<FlushArg>,
) -> Result<String> {
    let mut best_covered = 0;
    for _ in 0..PLACEMENT_ATTEMPTS_MAX {
        let topic = bench::fresh_topic_name();
        let mut settings = TopicSettings::new().partitions(plan.partitions);
        if let Some(flush) = flush {
            settings = settings.flush(bench::flush_policy(flush)?);
        }
        admin
            .create_topic(&topic, &settings)
            .await
            .with_context(|| format!("cannot create topic \"{topic}\""))?;
        let owners: Vec<u32> = match admin.describe_topic(&topic).await {
            Ok(description) => description
                .partitions
                .iter()
                .map(|partition| partition.owner_shard)
                .collect(),
            Err(error) => {
                let _ = admin.delete_topic(&topic).await;
                return Err(error).with_context(|| format!("cannot describe topic \"{topic}\""));
            }
        };
        let covered = shards_covered(&owners, shards);
        if covered == shards {
            return Ok(topic);
        }
        best_covered = best_covered.max(covered);
        admin
            .delete_topic(&topic)
            .await
            .with_context(|| format!("cannot delete topic \"{topic}\""))?;
    }
    bail!(
        "N = {shards}: in {PLACEMENT_ATTEMPTS_MAX} topics of {} partitions, the broker's placement never gave every shard a partition (at best {best_covered} of {shards}); raise --partitions-per-shard",
        plan.partitions
    )
}

/// The broker executable for `--over shards`: `explicit`, else `weir-broker` in this
/// executable's directory, else the bare name for the OS to find on `PATH`.
pub fn broker_binary(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    std::env::current_exe()
        .ok()
        .and_then(|executable| executable.parent().map(|dir| dir.join(BROKER_BINARY)))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(BROKER_BINARY))
}

/// A `weir-broker` child process started for one level of `--over shards`, with its own
/// temporary directory (data, ready file, logs).
struct BrokerChild {
    child: Option<Child>,
    dir: PathBuf,
    ready_file: PathBuf,
    listen: String,
}

impl BrokerChild {
    /// Starts `binary --cores shards` on ephemeral ports and waits, at most
    /// [`BROKER_READY_TIMEOUT`], for its ready file.
    async fn start(binary: &Path, shards: u32) -> Result<BrokerChild> {
        let dir = temporary_dir(shards)?;
        let ready_file = dir.join("ready.toml");
        let stderr_log = dir.join("broker.stderr.log");
        let mut broker = BrokerChild {
            child: None,
            dir: dir.clone(),
            ready_file: ready_file.clone(),
            listen: String::new(),
        };
        let stdout = std::fs::File::create(dir.join("broker.stdout.log"))
            .context("creating the broker's stdout log")?;
        let stderr =
            std::fs::File::create(&stderr_log).context("creating the broker's stderr log")?;
        let child = Command::new(binary)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--cores")
            .arg(shards.to_string())
            .arg("--ready-file")
            .arg(&ready_file)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("cannot start {} (give --broker-bin)", binary.display()))?;
        let pid = child.id();
        broker.child = Some(child);
        let deadline = Instant::now() + BROKER_READY_TIMEOUT;
        let ready = loop {
            if let Ok(ready) = probe::read_ready_file(&ready_file) {
                break ready;
            }
            if let Some(status) = broker.try_exit_status()? {
                bail!(
                    "{} --cores {shards} exited ({status}) before it was ready: {}",
                    binary.display(),
                    log_tail(&stderr_log)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} --cores {shards} wrote no ready file within {BROKER_READY_TIMEOUT:?}: {}",
                    binary.display(),
                    log_tail(&stderr_log)
                );
            }
            tokio::time::sleep(BROKER_POLL_INTERVAL).await;
        };
        if ready.pid != pid {
            bail!(
                "the ready file {} names pid {}, not the started broker's {pid}",
                ready_file.display(),
                ready.pid
            );
        }
        broker.listen = ready.listen.ok_or_else(|| {
            anyhow!(
                "the ready file {} has no listen address",
                ready_file.display()
            )
        })?;
        eprintln!(
            "started {} --cores {shards} (pid {pid}) on {}",
            binary.display(),
            broker.listen
        );
        Ok(broker)
    }

    fn try_exit_status(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().context("waiting for the broker"),
            None => Ok(None),
        }
    }

    /// Sends SIGTERM and waits, at most [`BROKER_EXIT_TIMEOUT`], for a clean exit; kills it
    /// when it does not exit in time.
    async fn stop(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id()).context("the broker's pid fits pid_t")?;
        // SAFETY: kill(2) on the pid of our own child, not yet reaped, so the pid cannot name
        // another process.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        if sent != 0 {
            bail!(
                "cannot send SIGTERM to the broker (pid {pid}): {}",
                std::io::Error::last_os_error()
            );
        }
        let deadline = Instant::now() + BROKER_EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.try_exit_status()? {
                self.child = None;
                if !status.success() {
                    bail!("the broker (pid {pid}) exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the broker (pid {pid}) did not exit within {BROKER_EXIT_TIMEOUT:?} of SIGTERM; killed it");
            }
            tokio::time::sleep(BROKER_POLL_INTERVAL).await;
        }
    }
}

impl Drop for BrokerChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory under the system's temporary directory, named by pid, level and time so
/// that concurrent sweeps do not meet.
fn temporary_dir(shards: u32) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "weir-usl-sweep-{}-{shards}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The last [`BROKER_LOG_TAIL_BYTES`] of a log file, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(BROKER_LOG_TAIL_BYTES);
    let tail = String::from_utf8_lossy(&text[start..]).trim().to_string();
    if tail.is_empty() {
        "its stderr is empty".to_string()
    } else {
        format!("its stderr ends:\n{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::bench::report::{BrokerCost, Throughput};
    use crate::usl::UslCommand;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<UslSweepArgs, clap::Error> {
        let cli = Cli::try_parse_from(
            ["weir", "usl", "sweep"]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        match cli.command {
            Command::Usl(UslCommand::Sweep(sweep)) => Ok(*sweep),
            other => panic!("expected usl sweep, got {other:?}"),
        }
    }

    /// A bench summary with `records` acknowledged in `seconds`, and the broker figures given.
    fn summary(records: u64, seconds: f64, cpu: Option<f64>, forwarded: Option<f64>) -> Summary {
        Summary {
            sent: records,
            failed: 0,
            produce: Throughput::new(records, 1024, seconds),
            consume: None,
            verification: None,
            broker: BrokerCost {
                forwarded_requests_delta: forwarded,
                cpu_s: cpu.map(|per_million| per_million * records as f64 / 1e6),
                cpu_s_per_million_records: cpu,
                cpu_wait_s: None,
                notes: Vec::new(),
            },
            generator_cpu_s: None,
            generator_cpu_wait_s: None,
            machine_cpu: None,
        }
    }

    #[test]
    fn the_documented_command_line_parses_with_its_defaults() {
        let args = parse(&["--over", "producers", "--values", "1,2,4,8"]).expect("valid");
        assert_eq!(args.over, Dimension::Producers);
        assert_eq!(args.values, vec![1, 2, 4, 8]);
        assert_eq!(args.repeats, 3);
        assert_eq!(args.consumers, 0);
        assert_eq!(args.message_bytes, 1024);
        assert_eq!(args.partitions_per_shard, 2);
        assert_eq!((args.messages, args.duration_s), (None, None));
        assert_eq!((args.plot.as_deref(), args.json.as_deref()), (None, None));
        assert!(args.check().is_ok());
    }

    #[test]
    fn every_bench_option_parses_and_reaches_the_bench() {
        let args = parse(&[
            "--over",
            "partitions",
            "--values",
            "2,4",
            "--values",
            "8",
            "--repeats",
            "2",
            "--message-bytes",
            "100",
            "--batch-bytes-max",
            "65536",
            "--linger-ms",
            "1",
            "--flush",
            "interval:10",
            "--messages",
            "3000",
            "--acks",
            "none",
            "--consumers",
            "2",
            "--ready-file",
            "ready.toml",
            "--plot",
            "usl.svg",
            "--json",
            "usl.json",
        ])
        .expect("valid");
        assert_eq!(args.values, vec![2, 4, 8]);
        let plans = args.check().expect("consistent");
        assert_eq!(plans.len(), 3);
        let bench = args.bench_args(&plans[0], None);
        assert_eq!(bench.message_bytes, 100);
        assert_eq!(bench.batch_bytes_max, 65536);
        assert_eq!(bench.linger_ms, 1);
        assert_eq!(bench.flush, Some(FlushArg::IntervalMs(10)));
        assert_eq!(bench.messages, Some(3000));
        assert_eq!(bench.acks, AcksArg::None);
        assert_eq!(bench.consumers, 2);
        assert_eq!(bench.ready_file, Some(PathBuf::from("ready.toml")));
        assert_eq!(bench.json, None, "runs write no JSON of their own");
        assert_eq!(bench.topic, None, "every run gets a fresh topic");
        assert!(bench.quiet);
        let args =
            parse(&["--over", "shards", "--values", "1,2,3", "--duration-s", "5"]).expect("valid");
        assert_eq!(
            args.bench_args(&args.level_plan(1), None).duration_s,
            Some(5)
        );
    }

    #[test]
    fn the_grammar_rejects_malformed_sweeps() {
        for args in [
            &["--values", "1,2,4"][..],
            &["--over", "producers"],
            &["--over", "cores", "--values", "1,2,4"],
            &["--over", "producers", "--values", "0,1,2"],
            &["--over", "producers", "--values", "1,2,x"],
            &["--over", "producers", "--values", "1,2,1025"],
            &["--over", "producers", "--values", "1,2,4", "--repeats", "0"],
            &[
                "--over",
                "producers",
                "--values",
                "1,2,4",
                "--messages",
                "1",
                "--duration-s",
                "1",
            ],
            &[
                "--over",
                "producers",
                "--values",
                "1,2,4",
                "--flush",
                "sometimes",
            ],
            &[
                "--over",
                "producers",
                "--values",
                "1,2,4",
                "--message-bytes",
                "23",
            ],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be rejected");
        }
    }

    #[test]
    fn check_rejects_sweeps_that_could_not_run_or_fit() {
        for (args, reason) in [
            (&["--over", "producers", "--values", "1,2"][..], "levels"),
            (
                &["--over", "producers", "--values", "1,2,2,4"],
                "repeats a level",
            ),
            (
                &[
                    "--over",
                    "producers",
                    "--values",
                    "1,2,8",
                    "--partitions",
                    "4",
                    "--consumers",
                    "5",
                ],
                "--consumers",
            ),
            (
                &[
                    "--over",
                    "partitions",
                    "--values",
                    "1,2,4",
                    "--consumers",
                    "2",
                ],
                "at N = 1",
            ),
            (
                &[
                    "--over",
                    "partitions",
                    "--values",
                    "1,2,4",
                    "--partitions",
                    "4",
                ],
                "--partitions",
            ),
            (
                &[
                    "--over",
                    "shards",
                    "--values",
                    "1,2,4",
                    "--ready-file",
                    "r.toml",
                ],
                "starts its own brokers",
            ),
            (&["--over", "shards", "--values", "1,2,300"], "300 shards"),
            (
                &[
                    "--over",
                    "producers",
                    "--values",
                    "1,2,4",
                    "--broker-bin",
                    "b",
                ],
                "--broker-bin",
            ),
            (
                &[
                    "--over",
                    "producers",
                    "--values",
                    "1,2,4",
                    "--message-bytes",
                    "4096",
                    "--batch-bytes-max",
                    "4096",
                ],
                "--batch-bytes-max",
            ),
        ] {
            let parsed = parse(args).expect("the grammar accepts it");
            let error = parsed
                .check()
                .expect_err(&format!("{args:?} should fail the check"));
            assert!(error.contains(reason), "{args:?}: {error}");
        }
    }

    #[test]
    fn each_dimension_plans_its_levels() {
        let producers = parse(&["--over", "producers", "--values", "1,2,4"]).expect("valid");
        let plans = producers.check().expect("consistent");
        let expected: Vec<(u32, u32, Mode, Option<u32>)> = vec![
            (4, 1, Mode::Balanced, None),
            (4, 2, Mode::Balanced, None),
            (4, 4, Mode::Balanced, None),
        ];
        let got: Vec<_> = plans
            .iter()
            .map(|plan| (plan.partitions, plan.producers, plan.mode, plan.shards))
            .collect();
        assert_eq!(got, expected, "a fixed partition count of the largest N");
        let producers = parse(&[
            "--over",
            "producers",
            "--values",
            "1,2,4",
            "--partitions",
            "16",
        ])
        .expect("valid");
        assert_eq!(producers.level_plan(2).partitions, 16);

        let partitions = parse(&["--over", "partitions", "--values", "1,3,5"]).expect("valid");
        let plan = partitions.level_plan(3);
        assert_eq!(
            (plan.partitions, plan.producers, plan.mode, plan.shards),
            (3, 3, Mode::Pinned, None)
        );

        let shards = parse(&[
            "--over",
            "shards",
            "--values",
            "1,2,4",
            "--partitions-per-shard",
            "3",
        ])
        .expect("valid");
        let plan = shards.level_plan(4);
        assert_eq!(
            (plan.partitions, plan.producers, plan.mode, plan.shards),
            (12, 12, Mode::Pinned, Some(4))
        );
        let bench = shards.bench_args(&plan, Some(Path::new("/tmp/ready.toml")));
        assert_eq!(bench.partitions, Some(12));
        assert_eq!(bench.producers, 12);
        assert_eq!(bench.mode, Mode::Pinned);
        assert_eq!(bench.ready_file, Some(PathBuf::from("/tmp/ready.toml")));
        assert_eq!(bench.broker_pid, None);
    }

    #[test]
    fn every_run_becomes_a_fit_point_and_levels_summarise_their_runs() {
        // Two runs at N = 1, two at N = 2, one at N = 4, as the bench would report them.
        let runs = [
            (1, 1, summary(100_000, 1.0, Some(2.0), Some(0.0))),
            (1, 2, summary(120_000, 1.0, Some(4.0), Some(0.0))),
            (2, 1, summary(180_000, 1.0, None, Some(3.0))),
            (2, 2, summary(220_000, 1.0, Some(3.0), None)),
            (4, 1, summary(300_000, 2.0, None, None)),
        ];
        let measurements: Vec<Measurement> = runs
            .iter()
            .map(|(level, repeat, summary)| Measurement::from_summary(*level, *repeat, summary))
            .collect();
        assert_eq!(measurements[4].records_per_s, 150_000.0);
        assert_eq!(measurements[4].records, 300_000);

        let points = fit_points(&measurements);
        let expected: Vec<(u32, f64)> = vec![
            (1, 100_000.0),
            (1, 120_000.0),
            (2, 180_000.0),
            (2, 220_000.0),
            (4, 150_000.0),
        ];
        let got: Vec<(u32, f64)> = points
            .iter()
            .map(|point| (point.concurrency, point.throughput))
            .collect();
        assert_eq!(got, expected);
        let fitted = fit::fit(&points).expect("five points at three levels fit");
        assert_eq!(fitted.points.len(), 5, "every repeat is fitted");

        let levels = summarise_levels(&[4, 1, 2], &measurements);
        assert_eq!(
            levels.iter().map(|level| level.level).collect::<Vec<_>>(),
            vec![4, 1, 2]
        );
        let one = &levels[1];
        assert_eq!(one.repeats, 2);
        assert_eq!(one.mean_records_per_s, 110_000.0);
        assert_eq!(
            (one.min_records_per_s, one.max_records_per_s),
            (100_000.0, 120_000.0)
        );
        assert!((one.spread_percent - 100.0 * 20_000.0 / 110_000.0).abs() < 1e-9);
        assert_eq!(one.cpu_s_per_million_records, Some(3.0));
        assert_eq!(one.forwarded_requests_delta, Some(0.0));
        // A broker figure missing from some runs is averaged over the runs that have it.
        let two = &levels[2];
        assert_eq!(two.cpu_s_per_million_records, Some(3.0));
        assert_eq!(two.forwarded_requests_delta, Some(3.0));
        let four = &levels[0];
        assert_eq!((four.repeats, four.spread_percent), (1, 0.0));
        assert_eq!(
            (
                four.cpu_s_per_million_records,
                four.forwarded_requests_delta
            ),
            (None, None)
        );

        let mut table = Vec::new();
        write_levels(&mut table, &levels).expect("write to memory");
        let table = String::from_utf8(table).expect("UTF-8");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[0].contains("CPU s/M rec") && lines[0].contains("forwarded"),
            "{table}"
        );
        assert!(
            lines[2].trim_start().starts_with("1 ")
                && lines[2].contains("110000")
                && lines[2].contains("18.2%")
                && lines[2].contains("3.000"),
            "{table}"
        );
        assert!(
            lines[1].trim_end().ends_with('-'),
            "missing figures print as -: {table}"
        );
    }

    #[test]
    fn coverage_counts_the_distinct_shards_that_own_a_partition() {
        assert_eq!(shards_covered(&[0, 1, 0, 1], 2), 2);
        assert_eq!(shards_covered(&[0, 0, 2, 2], 3), 2, "shard 1 owns nothing");
        assert_eq!(shards_covered(&[], 1), 0);
        assert_eq!(shards_covered(&[3, 2, 1, 0, 0, 1], 4), 4);
        // An owner outside the broker's shards (a bad description) covers nothing.
        assert_eq!(shards_covered(&[0, 5], 2), 1);
    }

    #[test]
    fn notes_warn_when_shards_outnumber_cores() {
        let notes = environment_notes(Dimension::Shards, &[1, 2, 4], 2);
        assert!(
            notes
                .iter()
                .any(|note| note.contains("N > 2 shards share cores")),
            "{notes:?}"
        );
        let notes = environment_notes(Dimension::Shards, &[1, 2, 4], 8);
        assert!(notes.is_empty(), "{notes:?}");
        let notes = environment_notes(Dimension::Producers, &[1, 2, 4], 2);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("measures the machine"), "{notes:?}");
    }

    #[test]
    fn the_broker_binary_is_the_explicit_one_else_a_name_or_a_file_next_to_weir() {
        assert_eq!(
            broker_binary(Some(Path::new("/opt/weir-broker"))),
            PathBuf::from("/opt/weir-broker")
        );
        let found = broker_binary(None);
        assert!(
            found == Path::new(BROKER_BINARY)
                || (found.is_file() && found.file_name() == Some(BROKER_BINARY.as_ref())),
            "{}",
            found.display()
        );
    }
}
