//! Consistent-hash placement: a ring of virtual nodes that keyed records are placed on, so that
//! growing a topic from N to N + 1 partitions moves only about 1/(N + 1) of its keys (the
//! default `murmur2 % partitions` placement moves about N/(N + 1) of them).
//!
//! The ring is the 32-bit hash space `0..=u32::MAX` read as a circle. Every partition `p` in
//! `0..partitions` owns `virtual_nodes` points on it; point number `v` of partition `p` sits at
//! [`point_hash`]`(p, v)`: the high 32 bits of SplitMix64's output function applied to the 64-bit
//! word `(p << 32) | v`. A key sits at `murmur2(key)` (Kafka's key hash, see
//! [`crate::partitioner::murmur2`]) and belongs to the partition of the first point at or after
//! it, wrapping past `u32::MAX` to the lowest point. Both functions are fixed: a ring depends only
//! on `(partitions, virtual_nodes)`, so every producer, on every machine and in every version that
//! keeps these two functions, places a key on the same partition.
//!
//! Invariants:
//! - the points are sorted by `(hash, partition)`, and two points with the same hash resolve to
//!   the lower partition, so the ring for N + 1 partitions is the ring for N plus the points of
//!   partition N, and a key that moves when the topic grows moves only to the new partition;
//! - a ring holds at least one point and at most [`RING_POINTS_MAX`], and every owner it returns
//!   is `< partitions`;
//! - a lookup hashes the key once and binary-searches the points: it allocates nothing.

use crate::partitioner::murmur2;

/// The default number of virtual nodes per partition: enough that each partition's share of the
/// keys stays within about ±30% of the mean (see the balance test), at 1 KiB of ring per
/// partition.
pub const VIRTUAL_NODES_DEFAULT: u32 = 128;
/// The most virtual nodes per partition a ring accepts.
pub const VIRTUAL_NODES_MAX: u32 = 4_096;
/// The most points (partitions × virtual nodes) in one ring: 4 Mi points, 32 MiB.
pub const RING_POINTS_MAX: u64 = 1 << 22;

/// Why a ring cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// A topic always has a partition; a ring over none has no owner for any key.
    #[error("a consistent-hash ring needs at least one partition")]
    NoPartitions,
    /// `virtual_nodes` is 0 or above [`VIRTUAL_NODES_MAX`].
    #[error("virtual_nodes must be in 1..={VIRTUAL_NODES_MAX}, got {virtual_nodes}")]
    VirtualNodesOutOfRange {
        /// The number asked for.
        virtual_nodes: u32,
    },
    /// `partitions × virtual_nodes` exceeds [`RING_POINTS_MAX`].
    #[error(
        "a ring of {partitions} partitions × {virtual_nodes} virtual nodes exceeds \
         {RING_POINTS_MAX} points"
    )]
    TooManyPoints {
        /// The topic's partition count.
        partitions: u32,
        /// The virtual nodes per partition.
        virtual_nodes: u32,
    },
}

/// One virtual node: where it sits on the ring and which partition owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Point {
    hash: u32,
    partition: u32,
}

/// A consistent-hash ring for one partition count (see the module documentation).
///
/// ```
/// use weir_client::HashRing;
///
/// let ring = HashRing::new(8, 128).expect("a valid ring");
/// let partition = ring.partition_for(b"user-42");
/// assert!(partition < 8);
/// // Growing the topic moves a key only to the new partition, or not at all.
/// let grown = HashRing::new(9, 128).expect("a valid ring");
/// let moved_to = grown.partition_for(b"user-42");
/// assert!(moved_to == partition || moved_to == 8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRing {
    partitions: u32,
    virtual_nodes: u32,
    /// Sorted by `(hash, partition)`; never empty.
    points: Box<[Point]>,
}

impl HashRing {
    /// Builds the ring of `partitions` partitions with `virtual_nodes` points each.
    pub fn new(partitions: u32, virtual_nodes: u32) -> Result<HashRing, RingError> {
        if partitions == 0 {
            return Err(RingError::NoPartitions);
        }
        if virtual_nodes == 0 || virtual_nodes > VIRTUAL_NODES_MAX {
            return Err(RingError::VirtualNodesOutOfRange { virtual_nodes });
        }
        let points_count = u64::from(partitions) * u64::from(virtual_nodes);
        if points_count > RING_POINTS_MAX {
            return Err(RingError::TooManyPoints {
                partitions,
                virtual_nodes,
            });
        }
        let mut points: Vec<Point> = (0..partitions)
            .flat_map(|partition| {
                (0..virtual_nodes).map(move |vnode| Point {
                    hash: point_hash(partition, vnode),
                    partition,
                })
            })
            .collect();
        // Sorting by (hash, partition) makes ties deterministic and lets an older partition keep
        // a tied point when the topic grows.
        points.sort_unstable();
        debug_assert_eq!(points.len() as u64, points_count);
        Ok(HashRing {
            partitions,
            virtual_nodes,
            points: points.into_boxed_slice(),
        })
    }

