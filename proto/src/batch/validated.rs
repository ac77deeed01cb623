//! [`ValidatedBatch`]: a whole record batch together with the proof that its header and CRC were
//! checked, so a batch is checked once between the socket and the log.
//!
//! Invariant: a `ValidatedBatch` exists only if [`validate_batch_header_and_crc`] accepted its
//! exact bytes under the limits it carries; the only constructors are [`ValidatedBatch::new`]
//! and [`split_validated`], and the bytes cannot be changed afterwards (they are `Bytes`).

use bytes::Bytes;

use super::error::BatchError;
use super::iter::BatchIter;
use super::validate::{validate_batch_header_and_crc, BatchInfo, BatchLimits};

/// A record batch whose sizes, magic, CRC-32C and header fields were checked against
/// [`ValidatedBatch::limits`]; its records were not walked.
#[derive(Debug, Clone)]
pub struct ValidatedBatch {
    bytes: Bytes,
    info: BatchInfo,
    limits: BatchLimits,
}

impl ValidatedBatch {
    /// Checks `bytes` as exactly one whole batch (header and CRC, not the records).
    pub fn new(bytes: Bytes, limits: &BatchLimits) -> Result<ValidatedBatch, BatchError> {
        let info = validate_batch_header_and_crc(&bytes, limits)?;
        Ok(ValidatedBatch {
            bytes,
            info,
            limits: *limits,
        })
    }

    /// The batch's bytes, exactly as checked.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The header fields read while checking.
    pub fn info(&self) -> &BatchInfo {
        &self.info
    }

    /// The limits the batch was checked against.
    pub fn limits(&self) -> &BatchLimits {
        &self.limits
    }

    /// Whether checking under `limits` would have accepted the batch too: true when the limits
    /// it was checked under are no looser than `limits`.
    pub fn satisfies(&self, limits: &BatchLimits) -> bool {
        self.limits.batch_bytes_max <= limits.batch_bytes_max
            && self.limits.records_per_batch_max <= limits.records_per_batch_max
    }

    /// The batch's bytes and header fields, giving up the proof.
    pub fn into_parts(self) -> (Bytes, BatchInfo) {
        (self.bytes, self.info)
    }
}

/// The whole batches at the start of a buffer, each checked, and what was left after them.
#[derive(Debug)]
pub struct ValidatedSplit {
    /// The checked batches, in order; each shares the buffer's memory.
    pub batches: Vec<ValidatedBatch>,
    /// Bytes after the last whole batch: 0 when the buffer held whole batches only, else the
    /// size of a trailing partial batch.
    pub trailing_bytes: usize,
}

/// Splits `records` into its whole batches, checking each one's header and CRC once, without
/// copying: the batches are slices of `records`. Fails at the first batch that does not check.
pub fn split_validated(
    records: &Bytes,
    limits: &BatchLimits,
) -> Result<ValidatedSplit, BatchError> {
    let mut batches = Vec::new();
    let mut start = 0usize;
    for item in BatchIter::new(records, limits) {
        let (info, batch) = item?;
        let end = start + batch.len();
        batches.push(ValidatedBatch {
            bytes: records.slice(start..end),
            info,
            limits: *limits,
        });
        start = end;
    }
    Ok(ValidatedSplit {
        batches,
        trailing_bytes: records.len() - start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_support::sample;
    use crate::batch::BatchBuilder;

    fn two_batches() -> (Vec<u8>, usize) {
        let first = sample();
        let mut second = BatchBuilder::new(5);
        second.push(5, Some(b"k"), Some(b"v"), &[]);
        let second = second.finish();
        let split_at = first.len();
        let mut both = first;
        both.extend_from_slice(&second);
        (both, split_at)
    }

    #[test]
    fn new_accepts_one_whole_batch_and_refuses_anything_else() {
        let limits = BatchLimits::default();
        let batch = Bytes::from(sample());
        let validated = ValidatedBatch::new(batch.clone(), &limits).unwrap();
        assert_eq!(validated.bytes(), &batch);
        assert_eq!(validated.info().size_bytes as usize, batch.len());

        let mut corrupt = batch.to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(matches!(
            ValidatedBatch::new(Bytes::from(corrupt), &limits),
            Err(BatchError::CrcMismatch { .. })
        ));
        let (both, _) = two_batches();
        assert!(matches!(
            ValidatedBatch::new(Bytes::from(both), &limits),
            Err(BatchError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn split_slices_whole_batches_and_reports_the_trailing_part() {
        let limits = BatchLimits::default();
        let (both, split_at) = two_batches();
        let records = Bytes::from(both.clone());
        let split = split_validated(&records, &limits).unwrap();
        assert_eq!(split.batches.len(), 2);
        assert_eq!(split.trailing_bytes, 0);
        assert_eq!(&split.batches[0].bytes()[..], &both[..split_at]);
        assert_eq!(&split.batches[1].bytes()[..], &both[split_at..]);
        // Slices of the same memory, not copies.
        assert_eq!(split.batches[0].bytes().as_ptr(), records.as_ptr());

        let partial = records.slice(..records.len() - 3);
        let split = split_validated(&partial, &limits).unwrap();
        assert_eq!(split.batches.len(), 1);
        assert_eq!(split.trailing_bytes, both.len() - split_at - 3);

        let mut corrupt = both;
        corrupt[split_at + 20] ^= 0x01;
        assert!(split_validated(&Bytes::from(corrupt), &limits).is_err());
    }

    #[test]
    fn a_batch_checked_under_looser_limits_does_not_satisfy_tighter_ones() {
        let limits = BatchLimits::default();
        let validated = ValidatedBatch::new(Bytes::from(sample()), &limits).unwrap();
        assert!(validated.satisfies(&limits));
        let tighter = BatchLimits {
            batch_bytes_max: 64,
            ..limits
        };
        assert!(!validated.satisfies(&tighter));
        let looser = BatchLimits {
            records_per_batch_max: limits.records_per_batch_max + 1,
            ..limits
        };
        assert!(validated.satisfies(&looser));
    }
}
