//! The fixed-layout request and response headers, mapped with `zerocopy` (big-endian fields).
//!
//! This module owns the header layouts drawn in `docs/PROTOCOL.md`. Invariants: a header is plain
//! bytes, so any byte string of the right length is a header and mapping one never fails or
//! panics; field values are checked where they are interpreted ([`RequestHeader::priority`],
//! `Request::decode`), so the broker can always read the correlation id and answer with a typed
//! error.

use zerocopy::byteorder::big_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::api::{ApiKey, Priority};
use super::error_code::ErrorCode;

/// The header of every request frame: 10 bytes, big-endian.
///
/// ```text
/// 0       2       4               8       10
/// +-------+-------+---------------+-------+
/// |api_key|version|correlation_id | flags |
/// +-------+-------+---------------+-------+
/// ```
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RequestHeader {
    api_key: U16,
    api_version: U16,
    correlation_id: U32,
    flags: U16,
}

/// The request header's flag bits that are reserved: sent as zero, rejected if set.
pub const REQUEST_FLAGS_RESERVED_MASK: u16 = !Priority::FLAGS_MASK;

/// Request header flags with a reserved bit set or the reserved priority value `11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request header flags {flags:#06x} use reserved bits")]
pub struct InvalidFlags {
    /// The flags field as received.
    pub flags: u16,
}

impl RequestHeader {
    /// The encoded size of the header.
    pub const BYTES: usize = 10;

    /// A header for a request of `api_key` at `api_version` with the given priority class.
    pub fn new(api_key: ApiKey, api_version: u16, correlation_id: u32, priority: Priority) -> Self {
        Self::from_raw(
            api_key.to_u16(),
            api_version,
            correlation_id,
            priority.to_bits(),
        )
    }

    /// A header from raw field values, including ones a peer may reject (for tests and tools).
    pub fn from_raw(api_key: u16, api_version: u16, correlation_id: u32, flags: u16) -> Self {
        RequestHeader {
            api_key: U16::new(api_key),
            api_version: U16::new(api_version),
            correlation_id: U32::new(correlation_id),
            flags: U16::new(flags),
        }
    }

    /// The api key as sent (it may name no api this build knows).
    pub fn api_key_raw(&self) -> u16 {
        self.api_key.get()
    }

    /// The api key, if this build knows it.
    pub fn api_key(&self) -> Option<ApiKey> {
        ApiKey::from_u16(self.api_key.get())
    }

    /// The api version the body is encoded in.
    pub fn api_version(&self) -> u16 {
        self.api_version.get()
    }

    /// The id the response echoes so the client can match it to this request.
    pub fn correlation_id(&self) -> u32 {
        self.correlation_id.get()
    }

    /// The flags field as sent.
    pub fn flags(&self) -> u16 {
        self.flags.get()
    }

    /// The priority class, or an error if the flags use reserved bits.
    pub fn priority(&self) -> Result<Priority, InvalidFlags> {
        let flags = self.flags.get();
        match Priority::from_bits(flags) {
            Some(priority) if flags & REQUEST_FLAGS_RESERVED_MASK == 0 => Ok(priority),
            _ => Err(InvalidFlags { flags }),
        }
    }
}

impl std::fmt::Debug for RequestHeader {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RequestHeader")
            .field("api_key", &self.api_key_raw())
            .field("api_version", &self.api_version())
            .field("correlation_id", &self.correlation_id())
            .field("flags", &self.flags())
            .finish()
    }
}

/// The header of every response frame: 16 bytes, big-endian.
///
/// ```text
/// 0               4               8       10      12      14      16
/// +---------------+---------------+-------+-------+-------+-------+
/// |correlation_id |throttle_time_ms|api_key|version| error | flags |
/// +---------------+---------------+-------+-------+-------+-------+
/// ```
///
/// `api_key` and `api_version` echo the request's, and say how the body is encoded. When
/// `error` is not `none` the body is not the api's response but an error body (a single string:
/// the message) — how the broker answers a request it cannot decode, an unknown api key or an
/// unsupported version. `flags` is reserved and sent as zero.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ResponseHeader {
    correlation_id: U32,
    throttle_time_ms: U32,
    api_key: U16,
    api_version: U16,
    error_code: U16,
    flags: U16,
}

impl ResponseHeader {
    /// The encoded size of the header.
    pub const BYTES: usize = 16;

    /// A header for a response to the request `correlation_id` of api `api_key` (raw, so an
    /// unknown key can be echoed) at `api_version`.
    pub fn new(
        correlation_id: u32,
        throttle_time_ms: u32,
        api_key: u16,
        api_version: u16,
        error_code: ErrorCode,
    ) -> Self {
        ResponseHeader {
            correlation_id: U32::new(correlation_id),
            throttle_time_ms: U32::new(throttle_time_ms),
            api_key: U16::new(api_key),
            api_version: U16::new(api_version),
            error_code: U16::new(error_code.to_u16()),
            flags: U16::new(0),
        }
    }

    /// The correlation id of the request this answers.
    pub fn correlation_id(&self) -> u32 {
        self.correlation_id.get()
    }

    /// How long the client should wait before sending more to this broker (quota enforcement);
    /// 0 when not throttled.
    pub fn throttle_time_ms(&self) -> u32 {
        self.throttle_time_ms.get()
    }

    /// The api key as sent.
    pub fn api_key_raw(&self) -> u16 {
        self.api_key.get()
    }

    /// The api key, if this build knows it.
    pub fn api_key(&self) -> Option<ApiKey> {
        ApiKey::from_u16(self.api_key.get())
    }

    /// The api version the body is encoded in.
    pub fn api_version(&self) -> u16 {
        self.api_version.get()
    }

    /// The request-level error: `none` for an ordinary response body, anything else for an
    /// error body.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.error_code.get())
    }

    /// The reserved flags field as sent.
    pub fn flags(&self) -> u16 {
        self.flags.get()
    }
}

impl std::fmt::Debug for ResponseHeader {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ResponseHeader")
            .field("correlation_id", &self.correlation_id())
            .field("throttle_time_ms", &self.throttle_time_ms())
            .field("api_key", &self.api_key_raw())
            .field("api_version", &self.api_version())
            .field("error_code", &self.error_code())
            .field("flags", &self.flags())
            .finish()
    }
}

/// A fixed-layout frame header; implemented by [`RequestHeader`] and [`ResponseHeader`] only.
pub trait FrameHeader:
    sealed::Sealed + Copy + Eq + std::fmt::Debug + FromBytes + IntoBytes + Immutable + KnownLayout
{
    /// The encoded size of the header.
    const HEADER_BYTES: usize;
}

impl FrameHeader for RequestHeader {
    const HEADER_BYTES: usize = RequestHeader::BYTES;
}

impl FrameHeader for ResponseHeader {
    const HEADER_BYTES: usize = ResponseHeader::BYTES;
}

mod sealed {
    /// Keeps [`super::FrameHeader`] closed to the two header types.
    pub trait Sealed {}
    impl Sealed for super::RequestHeader {}
    impl Sealed for super::ResponseHeader {}
}

const _: () = assert!(std::mem::size_of::<RequestHeader>() == RequestHeader::BYTES);
const _: () = assert!(std::mem::size_of::<ResponseHeader>() == ResponseHeader::BYTES);
