//! Topic lifecycle against a real broker, through `Admin` and the raw wire protocol: create,
//! duplicate create (`topic_already_exists`), describe (settings and partition bounds as
//! created), list, delete, and what a deleted topic answers afterwards (`unknown_topic` for
//! produce, fetch, metadata and describe; a re-created topic of the same name starts empty).
//! Also the names and partition counts CreateTopic must refuse, and the default a count of 0
//! asks for.

use std::time::Duration;

use bytes::Bytes;
use weir_client::{
    Admin, Error, ErrorCode, FlushPolicy, Limit, Producer, ProducerConfig, TopicSettings,
};
use weir_proto::wire::{CreateTopicRequest, FetchResponse, MetadataRequest, TopicConfig};
use weir_tests::wire::{build_values_batch, fetch_request, produce_request, topic_config};
use weir_tests::{connect_cluster, runtime, BrokerProcess, WireClient};

#[test]
fn create_duplicate_describe_list_delete() {
    let broker = BrokerProcess::start_with_cores(2);
    let runtime = runtime();
    let old_topic_id = runtime.block_on(async {
        let cluster = connect_cluster(&broker).await;
        let admin = Admin::new(cluster.clone());
        let settings = TopicSettings::new()
            .partitions(3)
            .flush(FlushPolicy::Never)
            .retention_bytes(64 * 1024 * 1024)
            .retention_ms(3_600_000)
            .segment_bytes(16 * 1024 * 1024)
            .segment_ms(Limit::Unlimited);
        let topic_id = admin
            .create_topic("lifecycle", &settings)
            .await
            .expect("create a new topic");
        assert_ne!(topic_id, 0, "a created topic has a non-zero id");

        match admin
            .create_topic("lifecycle", &TopicSettings::new().partitions(5))
            .await
        {
            Err(Error::Broker {
                code: ErrorCode::TopicAlreadyExists,
                ..
            }) => {}
            other => {
                panic!("a duplicate create must fail with topic_already_exists, got {other:?}")
            }
        }

        let description = admin
            .describe_topic("lifecycle")
            .await
            .expect("describe the topic");
        assert_eq!(description.name, "lifecycle");
        assert_eq!(description.topic_id, topic_id);
        let config = description
            .config
            .expect("a described topic has its config");
        assert_eq!(config.flush, FlushPolicy::Never);
        assert_eq!(config.retention_bytes, Some(64 * 1024 * 1024));
        assert_eq!(config.retention_ms, Some(3_600_000));
        assert_eq!(config.segment_bytes, 16 * 1024 * 1024);
        assert_eq!(config.segment_ms, None, "segments roll by size only");
        let partitions: Vec<u32> = description.partitions.iter().map(|p| p.partition).collect();
        assert_eq!(
            partitions,
            [0, 1, 2],
            "the duplicate create changed nothing"
        );
        for partition in &description.partitions {
            assert_eq!(partition.error, None, "partition {}", partition.partition);
            assert!(partition.owner_shard < 2, "owner shard of a 2-shard broker");
            assert_eq!(
                (partition.log_start_offset, partition.log_end_offset),
                (0, 0),
                "a new partition is empty"
            );
        }

        let listed = admin.list_topics().await.expect("list topics");
        let entry = listed
            .iter()
            .find(|topic| topic.name == "lifecycle")
            .unwrap_or_else(|| panic!("the new topic is listed: {listed:?}"));
        assert_eq!((entry.topic_id, entry.partition_count), (topic_id, 3));

        let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
        let written = producer
            .send("lifecycle", Some(Bytes::from("k")), Bytes::from("v"), &[])
            .await
            .expect("produce to the topic before deleting it");
        producer.close().await;
        let description = admin.describe_topic("lifecycle").await.expect("describe");
        assert_eq!(
            description.partitions[written.partition as usize].log_end_offset, 1,
            "describe shows the record produced"
        );

        admin
            .delete_topic("lifecycle")
            .await
            .expect("delete the topic");
        let listed = admin.list_topics().await.expect("list topics");
        assert!(
            listed.iter().all(|topic| topic.name != "lifecycle"),
            "a deleted topic is not listed: {listed:?}"
        );
        match admin.describe_topic("lifecycle").await {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "lifecycle"),
            other => {
                panic!("describing a deleted topic must fail with unknown topic, got {other:?}")
            }
        }
        match admin.delete_topic("lifecycle").await {
            Err(Error::UnknownTopic { .. }) => {}
            other => panic!("deleting a deleted topic must fail with unknown topic, got {other:?}"),
        }
        let producer = Producer::new(
            cluster.clone(),
            ProducerConfig {
                delivery_timeout_ms: 3_000,
                ..ProducerConfig::default()
            },
        )
        .expect("producer");
        let sent = tokio::time::timeout(
            Duration::from_secs(20),
            producer.send("lifecycle", None, Bytes::from("late"), &[]),
        )
        .await
        .expect("a send to a deleted topic fails within its delivery timeout");
        assert!(
            sent.is_err(),
            "a send to a deleted topic must fail, got {sent:?}"
        );
        topic_id
    });

    // Over the wire, the deleted topic's id and name are unknown to every api.
    let mut client = WireClient::connect_and_handshake(broker.addresses().listen);
    let produced = client.produce(old_topic_id, 0, build_values_batch(&["after delete"]));
    assert_eq!(
        produced.error_code,
        ErrorCode::UnknownTopic,
        "produce to a deleted topic: {}",
        produced.error_message
    );
    let fetched: FetchResponse = client.call_ok(&fetch_request(old_topic_id, 0, 0, 0, 0));
    assert_eq!(fetched.entries.len(), 1);
    assert_eq!(fetched.entries[0].error_code, ErrorCode::UnknownTopic);
    let metadata = client.call_ok(&MetadataRequest {
        topics: vec!["lifecycle".to_string()],
    });
    assert_eq!(metadata.topics.len(), 1);
    assert_eq!(metadata.topics[0].error_code, ErrorCode::UnknownTopic);
    assert!(metadata.topics[0].partitions.is_empty());

    // A topic created again under the same name starts empty.
    let new_topic_id = client.create_topic("lifecycle", 3, FlushPolicy::Always);
    let (_, topic) = client.topic_metadata("lifecycle");
    assert_eq!(topic.topic_id, new_topic_id);
    for partition in 0..3 {
        let entry = client.fetch(new_topic_id, partition, 0);
        assert_eq!(entry.error_code, ErrorCode::None, "{}", entry.error_message);
        assert_eq!(
            entry.high_watermark, 0,
            "partition {partition} of the re-created topic holds no old record"
        );
        assert!(entry.records.is_empty());
    }
    let produced = client.produce(new_topic_id, 0, build_values_batch(&["fresh"]));
    assert_eq!(
        produced.error_code,
        ErrorCode::None,
        "{}",
        produced.error_message
    );
    assert_eq!(produced.base_offset, 0);
}

