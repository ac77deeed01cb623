//! Broker configuration: command-line flags, an optional TOML file with the same keys, defaults,
//! and validation.
//!
//! This module owns [`Config`], the fully resolved and validated settings every other module
//! reads. Precedence is flag, then file, then built-in default. Invariant: a [`Config`] that
//! [`Config::resolve`] returned satisfies every bound checked in [`Config::validate`]; code that
//! holds one never re-checks them. Among those bounds are the broker's ports: by default clients
//! connect to 127.0.0.1:9347 (`--listen`, shared by every shard), shard `i` also listens on its own
//! port `shard-port-base + i` (9350, 9351, …) at the same IP, and metrics are served on
//! 127.0.0.1:9348; validation rejects any pair of these that would collide and a shard port past
//! 65535. Nothing here does I/O except reading the `--config` file once at start-up.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::group::GroupLimits;

/// Errors found while reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML or has an unknown key or a wrongly typed value.
    #[error("cannot parse config file {path}: {message}")]
    Parse {
        /// The file that failed.
        path: PathBuf,
        /// The TOML parser's explanation.
        message: String,
    },
    /// A setting is outside its allowed range.
    #[error("invalid setting {key} = {value}: {reason}")]
    Invalid {
        /// The flag / key name.
        key: &'static str,
        /// The rejected value, as text.
        value: String,
        /// What the allowed range is.
        reason: String,
    },
}

/// A topic's durability policy: when an append is acknowledged relative to `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FlushSetting {
    /// Acknowledge after `fdatasync` (concurrent appends share one: group commit).
    Always,
    /// Acknowledge after the write; `fdatasync` at least every `interval_ms` milliseconds.
    Interval {
        /// The longest time unflushed data may wait, in milliseconds.
        interval_ms: u64,
    },
    /// Acknowledge after the write; the operating system decides when to flush.
    Never,
}

impl std::str::FromStr for FlushSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "always" => Ok(FlushSetting::Always),
            "never" => Ok(FlushSetting::Never),
            other => {
                let ms = other.strip_prefix("interval:").ok_or_else(|| {
                    format!("expected always, never or interval:<ms>, got {other:?}")
                })?;
                let interval_ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("interval:<ms> needs a whole number of ms, got {ms:?}"))?;
                if interval_ms == 0 {
                    return Err("interval:<ms> needs at least 1 ms".to_string());
                }
                Ok(FlushSetting::Interval { interval_ms })
            }
        }
    }
}

impl std::fmt::Display for FlushSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushSetting::Always => f.write_str("always"),
            FlushSetting::Never => f.write_str("never"),
            FlushSetting::Interval { interval_ms } => write!(f, "interval:{interval_ms}"),
        }
    }
}

impl TryFrom<String> for FlushSetting {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<FlushSetting> for String {
    fn from(flush: FlushSetting) -> String {
        flush.to_string()
    }
}

/// A topic's settings; [`Config::topic_defaults`] holds those a topic gets when its creation
/// request leaves them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    /// Partition count.
    pub partitions: u32,
    /// Durability policy.
    pub flush: FlushSetting,
    /// Delete the oldest segments once a partition holds more than this many bytes; 0 = no limit.
    pub retention_bytes_max: u64,
    /// Delete segments whose newest record is older than this, in milliseconds; 0 = no limit.
    pub retention_ms_max: u64,
    /// Roll to a new segment once the active one holds this many bytes.
    pub segment_bytes_max: u64,
    /// Roll to a new segment once the active one is this old, in milliseconds; 0 = never.
    pub segment_ms_max: u64,
}

/// The resolved, validated broker configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Directory holding the topic catalog and every partition's segments.
    pub data_dir: PathBuf,
    /// The shared client address (SO_REUSEPORT on every shard). Port 0: this and every shard's
    /// direct listener take ephemeral ports.
    pub listen: SocketAddr,
    /// Shard `i`'s direct client listener is on `listen`'s IP at port `shard_port_base + i`;
    /// 0 means every direct listener takes an ephemeral port.
    pub shard_port_base: u16,
    /// Address of the Prometheus `/metrics` HTTP endpoint.
    pub metrics_listen: SocketAddr,
    /// Number of shards (one glommio executor each).
    pub cores: usize,
    /// File to write the bound addresses to once the broker serves.
    pub ready_file: Option<PathBuf>,
    /// Largest accepted request frame, in bytes, length prefix included.
    pub frame_bytes_max: u32,
    /// Largest accepted record batch, in bytes.
    pub batch_bytes_max: u32,
    /// Connections each shard accepts at once; more are closed on accept.
    pub connections_max: u32,
    /// Requests one connection may have in progress (pipelined) at once.
    pub inflight_requests_max: u32,
    /// Produce payload bytes a shard holds in memory before it stops reading sockets.
    pub produce_memory_bytes_max: u64,
    /// Longest time the rest of a started frame may take to arrive, in milliseconds; a slower
    /// or abandoned connection is closed so it cannot pin request memory.
    pub frame_read_timeout_ms: u64,
    /// Tail-cache bytes per shard, divided equally among the partitions of client topics the
    /// shard owns (internal `__offsets` partitions get the 64 KiB floor).
    pub tail_cache_bytes_max: u64,
    /// Bytes of appended batches each partition holds in memory until they are written (under
    /// `flush = always`, until durable); an append that finds it full waits for the disk.
    pub write_buffer_bytes_max: u64,
    /// Largest fetch response body, in bytes; caps the client's request.
    pub fetch_response_bytes_max: u32,
    /// Longest long-poll wait of a fetch, in milliseconds; caps the client's request.
    pub fetch_wait_ms_max: u32,
    /// Largest partition count a topic may have.
    pub topic_partitions_max: u32,
    /// Messages that may wait in each shard-to-shard channel.
    pub forward_queue_depth: u32,
    /// How often each shard checks segment age, retention and interval flushes, in milliseconds.
    pub maintenance_interval_ms: u64,
    /// How long shutdown waits for in-flight requests, in milliseconds.
    pub shutdown_timeout_ms: u64,
    /// Idempotent producers remembered per partition (least recently used evicted beyond).
    pub producers_per_partition_max: u32,
    /// A producer idle for longer than this is forgotten by a partition, in milliseconds.
    pub producer_idle_ms_max: u64,
    /// Consumer-group limits enforced by the coordinator.
    pub groups: GroupLimits,
    /// Most (group, partition) lag series `/metrics` exports.
    pub group_lag_metrics_partitions_max: u32,
    /// Settings for topics created without explicit ones.
    pub topic_defaults: TopicConfig,
}

