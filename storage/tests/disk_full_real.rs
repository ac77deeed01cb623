//! Disk full on a real file system: a small ext4 image, loop-mounted (the tests run as root,
//! locally and in CI). The log fills the device, gets a typed disk-full error, stays
//! consistent and readable, and appends again once space is freed; a reopen finds exactly
//! the acknowledged batches. Run with and without preallocation, so the error comes from
//! fallocate (a new segment) and from the O_DIRECT write itself.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::{batch, read_all, run, stored};
use weir_storage::{AppendError, FlushPolicy, IoOperation, LogConfig, PartitionLog};

/// Size of the file-system image.
const IMAGE_BYTES: u64 = 16 << 20;

/// A loop-mounted ext4 file system, unmounted on drop.
struct SmallFileSystem {
    mount_point: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFileSystem {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("fs.img");
        let mount_point = dir.path().join("mnt");
        std::fs::create_dir(&mount_point).expect("mount point");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(IMAGE_BYTES))
            .expect("image");
        command("mkfs.ext4", &["-q", "-F", "-m", "0", path_str(&image)]);
        command(
            "mount",
            &["-o", "loop", path_str(&image), path_str(&mount_point)],
        );
        SmallFileSystem {
            mount_point,
            _dir: dir,
        }
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.mount_point).status();
        if !matches!(status, Ok(status) if status.success()) {
            // Lazy unmount so a test failure does not leave the mount busy.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .status();
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `program` from `PATH`, or from the system directories a non-login `PATH` may lack.
fn program_path(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} not found"))
}

fn command(program: &str, args: &[&str]) {
    let output = Command::new(program_path(program))
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn fill_until_disk_full(preallocate: bool) {
    let file_system = SmallFileSystem::new();
    let log_dir = file_system.mount_point.join("partition");
    let filler = file_system.mount_point.join("filler");
    run(move || async move {
        let config = LogConfig {
            segment_bytes_max: 1 << 20,
            flush: FlushPolicy::Always,
            tail_cache_bytes_max: 0,
            preallocate,
            batch_limits: weir_proto::batch::BatchLimits {
                batch_bytes_max: 64 << 10,
                ..Default::default()
            },
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&log_dir, config.clone())
            .await
            .expect("open");
        // A filler file that can be deleted later to free space.
        std::fs::write(&filler, vec![1u8; 4 << 20]).expect("filler");
        let mut expected = Vec::new();
        let mut tag = 0u8;
        let failure = loop {
            tag = tag.wrapping_add(1);
            let appended = batch(tag, 4, 8000, i64::from(tag));
            let end = log.log_end_offset();
            match log.append(appended.clone()).await {
                Ok(info) => {
                    assert_eq!(info.base_offset, end);
                    expected.push(stored(&appended, end));
                    assert!(expected.len() < 1000, "the device never filled up");
                }
                Err(error) => {
                    assert_eq!(log.log_end_offset(), end, "failed batch got no offset");
                    break error;
                }
            }
        };
        let AppendError::DiskFull(failure) = failure else {
            panic!("expected disk full, got {failure:?}");
        };
        let expected_operation = if preallocate {
            IoOperation::Preallocate
        } else {
            IoOperation::Write
        };
        assert_eq!(failure.operation, expected_operation, "{failure}");
        assert!(!expected.is_empty());
        // Consistent and readable while full; further appends fail the same way.
        assert_eq!(read_all(&log, 0).await, expected);
        assert!(matches!(
            log.append(batch(0, 4, 8000, 0)).await,
            Err(AppendError::DiskFull(_))
        ));
        assert_eq!(read_all(&log, 0).await, expected);

        std::fs::remove_file(&filler).expect("free space");
        for _ in 0..5 {
            tag = tag.wrapping_add(1);
            let appended = batch(tag, 4, 8000, i64::from(tag));
            let info = log
                .append(appended.clone())
                .await
                .expect("append after freeing space");
            expected.push(stored(&appended, info.base_offset));
        }
        assert_eq!(read_all(&log, 0).await, expected);
        log.close().await.expect("close");
        let log = PartitionLog::open(&log_dir, config).await.expect("reopen");
        assert_eq!(
            read_all(&log, 0).await,
            expected,
            "disk matches what was acknowledged"
        );
        log.close().await.expect("close");
    });
}

#[test]
fn real_disk_full_with_preallocated_segments() {
    fill_until_disk_full(true);
}

#[test]
fn real_disk_full_on_direct_writes() {
    fill_until_disk_full(false);
}
