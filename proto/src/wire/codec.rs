//! Primitive encodings shared by every message body: integers, strings, byte strings, arrays and
//! optional values, with the typed errors their decoders and encoders return.
//!
//! This module owns the rules every body follows. Integers are big-endian and fixed-width.
//! Strings are a `u16` byte length then UTF-8. Byte strings (record batches) are a `u32` byte
//! length then the bytes, decoded as a zero-copy slice of the frame. Arrays are a `u32` element
//! count then the elements. Optional values are a `u8` tag (0 absent, 1 present) then the value.
//! Invariants: the [`Reader`] never reads past the body and never panics; it checks every count
//! against the bytes left (`count × smallest element`) before allocating, so a huge count in a
//! short body fails fast; a body with bytes left over after its last field is invalid. The
//! [`Writer`] refuses values that do not fit their length prefix instead of truncating them.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a message body (or a field of it) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {kind}")]
pub struct DecodeError {
    /// The field being decoded, as `message.field` or `message.array.field`.
    pub field: &'static str,
    /// What was wrong with it.
    pub kind: DecodeErrorKind,
}

/// What was wrong with a field that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The body ends before the field does.
    #[error("needs {needed_bytes} bytes, {remaining_bytes} remain")]
    Truncated {
        /// Bytes the field needs.
        needed_bytes: u64,
        /// Bytes left in the body.
        remaining_bytes: u64,
    },
    /// An array count cannot fit in the bytes left, even with the smallest elements.
    #[error("count {count} needs at least {needed_bytes} bytes, {remaining_bytes} remain")]
    CountTooLarge {
        /// The count read.
        count: u32,
        /// `count` × the smallest encoding of one element.
        needed_bytes: u64,
        /// Bytes left in the body.
        remaining_bytes: u64,
    },
    /// A string is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// An enumeration tag or optional-value tag has a value without a meaning.
    #[error("tag {tag} has no meaning here")]
    InvalidTag {
        /// The tag read.
        tag: u16,
    },
    /// An integer is outside the values the field allows.
    #[error("value {value} is out of range: {reason}")]
    OutOfRange {
        /// The value read.
        value: i64,
        /// Which values the field allows.
        reason: &'static str,
    },
    /// Bytes remain after the last field of the body.
    #[error("{trailing_bytes} unexpected bytes after the last field")]
    TrailingBytes {
        /// How many bytes are left over.
        trailing_bytes: u64,
    },
    /// This build has no decoder for the api version.
    #[error("api version {api_version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion {
        /// The version asked for.
        api_version: u16,
        /// The oldest supported version.
        min: u16,
        /// The newest supported version.
        max: u16,
    },
}

impl DecodeError {
    /// An error for `field` of the given kind.
    pub const fn new(field: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { field, kind }
    }
}

/// Why a value could not be encoded: it does not fit its length prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string, byte string, array or frame is longer than its length prefix can express.
    #[error("field `{field}`: length {length} exceeds the wire limit of {length_max}")]
    TooLong {
        /// The field being encoded.
        field: &'static str,
        /// Its length (bytes, or elements for an array).
        length: u64,
        /// The largest length the prefix can express.
        length_max: u64,
    },
}

/// The largest byte length of an encoded string (its `u16` prefix).
pub const STRING_BYTES_MAX: usize = u16::MAX as usize;

/// The largest element count of an encoded array (its `u32` prefix).
pub const ARRAY_COUNT_MAX: usize = u32::MAX as usize;

/// The largest byte length of an encoded byte string (its `u32` prefix).
pub const BYTE_STRING_BYTES_MAX: usize = u32::MAX as usize;

/// Decodes the fields of one body, in order, with bounds checks.
pub struct Reader<'a> {
    body: &'a Bytes,
    position: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `body`.
    pub(crate) fn new(body: &'a Bytes) -> Self {
        Reader { body, position: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.body.len() - self.position
    }

    fn take(&mut self, field: &'static str, length: usize) -> Result<&'a [u8], DecodeError> {
        let remaining = self.remaining();
        if length > remaining {
            return Err(DecodeError::new(
                field,
                DecodeErrorKind::Truncated {
                    needed_bytes: length as u64,
                    remaining_bytes: remaining as u64,
                },
            ));
        }
        let start = self.position;
        self.position += length;
        Ok(&self.body[start..self.position])
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut value = [0u8; N];
        value.copy_from_slice(self.take(field, N)?);
        Ok(value)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// A `u16` error code; every value decodes.
    pub(crate) fn error_code(
        &mut self,
        field: &'static str,
    ) -> Result<super::ErrorCode, DecodeError> {
        Ok(super::ErrorCode::from_u16(self.u16(field)?))
    }

    /// A `u16`-length-prefixed UTF-8 string.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let length = usize::from(self.u16(field)?);
        let bytes = self.take(field, length)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(DecodeError::new(field, DecodeErrorKind::InvalidUtf8)),
        }
    }

    /// A `u32`-length-prefixed byte string, as a zero-copy slice of the body.
    pub(crate) fn byte_string(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let length = self.u32(field)? as usize;
        let start = self.position;
        self.take(field, length)?;
        Ok(self.body.slice(start..self.position))
    }

    /// A `u32` array count, checked against the bytes left: each element takes at least
    /// `element_bytes_min` bytes, so a count that cannot fit fails here, before any allocation.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        element_bytes_min: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.u32(field)?;
        let needed_bytes = u64::from(count) * element_bytes_min.max(1) as u64;
        let remaining_bytes = self.remaining() as u64;
        if needed_bytes > remaining_bytes {
            return Err(DecodeError::new(
                field,
                DecodeErrorKind::CountTooLarge {
                    count,
                    needed_bytes,
                    remaining_bytes,
                },
            ));
        }
        Ok(count as usize)
    }

    /// A `u32`-count-prefixed array of elements.
    pub(crate) fn array_of<T: Element>(
        &mut self,
        field: &'static str,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.count(field, T::WIRE_BYTES_MIN)?;
        let mut elements = Vec::with_capacity(count);
        for _ in 0..count {
            elements.push(T::read(self)?);
        }
        Ok(elements)
    }

    /// An optional-value tag: `false` for 0 (absent), `true` for 1 (present).
    pub(crate) fn presence(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::new(
                field,
                DecodeErrorKind::InvalidTag {
                    tag: u16::from(tag),
                },
            )),
        }
    }

    /// An optional `u64`.
    pub(crate) fn option_u64(&mut self, field: &'static str) -> Result<Option<u64>, DecodeError> {
        if self.presence(field)? {
            Ok(Some(self.u64(field)?))
        } else {
            Ok(None)
        }
    }

    /// Fails if any bytes remain: a body is exactly its fields.
    pub(crate) fn finish(&self, field: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(DecodeError::new(
                field,
                DecodeErrorKind::TrailingBytes {
                    trailing_bytes: trailing as u64,
                },
            )),
        }
    }
}

