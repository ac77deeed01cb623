//! Dead-letter handling against a real broker: a handler that always fails on one chosen record
//! (and succeeds on the others) sees every other record exactly once, in partition order; the
//! poison record is tried `attempts_max` times, appears once in the dead-letter topic with its
//! original key, value and headers plus the `weir.dlq.*` headers, and the group's committed
//! offsets end past every record. When the dead-letter publish fails, the poison record is not
//! committed and the consumer is rewound to it: the record is never lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_client::dead_letter::{
    HEADER_ATTEMPTS, HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_TOPIC,
};
use weir_client::{
    Admin, Cluster, CommitMode, ConsumedRecord, Consumer, ConsumerConfig, DeadLetterConfig,
    DeadLetterCounters, DeadLetterError, DeadLetterProcessor, Producer, ProducerConfig, SeekTo,
    TopicSettings,
};
use weir_tests::{connect_cluster, runtime, BrokerProcess};

const RECORDS: usize = 50;
/// The index (in send order) of the record the handler always refuses.
const POISON_INDEX: usize = 17;
const ATTEMPTS_MAX: u32 = 3;
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

fn key_of(index: usize) -> String {
    format!("key-{index:02}")
}

fn value_of(index: usize) -> String {
    format!("value-{index:02}")
}

fn error_text(offset: i64) -> String {
    format!("handler refuses offset {offset}")
}

/// Creates `topic` (with `partitions`) and its dead-letter topic, produces the test records with
/// an `origin` header, and returns where each one was written, in send order.
async fn produce_records(cluster: &Arc<Cluster>, topic: &str, partitions: u32) -> Vec<(u32, i64)> {
    let admin = Admin::new(cluster.clone());
    admin
        .create_topic(topic, &TopicSettings::new().partitions(partitions))
        .await
        .expect("create the source topic");
    admin
        .create_topic(&format!("{topic}.dlq"), &TopicSettings::new().partitions(1))
        .await
        .expect("create the dead-letter topic");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let mut written = Vec::with_capacity(RECORDS);
    for index in 0..RECORDS {
        let metadata = producer
            .send(
                topic,
                Some(Bytes::from(key_of(index))),
                Bytes::from(value_of(index)),
                &[(b"origin", Some(b"dead-letter-test"))],
            )
            .await
            .expect("produce a record");
        written.push((metadata.partition, metadata.offset));
    }
    producer.close().await;
    written
}

fn group_consumer(cluster: &Arc<Cluster>, group: &str) -> Consumer {
    Consumer::new(
        cluster.clone(),
        ConsumerConfig {
            group_id: Some(group.to_string()),
            ..ConsumerConfig::default()
        },
    )
}

fn fast_retries(commit: CommitMode) -> DeadLetterConfig {
    DeadLetterConfig {
        attempts_max: ATTEMPTS_MAX,
        backoff_ms_initial: 1,
        backoff_ms_max: 4,
        retry_timeout_ms: 10_000,
        commit,
    }
}

/// Polls and handles until `done` says so, failing the test after [`PROCESS_TIMEOUT`].
/// `calls` records every handler call as `(partition, offset)`.
async fn process_until(
    processor: &mut DeadLetterProcessor,
    poison: (u32, i64),
    calls: &mut Vec<(u32, i64)>,
    mut done: impl FnMut(&DeadLetterCounters) -> bool,
) -> Result<(), DeadLetterError> {
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let mut handler = |record: &ConsumedRecord| {
        calls.push((record.partition, record.offset));
        let outcome = if (record.partition, record.offset) == poison {
            Err(error_text(record.offset))
        } else {
            Ok(())
        };
        async move { outcome }
    };
    while !done(&processor.counters()) {
        assert!(
            Instant::now() < deadline,
            "not done within {PROCESS_TIMEOUT:?}: {:?}",
            processor.counters()
        );
        processor
            .poll_and_handle(Duration::from_millis(500), &mut handler)
            .await?;
    }
    Ok(())
}

/// The handler calls each partition must see: its offsets in order, the poison record
/// `ATTEMPTS_MAX` times in a row.
fn expected_calls(written: &[(u32, i64)], poison: (u32, i64)) -> BTreeMap<u32, Vec<i64>> {
    let mut expected: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for &(partition, offset) in written {
        let times = if (partition, offset) == poison {
            ATTEMPTS_MAX as usize
        } else {
            1
        };
        expected
            .entry(partition)
            .or_default()
            .extend(std::iter::repeat_n(offset, times));
    }
    expected
}

