//! Configuration of one partition log: segment size and age, retention, index density,
//! durability policy, memory bounds.
//!
//! This module owns [`LogConfig`] and [`FlushPolicy`] and their validation. It holds no state and
//! does no I/O, so a crash leaves nothing behind from here. Invariant: a [`LogConfig`] that passed
//! [`LogConfig::validate`] describes limits that the on-disk formats can represent (segment
//! positions fit the index's `u32` fields, a batch fits a segment).

use std::{fmt, str::FromStr};

use weir_proto::batch::BatchLimits;

use crate::error::ConfigError;

/// Largest segment the sparse index can address: its positions are `u32`.
pub const SEGMENT_BYTES_MAX_LIMIT: u64 = u32::MAX as u64;

/// When appended batches are made durable (fdatasync) before the append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    /// Acknowledge only after an fdatasync covering the batch; concurrent appends share one
    /// fdatasync (group commit) and their writes are pipelined.
    #[default]
    Always,
    /// Acknowledge once the batch is in the log's write buffer; the owner calls
    /// [`crate::PartitionLog::flush_if_due`] on a tick (or runs [`crate::run_interval_flusher`])
    /// and the log fdatasyncs at most every `interval_ms`.
    Interval {
        /// Time between two fdatasyncs of buffered data, in milliseconds.
        interval_ms: u64,
    },
    /// Acknowledge once the batch is in the write buffer; data reaches the file when the buffer
    /// fills and is fdatasynced only on an explicit flush, roll or close.
    Never,
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushPolicy::Always => f.write_str("always"),
            FlushPolicy::Interval { interval_ms } => write!(f, "interval:{interval_ms}"),
            FlushPolicy::Never => f.write_str("never"),
        }
    }
}

impl FromStr for FlushPolicy {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "always" => Ok(FlushPolicy::Always),
            "never" => Ok(FlushPolicy::Never),
            other => {
                let interval_ms = other
                    .strip_prefix("interval:")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| ConfigError::FlushPolicy(text.to_string()))?;
                Ok(FlushPolicy::Interval { interval_ms })
            }
        }
    }
}

/// Limits and policies of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is rolled before an append would make it larger than this, in bytes.
    /// A single batch larger than the limit still gets a segment of its own.
    pub segment_bytes_max: u64,
    /// An active segment that has held data this long by the owner's clock is rolled by
    /// [`crate::PartitionLog::roll_if_due`], in milliseconds.
    pub segment_age_ms_max: Option<u64>,
    /// Oldest whole segments are deleted while the log is larger than this, in bytes.
    pub retention_bytes_max: Option<u64>,
    /// Segments whose newest timestamp is older than this are deleted, in milliseconds.
    pub retention_age_ms_max: Option<u64>,
    /// One sparse index entry per this many bytes of log, at most.
    pub index_interval_bytes: u32,
    /// Durability policy.
    pub flush: FlushPolicy,
    /// Size and record-count limits every appended batch must respect.
    pub batch_limits: BatchLimits,
    /// Bytes of recent batches kept in memory to serve tail reads without disk I/O.
    pub tail_cache_bytes_max: usize,
    /// Bytes of appended batches held in memory until they are written (under
    /// [`FlushPolicy::Always`]: until they are durable); a larger backlog makes appends wait for
    /// a sync point. It bounds how much one fdatasync can cover, so it should hold every append
    /// a partition has in flight.
    pub write_buffer_bytes_max: usize,
    /// Log writes (each a chunk of whole blocks, or the final partial block of a sync point)
    /// the log keeps in flight at once.
    pub writes_in_flight_max: usize,
    /// Largest log write, in bytes (rounded down to the file's block size, at least one block).
    pub write_chunk_bytes_max: usize,
    /// Minimum number of bytes one disk read asks for.
    pub read_chunk_bytes_min: u32,
    /// Bytes per read when recovery or an index rebuild scans a segment.
    pub scan_chunk_bytes: u32,
    /// Preallocate (fallocate) segment and index files to their full size when they are created.
    pub preallocate: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 1 << 30,
            segment_age_ms_max: None,
            retention_bytes_max: None,
            retention_age_ms_max: None,
            index_interval_bytes: 4096,
            flush: FlushPolicy::Always,
            batch_limits: BatchLimits::default(),
            tail_cache_bytes_max: 8 << 20,
            write_buffer_bytes_max: 16 << 20,
            writes_in_flight_max: 4,
            write_chunk_bytes_max: 1 << 20,
            read_chunk_bytes_min: 64 << 10,
            scan_chunk_bytes: 1 << 20,
            preallocate: true,
        }
    }
}

