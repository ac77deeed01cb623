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