fn calls_by_partition(calls: &[(u32, i64)]) -> BTreeMap<u32, Vec<i64>> {
    let mut by_partition: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for &(partition, offset) in calls {
        by_partition.entry(partition).or_default().push(offset);
    }
    by_partition
}

fn header<'a>(record: &'a ConsumedRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .rev()
        .find(|(key, _)| &key[..] == name.as_bytes())
        .and_then(|(_, value)| value.as_deref())
        .map(|value| std::str::from_utf8(value).expect("UTF-8 header value"))
}

/// Reads the whole dead-letter topic (partition 0) from the start.
async fn read_dead_letters(cluster: &Arc<Cluster>, topic: &str) -> Vec<ConsumedRecord> {
    let mut reader = Consumer::new(cluster.clone(), ConsumerConfig::default());
    reader.assign(topic, &[0]).await.expect("assign the DLQ");
    reader
        .seek(topic, 0, SeekTo::Latest)
        .await
        .expect("seek to the end");
    let end = reader.position(topic, 0).expect("end offset");
    reader
        .seek(topic, 0, SeekTo::Offset(0))
        .await
        .expect("seek to the start");
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let mut records = Vec::new();
    while reader.position(topic, 0) < Some(end) {
        assert!(
            Instant::now() < deadline,
            "read {} of {end} dead letters",
            records.len()
        );
        records.extend(reader.poll(Duration::from_millis(500)).await.expect("poll"));
    }
    records
}

