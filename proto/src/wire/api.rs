//! Api keys, their supported version ranges, and the request priority classes.
//!
//! This module owns the numbering of the apis. Invariants: a key once assigned never changes
//! meaning; the gaps between groups are kept for the apis named in `docs/PROTOCOL.md` (cluster,
//! InitProducerId, consumer-group membership), so adding one never renumbers another.

/// An inclusive range of api versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// The oldest supported version.
    pub min: u16,
    /// The newest supported version.
    pub max: u16,
}

impl VersionRange {
    /// Whether `version` lies within the range.
    pub const fn contains(self, version: u16) -> bool {
        self.min <= version && version <= self.max
    }

    /// The newest version both ranges contain, if they overlap: what a client should send.
    pub fn negotiate(self, other: VersionRange) -> Option<u16> {
        let min = self.min.max(other.min);
        let max = self.max.min(other.max);
        (min <= max).then_some(max)
    }
}

/// Declares [`ApiKey`] and its table from one list.
macro_rules! api_keys {
    ($($variant:ident = $value:literal, $name:literal, versions: $min:literal..=$max:literal, $doc:literal;)*) => {
        /// Which api a frame is for, `u16` on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ApiKey {
            $(
                #[doc = $doc]
                $variant,
            )*
        }

        impl ApiKey {
            /// Every api this build implements, in numeric order.
            pub const ALL: &'static [ApiKey] = &[$(ApiKey::$variant,)*];

            /// Decodes a wire value; `None` for keys this build does not implement.
            pub const fn from_u16(value: u16) -> Option<ApiKey> {
                match value {
                    $($value => Some(ApiKey::$variant),)*
                    _ => None,
                }
            }

            /// The wire value of this key.
            pub const fn to_u16(self) -> u16 {
                match self {
                    $(ApiKey::$variant => $value,)*
                }
            }

            /// The api's name as `docs/PROTOCOL.md` spells it.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ApiKey::$variant => $name,)*
                }
            }

            /// The versions of this api that this build encodes and decodes.
            pub const fn versions(self) -> VersionRange {
                match self {
                    $(ApiKey::$variant => VersionRange { min: $min, max: $max },)*
                }
            }
        }
    };
}

api_keys! {
    ApiVersions = 0, "ApiVersions", versions: 0..=0,
        "Handshake: declares the client id, lists the supported versions of every api.";
    Metadata = 1, "Metadata", versions: 0..=0,
        "Shards and their addresses, topics and the owner shard of each partition.";
    CreateTopic = 10, "CreateTopic", versions: 0..=0, "Creates a topic.";
    DeleteTopic = 11, "DeleteTopic", versions: 0..=0, "Deletes a topic and its data.";
    ListTopics = 12, "ListTopics", versions: 0..=0, "Lists topic names and ids.";
    DescribeTopic = 13, "DescribeTopic", versions: 0..=0,
        "A topic's configuration, partitions and their log offsets.";
    Produce = 20, "Produce", versions: 0..=0, "Appends record batches to partitions.";
    Fetch = 21, "Fetch", versions: 0..=0, "Reads record batches from partitions.";
    ListOffsets = 22, "ListOffsets", versions: 0..=0,
        "Finds the earliest, the latest, or the first offset at or after a timestamp.";
    InitProducerId = 23, "InitProducerId", versions: 0..=0,
        "Hands an idempotent producer a new producer id, or a new epoch of its id.";
    OffsetCommit = 30, "OffsetCommit", versions: 0..=0, "Stores a group's consumed offsets.";
    OffsetFetch = 31, "OffsetFetch", versions: 0..=0, "Reads a group's committed offsets.";
    JoinGroup = 32, "JoinGroup", versions: 0..=0,
        "Joins a consumer group; answered when the group's join phase completes.";
    SyncGroup = 33, "SyncGroup", versions: 0..=0, "A member's assignment for a generation.";
    Heartbeat = 34, "Heartbeat", versions: 0..=0, "Keeps a member alive; says when to rejoin.";
    LeaveGroup = 35, "LeaveGroup", versions: 0..=0, "Leaves a consumer group.";
    ListGroups = 36, "ListGroups", versions: 0..=0, "Lists the consumer groups.";
    DescribeGroups = 37, "DescribeGroups", versions: 0..=0,
        "Groups' members, assignments, committed offsets and lag.";
    DeleteGroups = 38, "DeleteGroups", versions: 0..=0,
        "Deletes empty consumer groups and their committed offsets.";
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// The priority class a request declares in the low two bits of its header flags, used by the
/// broker to shed load: under overload `Telemetry` is rejected first, then `Normal`; `Critical`
/// last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Priority {
    /// Ordinary traffic (flag bits `00`, so a zero flags field means normal).
    #[default]
    Normal,
    /// Traffic whose latency must be kept under overload (flag bits `01`).
    Critical,
    /// Traffic that may be dropped first, such as metrics (flag bits `10`).
    Telemetry,
}

impl Priority {
    /// The mask of the flag bits that hold the priority class.
    pub const FLAGS_MASK: u16 = 0b11;

    /// Decodes the two priority bits; `None` for the reserved value `11`.
    pub const fn from_bits(bits: u16) -> Option<Priority> {
        match bits & Self::FLAGS_MASK {
            0 => Some(Priority::Normal),
            1 => Some(Priority::Critical),
            2 => Some(Priority::Telemetry),
            _ => None,
        }
    }

    /// The two flag bits of this class.
    pub const fn to_bits(self) -> u16 {
        match self {
            Priority::Normal => 0,
            Priority::Critical => 1,
            Priority::Telemetry => 2,
        }
    }
}
