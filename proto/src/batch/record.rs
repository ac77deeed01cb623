//! Zero-allocation iteration over the records of one uncompressed batch and over each record's
//! headers.
//!
//! Record layout (all lengths and deltas are zigzag varints, see `varint`):
//! `length, attributes: i8, timestampDelta: varlong, offsetDelta, keyLength, key,
//! valueLength, value, headerCount, [headerKeyLength, headerKey, headerValueLength, headerValue]`.
//! A key, value or header value length of -1 means null; a header key is never null.
//!
//! Invariants: every record is parsed within the bytes its `length` declares and must fill them
//! exactly; its offset delta is its position in the batch; the iterator yields at most
//! `recordsCount` records, then reports leftover bytes as an error; after the first error it
//! yields nothing more. Records borrow from the batch: nothing is copied or allocated.

use super::error::{BatchError, RecordError};
use super::header::{BatchHeader, Compression, TimestampType, ATTRIBUTE_COMPRESSION_MASK};
use super::varint::Cursor;
use super::{BATCH_HEADER_BYTES, BATCH_LENGTH_MIN, BATCH_LOG_OVERHEAD_BYTES, MAGIC_V2};

/// One record of a batch, borrowing its key, value and headers from the batch bytes.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// Absolute offset: the batch's `base_offset` plus the record's offset delta.
    pub offset: i64,
    /// Create time: the batch's `base_timestamp` plus the record's timestamp delta. For a
    /// log-append-time batch, the batch's `max_timestamp`, as Kafka defines it.
    pub timestamp: i64,
    /// The key, or `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value, or `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// The record's headers, in order.
    pub headers: HeaderIter<'a>,
}

/// Iterator over the records of one uncompressed batch; see [`records`].
#[derive(Clone, Debug)]
pub struct RecordIter<'a> {
    cursor: Cursor<'a>,
    base_offset: i64,
    base_timestamp: i64,
    /// The batch's max timestamp when it applies to every record (log-append time).
    append_time: Option<i64>,
    records_count: u32,
    index: u32,
    done: bool,
}

/// Iterator over the headers of one record, yielding `(key, value)` with a nullable value.
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    cursor: Cursor<'a>,
    remaining: u32,
    record_index: u32,
}

/// Starts iterating the records of `batch`, which must be exactly one whole uncompressed batch.
///
/// Checks only what iteration needs (the header is present, magic 2, the size matches, no
/// compression, a non-negative count); the CRC is the caller's business, normally through
/// [`validate_batch`](super::validate_batch), after which the iterator yields exactly
/// `records_count` records and no error.
pub fn records(batch: &[u8]) -> Result<RecordIter<'_>, BatchError> {
    let header = BatchHeader::view(batch).ok_or(BatchError::Truncated {
        needed: BATCH_HEADER_BYTES,
        available: batch.len(),
    })?;
    if header.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(header.magic));
    }
    let batch_length = header.batch_length.get();
    if batch_length < BATCH_LENGTH_MIN {
        return Err(BatchError::BadLength {
            batch_length,
            min: BATCH_LENGTH_MIN,
        });
    }
    // batch_length is positive here; the sum fits a usize on every supported target.
    let size_bytes = batch_length.unsigned_abs() as usize + BATCH_LOG_OVERHEAD_BYTES;
    if batch.len() < size_bytes {
        return Err(BatchError::Truncated {
            needed: size_bytes,
            available: batch.len(),
        });
    }
    if batch.len() > size_bytes {
        return Err(BatchError::TrailingBytes {
            size_bytes,
            buffer_bytes: batch.len(),
        });
    }
    let attributes = header.attributes.get();
    match Compression::from_attributes(attributes) {
        Some(Compression::None) => {}
        Some(other) => return Err(BatchError::CompressedRecords(other.code())),
        None => {
            return Err(BatchError::UnsupportedCompression(
                (attributes & ATTRIBUTE_COMPRESSION_MASK) as u8,
            ))
        }
    }
    let records_count = header.records_count.get();
    let Ok(count) = u32::try_from(records_count) else {
        return Err(BatchError::RecordCount {
            records_count,
            last_offset_delta: header.last_offset_delta.get(),
        });
    };
    let append_time = match TimestampType::from_attributes(attributes) {
        TimestampType::LogAppendTime => Some(header.max_timestamp.get()),
        TimestampType::CreateTime => None,
    };
    Ok(RecordIter {
        cursor: Cursor::new(batch.get(BATCH_HEADER_BYTES..).unwrap_or(&[])),
        base_offset: header.base_offset.get(),
        base_timestamp: header.base_timestamp.get(),
        append_time,
        records_count: count,
        index: 0,
        done: false,
    })
}