fn poison_is_dead_lettered_once_and_the_rest_handled_once_in_order(
    partitions: u32,
    commit: CommitMode,
) {
    let broker = BrokerProcess::start_with_cores(2);
    let topic = format!("orders-{partitions}");
    let dead_letter_topic = format!("{topic}.dlq");
    runtime().block_on(async {
        let cluster = connect_cluster(&broker).await;
        let written = produce_records(&cluster, &topic, partitions).await;
        let poison = written[POISON_INDEX];

        let mut consumer = group_consumer(&cluster, "billing");
        consumer.assign_all(&topic).await.expect("assign");
        let producer =
            Arc::new(Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer"));
        let mut processor =
            DeadLetterProcessor::new(consumer, producer, &dead_letter_topic, fast_retries(commit))
                .await
                .expect("processor");
        let mut calls = Vec::new();
        process_until(&mut processor, poison, &mut calls, |counters| {
            counters.processed + counters.dead_lettered >= RECORDS as u64
        })
        .await
        .expect("process every record");

        assert_eq!(
            processor.counters(),
            DeadLetterCounters {
                processed: RECORDS as u64 - 1,
                retried: u64::from(ATTEMPTS_MAX - 1),
                dead_lettered: 1,
            }
        );
        assert_eq!(
            calls_by_partition(&calls),
            expected_calls(&written, poison),
            "every record is handled once in partition order, the poison one {ATTEMPTS_MAX} times"
        );

        let dead_letters = read_dead_letters(&cluster, &dead_letter_topic).await;
        assert_eq!(dead_letters.len(), 1, "one dead letter: {dead_letters:?}");
        let dead_letter = &dead_letters[0];
        assert_eq!(
            dead_letter.key.as_deref(),
            Some(key_of(POISON_INDEX).as_bytes())
        );
        assert_eq!(
            dead_letter.value.as_deref(),
            Some(value_of(POISON_INDEX).as_bytes())
        );
        assert_eq!(header(dead_letter, "origin"), Some("dead-letter-test"));
        assert_eq!(header(dead_letter, HEADER_TOPIC), Some(topic.as_str()));
        assert_eq!(
            header(dead_letter, HEADER_PARTITION),
            Some(poison.0.to_string().as_str())
        );
        assert_eq!(
            header(dead_letter, HEADER_OFFSET),
            Some(poison.1.to_string().as_str())
        );
        assert_eq!(
            header(dead_letter, HEADER_ERROR),
            Some(error_text(poison.1).as_str())
        );
        assert_eq!(
            header(dead_letter, HEADER_ATTEMPTS),
            Some(ATTEMPTS_MAX.to_string().as_str())
        );

        // The group's committed offset of every partition is its log end: past every record.
        let all_partitions: Vec<u32> = (0..partitions).collect();
        let committed = processor
            .consumer()
            .committed(&topic, &all_partitions)
            .await
            .expect("committed offsets");
        let mut ends = vec![0_i64; partitions as usize];
        for &(partition, offset) in &written {
            ends[partition as usize] = ends[partition as usize].max(offset + 1);
        }
        let expected: Vec<(u32, Option<i64>)> = ends
            .iter()
            .enumerate()
            .map(|(partition, &end)| (partition as u32, (end > 0).then_some(end)))
            .collect();
        assert_eq!(committed, expected);
    });
}

#[test]
fn one_partition_committing_each_record() {
    poison_is_dead_lettered_once_and_the_rest_handled_once_in_order(1, CommitMode::EachRecord);
}

#[test]
fn three_partitions_committing_each_poll() {
    poison_is_dead_lettered_once_and_the_rest_handled_once_in_order(3, CommitMode::EachPoll);
}

/// When the dead-letter topic is gone, the publish fails: the poison record is not committed,
/// the consumer is rewound to it, and the records before it stay handled and committed.
#[test]
fn a_failed_dead_letter_publish_commits_nothing_past_the_record() {
    let broker = BrokerProcess::start_with_cores(1);
    let topic = "payments";
    let dead_letter_topic = "payments.dlq";
    runtime().block_on(async {
        let cluster = connect_cluster(&broker).await;
        let written = produce_records(&cluster, topic, 1).await;
        let poison = written[POISON_INDEX];

        let mut consumer = group_consumer(&cluster, "settlement");
        consumer.assign(topic, &[0]).await.expect("assign");
        let producer = Producer::new(
            cluster.clone(),
            ProducerConfig {
                delivery_timeout_ms: 2_000,
                ..ProducerConfig::default()
            },
        )
        .expect("producer");
        let mut processor = DeadLetterProcessor::new(
            consumer,
            Arc::new(producer),
            dead_letter_topic,
            fast_retries(CommitMode::EachRecord),
        )
        .await
        .expect("processor");
        Admin::new(cluster.clone())
            .delete_topic(dead_letter_topic)
            .await
            .expect("delete the dead-letter topic");

        let mut calls = Vec::new();
        let error = process_until(&mut processor, poison, &mut calls, |_| false)
            .await
            .expect_err("the dead-letter publish fails");
        assert!(
            matches!(
                &error,
                DeadLetterError::Publish { partition: 0, offset, .. } if *offset == poison.1
            ),
            "unexpected error: {error}"
        );
        assert_eq!(
            processor.counters(),
            DeadLetterCounters {
                processed: POISON_INDEX as u64,
                retried: u64::from(ATTEMPTS_MAX - 1),
                dead_lettered: 0,
            }
        );
        let committed = processor
            .consumer()
            .committed(topic, &[0])
            .await
            .expect("committed offsets");
        assert_eq!(
            committed,
            vec![(0, Some(poison.1))],
            "committed up to the poison record"
        );
        assert_eq!(
            processor.consumer().position(topic, 0),
            Some(poison.1),
            "the consumer is rewound to the poison record"
        );
    });
}

/// The processor refuses setups that cannot keep its guarantee.
#[test]
fn setups_that_cannot_keep_the_guarantee_are_refused() {
    let broker = BrokerProcess::start_with_cores(1);
    runtime().block_on(async {
        let cluster = connect_cluster(&broker).await;
        let admin = Admin::new(cluster.clone());
        for name in ["events", "events.dlq"] {
            admin
                .create_topic(name, &TopicSettings::new())
                .await
                .expect("create a topic");
        }
        let producer = || {
            Arc::new(Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer"))
        };
        let config = DeadLetterConfig::default();

        let mut no_group = Consumer::new(cluster.clone(), ConsumerConfig::default());
        no_group.assign("events", &[0]).await.expect("assign");
        let refused = DeadLetterProcessor::new(no_group, producer(), "events.dlq", config).await;
        assert!(
            matches!(refused, Err(DeadLetterError::InvalidConfig(_))),
            "{refused:?}"
        );

        let mut reads_its_dlq = group_consumer(&cluster, "g");
        reads_its_dlq
            .assign("events.dlq", &[0])
            .await
            .expect("assign");
        let refused =
            DeadLetterProcessor::new(reads_its_dlq, producer(), "events.dlq", config).await;
        assert!(
            matches!(refused, Err(DeadLetterError::InvalidConfig(_))),
            "{refused:?}"
        );

        let missing =
            DeadLetterProcessor::new(group_consumer(&cluster, "g"), producer(), "nowhere", config)
                .await;
        assert!(
            matches!(missing, Err(DeadLetterError::DeadLetterTopic { .. })),
            "{missing:?}"
        );
    });
}
