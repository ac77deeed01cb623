//! The traits every api message implements, and the frame encoders built on them.
//!
//! This module owns the contract between a message body and its frame. Invariants: `decode`
//! checks the api version first, then reads exactly the body (trailing bytes are an error);
//! `encode` writes the body for [`WireMessage::API_VERSION`], the version the frame encoders put
//! in the header; every encoder leaves its destination as it was when it fails.

use bytes::{Bytes, BytesMut};

use super::api::{ApiKey, Priority};
use super::codec::{DecodeError, DecodeErrorKind, EncodeError, Reader, Writer};
use super::error_code::ErrorCode;
use super::frame::{encode_frame, encode_frame_chunks};
use super::header::{RequestHeader, ResponseHeader};

/// A request or response body of one api.
pub trait WireMessage: Sized {
    /// The api this message belongs to.
    const API_KEY: ApiKey;

    /// The version [`WireMessage::encode`] writes: the newest this build supports.
    const API_VERSION: u16 = Self::API_KEY.versions().max;

    /// Appends the body's encoding to `dst`, copying any record bytes; on error `dst` is
    /// unchanged.
    fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError>;

    /// Appends the body as chunks for a vectored write: fixed fields are written through
    /// `scratch` (working memory; its contents are discarded), record bytes are pushed as their
    /// own `Bytes`, uncopied. On error `out` is unchanged.
    fn encode_chunks(
        &self,
        scratch: &mut BytesMut,
        out: &mut Vec<Bytes>,
    ) -> Result<(), EncodeError>;

    /// Decodes a whole body encoded at `api_version`; record bytes become zero-copy slices of
    /// `body`.
    fn decode(body: &Bytes, api_version: u16) -> Result<Self, DecodeError>;
}

/// A request body; names the response type the broker answers it with.
pub trait RequestMessage: WireMessage {
    /// The response to this request.
    type Response: ResponseMessage;

    /// Appends a whole request frame (length, header, body) to `dst`.
    fn encode_frame(
        &self,
        correlation_id: u32,
        priority: Priority,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let header = RequestHeader::new(Self::API_KEY, Self::API_VERSION, correlation_id, priority);
        encode_frame(&header, dst, |writer| self.write_body(writer))
    }

    /// Appends a whole request frame as chunks for a vectored write, record bytes uncopied.
    fn encode_frame_chunks(
        &self,
        correlation_id: u32,
        priority: Priority,
        scratch: &mut BytesMut,
        out: &mut Vec<Bytes>,
    ) -> Result<(), EncodeError> {
        let header = RequestHeader::new(Self::API_KEY, Self::API_VERSION, correlation_id, priority);
        encode_frame_chunks(&header, scratch, out, |writer| self.write_body(writer))
    }

    #[doc(hidden)]
    fn write_body(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError>;
}

/// A response body.
pub trait ResponseMessage: WireMessage {
    /// Appends a whole response frame (length, header with error `none`, body) to `dst`.
    fn encode_frame(
        &self,
        correlation_id: u32,
        throttle_time_ms: u32,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let header = Self::header(correlation_id, throttle_time_ms);
        encode_frame(&header, dst, |writer| self.write_body(writer))
    }

    /// Appends a whole response frame as chunks for a vectored write: the first chunk holds the
    /// length prefix and header, record bytes follow as their own chunks, uncopied, and the
    /// length prefix covers every chunk.
    fn encode_frame_chunks(
        &self,
        correlation_id: u32,
        throttle_time_ms: u32,
        scratch: &mut BytesMut,
        out: &mut Vec<Bytes>,
    ) -> Result<(), EncodeError> {
        let header = Self::header(correlation_id, throttle_time_ms);
        encode_frame_chunks(&header, scratch, out, |writer| self.write_body(writer))
    }

    /// The header of a successful response of this type.
    fn header(correlation_id: u32, throttle_time_ms: u32) -> ResponseHeader {
        ResponseHeader::new(
            correlation_id,
            throttle_time_ms,
            Self::API_KEY.to_u16(),
            Self::API_VERSION,
            ErrorCode::None,
        )
    }

