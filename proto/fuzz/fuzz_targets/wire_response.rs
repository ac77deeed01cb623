//! `Response::decode` on an arbitrary response header and body: a decoded response re-encodes to
//! the same bytes, contiguous and chunked; checked by `weir_proto::wire::fuzz::fuzz_wire_response`,
//! which `cargo test` also runs over `corpus/wire_response/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_proto::wire::fuzz::fuzz_wire_response(data);
});
