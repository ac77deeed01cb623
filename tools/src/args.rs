//! The `weir` command line grammar: subcommands, flags and the parsers of their values.
//!
//! Parsing is kept apart from running so that every flag and value form is unit-tested without a
//! broker. Invariant: a command line that parses names everything the command needs; the runner
//! does no further string parsing of its own.

use clap::{Args, Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use weir_proto::wire::Limit;

/// The broker address used when neither `--broker` nor `WEIR_BROKER` is given.
pub const DEFAULT_BROKER: &str = "127.0.0.1:9347";

/// Command line for the Weir log broker: topics, producing and consuming.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    /// The broker to bootstrap from (host:port); the client then connects to each partition's
    /// owning shard directly.
    #[arg(long, global = true, env = "WEIR_BROKER", default_value = DEFAULT_BROKER)]
    pub broker: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Produce records to a topic, one per line of standard input.
    Produce(ProduceArgs),
    /// Consume records from a topic and print them, one per line.
    Consume(ConsumeArgs),
    /// List, describe and delete consumer groups: members, committed offsets and lag.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Generate load with producers and consumers and report throughput, latency percentiles
    /// (produce-ack and end-to-end), and the broker's forwarded requests and CPU per record.
    Bench(Box<crate::bench::BenchArgs>),
    /// Fit the Universal Scalability Law to measured throughput (`fit`, needs no broker), or
    /// measure it with `weir bench` at several levels of concurrency and fit it (`sweep`).
    #[command(subcommand)]
    Usl(crate::usl::UslCommand),
}

/// The `weir topic` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateTopicArgs),
    /// List the topics.
    List,
    /// Show a topic's configuration and, per partition, its owner shard and log bounds.
    Describe {
        /// The topic's name.
        name: String,
    },
    /// Delete a topic and all its records.
    Delete {
        /// The topic's name.
        name: String,
    },
}

/// The `weir groups` subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List the consumer groups: state, member count and assignment strategy.
    List,
    /// Show a group's members with their partitions and, per partition, the owner, committed
    /// offset, log end and lag (records, and seconds at the group's recent consume rate).
    Describe {
        /// The group's id.
        group: String,
    },
    /// Delete groups and their committed offsets; only a group without members can be deleted.
    /// Prints one line per group and fails if any group was not deleted.
    Delete {
        /// The groups' ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

/// Arguments of `weir topic create`. Every setting left out takes the broker's default (its
/// `--default-*` settings); `weir topic describe` shows what the topic got.
#[derive(Debug, Args)]
pub struct CreateTopicArgs {
    /// The topic's name.
    pub name: String,
    /// The number of partitions [default: the broker's --default-partitions].
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: Option<u32>,
    /// When appended records are made durable: `always` (fdatasync before acknowledging),
    /// `interval:<ms>`, or `never` (the OS decides) [default: the broker's --default-flush].
    #[arg(long, value_name = "POLICY", value_parser = parse_flush)]
    pub flush: Option<FlushArg>,
    /// Delete the oldest segments once a partition holds more than this many bytes, or
    /// `unlimited` [default: the broker's --default-retention-bytes-max].
    #[arg(long, value_name = "BYTES|unlimited", value_parser = parse_limit)]
    pub retention_bytes: Option<Limit>,
    /// Delete segments whose records are all older than this many milliseconds, or `unlimited`
    /// [default: the broker's --default-retention-ms-max].
    #[arg(long, value_name = "MS|unlimited", value_parser = parse_limit)]
    pub retention_ms: Option<Limit>,
    /// Roll to a new segment file once the active one reaches this many bytes
    /// [default: the broker's --default-segment-bytes-max].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub segment_bytes: Option<u64>,
    /// Roll to a new segment file once the active one is this many milliseconds old, or
    /// `unlimited` to roll by size only [default: the broker's --default-segment-ms-max].
    #[arg(long, value_name = "MS|unlimited", value_parser = parse_limit)]
    pub segment_ms: Option<Limit>,
}

/// Parses a limit: `unlimited`, or a whole number of at least 1.
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    if text == "unlimited" {
        return Ok(Limit::Unlimited);
    }
    match text.parse::<u64>() {
        Ok(0) => Err("a limit of 0 would keep nothing; for no limit say unlimited".to_string()),
        Ok(value) => Ok(Limit::Value(value)),
        Err(_) => Err(format!(
            "expected a whole number or unlimited, got {text:?}"
        )),
    }
}

