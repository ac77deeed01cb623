//! Running each `weir` command: topic administration, produce from stdin, consume to stdout.
//!
//! Invariants: `produce` holds at most `DELIVERIES_PENDING_MAX` unacknowledged records before it
//! waits for the oldest, and flushes before it exits; `consume` prints each record once, in
//! offset order per partition, and with `--group` commits exactly the offsets after the records
//! it printed (as a group member: auto-commit is off, so a rebalance or exit commits nothing the
//! process did not print), and leaves the group on exit.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use weir_client::{
    Acks, Admin, ClientConfig, Cluster, ConsumedRecord, Consumer, ConsumerConfig, Delivery,
    FlushPolicy, GroupDeletion, GroupDescription, GroupListing, GroupSettings, OffsetReset,
    Producer, ProducerConfig, SeekTo, TopicConfig, TopicSettings,
};

use crate::args::{
    Cli, Command, ConsumeArgs, CreateTopicArgs, FlushArg, FromArg, GroupsCommand, ProduceArgs,
    TopicCommand,
};

/// The most records `weir produce` has sent and not yet seen acknowledged.
const DELIVERIES_PENDING_MAX: usize = 65_536;
/// The longest single poll of `weir consume`, so an idle timeout and Ctrl-C are noticed soon.
const POLL_MS_MAX: u64 = 500;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Topic(command) => {
            run_topic(Admin::new(connect(&cli.broker).await?), command).await
        }
        Command::Produce(produce) => run_produce(connect(&cli.broker).await?, produce).await,
        Command::Consume(consume) => run_consume(connect(&cli.broker).await?, consume).await,
        Command::Groups(command) => {
            run_groups(Admin::new(connect(&cli.broker).await?), command).await
        }
        Command::Bench(bench) => {
            crate::bench::run(&cli.broker, *bench, crate::bench::TableOutput::Stdout)
                .await
                .map(drop)
        }
        // `usl fit` is offline (it must work with no broker running); `usl sweep` runs the
        // bench against `--broker` or against brokers it starts itself.
        Command::Usl(command) => crate::usl::run(&cli.broker, command).await,
    }
}

async fn connect(broker: &str) -> Result<std::sync::Arc<Cluster>> {
    let client = ClientConfig {
        client_id: "weir-cli".to_string(),
        ..ClientConfig::new(broker.to_string())
    };
    Ok(Cluster::connect(client).await?)
}

/// Renders an error chain as one line, the client's typed error first.
pub fn describe(error: &anyhow::Error) -> String {
    if let Some(client_error) = error.downcast_ref::<weir_client::Error>() {
        return describe_client_error(client_error);
    }
    if let Some(weir_client::ProduceError::Request(client_error)) =
        error.downcast_ref::<weir_client::ProduceError>()
    {
        return describe_client_error(client_error);
    }
    format!("{error:#}")
}

fn describe_client_error(error: &weir_client::Error) -> String {
    match error {
        // "connection refused" reads better than the OS's "Connection refused (os error 111)".
        weir_client::Error::Connect { address, source } => {
            use std::io::ErrorKind;
            let reason = match source.kind() {
                kind @ (ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::TimedOut
                | ErrorKind::AddrNotAvailable
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable) => kind.to_string(),
                _ => source.to_string(),
            };
            format!("cannot connect to broker {address}: {reason}")
        }
        other => other.to_string(),
    }
}

