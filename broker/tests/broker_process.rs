//! Runs the real `weir-broker` binary on ephemeral loopback ports with its own data directory
//! and talks to it over raw TCP with the `weir_proto::wire` encoders: topic creation, produce and
//! fetch (also across shards), offsets, metrics, bad input, clean restart and SIGKILL.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use weir_proto::batch::{records, BatchBuilder, BatchIter, BatchLimits};
use weir_proto::wire::{
    decode_response, Acks, ApiVersionsRequest, ApiVersionsResponse, CreateTopicRequest,
    CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse, DescribeTopicRequest,
    DescribeTopicResponse, ErrorCode, FetchPartition, FetchRequest, FetchResponse, FlushPolicy,
    FrameDecoderConfig, Limit, ListOffsetsPartition, ListOffsetsRequest, ListOffsetsResponse,
    ListTopicsRequest, ListTopicsResponse, MetadataRequest, MetadataResponse,
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchPartition,
    OffsetFetchRequest, OffsetFetchResponse, OffsetQuery, Priority, ProducePartition,
    ProduceRequest, ProduceResponse, RequestMessage, ResponseError, ResponseFrameDecoder,
    ResponseMessage, TopicConfig, TopicConfigOverrides,
};
use weir_tests::wait::{wait_for, wait_until};

const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(20);

struct Broker {
    child: Child,
    data_dir: PathBuf,
    ready_file: PathBuf,
    listen: SocketAddr,
    shards: Vec<SocketAddr>,
    metrics: SocketAddr,
}

fn start(data_dir: &Path, cores: usize) -> Broker {
    start_with(data_dir, cores, &[])
}

fn start_with(data_dir: &Path, cores: usize, extra: &[&str]) -> Broker {
    let listen = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
    match try_start(data_dir, cores, &listen, extra, Stdio::inherit()) {
        Ok(broker) => broker,
        Err(output) => panic!("weir-broker exited at start: {output:?}"),
    }
}