/// The `--flush` policy of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushArg {
    /// fdatasync before every acknowledgement (group commit).
    Always,
    /// fdatasync at most every so many milliseconds.
    IntervalMs(u64),
    /// Never fdatasync explicitly.
    Never,
}

/// Parses `always`, `never` or `interval:<ms>`.
pub fn parse_flush(text: &str) -> Result<FlushArg, String> {
    match text {
        "always" => Ok(FlushArg::Always),
        "never" => Ok(FlushArg::Never),
        _ => {
            let milliseconds = text
                .strip_prefix("interval:")
                .ok_or_else(|| format!("expected always, never or interval:<ms>, got {text:?}"))?;
            let milliseconds: u64 = milliseconds.parse().map_err(|_| {
                format!("interval:<ms> needs a whole number of milliseconds, got {milliseconds:?}")
            })?;
            if milliseconds == 0 {
                return Err("interval:<ms> needs at least 1 millisecond".to_string());
            }
            Ok(FlushArg::IntervalMs(milliseconds))
        }
    }
}

/// Arguments of `weir produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic to produce to.
    pub topic: String,
    /// Split each line at the first occurrence of this separator into key and value; lines
    /// without it are produced without a key.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// How long a batch waits for more records before it is sent.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// The largest batch in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub batch_bytes_max: u64,
    /// Do not wait for the broker's acknowledgement (acks=none).
    #[arg(long)]
    pub no_acks: bool,
}

/// Arguments of `weir consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic to consume from.
    pub topic: String,
    /// Print `key<SEP>value` instead of only the value.
    #[arg(long)]
    pub print_key: bool,
    /// The separator printed between key and value with `--print-key`.
    #[arg(long, default_value = "\t")]
    pub key_separator: String,
    /// Where to start: `earliest`, `latest`, an offset, or an RFC 3339 time
    /// (e.g. 2024-05-01T12:00:00Z). Default: earliest, or the group's committed offset with
    /// `--group`.
    #[arg(long, value_parser = parse_from)]
    pub from: Option<FromArg>,
    /// Consume only this partition (default: all).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Exit after printing this many records.
    #[arg(long)]
    pub max: Option<u64>,
    /// Join this consumer group: the group's coordinator assigns this process a share of the
    /// topic's partitions (rebalancing as members come and go), each resumed from the group's
    /// committed offset; the offsets after the printed records are committed as it goes, and
    /// the group is left on exit. Not with `--partition`; `--from` may only be `earliest` or
    /// `latest` (where partitions without a committed offset start).
    #[arg(long)]
    pub group: Option<String>,
    /// With `--group`: the coordinator gives this member's partitions to the others when it
    /// has not heard from it for this long (within the broker's session timeout bounds).
    #[arg(long, value_name = "MS", requires = "group", value_parser = clap::value_parser!(u32).range(1..))]
    pub session_timeout_ms: Option<u32>,
    /// Exit once no record has arrived for this many milliseconds (with `--group`, counted
    /// from when the member last got its partitions).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

/// The `--from` starting point of `weir consume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromArg {
    /// The first retained record.
    Earliest,
    /// Only records produced from now on.
    Latest,
    /// This offset.
    Offset(i64),
    /// The first record whose timestamp is at or after this time, in milliseconds since the Unix
    /// epoch.
    TimestampMs(i64),
}

