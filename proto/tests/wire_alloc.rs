//! Huge counts fail fast: decoding a body whose array count claims billions of elements must be
//! rejected before anything proportional to the count is allocated. A counting global allocator
//! records the largest single allocation the decoding thread makes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use weir_proto::wire::*;

/// The system allocator, recording per thread the largest allocation requested while armed.
struct LargestAllocation;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST_BYTES: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

fn record(size: usize) {
    // `try_with` so allocations during thread teardown are ignored instead of panicking.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST_BYTES.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Runs `decode` and returns the largest allocation it made.
fn largest_allocation_bytes(decode: impl FnOnce()) -> usize {
    LARGEST_BYTES.with(|largest| largest.set(0));
    ARMED.with(|armed| armed.set(true));
    decode();
    ARMED.with(|armed| armed.set(false));
    LARGEST_BYTES.with(Cell::get)
}

/// The most a rejected 20-byte body may make the decoder allocate (error values, not elements).
const REJECTION_ALLOCATION_BYTES_MAX: usize = 256;

#[test]
fn huge_counts_are_rejected_before_allocating() {
    let huge = u32::MAX.to_be_bytes();
    // Each body: the fields before the array, then a count of 4 billion, padded to 20 bytes.
    let cases: Vec<(ApiKey, bool, Vec<u8>)> = vec![
        (ApiKey::Metadata, true, [&huge[..], &[0; 16]].concat()),
        (
            ApiKey::Produce,
            true,
            [&[1u8, 0, 0, 0, 9][..], &huge, &[0; 11]].concat(),
        ),
        (
            ApiKey::Fetch,
            true,
            [&[0u8; 12][..], &huge, &[0; 4]].concat(),
        ),
        (ApiKey::ListOffsets, true, [&huge[..], &[0; 16]].concat()),
        (
            ApiKey::OffsetCommit,
            true,
            [&[0u8, 0, 0, 0, 0, 0, 0, 0][..], &huge, &[0; 8]].concat(),
        ),
        (
            ApiKey::OffsetFetch,
            true,
            [&[0u8, 0][..], &huge, &[0; 14]].concat(),
        ),
        (ApiKey::ApiVersions, false, [&huge[..], &[0; 16]].concat()),
        (
            ApiKey::Metadata,
            false,
            [&[0u8; 4][..], &[0, 0], &huge, &[0; 10]].concat(),
        ),
        (ApiKey::ListTopics, false, [&huge[..], &[0; 16]].concat()),
        (ApiKey::Produce, false, [&huge[..], &[0; 16]].concat()),
        (ApiKey::Fetch, false, [&huge[..], &[0; 16]].concat()),
        (ApiKey::ListOffsets, false, [&huge[..], &[0; 16]].concat()),
        (ApiKey::OffsetCommit, false, [&huge[..], &[0; 16]].concat()),
        (
            ApiKey::OffsetFetch,
            false,
            [&[0u8; 4][..], &huge, &[0; 12]].concat(),
        ),
    ];
    for (api_key, is_request, body) in cases {
        assert_eq!(body.len(), 20);
        let body = Bytes::from(body);
        let mut kind = None;
        let largest = largest_allocation_bytes(|| {
            kind = Some(if is_request {
                let header = RequestHeader::new(api_key, 0, 1, Priority::Normal);
                match Request::decode(&header, &body) {
                    Err(RequestError::InvalidBody { source, .. }) => source.kind,
                    other => panic!("{api_key} request: expected an invalid body, got {other:?}"),
                }
            } else {
                let header = ResponseHeader::new(1, 0, api_key.to_u16(), 0, ErrorCode::None);
                match Response::decode(&header, &body) {
                    Err(ResponseError::InvalidBody { source, .. }) => source.kind,
                    other => panic!("{api_key} response: expected an invalid body, got {other:?}"),
                }
            });
        });
        assert!(
            matches!(
                kind,
                Some(DecodeErrorKind::CountTooLarge {
                    count: u32::MAX,
                    ..
                })
            ),
            "{api_key} (request: {is_request}): {kind:?}"
        );
        assert!(
            largest <= REJECTION_ALLOCATION_BYTES_MAX,
            "{api_key} (request: {is_request}) allocated {largest} bytes"
        );
    }
}

#[test]
fn the_allocation_probe_sees_allocations() {
    let largest = largest_allocation_bytes(|| {
        let buffer = vec![0u8; 10_000];
        std::hint::black_box(buffer);
    });
    assert!(largest >= 10_000);
}