async fn run_topic(admin: Admin, command: TopicCommand) -> Result<()> {
    match command {
        TopicCommand::Create(create) => create_topic(&admin, create).await,
        TopicCommand::List => {
            let topics = admin.list_topics().await?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{:<40} {:>10} {:>10}", "TOPIC", "ID", "PARTITIONS")?;
            for topic in topics {
                writeln!(
                    stdout,
                    "{:<40} {:>10} {:>10}",
                    topic.name, topic.topic_id, topic.partition_count
                )?;
            }
            Ok(())
        }
        TopicCommand::Describe { name } => {
            let description = admin.describe_topic(&name).await?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "topic:      {}", description.name)?;
            writeln!(stdout, "id:         {}", description.topic_id)?;
            writeln!(stdout, "partitions: {}", description.partitions.len())?;
            if let Some(config) = &description.config {
                write_config(&mut stdout, config)?;
            }
            writeln!(stdout)?;
            writeln!(
                stdout,
                "{:>9} {:>6} {:>16} {:>16} {:>12}",
                "PARTITION", "SHARD", "LOG_START", "LOG_END", "RECORDS"
            )?;
            for partition in &description.partitions {
                match &partition.error {
                    Some(error) => writeln!(
                        stdout,
                        "{:>9} {:>6} {error}",
                        partition.partition, partition.owner_shard
                    )?,
                    None => writeln!(
                        stdout,
                        "{:>9} {:>6} {:>16} {:>16} {:>12}",
                        partition.partition,
                        partition.owner_shard,
                        partition.log_start_offset,
                        partition.log_end_offset,
                        partition.log_end_offset - partition.log_start_offset
                    )?,
                }
            }
            Ok(())
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            eprintln!("deleted topic \"{name}\"");
            Ok(())
        }
    }
}

fn write_config(out: &mut impl Write, config: &TopicConfig) -> std::io::Result<()> {
    let flush = match config.flush {
        FlushPolicy::Always => "always".to_string(),
        FlushPolicy::Interval { interval_ms } => format!("interval:{interval_ms}"),
        FlushPolicy::Never => "never".to_string(),
    };
    let or_unlimited =
        |value: Option<u64>| value.map_or("unlimited".to_string(), |v| v.to_string());
    writeln!(out, "flush:           {flush}")?;
    writeln!(
        out,
        "retention_bytes: {}",
        or_unlimited(config.retention_bytes)
    )?;
    writeln!(
        out,
        "retention_ms:    {}",
        or_unlimited(config.retention_ms)
    )?;
    writeln!(out, "segment_bytes:   {}", config.segment_bytes)?;
    writeln!(out, "segment_ms:      {}", or_unlimited(config.segment_ms))
}

async fn create_topic(admin: &Admin, create: CreateTopicArgs) -> Result<()> {
    let flush = match create.flush {
        None => None,
        Some(FlushArg::Always) => Some(FlushPolicy::Always),
        Some(FlushArg::Never) => Some(FlushPolicy::Never),
        Some(FlushArg::IntervalMs(milliseconds)) => Some(FlushPolicy::Interval {
            interval_ms: u32::try_from(milliseconds)
                .map_err(|_| anyhow!("--flush interval:{milliseconds} is too long"))?,
        }),
    };
    let settings = TopicSettings {
        partitions: create.partitions,
        flush,
        retention_bytes: create.retention_bytes,
        retention_ms: create.retention_ms,
        segment_bytes: create.segment_bytes,
        segment_ms: create.segment_ms,
    };
    let topic_id = admin.create_topic(&create.name, &settings).await?;
    // The broker chose whatever was left out; say what the topic got.
    match admin.describe_topic(&create.name).await {
        Ok(description) => eprintln!(
            "created topic \"{}\" (id {topic_id}, {} partitions)",
            create.name,
            description.partitions.len()
        ),
        Err(error) => eprintln!(
            "created topic \"{}\" (id {topic_id}); cannot describe it: {error}",
            create.name
        ),
    }
    Ok(())
}

/// Splits a line into key and value at the first `separator`; no separator means no key.
pub fn split_key<'a>(line: &'a [u8], separator: Option<&[u8]>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(separator) = separator.filter(|separator| !separator.is_empty()) else {
        return (None, line);
    };
    match line
        .windows(separator.len())
        .position(|window| window == separator)
    {
        Some(at) => (Some(&line[..at]), &line[at + separator.len()..]),
        None => (None, line),
    }
}

