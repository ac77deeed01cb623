//! Iteration over a buffer of concatenated batches: a fetch response or a slice of a segment.
//!
//! Each whole batch is validated (header and CRC by default, or fully) before it is yielded. A
//! partial batch at the end is not an error, because a fetch may cut the last batch at its byte
//! budget and a segment's tail may hold a write in progress: iteration simply ends there and
//! [`BatchIter::remaining`] returns it. A corrupt batch yields one error and ends iteration, with
//! [`BatchIter::remaining`] starting at the corrupt batch, which is where recovery truncates.

use super::error::BatchError;
use super::validate::{peek_batch_size, validate_batch, validate_batch_header_and_crc};
use super::{BatchInfo, BatchLimits};

/// Iterator over the whole batches in a buffer, yielding each batch's header fields and bytes.
#[derive(Clone, Debug)]
pub struct BatchIter<'a> {
    rest: &'a [u8],
    consumed_bytes: usize,
    limits: BatchLimits,
    walk_records: bool,
    done: bool,
}

impl<'a> BatchIter<'a> {
    /// Iterates `buf`, checking each batch's header and CRC (not its records), as the broker and
    /// recovery do.
    pub fn new(buf: &'a [u8], limits: &BatchLimits) -> Self {
        BatchIter {
            rest: buf,
            consumed_bytes: 0,
            limits: *limits,
            walk_records: false,
            done: false,
        }
    }

    /// Iterates `buf`, checking each batch fully with [`validate_batch`], records included, as a
    /// consumer that will read the records does.
    pub fn new_with_record_walk(buf: &'a [u8], limits: &BatchLimits) -> Self {
        BatchIter {
            walk_records: true,
            ..BatchIter::new(buf, limits)
        }
    }

    /// The bytes not yielded yet: empty, a trailing partial batch, or a corrupt batch onwards.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// Bytes of the buffer taken by the batches yielded so far.
    pub fn consumed_bytes(&self) -> usize {
        self.consumed_bytes
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(BatchInfo, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let size_bytes = match peek_batch_size(self.rest, &self.limits) {
            Ok(Some(size_bytes)) => size_bytes,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(error) => {
                self.done = true;
                return Some(Err(error));
            }
        };
        let Some(batch) = self.rest.get(..size_bytes) else {
            self.done = true;
            return None;
        };
        let checked = if self.walk_records {
            validate_batch(batch, &self.limits)
        } else {
            validate_batch_header_and_crc(batch, &self.limits)
        };
        match checked {
            Ok(info) => {
                self.rest = self.rest.get(size_bytes..).unwrap_or(&[]);
                self.consumed_bytes += size_bytes;
                Some(Ok((info, batch)))
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_support::{edited, sample};
    use crate::batch::{set_base_offset, BatchBuilder};

    fn three_batches() -> (Vec<u8>, [usize; 3]) {
        let mut first = sample();
        set_base_offset(&mut first, 0).unwrap();
        let mut second = BatchBuilder::new(5);
        second.push(5, Some(b"a"), Some(b"b"), &[]);
        let mut second = second.finish();
        set_base_offset(&mut second, 3).unwrap();
        let mut third = sample();
        set_base_offset(&mut third, 4).unwrap();
        let sizes = [first.len(), second.len(), third.len()];
        ([first, second, third].concat(), sizes)
    }

    fn offsets(iter: BatchIter<'_>) -> Vec<Result<i64, BatchError>> {
        iter.map(|item| item.map(|(info, _)| info.base_offset))
            .collect()
    }

    #[test]
    fn yields_every_whole_batch_in_order() {
        let (buffer, _) = three_batches();
        let limits = BatchLimits::default();
        let mut iter = BatchIter::new(&buffer, &limits);
        assert_eq!(offsets(iter.clone()), [Ok(0), Ok(3), Ok(4)]);
        iter.by_ref().for_each(drop);
        assert!(iter.remaining().is_empty());
        assert_eq!(iter.consumed_bytes(), buffer.len());
    }

    #[test]
    fn a_partial_last_batch_ends_iteration_without_error() {
        let (buffer, sizes) = three_batches();
        let limits = BatchLimits::default();
        let two = sizes[0] + sizes[1];
        for cut in [two, two + 5, two + 12, two + 61, buffer.len() - 1] {
            let mut iter = BatchIter::new(&buffer[..cut], &limits);
            assert_eq!(offsets(iter.clone()), [Ok(0), Ok(3)], "cut {cut}");
            iter.by_ref().for_each(drop);
            assert_eq!(iter.remaining(), &buffer[two..cut]);
        }
    }

    #[test]
    fn a_corrupt_batch_yields_one_error_and_stops_there() {
        let (mut buffer, sizes) = three_batches();
        let second_start = sizes[0];
        buffer[second_start + sizes[1] - 1] ^= 0xff;
        let limits = BatchLimits::default();
        let mut iter = BatchIter::new(&buffer, &limits);
        assert!(iter.next().unwrap().is_ok());
        assert!(matches!(
            iter.next(),
            Some(Err(BatchError::CrcMismatch { .. }))
        ));
        assert!(iter.next().is_none());
        assert_eq!(iter.remaining(), &buffer[second_start..]);
        assert_eq!(iter.consumed_bytes(), second_start);
    }

    #[test]
    fn an_impossible_length_prefix_is_an_error_even_when_cut() {
        let (mut buffer, sizes) = three_batches();
        buffer[sizes[0] + 8..sizes[0] + 12].copy_from_slice(&10i32.to_be_bytes());
        let limits = BatchLimits::default();
        let cut = &buffer[..sizes[0] + 12];
        assert_eq!(
            offsets(BatchIter::new(cut, &limits)),
            [
                Ok(0),
                Err(BatchError::BadLength {
                    batch_length: 10,
                    min: 49
                })
            ]
        );
    }

    #[test]
    fn the_record_walk_is_optional() {
        // A record timestamp after maxTimestamp passes the header and CRC checks only.
        let bad_records = edited(sample(), |h| h.max_timestamp.set(h.base_timestamp.get()));
        let limits = BatchLimits::default();
        assert_eq!(offsets(BatchIter::new(&bad_records, &limits)), [Ok(0)]);
        let walked = offsets(BatchIter::new_with_record_walk(&bad_records, &limits));
        assert!(matches!(
            walked[..],
            [Err(BatchError::Record { index: 1, .. })]
        ));
    }
}
