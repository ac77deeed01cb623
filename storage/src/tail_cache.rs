//! The tail cache: the most recent written batches of a partition, in memory, so caught-up
//! readers are served without disk I/O.
//!
//! Owns `Bytes` handles to whole batches in offset order. Invariants: batches are contiguous
//! (each starts at the previous one's next offset), and the total size never exceeds the
//! configured maximum after an insertion (oldest batches are evicted first). In-memory only: a
//! crash loses it and nothing depends on it for correctness.

use std::collections::VecDeque;

use bytes::Bytes;

/// One cached batch.
#[derive(Debug, Clone)]
pub(crate) struct CachedBatch {
    /// Offset of the batch's first record.
    pub(crate) base_offset: i64,
    /// One past the batch's last offset.
    pub(crate) next_offset: i64,
    /// The whole batch as stored.
    pub(crate) bytes: Bytes,
}

/// Bounded FIFO of the newest written batches.
#[derive(Debug)]
pub(crate) struct TailCache {
    batches: VecDeque<CachedBatch>,
    size_bytes: usize,
    size_bytes_max: usize,
}

impl TailCache {
    /// An empty cache holding at most `size_bytes_max` bytes.
    pub(crate) fn new(size_bytes_max: usize) -> Self {
        TailCache {
            batches: VecDeque::new(),
            size_bytes: 0,
            size_bytes_max,
        }
    }

    /// Adds the next batch of the log and evicts the oldest ones beyond the bound.
    pub(crate) fn push(&mut self, batch: CachedBatch) {
        if let Some(last) = self.batches.back() {
            if last.next_offset != batch.base_offset {
                // Not contiguous (the log rolled back past the cache): start over.
                self.clear();
            }
        }
        if batch.bytes.len() > self.size_bytes_max {
            self.clear();
            return;
        }
        self.size_bytes += batch.bytes.len();
        self.batches.push_back(batch);
        while self.size_bytes > self.size_bytes_max {
            self.pop_front();
        }
    }

    /// Changes the bound, evicting the oldest batches beyond a lower one.
    pub(crate) fn set_size_bytes_max(&mut self, size_bytes_max: usize) {
        self.size_bytes_max = size_bytes_max;
        while self.size_bytes > self.size_bytes_max {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(evicted) = self.batches.pop_front() {
            self.size_bytes -= evicted.bytes.len();
        }
    }

    /// Drops every batch that ends at or below `offset` (deleted by retention).
    pub(crate) fn drop_below(&mut self, offset: i64) {
        while self
            .batches
            .front()
            .is_some_and(|front| front.next_offset <= offset)
        {
            self.pop_front();
        }
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.batches.clear();
        self.size_bytes = 0;
    }

    /// Base offset of the oldest cached batch.
    pub(crate) fn first_offset(&self) -> Option<i64> {
        self.batches.front().map(|batch| batch.base_offset)
    }

    /// One past the newest cached batch.
    pub(crate) fn end_offset(&self) -> Option<i64> {
        self.batches.back().map(|batch| batch.next_offset)
    }

    /// Cached batches in offset order, starting with the one that holds `offset` (found by
    /// binary search, so a read at the tail does not walk the whole cache).
    pub(crate) fn iter_from(&self, offset: i64) -> impl Iterator<Item = &CachedBatch> {
        let first = self
            .batches
            .partition_point(|batch| batch.next_offset <= offset);
        self.batches.range(first..)
    }

    /// Bytes held.
    pub(crate) fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// Batches held.
    pub(crate) fn batch_count(&self) -> usize {
        self.batches.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base_offset: i64, size: usize) -> CachedBatch {
        CachedBatch {
            base_offset,
            next_offset: base_offset + 1,
            bytes: Bytes::from(vec![0u8; size]),
        }
    }

    #[test]
    fn evicts_oldest_beyond_bound() {
        let mut cache = TailCache::new(250);
        for offset in 0..5 {
            cache.push(batch(offset, 100));
        }
        assert_eq!(cache.first_offset(), Some(3));
        assert_eq!(cache.end_offset(), Some(5));
        assert_eq!(cache.size_bytes(), 200);
    }

    #[test]
    fn a_lower_bound_evicts_the_oldest_and_a_higher_one_keeps_the_next_batches() {
        let mut cache = TailCache::new(1000);
        for offset in 0..4 {
            cache.push(batch(offset, 200));
        }
        assert_eq!(cache.size_bytes(), 800);
        cache.set_size_bytes_max(500);
        assert_eq!(cache.size_bytes(), 400);
        assert_eq!(cache.first_offset(), Some(2));
        cache.set_size_bytes_max(1000);
        for offset in 4..7 {
            cache.push(batch(offset, 200));
        }
        assert_eq!(cache.size_bytes(), 1000);
        assert_eq!(cache.first_offset(), Some(2));
    }

    #[test]
    fn zero_bound_caches_nothing_and_gap_restarts() {
        let mut cache = TailCache::new(0);
        cache.push(batch(0, 10));
        assert_eq!(cache.batch_count(), 0);
        let mut cache = TailCache::new(1000);
        cache.push(batch(0, 10));
        cache.push(batch(7, 10));
        assert_eq!(cache.first_offset(), Some(7));
        cache.drop_below(8);
        assert_eq!(cache.batch_count(), 0);
    }

    #[test]
    fn iter_from_starts_at_the_batch_holding_the_offset() {
        let mut cache = TailCache::new(1000);
        for base_offset in [10, 13, 20] {
            let next_offset = if base_offset == 20 {
                25
            } else {
                base_offset + 3
            };
            let next_offset = if base_offset == 13 { 20 } else { next_offset };
            cache.push(CachedBatch {
                base_offset,
                next_offset,
                bytes: Bytes::from(vec![0u8; 10]),
            });
        }
        let starts = |offset| {
            cache
                .iter_from(offset)
                .map(|b| b.base_offset)
                .collect::<Vec<_>>()
        };
        assert_eq!(starts(9), vec![10, 13, 20]);
        assert_eq!(starts(12), vec![10, 13, 20]);
        assert_eq!(starts(13), vec![13, 20]);
        assert_eq!(starts(19), vec![13, 20]);
        assert_eq!(starts(24), vec![20]);
        assert!(starts(25).is_empty());
    }
}
