//! The Weir broker: one glommio shard per core, each owning a disjoint set of partitions.
//!
//! Module map: [`config`] resolves flags and the config file; [`hash`] places partitions on
//! shards. Invariant of the whole crate: a partition's log is touched only by the shard that
//! [`hash::shard_for_partition`] names; other shards reach it by message.

pub mod catalog;
pub mod config;
pub mod conn;
pub mod control;
pub mod handlers;
pub mod hash;
pub mod http;
pub mod join;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod offsets;
pub mod owner;
pub mod partition;
pub mod peers;
pub mod router;
pub mod runtime;
pub mod shard;
