//! Topic names and topic configuration as the wire carries them.
//!
//! This module owns the topic-name rule (shared by broker, client and tools) and the encoding of
//! [`TopicConfig`]. Invariant: the decoders accept any UTF-8 name, so that the broker can answer
//! an invalid one with `invalid_topic_name` for that topic instead of rejecting the whole request;
//! [`validate_topic_name`] is where the rule is enforced.

use super::codec::{DecodeError, DecodeErrorKind, EncodeError, Reader, Writer};
use super::error_code::ErrorCode;

/// A topic's numeric id, which addresses it on the data path.
pub type TopicId = u32;

/// The longest topic name, in characters (all of them ASCII, so also in bytes).
pub const TOPIC_NAME_CHARS_MAX: usize = 249;

/// Why a topic name is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// The name is empty.
    #[error("topic name is empty")]
    Empty,
    /// The name is longer than [`TOPIC_NAME_CHARS_MAX`].
    #[error("topic name has {chars} characters, more than the limit of {TOPIC_NAME_CHARS_MAX}")]
    TooLong {
        /// The name's length in characters.
        chars: usize,
    },
    /// The name holds a character outside `[a-zA-Z0-9._-]`.
    #[error("topic name has {character:?} at character {index}; only [a-zA-Z0-9._-] are allowed")]
    InvalidCharacter {
        /// The first offending character.
        character: char,
        /// Its index, in characters.
        index: usize,
    },
    /// The name is `.` or `..`, which would be confused with directory entries.
    #[error("topic name {0:?} is reserved")]
    Reserved(&'static str),
}

impl TopicNameError {
    /// The error code a broker answers with for this name.
    pub const fn error_code(&self) -> ErrorCode {
        ErrorCode::InvalidTopicName
    }
}

/// Checks a topic name: 1 to [`TOPIC_NAME_CHARS_MAX`] characters of `[a-zA-Z0-9._-]`, and
/// neither `.` nor `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    for (index, character) in name.chars().enumerate() {
        let allowed = character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-');
        if !allowed {
            return Err(TopicNameError::InvalidCharacter { character, index });
        }
    }
    // Every character is ASCII here, so the byte length is the character count.
    if name.len() > TOPIC_NAME_CHARS_MAX {
        return Err(TopicNameError::TooLong { chars: name.len() });
    }
    match name {
        "." => Err(TopicNameError::Reserved(".")),
        ".." => Err(TopicNameError::Reserved("..")),
        _ => Ok(()),
    }
}

/// When appended data is made durable, per topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FlushPolicy {
    /// fdatasync before acknowledging (concurrent appends on a shard share one sync).
    #[default]
    Always,
    /// fdatasync at least every `interval_ms` milliseconds; acknowledgement waits for it.
    Interval {
        /// The longest time between syncs.
        interval_ms: u32,
    },
    /// Never sync explicitly; the operating system decides (durability from replication).
    Never,
}

impl FlushPolicy {
    const TAG_ALWAYS: u8 = 0;
    const TAG_INTERVAL: u8 = 1;
    const TAG_NEVER: u8 = 2;
}

/// A topic's configuration, as CreateTopic sends it and Metadata/DescribeTopic return it.
///
/// Wire layout: `flush` (u8 tag: 0 always, 1 interval followed by `interval_ms` u32, 2 never),
/// `retention_bytes` (optional u64), `retention_ms` (optional u64), `segment_bytes` (u64),
/// `segment_ms` (optional u64). The ranges the broker accepts are its own configuration; this
/// type only carries the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopicConfig {
    /// When appends are made durable.
    pub flush: FlushPolicy,
    /// Delete the oldest segments once a partition holds more than this; `None` = no byte limit.
    pub retention_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this; `None` = no time limit.
    pub retention_ms: Option<u64>,
    /// Roll a new segment once the active one reaches this size.
    pub segment_bytes: u64,
    /// Roll a new segment once the active one is this old; `None` = only by size.
    pub segment_ms: Option<u64>,
}

impl TopicConfig {
    pub(crate) fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self.flush {
            FlushPolicy::Always => writer.u8(FlushPolicy::TAG_ALWAYS),
            FlushPolicy::Interval { interval_ms } => {
                writer.u8(FlushPolicy::TAG_INTERVAL);
                writer.u32(interval_ms);
            }
            FlushPolicy::Never => writer.u8(FlushPolicy::TAG_NEVER),
        }
        writer.option_u64(self.retention_bytes);
        writer.option_u64(self.retention_ms);
        writer.u64(self.segment_bytes);
        writer.option_u64(self.segment_ms);
        Ok(())
    }

    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flush = match reader.u8("topic_config.flush")? {
            FlushPolicy::TAG_ALWAYS => FlushPolicy::Always,
            FlushPolicy::TAG_INTERVAL => FlushPolicy::Interval {
                interval_ms: reader.u32("topic_config.flush.interval_ms")?,
            },
            FlushPolicy::TAG_NEVER => FlushPolicy::Never,
            tag => {
                return Err(DecodeError::new(
                    "topic_config.flush",
                    DecodeErrorKind::InvalidTag {
                        tag: u16::from(tag),
                    },
                ))
            }
        };
        Ok(TopicConfig {
            flush,
            retention_bytes: reader.option_u64("topic_config.retention_bytes")?,
            retention_ms: reader.option_u64("topic_config.retention_ms")?,
            segment_bytes: reader.u64("topic_config.segment_bytes")?,
            segment_ms: reader.option_u64("topic_config.segment_ms")?,
        })
    }

    /// An optional configuration: presence tag, then the configuration.
    pub(crate) fn write_option(
        config: &Option<TopicConfig>,
        writer: &mut Writer<'_>,
    ) -> Result<(), EncodeError> {
        match config {
            Some(config) => {
                writer.u8(1);
                config.write(writer)
            }
            None => {
                writer.u8(0);
                Ok(())
            }
        }
    }

    /// Reads what [`TopicConfig::write_option`] writes.
    pub(crate) fn read_option(
        reader: &mut Reader<'_>,
        field: &'static str,
    ) -> Result<Option<TopicConfig>, DecodeError> {
        if reader.presence(field)? {
            Ok(Some(TopicConfig::read(reader)?))
        } else {
            Ok(None)
        }
    }
}