impl<'a> RecordIter<'a> {
    /// Parses the record at the cursor, whose position in the batch is `self.index`.
    fn parse(&mut self) -> Result<Record<'a>, RecordError> {
        let length = self.cursor.varint("record length")?;
        let declared = usize::try_from(length).map_err(|_| RecordError::BadLength {
            field: "record length",
            length: i64::from(length),
        })?;
        let mut body = Cursor::new(self.cursor.bytes(declared, "record")?);
        // The record attributes byte is unused in v2 and carries no meaning.
        body.i8("record attributes")?;
        let timestamp_delta = body.varlong("timestamp delta")?;
        let offset_delta = body.varint("offset delta")?;
        if i64::from(offset_delta) != i64::from(self.index) {
            return Err(RecordError::OffsetDelta {
                // index < records_count <= i32::MAX, so the conversion is exact.
                expected: self.index as i32,
                found: offset_delta,
            });
        }
        let key = body.nullable_bytes("key")?;
        let value = body.nullable_bytes("value")?;
        let header_count = body.varint("header count")?;
        let header_count = u32::try_from(header_count).map_err(|_| RecordError::BadLength {
            field: "header count",
            length: i64::from(header_count),
        })?;
        let headers_start = body.position();
        // Each header needs at least two bytes, so a huge count fails at the end of the body.
        for _ in 0..header_count {
            body.non_null_bytes("header key")?;
            body.nullable_bytes("header value")?;
        }
        if body.position() != declared {
            return Err(RecordError::LengthMismatch {
                declared,
                used: body.position(),
            });
        }
        let headers = Cursor::new(body.read_since(headers_start));
        let offset = self
            .base_offset
            .checked_add(i64::from(offset_delta))
            .ok_or(RecordError::Overflow { field: "offset" })?;
        let timestamp = match self.append_time {
            Some(append_time) => append_time,
            None => self
                .base_timestamp
                .checked_add(timestamp_delta)
                .ok_or(RecordError::Overflow { field: "timestamp" })?,
        };
        Ok(Record {
            offset,
            timestamp,
            key,
            value,
            headers: HeaderIter {
                cursor: headers,
                remaining: header_count,
                record_index: self.index,
            },
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.index == self.records_count {
            self.done = true;
            let leftover = self.cursor.rest().len();
            if leftover == 0 {
                return None;
            }
            return Some(Err(BatchError::TrailingRecordBytes {
                bytes: leftover,
                records_count: self.records_count as i32,
            }));
        }
        match self.parse() {
            Ok(record) => {
                self.index += 1;
                Some(Ok(record))
            }
            Err(reason) => {
                self.done = true;
                Some(Err(BatchError::Record {
                    index: self.index,
                    reason,
                }))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        // One more item may be the leftover-bytes error.
        let left = (self.records_count - self.index) as usize;
        (0, Some(left + 1))
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Result<(&'a [u8], Option<&'a [u8]>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let header = self
            .cursor
            .non_null_bytes("header key")
            .and_then(|key| Ok((key, self.cursor.nullable_bytes("header value")?)));
        match header {
            Ok(header) => Some(Ok(header)),
            Err(reason) => {
                self.remaining = 0;
                Some(Err(BatchError::Record {
                    index: self.record_index,
                    reason,
                }))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_support::{body, edited, framed, raw_batch, sample, T0};
    use crate::batch::{set_base_offset, validate_batch, BatchLimits};

    type Header<'a> = (&'a [u8], Option<&'a [u8]>);

    fn headers_of(record: &Record<'_>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        record
            .headers
            .clone()
            .map(|header: Result<Header<'_>, BatchError>| {
                let (key, value) = header.expect("valid header");
                (key.to_vec(), value.map(<[u8]>::to_vec))
            })
            .collect()
    }

    #[test]
    fn records_come_back_as_pushed() {
        let mut batch = sample();
        set_base_offset(&mut batch, 100).unwrap();
        let records: Vec<Record<'_>> = records(&batch)
            .expect("iterable")
            .map(|record| record.expect("valid"))
            .collect();
        assert_eq!(records.len(), 3);
        let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, [100, 101, 102]);
        let timestamps: Vec<i64> = records.iter().map(|record| record.timestamp).collect();
        assert_eq!(timestamps, [T0, T0 + 5, T0 - 10]);
        assert_eq!(
            (records[0].key, records[0].value),
            (Some(&b"k0"[..]), Some(&b"v0"[..]))
        );
        assert_eq!((records[1].key, records[1].value), (None, Some(&b""[..])));
        assert_eq!((records[2].key, records[2].value), (Some(&b"k2"[..]), None));
        assert_eq!(
            headers_of(&records[1]),
            [(b"h".to_vec(), Some(b"x".to_vec())), (b"n".to_vec(), None)]
        );
        assert!(headers_of(&records[0]).is_empty());
    }

    #[test]
    fn log_append_time_gives_every_record_the_max_timestamp() {
        let region = [
            framed(&body(7, 0, None, Some(b"a"), &[])),
            framed(&body(-3, 1, None, Some(b"b"), &[])),
        ]
        .concat();
        let batch = edited(raw_batch(&region, 2), |h| {
            h.attributes.set(0x08);
            h.max_timestamp.set(T0 + 99);
        });
        validate_batch(&batch, &BatchLimits::default()).expect("valid");
        let timestamps: Vec<i64> = records(&batch)
            .unwrap()
            .map(|record| record.unwrap().timestamp)
            .collect();
        assert_eq!(timestamps, [T0 + 99, T0 + 99]);
    }

    #[test]
    fn records_refuses_batches_it_cannot_iterate() {
        let valid = sample();
        let cases: [(&str, Vec<u8>, BatchError); 6] = [
            (
                "short header",
                valid[..60].to_vec(),
                BatchError::Truncated {
                    needed: 61,
                    available: 60,
                },
            ),
            (
                "magic 1",
                edited(valid.clone(), |h| h.magic = 1),
                BatchError::BadMagic(1),
            ),
            (
                "zstd",
                edited(valid.clone(), |h| h.attributes.set(4)),
                BatchError::CompressedRecords(4),
            ),
            (
                "reserved codec",
                edited(valid.clone(), |h| h.attributes.set(7)),
                BatchError::UnsupportedCompression(7),
            ),
            (
                "negative count",
                edited(valid.clone(), |h| h.records_count.set(-1)),
                BatchError::RecordCount {
                    records_count: -1,
                    last_offset_delta: 2,
                },
            ),
            (
                "cut batch",
                valid[..valid.len() - 1].to_vec(),
                BatchError::Truncated {
                    needed: valid.len(),
                    available: valid.len() - 1,
                },
            ),
        ];
        for (name, batch, expected) in cases {
            assert_eq!(records(&batch).err(), Some(expected), "case {name}");
        }
    }

    #[test]
    fn iteration_stops_after_the_first_error() {
        // Record 0 is fine, record 1 has the wrong offset delta, record 2 would be fine.
        let region = [
            framed(&body(0, 0, None, None, &[])),
            framed(&body(0, 5, None, None, &[])),
            framed(&body(0, 2, None, None, &[])),
        ]
        .concat();
        let batch = raw_batch(&region, 3);
        let mut iter = records(&batch).unwrap();
        assert!(iter.next().unwrap().is_ok());
        assert_eq!(
            iter.next().unwrap().err(),
            Some(BatchError::Record {
                index: 1,
                reason: RecordError::OffsetDelta {
                    expected: 1,
                    found: 5
                },
            })
        );
        assert!(iter.next().is_none());
        assert!(iter.next().is_none());
        assert_eq!(iter.size_hint(), (0, Some(0)));
    }

    #[test]
    fn a_corrupt_header_inside_headers_is_reported_by_the_header_iterator() {
        // A header iterator built over bytes that the record walk did not check still fails
        // cleanly instead of panicking.
        let mut headers = HeaderIter {
            cursor: Cursor::new(&[4, b'a']),
            remaining: 3,
            record_index: 9,
        };
        assert_eq!(
            headers.next(),
            Some(Err(BatchError::Record {
                index: 9,
                reason: RecordError::Truncated {
                    field: "header key",
                    needed: 2,
                    available: 1
                },
            }))
        );
        assert_eq!(headers.next(), None);
    }
}
