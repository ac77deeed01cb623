//! End to end through the client crate against a real two-shard broker: 200,000 keyed records
//! produced to an 8-partition topic with `Producer` and read back with `Consumer`.
//!
//! Each value carries its key and a per-key sequence number, so the test checks that every
//! record comes back exactly once, that each key's records come back in the order they were
//! sent (hence each partition's order is kept), that each record sits in the partition
//! `partition_for_key` names and at the offset its acknowledgement reported, and that each
//! partition's offsets run from 0 without a gap.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_client::{
    partition_for_key, Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, TopicSettings,
};
use weir_tests::{connect_cluster, runtime, BrokerProcess};

const TOPIC: &str = "end-to-end";
const PARTITIONS: u32 = 8;
const RECORDS: usize = 200_000;
const KEYS: usize = 3_000;
/// Every value is padded to this many bytes.
const VALUE_BYTES: usize = 40;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);

fn key_of(index: usize) -> String {
    format!("key-{index:05}")
}

fn value_of(key: &str, sequence: u32) -> Vec<u8> {
    let mut value = format!("{key}|{sequence:07}|").into_bytes();
    value.resize(VALUE_BYTES, b'.');
    value
}

/// Splits a value back into its key and sequence number.
fn parse_value(value: &[u8]) -> (String, u32) {
    let text = std::str::from_utf8(value).expect("values are ASCII");
    let mut fields = text.split('|');
    let key = fields.next().expect("key field").to_string();
    let sequence = fields
        .next()
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("no sequence number in value {text:?}"));
    (key, sequence)
}

#[test]
fn every_keyed_record_comes_back_once_in_key_order_on_its_partition() {
    let broker = BrokerProcess::start_with_cores(2);
    let seed: u64 = rand::random();
    println!("key order seed: {seed}");
    let runtime = runtime();
    runtime.block_on(async {
        let cluster = connect_cluster(&broker).await;
        Admin::new(cluster.clone())
            .create_topic(TOPIC, &TopicSettings::new().partitions(PARTITIONS))
            .await
            .expect("create the topic");

        // Produce: keys in a seeded random order, each key's values numbered 0, 1, 2, ...
        let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sent_per_key = vec![0u32; KEYS];
        let mut deliveries = Vec::with_capacity(RECORDS);
        let started = Instant::now();
        for _ in 0..RECORDS {
            let key_index = rng.gen_range(0..KEYS);
            let key = key_of(key_index);
            let sequence = sent_per_key[key_index];
            sent_per_key[key_index] += 1;
            let delivery = producer
                .enqueue(TOPIC, Some(key.as_bytes()), &value_of(&key, sequence), &[])
                .await
                .expect("enqueue a record");
            deliveries.push((key_index, sequence, delivery));
        }
        producer.flush().await;
        let mut acknowledged: HashMap<(usize, u32), (u32, i64)> = HashMap::with_capacity(RECORDS);
        for (key_index, sequence, delivery) in deliveries {
            let written = delivery.wait().await.unwrap_or_else(|error| {
                panic!(
                    "record {sequence} of {} not acknowledged: {error}",
                    key_of(key_index)
                )
            });
            let key = key_of(key_index);
            assert_eq!(
                written.partition,
                partition_for_key(key.as_bytes(), PARTITIONS),
                "the producer placed {key} where partition_for_key says"
            );
            acknowledged.insert((key_index, sequence), (written.partition, written.offset));
        }
        producer.close().await;
        println!("produced {RECORDS} records in {:?}", started.elapsed());
        let mut acked_offsets: Vec<Vec<i64>> = vec![Vec::new(); PARTITIONS as usize];
        for &(partition, offset) in acknowledged.values() {
            acked_offsets[partition as usize].push(offset);
        }
        for (partition, offsets) in acked_offsets.iter_mut().enumerate() {
            offsets.sort_unstable();
            let expected: Vec<i64> = (0..offsets.len() as i64).collect();
            assert!(
                *offsets == expected,
                "acknowledged offsets of partition {partition} are not 0..{} without gaps",
                offsets.len()
            );
        }

        // Consume everything back.
        let mut consumer = Consumer::new(cluster.clone(), ConsumerConfig::default());
        consumer
            .assign_all(TOPIC)
            .await
            .expect("assign every partition");
        let mut next_sequence = vec![0u32; KEYS];
        let mut next_offset = vec![0i64; PARTITIONS as usize];
        let mut consumed = 0usize;
        let started = Instant::now();
        let deadline = started + CONSUME_TIMEOUT;
        while consumed < RECORDS {
            assert!(
                Instant::now() < deadline,
                "only {consumed} of {RECORDS} records consumed within {CONSUME_TIMEOUT:?}"
            );
            let records = consumer
                .poll(Duration::from_secs(2))
                .await
                .expect("poll the consumer");
            for record in records {
                let partition = record.partition;
                let value = record.value.as_deref().expect("every record has a value");
                let (key, sequence) = parse_value(value);
                assert_eq!(
                    record.key.as_deref(),
                    Some(key.as_bytes()),
                    "the record's key is the one its value names"
                );
                assert_eq!(
                    partition,
                    partition_for_key(key.as_bytes(), PARTITIONS),
                    "{key} was consumed from the partition partition_for_key names"
                );
                assert_eq!(
                    record.offset, next_offset[partition as usize],
                    "partition {partition} is consumed in offset order without gaps or repeats"
                );
                next_offset[partition as usize] += 1;
                let key_index: usize = key["key-".len()..].parse().expect("key number");
                assert_eq!(
                    sequence, next_sequence[key_index],
                    "{key}: record {sequence} consumed when record {} was due (lost, \
                     duplicated or reordered)",
                    next_sequence[key_index]
                );
                next_sequence[key_index] += 1;
                assert_eq!(
                    acknowledged.get(&(key_index, sequence)),
                    Some(&(partition, record.offset)),
                    "{key} record {sequence} is where its acknowledgement said"
                );
                consumed += 1;
            }
        }
        println!("consumed {consumed} records in {:?}", started.elapsed());
        let extra = consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll past the end");
        assert!(
            extra.is_empty(),
            "{} records came back beyond the {RECORDS} produced",
            extra.len()
        );
        assert_eq!(
            next_sequence, sent_per_key,
            "every key's records came back, each exactly once"
        );
        let log_ends: Vec<i64> = Admin::new(cluster)
            .describe_topic(TOPIC)
            .await
            .expect("describe the topic")
            .partitions
            .iter()
            .map(|partition| partition.log_end_offset)
            .collect();
        assert_eq!(
            log_ends, next_offset,
            "each partition's log ends after its last record"
        );
    });
}

#[test]
fn value_format_round_trips() {
    let value = value_of("key-00042", 1234);
    assert_eq!(value.len(), VALUE_BYTES);
    assert_eq!(parse_value(&value), ("key-00042".to_string(), 1234));
}
