//! Topic names and topic configuration as the wire carries them.
//!
//! This module owns the topic-name rule (shared by broker, client and tools) and the encodings of
//! a topic's configuration in its two forms: [`TopicConfigOverrides`], what a CreateTopic asks
//! for, where every setting may be left to the broker's default, and [`TopicConfig`], the
//! resolved settings a topic has, as Metadata and DescribeTopic report them. Invariants: the
//! decoders accept any UTF-8 name, so that the broker can answer an invalid one with
//! `invalid_topic_name` for that topic instead of rejecting the whole request
//! ([`validate_topic_name`] is where the rule is enforced); neither type checks ranges, which are
//! the broker's configuration.

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

    fn write(&self, writer: &mut Writer<'_>) {
        match *self {
            FlushPolicy::Always => writer.u8(FlushPolicy::TAG_ALWAYS),
            FlushPolicy::Interval { interval_ms } => {
                writer.u8(FlushPolicy::TAG_INTERVAL);
                writer.u32(interval_ms);
            }
            FlushPolicy::Never => writer.u8(FlushPolicy::TAG_NEVER),
        }
    }

    fn read(
        reader: &mut Reader<'_>,
        field: &'static str,
        interval_field: &'static str,
    ) -> Result<Self, DecodeError> {
        match reader.u8(field)? {
            FlushPolicy::TAG_ALWAYS => Ok(FlushPolicy::Always),
            FlushPolicy::TAG_INTERVAL => Ok(FlushPolicy::Interval {
                interval_ms: reader.u32(interval_field)?,
            }),
            FlushPolicy::TAG_NEVER => Ok(FlushPolicy::Never),
            tag => Err(DecodeError::new(
                field,
                DecodeErrorKind::InvalidTag {
                    tag: u16::from(tag),
                },
            )),
        }
    }
}

/// A limit a topic setting may have, or none: how a CreateTopic says "unlimited" explicitly,
/// overriding a limit the broker would otherwise apply.
///
/// Wire layout: `u8` tag, 0 = unlimited (nothing follows), 1 = a value (a `u64` follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// No limit.
    Unlimited,
    /// This limit, in the setting's unit. The broker refuses 0 with `invalid_config`: "no
    /// limit" is [`Limit::Unlimited`].
    Value(u64),
}

impl Limit {
    const TAG_UNLIMITED: u8 = 0;
    const TAG_VALUE: u8 = 1;

    /// The limit as the resolved [`TopicConfig`] carries it: `None` for no limit.
    pub const fn value(self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::Value(value) => Some(value),
        }
    }

    /// The limit of a resolved setting: `None` (no limit) is [`Limit::Unlimited`].
    pub const fn from_value(value: Option<u64>) -> Limit {
        match value {
            None => Limit::Unlimited,
            Some(value) => Limit::Value(value),
        }
    }

    fn write(&self, writer: &mut Writer<'_>) {
        match *self {
            Limit::Unlimited => writer.u8(Limit::TAG_UNLIMITED),
            Limit::Value(value) => {
                writer.u8(Limit::TAG_VALUE);
                writer.u64(value);
            }
        }
    }

    fn read(reader: &mut Reader<'_>, field: &'static str) -> Result<Self, DecodeError> {
        match reader.u8(field)? {
            Limit::TAG_UNLIMITED => Ok(Limit::Unlimited),
            Limit::TAG_VALUE => Ok(Limit::Value(reader.u64(field)?)),
            tag => Err(DecodeError::new(
                field,
                DecodeErrorKind::InvalidTag {
                    tag: u16::from(tag),
                },
            )),
        }
    }
}

impl From<u64> for Limit {
    /// A limit of `value`.
    fn from(value: u64) -> Self {
        Limit::Value(value)
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Unlimited => f.write_str("unlimited"),
            Limit::Value(value) => write!(f, "{value}"),
        }
    }
}

