//! Crash safety: SIGKILL a broker at a random moment under concurrent produce load on a
//! `flush = always` topic, restart it, and check that every acknowledged record is there.
//!
//! Several producer tasks (each its own `Producer`) send records and log every acknowledgement
//! as `(partition, offset, value)`. Once a random number of acknowledgements (seeded, printed)
//! has been logged, the broker gets SIGKILL mid-load; the producers are torn down without
//! reaching the new process. After the restart each partition is read from offset 0 over the
//! raw protocol: offsets are contiguous from 0, every batch passes its CRC, and every
//! acknowledged record is at its acknowledged offset with its value. The kill and restart happen
//! twice, so recovery also runs over a log that was itself recovered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_client::{Admin, FlushPolicy, Producer, ProducerConfig, TopicSettings};
use weir_tests::wire::owner_address;
use weir_tests::{connect_cluster, runtime, wait_until, BrokerProcess, WireClient};

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 4;
const PRODUCERS: usize = 4;
/// Deliveries each producer leaves pending before it waits for the oldest.
const PENDING_MAX: usize = 256;
/// The kill comes after this many acknowledgements, at least and at most (per round).
const KILL_AFTER_ACKS: std::ops::Range<usize> = 2_000..15_000;
const LOAD_TIMEOUT: Duration = Duration::from_secs(90);

/// One acknowledged record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Acknowledged {
    partition: u32,
    offset: i64,
    value: Vec<u8>,
}

/// Runs `PRODUCERS` producer tasks until `stop` is set or a send fails; logs every
/// acknowledgement into `log` and counts them in `count`.
fn start_load(
    runtime: &tokio::runtime::Runtime,
    broker: &BrokerProcess,
    round: usize,
    log: &Arc<Mutex<Vec<Acknowledged>>>,
    count: &Arc<AtomicUsize>,
    stop: &Arc<AtomicBool>,
) {
    for producer_index in 0..PRODUCERS {
        let bootstrap_cluster = runtime.block_on(connect_cluster(broker));
        let log = Arc::clone(log);
        let count = Arc::clone(count);
        let stop = Arc::clone(stop);
        runtime.spawn(async move {
            let config = ProducerConfig {
                linger_ms: 2,
                retries_max: 0,
                delivery_timeout_ms: 5_000,
                request_timeout_ms: 5_000,
                ..ProducerConfig::default()
            };
            let producer = Producer::new(bootstrap_cluster, config).expect("producer");
            let mut pending = std::collections::VecDeque::new();
            let mut sequence = 0u64;
            while !stop.load(Ordering::Acquire) {
                let value = format!("round{round}-producer{producer_index}-{sequence:08}");
                let key = format!("k{}", sequence % 97);
                sequence += 1;
                let Ok(delivery) = producer
                    .enqueue(TOPIC, Some(key.as_bytes()), value.as_bytes(), &[])
                    .await
                else {
                    return;
                };
                pending.push_back((value, delivery));
                if pending.len() >= PENDING_MAX {
                    let (value, delivery) = pending.pop_front().expect("pending is full");
                    match delivery.wait().await {
                        Ok(written) => {
                            log.lock().expect("ack log").push(Acknowledged {
                                partition: written.partition,
                                offset: written.offset,
                                value: value.into_bytes(),
                            });
                            count.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(_) => return,
                    }
                }
            }
        });
    }
}

/// Reads every partition from offset 0 and checks it against the acknowledgements.
fn check_log(broker: &BrokerProcess, acknowledged: &[Acknowledged], when: &str) -> Vec<i64> {
    let mut client = WireClient::connect_and_handshake(broker.addresses().listen);
    let (metadata, topic) = client.topic_metadata(TOPIC);
    let mut log_ends = Vec::new();
    let mut stored: Vec<HashMap<i64, Vec<u8>>> = Vec::new();
    for partition in 0..PARTITIONS {
        let mut owner =
            WireClient::connect_and_handshake(owner_address(&metadata, &topic, partition));
        let records = owner.read_partition(topic.topic_id, partition, 0);
        for (index, record) in records.iter().enumerate() {
            assert_eq!(
                record.offset, index as i64,
                "partition {partition} {when}: offsets are contiguous from 0"
            );
        }
        log_ends.push(records.len() as i64);
        stored.push(
            records
                .into_iter()
                .map(|record| (record.offset, record.value.unwrap_or_default()))
                .collect(),
        );
    }
    let mut missing = Vec::new();
    for ack in acknowledged {
        match stored[ack.partition as usize].get(&ack.offset) {
            Some(value) if *value == ack.value => {}
            found => missing.push(format!(
                "{}/{} expected {:?}, found {:?}",
                ack.partition,
                ack.offset,
                String::from_utf8_lossy(&ack.value),
                found.map(|value| String::from_utf8_lossy(value).into_owned())
            )),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged records are not where they were acknowledged {when}; first: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(10)]
    );
    log_ends
}

#[test]
fn every_acknowledged_record_survives_sigkill_under_load() {
    let seed: u64 = rand::random();
    println!("kill point seed: {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut broker = BrokerProcess::start_with_cores(2);
    let setup = runtime();
    setup.block_on(async {
        let cluster = connect_cluster(&broker).await;
        let settings = TopicSettings::new()
            .partitions(PARTITIONS)
            .flush(FlushPolicy::Always);
        Admin::new(cluster)
            .create_topic(TOPIC, &settings)
            .await
            .expect("create the topic");
    });
    drop(setup);

    let log = Arc::new(Mutex::new(Vec::new()));
    for round in 0..2 {
        let load = runtime();
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        start_load(&load, &broker, round, &log, &count, &stop);
        let kill_after = rng.gen_range(KILL_AFTER_ACKS);
        wait_until(
            LOAD_TIMEOUT,
            &format!("{kill_after} acknowledgements under load (round {round})"),
            || count.load(Ordering::Acquire) >= kill_after,
        );
        broker.kill_9();
        stop.store(true, Ordering::Release);
        // Tear the producers down before a new broker exists, so no retry reaches it.
        load.shutdown_timeout(Duration::from_secs(5));
        let acknowledged = log.lock().expect("ack log").clone();
        println!(
            "round {round}: SIGKILL after {} acknowledgements this round, {} in all",
            count.load(Ordering::Acquire),
            acknowledged.len()
        );

        broker.restart();
        let log_ends = check_log(
            &broker,
            &acknowledged,
            &format!("after SIGKILL round {round}"),
        );
        println!("round {round}: log ends after recovery {log_ends:?}");
        assert!(
            log_ends.iter().sum::<i64>() >= acknowledged.len() as i64,
            "the logs hold fewer records than were acknowledged"
        );
    }

    // The recovered broker still takes and serves new records after the crashes.
    let mut client = WireClient::connect_and_handshake(broker.addresses().listen);
    let (metadata, topic) = client.topic_metadata(TOPIC);
    let mut owner = WireClient::connect_and_handshake(owner_address(&metadata, &topic, 0));
    let end = owner.read_partition(topic.topic_id, 0, 0).len() as i64;
    let appended = owner.produce(
        topic.topic_id,
        0,
        weir_tests::wire::build_values_batch(&["after the crashes"]),
    );
    assert_eq!(
        appended.error_code,
        weir_proto::wire::ErrorCode::None,
        "{}",
        appended.error_message
    );
    assert_eq!(
        appended.base_offset, end,
        "appends continue at the recovered log end"
    );
    broker.terminate();
}