    /// Returns the partition count the ring was built for.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Returns the number of virtual nodes per partition.
    pub fn virtual_nodes(&self) -> u32 {
        self.virtual_nodes
    }

    /// Returns the partition that owns `key`: the owner of the first point at or after
    /// `murmur2(key)`, wrapping around to the lowest point.
    pub fn partition_for(&self, key: &[u8]) -> u32 {
        self.partition_for_hash(murmur2(key))
    }

    /// Returns the partition that owns the ring position `hash`.
    pub fn partition_for_hash(&self, hash: u32) -> u32 {
        let index = self.points.partition_point(|point| point.hash < hash);
        // Past the highest point the ring wraps to the lowest one.
        let point = self.points.get(index).unwrap_or(&self.points[0]);
        debug_assert!(point.partition < self.partitions);
        point.partition
    }

    /// Returns each partition's share of the ring (the fraction of all 2^32 positions it owns),
    /// indexed by partition; the shares sum to 1.
    pub fn shares(&self) -> Vec<f64> {
        let mut owned = vec![0_u64; self.partitions as usize];
        let ring_size = 1_u64 << 32;
        let mut previous = u64::from(self.points[self.points.len() - 1].hash);
        for point in self.points.iter() {
            // The arc (previous, point] belongs to this point; the first arc wraps around.
            let hash = u64::from(point.hash);
            let arc = (hash + ring_size - previous) % ring_size;
            owned[point.partition as usize] += arc;
            previous = hash;
        }
        if self
            .points
            .iter()
            .all(|point| point.hash == self.points[0].hash)
        {
            // Every point at one position: the first of them owns the whole circle.
            owned[self.points[0].partition as usize] = ring_size;
        }
        owned
            .into_iter()
            .map(|arc| arc as f64 / ring_size as f64)
            .collect()
    }
}

