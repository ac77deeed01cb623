//! Record placement: which partition of a topic a record goes to.
//!
//! Keyed records are placed by Kafka's default partitioner, `(murmur2(key) & 0x7fffffff) %
//! partitions`, bit for bit, so a key lands on the same partition number in Weir as it would in
//! Kafka with the same partition count. Keyless records use a sticky round robin: every keyless
//! record goes to the current sticky partition until that partition's open batch is handed to the
//! sender, then the next partition becomes sticky. This fills whole batches instead of spreading
//! single records over every partition. Invariant: every returned partition is `< partitions`,
//! and `partitions` is never 0 (callers check it before asking).

/// The seed Kafka's `Utils.murmur2` starts from.
const MURMUR2_SEED: u32 = 0x9747_b28c;
/// The multiplication constant of MurmurHash2.
const MURMUR2_M: u32 = 0x5bd1_e995;
/// The shift of MurmurHash2.
const MURMUR2_R: u32 = 24;

/// Computes 32-bit MurmurHash2 exactly as Kafka's `Utils.murmur2` does (same seed, same
/// little-endian word order, same tail handling), returned as the unsigned bit pattern.
pub fn murmur2(data: &[u8]) -> u32 {
    // Kafka folds the length in as a Java `int`: truncation to 32 bits is the reference behaviour.
    let mut h = MURMUR2_SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(MURMUR2_M);
        k ^= k >> MURMUR2_R;
        k = k.wrapping_mul(MURMUR2_M);
        h = h.wrapping_mul(MURMUR2_M);
        h ^= k;
    }
    let tail = words.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(MURMUR2_M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(MURMUR2_M);
    h ^= h >> 15;
    h
}

/// Returns the partition a keyed record goes to: `(murmur2(key) & 0x7fffffff) % partitions`,
/// Kafka's default placement.
///
/// # Panics
///
/// Panics if `partitions` is 0: a topic always has at least one partition, so a caller passing 0
/// has a broken invariant.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Sticky round robin for keyless records of one topic.
///
/// [`StickyPartitioner::partition`] keeps returning the same partition until
/// [`StickyPartitioner::batch_closed`] reports that this partition's batch was closed, then it moves
/// to the next partition in turn.
#[derive(Debug, Clone)]
pub struct StickyPartitioner {
    current: u32,
}

impl StickyPartitioner {
    /// Creates a sticky partitioner that starts at `start` (taken modulo the partition count on
    /// use), so that several producers do not all begin on partition 0.
    pub fn new(start: u32) -> Self {
        Self { current: start }
    }

    /// Returns the partition the next keyless record goes to.
    ///
    /// # Panics
    ///
    /// Panics if `partitions` is 0 (see [`partition_for_key`]).
    pub fn partition(&self, partitions: u32) -> u32 {
        assert!(partitions > 0, "a topic has at least one partition");
        self.current % partitions
    }

    /// Records that the batch of `partition` was closed (full, or handed to the sender). If that
    /// partition is the sticky one, the next partition becomes sticky.
    pub fn batch_closed(&mut self, partition: u32, partitions: u32) {
        if partitions > 0 && self.current % partitions == partition {
            self.current = (partition + 1) % partitions;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` vectors, as Java signed ints, plus the empty key.
    const KAFKA_VECTORS: [(&[u8], i32); 7] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
        (b"", 275_646_681),
    ];

    #[test]
    fn murmur2_matches_kafka_vectors() {
        for (key, expected) in KAFKA_VECTORS {
            assert_eq!(
                murmur2(key) as i32,
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn partition_for_key_masks_the_sign_bit_like_kafka() {
        // "foobar" hashes to a negative Java int; Kafka's toPositive masks the sign bit.
        assert_eq!(partition_for_key(b"foobar", 50), 16);
        for (key, expected) in KAFKA_VECTORS {
            let positive = (expected as u32) & 0x7fff_ffff;
            for partitions in [1_u32, 2, 3, 7, 12, 1000] {
                assert_eq!(partition_for_key(key, partitions), positive % partitions);
            }
        }
    }

    #[test]
    fn partition_for_key_is_stable_and_in_range() {
        for partitions in [1_u32, 3, 16, 257] {
            for index in 0..1000_u32 {
                let key = format!("key-{index}");
                let first = partition_for_key(key.as_bytes(), partitions);
                assert!(first < partitions);
                assert_eq!(first, partition_for_key(key.as_bytes(), partitions));
            }
        }
    }

    #[test]
    fn keys_spread_evenly_over_partitions() {
        let partitions = 16_u32;
        let keys = 64_000_u32;
        let mut counts = vec![0_u32; partitions as usize];
        for index in 0..keys {
            let key = format!("user-{index}");
            counts[partition_for_key(key.as_bytes(), partitions) as usize] += 1;
        }
        let expected = keys / partitions;
        for (partition, count) in counts.iter().enumerate() {
            // 4,000 expected per partition; a uniform hash stays well inside ±10%.
            assert!(
                count.abs_diff(expected) < expected / 10,
                "partition {partition} got {count} keys, expected about {expected}"
            );
        }
    }

    #[test]
    fn sticky_partitioner_sticks_until_its_batch_closes() {
        let partitions = 3;
        let mut sticky = StickyPartitioner::new(1);
        assert_eq!(sticky.partition(partitions), 1);
        assert_eq!(sticky.partition(partitions), 1);
        // Closing some other partition's batch does not move the sticky partition.
        sticky.batch_closed(0, partitions);
        assert_eq!(sticky.partition(partitions), 1);
        sticky.batch_closed(1, partitions);
        assert_eq!(sticky.partition(partitions), 2);
        sticky.batch_closed(2, partitions);
        assert_eq!(sticky.partition(partitions), 0);
    }

    #[test]
    fn sticky_partitioner_visits_every_partition_in_turn() {
        let partitions = 5;
        let mut sticky = StickyPartitioner::new(0);
        let mut seen = Vec::new();
        for _ in 0..partitions {
            let partition = sticky.partition(partitions);
            seen.push(partition);
            sticky.batch_closed(partition, partitions);
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }
}