/// Removes the line ending (`\n` or `\r\n`) from a line read with `read_until`.
fn trim_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

async fn run_produce(cluster: std::sync::Arc<Cluster>, produce: ProduceArgs) -> Result<()> {
    // Fail on an unknown topic before reading any input.
    cluster.topic(&produce.topic).await?;
    let config = ProducerConfig {
        linger_ms: produce.linger_ms,
        batch_bytes_max: produce.batch_bytes_max,
        acks: if produce.no_acks {
            Acks::None
        } else {
            Acks::Leader
        },
        ..ProducerConfig::default()
    };
    let producer = Producer::new(cluster, config)?;
    let started = Instant::now();
    let separator = produce.key_separator.as_deref().map(str::as_bytes);
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut pending: VecDeque<Delivery> = VecDeque::new();
    let mut tally = Tally::default();
    loop {
        line.clear();
        let read = stdin
            .read_until(b'\n', &mut line)
            .await
            .context("cannot read standard input")?;
        if read == 0 {
            break;
        }
        let (key, value) = split_key(trim_line_ending(&line), separator);
        let delivery = producer.enqueue(&produce.topic, key, value, &[]).await?;
        if pending.len() == DELIVERIES_PENDING_MAX {
            if let Some(oldest) = pending.pop_front() {
                tally.record(oldest.wait().await);
            }
        }
        pending.push_back(delivery);
    }
    producer.flush().await;
    for delivery in pending {
        tally.record(delivery.wait().await);
    }
    producer.close().await;
    let elapsed = started.elapsed();
    eprintln!(
        "produced {} records to \"{}\" in {:.3} s ({} failed)",
        tally.delivered,
        produce.topic,
        elapsed.as_secs_f64(),
        tally.failed
    );
    match tally.first_error {
        Some(error) => bail!("{} records were not delivered: {error}", tally.failed),
        None => Ok(()),
    }
}

#[derive(Default)]
struct Tally {
    delivered: u64,
    failed: u64,
    first_error: Option<weir_client::ProduceError>,
}

impl Tally {
    fn record(&mut self, outcome: Result<weir_client::RecordMetadata, weir_client::ProduceError>) {
        match outcome {
            Ok(_) => self.delivered += 1,
            Err(error) => {
                self.failed += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }
}

async fn run_groups(admin: Admin, command: GroupsCommand) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match command {
        GroupsCommand::List => write_group_list(&mut stdout, &admin.list_groups().await?)?,
        GroupsCommand::Describe { group } => match admin.describe_group(&group).await {
            Ok(description) => write_group_description(&mut stdout, &description)?,
            Err(weir_client::Error::Broker {
                code: weir_client::ErrorCode::GroupIdNotFound,
                ..
            }) => bail!(
                "group \"{group}\" does not exist (it has no members and no committed offsets)"
            ),
            Err(error) => return Err(error.into()),
        },
        GroupsCommand::Delete { groups } => {
            let deletions = admin.delete_groups(&groups).await?;
            let failed = write_group_deletions(&mut stdout, &deletions)?;
            if failed > 0 {
                bail!("{failed} of {} groups were not deleted", deletions.len());
            }
        }
    }
    Ok(())
}

/// Writes `weir groups delete`: one line per group, `GROUP: deleted` or
/// `GROUP: not deleted: CODE: why`. Returns how many were not deleted.
pub fn write_group_deletions(
    out: &mut impl Write,
    deletions: &[GroupDeletion],
) -> std::io::Result<usize> {
    let mut failed = 0;
    for deletion in deletions {
        match &deletion.result {
            Ok(()) => writeln!(out, "{}: deleted", deletion.group_id)?,
            Err(weir_client::Error::Broker { code, message }) => {
                failed += 1;
                writeln!(out, "{}: not deleted: {code}: {message}", deletion.group_id)?;
            }
            Err(error) => {
                failed += 1;
                writeln!(out, "{}: not deleted: {error}", deletion.group_id)?;
            }
        }
    }
    Ok(failed)
}

/// Writes `weir groups list`: one line per group.
pub fn write_group_list(out: &mut impl Write, groups: &[GroupListing]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<40} {:<22} {:>8} {:<10}",
        "GROUP", "STATE", "MEMBERS", "STRATEGY"
    )?;
    for group in groups {
        writeln!(
            out,
            "{:<40} {:<22} {:>8} {:<10}",
            group.group_id,
            group.state,
            group.member_count,
            if group.strategy.is_empty() {
                "-"
            } else {
                &group.strategy
            }
        )?;
    }
    Ok(())
}

