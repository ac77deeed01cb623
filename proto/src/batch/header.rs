//! The fixed 61-byte batch header as a zerocopy struct, and the meaning of its `attributes` bits.
//!
//! [`BatchHeader`] maps the first [`BATCH_HEADER_BYTES`] of a batch with no parsing and no copy:
//! every field is big-endian and the struct has alignment 1, so any 61-byte slice is a valid
//! header. Whether the values make sense is the validator's job, not this type's.

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{BATCH_HEADER_BYTES, CRC_COVERED_START};

/// The fixed header of a Kafka RecordBatch v2, field for field, in wire order and big-endian.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct BatchHeader {
    /// Offset of the first record; assigned by the broker, outside the CRC.
    pub base_offset: I64,
    /// Bytes after this field to the end of the batch (the whole batch less 12 bytes).
    pub batch_length: I32,
    /// Epoch of the leader that appended the batch; assigned by the broker, outside the CRC.
    pub partition_leader_epoch: I32,
    /// Format version; 2 for every batch Weir accepts.
    pub magic: i8,
    /// CRC-32C (Castagnoli) of every byte from `attributes` to the end of the batch.
    pub crc: U32,
    /// Compression codec, timestamp type, transactional and control flags.
    pub attributes: I16,
    /// Offset delta of the last record; `records_count - 1` for a producer's batch.
    pub last_offset_delta: I32,
    /// Timestamp that record timestamp deltas are relative to.
    pub base_timestamp: I64,
    /// Largest record timestamp (create time) or the broker's append time.
    pub max_timestamp: I64,
    /// Idempotent producer id, or -1.
    pub producer_id: I64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: I16,
    /// Sequence number of the first record for the idempotent producer, or -1.
    pub base_sequence: I32,
    /// Number of records in the batch.
    pub records_count: I32,
}

const _: () = assert!(core::mem::size_of::<BatchHeader>() == BATCH_HEADER_BYTES);
const _: () = assert!(core::mem::offset_of!(BatchHeader, attributes) == CRC_COVERED_START);

/// Mask of the compression codec in `attributes` (bits 0-2).
pub(crate) const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
/// Timestamp type bit in `attributes`: set for log-append time.
pub(crate) const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;
/// Transactional bit in `attributes`.
pub(crate) const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
/// Control batch bit in `attributes`.
pub(crate) const ATTRIBUTE_CONTROL: i16 = 0x20;

/// Compression codec of a batch's records, from `attributes` bits 0-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Records are stored as they are.
    None,
    /// Records are gzip-compressed.
    Gzip,
    /// Records are snappy-compressed (xerial framing).
    Snappy,
    /// Records are LZ4-frame-compressed.
    Lz4,
    /// Records are zstd-compressed.
    Zstd,
}

impl Compression {
    /// Decodes the codec from `attributes`; `None` for the reserved codes 5-7.
    pub fn from_attributes(attributes: i16) -> Option<Compression> {
        match attributes & ATTRIBUTE_COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The codec's code in `attributes` bits 0-2.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// What a batch's timestamps mean, from `attributes` bit 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Record timestamps were set by the producer; `max_timestamp` is the largest of them.
    CreateTime,
    /// The broker's append time, stored in `max_timestamp`, applies to every record.
    LogAppendTime,
}

impl TimestampType {
    /// Decodes the timestamp type from `attributes`.
    pub fn from_attributes(attributes: i16) -> TimestampType {
        if attributes & ATTRIBUTE_LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
}

impl BatchHeader {
    /// Maps the header at the start of `buf`, or `None` if `buf` is shorter than 61 bytes.
    pub fn view(buf: &[u8]) -> Option<&BatchHeader> {
        <BatchHeader as FromBytes>::ref_from_prefix(buf)
            .ok()
            .map(|(header, _)| header)
    }

    /// Mutably maps the header at the start of `buf`, or `None` if `buf` is shorter than 61 bytes.
    pub fn view_mut(buf: &mut [u8]) -> Option<&mut BatchHeader> {
        <BatchHeader as FromBytes>::mut_from_prefix(buf)
            .ok()
            .map(|(header, _)| header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn fields_sit_at_the_documented_offsets() {
        let offsets = [
            (offset_of!(BatchHeader, base_offset), 0),
            (offset_of!(BatchHeader, batch_length), 8),
            (offset_of!(BatchHeader, partition_leader_epoch), 12),
            (offset_of!(BatchHeader, magic), 16),
            (offset_of!(BatchHeader, crc), 17),
            (offset_of!(BatchHeader, attributes), 21),
            (offset_of!(BatchHeader, last_offset_delta), 23),
            (offset_of!(BatchHeader, base_timestamp), 27),
            (offset_of!(BatchHeader, max_timestamp), 35),
            (offset_of!(BatchHeader, producer_id), 43),
            (offset_of!(BatchHeader, producer_epoch), 51),
            (offset_of!(BatchHeader, base_sequence), 53),
            (offset_of!(BatchHeader, records_count), 57),
        ];
        for (index, (actual, documented)) in offsets.into_iter().enumerate() {
            assert_eq!(actual, documented, "field {index}");
        }
    }

    #[test]
    fn fields_are_big_endian() {
        let mut bytes = [0u8; BATCH_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&0x0102_0304_0506_0708i64.to_be_bytes());
        bytes[57..61].copy_from_slice(&7i32.to_be_bytes());
        let header = BatchHeader::view(&bytes).expect("61 bytes");
        assert_eq!(header.base_offset.get(), 0x0102_0304_0506_0708);
        assert_eq!(header.records_count.get(), 7);
        assert!(BatchHeader::view(&bytes[..60]).is_none());
    }

    #[test]
    fn attribute_bits_decode() {
        let codecs = [
            (0, Some(Compression::None)),
            (1, Some(Compression::Gzip)),
            (2, Some(Compression::Snappy)),
            (3, Some(Compression::Lz4)),
            (4, Some(Compression::Zstd)),
            (5, None),
            (6, None),
            (7, None),
        ];
        for (code, codec) in codecs {
            // Bits outside 0-2 do not change the codec.
            assert_eq!(
                Compression::from_attributes(code | 0x38),
                codec,
                "code {code}"
            );
            if let Some(codec) = codec {
                assert_eq!(i16::from(codec.code()), code);
            }
        }
        assert_eq!(
            TimestampType::from_attributes(0x08),
            TimestampType::LogAppendTime
        );
        assert_eq!(
            TimestampType::from_attributes(0x37),
            TimestampType::CreateTime
        );
    }
}