    #[doc(hidden)]
    fn write_body(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError>;
}

/// Fails unless `api_key` supports `api_version`.
pub(crate) fn check_version(
    api_key: ApiKey,
    api_version: u16,
    field: &'static str,
) -> Result<(), DecodeError> {
    let versions = api_key.versions();
    if versions.contains(api_version) {
        return Ok(());
    }
    Err(DecodeError::new(
        field,
        DecodeErrorKind::UnsupportedVersion {
            api_version,
            min: versions.min,
            max: versions.max,
        },
    ))
}

/// Encodes into `dst`, restoring it on error.
pub(crate) fn encode_contiguous(
    dst: &mut BytesMut,
    write_body: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = dst.len();
    let result = write_body(&mut Writer::contiguous(dst));
    if result.is_err() {
        dst.truncate(start);
    }
    result
}

/// Encodes as chunks into `out`, restoring it on error.
pub(crate) fn encode_chunked(
    scratch: &mut BytesMut,
    out: &mut Vec<Bytes>,
    write_body: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let out_start = out.len();
    scratch.clear();
    let result = {
        let mut writer = Writer::chunked(scratch, out);
        write_body(&mut writer).map(|()| writer.flush())
    };
    if result.is_err() {
        out.truncate(out_start);
        scratch.clear();
    }
    result
}

/// Decodes a whole body with `read_body`, checking the version first and trailing bytes last.
pub(crate) fn decode_body<T>(
    api_key: ApiKey,
    api_version: u16,
    body: &Bytes,
    message: &'static str,
    read_body: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    check_version(api_key, api_version, message)?;
    let mut reader = Reader::new(body);
    let value = read_body(&mut reader)?;
    reader.finish(message)?;
    Ok(value)
}

/// Implements [`WireMessage`] (and [`RequestMessage`] or [`ResponseMessage`]) for a message type
/// from its `write_body` and `read_body` functions, and adds inherent `encode`/`decode` so
/// callers need not import the trait.
macro_rules! wire_message {
    (request $type:ident, $api_key:expr, $name:literal, response: $response:ident) => {
        wire_message!(@common $type, $api_key, $name);
        impl $crate::wire::message::RequestMessage for $type {
            type Response = $response;

            fn write_body(
                &self,
                writer: &mut $crate::wire::codec::Writer<'_>,
            ) -> Result<(), $crate::wire::codec::EncodeError> {
                $type::write_fields(self, writer)
            }
        }
    };
    (response $type:ident, $api_key:expr, $name:literal) => {
        wire_message!(@common $type, $api_key, $name);
        impl $crate::wire::message::ResponseMessage for $type {
            fn write_body(
                &self,
                writer: &mut $crate::wire::codec::Writer<'_>,
            ) -> Result<(), $crate::wire::codec::EncodeError> {
                $type::write_fields(self, writer)
            }
        }
    };
    (@common $type:ident, $api_key:expr, $name:literal) => {
        impl $crate::wire::message::WireMessage for $type {
            const API_KEY: $crate::wire::ApiKey = $api_key;

            fn encode(
                &self,
                dst: &mut ::bytes::BytesMut,
            ) -> Result<(), $crate::wire::codec::EncodeError> {
                $crate::wire::message::encode_contiguous(dst, |writer| self.write_fields(writer))
            }

            fn encode_chunks(
                &self,
                scratch: &mut ::bytes::BytesMut,
                out: &mut Vec<::bytes::Bytes>,
            ) -> Result<(), $crate::wire::codec::EncodeError> {
                $crate::wire::message::encode_chunked(scratch, out, |writer| {
                    self.write_fields(writer)
                })
            }

            fn decode(
                body: &::bytes::Bytes,
                api_version: u16,
            ) -> Result<Self, $crate::wire::codec::DecodeError> {
                $crate::wire::message::decode_body($api_key, api_version, body, $name, |reader| {
                    $type::read_fields(reader)
                })
            }
        }

        impl $type {
            /// Appends the body's encoding to `dst` (see [`WireMessage::encode`]).
            ///
            /// [`WireMessage::encode`]: crate::wire::WireMessage::encode
            pub fn encode(
                &self,
                dst: &mut ::bytes::BytesMut,
            ) -> Result<(), $crate::wire::codec::EncodeError> {
                <Self as $crate::wire::message::WireMessage>::encode(self, dst)
            }

            /// Decodes a whole body encoded at `api_version` (see [`WireMessage::decode`]).
            ///
            /// [`WireMessage::decode`]: crate::wire::WireMessage::decode
            pub fn decode(
                body: &::bytes::Bytes,
                api_version: u16,
            ) -> Result<Self, $crate::wire::codec::DecodeError> {
                <Self as $crate::wire::message::WireMessage>::decode(body, api_version)
            }
        }
    };
}

pub(crate) use wire_message;