/// Writes `weir groups describe`: the group's state, a partition table with owner, committed
/// offset, log end and lag, and the members with their partitions. `-` marks what is unknown
/// or absent (no owner, nothing committed, no consume rate yet).
pub fn write_group_description(
    out: &mut impl Write,
    group: &GroupDescription,
) -> std::io::Result<()> {
    writeln!(out, "group:      {}", group.group_id)?;
    writeln!(out, "state:      {}", group.state)?;
    writeln!(out, "generation: {}", group.generation)?;
    writeln!(
        out,
        "strategy:   {}",
        if group.strategy.is_empty() {
            "-"
        } else {
            &group.strategy
        }
    )?;
    writeln!(out, "members:    {}", group.members.len())?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:>9} {:<36} {:>12} {:>12} {:>12} {:>10}",
        "TOPIC", "PARTITION", "OWNER", "COMMITTED", "LOG_END", "LAG", "LAG_S"
    )?;
    for partition in &group.partitions {
        let committed = partition
            .committed_offset
            .map_or_else(|| "-".to_string(), |offset| offset.to_string());
        let lag_seconds = match partition.lag_ms {
            Some(lag_ms) => format!("{:.1}", lag_ms as f64 / 1000.0),
            None => "-".to_string(),
        };
        writeln!(
            out,
            "{:<24} {:>9} {:<36} {:>12} {:>12} {:>12} {:>10}",
            partition.topic,
            partition.partition,
            partition.owner_member_id.as_deref().unwrap_or("-"),
            committed,
            partition.log_end_offset,
            partition.lag_records,
            lag_seconds
        )?;
    }
    if !group.members.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<36} {:<20} {:<22} PARTITIONS",
            "MEMBER", "CLIENT_ID", "HOST"
        )?;
        for member in &group.members {
            let mut partitions: Vec<String> = member
                .assignment
                .iter()
                .map(|(topic, partition)| format!("{topic}/{partition}"))
                .collect();
            partitions.sort();
            writeln!(
                out,
                "{:<36} {:<20} {:<22} {}",
                member.member_id,
                if member.client_id.is_empty() {
                    "-"
                } else {
                    &member.client_id
                },
                member.client_host,
                partitions.join(",")
            )?;
        }
    }
    Ok(())
}

/// The consumer configuration of `weir consume`: a group member commits only what it printed,
/// so auto-commit is off.
fn consumer_config(consume: &ConsumeArgs) -> Result<ConsumerConfig> {
    let mut config = ConsumerConfig {
        group_id: consume.group.clone(),
        ..ConsumerConfig::default()
    };
    if consume.group.is_some() {
        if consume.partition.is_some() {
            bail!("--partition cannot be combined with --group: the group assigns the partitions");
        }
        config.offset_reset = match consume.from {
            None | Some(FromArg::Earliest) => OffsetReset::Earliest,
            Some(FromArg::Latest) => OffsetReset::Latest,
            Some(_) => bail!(
                "with --group, --from may only be earliest or latest (where partitions without a committed offset start)"
            ),
        };
        config.group = GroupSettings {
            auto_commit: false,
            ..GroupSettings::default()
        };
        if let Some(session_timeout_ms) = consume.session_timeout_ms {
            config.group.session_timeout_ms = session_timeout_ms;
        }
    }
    Ok(config)
}