/// Encodes the fields of one body, in order, into a buffer; byte strings either copied into it
/// or, when chunks are collected, passed through as their own `Bytes` chunks without a copy.
pub struct Writer<'a> {
    dst: &'a mut BytesMut,
    chunks: Option<&'a mut Vec<Bytes>>,
}

impl<'a> Writer<'a> {
    /// A writer that copies everything into `dst`.
    pub(crate) fn contiguous(dst: &'a mut BytesMut) -> Self {
        Writer { dst, chunks: None }
    }

    /// A writer that writes fixed fields into `scratch` and emits byte strings as separate
    /// chunks into `chunks`; call [`Writer::flush`] at the end.
    pub(crate) fn chunked(scratch: &'a mut BytesMut, chunks: &'a mut Vec<Bytes>) -> Self {
        Writer {
            dst: scratch,
            chunks: Some(chunks),
        }
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.dst.put_u8(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.dst.put_u16(value);
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.dst.put_u32(value);
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.dst.put_u64(value);
    }

    pub(crate) fn i16(&mut self, value: i16) {
        self.dst.put_i16(value);
    }

    pub(crate) fn i32(&mut self, value: i32) {
        self.dst.put_i32(value);
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.dst.put_i64(value);
    }

    pub(crate) fn error_code(&mut self, code: super::ErrorCode) {
        self.dst.put_u16(code.to_u16());
    }

    /// A `u16`-length-prefixed string.
    pub(crate) fn string(&mut self, field: &'static str, value: &str) -> Result<(), EncodeError> {
        let length = checked_length(field, value.len(), STRING_BYTES_MAX)?;
        self.dst.put_u16(length as u16);
        self.dst.put_slice(value.as_bytes());
        Ok(())
    }

    /// A `u32` array count.
    pub(crate) fn count(&mut self, field: &'static str, count: usize) -> Result<(), EncodeError> {
        let count = checked_length(field, count, ARRAY_COUNT_MAX)?;
        self.dst.put_u32(count as u32);
        Ok(())
    }

    /// A `u32`-count-prefixed array of elements.
    pub(crate) fn array_of<T: Element>(
        &mut self,
        field: &'static str,
        elements: &[T],
    ) -> Result<(), EncodeError> {
        self.count(field, elements.len())?;
        for element in elements {
            element.write(self)?;
        }
        Ok(())
    }

    /// An optional `u64`.
    pub(crate) fn option_u64(&mut self, value: Option<u64>) {
        match value {
            Some(value) => {
                self.dst.put_u8(1);
                self.dst.put_u64(value);
            }
            None => self.dst.put_u8(0),
        }
    }

    /// A `u32`-length-prefixed byte string made of `parts`, in order.
    pub(crate) fn byte_string(
        &mut self,
        field: &'static str,
        parts: &[Bytes],
    ) -> Result<(), EncodeError> {
        let total: usize = parts.iter().map(Bytes::len).sum();
        let length = checked_length(field, total, BYTE_STRING_BYTES_MAX)?;
        self.dst.put_u32(length as u32);
        for part in parts.iter().filter(|part| !part.is_empty()) {
            match self.chunks.as_deref_mut() {
                Some(chunks) => {
                    if !self.dst.is_empty() {
                        chunks.push(self.dst.split().freeze());
                    }
                    chunks.push(part.clone());
                }
                None => self.dst.put_slice(part),
            }
        }
        Ok(())
    }

    /// Moves what is left in the scratch buffer into the chunk list (no-op when contiguous).
    pub(crate) fn flush(&mut self) {
        if let Some(chunks) = self.chunks.as_deref_mut() {
            if !self.dst.is_empty() {
                chunks.push(self.dst.split().freeze());
            }
        }
    }
}

/// `length` if it is at most `length_max`, else the typed error for `field`.
pub(crate) fn checked_length(
    field: &'static str,
    length: usize,
    length_max: usize,
) -> Result<usize, EncodeError> {
    if length > length_max {
        return Err(EncodeError::TooLong {
            field,
            length: length as u64,
            length_max: length_max as u64,
        });
    }
    Ok(length)
}

/// A value that appears as an element of arrays: it knows its smallest encoding, so array counts
/// can be checked before allocating.
pub(crate) trait Element: Sized {
    /// The fewest bytes one element takes on the wire.
    const WIRE_BYTES_MIN: usize;

    /// Appends the element's encoding.
    fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError>;

    /// Decodes one element.
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError>;
}