/// Starts a broker with `listen` (the address flags) and `extra` flags, and waits for its ready
/// file. A broker that exits before it is ready is returned as `Err` with its output (`stderr`
/// is captured only when `stderr` is piped).
fn try_start(
    data_dir: &Path,
    cores: usize,
    listen: &[&str],
    extra: &[&str],
    stderr: Stdio,
) -> Result<Broker, std::process::Output> {
    let ready_file = data_dir.with_extension("ready.toml");
    // A ready file from an earlier run must not be mistaken for this one's.
    let _ = std::fs::remove_file(&ready_file);
    let child = Command::new(env!("CARGO_BIN_EXE_weir-broker"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(listen)
        .args(["--cores", &cores.to_string()])
        .args([
            "--default-segment-bytes-max",
            "1048576",
            "--frame-bytes-max",
            "1048576",
        ])
        .args([
            "--fetch-wait-ms-max",
            "5000",
            "--shutdown-timeout-ms",
            "5000",
        ])
        .args(extra)
        .arg("--ready-file")
        .arg(&ready_file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("weir-broker starts");
    wait_ready(child, data_dir, ready_file)
}

/// Waits for a started broker's ready file; a broker that exits first is returned as `Err`.
fn wait_ready(
    mut child: Child,
    data_dir: &Path,
    ready_file: PathBuf,
) -> Result<Broker, std::process::Output> {
    let ready = wait_for(STARTUP_DEADLINE, "the broker's ready file", || {
        if let Ok(text) = std::fs::read_to_string(&ready_file) {
            return Some(Some(text));
        }
        child.try_wait().unwrap().map(|_| None)
    });
    let Some(text) = ready else {
        return Err(child.wait_with_output().unwrap());
    };
    let ready: toml::Value = toml::from_str(&text).expect("ready file is TOML");
    let address = |value: &toml::Value| value.as_str().unwrap().parse::<SocketAddr>().unwrap();
    Ok(Broker {
        child,
        data_dir: data_dir.to_path_buf(),
        ready_file,
        listen: address(&ready["listen"]),
        shards: ready["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(address)
            .collect(),
        metrics: address(&ready["metrics"]),
    })
}

/// A port that was free when probed (it may be taken again before the broker binds it).
fn probe_free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

impl Broker {
    fn signal(&mut self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        let result = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(result, 0);
    }

    /// SIGTERM, then the exit status within a deadline.
    fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        wait_for(STARTUP_DEADLINE, "the broker to exit after SIGTERM", || {
            self.child.try_wait().unwrap()
        })
    }

    fn kill(mut self) {
        self.signal(libc::SIGKILL);
        self.child.wait().unwrap();
    }

    fn connect(&self) -> Client {
        Client::connect(self.listen)
    }

    fn scrape(&self) -> String {
        let mut stream = TcpStream::connect(self.metrics).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        text
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: TcpStream,
    buffer: BytesMut,
    decoder: ResponseFrameDecoder,
    next_id: u32,
}

impl Client {
    fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        Client {
            stream,
            buffer: BytesMut::new(),
            decoder: ResponseFrameDecoder::new(FrameDecoderConfig::default()),
            next_id: 1,
        }
    }

    fn send<R: RequestMessage>(&mut self, request: &R) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let mut frame = BytesMut::new();
        request
            .encode_frame(id, Priority::Normal, &mut frame)
            .unwrap();
        self.stream.write_all(&frame).unwrap();
        id
    }

    fn receive<M: ResponseMessage>(&mut self, id: u32) -> Result<M, ResponseError> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buffer)
                .expect("valid response frame")
            {
                assert_eq!(
                    frame.header.correlation_id(),
                    id,
                    "responses come in request order"
                );
                return decode_response(&frame.header, &frame.body);
            }
            let mut chunk = [0u8; 65536];
            let count = self.stream.read(&mut chunk).expect("response arrives");
            assert!(
                count > 0,
                "connection closed while waiting for response {id}"
            );
            self.buffer.extend_from_slice(&chunk[..count]);
        }
    }

    fn call<R: RequestMessage>(&mut self, request: &R) -> R::Response
    where
        R::Response: ResponseMessage,
    {
        let id = self.send(request);
        self.receive(id).expect("request accepted")
    }

    /// Whether the broker closed the connection (reads end of stream) within the timeout.
    fn closed_by_broker(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Flush always; everything else the broker's defaults.
fn topic_settings() -> TopicConfigOverrides {
    TopicConfigOverrides {
        flush: Some(FlushPolicy::Always),
        ..TopicConfigOverrides::default()
    }
}

fn describe(client: &mut Client, name: &str) -> (TopicConfig, usize) {
    let described: DescribeTopicResponse = client.call(&DescribeTopicRequest {
        name: name.to_string(),
    });
    assert_eq!(
        described.error_code,
        ErrorCode::None,
        "describe {name}: {}",
        described.error_message
    );
    let config = described.config.expect("a described topic has its config");
    (config, described.partitions.len())
}

fn create_topic(client: &mut Client, name: &str, partitions: u32) -> u32 {
    let response: CreateTopicResponse = client.call(&CreateTopicRequest {
        name: name.to_string(),
        partition_count: partitions,
        config: topic_settings(),
    });
    assert_eq!(
        response.error_code,
        ErrorCode::None,
        "{}",
        response.error_message
    );
    response.topic_id
}

fn batch(values: &[String]) -> Bytes {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for value in values {
        builder.push(1_700_000_000_000, None, Some(value.as_bytes()), &[]);
    }
    Bytes::from(builder.finish())
}

fn produce(client: &mut Client, entries: Vec<(u32, u32, Bytes)>) -> ProduceResponse {
    client.call(&ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 10_000,
        entries: entries
            .into_iter()
            .map(|(topic_id, partition, records)| ProducePartition {
                topic_id,
                partition,
                records,
            })
            .collect(),
    })
}

fn fetch(client: &mut Client, entries: &[(u32, u32, i64)], max_wait_ms: u32) -> FetchResponse {
    client.call(&FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        entries: entries
            .iter()
            .map(|(topic_id, partition, offset)| FetchPartition {
                topic_id: *topic_id,
                partition: *partition,
                fetch_offset: *offset,
                partition_max_bytes: 1 << 20,
            })
            .collect(),
    })
}