async fn run_consume(cluster: std::sync::Arc<Cluster>, consume: ConsumeArgs) -> Result<()> {
    let config = consumer_config(&consume)?;
    let mut consumer = Consumer::new(cluster, config);
    match (&consume.group, consume.partition) {
        (Some(group), _) => consumer.subscribe(group, &[&consume.topic]).await?,
        (None, Some(partition)) => consumer.assign(&consume.topic, &[partition]).await?,
        (None, None) => consumer.assign_all(&consume.topic).await?,
    }
    if consume.group.is_none() {
        let partitions: Vec<u32> = consumer
            .assignment()
            .into_iter()
            .map(|(_, partition)| partition)
            .collect();
        let seek = consume.from.map_or(SeekTo::Earliest, seek_to);
        for &partition in &partitions {
            consumer.seek(&consume.topic, partition, seek).await?;
        }
    }
    let outcome = consume_loop(&mut consumer, &consume).await;
    // Leave the group (if a member) whether or not the loop failed, so the others take over
    // at once; the loop's error is the one reported.
    let closed = consumer.close().await;
    outcome?;
    closed?;
    Ok(())
}

async fn consume_loop(consumer: &mut Consumer, consume: &ConsumeArgs) -> Result<()> {
    let separator = consume.key_separator.as_bytes();
    let idle_limit = consume.timeout_ms.map(Duration::from_millis);
    let mut printed: u64 = 0;
    let mut last_record = Instant::now();
    let mut generation = consumer.generation();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    'consume: loop {
        if consume.max.is_some_and(|max| printed >= max) {
            break;
        }
        let poll_for = match idle_limit {
            Some(limit) => {
                let idle = last_record.elapsed();
                if idle >= limit {
                    break;
                }
                (limit - idle).min(Duration::from_millis(POLL_MS_MAX))
            }
            None => Duration::from_millis(POLL_MS_MAX),
        };
        let records = consumer.poll(poll_for).await?;
        // Joining a group (or rejoining after a rebalance) may take longer than the idle
        // limit; the idle time counts from when the member got its partitions.
        let now_generation = consumer.generation();
        if now_generation != generation {
            generation = now_generation;
            last_record = Instant::now();
        }
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        let mut next_offsets: BTreeMap<u32, i64> = BTreeMap::new();
        for record in &records {
            if consume.max.is_some_and(|max| printed >= max) {
                stdout.flush()?;
                commit_printed(consumer, consume, &next_offsets).await?;
                break 'consume;
            }
            write_record(&mut stdout, record, consume.print_key.then_some(separator))?;
            next_offsets.insert(record.partition, record.offset + 1);
            printed += 1;
        }
        stdout.flush()?;
        if consume.group.is_some() {
            if let Err(error) = consumer.commit().await {
                // A rebalance fenced this generation's commit; the partitions' next owners
                // start from the last accepted commit, so they print these records again.
                if is_membership_error(&error) {
                    eprintln!("warning: commit rejected by a rebalance: {error}");
                } else {
                    return Err(error.into());
                }
            }
        }
    }
    stdout.flush()?;
    Ok(())
}

/// Commits, with `--group`, the offsets after the records printed when `--max` stopped the
/// consumer in the middle of a poll's records.
async fn commit_printed(
    consumer: &mut Consumer,
    consume: &ConsumeArgs,
    next_offsets: &BTreeMap<u32, i64>,
) -> Result<()> {
    if consume.group.is_none() {
        return Ok(());
    }
    let offsets: Vec<(&str, u32, i64)> = next_offsets
        .iter()
        .map(|(&partition, &offset)| (consume.topic.as_str(), partition, offset))
        .collect();
    consumer.commit_offsets(&offsets).await?;
    Ok(())
}

