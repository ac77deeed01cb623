//! Request routing: which shard owns each entry of a multi-partition request, splitting the
//! entries by owner, and putting the per-shard answers back in request order.
//!
//! Pure functions, no I/O. Invariants: [`split_by_owner`] keeps every entry exactly once and
//! remembers its position; [`Merge::finish`] returns the answers in the request's order, one
//! per entry, filling any entry whose shard gave no answer with the caller's fallback (so a
//! failed shard yields per-partition errors, never a short response).

use crate::catalog::TopicId;
use crate::hash::shard_for_partition;

/// The entries of one request that one shard owns, each with its index in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPart<T> {
    /// The owning shard.
    pub shard: usize,
    /// `(index in the request, entry)`, in request order.
    pub entries: Vec<(usize, T)>,
}

/// Splits `entries` by owning shard; parts are ordered by shard index.
pub fn split_by_owner<T>(
    entries: Vec<T>,
    shard_count: usize,
    partition_of: impl Fn(&T) -> (TopicId, u32),
) -> Vec<ShardPart<T>> {
    let mut parts: Vec<ShardPart<T>> = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let (topic_id, partition) = partition_of(&entry);
        let shard = shard_for_partition(topic_id, partition, shard_count);
        match parts.iter_mut().find(|part| part.shard == shard) {
            Some(part) => part.entries.push((index, entry)),
            None => parts.push(ShardPart {
                shard,
                entries: vec![(index, entry)],
            }),
        }
    }
    parts.sort_by_key(|part| part.shard);
    parts
}

/// Collects per-shard answers and restores the request's order.
#[derive(Debug)]
pub struct Merge<R> {
    slots: Vec<Option<R>>,
}

impl<R> Merge<R> {
    /// A merge for a request of `entry_count` entries.
    pub fn new(entry_count: usize) -> Self {
        Merge {
            slots: (0..entry_count).map(|_| None).collect(),
        }
    }

    /// Stores the answers to the entries at `indexes` (same order as `results`).
    pub fn put(&mut self, indexes: &[usize], results: Vec<R>) {
        for (index, result) in indexes.iter().zip(results) {
            if let Some(slot) = self.slots.get_mut(*index) {
                *slot = Some(result);
            }
        }
    }

    /// The answers in request order; `fallback(index)` fills entries nobody answered.
    pub fn finish(self, mut fallback: impl FnMut(usize) -> R) -> Vec<R> {
        self.slots
            .into_iter()
            .enumerate()
            .map(|(index, slot)| slot.unwrap_or_else(|| fallback(index)))
            .collect()
    }
}

/// Unzips a part into its request indexes and its entries.
pub fn unzip_part<T>(part: ShardPart<T>) -> (usize, Vec<usize>, Vec<T>) {
    let (indexes, entries) = part.entries.into_iter().unzip();
    (part.shard, indexes, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_entry_with_its_index_at_its_owner() {
        let entries: Vec<(TopicId, u32)> = (0..40).map(|i| (1 + i % 3, i)).collect();
        for shard_count in [1, 2, 3, 7] {
            let parts = split_by_owner(entries.clone(), shard_count, |entry| *entry);
            let mut seen: Vec<usize> = Vec::new();
            for part in &parts {
                assert!(part.shard < shard_count);
                for (index, entry) in &part.entries {
                    assert_eq!(*entry, entries[*index]);
                    assert_eq!(
                        shard_for_partition(entry.0, entry.1, shard_count),
                        part.shard
                    );
                    seen.push(*index);
                }
                let indexes: Vec<usize> = part.entries.iter().map(|(i, _)| *i).collect();
                assert!(
                    indexes.windows(2).all(|w| w[0] < w[1]),
                    "request order kept"
                );
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..40).collect::<Vec<_>>());
            let shards: Vec<usize> = parts.iter().map(|p| p.shard).collect();
            assert!(
                shards.windows(2).all(|w| w[0] < w[1]),
                "one part per shard, sorted"
            );
        }
    }

    #[test]
    fn split_with_one_shard_is_one_part() {
        let parts = split_by_owner(vec![(5, 0), (6, 1)], 1, |entry: &(u32, u32)| *entry);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].entries, vec![(0, (5, 0)), (1, (6, 1))]);
    }

    #[test]
    fn merge_restores_order_and_fills_gaps() {
        // Partition (1, 0) is on shard 1 and (1, 1) on shard 0 of 2 (pinned in hash tests).
        let entries = vec![(1u32, 0u32), (1, 1), (2, 0)];
        let parts = split_by_owner(entries.clone(), 2, |entry| *entry);
        let mut merge = Merge::new(entries.len());
        for part in parts {
            let (shard, indexes, entries) = unzip_part(part);
            if shard == 0 {
                // Shard 0 "failed": answers nothing.
                continue;
            }
            let results: Vec<String> = entries.iter().map(|(t, p)| format!("{t}/{p}")).collect();
            merge.put(&indexes, results);
        }
        let merged = merge.finish(|index| format!("error@{index}"));
        assert_eq!(merged, vec!["1/0", "error@1", "2/0"]);
    }
}
