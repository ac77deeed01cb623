//! A consumer asking for more per fetch than one response frame of its connection can carry
//! still reads everything: the client caps its fetch sizes at the frame limit. Without the cap,
//! a broker allowing larger answers sends a frame the client cannot read, the connection fails,
//! and the fetch is retried for ever without a record or an error.

use std::time::{Duration, Instant};

use weir_client::{Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, TopicSettings};
use weir_tests::{connect_cluster, runtime, BrokerOptions, BrokerProcess};

const TOPIC: &str = "large-fetches";
const RECORDS: usize = 24_000;
const VALUE_BYTES: usize = 1_000;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn fetch_sizes_above_the_clients_frame_limit_are_capped_and_every_record_arrives() {
    // The broker answers fetches of up to 64 MiB; the client reads frames of up to 16 MiB (its
    // default), and the topic holds about 24 MB, so an uncapped fetch from offset 0 would be
    // answered with one frame over the client's limit.
    let broker = BrokerProcess::start(
        BrokerOptions::with_cores(1).args(["--fetch-response-bytes-max", "67108864"]),
    );
    let runtime = runtime();
    runtime.block_on(async {
        let cluster = connect_cluster(&broker).await;
        let frame_bytes_max = cluster.config().connection.frame_bytes_max as usize;
        assert!(
            RECORDS * VALUE_BYTES > frame_bytes_max,
            "the topic must outgrow one frame"
        );
        Admin::new(cluster.clone())
            .create_topic(TOPIC, &TopicSettings::new().partitions(1))
            .await
            .expect("create the topic");
        let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
        let mut deliveries = Vec::with_capacity(RECORDS);
        for index in 0..RECORDS {
            let mut value = format!("{index:08}|").into_bytes();
            value.resize(VALUE_BYTES, b'.');
            deliveries.push(
                producer
                    .enqueue(TOPIC, None, &value, &[])
                    .await
                    .expect("enqueue"),
            );
        }
        producer.flush().await;
        for delivery in deliveries {
            delivery.wait().await.expect("every record is acknowledged");
        }

        let config = ConsumerConfig {
            fetch_bytes_max: 64 << 20,
            partition_fetch_bytes_max: 64 << 20,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(cluster.clone(), config);
        consumer.assign(TOPIC, &[0]).await.expect("assign");
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        let mut next = 0usize;
        while next < RECORDS {
            assert!(
                Instant::now() < deadline,
                "only {next} of {RECORDS} records consumed within {CONSUME_TIMEOUT:?}"
            );
            for record in consumer.poll(Duration::from_secs(1)).await.expect("poll") {
                assert_eq!(record.offset, next as i64, "records arrive in offset order");
                let value = record.value.expect("a value");
                assert_eq!(&value[..9], format!("{next:08}|").as_bytes());
                next += 1;
            }
        }
    });
}
