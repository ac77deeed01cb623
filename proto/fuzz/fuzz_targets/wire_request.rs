//! `Request::decode` on an arbitrary request header and body: a decoded request re-encodes to the
//! same bytes, a rejected one gets an error response the client decodes; checked by
//! `weir_proto::wire::fuzz::fuzz_wire_request`, which `cargo test` also runs over `corpus/wire_request/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_proto::wire::fuzz::fuzz_wire_request(data);
});
