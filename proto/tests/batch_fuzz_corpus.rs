//! Runs the `batch` fuzz target's consistency check over every input in its checked-in seed
//! corpus, so that `cargo test` replays the seeds (and any crash input added there as a
//! regression) without nightly or cargo-fuzz.

use std::fs;
use std::path::Path;

use weir_proto::batch::{fuzz_batch, validate_batch, BatchIter, BatchLimits};

#[test]
fn every_seed_passes_the_fuzz_check() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/batch");
    let mut seeds = 0;
    let mut single_valid_batches = 0;
    let mut multi_batch_buffers = 0;
    for entry in fs::read_dir(&corpus).expect("the seed corpus is checked in") {
        let path = entry.expect("readable entry").path();
        let data = fs::read(&path).expect("readable seed");
        fuzz_batch(&data);
        seeds += 1;
        let limits = BatchLimits::default();
        if validate_batch(&data, &limits).is_ok() {
            single_valid_batches += 1;
        }
        if BatchIter::new(&data, &limits).count() > 1 {
            multi_batch_buffers += 1;
        }
    }
    // The seeds reach the deep paths: valid batches, and buffers of several batches.
    assert!(seeds >= 15, "{seeds} seeds");
    assert!(
        single_valid_batches >= 10,
        "{single_valid_batches} valid batches"
    );
    assert!(
        multi_batch_buffers >= 2,
        "{multi_batch_buffers} multi-batch buffers"
    );
}