/// Every record value in a fetched chunk, with its offset.
fn values(records_bytes: Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for item in BatchIter::new(&records_bytes, &BatchLimits::default()) {
        let (_, batch) = item.expect("served batch is valid");
        for record in records(batch).unwrap() {
            let record = record.unwrap();
            out.push((
                record.offset,
                String::from_utf8(record.value.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    out
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn produce_fetch_offsets_survive_restart_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let broker = start(&data_dir, 2);
    assert_eq!(broker.shards.len(), 2);
    let mut client = broker.connect();

    let versions: ApiVersionsResponse = client.call(&ApiVersionsRequest {
        client_id: "test".into(),
        client_software: "broker_process".into(),
    });
    assert!(!versions.apis.is_empty());
    assert_eq!(versions.broker_name, "weir-broker");

    // 4 partitions: with 2 shards some are owned by each shard (pinned hash), so the produce and
    // fetch below are split, forwarded and merged whichever shard this connection landed on.
    let topic_id = create_topic(&mut client, "orders", 4);
    let metadata: MetadataResponse = client.call(&MetadataRequest::default());
    assert_eq!(metadata.shards.len(), 2);
    assert_eq!(metadata.shared_address, broker.listen.to_string());
    let orders = metadata
        .topics
        .iter()
        .find(|t| t.name == "orders")
        .expect("topic listed");
    assert_eq!(orders.topic_id, topic_id);
    let owners: Vec<u32> = orders.partitions.iter().map(|p| p.owner_shard).collect();
    assert!(
        owners.contains(&0) && owners.contains(&1),
        "partitions on both shards: {owners:?}"
    );

    let duplicate: CreateTopicResponse = client.call(&CreateTopicRequest {
        name: "orders".into(),
        partition_count: 1,
        config: topic_settings(),
    });
    assert_eq!(duplicate.error_code, ErrorCode::TopicAlreadyExists);
    let bad_name: CreateTopicResponse = client.call(&CreateTopicRequest {
        name: "no/slashes".into(),
        partition_count: 1,
        config: topic_settings(),
    });
    assert_eq!(bad_name.error_code, ErrorCode::InvalidTopicName);

    let entries: Vec<(u32, u32, Bytes)> = (0..4)
        .map(|partition| {
            let values: Vec<String> = (0..3).map(|i| format!("p{partition}-r{i}")).collect();
            (topic_id, partition, batch(&values))
        })
        .collect();
    let produced = produce(&mut client, entries);
    assert_eq!(produced.entries.len(), 4);
    for (partition, entry) in produced.entries.iter().enumerate() {
        assert_eq!(entry.error_code, ErrorCode::None, "{}", entry.error_message);
        assert_eq!(entry.partition, partition as u32, "request order kept");
        assert_eq!(entry.base_offset, 0);
    }
    let second = produce(
        &mut client,
        vec![(topic_id, 2, batch(&["p2-r3".to_string()]))],
    );
    assert_eq!(second.entries[0].base_offset, 3);

    let fetched = fetch(
        &mut client,
        &[
            (topic_id, 0, 0),
            (topic_id, 1, 0),
            (topic_id, 2, 1),
            (topic_id, 3, 0),
        ],
        0,
    );
    assert_eq!(fetched.entries.len(), 4);
    for entry in &fetched.entries {
        assert_eq!(entry.error_code, ErrorCode::None, "{}", entry.error_message);
    }
    let p2 = values(fetched.entries[2].records.to_contiguous());
    // A fetch inside a batch returns the whole batch; the client skips earlier records.
    assert_eq!(
        p2.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
        ["p2-r0", "p2-r1", "p2-r2", "p2-r3"]
    );
    assert_eq!(fetched.entries[2].high_watermark, 4);
    assert_eq!(
        values(fetched.entries[3].records.to_contiguous())[2],
        (2, "p3-r2".to_string())
    );

    let listed: ListOffsetsResponse = client.call(&ListOffsetsRequest {
        entries: vec![
            ListOffsetsPartition {
                topic_id,
                partition: 2,
                query: OffsetQuery::Earliest,
            },
            ListOffsetsPartition {
                topic_id,
                partition: 2,
                query: OffsetQuery::Latest,
            },
            ListOffsetsPartition {
                topic_id,
                partition: 2,
                query: OffsetQuery::Timestamp { timestamp_ms: 0 },
            },
            ListOffsetsPartition {
                topic_id,
                partition: 9,
                query: OffsetQuery::Latest,
            },
        ],
    });
    let offsets: Vec<i64> = listed.entries.iter().map(|e| e.offset).collect();
    assert_eq!(&offsets[..3], &[0, 4, 0]);
    assert_eq!(listed.entries[3].error_code, ErrorCode::UnknownPartition);

    let committed: OffsetCommitResponse = client.call(&OffsetCommitRequest {
        group_id: "billing".into(),
        generation: -1,
        member_id: String::new(),
        entries: vec![
            OffsetCommitPartition {
                topic_id,
                partition: 0,
                offset: 3,
                metadata: "m0".into(),
            },
            OffsetCommitPartition {
                topic_id,
                partition: 3,
                offset: 2,
                metadata: String::new(),
            },
        ],
    });
    assert!(
        committed
            .entries
            .iter()
            .all(|e| e.error_code == ErrorCode::None),
        "{committed:?}"
    );

    let metrics = broker.scrape();
    assert_eq!(
        metric(&metrics, "weir_topic_records_in_total{topic=\"orders\"}"),
        Some(13.0),
        "{metrics}"
    );
    assert!(metric(&metrics, "weir_topic_bytes_out_total{topic=\"orders\"}").unwrap() > 0.0);
    let forwarded: f64 = ["0", "1"]
        .iter()
        .filter_map(|shard| {
            metric(
                &metrics,
                &format!("weir_forwarded_requests_total{{shard=\"{shard}\"}}"),
            )
        })
        .sum();
    assert!(
        forwarded >= 1.0,
        "a split request forwarded to the other shard:\n{metrics}"
    );
    assert!(
        metrics.contains("weir_request_duration_seconds_count{api=\"Produce\"} 2"),
        "{metrics}"
    );

    drop(client);
    let status = broker.stop();
    assert!(status.success(), "clean shutdown exits 0: {status:?}");

    // Restart on the same directory: topics, data and committed offsets are back.
    let broker = start(&data_dir, 2);
    let mut client = broker.connect();
    let topics: ListTopicsResponse = client.call(&ListTopicsRequest);
    assert_eq!(topics.topics.len(), 1);
    assert_eq!(topics.topics[0].topic_id, topic_id);
    let fetched = fetch(&mut client, &[(topic_id, 2, 0)], 0);
    assert_eq!(values(fetched.entries[0].records.to_contiguous()).len(), 4);
    let offsets: OffsetFetchResponse = client.call(&OffsetFetchRequest {
        group_id: "billing".into(),
        entries: vec![
            OffsetFetchPartition {
                topic_id,
                partition: 0,
            },
            OffsetFetchPartition {
                topic_id,
                partition: 1,
            },
            OffsetFetchPartition {
                topic_id,
                partition: 3,
            },
        ],
    });
    assert_eq!(offsets.error_code, ErrorCode::None);
    let got: Vec<(i64, &str)> = offsets
        .entries
        .iter()
        .map(|e| (e.offset, e.metadata.as_str()))
        .collect();
    assert_eq!(got, [(3, "m0"), (-1, ""), (2, "")]);
    let described: DescribeTopicResponse = client.call(&DescribeTopicRequest {
        name: "orders".into(),
    });
    let ends: Vec<i64> = described
        .partitions
        .iter()
        .map(|p| p.log_end_offset)
        .collect();
    assert_eq!(ends, [3, 3, 4, 3]);

    let deleted: DeleteTopicResponse = client.call(&DeleteTopicRequest {
        name: "orders".into(),
    });
    assert_eq!(
        deleted.error_code,
        ErrorCode::None,
        "{}",
        deleted.error_message
    );
    let gone = fetch(&mut client, &[(topic_id, 0, 0)], 0);
    assert_eq!(gone.entries[0].error_code, ErrorCode::UnknownTopic);
    drop(client);
    assert!(broker.stop().success());
    assert!(
        data_dir.join("catalog.toml").exists(),
        "shutdown removes nothing"
    );
}

#[test]
fn create_topic_takes_the_broker_defaults_for_what_it_leaves_out() {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let defaults = [
        "--default-flush",
        "never",
        "--default-partitions",
        "3",
        "--default-retention-bytes-max",
        "1073741824",
    ];
    let broker = start_with(&data_dir, 2, &defaults);
    let mut client = broker.connect();

    let created: CreateTopicResponse = client.call(&CreateTopicRequest {
        name: "defaults".into(),
        ..CreateTopicRequest::default()
    });
    assert_eq!(
        created.error_code,
        ErrorCode::None,
        "{}",
        created.error_message
    );
    let broker_defaults = TopicConfig {
        flush: FlushPolicy::Never,
        retention_bytes: Some(1 << 30),
        retention_ms: Some(7 * DAY_MS),
        segment_bytes: 1 << 20,
        segment_ms: Some(7 * DAY_MS),
    };
    assert_eq!(describe(&mut client, "defaults"), (broker_defaults, 3));
    let metadata: MetadataResponse = client.call(&MetadataRequest {
        topics: vec!["defaults".into()],
    });
    assert_eq!(metadata.topics[0].config, Some(broker_defaults));
    assert_eq!(metadata.topics[0].partitions.len(), 3);

    let explicit = TopicConfig {
        flush: FlushPolicy::Interval { interval_ms: 25 },
        retention_bytes: None,
        retention_ms: Some(60_000),
        segment_bytes: 2 << 20,
        segment_ms: None,
    };
    let created: CreateTopicResponse = client.call(&CreateTopicRequest {
        name: "explicit".into(),
        partition_count: 2,
        config: TopicConfigOverrides::from(explicit),
    });
    assert_eq!(
        created.error_code,
        ErrorCode::None,
        "{}",
        created.error_message
    );
    assert_eq!(
        describe(&mut client, "explicit"),
        (explicit, 2),
        "explicit values, unlimited ones included, override every default"
    );

    let created: CreateTopicResponse = client.call(&CreateTopicRequest {
        name: "unlimited-size".into(),
        partition_count: 0,
        config: TopicConfigOverrides {
            retention_bytes: Some(Limit::Unlimited),
            ..TopicConfigOverrides::default()
        },
    });
    assert_eq!(
        created.error_code,
        ErrorCode::None,
        "{}",
        created.error_message
    );
    let unlimited_size = TopicConfig {
        retention_bytes: None,
        ..broker_defaults
    };
    assert_eq!(
        describe(&mut client, "unlimited-size"),
        (unlimited_size, 3),
        "unlimited overrides the default size limit and only that"
    );

    let refused: CreateTopicResponse = client.call(&CreateTopicRequest {
        name: "zero-retention".into(),
        partition_count: 1,
        config: TopicConfigOverrides {
            retention_bytes: Some(Limit::Value(0)),
            ..TopicConfigOverrides::default()
        },
    });
    assert_eq!(refused.error_code, ErrorCode::InvalidConfig);
    assert!(
        refused.error_message.contains("retention-bytes-max"),
        "{}",
        refused.error_message
    );

    // A topic keeps the settings it was created with when the broker's defaults change.
    drop(client);
    assert!(broker.stop().success());
    let broker = start(&data_dir, 2);
    let mut client = broker.connect();
    assert_eq!(describe(&mut client, "defaults"), (broker_defaults, 3));
    assert_eq!(describe(&mut client, "unlimited-size"), (unlimited_size, 3));
    drop(client);
    assert!(broker.stop().success());
}

#[test]
fn default_data_dir_and_limits_create_topics_and_commit_offsets() {
    // Nothing but ephemeral ports and a ready file: the data directory is the default, relative
    // `./weir-data` (here inside a temporary working directory), and every limit its default.
    let dir = tempfile::tempdir().unwrap();
    let ready_file = dir.path().join("ready.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_weir-broker"))
        .current_dir(dir.path())
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--cores", "2"])
        .arg("--ready-file")
        .arg(&ready_file)
        .stdout(Stdio::null())
        .spawn()
        .expect("weir-broker starts");
    let broker = wait_ready(child, &dir.path().join("weir-data"), ready_file)
        .unwrap_or_else(|output| panic!("weir-broker exited at start: {output:?}"));
    let mut client = broker.connect();
    let created: CreateTopicResponse = client.call(&CreateTopicRequest {
        name: "plain".into(),
        ..CreateTopicRequest::default()
    });
    assert_eq!(
        created.error_code,
        ErrorCode::None,
        "{}",
        created.error_message
    );
    assert!(
        dir.path().join("weir-data/catalog.toml").exists(),
        "the catalog is in ./weir-data"
    );
    let produced = produce(
        &mut client,
        vec![(created.topic_id, 0, batch(&["one".to_string()]))],
    );
    assert_eq!(produced.entries[0].error_code, ErrorCode::None);
    // Committed offsets live in the internal offsets topic, which must open under the defaults.
    let committed: OffsetCommitResponse = client.call(&OffsetCommitRequest {
        group_id: "g".into(),
        generation: -1,
        member_id: String::new(),
        entries: vec![OffsetCommitPartition {
            topic_id: created.topic_id,
            partition: 0,
            offset: 1,
            metadata: String::new(),
        }],
    });
    assert_eq!(
        committed.entries[0].error_code,
        ErrorCode::None,
        "{}",
        committed.entries[0].error_message
    );
    drop(client);
    assert!(broker.stop().success());
}

#[test]
fn long_poll_fetch_wakes_on_append_from_another_connection_and_shard() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(&dir.path().join("data"), 2);
    let mut admin = broker.connect();
    let topic_id = create_topic(&mut admin, "events", 4);
    // The fetch watches every partition on both shards; the producer writes to one of them
    // through the other shard's direct port.
    let mut consumer = Client::connect(broker.shards[0]);
    let started = Instant::now();
    let id = consumer.send(&FetchRequest {
        max_wait_ms: 5_000,
        min_bytes: 1,
        max_bytes: 1 << 20,
        entries: (0..4)
            .map(|partition| FetchPartition {
                topic_id,
                partition,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
            })
            .collect(),
    });
    let mut producer = Client::connect(broker.shards[1]);
    // Partition 0 of a topic is owned by whichever shard the hash says; either way one of the
    // two sides of this fetch is remote.
    let produced = produce(
        &mut producer,
        vec![(topic_id, 0, batch(&["wake".to_string()]))],
    );
    assert_eq!(produced.entries[0].error_code, ErrorCode::None);
    let fetched: FetchResponse = consumer.receive(id).unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(4_000),
        "woken by the append, not the deadline"
    );
    let all: Vec<String> = fetched
        .entries
        .iter()
        .flat_map(|entry| values(entry.records.to_contiguous()))
        .map(|(_, value)| value)
        .collect();
    assert_eq!(all, ["wake"]);

    // With nothing to read, the fetch returns empty at its deadline.
    let started = Instant::now();
    let empty = fetch(&mut consumer, &[(topic_id, 3, 0)], 300);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(empty.entries[0].records.is_empty());

    // A fetch still waiting at SIGTERM is answered (empty) and the broker exits 0 long before
    // the fetch's own deadline.
    let waiting = consumer.send(&FetchRequest {
        max_wait_ms: 5_000,
        min_bytes: 1,
        max_bytes: 1 << 20,
        entries: vec![FetchPartition {
            topic_id,
            partition: 3,
            fetch_offset: 0,
            partition_max_bytes: 1 << 20,
        }],
    });
    wait_until(STARTUP_DEADLINE, "the fetch to be in flight", || {
        metric(&broker.scrape(), "weir_requests_inflight{shard=\"0\"}") == Some(1.0)
    });
    let started = Instant::now();
    let status = broker.stop();
    assert!(status.success(), "{status:?}");
    let answered: FetchResponse = consumer.receive(waiting).unwrap();
    assert!(answered.entries[0].records.is_empty());
    assert!(
        started.elapsed() < Duration::from_millis(4_000),
        "shutdown did not wait for the fetch deadline"
    );
    drop((admin, consumer, producer));
}

#[test]
fn bad_input_gets_an_error_or_a_close_and_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_with(
        &dir.path().join("data"),
        1,
        &["--frame-read-timeout-ms", "300"],
    );
    let mut healthy = broker.connect();
    let topic_id = create_topic(&mut healthy, "t", 1);

    // Unknown api key: a typed error response, and the connection stays usable.
    let mut unknown = broker.connect();
    let mut frame = Vec::new();
    frame.extend_from_slice(&10u32.to_be_bytes());
    frame.extend_from_slice(&999u16.to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes());
    frame.extend_from_slice(&77u32.to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes());
    unknown.stream.write_all(&frame).unwrap();
    match unknown.receive::<ApiVersionsResponse>(77) {
        Err(ResponseError::Rejected(rejection)) => {
            assert_eq!(rejection.error_code, ErrorCode::UnknownApiKey)
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    unknown.next_id = 78;
    let _: ListTopicsResponse = unknown.call(&ListTopicsRequest);

    // Oversized frame: error response with the request's correlation id, then close.
    let mut oversized = broker.connect();
    let mut frame = Vec::new();
    frame.extend_from_slice(&(64u32 << 20).to_be_bytes());
    frame.extend_from_slice(&20u16.to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes());
    frame.extend_from_slice(&5u32.to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes());
    oversized.stream.write_all(&frame).unwrap();
    match oversized.receive::<ProduceResponse>(5) {
        Err(ResponseError::Rejected(rejection)) => {
            assert_eq!(rejection.error_code, ErrorCode::MessageTooLarge)
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(oversized.closed_by_broker());

    // A frame that starts and never finishes: closed after frame-read-timeout-ms, and its
    // memory is released (the produce below still gets through).
    let mut stalled = broker.connect();
    stalled.stream.write_all(&900_000u32.to_be_bytes()).unwrap();
    stalled.stream.write_all(&[0u8; 100]).unwrap();
    assert!(stalled.closed_by_broker(), "stalled frame closed");

    // Garbage shorter than a header: closed.
    let mut garbage = broker.connect();
    garbage.stream.write_all(&[0, 0, 0, 3, 1, 2, 3]).unwrap();
    assert!(garbage.closed_by_broker());

    // A corrupt batch (CRC mismatch): a per-partition, retriable error, nothing appended.
    let mut corrupt = batch(&["x".to_string()]).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let rejected = produce(&mut healthy, vec![(topic_id, 0, Bytes::from(corrupt))]);
    assert_eq!(rejected.entries[0].error_code, ErrorCode::CorruptMessage);
    let unknown_topic = produce(
        &mut healthy,
        vec![(topic_id + 100, 0, batch(&["x".to_string()]))],
    );
    assert_eq!(unknown_topic.entries[0].error_code, ErrorCode::UnknownTopic);

    // The healthy connection still works and nothing bad was stored.
    let ok = produce(
        &mut healthy,
        vec![(topic_id, 0, batch(&["good".to_string()]))],
    );
    assert_eq!(ok.entries[0].base_offset, 0);

    // acks = none: no response; the next response on the connection answers the next request.
    healthy.send(&ProduceRequest {
        acks: Acks::None,
        timeout_ms: 1_000,
        entries: vec![ProducePartition {
            topic_id,
            partition: 0,
            records: batch(&["quiet".to_string()]),
        }],
    });
    let listed: ListOffsetsResponse = healthy.call(&ListOffsetsRequest {
        entries: vec![ListOffsetsPartition {
            topic_id,
            partition: 0,
            query: OffsetQuery::Latest,
        }],
    });
    assert_eq!(
        listed.entries[0].offset, 2,
        "the unacknowledged produce was appended before it"
    );
    let metrics = broker.scrape();
    assert!(
        metric(&metrics, "weir_protocol_errors_total{shard=\"0\"}").unwrap() >= 3.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "weir_produce_memory_bytes{shard=\"0\"}"),
        Some(0.0),
        "the stalled frame's memory was released:\n{metrics}"
    );
    drop(healthy);
    assert!(broker.stop().success());
}

#[test]
fn acknowledged_produce_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let broker = start(&data_dir, 2);
    let mut client = broker.connect();
    let topic_id = create_topic(&mut client, "durable", 2);
    let mut acknowledged = 0;
    for round in 0..20 {
        let produced = produce(
            &mut client,
            (0..2)
                .map(|partition| {
                    (
                        topic_id,
                        partition,
                        batch(&[format!("{partition}-{round}")]),
                    )
                })
                .collect(),
        );
        assert!(produced
            .entries
            .iter()
            .all(|e| e.error_code == ErrorCode::None));
        acknowledged += 1;
    }
    broker.kill();
    let broker = start(&data_dir, 2);
    let mut client = broker.connect();
    for partition in 0..2 {
        let mut offset = 0;
        let mut seen = Vec::new();
        while seen.len() < acknowledged {
            let fetched = fetch(&mut client, &[(topic_id, partition, offset)], 0);
            let got = values(fetched.entries[0].records.to_contiguous());
            assert!(
                !got.is_empty(),
                "partition {partition}: only {} of {acknowledged} records after SIGKILL",
                seen.len()
            );
            offset = got.last().unwrap().0 + 1;
            seen.extend(got.into_iter().map(|(_, v)| v));
        }
        let expected: Vec<String> = (0..acknowledged)
            .map(|round| format!("{partition}-{round}"))
            .collect();
        assert_eq!(seen, expected);
    }
    let _ = std::fs::remove_file(&broker.ready_file);
    assert!(broker.data_dir.exists());
    assert!(broker.stop().success());
}

#[test]
fn memory_budget_throttles_without_losing_requests_and_connections_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    // The request-memory budget holds one frame at a time: pipelined large produces must queue
    // behind it (the broker stops reading) and all still succeed.
    let broker = start_with(
        &dir.path().join("data"),
        1,
        &[
            "--produce-memory-bytes-max",
            "1048576",
            "--connections-max",
            "3",
        ],
    );
    let mut client = broker.connect();
    let topic_id = create_topic(&mut client, "big", 1);
    let value = "v".repeat(200_000);
    let request = ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 10_000,
        entries: vec![ProducePartition {
            topic_id,
            partition: 0,
            records: batch(&[value.clone(), value.clone(), value.clone(), value]),
        }],
    };
    let ids: Vec<u32> = (0..6).map(|_| client.send(&request)).collect();
    for (round, id) in ids.into_iter().enumerate() {
        let response: ProduceResponse = client.receive(id).unwrap();
        assert_eq!(response.entries[0].error_code, ErrorCode::None);
        assert_eq!(
            response.entries[0].base_offset,
            round as i64 * 4,
            "appended in request order"
        );
    }
    let metrics = broker.scrape();
    assert!(
        metric(&metrics, "weir_produce_throttled_total{shard=\"0\"}").unwrap() >= 1.0,
        "reading paused for memory:\n{metrics}"
    );
    assert_eq!(
        metric(&metrics, "weir_produce_memory_bytes{shard=\"0\"}"),
        Some(0.0)
    );

    // Three connections are open (client, and the two below); the fourth is closed at accept.
    let mut second = broker.connect();
    let _: ListTopicsResponse = second.call(&ListTopicsRequest);
    let mut third = broker.connect();
    let _: ListTopicsResponse = third.call(&ListTopicsRequest);
    let mut fourth = broker.connect();
    assert!(fourth.closed_by_broker(), "over connections-max");
    let _: ListTopicsResponse = client.call(&ListTopicsRequest);
    let metrics = broker.scrape();
    assert_eq!(
        metric(&metrics, "weir_connections_rejected_total{shard=\"0\"}"),
        Some(1.0)
    );
    drop((client, second, third, fourth));
    assert!(broker.stop().success());
}

#[test]
fn fixed_ports_put_shard_i_on_shard_port_base_plus_i() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let log = dir.path().join("broker.log");
    // Ports probed free may be taken by another process before the broker binds them; a start
    // that fails on a bind is retried with other ports.
    for _ in 0..10 {
        let (shared, base, metrics) = (probe_free_port(), probe_free_port(), probe_free_port());
        if base == u16::MAX || shared.abs_diff(base) <= 1 || metrics.abs_diff(base) <= 1 {
            continue;
        }
        let listen = format!("127.0.0.1:{shared}");
        let metrics_listen = format!("127.0.0.1:{metrics}");
        let base_text = base.to_string();
        let flags = [
            "--listen",
            &listen,
            "--shard-port-base",
            &base_text,
            "--metrics-listen",
            &metrics_listen,
        ];
        let stderr = Stdio::from(std::fs::File::create(&log).unwrap());
        let broker = match try_start(&data_dir, 2, &flags, &[], stderr) {
            Ok(broker) => broker,
            Err(output) => {
                let text = std::fs::read_to_string(&log).unwrap();
                assert!(
                    text.contains("cannot listen"),
                    "only a taken port may stop the start ({:?}): {text}",
                    output.status
                );
                continue;
            }
        };
        let expected: Vec<SocketAddr> = [base, base + 1]
            .iter()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
            .collect();
        assert_eq!(broker.listen, SocketAddr::from(([127, 0, 0, 1], shared)));
        assert_eq!(broker.shards, expected, "shard i listens on base + i");
        assert_eq!(broker.metrics, SocketAddr::from(([127, 0, 0, 1], metrics)));
        let metadata: MetadataResponse = broker.connect().call(&MetadataRequest::default());
        let advertised: Vec<String> = metadata.shards.iter().map(|s| s.address.clone()).collect();
        let expected_text: Vec<String> = expected.iter().map(ToString::to_string).collect();
        assert_eq!(advertised, expected_text, "metadata names the direct ports");
        for address in &expected {
            let versions: ApiVersionsResponse =
                Client::connect(*address).call(&ApiVersionsRequest {
                    client_id: "test".into(),
                    client_software: "broker_process".into(),
                });
            assert_eq!(versions.broker_name, "weir-broker", "shard at {address}");
        }
        assert!(broker.stop().success());
        return;
    }
    panic!("no start on probed free ports in 10 tries");
}

