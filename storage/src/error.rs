//! Typed errors of the storage engine, one enum per operation.
//!
//! Every error says what failed, where (file path and byte position when there is one) and why.
//! I/O failures keep the operating system's error as their source, shared through an `Arc`
//! because one failed group commit fails every append it covered. This module does no I/O.

use std::{fmt, io, path::PathBuf, sync::Arc};

use thiserror::Error;
use weir_proto::batch::BatchError;

/// The file operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOperation {
    /// Opening or creating a file.
    Open,
    /// Writing to a file.
    Write,
    /// Reading from a file.
    Read,
    /// fdatasync of a file or fsync of a directory.
    Sync,
    /// Preallocating (fallocate) a file.
    Preallocate,
    /// Truncating a file.
    Truncate,
    /// Asking a file's size.
    Size,
    /// Removing a file.
    Remove,
    /// Closing a file.
    Close,
    /// Listing or creating a directory.
    Directory,
}

impl fmt::Display for IoOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            IoOperation::Open => "open",
            IoOperation::Write => "write",
            IoOperation::Read => "read",
            IoOperation::Sync => "sync",
            IoOperation::Preallocate => "preallocate",
            IoOperation::Truncate => "truncate",
            IoOperation::Size => "size of",
            IoOperation::Remove => "remove",
            IoOperation::Close => "close",
            IoOperation::Directory => "directory operation on",
        };
        f.write_str(name)
    }
}

/// A failed file operation: which operation, on which file, at which byte position, and the
/// operating system's error.
#[derive(Debug, Clone, Error)]
#[error("{operation} {path:?}{}: {source}", position_text(*.position))]
pub struct IoFailure {
    /// The operation that failed.
    pub operation: IoOperation,
    /// The file or directory it was applied to.
    pub path: PathBuf,
    /// Byte position in the file, for positioned operations.
    pub position: Option<u64>,
    /// The operating system's error.
    #[source]
    pub source: Arc<io::Error>,
}

fn position_text(position: Option<u64>) -> String {
    position.map_or_else(String::new, |position| format!(" at byte {position}"))
}

impl IoFailure {
    /// Builds a failure record from an I/O error.
    pub fn new(
        operation: IoOperation,
        path: impl Into<PathBuf>,
        position: Option<u64>,
        source: io::Error,
    ) -> Self {
        IoFailure {
            operation,
            path: path.into(),
            position,
            source: Arc::new(source),
        }
    }

    /// True when the device or a quota ran out of space.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self.source.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        ) || self.source.kind() == io::ErrorKind::StorageFull
    }
}

/// Bytes on disk that are not what the log wrote: a bad CRC, an impossible length, offsets out
/// of sequence, a file name that disagrees with its first batch.
#[derive(Debug, Clone, Error)]
#[error("corrupt data in {path:?} at byte {position}: {reason}")]
pub struct Corruption {
    /// The file holding the bad bytes.
    pub path: PathBuf,
    /// Byte position of the bad record batch or index entry.
    pub position: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A limit out of its allowed range.
    #[error("invalid {field}: must be {requirement}, got {value}")]
    Invalid {
        /// Name of the field in [`crate::LogConfig`].
        field: &'static str,
        /// What the field must be.
        requirement: &'static str,
        /// The rejected value.
        value: String,
    },
    /// Text that is not a flush policy.
    #[error("invalid flush policy {0:?}: expected always, interval:<ms> (ms >= 1) or never")]
    FlushPolicy(String),
}

/// Why [`crate::PartitionLog::open`] failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The configuration was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// Data that recovery must not repair (it is not a torn tail) is inconsistent.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// A segment file whose name is not a 20-digit base offset.
    #[error("unexpected segment file name {0:?}: expected <20-digit base offset>.log")]
    BadFileName(PathBuf),
}

/// Why [`crate::PartitionLog::append`] (or a flush or roll) failed. A failed append assigned no
/// offset that stays: the log end offset is where it was before the failed batch.
#[derive(Debug, Error)]
pub enum AppendError {
    /// The batch is not a valid record batch or breaks the configured limits.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The device is out of space; the log is unchanged and appends succeed again once space
    /// is freed.
    #[error("disk full: {0}")]
    DiskFull(IoFailure),
    /// Another file operation failed; the log is unchanged by the failed batch.
    #[error(transparent)]
    Io(IoFailure),
    /// The batch's last offset would not fit in a 64-bit offset.
    #[error(
        "offset overflow: base offset {base_offset} plus last offset delta {last_offset_delta}"
    )]
    OffsetOverflow {
        /// Offset the batch would have received.
        base_offset: i64,
        /// The batch's last offset delta.
        last_offset_delta: i32,
    },
}

impl From<IoFailure> for AppendError {
    fn from(failure: IoFailure) -> Self {
        if failure.is_disk_full() {
            AppendError::DiskFull(failure)
        } else {
            AppendError::Io(failure)
        }
    }
}

/// Why [`crate::PartitionLog::read`] or [`crate::PartitionLog::offset_for_timestamp`] failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The offset is below the log start or above the log end.
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// First offset still in the log.
        log_start_offset: i64,
        /// Next offset the log will assign.
        log_end_offset: i64,
    },
    /// A segment holds bytes that fail their checks; nothing was deleted or repaired.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] IoFailure),
}

/// Why [`crate::PartitionLog::enforce_retention`] failed.
#[derive(Debug, Error)]
pub enum RetentionError {
    /// A segment's time index could not be read to learn its age.
    #[error("reading a segment's age: {0}")]
    Read(#[from] ReadError),
    /// Removing a segment's files failed; the segment is already out of the log.
    #[error(transparent)]
    Io(#[from] IoFailure),
}

/// Why [`crate::PartitionLog::close`] or [`crate::PartitionLog::delete`] failed.
#[derive(Debug, Error)]
pub enum CloseError {
    /// Writing out or syncing buffered batches failed.
    #[error("flushing before close: {0}")]
    Flush(#[from] AppendError),
    /// Closing or removing a file failed.
    #[error(transparent)]
    Io(#[from] IoFailure),
}
