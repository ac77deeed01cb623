//! Weir's partition log: the durable, append-only store of one partition's record batches.
//!
//! # Bird's-eye view
//!
//! A [`PartitionLog`] owns one directory and lives on one glommio executor (the shard that owns
//! the partition); it is `!Send` and needs no locks. Producers' batches (Kafka RecordBatch v2,
//! from [`weir_proto::batch`]) come in through [`PartitionLog::append`], which checks the
//! header and CRC, assigns offsets by rewriting `baseOffset` (outside the CRC), and returns once
//! the batch is durable under the [`FlushPolicy`]. Readers call [`PartitionLog::read`] and get
//! whole stored batches as `Bytes`, from memory at the tail or from the segment files. Nothing
//! here knows about sockets or the broker; time comes in as arguments (`now_ms`), so age-based
//! rolling and retention are driven, and tested, by the caller's clock.
//!
//! Code map: [`config`] (limits and policies), [`error`] (typed errors), [`io`] (the file I/O
//! trait, the glommio O_DIRECT backend with the polled-I/O probe workaround, and a
//! fault-injecting wrapper), `layout` (file names and index encodings), `segment` and `scan`
//! (indexes and segment scans), `write` (admission, the write pipeline, group commit, roll,
//! seal), `read` (reads, timestamp lookup, lazy index loading), `recovery` (open),
//! `retention`, `tail_cache`.
//!
//! # On-disk layout
//!
//! A partition directory holds segments. A segment is three files named by the offset of its
//! first batch, zero-padded to 20 digits:
//!
//! ```text
//! 00000000000000000000.log        record batches, back to back, exactly as appended
//! 00000000000000000000.index      sparse offset index
//! 00000000000000000000.timeindex  time index
//! 00000000000000004711.log        next segment: its first batch has baseOffset 4711
//! ...
//! ```
//!
//! `.log`: concatenated RecordBatch v2 batches (61-byte header, records; big-endian; CRC-32C
//! over `attributes`..end). Batch `n+1` starts at the byte after batch `n` and its `baseOffset`
//! is batch `n`'s last offset + 1. The active segment is preallocated to `segment_bytes_max`
//! (zeros after the data); a sealed segment is truncated to its data.
//!
//! `.index`: 8-byte entries, one per `index_interval_bytes` of log at most:
//!
//! ```text
//! 0        4        8
//! +--------+--------+
//! | relOff | pos    |   relOff = batch baseOffset - segment base (u32 BE)
//! +--------+--------+   pos    = byte position of that batch in the .log (u32 BE)
//! ```
//!
//! Entries strictly increase in both fields; offset 0 at position 0 is implied and not stored.
//! A zero entry ends the written part of a preallocated file.
//!
//! `.timeindex`: 12-byte entries, one per `.index` entry, with the same relative offsets:
//!
//! ```text
//! 0                 8        12
//! +-----------------+--------+
//! | maxTimestamp    | relOff |   maxTimestamp = largest batch maxTimestamp before relOff
//! +-----------------+--------+                  (i64 BE, a running maximum)
//! ```
//!
//! A sealed segment's time index ends with one more entry: the segment's largest timestamp and
//! its end (next offset - base). That entry gives retention a segment's age and its end offset
//! without reading the log.
//!
//! # Durability and the write path
//!
//! Files are opened with O_DIRECT through io_uring (glommio `DmaFile`), so writes are whole
//! aligned blocks; a block is the larger of the device's O_DIRECT alignment and the file
//! system's block size, because ext4 serialises (and hands to a kernel worker) any direct write
//! that covers part of one of its blocks in a preallocated extent. Appended batches wait in a bounded write buffer, and their whole blocks are
//! written at once as a pipeline: up to `writes_in_flight_max` writes of at most
//! `write_chunk_bytes_max` each are in flight while appenders keep filling the buffer and while
//! an fdatasync runs. The partial last block of the active segment stays in memory; it is
//! written only by a sync point and rewritten (byte-identically) in front of the bytes that
//! complete it, and never while another running write covers it, so a torn or reordered
//! rewrite cannot damage bytes that were already durable. Under [`FlushPolicy::Always`] an
//! append returns after an fdatasync that covers it: a sync point writes the rest of the
//! buffer, waits for every write up to its end, fdatasyncs, and acknowledges every append
//! ending at or below the contiguous completed position; concurrent appends share it (group
//! commit: whoever arrives while one is in flight is covered by the next one; the task that
//! leads a sync point yields once first so that appenders already runnable join it). Sync
//! points, rolls and segment creation take a writer role that is handed over first come, first
//! served, so none of them starves under load. A failed write or fdatasync fails every append
//! not yet acknowledged and returns the segment to its last durable state. Under `Interval` and
//! `Never` an append returns once the batch is in the write buffer; its blocks are written
//! the same way and it leaves the buffer when they completed (an append that finds the buffer
//! full waits for running writes to free room, and writes the partial last block only when no
//! running write can), and everything is synced by
//! [`PartitionLog::flush`], [`PartitionLog::flush_if_due`] (the owner's tick, or
//! [`run_interval_flusher`]) and on roll and close; buffered batches are already acknowledged,
//! so a failed write keeps them and the next one retries. The log runs no task of its own
//! besides the detached I/O of its writes. Reads never see stale disk bytes: anything not yet
//! written is served from memory. Under `Always`, readers see only durable batches
//! ([`PartitionLog::stable_end_offset`]).
//!
//! Memory: the tail cache (`tail_cache_bytes_max`), the write buffer
//! (`write_buffer_bytes_max`; under `Always` a batch stays in it until it is durable), the
//! aligned copies of the writes in flight (`writes_in_flight_max` × `write_chunk_bytes_max`, plus
//! one block per sync point), the active segment's index, and the index of every sealed
//! segment that has been read since open (16 bytes per index entry, one entry per
//! `index_interval_bytes`: about 0.4% of the segment bytes at the default 4 KiB).
//!
//! # Fault model: what a crash leaves and what recovery does
//!
//! Assumptions: a completed fdatasync makes the written blocks of that file and its size
//! durable (the log acknowledges only bytes below the contiguous run of writes that completed
//! before the fdatasync was issued); a write may be torn at any sector boundary; writes in
//! flight at once may complete, and reach the medium, in any order (so two of them never
//! cover the same block); directory entries are durable after the directory is fsynced (done
//! when a segment is created).
//!
//! | left on disk after a crash | how [`PartitionLog::open`] treats it |
//! | --- | --- |
//! | a torn batch, or garbage/zeros, after the last complete batch of the last segment | truncated at the first batch whose length, CRC or offset fails; the file is preallocated again and synced |
//! | complete but unacknowledged batches at the tail (written, not yet synced), possibly with holes where writes still in flight at the crash did not land | kept up to the first hole or torn batch if they pass the checks: they were never acknowledged, so keeping them is allowed |
//! | batches of a failed write or fdatasync (some of their writes completed) past the log end | the next sync point zero-fills up to the furthest attempted write, so they cannot reappear; if the process dies before that, they are treated like any unacknowledged tail |
//! | index entries that point past the recovered end, or at a wrong batch | dropped; the scan starts at the last entry that points at its batch and rebuilds the rest |
//! | a missing or damaged index of the last segment | rebuilt by scanning the segment |
//! | a missing or damaged index of a sealed segment | rebuilt (and written back) on first read, from a full scan of that segment |
//! | a sealed segment whose bytes fail their checks | never repaired: reads return a [`Corruption`] error naming the file and position; nothing is deleted |
//! | a first batch whose offset disagrees with its file name | [`OpenError::Corrupt`]; nothing is changed |
//! | index files without a log file (crash during retention) | removed |
//! | a new empty segment file (crash during roll) | recovered as an empty active segment |
//! | the `.weir-dma-probe` file (crash while opening) | recreated and removed by the next open |
//!
//! Opening reads only the last segment (from its last index entry) plus a `stat` per sealed
//! segment, so opening time does not grow with the total log size.
//!
//! # Errors and limits
//!
//! Every operation has its own error enum ([`OpenError`], [`AppendError`], [`ReadError`],
//! [`RetentionError`], [`CloseError`]) that names the file, position and cause. Disk full
//! (ENOSPC) is [`AppendError::DiskFull`]: the failed batch gets no offset, the log stays
//! consistent and readable, and appends succeed again once space is freed. Every limit is a
//! field of [`LogConfig`].
//!
//! # Running a log
//!
//! ```no_run
//! use bytes::Bytes;
//! use glommio::LocalExecutorBuilder;
//! use weir_proto::batch::BatchBuilder;
//! use weir_storage::{LogConfig, PartitionLog};
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! let handle = LocalExecutorBuilder::default()
//!     .spawn(|| async {
//!         let log = PartitionLog::open("/var/lib/weir/orders-0", LogConfig::default()).await?;
//!         let mut builder = BatchBuilder::new(1_700_000_000_000);
//!         builder.push(1_700_000_000_000, Some(b"key"), Some(b"value"), &[]);
//!         let appended = log.append(Bytes::from(builder.finish())).await?;
//!         let read = log.read(appended.base_offset, 1 << 20).await?;
//!         assert_eq!(read.batches.len(), 1);
//!         log.close().await?;
//!         Ok::<(), BoxError>(())
//!     })
//!     .map_err(|error| error.to_string())?;
//! // The outer error is the executor's (a panicked thread), the inner one the log's.
//! handle.join().map_err(|error| error.to_string())??;
//! # Ok::<(), BoxError>(())
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod io;
mod layout;
mod log;
mod notify;
mod read;
mod recovery;
mod retention;
mod scan;
mod segment;
mod tail_cache;
mod write;

pub use config::{FlushPolicy, LogConfig};
pub use error::{
    AppendError, CloseError, ConfigError, Corruption, IoFailure, IoOperation, OpenError, ReadError,
    RetentionError,
};
pub use layout::SegmentPaths;
pub use log::{AppendInfo, LogStats, PartitionLog, ReadBatches, RetentionReport};
pub use write::{run_interval_flusher, wall_clock_ms};
