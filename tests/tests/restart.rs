//! What a broker keeps across a restart of its process on the same data directory: topics (names,
//! ids, partition counts), their records, and committed consumer offsets (per group, the latest
//! commit winning) — after a graceful SIGTERM shutdown (which must also write out what a
//! `flush = never` topic buffers), and after SIGKILL, with `flush = always` topics whose every
//! acknowledged record and commit must be there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use weir_client::{
    Admin, Cluster, Consumer, ConsumerConfig, FlushPolicy, Producer, ProducerConfig, SeekTo,
    TopicSettings,
};
use weir_tests::{connect_cluster, runtime, BrokerProcess};

/// What the test wrote before the restart and expects to find after it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    /// `(name, topic id, partition count)` of each topic the test created.
    topics: Vec<(String, u32, u32)>,
    /// Every record value per `(topic, partition)`, in offset order from 0.
    records: BTreeMap<(String, u32), Vec<Vec<u8>>>,
    /// Committed offsets per `(group, topic, partition)`.
    committed: BTreeMap<(String, String, u32), i64>,
}

fn consumer(cluster: &Arc<Cluster>, group: &str) -> Consumer {
    Consumer::new(
        cluster.clone(),
        ConsumerConfig {
            group_id: Some(group.to_string()),
            ..ConsumerConfig::default()
        },
    )
}

/// Creates two topics, produces to them, and commits offsets for two groups. `orders` is
/// `flush = always`; `audit` has `audit_flush`.
async fn write_state(cluster: &Arc<Cluster>, audit_flush: FlushPolicy) -> Expected {
    let admin = Admin::new(cluster.clone());
    let mut topics = Vec::new();
    for (name, partitions, flush) in [
        ("orders", 4u32, FlushPolicy::Always),
        ("audit", 1u32, audit_flush),
    ] {
        let settings = TopicSettings::new().partitions(partitions).flush(flush);
        let topic_id = admin
            .create_topic(name, &settings)
            .await
            .unwrap_or_else(|error| panic!("create {name}: {error}"));
        topics.push((name.to_string(), topic_id, partitions));
    }
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let mut records: BTreeMap<(String, u32), Vec<Vec<u8>>> = BTreeMap::new();
    for (name, _, partitions) in &topics {
        for partition in 0..*partitions {
            records.insert((name.clone(), partition), Vec::new());
        }
    }
    for index in 0..200u32 {
        let (topic, key) = if index % 5 == 0 {
            ("audit", format!("a{index}"))
        } else {
            ("orders", format!("customer-{}", index % 17))
        };
        let value = format!("{topic}-{index}").into_bytes();
        let written = producer
            .send(
                topic,
                Some(Bytes::from(key)),
                Bytes::from(value.clone()),
                &[],
            )
            .await
            .unwrap_or_else(|error| panic!("produce {topic} record {index}: {error}"));
        let log = records
            .get_mut(&(topic.to_string(), written.partition))
            .expect("a known partition");
        assert_eq!(
            written.offset,
            log.len() as i64,
            "offsets follow one another"
        );
        log.push(value);
    }
    producer.close().await;

    let mut committed = BTreeMap::new();
    for (group, divisor) in [("billing", 1i64), ("analytics", 2i64)] {
        let mut consumer = consumer(cluster, group);
        let mut offsets = Vec::new();
        for ((topic, partition), log) in &records {
            offsets.push((topic.as_str(), *partition, log.len() as i64 / divisor));
        }
        consumer
            .commit_offsets(&offsets)
            .await
            .unwrap_or_else(|error| panic!("commit offsets of {group}: {error}"));
        for (topic, partition, offset) in offsets {
            committed.insert((group.to_string(), topic.to_string(), partition), offset);
        }
    }
    Expected {
        topics,
        records,
        committed,
    }
}

