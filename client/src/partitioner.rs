//! Record placement: which partition of a topic a record goes to.
//!
//! Keyed records are placed by Kafka's default partitioner, `(murmur2(key) & 0x7fffffff) %
//! partitions`, bit for bit, so a key lands on the same partition number in Weir as it would in
//! Kafka with the same partition count. Keyless records use a sticky round robin: every keyless
//! record goes to the current sticky partition until that partition's open batch is handed to the
//! sender, then the next partition becomes sticky. This fills whole batches instead of spreading
//! single records over every partition. Invariant: every returned partition is `< partitions`,
//! and `partitions` is never 0 (callers check it before asking).
//!
//! A producer may place keyed records on a consistent-hash ring instead
//! ([`Partitioning::ConsistentHash`], see [`crate::hash_ring`]), so that growing a topic moves
//! only about 1/(N + 1) of its keys; keyless records stay sticky either way. [`KeyPartitioner`]
//! keeps one ring per partition count, at most [`RING_CACHE_ENTRIES_MAX`] of them, so a lookup
//! neither builds a ring nor allocates.

use crate::hash_ring::{HashRing, RingError, VIRTUAL_NODES_DEFAULT};

/// The most rings (one per distinct partition count) a [`KeyPartitioner`] keeps; past it, the
/// least recently used ring is dropped and rebuilt when next needed.
pub const RING_CACHE_ENTRIES_MAX: usize = 32;

/// How a producer places keyed records (keyless records always use the sticky partitioner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioning {
    /// Kafka's default: `(murmur2(key) & 0x7fffffff) % partitions` ([`partition_for_key`]).
    /// Changing the partition count moves about N/(N + 1) of the keys.
    #[default]
    KeyHash,
    /// A consistent-hash ring ([`HashRing`]) with `virtual_nodes` points per partition; growing
    /// a topic from N to N + 1 partitions moves about 1/(N + 1) of the keys, all to the new
    /// partition. The same key lands on different partitions than with `KeyHash`.
    ConsistentHash {
        /// Points per partition on the ring, in `1..=VIRTUAL_NODES_MAX`; more points balance
        /// the partitions better and cost 8 bytes each per ring.
        virtual_nodes: u32,
    },
}

impl Partitioning {
    /// Consistent hashing with [`VIRTUAL_NODES_DEFAULT`] (128) virtual nodes per partition.
    pub fn consistent_hash() -> Partitioning {
        Partitioning::ConsistentHash {
            virtual_nodes: VIRTUAL_NODES_DEFAULT,
        }
    }

    /// Checks the settings a ring would be built with, so a producer fails at creation rather
    /// than at its first keyed record.
    pub fn validate(&self) -> Result<(), RingError> {
        match *self {
            Partitioning::KeyHash => Ok(()),
            Partitioning::ConsistentHash { virtual_nodes } => {
                HashRing::new(1, virtual_nodes).map(|_| ())
            }
        }
    }
}

/// Places keyed records per a [`Partitioning`], caching one ring per partition count.
#[derive(Debug, Clone)]
pub struct KeyPartitioner {
    partitioning: Partitioning,
    /// Rings with the lookup count at which each was last used; at most
    /// [`RING_CACHE_ENTRIES_MAX`], searched linearly (a handful of partition counts in practice).
    rings: Vec<(HashRing, u64)>,
    lookups: u64,
}

impl KeyPartitioner {
    /// Creates a partitioner with an empty ring cache.
    pub fn new(partitioning: Partitioning) -> KeyPartitioner {
        KeyPartitioner {
            partitioning,
            rings: Vec::new(),
            lookups: 0,
        }
    }

    /// Returns the placement this partitioner follows.
    pub fn partitioning(&self) -> Partitioning {
        self.partitioning
    }