const DEFAULT_DATA_DIR: &str = "./weir-data";
const DEFAULT_LISTEN: &str = "127.0.0.1:9347";
const DEFAULT_SHARD_PORT_BASE: u16 = 9350;
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9348";
const MIB: u64 = 1 << 20;

/// Command-line flags. Every flag may also be given as a key of the same name (without the
/// leading dashes) in the `--config` TOML file; a flag overrides the file.
#[derive(Debug, Default, Parser)]
#[command(
    name = "weir-broker",
    version,
    about = "The Weir log broker (one shard per core)."
)]
pub struct Flags {
    /// TOML file with any of the settings below, keys spelled as the flags without dashes
    /// (e.g. `frame-bytes-max = 1048576`). Flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the topic catalog and partition logs [default: ./weir-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Shared client address; every shard accepts here (SO_REUSEPORT). Port 0: this and every
    /// shard's own listener take ephemeral ports [default: 127.0.0.1:9347].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Shard i also listens on its own port, shard-port-base + i, at the --listen IP; clients
    /// connect there to the shard that owns a partition. 0: ephemeral ports [default: 9350].
    #[arg(long, value_name = "PORT")]
    pub shard_port_base: Option<u16>,
    /// Prometheus metrics address, served at /metrics; port 0 = ephemeral
    /// [default: 127.0.0.1:9348].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Number of shards, one pinned executor each; shard i runs on the i-th allowed CPU
    /// (wrapping when there are more shards than CPUs) [default: all allowed CPUs].
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// Once every listener is bound and every shard serves, write the actual addresses here
    /// (TOML: listen, shards, metrics), atomically. Never written if a partition cannot be
    /// opened at start: the broker exits with an error naming it instead.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Largest request frame, in bytes, length prefix included [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub frame_bytes_max: Option<u32>,
    /// Largest record batch, in bytes [default: the smaller of 8388608 and frame-bytes-max].
    #[arg(long, value_name = "BYTES")]
    pub batch_bytes_max: Option<u32>,
    /// Open connections per shard; extra ones are closed at accept [default: 1024].
    #[arg(long, value_name = "COUNT")]
    pub connections_max: Option<u32>,
    /// Requests in progress per connection (pipelined; answered in order) [default: 64].
    #[arg(long, value_name = "COUNT")]
    pub inflight_requests_max: Option<u32>,
    /// Produce payload held in memory per shard before sockets stop being read, in bytes
    /// [default: 134217728].
    #[arg(long, value_name = "BYTES")]
    pub produce_memory_bytes_max: Option<u64>,
    /// Time the rest of a frame may take once its length arrived, in milliseconds; slower
    /// connections are closed [default: 30000].
    #[arg(long, value_name = "MS")]
    pub frame_read_timeout_ms: Option<u64>,
    /// Tail cache per shard, in bytes, divided equally among its partitions of client topics
    /// (internal partitions get 64 KiB) [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub tail_cache_bytes_max: Option<u64>,
    /// Bytes of appended batches each partition holds in memory until they are written (under
    /// `flush = always`, until durable); an append that finds them full waits for the disk. It
    /// absorbs a slow disk for that long; under `always` it also bounds what one fdatasync
    /// covers [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub write_buffer_bytes_max: Option<u64>,
    /// Largest fetch response body, in bytes [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub fetch_response_bytes_max: Option<u32>,
    /// Longest fetch long-poll wait, in milliseconds [default: 30000].
    #[arg(long, value_name = "MS")]
    pub fetch_wait_ms_max: Option<u32>,
    /// Largest partition count of a topic [default: 4096].
    #[arg(long, value_name = "COUNT")]
    pub topic_partitions_max: Option<u32>,
    /// Messages queued in each shard-to-shard channel [default: 256].
    #[arg(long, value_name = "COUNT")]
    pub forward_queue_depth: Option<u32>,
    /// Period of segment-age, retention and interval-flush checks, in milliseconds
    /// [default: 1000].
    #[arg(long, value_name = "MS")]
    pub maintenance_interval_ms: Option<u64>,
    /// Time shutdown waits for in-flight requests, in milliseconds [default: 10000].
    #[arg(long, value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Idempotent producers each partition remembers; beyond it the least recently used one
    /// is evicted [default: 10000].
    #[arg(long, value_name = "COUNT")]
    pub producers_per_partition_max: Option<u32>,
    /// Time after its last batch when a partition forgets an idle producer, in milliseconds
    /// [default: 86400000, one day].
    #[arg(long, value_name = "MS")]
    pub producer_idle_ms_max: Option<u64>,
    /// Smallest session timeout a group member may ask for, in milliseconds [default: 6000].
    #[arg(long, value_name = "MS")]
    pub group_session_timeout_ms_min: Option<u32>,
    /// Largest session timeout a group member may ask for, in milliseconds [default: 300000].
    #[arg(long, value_name = "MS")]
    pub group_session_timeout_ms_max: Option<u32>,
    /// Members one consumer group may have; more get group_max_size_reached [default: 1000].
    #[arg(long, value_name = "COUNT")]
    pub group_members_max: Option<u32>,
    /// Consumer groups one shard coordinates; more get groups_max_reached [default: 10000].
    #[arg(long, value_name = "COUNT")]
    pub groups_per_shard_max: Option<u32>,
    /// How long an empty group's first rebalance waits for more members to join, in
    /// milliseconds (Kafka's group.initial.rebalance.delay.ms); 0 forms it at once [default: 0].
    #[arg(long, value_name = "MS")]
    pub group_initial_rebalance_delay_ms: Option<u32>,
    /// How long a consumer group without members is kept after it emptied or last committed,
    /// in milliseconds; then it expires with its committed offsets (Kafka's
    /// offsets.retention.minutes). A group with members never expires [default: 604800000].
    #[arg(long, value_name = "MS")]
    pub group_offsets_retention_ms: Option<u64>,
    /// Most (group, partition) lag series /metrics exports; the rest are left out
    /// [default: 10000].
    #[arg(long, value_name = "COUNT")]
    pub group_lag_metrics_partitions_max: Option<u32>,
    /// Partitions of a topic created without a count [default: 1].
    #[arg(long, value_name = "COUNT")]
    pub default_partitions: Option<u32>,
    /// Default durability: always, never, or interval:MS with MS in milliseconds
    /// [default: always].
    #[arg(long, value_name = "POLICY")]
    pub default_flush: Option<FlushSetting>,
    /// Default retention by size per partition, in bytes; 0 = unlimited [default: 0].
    #[arg(long, value_name = "BYTES")]
    pub default_retention_bytes_max: Option<u64>,
    /// Default retention by age, in milliseconds; 0 = unlimited [default: 604800000].
    #[arg(long, value_name = "MS")]
    pub default_retention_ms_max: Option<u64>,
    /// Default segment size before a roll, in bytes; segments are preallocated, so this is also
    /// the disk space a new partition takes at once [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub default_segment_bytes_max: Option<u64>,
    /// Default segment age before a roll, in milliseconds; 0 = never [default: 604800000].
    #[arg(long, value_name = "MS")]
    pub default_segment_ms_max: Option<u64>,
}

