//! Which message a producer sends when, and to which partition: the open-loop schedule, the
//! split of `--messages` over producers, and the keys that place messages on partitions.
//!
//! Open loop (`--rate R`): the run's messages are numbered globally, producer `i` of `N` sends
//! global messages `i, i + N, i + 2N, …`, and global message `g` is meant to be sent at
//! `g / R` seconds after the epoch. The schedule never slips: a producer that falls behind sends
//! at once and its latencies count from the intended time, so a stall shows in the percentiles
//! instead of being hidden by a generator that waited (coordinated omission).
//!
//! Placement goes through the client's key hash: the bench looks up, once per run, one key per
//! partition that hashes to it, so `pinned` and `balanced` need nothing from the client beyond
//! `Producer::enqueue` with a key.

use weir_client::partition_for_key;

/// The most candidate keys tried per partition while looking for keys that land on every
/// partition (expected: about ln(partitions) per partition).
pub const KEY_SEARCH_ATTEMPTS_PER_PARTITION_MAX: u64 = 256;

/// The fixed open-loop send schedule of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    rate_per_s: u64,
}

impl Schedule {
    /// A schedule of `rate_per_s` messages per second over the whole run; `None` for a rate of 0.
    pub fn new(rate_per_s: u64) -> Option<Schedule> {
        (rate_per_s > 0).then_some(Schedule { rate_per_s })
    }

    /// When global message `global_index` is meant to be sent, in nanoseconds after the epoch
    /// (saturating at `u64::MAX`).
    pub fn intended_ns(&self, global_index: u64) -> u64 {
        let nanoseconds = u128::from(global_index) * 1_000_000_000 / u128::from(self.rate_per_s);
        u64::try_from(nanoseconds).unwrap_or(u64::MAX)
    }

    /// How many messages the schedule holds before `duration_ns` (those meant to be sent at a
    /// time strictly before it).
    pub fn messages_before(&self, duration_ns: u64) -> u64 {
        // The smallest g with g * 1e9 / rate >= duration, i.e. ceil(duration * rate / 1e9).
        let scaled = u128::from(duration_ns) * u128::from(self.rate_per_s);
        let messages = scaled.div_ceil(1_000_000_000);
        u64::try_from(messages).unwrap_or(u64::MAX)
    }
}

/// The global number of producer `producer_index`'s `message_index`-th message.
pub fn global_index(producer_index: u32, producers: u32, message_index: u64) -> u64 {
    message_index * u64::from(producers) + u64::from(producer_index)
}

/// How many of `total` messages producer `producer_index` of `producers` sends: the global
/// messages congruent to its index, so the shares add up to `total` and differ by at most one.
pub fn producer_share(total: u64, producers: u32, producer_index: u32) -> u64 {
    let producers = u64::from(producers);
    let index = u64::from(producer_index);
    total / producers + u64::from(index < total % producers)
}

/// How producers spread their messages over the partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Producer `i` writes only partition `i mod P`.
    Pinned,
    /// Every producer writes every partition in turn.
    Balanced,
}

/// The partition of producer `producer_index`'s `message_index`-th message.
pub fn partition_of(mode: Mode, producer_index: u32, message_index: u64, partitions: u32) -> u32 {
    match mode {
        Mode::Pinned => producer_index % partitions,
        Mode::Balanced => {
            let turn = (message_index + u64::from(producer_index)) % u64::from(partitions);
            // turn < partitions, which is a u32.
            turn as u32
        }
    }
}

