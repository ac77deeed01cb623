//! Fuzzing entry points for the wire decoders, shared by the cargo-fuzz targets in `proto/fuzz`
//! and by the ordinary tests that replay the checked-in seeds.
//!
//! Each function takes arbitrary bytes and panics only when a property of the protocol is broken
//! (that panic is what the fuzzer reports); no input is expected to make a decoder panic. The
//! properties: the frame decoder consumes bytes only when it yields a frame and gives the same
//! frames however the stream is split; every body that decodes re-encodes to exactly the same
//! bytes (the encoding is canonical); a request that fails to decode gets an error response the
//! client decodes back to the same error code; chunked encodings equal contiguous ones.

use bytes::{Bytes, BytesMut};

use super::dispatch::{ErrorResponse, Request, Response};
use super::frame::{FrameDecoder, FrameDecoderConfig, LENGTH_PREFIX_BYTES};
use super::header::{FrameHeader, RequestHeader, ResponseHeader};
use super::message::ResponseMessage;

/// The frame limit the fuzz targets use, small so that oversized frames are reachable.
const FUZZ_FRAME_BYTES_MAX: u32 = 4096;

/// Feeds `data` as a byte stream to both frame decoders, in pieces whose sizes come from the
/// first byte, checks that splitting does not change the frames, and decodes every frame.
pub fn fuzz_wire_frame(data: &[u8]) {
    let Some((&piece_seed, stream)) = data.split_first() else {
        return;
    };
    let piece_bytes = usize::from(piece_seed % 17) + 1;
    check_frames::<RequestHeader>(stream, piece_bytes, |frame| {
        check_request(&frame.header, &frame.body);
    });
    check_frames::<ResponseHeader>(stream, piece_bytes, |frame| {
        check_response(&frame.header, &frame.body);
    });
}

/// Decodes `data` as a request header followed by a body, and checks the properties.
pub fn fuzz_wire_request(data: &[u8]) {
    let Some((header, body)) = split_header::<RequestHeader>(data) else {
        return;
    };
    check_request(&header, &Bytes::copy_from_slice(body));
}

/// Decodes `data` as a response header followed by a body, and checks the properties.
pub fn fuzz_wire_response(data: &[u8]) {
    let Some((header, body)) = split_header::<ResponseHeader>(data) else {
        return;
    };
    check_response(&header, &Bytes::copy_from_slice(body));
}

fn split_header<H: FrameHeader>(data: &[u8]) -> Option<(H, &[u8])> {
    H::read_from_prefix(data).ok()
}

fn check_frames<H: FrameHeader>(
    stream: &[u8],
    piece_bytes: usize,
    mut on_frame: impl FnMut(super::frame::Frame<H>),
) {
    let config = FrameDecoderConfig {
        frame_bytes_max: FUZZ_FRAME_BYTES_MAX,
    };
    let mut whole = BytesMut::from(stream);
    let mut whole_decoder = FrameDecoder::<H>::new(config);
    let mut expected = Vec::new();
    let whole_error = loop {
        match whole_decoder.decode(&mut whole) {
            Ok(Some(frame)) => expected.push(frame),
            Ok(None) => break None,
            Err(error) => break Some(error),
        }
    };

    let mut pieces_decoder = FrameDecoder::<H>::new(config);
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    let mut pieces_error = None;
    'feed: for piece in stream.chunks(piece_bytes) {
        buffer.extend_from_slice(piece);
        loop {
            let before = buffer.len();
            match pieces_decoder.decode(&mut buffer) {
                Ok(Some(frame)) => {
                    let consumed = before - buffer.len();
                    assert_eq!(
                        consumed,
                        LENGTH_PREFIX_BYTES + H::HEADER_BYTES + frame.body.len()
                    );
                    frames.push(frame);
                }
                Ok(None) => {
                    assert_eq!(buffer.len(), before, "Ok(None) must not consume bytes");
                    break;
                }
                Err(error) => {
                    pieces_error = Some(error);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(frames, expected, "split points changed the decoded frames");
    assert_eq!(
        pieces_error, whole_error,
        "split points changed the framing error"
    );
    for frame in expected {
        on_frame(frame);
    }
}

fn check_request(header: &RequestHeader, body: &Bytes) {
    match Request::decode(header, body) {
        Ok(request) => {
            let priority = header
                .priority()
                .expect("a decoded request has valid flags");
            let mut encoded = BytesMut::new();
            request
                .encode_frame(header.correlation_id(), priority, &mut encoded)
                .expect("a decoded request re-encodes");
            let prefix_and_header = LENGTH_PREFIX_BYTES + RequestHeader::BYTES;
            assert_eq!(
                &encoded[prefix_and_header..],
                &body[..],
                "request encoding is not canonical"
            );
            assert_eq!(
                &encoded[LENGTH_PREFIX_BYTES..prefix_and_header],
                zerocopy::IntoBytes::as_bytes(header)
            );
        }
        Err(error) => {
            let mut encoded = BytesMut::new();
            ErrorResponse::for_request(header, &error)
                .encode_frame(header.correlation_id(), 0, &mut encoded)
                .expect("an error response encodes");
            let mut decoder = FrameDecoder::<ResponseHeader>::default();
            let frame = decoder
                .decode(&mut encoded)
                .expect("an error response frames")
                .expect("an error response is a whole frame");
            assert_eq!(frame.header.correlation_id(), header.correlation_id());
            match Response::decode(&frame.header, &frame.body) {
                Ok(Response::Error(rejection)) => {
                    assert_eq!(rejection.error_code, error.error_code());
                    assert_eq!(rejection.api_key, header.api_key_raw());
                }
                other => panic!("error response decoded as {other:?}"),
            }
        }
    }
}

fn check_response(header: &ResponseHeader, body: &Bytes) {
    let Ok(response) = Response::decode(header, body) else {
        return;
    };
    let mut encoded = BytesMut::new();
    response
        .encode_frame(
            header.correlation_id(),
            header.throttle_time_ms(),
            &mut encoded,
        )
        .expect("a decoded response re-encodes");
    let prefix_and_header = LENGTH_PREFIX_BYTES + ResponseHeader::BYTES;
    assert_eq!(
        &encoded[prefix_and_header..],
        &body[..],
        "response encoding is not canonical"
    );
    if let Response::Fetch(fetch) = &response {
        let mut scratch = BytesMut::new();
        let mut chunks = Vec::new();
        fetch
            .encode_frame_chunks(
                header.correlation_id(),
                header.throttle_time_ms(),
                &mut scratch,
                &mut chunks,
            )
            .expect("a decoded fetch response re-encodes as chunks");
        let joined: Vec<u8> = chunks
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .collect();
        assert_eq!(
            &joined[..],
            &encoded[..],
            "chunked and contiguous encodings differ"
        );
        let mut body_only = BytesMut::new();
        fetch
            .encode(&mut body_only)
            .expect("a decoded fetch response re-encodes");
        assert_eq!(&body_only[..], &body[..]);
    }
}
