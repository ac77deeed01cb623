//! The frame decoders (request and response headers) on an arbitrary byte stream fed in pieces,
//! and every frame they yield decoded as a request and as a response; checked by
//! `weir_proto::wire::fuzz::fuzz_wire_frame`, which `cargo test` also runs over `corpus/wire_frame/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_proto::wire::fuzz::fuzz_wire_frame(data);
});