/// Finds, for each of `partitions` partitions, a short key that the client's key hash places
/// on it; `keys[p]` lands on `p`. Fails if the bounded search does not cover every partition.
pub fn keys_for_partitions(partitions: u32) -> Result<Vec<Vec<u8>>, String> {
    if partitions == 0 {
        return Err("a topic with no partitions has nothing to place messages on".to_string());
    }
    let mut keys: Vec<Option<Vec<u8>>> = vec![None; partitions as usize];
    let mut missing = partitions;
    let attempts_max = u64::from(partitions) * KEY_SEARCH_ATTEMPTS_PER_PARTITION_MAX;
    for candidate in 0..attempts_max {
        let key = format!("k{candidate}").into_bytes();
        let slot = &mut keys[partition_for_key(&key, partitions) as usize];
        if slot.is_none() {
            *slot = Some(key);
            missing -= 1;
            if missing == 0 {
                break;
            }
        }
    }
    keys.into_iter()
        .enumerate()
        .map(|(partition, key)| {
            key.ok_or_else(|| {
                format!("no key among {attempts_max} candidates hashes to partition {partition}")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_rate_without_drift() {
        let schedule = Schedule::new(1_000).expect("positive rate");
        let cases = [
            (0, 0),
            (1, 1_000_000),
            (999, 999_000_000),
            (1_000, 1_000_000_000),
            (3_600_000, 3_600_000_000_000),
        ];
        for (global, expected_ns) in cases {
            assert_eq!(
                schedule.intended_ns(global),
                expected_ns,
                "message {global}"
            );
        }
        // A rate that does not divide a second still has no cumulative rounding drift.
        let odd = Schedule::new(3).expect("positive rate");
        assert_eq!(odd.intended_ns(1), 333_333_333);
        assert_eq!(odd.intended_ns(3), 1_000_000_000);
        assert_eq!(odd.intended_ns(3_000_000), 1_000_000_000_000_000);
        assert!(Schedule::new(0).is_none());
    }

    #[test]
    fn producers_interleave_on_one_schedule() {
        let schedule = Schedule::new(4_000).expect("positive rate");
        // Two producers: producer 0 sends global 0, 2, 4; producer 1 sends 1, 3, 5.
        let producer_one: Vec<u64> = (0..3)
            .map(|k| schedule.intended_ns(global_index(1, 2, k)))
            .collect();
        assert_eq!(producer_one, [250_000, 750_000, 1_250_000]);
        let producer_zero: Vec<u64> = (0..3)
            .map(|k| schedule.intended_ns(global_index(0, 2, k)))
            .collect();
        assert_eq!(producer_zero, [0, 500_000, 1_000_000]);
    }

    #[test]
    fn a_duration_holds_the_messages_meant_before_it() {
        let schedule = Schedule::new(1_000).expect("positive rate");
        assert_eq!(schedule.messages_before(0), 0);
        assert_eq!(schedule.messages_before(1), 1);
        assert_eq!(schedule.messages_before(1_000_000_000), 1_000);
        assert_eq!(schedule.messages_before(1_000_000_001), 1_001);
        for messages in [1, 10, 1_000] {
            let duration = schedule.messages_before(messages * 1_000_000);
            assert_eq!(duration, messages);
            assert!(schedule.intended_ns(messages - 1) < messages * 1_000_000);
        }
    }

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for (total, producers) in [(20_000, 2), (10, 3), (2, 5), (0, 4), (1_000_001, 7)] {
            let shares: Vec<u64> = (0..producers)
                .map(|index| producer_share(total, producers, index))
                .collect();
            assert_eq!(
                shares.iter().sum::<u64>(),
                total,
                "{total} over {producers}"
            );
            let most = shares.iter().max().copied().unwrap_or(0);
            let least = shares.iter().min().copied().unwrap_or(0);
            assert!(most - least <= 1, "{shares:?}");
        }
    }

    #[test]
    fn pinned_stays_on_one_partition_and_balanced_visits_all() {
        for message in 0..20 {
            assert_eq!(partition_of(Mode::Pinned, 5, message, 4), 1);
        }
        let mut visited = [0u32; 4];
        for message in 0..40 {
            visited[partition_of(Mode::Balanced, 1, message, 4) as usize] += 1;
        }
        assert_eq!(visited, [10, 10, 10, 10]);
        assert_eq!(partition_of(Mode::Balanced, 3, 0, 4), 3);
    }

    #[test]
    fn every_partition_gets_a_key_that_hashes_to_it() {
        for partitions in [1, 2, 4, 7, 64, 1_000] {
            let keys = keys_for_partitions(partitions).expect("keys for every partition");
            assert_eq!(keys.len(), partitions as usize);
            for (partition, key) in keys.iter().enumerate() {
                assert_eq!(partition_for_key(key, partitions) as usize, partition);
            }
        }
        assert!(keys_for_partitions(0).is_err());
    }
}
