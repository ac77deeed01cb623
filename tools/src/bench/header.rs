//! The header `weir bench` writes into the first bytes of every message value.
//!
//! Layout, 24 bytes, little-endian fixed-width integers:
//!
//! ```text
//!  0        4          8                  16                 24
//!  +--------+----------+------------------+------------------+---------------------+
//!  | magic  | producer | sequence         | intended_ns      | filler (0xA5 …)     |
//!  | u32 LE | u32 LE   | u64 LE           | u64 LE           | up to message_bytes |
//!  +--------+----------+------------------+------------------+---------------------+
//! ```
//!
//! `sequence` counts the messages one producer sent to one partition, from 0, so a consumer
//! checks each (partition, producer) stream for gaps and repeats; `intended_ns` is when the
//! message was meant to be sent, in nanoseconds since the run's epoch (one process holds both
//! ends, so one monotonic clock serves). A producer builds its value once and rewrites only these
//! 24 bytes per message.

/// The bytes of the header; `--message-bytes` is at least this.
pub const HEADER_BYTES: usize = 24;

/// The first four bytes of every bench value ("WBN1" read as little-endian bytes).
pub const MAGIC: u32 = u32::from_le_bytes(*b"WBN1");

/// What a bench value's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueHeader {
    /// The index of the producer that sent the message.
    pub producer: u32,
    /// The message's index among those its producer sent to its partition.
    pub sequence: u64,
    /// When the message was meant to be sent, in nanoseconds since the run's epoch.
    pub intended_ns: u64,
}

/// Why a value is not a bench message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The value cannot hold a header.
    #[error("a value of {value_bytes} bytes is shorter than the {HEADER_BYTES}-byte bench header")]
    TooShort {
        /// The value's length.
        value_bytes: usize,
    },
    /// The value does not start with [`MAGIC`].
    #[error("the value starts with {found:#010x}, not the bench magic {MAGIC:#010x}")]
    BadMagic {
        /// The first four bytes, little-endian.
        found: u32,
    },
}

impl ValueHeader {
    /// Writes the header into the first [`HEADER_BYTES`] of `value`, leaving the rest alone.
    ///
    /// # Panics
    ///
    /// If `value` is shorter than [`HEADER_BYTES`]: the caller sized it from a validated
    /// `--message-bytes`, so a short buffer is a bug.
    pub fn encode(&self, value: &mut [u8]) {
        assert!(
            value.len() >= HEADER_BYTES,
            "bench value of {} bytes cannot hold the header",
            value.len()
        );
        value[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        value[4..8].copy_from_slice(&self.producer.to_le_bytes());
        value[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        value[16..24].copy_from_slice(&self.intended_ns.to_le_bytes());
    }

    /// Reads the header from the start of `value`.
    pub fn decode(value: &[u8]) -> Result<ValueHeader, HeaderError> {
        let Some(header) = value.get(..HEADER_BYTES) else {
            return Err(HeaderError::TooShort {
                value_bytes: value.len(),
            });
        };
        let u32_at = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(HeaderError::BadMagic { found: magic });
        }
        Ok(ValueHeader {
            producer: u32_at(4),
            sequence: u64_at(8),
            intended_ns: u64_at(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_as_written_and_leaves_the_filler_alone() {
        let cases = [
            ValueHeader {
                producer: 0,
                sequence: 0,
                intended_ns: 0,
            },
            ValueHeader {
                producer: 7,
                sequence: 123_456_789,
                intended_ns: 9_876_543_210,
            },
            ValueHeader {
                producer: u32::MAX,
                sequence: u64::MAX,
                intended_ns: u64::MAX,
            },
        ];
        for header in cases {
            let mut value = vec![0xA5u8; 100];
            header.encode(&mut value);
            assert_eq!(ValueHeader::decode(&value), Ok(header));
            assert!(value[HEADER_BYTES..].iter().all(|&byte| byte == 0xA5));
        }
    }

    #[test]
    fn the_layout_is_little_endian_at_fixed_offsets() {
        let mut value = [0u8; HEADER_BYTES];
        ValueHeader {
            producer: 0x0102_0304,
            sequence: 0x0506,
            intended_ns: 0x0708,
        }
        .encode(&mut value);
        assert_eq!(&value[0..4], b"WBN1");
        assert_eq!(&value[4..8], &[4, 3, 2, 1]);
        assert_eq!(&value[8..16], &[6, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&value[16..24], &[8, 7, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn short_and_foreign_values_are_rejected() {
        assert_eq!(
            ValueHeader::decode(&[0u8; HEADER_BYTES - 1]),
            Err(HeaderError::TooShort {
                value_bytes: HEADER_BYTES - 1
            })
        );
        assert_eq!(
            ValueHeader::decode(b""),
            Err(HeaderError::TooShort { value_bytes: 0 })
        );
        let foreign = [b'x'; HEADER_BYTES];
        assert!(matches!(
            ValueHeader::decode(&foreign),
            Err(HeaderError::BadMagic { .. })
        ));
    }
}
