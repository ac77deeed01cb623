//! A cheap hasher for the producer's per-record maps, whose keys are small and not chosen by an
//! attacker.
//!
//! std's default `SipHash-1-3` resists hash flooding, which costs about a hundred instructions
//! for an 8-byte [`TopicPartition`](crate::TopicPartition) and more for a topic name; the
//! producer looks such keys up once per record. Its keys come from the broker's metadata and the
//! application's own topic names, so flooding is no concern there, and this hasher (the `FxHash`
//! of rustc and Firefox: rotate, xor, multiply per word) does the same job in a few instructions.
//! It is not for maps keyed by anything a remote peer chooses.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FxHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The multiplier of rustc's `FxHasher` (from the golden ratio): odd, with well-spread bits.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Folds each word into the state by rotate, xor and multiply (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Whole words, then the tail as a 4-, 2- and 1-byte word as rustc's FxHasher does, so
        // "ab" and "ab\0" fold different words.
        let mut rest = bytes;
        while let Some((word, tail)) = rest.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*word));
            rest = tail;
        }
        if let Some((word, tail)) = rest.split_first_chunk::<4>() {
            self.add(u64::from(u32::from_le_bytes(*word)));
            rest = tail;
        }
        if let Some((word, tail)) = rest.split_first_chunk::<2>() {
            self.add(u64::from(u16::from_le_bytes(*word)));
            rest = tail;
        }
        if let Some(&byte) = rest.first() {
            self.add(u64::from(byte));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u16(&mut self, value: u16) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TopicPartition;
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hash};

    fn hash_of(value: impl Hash) -> u64 {
        BuildHasherDefault::<FxHasher>::default().hash_one(value)
    }

    #[test]
    fn maps_keyed_by_partitions_and_names_find_every_key() {
        let mut map: FxHashMap<TopicPartition, u32> = FxHashMap::default();
        for topic_id in 0..20 {
            for partition in 0..500 {
                map.insert(
                    TopicPartition {
                        topic_id,
                        partition,
                    },
                    topic_id * 1_000 + partition,
                );
            }
        }
        assert_eq!(map.len(), 10_000);
        for (key, value) in &map {
            assert_eq!(*value, key.topic_id * 1_000 + key.partition);
        }
        let mut names: FxHashMap<String, usize> = FxHashMap::default();
        for index in 0..1_000 {
            names.insert(format!("topic-{index}"), index);
        }
        assert!((0..1_000).all(|index| names[&format!("topic-{index}")] == index));
    }

    #[test]
    fn nearby_keys_and_prefixes_hash_apart() {
        let partitions: HashSet<u64> = (0..10_000)
            .map(|partition| {
                hash_of(TopicPartition {
                    topic_id: 7,
                    partition,
                })
            })
            .collect();
        assert_eq!(partitions.len(), 10_000);
        // `str` hashes its bytes then a 0xff terminator, so a prefix differs from the whole.
        assert_ne!(hash_of("events"), hash_of("events\0\0"));
        assert_ne!(hash_of("a"), hash_of("b"));
    }
}