    /// Returns the partition of a keyed record in a topic of `partitions` partitions. Builds
    /// (once per partition count) the ring it needs; fails only when that ring cannot be built.
    pub fn partition(&mut self, key: &[u8], partitions: u32) -> Result<u32, RingError> {
        let virtual_nodes = match self.partitioning {
            Partitioning::KeyHash if partitions == 0 => return Err(RingError::NoPartitions),
            Partitioning::KeyHash => return Ok(partition_for_key(key, partitions)),
            Partitioning::ConsistentHash { virtual_nodes } => virtual_nodes,
        };
        self.lookups += 1;
        let lookups = self.lookups;
        if let Some((ring, last_used)) = self
            .rings
            .iter_mut()
            .find(|(ring, _)| ring.partitions() == partitions)
        {
            *last_used = lookups;
            return Ok(ring.partition_for(key));
        }
        let ring = HashRing::new(partitions, virtual_nodes)?;
        let partition = ring.partition_for(key);
        if self.rings.len() >= RING_CACHE_ENTRIES_MAX {
            let least_recent = self
                .rings
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, last_used))| *last_used)
                .map(|(index, _)| index);
            if let Some(index) = least_recent {
                self.rings.swap_remove(index);
            }
        }
        self.rings.push((ring, lookups));
        Ok(partition)
    }

    /// Returns the partition counts whose rings are cached.
    pub fn cached_partition_counts(&self) -> Vec<u32> {
        self.rings
            .iter()
            .map(|(ring, _)| ring.partitions())
            .collect()
    }
}

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
    fn key_partitioner_follows_its_partitioning() {
        let mut key_hash = KeyPartitioner::new(Partitioning::KeyHash);
        let mut ring = KeyPartitioner::new(Partitioning::consistent_hash());
        let ring_of_12 = HashRing::new(12, VIRTUAL_NODES_DEFAULT).expect("ring");
        let mut differ = 0;
        for index in 0..2_000_u32 {
            let key = format!("key-{index}");
            let by_hash = key_hash.partition(key.as_bytes(), 12).expect("key hash");
            let by_ring = ring.partition(key.as_bytes(), 12).expect("ring");
            assert_eq!(by_hash, partition_for_key(key.as_bytes(), 12));
            assert_eq!(by_ring, ring_of_12.partition_for(key.as_bytes()));
            differ += usize::from(by_hash != by_ring);
        }
        // The two placements are different functions, not the same one under two names.
        assert!(differ > 1_000, "only {differ} of 2000 keys differ");
        assert!(key_hash.cached_partition_counts().is_empty());
        assert_eq!(ring.cached_partition_counts(), vec![12]);
        assert_eq!(ring.partition(b"k", 0), Err(RingError::NoPartitions));
        assert_eq!(key_hash.partition(b"k", 0), Err(RingError::NoPartitions));
    }

    #[test]
    fn key_partitioner_keeps_a_bounded_cache_of_recently_used_rings() {
        let mut partitioner =
            KeyPartitioner::new(Partitioning::ConsistentHash { virtual_nodes: 4 });
        let counts = RING_CACHE_ENTRIES_MAX as u32;
        for partitions in 1..=counts {
            partitioner.partition(b"key", partitions).expect("ring");
        }
        // Partition count 1 is used again, so 2 is now the least recently used.
        partitioner.partition(b"key", 1).expect("ring");
        partitioner.partition(b"key", counts + 1).expect("ring");
        let mut cached = partitioner.cached_partition_counts();
        cached.sort_unstable();
        let expected: Vec<u32> = (1..=counts + 1).filter(|&count| count != 2).collect();
        assert_eq!(cached, expected);
    }

    #[test]
    fn partitioning_validates_virtual_nodes() {
        assert_eq!(Partitioning::KeyHash.validate(), Ok(()));
        assert_eq!(Partitioning::consistent_hash().validate(), Ok(()));
        assert_eq!(
            Partitioning::ConsistentHash { virtual_nodes: 0 }.validate(),
            Err(RingError::VirtualNodesOutOfRange { virtual_nodes: 0 })
        );
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