/// The `--config` file: the same settings as [`Flags`], all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSettings {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    shard_port_base: Option<u16>,
    metrics_listen: Option<SocketAddr>,
    cores: Option<usize>,
    ready_file: Option<PathBuf>,
    frame_bytes_max: Option<u32>,
    batch_bytes_max: Option<u32>,
    connections_max: Option<u32>,
    inflight_requests_max: Option<u32>,
    produce_memory_bytes_max: Option<u64>,
    frame_read_timeout_ms: Option<u64>,
    tail_cache_bytes_max: Option<u64>,
    write_buffer_bytes_max: Option<u64>,
    fetch_response_bytes_max: Option<u32>,
    fetch_wait_ms_max: Option<u32>,
    topic_partitions_max: Option<u32>,
    forward_queue_depth: Option<u32>,
    maintenance_interval_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
    producers_per_partition_max: Option<u32>,
    producer_idle_ms_max: Option<u64>,
    group_session_timeout_ms_min: Option<u32>,
    group_session_timeout_ms_max: Option<u32>,
    group_members_max: Option<u32>,
    groups_per_shard_max: Option<u32>,
    group_initial_rebalance_delay_ms: Option<u32>,
    group_offsets_retention_ms: Option<u64>,
    group_lag_metrics_partitions_max: Option<u32>,
    default_partitions: Option<u32>,
    default_flush: Option<FlushSetting>,
    default_retention_bytes_max: Option<u64>,
    default_retention_ms_max: Option<u64>,
    default_segment_bytes_max: Option<u64>,
    default_segment_ms_max: Option<u64>,
}

/// Smallest frame limit accepted: room for any control request.
const FRAME_BYTES_MIN: u32 = 4096;
/// Smallest per-partition write buffer: one file-system block.
const WRITE_BUFFER_BYTES_MIN: u64 = 4096;
/// Smallest segment accepted; smaller segments would make every append a roll.
const SEGMENT_BYTES_MIN: u64 = 64 * 1024;
/// Largest segment a log can hold: positions inside a segment are `u32`.
const SEGMENT_BYTES_MAX_LIMIT: u64 = weir_storage::config::SEGMENT_BYTES_MAX_LIMIT;
/// Upper bound on shard count, far above any machine this runs on, to catch typos.
const CORES_MAX: usize = 1024;

