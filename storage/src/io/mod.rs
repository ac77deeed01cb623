//! The file I/O seam: the operations the log needs from a file system, as object-safe traits.
//!
//! [`StorageBackend`] opens, removes and syncs; [`StorageFile`] reads, writes and syncs one
//! file. The production implementation is [`DmaBackend`] (glommio `DmaFile`: O_DIRECT over
//! io_uring); [`FaultInjectingBackend`] wraps any backend to fail chosen operations and count
//! them in tests. Contract of [`StorageFile::write_at`]: the position is a multiple of
//! [`StorageFile::alignment`], the parts are written back to back and padded with zeros to the
//! next aligned size, and the call returns only when the write completed (a short write is an
//! error). Nothing here buffers data: what a crash leaves is what the device persisted of the
//! writes that were issued, which is why the log rewrites partial blocks byte-identically.
//!
//! Futures are boxed so the traits stay object-safe: one allocation per I/O is small next to the
//! I/O itself and keeps `PartitionLog` free of a backend type parameter. Files are closed by
//! [`StorageFile::close`], or when the last handle is dropped.

mod dma;
mod fault;

use std::{future::Future, io, path::Path, pin::Pin, rc::Rc};

use bytes::Bytes;

pub use dma::DmaBackend;
pub use fault::{FaultInjectingBackend, FaultPlan, IoCounts};

/// A boxed, single-threaded future of an I/O result.
pub type IoFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + 'a>>;

/// How [`StorageBackend::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file, truncating it to zero bytes if it exists.
    CreateTruncate,
    /// Open an existing file for reading and writing.
    Existing,
}

/// A shared handle to an open file.
pub type FileHandle = Rc<dyn StorageFile>;

/// File-system operations the log needs besides reading and writing one file.
pub trait StorageBackend {
    /// Prepares a data directory for I/O before any other file in it is opened (the glommio
    /// backend primes its polled-I/O probe here). Called once per log open.
    fn prepare_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()>;
    /// Opens a file for reading and writing.
    fn open<'a>(&'a self, path: &'a Path, mode: OpenMode) -> IoFuture<'a, FileHandle>;
    /// Removes a file by name.
    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()>;
    /// Makes the directory's entries (created or removed files) durable.
    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()>;
}

/// One open file.
pub trait StorageFile {
    /// Alignment of write positions and sizes, in bytes (a power of two).
    fn alignment(&self) -> u64;
    /// Writes `parts` back to back at `position`, zero-padded to the alignment. Returns the
    /// number of bytes of `parts` written; anything less than their total is an error.
    fn write_at<'a>(&'a self, position: u64, parts: &'a [&'a [u8]]) -> IoFuture<'a, usize>;
    /// Reads up to `length` bytes at `position` (any alignment); fewer at the end of the file.
    fn read_at(&self, position: u64, length: usize) -> IoFuture<'_, Bytes>;
    /// fdatasync: makes every completed write durable.
    fn sync(&self) -> IoFuture<'_, ()>;
    /// Allocates space so the file is at least `length_bytes` long (the size changes too).
    fn preallocate(&self, length_bytes: u64) -> IoFuture<'_, ()>;
    /// Cuts or extends the file to exactly `length_bytes`.
    fn truncate(&self, length_bytes: u64) -> IoFuture<'_, ()>;
    /// The file's size in bytes.
    fn size(&self) -> IoFuture<'_, u64>;
    /// Closes the file; later operations on this handle fail. Operations still in flight
    /// finish first (the descriptor is released when the last of them completes).
    fn close(&self) -> IoFuture<'_, ()>;
}

impl std::fmt::Debug for dyn StorageFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StorageFile(alignment {})", self.alignment())
    }
}

/// Total length of a list of byte slices.
pub(crate) fn parts_len(parts: &[&[u8]]) -> usize {
    parts.iter().map(|part| part.len()).sum()
}