fn is_membership_error(error: &weir_client::Error) -> bool {
    matches!(
        error,
        weir_client::Error::Broker {
            code: weir_client::ErrorCode::RebalanceInProgress
                | weir_client::ErrorCode::IllegalGeneration
                | weir_client::ErrorCode::UnknownMemberId,
            ..
        }
    )
}

/// Maps `--from` to where the consumer seeks.
pub fn seek_to(from: FromArg) -> SeekTo {
    match from {
        FromArg::Earliest => SeekTo::Earliest,
        FromArg::Latest => SeekTo::Latest,
        FromArg::Offset(offset) => SeekTo::Offset(offset),
        FromArg::TimestampMs(timestamp_ms) => SeekTo::Timestamp(timestamp_ms),
    }
}

/// Writes one record as a line: the value, or `key<SEP>value` when `separator` is given.
pub fn write_record(
    out: &mut impl Write,
    record: &ConsumedRecord,
    separator: Option<&[u8]>,
) -> std::io::Result<()> {
    if let Some(separator) = separator {
        out.write_all(record.key.as_deref().unwrap_or_default())?;
        out.write_all(separator)?;
    }
    out.write_all(record.value.as_deref().unwrap_or_default())?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn split_key_splits_at_the_first_separator_only() {
        /// A line, the separator, and the expected key and value.
        type Case<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a [u8]>, &'a [u8]);
        let cases: [Case<'_>; 6] = [
            (b"k=v", Some(b"="), Some(b"k"), b"v"),
            (b"k=v=w", Some(b"="), Some(b"k"), b"v=w"),
            (b"=v", Some(b"="), Some(b""), b"v"),
            (b"no separator", Some(b"="), None, b"no separator"),
            (b"a::b", Some(b"::"), Some(b"a"), b"b"),
            (b"k=v", None, None, b"k=v"),
        ];
        for (line, separator, key, value) in cases {
            assert_eq!(split_key(line, separator), (key, value), "{line:?}");
        }
    }

    #[test]
    fn group_deletions_print_one_line_each_and_count_failures() {
        let deletions = [
            GroupDeletion {
                group_id: "old".into(),
                result: Ok(()),
            },
            GroupDeletion {
                group_id: "busy".into(),
                result: Err(weir_client::Error::Broker {
                    code: weir_client::ErrorCode::NonEmptyGroup,
                    message: "group \"busy\" has 2 members".into(),
                }),
            },
        ];
        let mut out = Vec::new();
        assert_eq!(write_group_deletions(&mut out, &deletions).unwrap(), 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "old: deleted\nbusy: not deleted: non_empty_group: group \"busy\" has 2 members\n"
        );
    }

    #[test]
    fn line_endings_are_removed() {
        assert_eq!(trim_line_ending(b"a\n"), b"a");
        assert_eq!(trim_line_ending(b"a\r\n"), b"a");
        assert_eq!(trim_line_ending(b"a"), b"a");
        assert_eq!(trim_line_ending(b"\n"), b"");
    }

    #[test]
    fn records_print_as_value_or_key_separator_value() {
        let record = ConsumedRecord {
            topic: "t".into(),
            partition: 0,
            offset: 5,
            timestamp_ms: 0,
            key: Some(Bytes::from_static(b"user-1")),
            value: Some(Bytes::from_static(b"hello")),
            headers: Vec::new(),
        };
        let mut out = Vec::new();
        write_record(&mut out, &record, None).expect("write");
        write_record(&mut out, &record, Some(b"\t")).expect("write");
        let keyless = ConsumedRecord {
            key: None,
            ..record
        };
        write_record(&mut out, &keyless, Some(b"=")).expect("write");
        assert_eq!(out, b"hello\nuser-1\thello\n=hello\n");
    }

    #[test]
    fn from_maps_to_the_matching_seek() {
        assert_eq!(seek_to(FromArg::Earliest), SeekTo::Earliest);
        assert_eq!(seek_to(FromArg::Latest), SeekTo::Latest);
        assert_eq!(seek_to(FromArg::Offset(9)), SeekTo::Offset(9));
        assert_eq!(
            seek_to(FromArg::TimestampMs(1_000)),
            SeekTo::Timestamp(1_000)
        );
    }

    #[test]
    fn connect_errors_read_as_one_plain_line() {
        let error = weir_client::Error::Connect {
            address: "127.0.0.1:9347".to_string(),
            source: std::sync::Arc::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )),
        };
        assert_eq!(
            describe(&anyhow::Error::new(error)),
            "cannot connect to broker 127.0.0.1:9347: connection refused"
        );
        let unknown = weir_client::Error::UnknownTopic {
            topic: "x".to_string(),
        };
        assert_eq!(
            describe(&anyhow::Error::new(unknown)),
            "topic \"x\" does not exist"
        );
    }

    fn consume_args(extra: &[&str]) -> ConsumeArgs {
        use clap::Parser;
        let mut args = vec!["weir", "consume", "orders"];
        args.extend_from_slice(extra);
        match crate::args::Cli::try_parse_from(args) {
            Ok(crate::args::Cli {
                command: Command::Consume(consume),
                ..
            }) => consume,
            other => panic!("expected consume arguments, got {other:?}"),
        }
    }

    #[test]
    fn a_group_member_commits_only_what_it_printed_and_refuses_manual_placement() {
        let config = consumer_config(&consume_args(&[
            "--group",
            "g",
            "--from",
            "latest",
            "--session-timeout-ms",
            "2000",
        ]))
        .unwrap();
        assert!(!config.group.auto_commit);
        assert_eq!(config.offset_reset, OffsetReset::Latest);
        assert_eq!(config.group.session_timeout_ms, 2000);
        for refused in [
            &["--group", "g", "--partition", "1"][..],
            &["--group", "g", "--from", "5"][..],
        ] {
            let error = consumer_config(&consume_args(refused)).unwrap_err();
            assert!(error.to_string().contains("--group"), "{error}");
        }
        let plain = consumer_config(&consume_args(&[])).unwrap();
        assert_eq!(plain.group_id, None);
    }

    #[test]
    fn a_group_description_prints_a_partition_table_and_members() {
        let group = GroupDescription {
            group_id: "billing".to_string(),
            state: "stable".to_string(),
            generation: 3,
            strategy: "range".to_string(),
            members: vec![weir_client::GroupMember {
                member_id: "cli-1".to_string(),
                client_id: "weir-cli".to_string(),
                client_host: "127.0.0.1".to_string(),
                assignment: vec![("orders".to_string(), 1), ("orders".to_string(), 0)],
            }],
            partitions: vec![
                weir_client::GroupPartitionLag {
                    topic: "orders".to_string(),
                    partition: 0,
                    owner_member_id: Some("cli-1".to_string()),
                    committed_offset: Some(40),
                    log_end_offset: 100,
                    lag_records: 60,
                    consume_rate_per_second: 20.0,
                    lag_ms: Some(3_000),
                },
                weir_client::GroupPartitionLag {
                    topic: "orders".to_string(),
                    partition: 1,
                    owner_member_id: None,
                    committed_offset: None,
                    log_end_offset: 7,
                    lag_records: 7,
                    consume_rate_per_second: 0.0,
                    lag_ms: None,
                },
            ],
        };
        let mut out = Vec::new();
        write_group_description(&mut out, &group).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|line| !line.starts_with("TOPIC"))
            .skip(1)
            .take_while(|line| !line.is_empty())
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            vec![
                vec!["orders", "0", "cli-1", "40", "100", "60", "3.0"],
                vec!["orders", "1", "-", "-", "7", "7", "-"],
            ],
            "{text}"
        );
        assert!(text.contains("state:      stable"), "{text}");
        let member = text
            .lines()
            .find(|line| line.starts_with("cli-1"))
            .unwrap_or_else(|| panic!("member line in {text}"));
        assert!(member.ends_with("orders/0,orders/1"), "{member}");
    }
}