/// Returns where virtual node `vnode` of `partition` sits on the ring: the high 32 bits of
/// SplitMix64's output function of `(partition << 32) | vnode`. This function is part of the
/// placement contract: changing it moves keys.
pub fn point_hash(partition: u32, vnode: u32) -> u32 {
    let mut z =
        ((u64::from(partition) << 32) | u64::from(vnode)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partitioner::partition_for_key;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// 100,000 random 16-byte keys from a fixed seed, so a failure replays.
    fn random_keys() -> Vec<[u8; 16]> {
        let mut rng = StdRng::seed_from_u64(0x5eed_2026);
        (0..100_000).map(|_| rng.gen()).collect()
    }

    #[test]
    fn rejects_rings_it_cannot_build() {
        assert_eq!(HashRing::new(0, 128), Err(RingError::NoPartitions));
        assert_eq!(
            HashRing::new(4, 0),
            Err(RingError::VirtualNodesOutOfRange { virtual_nodes: 0 })
        );
        assert_eq!(
            HashRing::new(4, VIRTUAL_NODES_MAX + 1),
            Err(RingError::VirtualNodesOutOfRange {
                virtual_nodes: VIRTUAL_NODES_MAX + 1
            })
        );
        assert_eq!(
            HashRing::new(2_048, 4_096),
            Err(RingError::TooManyPoints {
                partitions: 2_048,
                virtual_nodes: 4_096
            })
        );
        assert!(
            HashRing::new(1_024, 4_096).is_ok(),
            "exactly RING_POINTS_MAX"
        );
    }

    #[test]
    fn point_hash_is_pinned() {
        // These values are the placement contract: a change here moves every key of every
        // producer using consistent hashing.
        let pinned: Vec<u32> = [(0, 0), (0, 1), (1, 0), (7, 127), (u32::MAX, u32::MAX)]
            .iter()
            .map(|&(partition, vnode)| point_hash(partition, vnode))
            .collect();
        assert_eq!(pinned, PINNED_POINT_HASHES);
    }

    /// Computed by an independent Python SplitMix64; the first equals the high half of
    /// SplitMix64's published first output from seed 0, `0xe220a8397b1dcdaf`.
    const PINNED_POINT_HASHES: [u32; 5] = [
        0xe220_a839,
        2_433_363_436,
        3_291_240_986,
        1_813_254_923,
        3_839_455_607,
    ];

    #[test]
    fn ring_is_deterministic_and_lookups_match_a_linear_scan() {
        let ring = HashRing::new(8, 128).expect("ring");
        assert_eq!(ring, HashRing::new(8, 128).expect("ring"));
        assert!(ring.points.windows(2).all(|pair| pair[0] <= pair[1]));
        let mut rng = StdRng::seed_from_u64(11);
        let probes = (0..5_000).map(|_| rng.gen::<u32>()).chain([
            0,
            1,
            u32::MAX,
            ring.points[0].hash,
            ring.points[5].hash,
        ]);
        for hash in probes {
            let expected = ring
                .points
                .iter()
                .find(|point| point.hash >= hash)
                .unwrap_or(&ring.points[0])
                .partition;
            assert_eq!(ring.partition_for_hash(hash), expected, "hash {hash:#x}");
        }
    }

    #[test]
    fn positions_past_the_last_point_wrap_to_the_first() {
        let ring = HashRing::new(5, 3).expect("ring");
        let last = ring.points[ring.points.len() - 1];
        assert!(
            last.hash < u32::MAX,
            "this ring's highest point leaves room to wrap"
        );
        assert_eq!(ring.partition_for_hash(last.hash), last.partition);
        assert_eq!(
            ring.partition_for_hash(last.hash + 1),
            ring.points[0].partition
        );
        assert_eq!(ring.partition_for_hash(u32::MAX), ring.points[0].partition);
    }

    #[test]
    fn a_single_partition_owns_every_key() {
        let ring = HashRing::new(1, 16).expect("ring");
        for key in random_keys().iter().take(1_000) {
            assert_eq!(ring.partition_for(key), 0);
        }
        assert_eq!(ring.shares(), vec![1.0]);
    }

    /// Growing N → N + 1 partitions: the ring moves about 1/(N + 1) of the keys, all of them to
    /// the new partition; `murmur2 % partitions` moves most of them.
    #[test]
    fn growing_a_topic_moves_about_one_in_n_plus_one_keys_with_the_ring() {
        let keys = random_keys();
        for partitions in [4_u32, 8, 16] {
            let before = HashRing::new(partitions, VIRTUAL_NODES_DEFAULT).expect("ring");
            let after = HashRing::new(partitions + 1, VIRTUAL_NODES_DEFAULT).expect("ring");
            let mut ring_moved = 0_usize;
            let mut hash_moved = 0_usize;
            for key in &keys {
                let (old, new) = (before.partition_for(key), after.partition_for(key));
                if old != new {
                    assert_eq!(new, partitions, "a key moves only to the new partition");
                    ring_moved += 1;
                }
                if partition_for_key(key, partitions) != partition_for_key(key, partitions + 1) {
                    hash_moved += 1;
                }
            }
            let ideal = 1.0 / f64::from(partitions + 1);
            let ring_fraction = ring_moved as f64 / keys.len() as f64;
            let hash_fraction = hash_moved as f64 / keys.len() as f64;
            println!(
                "{partitions} → {}: ring moved {ring_fraction:.4} (ideal {ideal:.4}), \
                 murmur2 % n moved {hash_fraction:.4}",
                partitions + 1
            );
            // 128 virtual nodes keep a partition's share within about ±30% of the mean (see
            // the balance test), so the moved fraction lies inside [0.5, 1.5] × 1/(N + 1).
            assert!(
                ring_fraction <= 1.5 * ideal && ring_fraction >= 0.5 * ideal,
                "{partitions} → {}: the ring moved {ring_fraction:.4} of the keys, ideal {ideal:.4}",
                partitions + 1
            );
            assert!(
                hash_fraction >= 0.5,
                "{partitions} → {}: murmur2 % n moved only {hash_fraction:.4} of the keys",
                partitions + 1
            );
        }
    }

    /// With 128 virtual nodes, every partition's share of the ring and of 100,000 random keys
    /// stays within ±30% of 1/N. (A partition's share has a relative standard deviation of about
    /// 1/√128 ≈ 9%, so ±30% is more than three deviations.)
    #[test]
    fn partitions_share_keys_within_thirty_percent_of_the_mean() {
        let keys = random_keys();
        for partitions in [4_u32, 5, 8, 9, 16, 17, 64] {
            let ring = HashRing::new(partitions, VIRTUAL_NODES_DEFAULT).expect("ring");
            let ideal = 1.0 / f64::from(partitions);
            let shares = ring.shares();
            assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let mut counts = vec![0_usize; partitions as usize];
            for key in &keys {
                counts[ring.partition_for(key) as usize] += 1;
            }
            let worst = shares
                .iter()
                .map(|share| (share - ideal).abs() / ideal)
                .fold(0.0, f64::max);
            println!("{partitions} partitions: worst ring share is {worst:.3} off the mean");
            for partition in 0..partitions as usize {
                let key_share = counts[partition] as f64 / keys.len() as f64;
                for (what, share) in [("ring", shares[partition]), ("keys", key_share)] {
                    assert!(
                        (share - ideal).abs() <= 0.3 * ideal,
                        "{partitions} partitions: partition {partition}'s {what} share is \
                         {share:.4}, ideal {ideal:.4}"
                    );
                }
            }
        }
    }
}