/// Parses `earliest`, `latest`, a non-negative offset, or an RFC 3339 time.
pub fn parse_from(text: &str) -> Result<FromArg, String> {
    match text {
        "earliest" => return Ok(FromArg::Earliest),
        "latest" => return Ok(FromArg::Latest),
        _ => {}
    }
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map(FromArg::Offset)
            .map_err(|_| format!("offset {text} is too large"));
    }
    let time = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        format!("expected earliest, latest, an offset or an RFC 3339 time (2024-05-01T12:00:00Z), got {text:?}")
    })?;
    let milliseconds = time.unix_timestamp_nanos() / 1_000_000;
    if milliseconds < 0 {
        return Err(format!("time {text} is before the Unix epoch"));
    }
    i64::try_from(milliseconds)
        .map(FromArg::TimestampMs)
        .map_err(|_| format!("time {text} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("weir").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn from_accepts_each_documented_form() {
        let cases = [
            ("earliest", FromArg::Earliest),
            ("latest", FromArg::Latest),
            ("0", FromArg::Offset(0)),
            ("42", FromArg::Offset(42)),
            ("9223372036854775807", FromArg::Offset(i64::MAX)),
            ("1970-01-01T00:00:00Z", FromArg::TimestampMs(0)),
            (
                "2024-05-01T12:00:00Z",
                FromArg::TimestampMs(1_714_564_800_000),
            ),
            (
                "2024-05-01T12:00:00.250Z",
                FromArg::TimestampMs(1_714_564_800_250),
            ),
            (
                "2024-05-01T14:00:00+02:00",
                FromArg::TimestampMs(1_714_564_800_000),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_from(text), Ok(expected), "--from {text}");
        }
    }

    #[test]
    fn from_rejects_everything_else() {
        for text in [
            "",
            "-1",
            "first",
            "Earliest",
            "12abc",
            "9223372036854775808",
            "2024-05-01",
            "2024-05-01 12:00:00",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(
                parse_from(text).is_err(),
                "--from {text:?} should be rejected"
            );
        }
    }

    #[test]
    fn flush_accepts_each_documented_form() {
        assert_eq!(parse_flush("always"), Ok(FlushArg::Always));
        assert_eq!(parse_flush("never"), Ok(FlushArg::Never));
        assert_eq!(parse_flush("interval:250"), Ok(FlushArg::IntervalMs(250)));
        for text in [
            "",
            "sometimes",
            "interval:",
            "interval:0",
            "interval:-5",
            "interval:1s",
        ] {
            assert!(
                parse_flush(text).is_err(),
                "--flush {text:?} should be rejected"
            );
        }
    }

    #[test]
    fn limit_accepts_unlimited_and_positive_numbers_only() {
        assert_eq!(parse_limit("unlimited"), Ok(Limit::Unlimited));
        assert_eq!(parse_limit("1"), Ok(Limit::Value(1)));
        assert_eq!(
            parse_limit("18446744073709551615"),
            Ok(Limit::Value(u64::MAX))
        );
        for text in [
            "",
            "0",
            "-1",
            "Unlimited",
            "none",
            "1e6",
            "10MB",
            "18446744073709551616",
        ] {
            assert!(parse_limit(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn topic_create_needs_only_a_name() {
        let cli = parse(&["topic", "create", "events"]).expect("valid command line");
        let Command::Topic(TopicCommand::Create(create)) = cli.command else {
            panic!("expected topic create, got {:?}", cli.command);
        };
        assert_eq!(create.name, "events");
        assert_eq!(create.partitions, None);
        assert_eq!(create.flush, None);
        assert_eq!(create.retention_bytes, None);
        assert_eq!(create.retention_ms, None);
        assert_eq!(create.segment_bytes, None);
        assert_eq!(create.segment_ms, None);
    }

    #[test]
    fn topic_create_accepts_unlimited_limits() {
        let cli = parse(&[
            "topic",
            "create",
            "events",
            "--retention-bytes",
            "unlimited",
            "--retention-ms",
            "unlimited",
            "--segment-ms",
            "unlimited",
        ])
        .expect("valid command line");
        let Command::Topic(TopicCommand::Create(create)) = cli.command else {
            panic!("expected topic create, got {:?}", cli.command);
        };
        assert_eq!(create.retention_bytes, Some(Limit::Unlimited));
        assert_eq!(create.retention_ms, Some(Limit::Unlimited));
        assert_eq!(create.segment_ms, Some(Limit::Unlimited));
    }

    #[test]
    fn topic_create_parses_all_options() {
        let cli = parse(&[
            "--broker",
            "10.0.0.1:1",
            "topic",
            "create",
            "events",
            "--partitions",
            "8",
            "--flush",
            "interval:100",
            "--retention-bytes",
            "1000000",
            "--retention-ms",
            "3600000",
            "--segment-bytes",
            "65536",
            "--segment-ms",
            "600000",
        ])
        .expect("valid command line");
        assert_eq!(cli.broker, "10.0.0.1:1");
        let Command::Topic(TopicCommand::Create(create)) = cli.command else {
            panic!("expected topic create, got {:?}", cli.command);
        };
        assert_eq!(create.name, "events");
        assert_eq!(create.partitions, Some(8));
        assert_eq!(create.flush, Some(FlushArg::IntervalMs(100)));
        assert_eq!(create.retention_bytes, Some(Limit::Value(1_000_000)));
        assert_eq!(create.retention_ms, Some(Limit::Value(3_600_000)));
        assert_eq!(create.segment_bytes, Some(65_536));
        assert_eq!(create.segment_ms, Some(Limit::Value(600_000)));
    }

    #[test]
    fn topic_create_rejects_zero_and_unlimited_where_they_mean_nothing() {
        for args in [
            &["--partitions", "0"][..],
            &["--partitions", "-3"],
            &["--partitions", "unlimited"],
            &["--segment-bytes", "0"],
            &["--segment-bytes", "unlimited"],
            &["--retention-bytes", "0"],
            &["--retention-ms", "0"],
            &["--segment-ms", "0"],
        ] {
            let mut line = vec!["topic", "create", "events"];
            line.extend_from_slice(args);
            assert!(parse(&line).is_err(), "{args:?} should be rejected");
        }
    }

    #[test]
    fn topic_create_help_says_what_an_omitted_setting_means() {
        let error = parse(&["topic", "create", "--help"]).expect_err("--help exits through clap");
        let help = error.to_string();
        for needle in [
            "--retention-bytes <BYTES|unlimited>",
            "--segment-ms <MS|unlimited>",
            "the broker's --default-partitions",
            "the broker's --default-flush",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }

    #[test]
    fn broker_flag_goes_after_the_subcommand_too() {
        let cli = parse(&["topic", "list", "--broker", "127.0.0.1:1"]).expect("valid");
        assert_eq!(cli.broker, "127.0.0.1:1");
        assert!(matches!(cli.command, Command::Topic(TopicCommand::List)));
    }

    #[test]
    fn topic_describe_and_delete_take_a_name() {
        let cli = parse(&["topic", "describe", "t"]).expect("valid");
        assert!(
            matches!(cli.command, Command::Topic(TopicCommand::Describe { ref name }) if name == "t")
        );
        let cli = parse(&["topic", "delete", "t"]).expect("valid");
        assert!(
            matches!(cli.command, Command::Topic(TopicCommand::Delete { ref name }) if name == "t")
        );
        assert!(parse(&["topic", "delete"]).is_err());
    }

    #[test]
    fn produce_parses_key_separator_and_defaults() {
        let cli = parse(&["produce", "logs", "--key-separator", "="]).expect("valid");
        let Command::Produce(produce) = cli.command else {
            panic!("expected produce");
        };
        assert_eq!(produce.topic, "logs");
        assert_eq!(produce.key_separator.as_deref(), Some("="));
        assert_eq!(produce.linger_ms, 5);
        assert!(!produce.no_acks);

        let cli = parse(&["produce", "logs"]).expect("valid");
        let Command::Produce(produce) = cli.command else {
            panic!("expected produce");
        };
        assert_eq!(produce.key_separator, None);
    }

    #[test]
    fn consume_parses_every_option() {
        let cli = parse(&[
            "consume",
            "logs",
            "--print-key",
            "--key-separator",
            ":",
            "--from",
            "2024-05-01T12:00:00Z",
            "--partition",
            "3",
            "--max",
            "10",
            "--group",
            "g1",
            "--timeout-ms",
            "500",
        ])
        .expect("valid");
        let Command::Consume(consume) = cli.command else {
            panic!("expected consume");
        };
        assert_eq!(consume.topic, "logs");
        assert!(consume.print_key);
        assert_eq!(consume.key_separator, ":");
        assert_eq!(consume.from, Some(FromArg::TimestampMs(1_714_564_800_000)));
        assert_eq!(consume.partition, Some(3));
        assert_eq!(consume.max, Some(10));
        assert_eq!(consume.group.as_deref(), Some("g1"));
        assert_eq!(consume.timeout_ms, Some(500));
    }

    #[test]
    fn consume_defaults() {
        let cli = parse(&["consume", "logs"]).expect("valid");
        let Command::Consume(consume) = cli.command else {
            panic!("expected consume");
        };
        assert!(!consume.print_key);
        assert_eq!(consume.key_separator, "\t");
        assert_eq!(consume.from, None);
        assert_eq!(consume.partition, None);
        assert_eq!(consume.max, None);
        assert_eq!(consume.group, None);
        assert_eq!(consume.timeout_ms, None);
    }

    #[test]
    fn consume_rejects_a_bad_from() {
        let error = parse(&["consume", "logs", "--from", "yesterday"]).expect_err("invalid --from");
        assert!(error.to_string().contains("RFC 3339"), "{error}");
    }

    #[test]
    fn every_subcommand_has_help() {
        for args in [
            &["--help"][..],
            &["topic", "--help"],
            &["topic", "create", "--help"],
            &["topic", "list", "--help"],
            &["topic", "describe", "--help"],
            &["topic", "delete", "--help"],
            &["produce", "--help"],
            &["consume", "--help"],
        ] {
            let error = parse(args).expect_err("--help exits through clap");
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{args:?}"
            );
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn a_subcommand_is_required() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["topic"]).is_err());
    }
}
