//! Weir's async client (tokio): partitioning and retry policy.
//!
//! This crate owns everything a service needs to talk to Weir brokers. Invariant: no public
//! function panics on bad input or on a broker's answer; failures are typed errors.

pub mod partitioner;
pub mod retry;

pub use partitioner::partition_for_key;
pub use retry::{Retriable, RetryPolicy};
