//! Zigzag varints as Kafka's record format encodes them, and a bounds-checked cursor over a slice.
//!
//! A varint holds a 32-bit value in at most 5 bytes and a varlong a 64-bit value in at most 10,
//! least significant group first, each byte's high bit set when another byte follows. Decoding
//! rejects encodings longer than that and final bytes that carry bits outside the type, so every
//! accepted encoding decodes to exactly one value. The cursor never reads past its slice and
//! never panics.

use super::error::RecordError;

/// Longest varint encoding of a 32-bit value, in bytes.
pub(crate) const VARINT_BYTES_MAX: usize = 5;
/// Longest varint encoding of a 64-bit value, in bytes.
pub(crate) const VARLONG_BYTES_MAX: usize = 10;

/// A read position in a byte slice; every read is bounds-checked and names the field it reads.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    /// Starts reading at the first byte of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, position: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// The bytes read from position `start` up to the current position.
    pub(crate) fn read_since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.position).unwrap_or(&[])
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.position..).unwrap_or(&[])
    }

    /// Reads one signed byte.
    pub(crate) fn i8(&mut self, field: &'static str) -> Result<i8, RecordError> {
        let byte = self.bytes(1, field)?;
        Ok(byte[0] as i8)
    }

    /// Reads `count` bytes.
    pub(crate) fn bytes(
        &mut self,
        count: usize,
        field: &'static str,
    ) -> Result<&'a [u8], RecordError> {
        let rest = self.rest();
        match rest.get(..count) {
            Some(bytes) => {
                self.position += count;
                Ok(bytes)
            }
            None => Err(RecordError::Truncated {
                field,
                needed: count,
                available: rest.len(),
            }),
        }
    }

    /// Reads the raw (not yet zigzag-decoded) value of a varint of at most `bytes_max` bytes.
    fn unsigned(&mut self, bytes_max: usize, field: &'static str) -> Result<u64, RecordError> {
        let rest = self.rest();
        // One-byte values (lengths of small fields, deltas of 0..63) are the common case.
        if let Some(&first) = rest.first() {
            if first & 0x80 == 0 {
                self.position += 1;
                return Ok(u64::from(first));
            }
        }
        let value_bits = if bytes_max == VARINT_BYTES_MAX {
            32
        } else {
            64
        };
        let mut value: u64 = 0;
        for (index, &byte) in rest.iter().take(bytes_max).enumerate() {
            let shift = 7 * index as u32;
            let group = u64::from(byte & 0x7f);
            // The last permitted byte may only carry the bits that remain in the type.
            if index == bytes_max - 1 && (byte & 0x80 != 0 || group >> (value_bits - shift) != 0) {
                return Err(RecordError::BadVarint { field });
            }
            value |= group << shift;
            if byte & 0x80 == 0 {
                self.position += index + 1;
                return Ok(value);
            }
        }
        Err(RecordError::Truncated {
            field,
            needed: rest.len() + 1,
            available: rest.len(),
        })
    }

    /// Reads a zigzag varint (32-bit).
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<i32, RecordError> {
        let raw = self.unsigned(VARINT_BYTES_MAX, field)? as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// Reads a zigzag varlong (64-bit).
    pub(crate) fn varlong(&mut self, field: &'static str) -> Result<i64, RecordError> {
        let raw = self.unsigned(VARLONG_BYTES_MAX, field)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Reads a varint length followed by that many bytes; a length of -1 means null.
    pub(crate) fn nullable_bytes(
        &mut self,
        field: &'static str,
    ) -> Result<Option<&'a [u8]>, RecordError> {
        let length = self.varint(field)?;
        if length == -1 {
            return Ok(None);
        }
        let count = usize::try_from(length).map_err(|_| RecordError::BadLength {
            field,
            length: i64::from(length),
        })?;
        self.bytes(count, field).map(Some)
    }

    /// Reads a varint length followed by that many bytes; null is not allowed.
    pub(crate) fn non_null_bytes(&mut self, field: &'static str) -> Result<&'a [u8], RecordError> {
        let length = self.varint(field)?;
        let count = usize::try_from(length).map_err(|_| RecordError::BadLength {
            field,
            length: i64::from(length),
        })?;
        self.bytes(count, field)
    }
}

/// Zigzag-encodes a 32-bit value.
fn zigzag32(value: i32) -> u64 {
    u64::from(((value << 1) ^ (value >> 31)) as u32)
}

/// Zigzag-encodes a 64-bit value.
fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Bytes that the varint encoding of an unsigned value takes.
fn unsigned_len(mut raw: u64) -> usize {
    let mut length = 1;
    while raw >= 0x80 {
        raw >>= 7;
        length += 1;
    }
    length
}

/// Appends the varint encoding of an unsigned value.
fn put_unsigned(out: &mut Vec<u8>, mut raw: u64) {
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Bytes that the zigzag varint encoding of `value` takes (1 to 5).
pub(crate) fn varint_len(value: i32) -> usize {
    unsigned_len(zigzag32(value))
}

/// Bytes that the zigzag varlong encoding of `value` takes (1 to 10).
pub(crate) fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag64(value))
}

/// Appends the zigzag varint encoding of `value`.
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned(out, zigzag32(value));
}

/// Appends the zigzag varlong encoding of `value`.
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, zigzag64(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edge_values() {
        for value in [0, 1, -1, 63, -64, 64, -65, 8191, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "length of {value}");
            let mut cursor = Cursor::new(&out);
            assert_eq!(cursor.varint("v"), Ok(value));
            assert_eq!(cursor.position(), out.len());
        }
    }

    #[test]
    fn varlong_round_trips_edge_values() {
        for value in [
            0,
            1,
            -1,
            63,
            -64,
            i64::from(i32::MAX) + 1,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out.len(), varlong_len(value), "length of {value}");
            let mut cursor = Cursor::new(&out);
            assert_eq!(cursor.varlong("v"), Ok(value));
            assert_eq!(cursor.position(), out.len());
        }
    }

    #[test]
    fn known_encodings_match_kafka() {
        // Values from Kafka's ByteUtilsTest: zigzag maps 0,-1,1,-2 to 0,1,2,3.
        let cases: [(i32, &[u8]); 5] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "encoding of {value}");
        }
    }

    #[test]
    fn malformed_varints_are_rejected() {
        let cases: [(&[u8], RecordError); 4] = [
            (
                &[],
                RecordError::Truncated {
                    field: "v",
                    needed: 1,
                    available: 0,
                },
            ),
            (
                &[0x80, 0x80],
                RecordError::Truncated {
                    field: "v",
                    needed: 3,
                    available: 2,
                },
            ),
            // Six bytes: longer than any 32-bit varint.
            (
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
                RecordError::BadVarint { field: "v" },
            ),
            // Fifth byte carries bits beyond 32.
            (
                &[0xff, 0xff, 0xff, 0xff, 0x1f],
                RecordError::BadVarint { field: "v" },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                Cursor::new(bytes).varint("v"),
                Err(expected),
                "input {bytes:02x?}"
            );
        }
        let too_long = [0x80u8; 10];
        assert_eq!(
            Cursor::new(&too_long).varlong("v"),
            Err(RecordError::BadVarint { field: "v" })
        );
        let too_wide = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(
            Cursor::new(&too_wide).varlong("v"),
            Err(RecordError::BadVarint { field: "v" })
        );
    }
}
