//! Shard-aware routing on a two-shard broker (`--cores 2`).
//!
//! A produce, fetch or list-offsets sent on purpose to the direct port of the shard that does
//! not own the partition is answered correctly (forwarded to the owner) and counted in
//! `weir_forwarded_requests_total` of the shard that forwarded it; the same requests sent to the
//! owner are not counted. A run of produce and consume through the client crate, which connects
//! to each partition's owner, causes no forward at all.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_client::{Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, TopicSettings};
use weir_proto::wire::{
    ErrorCode, FlushPolicy, ListOffsetsPartition, ListOffsetsRequest, OffsetQuery,
    ProducePartition, ProduceResponse,
};
use weir_tests::wire::{build_values_batch, decode_records, produce_request};
use weir_tests::{connect_cluster, runtime, BrokerProcess, Metrics, WireClient};

const FORWARDED: &str = "weir_forwarded_requests_total";

fn forwarded_by_shard(metrics: &Metrics, shard: usize) -> f64 {
    metrics
        .get(FORWARDED, &[("shard", &shard.to_string())])
        .unwrap_or_else(|| {
            panic!(
                "no {FORWARDED} sample for shard {shard}: {:?}",
                metrics.names()
            )
        })
}

#[test]
fn requests_to_the_non_owner_shard_are_forwarded_answered_and_counted() {
    let broker = BrokerProcess::start_with_cores(2);
    let mut control = WireClient::connect_and_handshake(broker.shard_address(0));
    let topic_id = control.create_topic("routed", 8, FlushPolicy::Always);
    let (metadata, topic) = control.topic_metadata("routed");
    assert_eq!(metadata.shards.len(), 2, "metadata lists both shards");
    for shard in &metadata.shards {
        let listed: std::net::SocketAddr = shard.address.parse().expect("ip:port");
        assert_eq!(
            listed,
            broker.shard_address(shard.shard as usize),
            "shard {}",
            shard.shard
        );
    }
    // One partition owned by each shard.
    let owned_by = |shard: u32| {
        topic
            .partitions
            .iter()
            .find(|partition| partition.owner_shard == shard)
            .map(|partition| partition.partition)
            .unwrap_or_else(|| panic!("no partition of 8 is owned by shard {shard}: {topic:?}"))
    };
    let partitions = [(owned_by(0), 0usize), (owned_by(1), 1usize)];

    for (partition, owner) in partitions {
        let other = 1 - owner;
        let mut at_owner = WireClient::connect_and_handshake(broker.shard_address(owner));
        let mut at_other = WireClient::connect_and_handshake(broker.shard_address(other));

        // At the owner: served locally, nothing forwarded.
        let before = broker.metrics();
        let local = at_owner.produce(topic_id, partition, build_values_batch(&["local"]));
        assert_eq!(local.error_code, ErrorCode::None, "{}", local.error_message);
        assert_eq!(local.base_offset, 0);
        assert_eq!(at_owner.read_partition(topic_id, partition, 0).len(), 1);
        let after = broker.metrics();
        assert_eq!(
            after.expect_sum(FORWARDED),
            before.expect_sum(FORWARDED),
            "requests sent to partition {partition}'s owner (shard {owner}) were forwarded"
        );

        // At the other shard: produce, fetch and list offsets are answered as the owner would.
        let before = after;
        let forwarded = at_other.produce(topic_id, partition, build_values_batch(&["forwarded"]));
        assert_eq!(
            forwarded.error_code,
            ErrorCode::None,
            "{}",
            forwarded.error_message
        );
        assert_eq!(
            forwarded.base_offset, 1,
            "the forwarded append follows the local one"
        );
        let records = at_other.read_partition(topic_id, partition, 0);
        let values: Vec<&[u8]> = records.iter().filter_map(|r| r.value.as_deref()).collect();
        assert_eq!(values, [&b"local"[..], &b"forwarded"[..]]);
        let fetched = at_other.fetch(topic_id, partition, 1);
        assert_eq!(fetched.high_watermark, 2);
        assert_eq!(
            decode_records(&fetched.records.to_contiguous())[0].offset,
            1
        );
        let listed = at_other.call_ok(&ListOffsetsRequest {
            entries: vec![ListOffsetsPartition {
                topic_id,
                partition,
                query: OffsetQuery::Latest,
            }],
        });
        assert_eq!(listed.entries[0].error_code, ErrorCode::None);
        assert_eq!(listed.entries[0].offset, 2);
        let after = broker.metrics();
        assert!(
            forwarded_by_shard(&after, other) >= forwarded_by_shard(&before, other) + 3.0,
            "shard {other} forwarded a produce, fetches and a list-offsets for partition \
             {partition} to shard {owner}, but {FORWARDED}{{shard=\"{other}\"}} went from {} to {}",
            forwarded_by_shard(&before, other),
            forwarded_by_shard(&after, other)
        );
        assert_eq!(
            forwarded_by_shard(&after, owner),
            forwarded_by_shard(&before, owner),
            "the owner shard {owner} forwarded nothing"
        );
    }

    // One produce with entries for both shards' partitions, sent to shard 0: split, forwarded
    // in part, answered in request order.
    let mut at_zero = WireClient::connect_and_handshake(broker.shard_address(0));
    let mut request = produce_request(topic_id, partitions[1].0, build_values_batch(&["split-1"]));
    request.entries.push(ProducePartition {
        topic_id,
        partition: partitions[0].0,
        records: build_values_batch(&["split-0"]),
    });
    let response: ProduceResponse = at_zero.call_ok(&request);
    let answered: Vec<(u32, ErrorCode, i64)> = response
        .entries
        .iter()
        .map(|entry| (entry.partition, entry.error_code, entry.base_offset))
        .collect();
    assert_eq!(
        answered,
        [
            (partitions[1].0, ErrorCode::None, 2),
            (partitions[0].0, ErrorCode::None, 2)
        ],
        "a split produce is answered per entry, in request order"
    );
}

