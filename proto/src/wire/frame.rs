//! Framing: a `u32` big-endian length, then a fixed-layout header, then the body.
//!
//! This module owns the streaming [`FrameDecoder`] and the frame encoders. Invariants: the
//! decoder answers `Ok(None)` only when more bytes could complete a valid frame, and an error
//! only when no continuation could (length above `frame_bytes_max`, or too short to hold the
//! header); it consumes bytes only when it returns a frame, so the caller can keep reading into
//! the same buffer. A decoded frame's body is a zero-copy `Bytes` slice of the read buffer. After
//! an error the stream has no recoverable frame boundary: the connection must be closed. Encoders
//! write the length last, so it always equals the bytes that follow it, and they leave the
//! destination as it was when they fail.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::codec::{EncodeError, Writer};
use super::header::{FrameHeader, RequestHeader, ResponseHeader};

/// The size of the length prefix in front of every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// The default largest frame length (the value of the length prefix: header plus body), 16 MiB.
pub const FRAME_BYTES_MAX_DEFAULT: u32 = 16 * 1024 * 1024;

/// Limits a [`FrameDecoder`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoderConfig {
    /// The largest accepted frame length (the length prefix's value: header plus body, without
    /// the prefix itself). Longer frames are rejected as soon as their prefix is read.
    pub frame_bytes_max: u32,
}

impl Default for FrameDecoderConfig {
    fn default() -> Self {
        FrameDecoderConfig {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
        }
    }
}

/// A frame that cannot be decoded; the connection it came from has lost its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the configured limit.
    #[error("frame of {frame_bytes} bytes exceeds the limit of {frame_bytes_max} bytes")]
    Oversized {
        /// The length prefix's value.
        frame_bytes: u32,
        /// The configured limit.
        frame_bytes_max: u32,
    },
    /// The length prefix is too small to hold the header.
    #[error("frame of {frame_bytes} bytes is shorter than its {header_bytes}-byte header")]
    TooShort {
        /// The length prefix's value.
        frame_bytes: u32,
        /// The size of the header the frame must hold.
        header_bytes: u32,
    },
}

/// One decoded frame: its header and its body, a zero-copy slice of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<H> {
    /// The fixed-layout header.
    pub header: H,
    /// Everything after the header.
    pub body: Bytes,
}

/// A decoded request frame.
pub type RequestFrame = Frame<RequestHeader>;

/// A decoded response frame.
pub type ResponseFrame = Frame<ResponseHeader>;

/// Splits a byte stream into frames with header `H`; see the module documentation for its
/// contract.
#[derive(Debug, Clone)]
pub struct FrameDecoder<H> {
    config: FrameDecoderConfig,
    header: PhantomData<fn() -> H>,
}

/// The broker's decoder: frames with a [`RequestHeader`].
pub type RequestFrameDecoder = FrameDecoder<RequestHeader>;

/// The client's decoder: frames with a [`ResponseHeader`].
pub type ResponseFrameDecoder = FrameDecoder<ResponseHeader>;

impl<H: FrameHeader> FrameDecoder<H> {
    /// A decoder enforcing `config`.
    pub fn new(config: FrameDecoderConfig) -> Self {
        FrameDecoder {
            config,
            header: PhantomData,
        }
    }

    /// The limits this decoder enforces.
    pub fn config(&self) -> FrameDecoderConfig {
        self.config
    }

    /// Takes the next whole frame off the front of `src`.
    ///
    /// Returns `Ok(None)` when `src` holds no whole frame yet (having reserved room for the rest
    /// of a frame whose length is known), and an error when the length prefix is invalid.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame<H>>, FrameError> {
        let Some(prefix) = src.get(..LENGTH_PREFIX_BYTES) else {
            return Ok(None);
        };
        let frame_bytes = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if frame_bytes > self.config.frame_bytes_max {
            return Err(FrameError::Oversized {
                frame_bytes,
                frame_bytes_max: self.config.frame_bytes_max,
            });
        }
        let too_short = FrameError::TooShort {
            frame_bytes,
            header_bytes: H::HEADER_BYTES as u32,
        };
        if (frame_bytes as usize) < H::HEADER_BYTES {
            return Err(too_short);
        }
        let total_bytes = LENGTH_PREFIX_BYTES + frame_bytes as usize;
        if src.len() < total_bytes {
            src.reserve(total_bytes - src.len());
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX_BYTES);
        let frame = src.split_to(frame_bytes as usize).freeze();
        let (header, _) = H::read_from_prefix(&frame).map_err(|_| too_short)?;
        let body = frame.slice(H::HEADER_BYTES..);
        Ok(Some(Frame { header, body }))
    }
}

impl<H: FrameHeader> Default for FrameDecoder<H> {
    fn default() -> Self {
        FrameDecoder::new(FrameDecoderConfig::default())
    }
}

/// Appends one frame to `dst`: length prefix, `header`, then the body `write_body` produces.
/// On error `dst` is left as it was.
pub(crate) fn encode_frame<H: FrameHeader>(
    header: &H,
    dst: &mut BytesMut,
    write_body: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = dst.len();
    dst.put_u32(0);
    dst.put_slice(header.as_bytes());
    let written = write_body(&mut Writer::contiguous(dst));
    let result = written.and_then(|()| {
        let frame_bytes = frame_length(dst.len() - start - LENGTH_PREFIX_BYTES)?;
        dst[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&frame_bytes.to_be_bytes());
        Ok(())
    });
    if result.is_err() {
        dst.truncate(start);
    }
    result
}

/// Appends one frame to `out` as chunks for a vectored write: the length prefix and `header`,
/// then the body's fixed fields written through `scratch`, with every byte string passed through
/// as its own chunk, uncopied. `scratch` is working memory (its contents are discarded); on error
/// `out` is left as it was.
pub(crate) fn encode_frame_chunks<H: FrameHeader>(
    header: &H,
    scratch: &mut BytesMut,
    out: &mut Vec<Bytes>,
    write_body: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let out_start = out.len();
    scratch.clear();
    scratch.put_u32(0);
    scratch.put_slice(header.as_bytes());
    // The head chunk stays mutable until the body's length is known.
    let mut head = scratch.split();
    out.push(Bytes::new());
    let result = {
        let mut writer = Writer::chunked(scratch, out);
        write_body(&mut writer).map(|()| writer.flush())
    };
    let result = result.and_then(|()| {
        let body_bytes: usize = out[out_start + 1..].iter().map(Bytes::len).sum();
        frame_length(head.len() - LENGTH_PREFIX_BYTES + body_bytes)
    });
    match result {
        Ok(frame_bytes) => {
            head[..LENGTH_PREFIX_BYTES].copy_from_slice(&frame_bytes.to_be_bytes());
            out[out_start] = head.freeze();
            Ok(())
        }
        Err(error) => {
            out.truncate(out_start);
            scratch.clear();
            Err(error)
        }
    }
}

fn frame_length(frame_bytes: usize) -> Result<u32, EncodeError> {
    u32::try_from(frame_bytes).map_err(|_| EncodeError::TooLong {
        field: "frame",
        length: frame_bytes as u64,
        length_max: u64::from(u32::MAX),
    })
}
