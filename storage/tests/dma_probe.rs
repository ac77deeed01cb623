//! The glommio polled-I/O probe pitfall: on a virtio disk, glommio 0.9 enables polled I/O if the
//! first DMA file it opens on the device is empty, and every later DMA read of data then fails
//! with EOPNOTSUPP. A fresh directory and a new log is exactly that situation; the backend's
//! priming step must make the disk read below succeed.

mod common;

use common::{batch, run, stored};
use weir_storage::{FlushPolicy, LogConfig, PartitionLog};

#[test]
fn fresh_log_reads_back_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fresh-partition");
    let appended = batch(7, 3, 100, 1_000);
    let read = run(move || async move {
        let config = LogConfig {
            // No tail cache: the read must go to the segment file.
            tail_cache_bytes_max: 0,
            flush: FlushPolicy::Always,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, config).await.expect("open");
        log.append(appended.clone()).await.expect("append");
        let read = log.read(0, 1 << 20).await.expect("read from disk");
        assert_eq!(log.stats().tail_cache_misses, 1, "the read went to disk");
        log.close().await.expect("close");
        (read, appended)
    });
    let (read, appended) = read;
    assert_eq!(read.batches, vec![stored(&appended, 0)]);
}

/// Writes through the glommio backend cover whole file-system blocks, not just whole device
/// sectors: ext4 hands an O_DIRECT write that starts or ends inside one of its blocks of a
/// preallocated extent to an io-wq worker under the exclusive inode lock, which serialises the
/// log's writes in flight (docs/BENCHMARKS.md, "What bounds durable appends").
#[test]
fn dma_writes_are_aligned_to_the_file_system_block() {
    use std::os::unix::fs::MetadataExt;
    use weir_storage::io::{DmaBackend, OpenMode, StorageBackend};

    let dir = tempfile::tempdir().expect("tempdir");
    let block_bytes = std::fs::metadata(dir.path()).expect("stat").blksize();
    let path = dir.path().join("aligned");
    let alignment = run(move || async move {
        let backend = DmaBackend;
        backend
            .prepare_dir(path.parent().unwrap())
            .await
            .expect("prime");
        let file = backend
            .open(&path, OpenMode::CreateTruncate)
            .await
            .expect("open");
        let alignment = file.alignment();
        // One partial block written at the start: the file holds a whole aligned block.
        file.write_at(0, &[b"abc"]).await.expect("write");
        file.sync().await.expect("sync");
        file.close().await.expect("close");
        let written = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(written, alignment, "one whole aligned block on disk");
        alignment
    });
    assert!(block_bytes.is_power_of_two());
    assert_eq!(
        alignment % block_bytes,
        0,
        "alignment {alignment} vs block {block_bytes}"
    );
}
