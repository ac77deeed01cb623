//! Error codes: the `u16` every response carries to say whether, and why, an operation failed.
//!
//! This module owns the numbering. Invariants: a number once assigned never changes meaning; every
//! `u16` decodes (numbers this build does not know become [`ErrorCode::Unknown`], never a panic),
//! and encoding a decoded code gives back the same number.

/// Declares [`ErrorCode`] and its table from one list, so the number, name, retriability and
/// description of a code cannot drift apart.
macro_rules! error_codes {
    ($(
        $(#[$attr:meta])*
        $variant:ident = $value:literal, $name:literal, retriable: $retriable:literal, $description:literal;
    )*) => {
        /// A typed error code, `u16` on the wire; `None` (0) means success.
        ///
        /// Numbers are grouped so that related codes can be added later without renumbering:
        /// 0–9 request and protocol, 10–19 topics and offsets, 20–29 broker and storage state,
        /// 30–39 consumer groups, 40–49 idempotent producers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(
                $(#[$attr])*
                #[doc = $description]
                $variant,
            )*
            /// A code this build does not know (sent by a newer peer); never retriable.
            Unknown(u16),
        }

        impl ErrorCode {
            /// Every named code, in numeric order (without [`ErrorCode::Unknown`]).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// Decodes a wire value; numbers without a name become [`ErrorCode::Unknown`].
            pub const fn from_u16(value: u16) -> ErrorCode {
                match value {
                    $($value => ErrorCode::$variant,)*
                    other => ErrorCode::Unknown(other),
                }
            }

            /// The wire value of this code.
            pub const fn to_u16(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $value,)*
                    ErrorCode::Unknown(value) => value,
                }
            }

            /// The code's stable snake_case name, as logs and `docs/PROTOCOL.md` spell it.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                    ErrorCode::Unknown(_) => "unknown_error_code",
                }
            }

            /// Whether sending the same request again (after a backoff, and for `not_owner` or
            /// `unknown_topic` after refreshing metadata) may succeed.
            pub const fn is_retriable(self) -> bool {
                match self {
                    $(ErrorCode::$variant => $retriable,)*
                    ErrorCode::Unknown(_) => false,
                }
            }

            /// One sentence saying what the code means.
            pub const fn description(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $description,)*
                    ErrorCode::Unknown(_) => "An error code this build does not know.",
                }
            }
        }
    };
}