#[test]
fn second_broker_on_the_same_data_dir_and_bad_config_exit_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let broker = start(&data_dir, 1);
    let output = Command::new(env!("CARGO_BIN_EXE_weir-broker"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--cores",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("locked by another weir-broker"), "{stderr}");
    assert!(broker.stop().success());

    let output = Command::new(env!("CARGO_BIN_EXE_weir-broker"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--frame-bytes-max", "10"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("frame-bytes-max"), "{stderr}");

    // Colliding ports are refused before anything is bound, naming the setting.
    let collisions: [(&[&str], &str); 3] = [
        (&["--listen", "127.0.0.1:9351"], "shard-port-base"),
        (&["--metrics-listen", "127.0.0.1:9347"], "metrics-listen"),
        (&["--shard-port-base", "65535"], "shard-port-base"),
    ];
    for (args, key) in collisions {
        let output = Command::new(env!("CARGO_BIN_EXE_weir-broker"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--cores", "2"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{args:?}: {stderr}");
    }

    let help = Command::new(env!("CARGO_BIN_EXE_weir-broker"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--data-dir",
        "--listen",
        "--metrics-listen",
        "--shard-port-base",
        "--cores",
        "--config",
        "--ready-file",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn a_partition_that_cannot_open_at_start_stops_the_broker_before_it_is_ready() {
    // The internal offsets topic and a user topic alike: a broker that cannot open a partition
    // it owns must not report ready (and then fail requests about it), but exit naming it.
    for topic in ["__offsets", "orders"] {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let broker = start(&data_dir, 1);
        create_topic(&mut broker.connect(), "orders", 2);
        assert!(broker.stop().success());

        let topics = std::fs::read_dir(data_dir.join("topics")).unwrap();
        let topic_dir = topics
            .map(|entry| entry.unwrap().path())
            .find(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                name.ends_with(&format!("-{topic}"))
            })
            .unwrap_or_else(|| panic!("no directory of {topic}"));
        // A file where the partition's directory belongs: the log cannot open.
        let partition_dir = topic_dir.join("0");
        let _ = std::fs::remove_dir_all(&partition_dir);
        std::fs::write(&partition_dir, b"not a directory").unwrap();

        let listen = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
        let output = match try_start(&data_dir, 1, &listen, &[], Stdio::piped()) {
            Ok(_) => panic!("{topic}: the broker reported ready without partition 0"),
            Err(output) => output,
        };
        assert!(!output.status.success(), "{topic}: exit status 0");
        assert!(
            !data_dir.with_extension("ready.toml").exists(),
            "{topic}: a ready file was written"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("cannot open partition {topic}/0 at start")),
            "{topic}: stderr does not name the partition:\n{stderr}"
        );
    }
}
