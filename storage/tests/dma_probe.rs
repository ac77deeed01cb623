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