/// Reads back, through a fresh client, everything `expected` names.
async fn read_state(cluster: &Arc<Cluster>, expected: &Expected) -> Expected {
    let admin = Admin::new(cluster.clone());
    let listed = admin.list_topics().await.expect("list topics");
    let mut topics: Vec<(String, u32, u32)> = listed
        .into_iter()
        .filter(|topic| {
            expected
                .topics
                .iter()
                .any(|(name, _, _)| *name == topic.name)
        })
        .map(|topic| (topic.name, topic.topic_id, topic.partition_count))
        .collect();
    topics.sort_by_key(|(name, _, _)| expected.topics.iter().position(|(n, _, _)| n == name));

    let mut records = BTreeMap::new();
    for ((topic, partition), log) in &expected.records {
        let mut consumer = Consumer::new(cluster.clone(), ConsumerConfig::default());
        consumer.assign(topic, &[*partition]).await.expect("assign");
        consumer
            .seek(topic, *partition, SeekTo::Earliest)
            .await
            .expect("seek to the earliest offset");
        let mut values = Vec::new();
        while values.len() < log.len() {
            let polled = consumer
                .poll(Duration::from_secs(5))
                .await
                .expect("poll after the restart");
            if polled.is_empty() {
                break;
            }
            for record in polled {
                assert_eq!(
                    record.offset,
                    values.len() as i64,
                    "{topic}/{partition} offsets"
                );
                values.push(record.value.map(|value| value.to_vec()).unwrap_or_default());
            }
        }
        records.insert((topic.clone(), *partition), values);
    }

    let mut committed = BTreeMap::new();
    for (group, topic, partition) in expected.committed.keys() {
        let consumer = consumer(cluster, group);
        let answer = consumer
            .committed(topic, &[*partition])
            .await
            .unwrap_or_else(|error| panic!("committed offsets of {group}: {error}"));
        assert_eq!(answer.len(), 1);
        if let Some(offset) = answer[0].1 {
            committed.insert((group.clone(), topic.clone(), *partition), offset);
        }
    }
    Expected {
        topics,
        records,
        committed,
    }
}

/// Commits new offsets (one record further back for every entry) and returns the new state.
async fn commit_again(cluster: &Arc<Cluster>, expected: &Expected) -> Expected {
    let mut updated = expected.clone();
    for ((group, topic, partition), offset) in updated.committed.iter_mut() {
        *offset = (*offset - 1).max(0);
        consumer(cluster, group)
            .commit_offsets(&[(topic.as_str(), *partition, *offset)])
            .await
            .unwrap_or_else(|error| panic!("commit again for {group}: {error}"));
    }
    updated
}

fn assert_same(found: &Expected, expected: &Expected, when: &str) {
    assert_eq!(found.topics, expected.topics, "topics {when}");
    for (partition, log) in &expected.records {
        let found_log = found.records.get(partition).map_or(0, Vec::len);
        assert!(
            found.records.get(partition) == Some(log),
            "records of {partition:?} {when}: {found_log} found, {} written",
            log.len()
        );
    }
    assert_eq!(
        found.committed, expected.committed,
        "committed offsets {when}"
    );
}

fn survives(stop: fn(&mut BrokerProcess), how: &str, audit_flush: FlushPolicy) {
    let mut broker = BrokerProcess::start_with_cores(2);
    let runtime = runtime();
    let written = runtime.block_on(async {
        let cluster = connect_cluster(&broker).await;
        write_state(&cluster, audit_flush).await
    });

    stop(&mut broker);
    broker.restart();
    let (found, updated) = runtime.block_on(async {
        let cluster = connect_cluster(&broker).await;
        let found = read_state(&cluster, &written).await;
        // A later commit replaces the earlier one, and that too must survive.
        let updated = commit_again(&cluster, &written).await;
        (found, updated)
    });
    assert_same(&found, &written, &format!("after {how}"));

    stop(&mut broker);
    broker.restart();
    let found = runtime.block_on(async {
        let cluster = connect_cluster(&broker).await;
        read_state(&cluster, &updated).await
    });
    assert_same(&found, &updated, &format!("after a second {how}"));
}

#[test]
fn topics_records_and_committed_offsets_survive_a_graceful_restart() {
    // A graceful shutdown writes and syncs what a `never` topic still buffers.
    survives(BrokerProcess::terminate, "SIGTERM", FlushPolicy::Never);
}

#[test]
fn topics_records_and_committed_offsets_survive_sigkill() {
    // After a crash only `always` guarantees every acknowledged record (`interval` may lose the
    // last interval, `never` whatever was buffered), so both topics use it here.
    survives(BrokerProcess::kill_9, "SIGKILL", FlushPolicy::Always);
}
