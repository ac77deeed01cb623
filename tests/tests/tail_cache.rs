//! The per-shard tail cache serves client topics: a caught-up reader of a partition whose data
//! fits the shard's budget is answered from memory, however many internal `__offsets`
//! partitions the shard also owns (they are replayed once at start and get only the floor), and
//! the budget is divided again among the open partitions whenever the shard's partitions change.

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

#[test]
fn a_new_partition_takes_its_share_from_the_partitions_already_open() {
    // One shard, a 1 MiB budget: the first topic's partition gets all of it, then a second
    // topic's partition halves every share, the open one's included.
    let broker = BrokerProcess::start(
        BrokerOptions::with_cores(1)
            .args(["--tail-cache-bytes-max", &TAIL_CACHE_BYTES.to_string()]),
    );
    let mut client = WireClient::connect_and_handshake(broker.shard_address(0));
    let first = client.create_topic("first", 1, FlushPolicy::Never);
    let value = vec![b'v'; 1000];
    let values: Vec<&[u8]> = (0..100).map(|_| value.as_slice()).collect();
    let produce = |client: &mut WireClient| {
        let answer = client.produce(first, 0, build_values_batch(&values));
        assert_eq!(
            answer.error_code,
            ErrorCode::None,
            "{}",
            answer.error_message
        );
    };
    // About 101 KB each: 9 fit the budget, and more than 2 do not fit in half of it besides
    // the (at most 2) newest batches the write buffer may still hold under flush=never.
    let batches = 9;
    for _ in 0..batches {
        produce(&mut client);
    }
    let written_bytes = batches * values.len() * value.len();
    assert!(
        written_bytes > TAIL_CACHE_BYTES / 2 + 2 * 101_000 && written_bytes < TAIL_CACHE_BYTES,
        "the data must fit the whole budget but not half of it"
    );
    let read_misses = |client: &mut WireClient, records: usize| {
        let before = broker.metrics();
        assert_eq!(client.read_partition(first, 0, 0).len(), records);
        broker.metrics().expect_sum(MISSES) - before.expect_sum(MISSES)
    };
    assert_eq!(
        read_misses(&mut client, batches * values.len()),
        0.0,
        "alone, the partition's data is cached"
    );

    client.create_topic("second", 1, FlushPolicy::Never);
    // Written batches move to the tail cache, which now evicts down to half the budget, as
    // the next append completes the writes before it.
    produce(&mut client);
    assert!(
        read_misses(&mut client, (batches + 1) * values.len()) > 0.0,
        "with a second partition on the shard, the first keeps only half the budget, so its \
         oldest batches are read from the segment file"
    );
}
