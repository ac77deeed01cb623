//! Record batch decoders on arbitrary bytes: `peek_batch_size`, `validate_batch`,
//! `validate_batch_header_and_crc`, `BatchIter` and `records`, checked against each other by
//! `weir_proto::batch::fuzz_batch`, which `cargo test` also runs over `corpus/batch/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_proto::batch::fuzz_batch(data);
});
