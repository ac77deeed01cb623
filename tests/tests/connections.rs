//! Many connections at once: 1,000 raw TCP connections opened concurrently, half of them sending
//! an ApiVersions request and reading its answer, then all dropped — three rounds of it.
//!
//! While they are open the broker keeps serving a well-behaved client and counts them in its
//! open-connections gauge; after they are dropped the gauge returns to 0. The broker's RSS must
//! not grow from round to round (a per-connection leak) and must return to within a bound of
//! what it was before the first round (memory of closed connections is given back).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use weir_proto::wire::{
    ApiVersionsResponse, ErrorCode, FlushPolicy, Priority, RequestMessage, ResponseFrameDecoder,
};
use weir_tests::broker::wait_for_metrics;
use weir_tests::wait::poll_until;
use weir_tests::wire::{api_versions_request, build_values_batch, decode_as};
use weir_tests::{raise_open_files_limit, BrokerOptions, BrokerProcess, WireClient};

const CONNECTIONS: usize = 1_000;
const OPENER_THREADS: usize = 4;
/// Rounds of 1,000 connections: RSS growing from round to round is a leak.
const ROUNDS: usize = 3;
/// How much the broker's RSS may grow from one round to the next.
const RSS_GROWTH_PER_ROUND_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// How far above its pre-test RSS the broker may stay once every connection is closed.
const RSS_RETAINED_MAX_BYTES: u64 = 32 * 1024 * 1024;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const RSS_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens `count` connections; every other one sends an ApiVersions request and reads the answer.
fn open_connections(address: SocketAddr, first: usize, count: usize) -> Vec<TcpStream> {
    let mut request = BytesMut::new();
    let mut streams = Vec::with_capacity(count);
    for index in first..first + count {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(20))
            .unwrap_or_else(|error| panic!("connection {index} failed: {error}"));
        if index % 2 == 0 {
            request.clear();
            api_versions_request()
                .encode_frame(index as u32, Priority::Normal, &mut request)
                .expect("encode ApiVersions");
            std::io::Write::write_all(&mut stream, &request)
                .unwrap_or_else(|error| panic!("connection {index}: send failed: {error}"));
        }
        streams.push(stream);
    }
    for (offset, stream) in streams.iter_mut().enumerate() {
        let index = first + offset;
        if index % 2 == 0 {
            read_api_versions(stream, index as u32);
        }
    }
    streams
}

fn read_api_versions(stream: &mut TcpStream, correlation_id: u32) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut decoder = ResponseFrameDecoder::default();
    let mut buffer = BytesMut::new();
    let frame = loop {
        if let Some(frame) = decoder.decode(&mut buffer).expect("valid framing") {
            break frame;
        }
        let mut chunk = [0u8; 4096];
        let count = stream
            .read(&mut chunk)
            .unwrap_or_else(|error| panic!("connection {correlation_id}: no answer: {error}"));
        assert!(
            count > 0,
            "connection {correlation_id} was closed instead of answered"
        );
        buffer.extend_from_slice(&chunk[..count]);
    };
    assert_eq!(frame.header.correlation_id(), correlation_id);
    let response: ApiVersionsResponse = decode_as(&frame).expect("an ApiVersions answer");
    assert!(!response.apis.is_empty());
}

fn open_connections_gauge(broker: &BrokerProcess) -> f64 {
    broker.metrics().expect_sum("weir_connections_open")
}