/// A topic's resolved configuration, as Metadata and DescribeTopic return it: every setting the
/// topic has, whether its creator chose it or the broker's default filled it in.
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
        self.flush.write(writer);
        writer.option_u64(self.retention_bytes);
        writer.option_u64(self.retention_ms);
        writer.u64(self.segment_bytes);
        writer.option_u64(self.segment_ms);
        Ok(())
    }

    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TopicConfig {
            flush: FlushPolicy::read(
                reader,
                "topic_config.flush",
                "topic_config.flush.interval_ms",
            )?,
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

/// The settings a CreateTopic asks for: each one is either given or left to the broker's default
/// (`None`), so a client need not know the broker's `--default-*` settings to use them.
///
/// Wire layout, every field an `option` (u8 tag 0 = absent: the broker's default; 1 = present,
/// the value follows): `flush` (option of the [`FlushPolicy`] encoding of [`TopicConfig`]),
/// `retention_bytes` (option of [`Limit`]), `retention_ms` (option of [`Limit`]),
/// `segment_bytes` (option of u64), `segment_ms` (option of [`Limit`]). The broker resolves the
/// overrides against its defaults into a [`TopicConfig`] and checks the ranges.
///
/// ```
/// use weir_proto::wire::{FlushPolicy, Limit, TopicConfigOverrides};
///
/// // Flush never; no size limit even if the broker has a default one; the rest as configured.
/// let overrides = TopicConfigOverrides {
///     flush: Some(FlushPolicy::Never),
///     retention_bytes: Some(Limit::Unlimited),
///     ..TopicConfigOverrides::default()
/// };
/// assert_eq!(overrides.segment_bytes, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TopicConfigOverrides {
    /// When appends are made durable; `None` = the broker's default.
    pub flush: Option<FlushPolicy>,
    /// Delete the oldest segments once a partition holds more than this many bytes; `None` =
    /// the broker's default.
    pub retention_bytes: Option<Limit>,
    /// Delete segments whose newest record is older than this many milliseconds; `None` = the
    /// broker's default.
    pub retention_ms: Option<Limit>,
    /// Roll a new segment once the active one holds this many bytes; `None` = the broker's
    /// default.
    pub segment_bytes: Option<u64>,
    /// Roll a new segment once the active one is this many milliseconds old (unlimited: roll by
    /// size only); `None` = the broker's default.
    pub segment_ms: Option<Limit>,
}

impl From<TopicConfig> for TopicConfigOverrides {
    /// Every setting given explicitly, as `config` has it: a topic created with these overrides
    /// has `config` whatever the broker's defaults are.
    fn from(config: TopicConfig) -> Self {
        TopicConfigOverrides {
            flush: Some(config.flush),
            retention_bytes: Some(Limit::from_value(config.retention_bytes)),
            retention_ms: Some(Limit::from_value(config.retention_ms)),
            segment_bytes: Some(config.segment_bytes),
            segment_ms: Some(Limit::from_value(config.segment_ms)),
        }
    }
}

impl TopicConfigOverrides {
    pub(crate) fn write(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        write_option(writer, &self.flush, FlushPolicy::write);
        write_option(writer, &self.retention_bytes, Limit::write);
        write_option(writer, &self.retention_ms, Limit::write);
        writer.option_u64(self.segment_bytes);
        write_option(writer, &self.segment_ms, Limit::write);
        Ok(())
    }

    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        const FLUSH: &str = "topic_config_overrides.flush";
        const RETENTION_BYTES: &str = "topic_config_overrides.retention_bytes";
        const RETENTION_MS: &str = "topic_config_overrides.retention_ms";
        const SEGMENT_MS: &str = "topic_config_overrides.segment_ms";
        Ok(TopicConfigOverrides {
            flush: if reader.presence(FLUSH)? {
                Some(FlushPolicy::read(
                    reader,
                    FLUSH,
                    "topic_config_overrides.flush.interval_ms",
                )?)
            } else {
                None
            },
            retention_bytes: read_option(reader, RETENTION_BYTES, Limit::read)?,
            retention_ms: read_option(reader, RETENTION_MS, Limit::read)?,
            segment_bytes: reader.option_u64("topic_config_overrides.segment_bytes")?,
            segment_ms: read_option(reader, SEGMENT_MS, Limit::read)?,
        })
    }
}

/// Writes an `option<T>`: the presence tag, then `value` if present.
fn write_option<T>(writer: &mut Writer<'_>, value: &Option<T>, write: fn(&T, &mut Writer<'_>)) {
    match value {
        Some(value) => {
            writer.u8(1);
            write(value, writer);
        }
        None => writer.u8(0),
    }
}

/// Reads what [`write_option`] writes; `field` names both the tag and the value.
fn read_option<T>(
    reader: &mut Reader<'_>,
    field: &'static str,
    read: fn(&mut Reader<'_>, &'static str) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if reader.presence(field)? {
        Ok(Some(read(reader, field)?))
    } else {
        Ok(None)
    }
}