#[test]
fn a_client_run_causes_no_forwards() {
    const PARTITIONS: u32 = 8;
    const RECORDS: usize = 4_000;
    let broker = BrokerProcess::start_with_cores(2);
    let runtime = runtime();
    let cluster = runtime.block_on(async {
        let cluster = connect_cluster(&broker).await;
        Admin::new(cluster.clone())
            .create_topic("direct", &TopicSettings::new().partitions(PARTITIONS))
            .await
            .expect("create the topic");
        cluster
    });
    let before = broker.metrics().expect_sum(FORWARDED);

    let consumed = runtime.block_on(async {
        let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
        let mut deliveries = Vec::new();
        for index in 0..RECORDS {
            let key = format!("user-{}", index % 500);
            deliveries.push(
                producer
                    .enqueue(
                        "direct",
                        Some(key.as_bytes()),
                        format!("{index}").as_bytes(),
                        &[],
                    )
                    .await
                    .expect("enqueue"),
            );
        }
        producer.flush().await;
        let mut per_partition: BTreeMap<u32, usize> = BTreeMap::new();
        for delivery in deliveries {
            let written = delivery.wait().await.expect("acknowledged");
            *per_partition.entry(written.partition).or_default() += 1;
        }
        producer.close().await;
        assert!(
            per_partition.len() > 1,
            "the keys spread over several partitions: {per_partition:?}"
        );

        let mut consumer = Consumer::new(cluster.clone(), ConsumerConfig::default());
        consumer.assign_all("direct").await.expect("assign");
        let mut consumed = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while consumed < RECORDS && Instant::now() < deadline {
            consumed += consumer
                .poll(Duration::from_secs(1))
                .await
                .expect("poll")
                .len();
        }
        let single = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
        single
            .send(
                "direct",
                Some(Bytes::from("one-more")),
                Bytes::from("x"),
                &[],
            )
            .await
            .expect("one more record");
        single.close().await;
        consumed
    });
    assert_eq!(consumed, RECORDS, "the consumer read every record");
    let after = broker.metrics().expect_sum(FORWARDED);
    assert_eq!(
        after,
        before,
        "a shard-aware client's produce and consume caused {} forwarded requests",
        after - before
    );
}