impl LogConfig {
    /// Checks that every limit is usable and representable in the on-disk formats.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, requirement: &'static str, value: String| {
            Err(ConfigError::Invalid {
                field,
                requirement,
                value,
            })
        };
        if self.segment_bytes_max == 0 || self.segment_bytes_max > SEGMENT_BYTES_MAX_LIMIT {
            return invalid(
                "segment_bytes_max",
                "between 1 and 4294967295",
                self.segment_bytes_max.to_string(),
            );
        }
        if u64::from(self.batch_limits.batch_bytes_max) > self.segment_bytes_max {
            return invalid(
                "batch_limits.batch_bytes_max",
                "at most segment_bytes_max",
                self.batch_limits.batch_bytes_max.to_string(),
            );
        }
        if self.index_interval_bytes == 0 {
            return invalid("index_interval_bytes", "at least 1", "0".to_string());
        }
        if self.segment_age_ms_max == Some(0) {
            return invalid("segment_age_ms_max", "at least 1 when set", "0".to_string());
        }
        if let FlushPolicy::Interval { interval_ms: 0 } = self.flush {
            return invalid("flush", "interval:<ms> with ms at least 1", "0".to_string());
        }
        if self.write_buffer_bytes_max == 0 {
            return invalid("write_buffer_bytes_max", "at least 1", "0".to_string());
        }
        if self.writes_in_flight_max == 0 {
            return invalid("writes_in_flight_max", "at least 1", "0".to_string());
        }
        if self.write_chunk_bytes_max == 0 {
            return invalid("write_chunk_bytes_max", "at least 1", "0".to_string());
        }
        if self.read_chunk_bytes_min == 0 {
            return invalid("read_chunk_bytes_min", "at least 1", "0".to_string());
        }
        if self.scan_chunk_bytes == 0 {
            return invalid("scan_chunk_bytes", "at least 1", "0".to_string());
        }
        Ok(())
    }

    /// Largest number of entries the sparse index of one segment can hold.
    pub(crate) fn index_entries_max(&self) -> u64 {
        self.segment_bytes_max / u64::from(self.index_interval_bytes) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_policy_round_trips_through_text() {
        for (text, policy) in [
            ("always", FlushPolicy::Always),
            ("never", FlushPolicy::Never),
            ("interval:250", FlushPolicy::Interval { interval_ms: 250 }),
        ] {
            assert_eq!(text.parse::<FlushPolicy>().unwrap(), policy);
            assert_eq!(policy.to_string(), text);
        }
    }

    #[test]
    fn flush_policy_rejects_bad_text() {
        for text in [
            "",
            "sometimes",
            "interval:",
            "interval:0",
            "interval:-5",
            "interval:x",
        ] {
            assert!(matches!(
                text.parse::<FlushPolicy>(),
                Err(ConfigError::FlushPolicy(_))
            ));
        }
    }

    #[test]
    fn default_config_is_valid() {
        LogConfig::default().validate().unwrap();
    }

    #[test]
    fn validate_rejects_unrepresentable_limits() {
        let cases: Vec<(&str, LogConfig)> = vec![
            (
                "segment_bytes_max",
                LogConfig {
                    segment_bytes_max: 0,
                    ..LogConfig::default()
                },
            ),
            (
                "segment_bytes_max",
                LogConfig {
                    segment_bytes_max: 1 << 33,
                    ..LogConfig::default()
                },
            ),
            (
                "batch_limits.batch_bytes_max",
                LogConfig {
                    segment_bytes_max: 1024,
                    ..LogConfig::default()
                },
            ),
            (
                "index_interval_bytes",
                LogConfig {
                    index_interval_bytes: 0,
                    ..LogConfig::default()
                },
            ),
            (
                "write_buffer_bytes_max",
                LogConfig {
                    write_buffer_bytes_max: 0,
                    ..LogConfig::default()
                },
            ),
            (
                "writes_in_flight_max",
                LogConfig {
                    writes_in_flight_max: 0,
                    ..LogConfig::default()
                },
            ),
            (
                "write_chunk_bytes_max",
                LogConfig {
                    write_chunk_bytes_max: 0,
                    ..LogConfig::default()
                },
            ),
        ];
        for (field, config) in cases {
            match config.validate() {
                Err(ConfigError::Invalid { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field}: expected an error, got {other:?}"),
            }
        }
    }
}