/// Opens 1,000 connections from several threads, checks the broker counts them and still serves
/// a well-behaved client, drops them all, and waits until the broker counts none.
fn connection_round(broker: &BrokerProcess, round: usize) {
    let address = broker.addresses().listen;
    let accepted_before = broker
        .metrics()
        .expect_sum("weir_connections_accepted_total");
    let per_thread = CONNECTIONS / OPENER_THREADS;
    let openers: Vec<_> = (0..OPENER_THREADS)
        .map(|thread| {
            std::thread::spawn(move || open_connections(address, thread * per_thread, per_thread))
        })
        .collect();
    let streams: Vec<TcpStream> = openers
        .into_iter()
        .flat_map(|opener| opener.join().expect("an opener thread failed"))
        .collect();
    assert_eq!(streams.len(), CONNECTIONS);

    let metrics = wait_for_metrics(
        broker,
        SETTLE_TIMEOUT,
        &format!("round {round}: the broker counts all 1,000 connections as open"),
        |metrics| metrics.expect_sum("weir_connections_open") >= CONNECTIONS as f64,
    );
    assert!(
        metrics.expect_sum("weir_connections_accepted_total") - accepted_before
            >= CONNECTIONS as f64,
        "round {round}: every connection was accepted"
    );
    assert_eq!(
        metrics.sum("weir_connections_rejected_total"),
        Some(0.0),
        "round {round}: no connection was refused under the limit"
    );
    // A well-behaved client is served while they are all open.
    {
        let mut client = WireClient::connect_and_handshake(address);
        let (_, topic) = client.topic_metadata("busy");
        let value = format!("while busy {round}");
        let result = client.produce(topic.topic_id, 0, build_values_batch(&[value]));
        assert_eq!(
            result.error_code,
            ErrorCode::None,
            "{}",
            result.error_message
        );
        assert_eq!(result.base_offset, 20 + round as i64);
        assert_eq!(
            client.read_partition(topic.topic_id, 0, 0).len(),
            21 + round
        );
    }

    drop(streams);
    wait_for_metrics(
        broker,
        SETTLE_TIMEOUT,
        &format!(
            "round {round}: weir_connections_open returns to 0 once every connection is dropped"
        ),
        |metrics| metrics.expect_sum("weir_connections_open") == 0.0,
    );
}

#[test]
fn a_thousand_connections_come_and_go_without_leaking() {
    let open_files = raise_open_files_limit(4 * CONNECTIONS as libc::rlim_t);
    assert!(
        open_files >= 2 * CONNECTIONS as libc::rlim_t,
        "this test needs about {} open files; the limit is {open_files}",
        2 * CONNECTIONS
    );
    // The default connection limit (1,024 per shard) admits them all on one shard.
    let mut broker = BrokerProcess::start(BrokerOptions::with_cores(1));
    let address = broker.addresses().listen;

    // Warm up, then take the baseline with no client connection open.
    {
        let mut client = WireClient::connect_and_handshake(address);
        let topic_id = client.create_topic("busy", 1, FlushPolicy::Always);
        for round in 0..20 {
            let value = format!("warm-up-{round}");
            let result = client.produce(topic_id, 0, build_values_batch(&[value]));
            assert_eq!(
                result.error_code,
                ErrorCode::None,
                "{}",
                result.error_message
            );
        }
        assert_eq!(client.read_partition(topic_id, 0, 0).len(), 20);
    }
    wait_for_metrics(
        &broker,
        SETTLE_TIMEOUT,
        "the warm-up connections are closed (weir_connections_open = 0)",
        |metrics| metrics.expect_sum("weir_connections_open") == 0.0,
    );
    let rss_before = broker.rss_bytes();
    let mut rss_after_rounds = Vec::new();
    for round in 0..ROUNDS {
        connection_round(&broker, round);
        rss_after_rounds.push(broker.rss_bytes());
    }
    println!("broker RSS before: {rss_before} bytes; after each round: {rss_after_rounds:?}");
    // A leak grows with every round; memory kept for reuse does not.
    let growth = rss_after_rounds[ROUNDS - 1].saturating_sub(rss_after_rounds[0]);
    assert!(
        growth <= RSS_GROWTH_PER_ROUND_MAX_BYTES * (ROUNDS as u64 - 1),
        "broker RSS grew by {growth} bytes between the first and the last of {ROUNDS} rounds of \
         1,000 connections ({rss_after_rounds:?}): per-connection memory leaks"
    );
    let mut rss_after = broker.rss_bytes();
    let settled = poll_until(RSS_SETTLE_TIMEOUT, || {
        rss_after = broker.rss_bytes();
        rss_after <= rss_before + RSS_RETAINED_MAX_BYTES
    });
    assert!(
        settled,
        "broker RSS was {rss_before} bytes before 1,000 connections and is still {rss_after} \
         bytes {RSS_SETTLE_TIMEOUT:?} after they all closed (allowed: +{RSS_RETAINED_MAX_BYTES}); \
         it does not grow from round to round ({rss_after_rounds:?}), so the memory of closed \
         connections is kept rather than returned"
    );
    broker.assert_running("after 1,000 connections");
    let mut client = WireClient::connect_and_handshake(address);
    let (_, topic) = client.topic_metadata("busy");
    assert_eq!(
        client.read_partition(topic.topic_id, 0, 0).len(),
        20 + ROUNDS
    );
    assert!(
        open_connections_gauge(&broker) >= 1.0,
        "the new client is counted"
    );
}
