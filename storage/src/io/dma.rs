//! The production backend: glommio `DmaFile` (O_DIRECT, io_uring), and the one place that works
//! around glommio 0.9's polled-I/O probe.
//!
//! Owns nothing persistent except a short-lived probe file (`.weir-dma-probe`) created and
//! removed in a data directory the first time an executor thread touches that directory's
//! device. A crash can leave that probe file behind; it is recreated and removed at the next
//! open and never read as log data.

use std::{
    cell::RefCell,
    collections::HashSet,
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    rc::Rc,
};

use bytes::Bytes;
use glommio::{
    io::{DmaFile, OpenOptions},
    GlommioError,
};

use super::{parts_len, FileHandle, IoFuture, OpenMode, StorageBackend, StorageFile};

/// Name of the small file used to prime glommio's polled-I/O probe.
pub const PROBE_FILE_NAME: &str = ".weir-dma-probe";

/// Size of the probe file in bytes: one large logical block, never empty.
const PROBE_FILE_BYTES: usize = 4096;

thread_local! {
    /// Devices (st_dev) whose polled-I/O probe this executor thread has already primed.
    /// glommio caches its probe result per thread and device, so priming is too.
    static PRIMED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// glommio `DmaFile` backend: O_DIRECT reads and writes through io_uring.
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaBackend;

impl DmaBackend {
    /// Creates the backend. It is stateless; priming state is per executor thread.
    pub fn new() -> Self {
        DmaBackend
    }
}

/// Unwraps glommio's error into the operating system's error, keeping its errno.
fn os_error(error: GlommioError<()>) -> io::Error {
    match error {
        GlommioError::IoError(source) => source,
        GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::from(other),
    }
}

/// Primes glommio's polled-I/O probe for the device holding `dir`.
///
/// The first `DmaFile` an executor thread opens on a device makes glommio 0.9 probe whether the
/// device supports polled I/O (IORING_SETUP_IOPOLL) by reading the first block of *that* file
/// through the poll ring, and caches the answer for the device. If the file is new and empty,
/// the read stops at end-of-file before reaching the device and succeeds, so glommio concludes
/// that polling works; on a virtio disk without poll queues every later DMA read of real data
/// then fails with EOPNOTSUPP. Opening a non-empty file first makes the probe read reach the
/// device and get the true answer. This function does that once per thread and device, before
/// the log opens any of its own files; `PartitionLog::open` calls it through
/// [`StorageBackend::prepare_dir`]. Other code on the same executor that opens a `DmaFile` on
/// that device before any log is opened should call `DmaBackend::new().prepare_dir(dir)` first
/// (glommio's cached answer cannot be corrected afterwards); `BufferedFile` does not probe.
async fn prime_polled_io_probe(dir: &Path) -> io::Result<()> {
    let device = std::fs::metadata(dir)?.dev();
    if PRIMED_DEVICES.with(|primed| primed.borrow().contains(&device)) {
        return Ok(());
    }
    let probe_path: PathBuf = dir.join(PROBE_FILE_NAME);
    std::fs::write(&probe_path, [0x5a_u8; PROBE_FILE_BYTES])?;
    let opened = DmaFile::open(&probe_path).await.map_err(os_error);
    let removed = std::fs::remove_file(&probe_path);
    let file = opened?;
    removed?;
    file.close().await.map_err(os_error)?;
    PRIMED_DEVICES.with(|primed| primed.borrow_mut().insert(device));
    Ok(())
}

impl StorageBackend for DmaBackend {
    fn prepare_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(prime_polled_io_probe(dir))
    }

    fn open<'a>(&'a self, path: &'a Path, mode: OpenMode) -> IoFuture<'a, FileHandle> {
        Box::pin(async move {
            let mut options = OpenOptions::new();
            options.read(true).write(true);
            if mode == OpenMode::CreateTruncate {
                options.create(true).truncate(true);
            }
            let file = options.dma_open(path).await.map_err(os_error)?;
            let cluster_bytes = u64::from(file.stat().await.map_err(os_error)?.fs_cluster_size);
            let handle: FileHandle = Rc::new(DmaStorageFile {
                alignment: write_alignment(file.alignment(), cluster_bytes),
                file: RefCell::new(Some(Rc::new(file))),
            });
            Ok(handle)
        })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move { glommio::io::remove(path).await.map_err(os_error) })
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let directory = glommio::io::Directory::open(dir).await.map_err(os_error)?;
            directory.sync().await.map_err(os_error)?;
            directory.close().await.map_err(os_error)
        })
    }
}

