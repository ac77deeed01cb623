//! The Weir broker: one glommio shard per core, each owning a disjoint set of partitions.
//!
//! Module map, from the process down to a partition:
//! - [`runtime`]: the main thread: data-directory lock, catalog bootstrap, listeners, one pinned
//!   executor per shard, the ready file, signals and two-phase shutdown.
//! - [`config`]: flags, the TOML config file, defaults and validation.
//! - [`net`]: binding listeners (SO_REUSEPORT shared port, direct per-shard ports), the ready
//!   file, vectored socket writes. [`http`]: the `/metrics` responder.
//! - [`shard`]: one executor's state and life; [`peers`]: shard-to-shard request/reply over
//!   bounded glommio channels; [`router`]: splitting requests by owner and merging answers.
//! - [`conn`]: client connections (limits, backpressure, pipelining); [`handlers`]: every api;
//!   [`control`]: topic creation and deletion on shard 0; [`owner`]: what the owning shard does
//!   to its partitions; [`partition`]: a partition's log and directory;
//!   [`producer_state`]: idempotent-producer sequences per partition and their snapshots;
//!   [`producer_ids`]: the producer-id allocator on shard 0.
//! - [`group`]: the consumer-group coordinator (sans-I/O membership, generations, assignors,
//!   commit fencing, lag), run by the shard that owns each group's `__offsets` partition.
//! - [`catalog`]: the topic catalog and its file; [`offsets`]: committed-offset and group records;
//!   [`metrics`]: counters and Prometheus rendering; [`hash`]: partition and group placement;
//!   [`notify`] and [`join`]: single-threaded wake-ups and joins.
//!
//! Invariants of the whole crate: a partition's log is touched only by the shard that
//! [`hash::shard_for_partition`] names, other shards reach it by message; the catalog has one
//! writer (shard 0) and every shard reads an immutable snapshot of it; every queue, buffer and
//! count that grows with input has a named, configurable bound.

#![warn(missing_docs)]

pub mod catalog;
pub mod config;
pub mod conn;
pub mod control;
pub mod group;
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
pub mod producer_ids;
pub mod producer_state;
pub mod router;
pub mod runtime;
pub mod shard;
