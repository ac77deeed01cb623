//! The stable hash that places partitions on shards and consumer groups on offsets partitions.
//!
//! This module owns one function, MurmurHash3 x86 32-bit (Austin Appleby's public-domain
//! reference, seed 0), and the byte keys fed to it. Invariant: the output for a given key never
//! changes between releases, because it decides which shard owns a partition's directory and
//! which offsets partition holds a group's commits; the unit tests pin it to the reference
//! vectors.

/// MurmurHash3, x86 32-bit variant, of `data` with `seed`.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut hash = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        hash ^= k;
        hash = hash
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    let mut k: u32 = 0;
    for (index, byte) in tail.iter().enumerate() {
        k ^= u32::from(*byte) << (8 * index);
    }
    if !tail.is_empty() {
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        hash ^= k;
    }
    // The length is mixed in modulo 2^32, as the reference does.
    hash ^= data.len() as u32;
    fmix32(hash)
}

fn fmix32(mut hash: u32) -> u32 {
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^= hash >> 16;
    hash
}

/// The shard that owns partition `partition` of topic `topic_id` among `shard_count` shards:
/// `murmur3_32(topic_id as 4 big-endian bytes ++ partition as 4 big-endian bytes, 0) % shard_count`.
pub fn shard_for_partition(topic_id: u32, partition: u32, shard_count: usize) -> usize {
    debug_assert!(shard_count > 0);
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&topic_id.to_be_bytes());
    key[4..].copy_from_slice(&partition.to_be_bytes());
    (murmur3_32(&key, 0) as usize) % shard_count.max(1)
}

/// The offsets partition that holds consumer group `group`'s commits:
/// `murmur3_32(group as UTF-8, 0) % partition_count`.
pub fn partition_for_group(group: &str, partition_count: u32) -> u32 {
    debug_assert!(partition_count > 0);
    murmur3_32(group.as_bytes(), 0) % partition_count.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_reference_vectors() {
        let cases: &[(&[u8], u32, u32)] = &[
            (b"", 0, 0),
            (b"", 1, 0x514e_28b7),
            (b"", 0xffff_ffff, 0x81f1_6f39),
            (b"\0\0\0\0", 0, 0x2362_f9de),
            (b"a", 0, 0x3c25_69b2),
            (b"ab", 0, 0x9bbf_d75f),
            (b"abc", 0, 0xb3dd_93fa),
            (b"abcd", 0, 0x43ed_676a),
            (b"hello", 0, 0x248b_fa47),
            (b"Hello, world!", 1234, 0xfaf6_cdb3),
            (
                b"The quick brown fox jumps over the lazy dog",
                0,
                0x2e4f_f723,
            ),
        ];
        for (data, seed, expected) in cases {
            assert_eq!(
                murmur3_32(data, *seed),
                *expected,
                "murmur3_32({:?}, {seed:#x})",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn partition_placement_is_pinned() {
        // These values decide which shard owns existing partition directories: never change them.
        let cases: &[(u32, u32, u32, usize, usize)] = &[
            // (topic_id, partition, murmur3 of the key, shard of 2, shard of 3)
            (1, 0, 0xcae9_f131, 1, 2),
            (1, 1, 0x55cd_a9ca, 0, 1),
            (2, 0, 0xd02e_e747, 1, 1),
            (42, 7, 0x9efe_4fb7, 1, 2),
            (0xdead_beef, 65535, 0xd413_af2a, 0, 1),
        ];
        for &(topic_id, partition, hash, of_two, of_three) in cases {
            let mut key = [0u8; 8];
            key[..4].copy_from_slice(&topic_id.to_be_bytes());
            key[4..].copy_from_slice(&partition.to_be_bytes());
            assert_eq!(
                murmur3_32(&key, 0),
                hash,
                "key of ({topic_id}, {partition})"
            );
            assert_eq!(shard_for_partition(topic_id, partition, 2), of_two);
            assert_eq!(shard_for_partition(topic_id, partition, 3), of_three);
            assert_eq!(shard_for_partition(topic_id, partition, 1), 0);
        }
    }

    #[test]
    fn partitions_spread_over_shards() {
        let shards = 4;
        let mut counts = [0usize; 4];
        for topic_id in 1..=16 {
            for partition in 0..64 {
                counts[shard_for_partition(topic_id, partition, shards)] += 1;
            }
        }
        for count in counts {
            assert!((200..=312).contains(&count), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn group_partition_is_in_range_and_stable() {
        for group in ["", "g", "payments", "a-much-longer-consumer-group-name"] {
            let partition = partition_for_group(group, 16);
            assert!(partition < 16);
            assert_eq!(partition, murmur3_32(group.as_bytes(), 0) % 16);
        }
    }
}