/// The alignment of every write: the larger of the device's O_DIRECT alignment and the file
/// system's block size.
///
/// The device alone may accept 512-byte-aligned O_DIRECT writes, but ext4 runs a write that
/// starts or ends inside one of its blocks of a preallocated (unwritten) extent only under the
/// exclusive inode lock, after waiting for every other direct write on the file: io_uring's
/// non-blocking attempt fails and the write is handed to an io-wq worker, so writes in flight
/// are serialised and the disk idles between them. Writing whole file-system blocks keeps every
/// write on the submitting thread and lets several run at once. A block size that is not a
/// power of two (no such file system is known) falls back to the device's alignment.
fn write_alignment(device_bytes: u64, cluster_bytes: u64) -> u64 {
    if cluster_bytes.is_power_of_two() {
        device_bytes.max(cluster_bytes)
    } else {
        device_bytes
    }
}

/// Copies `parts`, minus their first `skip` bytes, to the start of `out` and zeroes the rest.
fn copy_parts(parts: &[&[u8]], mut skip: usize, out: &mut [u8]) {
    let mut at = 0;
    for part in parts {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        let bytes = &part[skip..];
        skip = 0;
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    }
    out[at..].fill(0);
}

/// One `DmaFile`. Each operation holds its own reference for as long as it runs, so closing
/// never pulls the file from under an operation in flight.
struct DmaStorageFile {
    alignment: u64,
    file: RefCell<Option<Rc<DmaFile>>>,
}

impl DmaStorageFile {
    fn file(&self) -> io::Result<Rc<DmaFile>> {
        self.file
            .borrow()
            .clone()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "file is closed"))
    }
}

impl StorageFile for DmaStorageFile {
    fn alignment(&self) -> u64 {
        self.alignment
    }

    fn write_at<'a>(&'a self, position: u64, parts: &'a [&'a [u8]]) -> IoFuture<'a, usize> {
        Box::pin(async move {
            let file = self.file()?;
            assert_eq!(position % self.alignment, 0, "unaligned DMA write");
            let total = parts_len(parts);
            let padded = total.next_multiple_of(self.alignment as usize);
            // A short write (the device filling up part-way) is continued from where it
            // stopped, so the caller sees either the whole write or the error that ended it.
            let mut done = 0usize;
            while done < total {
                // Copying into a DMA buffer is the one copy O_DIRECT needs: client bytes are
                // not aligned in memory.
                let mut buffer = file.alloc_dma_buffer(padded - done);
                copy_parts(parts, done, buffer.as_bytes_mut());
                let written = file
                    .write_at(buffer, position + done as u64)
                    .await
                    .map_err(os_error)?;
                done += written;
                // The alignment is a power of two; a partial write that ends inside a block
                // cannot be continued with O_DIRECT.
                let ends_inside_block = done & (self.alignment as usize - 1) != 0;
                if written == 0 || (ends_inside_block && done < total) {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short write: {done} of {total} bytes at {position}"),
                    ));
                }
            }
            Ok(total)
        })
    }

    fn read_at(&self, position: u64, length: usize) -> IoFuture<'_, Bytes> {
        Box::pin(async move {
            if length == 0 {
                return Ok(Bytes::new());
            }
            let result = self
                .file()?
                .read_at(position, length)
                .await
                .map_err(os_error)?;
            Ok(Bytes::copy_from_slice(&result))
        })
    }

    fn sync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move { self.file()?.fdatasync().await.map_err(os_error) })
    }

    fn preallocate(&self, length_bytes: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.file()?
                .pre_allocate(length_bytes, false)
                .await
                .map_err(os_error)
        })
    }

    fn truncate(&self, length_bytes: u64) -> IoFuture<'_, ()> {
        Box::pin(async move { self.file()?.truncate(length_bytes).await.map_err(os_error) })
    }

    fn size(&self) -> IoFuture<'_, u64> {
        Box::pin(async move { self.file()?.file_size().await.map_err(os_error) })
    }

    fn close(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            let Some(file) = self.file.borrow_mut().take() else {
                return Ok(());
            };
            match Rc::try_unwrap(file) {
                Ok(file) => file.close().await.map_err(os_error),
                // An operation is still running; the descriptor closes when it drops its
                // reference.
                Err(_) => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{copy_parts, write_alignment};

    #[test]
    fn write_alignment_is_the_larger_power_of_two() {
        assert_eq!(write_alignment(512, 4096), 4096);
        assert_eq!(write_alignment(4096, 512), 4096);
        assert_eq!(write_alignment(512, 512), 512);
        assert_eq!(write_alignment(512, 0), 512, "no block size reported");
        assert_eq!(write_alignment(512, 3000), 512, "not a power of two");
    }

    #[test]
    fn copy_parts_skips_and_pads() {
        let parts: [&[u8]; 3] = [b"abc", b"de", b"fgh"];
        let mut out = [9u8; 8];
        copy_parts(&parts, 4, &mut out);
        assert_eq!(&out, b"efgh\0\0\0\0");
        let mut out = [9u8; 10];
        copy_parts(&parts, 0, &mut out);
        assert_eq!(&out, b"abcdefgh\0\0");
    }
}
