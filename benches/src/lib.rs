//! Support for Weir's benchmark programs (`storage-append`, `storage-open`): the physical limit
//! they compare against (fio), a peer that issues fio's pattern through glommio (`dma_peer`),
//! the batches they append, and the scratch directories they use.
//!
//! Benchmarks here are programs, not timed tests: each prints the workload it ran, absolute
//! figures, and a ratio against a limit measured in the same run, so drift on a shared machine
//! shows instead of hiding. Every program writes only inside a scratch directory it creates
//! (under `--dir`, or the system temporary directory) and removes it when it ends, also on
//! error; a crash can leave that directory behind, and nothing reads it again.

pub mod dma_peer;
pub mod fio;

use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use weir_proto::batch::BatchBuilder;

/// Bytes in a GiB.
pub const GIB: u64 = 1 << 30;
/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;

/// A record batch of `records` records, each with a `record_bytes`-byte value and no key, as a
/// producer would send it (offsets are assigned by the log).
pub fn make_batch(records: usize, record_bytes: usize) -> Bytes {
    let timestamp_ms = weir_storage::wall_clock_ms();
    let mut builder = BatchBuilder::with_capacity(timestamp_ms, records * (record_bytes + 16));
    // Incompressible-looking bytes, so nothing below the log can shortcut them.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let value: Vec<u8> = (0..record_bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for _ in 0..records {
        builder.push(timestamp_ms, None, Some(&value), &[]);
    }
    Bytes::from(builder.finish())
}

/// A scratch directory under `parent` (or the system temporary directory), removed on drop.
pub fn scratch_dir(parent: Option<&Path>, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let parent: PathBuf = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))
}

/// Bytes per second as decimal megabytes per second (what fio calls MB/s).
pub fn megabytes_per_second(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

/// Size in GiB parsed from text such as `4` or `0.5`.
pub fn parse_gib(text: &str) -> Result<u64, String> {
    let gib: f64 = text
        .trim()
        .parse()
        .map_err(|error| format!("{text:?} is not a number of GiB: {error}"))?;
    if !(gib > 0.0 && gib <= 1024.0) {
        return Err(format!("{text:?}: a size in GiB must be in (0, 1024]"));
    }
    Ok((gib * GIB as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::batch::{validate_batch, BatchLimits};

    #[test]
    fn batches_are_valid_and_sized_as_asked() {
        let batch = make_batch(1000, 1024);
        let info = validate_batch(&batch, &BatchLimits::default()).expect("valid batch");
        assert_eq!(info.records_count, 1000);
        assert!(batch.len() > 1000 * 1024 && batch.len() < 1000 * 1040);
    }

    #[test]
    fn sizes_in_gib_parse_and_reject_nonsense() {
        assert_eq!(parse_gib("4"), Ok(4 * GIB));
        assert_eq!(parse_gib("0.5"), Ok(GIB / 2));
        for bad in ["", "0", "-1", "x", "NaN", "2000"] {
            assert!(parse_gib(bad).is_err(), "{bad:?}");
        }
    }
}
