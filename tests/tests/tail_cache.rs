//! The per-shard tail cache serves client topics: a caught-up reader of a partition whose data
//! fits the shard's budget is answered from memory, however many internal `__offsets`
//! partitions the shard also owns (they are replayed once at start and get only the floor).

use weir_proto::wire::{ErrorCode, FlushPolicy};
use weir_tests::wire::build_values_batch;
use weir_tests::{BrokerOptions, BrokerProcess, WireClient};

const HITS: &str = "weir_tail_cache_hits_total";
const MISSES: &str = "weir_tail_cache_misses_total";
const TAIL_CACHE_BYTES: usize = 1 << 20;

#[test]
fn a_partition_that_fits_the_shard_budget_is_read_from_the_tail_cache() {
    // One shard owns all 8 `__offsets` partitions and the topic's one partition: divided among
    // all nine, the topic's share would be a ninth of the budget, under what is written here.
    let broker = BrokerProcess::start(
        BrokerOptions::with_cores(1)
            .args(["--tail-cache-bytes-max", &TAIL_CACHE_BYTES.to_string()]),
    );
    let mut client = WireClient::connect_and_handshake(broker.shard_address(0));
    let topic_id = client.create_topic("tail", 1, FlushPolicy::Never);
    let value = vec![b'v'; 1000];
    let values: Vec<&[u8]> = (0..100).map(|_| value.as_slice()).collect();
    let batches = 6;
    for _ in 0..batches {
        let answer = client.produce(topic_id, 0, build_values_batch(&values));
        assert_eq!(
            answer.error_code,
            ErrorCode::None,
            "{}",
            answer.error_message
        );
    }
    let written_bytes = batches * values.len() * value.len();
    assert!(
        written_bytes > TAIL_CACHE_BYTES / 9 && written_bytes < TAIL_CACHE_BYTES,
        "the data must fit the budget but not a ninth of it"
    );

    let before = broker.metrics();
    let records = client.read_partition(topic_id, 0, 0);
    let after = broker.metrics();
    assert_eq!(records.len(), batches * values.len());
    assert_eq!(
        after.expect_sum(MISSES) - before.expect_sum(MISSES),
        0.0,
        "reads of the partition went to the segment file"
    );
    assert!(
        after.expect_sum(HITS) > before.expect_sum(HITS),
        "no read was counted as a tail-cache hit"
    );
}