#[test]
fn create_topic_refuses_bad_names_and_partition_counts() {
    let broker = BrokerProcess::start_with_cores(1);
    let mut client = WireClient::connect_and_handshake(broker.addresses().listen);
    let too_long = "x".repeat(250);
    let cases: [(&str, u32, ErrorCode); 7] = [
        ("", 1, ErrorCode::InvalidTopicName),
        ("has space", 1, ErrorCode::InvalidTopicName),
        ("slash/name", 1, ErrorCode::InvalidTopicName),
        (".", 1, ErrorCode::InvalidTopicName),
        ("..", 1, ErrorCode::InvalidTopicName),
        (&too_long, 1, ErrorCode::InvalidTopicName),
        ("too-many-partitions", 1_000_000, ErrorCode::InvalidConfig),
    ];
    for (name, partitions, expected) in cases {
        let response = client.call_ok(&CreateTopicRequest {
            name: name.to_string(),
            partition_count: partitions,
            config: topic_config(FlushPolicy::Always).into(),
        });
        assert_eq!(
            response.error_code, expected,
            "create {name:?} with {partitions} partitions: {}",
            response.error_message
        );
        assert_eq!(response.topic_id, 0, "a refused topic has no id");
        assert!(
            !response.error_message.is_empty(),
            "a refusal explains itself ({name:?})"
        );
    }
    // Segment positions are u32: a segment of 4 GiB or more is a config error, not a storage
    // failure when the partition opens.
    for segment_bytes in [1u64 << 32, u64::MAX] {
        let response = client.call_ok(&CreateTopicRequest {
            name: "huge-segments".to_string(),
            partition_count: 1,
            config: TopicConfig {
                segment_bytes,
                ..topic_config(FlushPolicy::Always)
            }
            .into(),
        });
        assert_eq!(
            response.error_code,
            ErrorCode::InvalidConfig,
            "segment_bytes {segment_bytes}: {}",
            response.error_message
        );
    }
    let listed = client.call_ok(&weir_proto::wire::ListTopicsRequest);
    assert!(
        listed.topics.is_empty(),
        "no refused topic was created: {:?}",
        listed.topics
    );
    // A partition count of 0 asks for the broker's default (`--default-partitions`, 1).
    let response = client.call_ok(&CreateTopicRequest {
        name: "default-partitions".to_string(),
        partition_count: 0,
        config: topic_config(FlushPolicy::Always).into(),
    });
    assert_eq!(
        response.error_code,
        ErrorCode::None,
        "{}",
        response.error_message
    );
    let (_, topic) = client.topic_metadata("default-partitions");
    assert_eq!(topic.partitions.len(), 1, "the default partition count");
    // The longest valid name is accepted.
    let longest = "y".repeat(249);
    let topic_id = client.create_topic(&longest, 1, FlushPolicy::Always);
    let produced = client.call_ok(&produce_request(topic_id, 0, build_values_batch(&["ok"])));
    assert_eq!(produced.entries[0].error_code, ErrorCode::None);
}
