//! A runnable tour of the client: create a topic, produce keyed records, read them back as a
//! member of a consumer group, and commit the group's position (on close) so a second run
//! resumes after it.
//!
//! Start a broker (`cargo run --release -p weir-broker`), then:
//!
//! ```sh
//! cargo run -p weir-client --example quickstart            # broker at 127.0.0.1:9347
//! WEIR_BROKER=host:port cargo run -p weir-client --example quickstart
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_client::{
    Admin, ClientConfig, Cluster, Consumer, ConsumerConfig, Producer, ProducerConfig, TopicSettings,
};

const TOPIC: &str = "quickstart";
const GROUP: &str = "quickstart-reader";
const RECORDS: usize = 10;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = std::env::var("WEIR_BROKER").unwrap_or_else(|_| "127.0.0.1:9347".to_string());
    let cluster = Cluster::connect(ClientConfig::new(broker.as_str())).await?;

    // Create the topic on the first run; later runs find it in the broker's list.
    let admin = Admin::new(cluster.clone());
    if !admin.list_topics().await?.iter().any(|t| t.name == TOPIC) {
        let topic_id = admin
            .create_topic(TOPIC, &TopicSettings::new().partitions(3))
            .await?;
        println!("created topic {TOPIC:?} (id {topic_id})");
    }

    // Each record resolves to the partition and offset the broker gave it, once it is durable
    // under the topic's flush policy.
    let producer = Producer::new(cluster.clone(), ProducerConfig::default())?;
    for index in 0..RECORDS {
        let key = Bytes::from(format!("user-{}", index % 4));
        let value = Bytes::from(format!("event {index}"));
        let written = producer.send(TOPIC, Some(key), value, &[]).await?;
        println!(
            "produced event {index} at partition {} offset {}",
            written.partition, written.offset
        );
    }
    producer.close().await;

    // A group member is given its share of the partitions by the group (here, all of them: it
    // is the only member) and starts from the group's committed offsets (earliest the first
    // time).
    let mut consumer = Consumer::new(cluster, ConsumerConfig::default());
    consumer.subscribe(GROUP, &[TOPIC]).await?;
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while received < RECORDS && Instant::now() < deadline {
        for record in consumer.poll(Duration::from_millis(500)).await? {
            let text = |bytes: &Option<Bytes>| {
                bytes
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            println!(
                "consumed partition {} offset {}: {} = {}",
                record.partition,
                record.offset,
                text(&record.key),
                text(&record.value)
            );
            received += 1;
        }
    }
    // Closing commits the positions (auto-commit) and leaves the group.
    consumer.close().await?;
    println!("consumed {received} records; committed the group's position");
    Ok(())
}