error_codes! {
    None = 0, "none", retriable: false,
        "Success: no error.";
    UnknownServerError = 1, "unknown_server_error", retriable: false,
        "The broker failed in a way no other code describes; the message says how.";
    CorruptMessage = 2, "corrupt_message", retriable: true,
        "A record batch failed its CRC-32C check or its length does not match its bytes (possibly corrupted in transit).";
    InvalidBatch = 3, "invalid_batch", retriable: false,
        "A record batch is well-formed bytes but not acceptable (bad magic, bad header fields, offsets out of order).";
    MessageTooLarge = 4, "message_too_large", retriable: false,
        "A batch or request exceeds a configured size limit.";
    InvalidRequest = 5, "invalid_request", retriable: false,
        "The request could not be decoded or breaks the protocol; the message names the field.";
    UnsupportedVersion = 6, "unsupported_version", retriable: false,
        "The broker does not support the requested api version; ApiVersions lists the supported range.";
    UnknownApiKey = 7, "unknown_api_key", retriable: false,
        "The broker does not know the requested api key.";
    UnknownTopic = 10, "unknown_topic", retriable: true,
        "No topic has this name or id (it may be being created: refresh metadata and retry).";
    UnknownPartition = 11, "unknown_partition", retriable: true,
        "The topic exists but has no such partition.";
    TopicAlreadyExists = 12, "topic_already_exists", retriable: false,
        "A topic with this name already exists.";
    InvalidTopicName = 13, "invalid_topic_name", retriable: false,
        "The topic name is not 1 to 249 characters of [a-zA-Z0-9._-], or is \".\" or \"..\".";
    InvalidConfig = 14, "invalid_config", retriable: false,
        "A topic configuration value or the partition count is out of range.";
    OffsetOutOfRange = 15, "offset_out_of_range", retriable: false,
        "The requested offset is before the log start or after the log end.";
    OffsetMetadataTooLarge = 16, "offset_metadata_too_large", retriable: false,
        "The metadata string of an offset commit exceeds the broker's limit.";
    StorageError = 20, "storage_error", retriable: true,
        "The partition's storage failed to read or write; the message says what failed.";
    DiskFull = 21, "disk_full", retriable: true,
        "The partition's disk has no space left (retention or an operator may free some).";
    NotOwner = 22, "not_owner", retriable: true,
        "The shard or broker addressed does not own the partition (internal; refresh metadata).";
    RequestTimedOut = 23, "request_timed_out", retriable: true,
        "The operation did not complete within the request's timeout; it may still complete.";
    Throttled = 24, "throttled", retriable: true,
        "The client is over its quota; wait out the response's throttle time, then retry.";
    Overloaded = 25, "overloaded", retriable: true,
        "The broker is shedding load for the request's priority class; back off and retry.";
    BrokerShuttingDown = 26, "broker_shutting_down", retriable: true,
        "The broker is shutting down and accepts no new work; retry on another connection.";
    UnknownGroup = 30, "unknown_group", retriable: false,
        "No group has this id (it has neither members nor committed offsets).";
    IllegalGeneration = 31, "illegal_generation", retriable: false,
        "The generation is not the group's current one: the member was fenced; rejoin with its id.";
    UnknownMemberId = 32, "unknown_member_id", retriable: false,
        "The member id is not in the group (removed after its session timeout); rejoin with an empty id.";
    RebalanceInProgress = 33, "rebalance_in_progress", retriable: false,
        "The group is rebalancing: revoke the partitions (after committing) and rejoin.";
    InconsistentGroupProtocol = 34, "inconsistent_group_protocol", retriable: false,
        "The member shares no assignment strategy with the group (or names none the broker knows).";
    InvalidSessionTimeout = 35, "invalid_session_timeout", retriable: false,
        "The session timeout is outside the broker's configured minimum and maximum.";
    GroupIdNotFound = 36, "group_id_not_found", retriable: false,
        "DescribeGroups or DeleteGroups names a group the broker does not know.";
    GroupMaxSizeReached = 37, "group_max_size_reached", retriable: false,
        "The group already has the broker's maximum number of members.";
    GroupsMaxReached = 38, "groups_max_reached", retriable: false,
        "The coordinating shard already holds its configured maximum number of groups.";
    NonEmptyGroup = 39, "non_empty_group", retriable: false,
        "DeleteGroups names a group that still has members; only an empty group may be deleted.";
    DuplicateSequence = 40, "duplicate_sequence", retriable: false,
        "Reserved: a retried duplicate batch is answered with success and its original offset instead.";
    OutOfOrderSequence = 41, "out_of_order_sequence", retriable: false,
        "The batch's sequence is not the producer's next one for the partition (a gap or an overlap); nothing was stored.";
    InvalidProducerEpoch = 42, "invalid_producer_epoch", retriable: false,
        "The producer epoch is older than the partition's (a newer instance of the producer fenced this one).";
    UnknownProducerId = 43, "unknown_producer_id", retriable: false,
        "The producer id was never handed out by this broker (InitProducerId with an id it did not issue).";
}

impl ErrorCode {
    /// Whether this code means success.
    pub const fn is_none(self) -> bool {
        matches!(self, ErrorCode::None)
    }
}

/// The default is `none`, so response structs can be built with `..Default::default()`.
impl Default for ErrorCode {
    fn default() -> Self {
        ErrorCode::None
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorCode::Unknown(value) => write!(formatter, "unknown_error_code({value})"),
            known => formatter.write_str(known.name()),
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(value: u16) -> Self {
        ErrorCode::from_u16(value)
    }
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> Self {
        code.to_u16()
    }
}