impl Config {
    /// Resolves flags over the optional `--config` file over defaults, then validates.
    ///
    /// `cpus_available` is the default shard count (the CPUs this process may run on).
    pub fn resolve(flags: Flags, cpus_available: usize) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let config = merge(flags, file, cpus_available);
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, value: impl ToString, reason: &str) -> ConfigError {
            ConfigError::Invalid {
                key,
                value: value.to_string(),
                reason: reason.to_string(),
            }
        }
        if self.cores == 0 || self.cores > CORES_MAX {
            return Err(invalid("cores", self.cores, "must be 1..=1024"));
        }
        self.validate_ports()?;
        if self.frame_bytes_max < FRAME_BYTES_MIN {
            return Err(invalid(
                "frame-bytes-max",
                self.frame_bytes_max,
                "must be at least 4096",
            ));
        }
        if self.batch_bytes_max == 0 || self.batch_bytes_max > self.frame_bytes_max {
            return Err(invalid(
                "batch-bytes-max",
                self.batch_bytes_max,
                "must be 1..=frame-bytes-max",
            ));
        }
        if self.connections_max == 0 {
            return Err(invalid("connections-max", 0, "must be at least 1"));
        }
        if self.inflight_requests_max == 0 {
            return Err(invalid("inflight-requests-max", 0, "must be at least 1"));
        }
        if self.produce_memory_bytes_max < u64::from(self.frame_bytes_max) {
            return Err(invalid(
                "produce-memory-bytes-max",
                self.produce_memory_bytes_max,
                "must be at least frame-bytes-max, or one large produce could never be admitted",
            ));
        }
        if self.frame_read_timeout_ms == 0 {
            return Err(invalid("frame-read-timeout-ms", 0, "must be at least 1"));
        }
        if self.write_buffer_bytes_max < WRITE_BUFFER_BYTES_MIN
            || usize::try_from(self.write_buffer_bytes_max).is_err()
        {
            return Err(invalid(
                "write-buffer-bytes-max",
                self.write_buffer_bytes_max,
                "must be at least 4096 (one file-system block) and fit in memory",
            ));
        }
        if self.fetch_response_bytes_max == 0 {
            return Err(invalid("fetch-response-bytes-max", 0, "must be at least 1"));
        }
        if self.topic_partitions_max == 0 {
            return Err(invalid("topic-partitions-max", 0, "must be at least 1"));
        }
        if self.forward_queue_depth == 0 {
            return Err(invalid("forward-queue-depth", 0, "must be at least 1"));
        }
        if self.maintenance_interval_ms == 0 {
            return Err(invalid("maintenance-interval-ms", 0, "must be at least 1"));
        }
        if self.producers_per_partition_max == 0 {
            return Err(invalid(
                "producers-per-partition-max",
                0,
                "must be at least 1",
            ));
        }
        if self.producer_idle_ms_max == 0 {
            return Err(invalid("producer-idle-ms-max", 0, "must be at least 1"));
        }
        self.validate_groups()?;
        self.validate_topic_defaults()
    }

    /// Checks the consumer-group limits.
    fn validate_groups(&self) -> Result<(), ConfigError> {
        let groups = &self.groups;
        let invalid = |key: &'static str, value: u32, reason: &str| ConfigError::Invalid {
            key,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if groups.session_timeout_ms_min == 0 {
            return Err(invalid(
                "group-session-timeout-ms-min",
                0,
                "must be at least 1",
            ));
        }
        if groups.session_timeout_ms_max < groups.session_timeout_ms_min {
            return Err(invalid(
                "group-session-timeout-ms-max",
                groups.session_timeout_ms_max,
                "must be at least group-session-timeout-ms-min",
            ));
        }
        if groups.members_per_group_max == 0 {
            return Err(invalid("group-members-max", 0, "must be at least 1"));
        }
        if groups.groups_per_shard_max == 0 {
            return Err(invalid("groups-per-shard-max", 0, "must be at least 1"));
        }
        if groups.offsets_retention_ms == 0 {
            return Err(invalid(
                "group-offsets-retention-ms",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The ports of the shards' direct listeners, first to last, or `None` when they are
    /// ephemeral (`shard_port_base` or the shared port is 0). Needs a validated `cores`.
    pub fn shard_ports(&self) -> Option<std::ops::RangeInclusive<u32>> {
        if self.shard_port_base == 0 || self.listen.port() == 0 {
            return None;
        }
        let first = u32::from(self.shard_port_base);
        // `cores` is 1..=CORES_MAX, so this neither underflows nor overflows.
        Some(first..=first + self.cores as u32 - 1)
    }

    /// Checks that the shared, direct and metrics ports exist and do not collide.
    fn validate_ports(&self) -> Result<(), ConfigError> {
        let shard_ports = self.shard_ports();
        if let Some(ports) = &shard_ports {
            if *ports.end() > u32::from(u16::MAX) {
                return Err(ConfigError::Invalid {
                    key: "shard-port-base",
                    value: self.shard_port_base.to_string(),
                    reason: format!(
                        "shard i listens on shard-port-base + i, so the last of {} shards would \
                         need port {}, past 65535",
                        self.cores,
                        ports.end()
                    ),
                });
            }
            if ports.contains(&u32::from(self.listen.port())) {
                return Err(ConfigError::Invalid {
                    key: "shard-port-base",
                    value: self.shard_port_base.to_string(),
                    reason: format!(
                        "the shard ports {}..={} include the shared port of --listen {}",
                        ports.start(),
                        ports.end(),
                        self.listen
                    ),
                });
            }
        }
        let metrics_port = self.metrics_listen.port();
        if metrics_port == 0 || !addresses_overlap(self.metrics_listen.ip(), self.listen.ip()) {
            return Ok(());
        }
        let collision = if metrics_port == self.listen.port() {
            Some("is the shared port of --listen".to_string())
        } else {
            shard_ports
                .filter(|ports| ports.contains(&u32::from(metrics_port)))
                .map(|ports| {
                    format!(
                        "is the direct port of shard {} (shard ports are {}..={})",
                        u32::from(metrics_port) - ports.start(),
                        ports.start(),
                        ports.end()
                    )
                })
        };
        match collision {
            Some(reason) => Err(ConfigError::Invalid {
                key: "metrics-listen",
                value: self.metrics_listen.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    fn validate_topic_defaults(&self) -> Result<(), ConfigError> {
        self.topic_defaults
            .check(self.topic_partitions_max, self.batch_bytes_max)
            .map_err(|error| ConfigError::Invalid {
                key: match error.key {
                    "partitions" => "default-partitions",
                    "segment-bytes-max" => "default-segment-bytes-max",
                    _ => "default-topic",
                },
                value: error.value,
                reason: error.reason,
            })
    }
}

/// A topic setting outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic setting {key} = {value}: {reason}")]
pub struct TopicConfigError {
    /// The setting's name.
    pub key: &'static str,
    /// The rejected value, as text.
    pub value: String,
    /// What the allowed range is.
    pub reason: String,
}

impl TopicConfig {
    /// Checks the settings against the broker's limits.
    pub fn check(
        &self,
        topic_partitions_max: u32,
        batch_bytes_max: u32,
    ) -> Result<(), TopicConfigError> {
        if self.partitions == 0 || self.partitions > topic_partitions_max {
            return Err(TopicConfigError {
                key: "partitions",
                value: self.partitions.to_string(),
                reason: format!("must be 1..={topic_partitions_max}"),
            });
        }
        if self.segment_bytes_max < SEGMENT_BYTES_MIN.max(u64::from(batch_bytes_max))
            || self.segment_bytes_max > SEGMENT_BYTES_MAX_LIMIT
        {
            return Err(TopicConfigError {
                key: "segment-bytes-max",
                value: self.segment_bytes_max.to_string(),
                reason: format!(
                    "must be at least {SEGMENT_BYTES_MIN}, hold one batch of {batch_bytes_max} \
                     bytes, and be at most {SEGMENT_BYTES_MAX_LIMIT} (segment positions are u32)"
                ),
            });
        }
        Ok(())
    }
}

/// Whether sockets bound to `left` and `right` at the same port would collide: the same IP, or
/// either one a wildcard (a wildcard socket takes the port on every interface; conservatively,
/// whatever the address family, since an IPv6 wildcard is dual-stack by default on Linux).
fn addresses_overlap(left: IpAddr, right: IpAddr) -> bool {
    left == right || left.is_unspecified() || right.is_unspecified()
}

/// The number of shards to start by default: the CPUs this process is allowed to run on.
pub fn default_cores() -> usize {
    std::thread::available_parallelism()
        .map(|count| count.get())
        .unwrap_or(1)
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(path, &text)
}

fn parse_file(path: &Path, text: &str) -> Result<FileSettings, ConfigError> {
    toml::from_str(text).map_err(|error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: error.message().to_string(),
    })
}

fn parse_addr(text: &str) -> SocketAddr {
    // The defaults are literals checked by a unit test.
    text.parse()
        .unwrap_or_else(|_| unreachable!("default address {text} is valid"))
}

fn merge(flags: Flags, file: FileSettings, cpus_available: usize) -> Config {
    let frame_bytes_max = flags
        .frame_bytes_max
        .or(file.frame_bytes_max)
        .unwrap_or(16 << 20);
    Config {
        data_dir: flags
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        listen: flags
            .listen
            .or(file.listen)
            .unwrap_or_else(|| parse_addr(DEFAULT_LISTEN)),
        shard_port_base: flags
            .shard_port_base
            .or(file.shard_port_base)
            .unwrap_or(DEFAULT_SHARD_PORT_BASE),
        metrics_listen: flags
            .metrics_listen
            .or(file.metrics_listen)
            .unwrap_or_else(|| parse_addr(DEFAULT_METRICS_LISTEN)),
        cores: flags.cores.or(file.cores).unwrap_or(cpus_available),
        ready_file: flags.ready_file.or(file.ready_file),
        frame_bytes_max,
        batch_bytes_max: flags
            .batch_bytes_max
            .or(file.batch_bytes_max)
            .unwrap_or_else(|| frame_bytes_max.min(8 << 20)),
        connections_max: flags
            .connections_max
            .or(file.connections_max)
            .unwrap_or(1024),
        inflight_requests_max: flags
            .inflight_requests_max
            .or(file.inflight_requests_max)
            .unwrap_or(64),
        produce_memory_bytes_max: flags
            .produce_memory_bytes_max
            .or(file.produce_memory_bytes_max)
            .unwrap_or(128 * MIB),
        frame_read_timeout_ms: flags
            .frame_read_timeout_ms
            .or(file.frame_read_timeout_ms)
            .unwrap_or(30_000),
        tail_cache_bytes_max: flags
            .tail_cache_bytes_max
            .or(file.tail_cache_bytes_max)
            .unwrap_or(64 * MIB),
        write_buffer_bytes_max: flags
            .write_buffer_bytes_max
            .or(file.write_buffer_bytes_max)
            .unwrap_or(16 * MIB),
        fetch_response_bytes_max: flags
            .fetch_response_bytes_max
            .or(file.fetch_response_bytes_max)
            .unwrap_or(16 << 20),
        fetch_wait_ms_max: flags
            .fetch_wait_ms_max
            .or(file.fetch_wait_ms_max)
            .unwrap_or(30_000),
        topic_partitions_max: flags
            .topic_partitions_max
            .or(file.topic_partitions_max)
            .unwrap_or(4096),
        forward_queue_depth: flags
            .forward_queue_depth
            .or(file.forward_queue_depth)
            .unwrap_or(256),
        maintenance_interval_ms: flags
            .maintenance_interval_ms
            .or(file.maintenance_interval_ms)
            .unwrap_or(1000),
        shutdown_timeout_ms: flags
            .shutdown_timeout_ms
            .or(file.shutdown_timeout_ms)
            .unwrap_or(10_000),
        producers_per_partition_max: flags
            .producers_per_partition_max
            .or(file.producers_per_partition_max)
            .unwrap_or(crate::producer_state::PRODUCERS_PER_PARTITION_MAX_DEFAULT as u32),
        producer_idle_ms_max: flags
            .producer_idle_ms_max
            .or(file.producer_idle_ms_max)
            .unwrap_or(crate::producer_state::PRODUCER_IDLE_MS_MAX_DEFAULT),
        groups: GroupLimits {
            session_timeout_ms_min: flags
                .group_session_timeout_ms_min
                .or(file.group_session_timeout_ms_min)
                .unwrap_or(6_000),
            session_timeout_ms_max: flags
                .group_session_timeout_ms_max
                .or(file.group_session_timeout_ms_max)
                .unwrap_or(300_000),
            members_per_group_max: flags
                .group_members_max
                .or(file.group_members_max)
                .unwrap_or(1_000),
            groups_per_shard_max: flags
                .groups_per_shard_max
                .or(file.groups_per_shard_max)
                .unwrap_or(10_000),
            initial_rebalance_delay_ms: flags
                .group_initial_rebalance_delay_ms
                .or(file.group_initial_rebalance_delay_ms)
                .unwrap_or(0),
            offsets_retention_ms: flags
                .group_offsets_retention_ms
                .or(file.group_offsets_retention_ms)
                .unwrap_or(604_800_000),
        },
        group_lag_metrics_partitions_max: flags
            .group_lag_metrics_partitions_max
            .or(file.group_lag_metrics_partitions_max)
            .unwrap_or(10_000),
        topic_defaults: TopicConfig {
            partitions: flags
                .default_partitions
                .or(file.default_partitions)
                .unwrap_or(1),
            flush: flags
                .default_flush
                .or(file.default_flush)
                .unwrap_or(FlushSetting::Always),
            retention_bytes_max: flags
                .default_retention_bytes_max
                .or(file.default_retention_bytes_max)
                .unwrap_or(0),
            retention_ms_max: flags
                .default_retention_ms_max
                .or(file.default_retention_ms_max)
                .unwrap_or(7 * 24 * 3600 * 1000),
            segment_bytes_max: flags
                .default_segment_bytes_max
                .or(file.default_segment_bytes_max)
                .unwrap_or(64 * MIB),
            segment_ms_max: flags
                .default_segment_ms_max
                .or(file.default_segment_ms_max)
                .unwrap_or(7 * 24 * 3600 * 1000),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut all = vec!["weir-broker"];
        all.extend_from_slice(args);
        Flags::try_parse_from(all).expect("flags parse")
    }

    #[test]
    fn defaults_are_laptop_friendly_and_valid() {
        let config = Config::resolve(flags(&[]), 2).expect("defaults are valid");
        assert_eq!(config.data_dir, PathBuf::from("./weir-data"));
        assert_eq!(config.listen, "127.0.0.1:9347".parse().unwrap());
        assert_eq!(config.shard_port_base, 9350);
        assert_eq!(config.shard_ports(), Some(9350..=9351));
        assert_eq!(config.metrics_listen, "127.0.0.1:9348".parse().unwrap());
        assert_eq!(config.cores, 2);
        assert_eq!(config.topic_defaults.flush, FlushSetting::Always);
        assert_eq!(config.topic_defaults.partitions, 1);
        assert_eq!(config.ready_file, None);
        assert_eq!(config.producers_per_partition_max, 10_000);
        assert_eq!(config.producer_idle_ms_max, 24 * 60 * 60 * 1000);
        assert_eq!(config.write_buffer_bytes_max, 16 << 20);
    }

    #[test]
    fn flush_setting_parses_and_prints() {
        let cases = [
            ("always", Ok(FlushSetting::Always)),
            ("never", Ok(FlushSetting::Never)),
            (
                "interval:250",
                Ok(FlushSetting::Interval { interval_ms: 250 }),
            ),
        ];
        for (text, expected) in cases {
            let parsed: Result<FlushSetting, String> = text.parse();
            assert_eq!(parsed, expected);
            assert_eq!(parsed.unwrap().to_string(), text);
        }
        for bad in [
            "",
            "sometimes",
            "interval:",
            "interval:0",
            "interval:-1",
            "interval:1x",
        ] {
            assert!(
                bad.parse::<FlushSetting>().is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "data-dir = \"/from/file\"\ncores = 3\nframe-bytes-max = 65536\n\
             default-flush = \"interval:50\"\nlisten = \"127.0.0.1:0\"\n\
             producers-per-partition-max = 7\nproducer-idle-ms-max = 60000\n",
        )
        .unwrap();
        let config = Config::resolve(
            flags(&["--config", path.to_str().unwrap(), "--cores", "1"]),
            2,
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.cores, 1, "flag wins over file");
        assert_eq!(config.frame_bytes_max, 65536);
        assert_eq!(
            config.batch_bytes_max, 65536,
            "batch limit follows a small frame limit"
        );
        assert_eq!(
            config.topic_defaults.flush,
            FlushSetting::Interval { interval_ms: 50 }
        );
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.producers_per_partition_max, 7);
        assert_eq!(config.producer_idle_ms_max, 60_000);
    }

    #[test]
    fn group_limits_come_from_flags_and_file_with_kafka_like_defaults() {
        let defaults = Config::resolve(flags(&[]), 1).unwrap();
        assert_eq!(defaults.groups, GroupLimits::default());
        assert_eq!(
            (
                defaults.groups.session_timeout_ms_min,
                defaults.groups.session_timeout_ms_max,
                defaults.groups.members_per_group_max,
                defaults.groups.initial_rebalance_delay_ms,
                defaults.groups.offsets_retention_ms,
            ),
            (6_000, 300_000, 1_000, 0, 604_800_000)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "group-session-timeout-ms-min = 100\ngroup-members-max = 3\n\
             groups-per-shard-max = 7\ngroup-initial-rebalance-delay-ms = 250\n\
             group-lag-metrics-partitions-max = 5\ngroup-offsets-retention-ms = 90000\n",
        )
        .unwrap();
        let config = Config::resolve(
            flags(&[
                "--config",
                path.to_str().unwrap(),
                "--group-session-timeout-ms-max",
                "1000",
            ]),
            1,
        )
        .unwrap();
        let expected = GroupLimits {
            session_timeout_ms_min: 100,
            session_timeout_ms_max: 1_000,
            members_per_group_max: 3,
            groups_per_shard_max: 7,
            initial_rebalance_delay_ms: 250,
            offsets_retention_ms: 90_000,
        };
        assert_eq!(config.groups, expected);
        assert_eq!(config.group_lag_metrics_partitions_max, 5);
    }

    #[test]
    fn unknown_file_key_is_a_parse_error_naming_the_file() {
        let error = parse_file(Path::new("x.toml"), "frame-bytes = 5\n").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("x.toml") && text.contains("frame-bytes"),
            "{text}"
        );
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let error = Config::resolve(flags(&["--config", "/nonexistent/weir.toml"]), 1).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    }

    #[test]
    fn out_of_range_settings_are_rejected_with_their_key() {
        let cases: &[(&[&str], &str)] = &[
            (&["--cores", "0"], "cores"),
            (&["--frame-bytes-max", "100"], "frame-bytes-max"),
            (
                &["--frame-bytes-max", "8192", "--batch-bytes-max", "9000"],
                "batch-bytes-max",
            ),
            (&["--connections-max", "0"], "connections-max"),
            (
                &["--write-buffer-bytes-max", "4095"],
                "write-buffer-bytes-max",
            ),
            (&["--inflight-requests-max", "0"], "inflight-requests-max"),
            (
                &["--produce-memory-bytes-max", "10"],
                "produce-memory-bytes-max",
            ),
            (&["--default-partitions", "0"], "default-partitions"),
            (
                &["--topic-partitions-max", "4", "--default-partitions", "5"],
                "default-partitions",
            ),
            (
                &["--default-segment-bytes-max", "1000"],
                "default-segment-bytes-max",
            ),
            (
                &["--default-segment-bytes-max", "4294967296"],
                "default-segment-bytes-max",
            ),
            (&["--shard-port-base", "65535"], "shard-port-base"),
            (
                &["--cores", "1024", "--shard-port-base", "64513"],
                "shard-port-base",
            ),
            (&["--listen", "127.0.0.1:9351"], "shard-port-base"),
            (
                &["--listen", "127.0.0.1:9000", "--shard-port-base", "8999"],
                "shard-port-base",
            ),
            (&["--metrics-listen", "127.0.0.1:9347"], "metrics-listen"),
            (&["--metrics-listen", "127.0.0.1:9350"], "metrics-listen"),
            (&["--metrics-listen", "127.0.0.1:9351"], "metrics-listen"),
            (&["--metrics-listen", "0.0.0.0:9351"], "metrics-listen"),
            (
                &[
                    "--listen",
                    "0.0.0.0:9347",
                    "--metrics-listen",
                    "127.0.0.1:9347",
                ],
                "metrics-listen",
            ),
            (
                &["--maintenance-interval-ms", "0"],
                "maintenance-interval-ms",
            ),
            (
                &["--producers-per-partition-max", "0"],
                "producers-per-partition-max",
            ),
            (&["--producer-idle-ms-max", "0"], "producer-idle-ms-max"),
            (
                &["--group-session-timeout-ms-min", "0"],
                "group-session-timeout-ms-min",
            ),
            (
                &["--group-session-timeout-ms-max", "5000"],
                "group-session-timeout-ms-max",
            ),
            (&["--group-members-max", "0"], "group-members-max"),
            (&["--groups-per-shard-max", "0"], "groups-per-shard-max"),
            (
                &["--group-offsets-retention-ms", "0"],
                "group-offsets-retention-ms",
            ),
        ];
        for (args, key) in cases {
            let error = Config::resolve(flags(args), 2).unwrap_err();
            match error {
                ConfigError::Invalid { key: got, .. } => assert_eq!(got, *key, "{args:?}"),
                other => panic!("{args:?}: expected Invalid, got {other}"),
            }
        }
    }

    #[test]
    fn ports_that_do_not_collide_are_accepted() {
        let cases: &[(&[&str], Option<std::ops::RangeInclusive<u32>>)] = &[
            // The largest shard count still fits below 65536 from the default base.
            (&["--cores", "1024"], Some(9350..=10373)),
            (&["--shard-port-base", "64534"], Some(64534..=64535)),
            (&["--listen", "127.0.0.1:9352"], Some(9350..=9351)),
            (&["--listen", "127.0.0.1:9349"], Some(9350..=9351)),
            // Ephemeral direct ports collide with nothing.
            (
                &[
                    "--shard-port-base",
                    "0",
                    "--metrics-listen",
                    "127.0.0.1:9350",
                ],
                None,
            ),
            (
                &[
                    "--listen",
                    "127.0.0.1:0",
                    "--metrics-listen",
                    "127.0.0.1:9350",
                ],
                None,
            ),
            (
                &["--listen", "127.0.0.1:0", "--shard-port-base", "65535"],
                None,
            ),
            // Another IP, or an ephemeral metrics port, does not collide.
            (&["--metrics-listen", "127.0.0.2:9350"], Some(9350..=9351)),
            (&["--metrics-listen", "127.0.0.1:0"], Some(9350..=9351)),
            (&["--metrics-listen", "127.0.0.1:9352"], Some(9350..=9351)),
        ];
        for (args, shard_ports) in cases {
            let config = Config::resolve(flags(args), 2)
                .unwrap_or_else(|error| panic!("{args:?} must be valid: {error}"));
            assert_eq!(&config.shard_ports(), shard_ports, "{args:?}");
        }
    }

    #[test]
    fn shard_port_base_is_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "shard-port-base = 20000
",
        )
        .unwrap();
        let config = Config::resolve(flags(&["--config", path.to_str().unwrap()]), 3).unwrap();
        assert_eq!(config.shard_ports(), Some(20000..=20002));
        let config = Config::resolve(
            flags(&["--config", path.to_str().unwrap(), "--shard-port-base", "0"]),
            3,
        )
        .unwrap();
        assert_eq!(config.shard_ports(), None, "the flag wins over the file");
    }

    #[test]
    fn bad_flag_values_fail_to_parse() {
        let mut all = vec!["weir-broker", "--default-flush", "sometimes"];
        assert!(Flags::try_parse_from(all.clone()).is_err());
        all[2] = "interval:10";
        assert!(Flags::try_parse_from(all).is_ok());
        assert!(Flags::try_parse_from(["weir-broker", "--listen", "nowhere"]).is_err());
        assert!(Flags::try_parse_from(["weir-broker", "--shard-port-base", "65536"]).is_err());
    }

    #[test]
    fn help_names_every_setting_with_its_unit() {
        use clap::CommandFactory;
        let help = Flags::command().render_long_help().to_string();
        for needle in [
            "--frame-bytes-max <BYTES>",
            "--produce-memory-bytes-max <BYTES>",
            "--fetch-wait-ms-max <MS>",
            "--connections-max <COUNT>",
            "--ready-file <PATH>",
            "--default-flush <POLICY>",
            "--shard-port-base <PORT>",
            "--producers-per-partition-max <COUNT>",
            "--producer-idle-ms-max <MS>",
            "--write-buffer-bytes-max <BYTES>",
            "--group-session-timeout-ms-min <MS>",
            "--group-members-max <COUNT>",
            "--group-initial-rebalance-delay-ms <MS>",
            "--group-offsets-retention-ms <MS>",
            "[default: 604800000]",
            "[default: 9350]",
            "[default: 127.0.0.1:9347]",
            "[default: 127.0.0.1:9348]",
        ] {
            assert!(help.contains(needle), "help lacks {needle}:\n{help}");
        }
    }
}
