//! Fetch long polling over the raw wire protocol (the client's `poll` hides the knobs).
//!
//! A fetch with `max_wait_ms` and `min_bytes = 1` at the end of the log must be held by the
//! broker: it is not answered while nothing arrives, it is answered soon after an append (well
//! before `max_wait_ms`), and with no append it is answered at about `max_wait_ms` — not early,
//! not much later. A fetch whose bytes are already there is answered at once.

use std::time::{Duration, Instant};

use weir_proto::wire::{ErrorCode, FetchResponse, FlushPolicy};
use weir_tests::wire::{build_values_batch, decode_as, decode_records, fetch_request};
use weir_tests::{BrokerProcess, WireClient};

const MAX_WAIT_MS: u32 = 5_000;
/// How long after an append a held fetch may take to answer.
const WAKE_LATENCY_MAX: Duration = Duration::from_millis(1_500);
/// How late past `max_wait_ms` an idle fetch may answer.
const DEADLINE_LATENESS_MAX: Duration = Duration::from_millis(1_500);

#[test]
fn a_held_fetch_answers_soon_after_an_append() {
    let broker = BrokerProcess::start_with_cores(1);
    let mut consumer = WireClient::connect_and_handshake(broker.addresses().listen);
    let topic_id = consumer.create_topic("long-poll", 1, FlushPolicy::Always);
    let mut producer = WireClient::connect_and_handshake(broker.addresses().listen);

    let sent_at = Instant::now();
    let correlation_id = consumer
        .send(&fetch_request(topic_id, 0, 0, MAX_WAIT_MS, 1))
        .expect("send the fetch");
    // Nothing to return yet: the broker holds the fetch instead of answering empty.
    match consumer.receive(Duration::from_millis(500)) {
        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
        Ok(frame) => panic!(
            "a fetch at the end of an empty log with min_bytes 1 was answered after {:?} \
             instead of waiting (correlation id {})",
            sent_at.elapsed(),
            frame.header.correlation_id()
        ),
        Err(error) => panic!("the connection failed while the fetch waited: {error}"),
    }

    let appended = producer.produce(topic_id, 0, build_values_batch(&["wake up"]));
    assert_eq!(
        appended.error_code,
        ErrorCode::None,
        "{}",
        appended.error_message
    );
    let appended_at = Instant::now();
    let frame = consumer
        .receive(Duration::from_millis(u64::from(MAX_WAIT_MS)) + WAKE_LATENCY_MAX)
        .expect("the held fetch is answered");
    let answered_after_append = appended_at.elapsed();
    let answered_after_send = sent_at.elapsed();
    assert_eq!(frame.header.correlation_id(), correlation_id);
    let response: FetchResponse = decode_as(&frame).expect("a fetch response");
    assert!(
        answered_after_append <= WAKE_LATENCY_MAX,
        "the held fetch answered {answered_after_append:?} after the append (limit \
         {WAKE_LATENCY_MAX:?})"
    );
    assert!(
        answered_after_send < Duration::from_millis(u64::from(MAX_WAIT_MS)),
        "the held fetch answered at its deadline ({answered_after_send:?}), not on the append"
    );
    let entry = &response.entries[0];
    assert_eq!(entry.error_code, ErrorCode::None, "{}", entry.error_message);
    assert_eq!(entry.high_watermark, 1);
    let records = decode_records(&entry.records.to_contiguous());
    assert_eq!(records.len(), 1, "the fetch carries the appended record");
    assert_eq!(records[0].offset, 0);
    assert_eq!(records[0].value.as_deref(), Some(&b"wake up"[..]));

    // With the bytes already there, the same long-poll fetch is answered at once.
    let started = Instant::now();
    let response: FetchResponse = consumer.call_ok(&fetch_request(topic_id, 0, 0, MAX_WAIT_MS, 1));
    assert!(
        started.elapsed() < WAKE_LATENCY_MAX,
        "a fetch whose min_bytes are available waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        decode_records(&response.entries[0].records.to_contiguous()).len(),
        1
    );
}

#[test]
fn a_fetch_with_nothing_to_return_answers_at_max_wait() {
    let broker = BrokerProcess::start_with_cores(1);
    let mut client = WireClient::connect_and_handshake(broker.addresses().listen);
    let topic_id = client.create_topic("idle", 1, FlushPolicy::Always);
    let appended = client.produce(topic_id, 0, build_values_batch(&["already here"]));
    assert_eq!(
        appended.error_code,
        ErrorCode::None,
        "{}",
        appended.error_message
    );

    let max_wait = Duration::from_millis(u64::from(MAX_WAIT_MS));
    let started = Instant::now();
    let response: FetchResponse = client
        .call_within(
            &fetch_request(topic_id, 0, 1, MAX_WAIT_MS, 1),
            max_wait + DEADLINE_LATENESS_MAX + Duration::from_secs(5),
        )
        .expect("an idle fetch is answered normally");
    let waited = started.elapsed();
    assert!(
        waited >= max_wait.mul_f64(0.98),
        "an idle fetch answered after {waited:?}, before its max_wait of {max_wait:?}"
    );
    assert!(
        waited <= max_wait + DEADLINE_LATENESS_MAX,
        "an idle fetch answered after {waited:?}, long past its max_wait of {max_wait:?}"
    );
    let entry = &response.entries[0];
    assert_eq!(entry.error_code, ErrorCode::None, "{}", entry.error_message);
    assert_eq!(entry.high_watermark, 1);
    assert!(
        decode_records(&entry.records.to_contiguous()).is_empty(),
        "nothing was appended after offset 1"
    );
}
