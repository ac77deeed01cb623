//! Support for the end-to-end tests in `tests/tests/`: real `weir-broker` processes on loopback.
//!
//! This crate owns everything the integration tests share, so that each test file reads as the
//! behaviour it checks:
//!
//! - [`bins`] finds the workspace's binaries (`weir-broker`, `weir`), building them once if
//!   they are missing;
//! - [`broker`] runs a broker as a child process ([`BrokerProcess`]) with its own temporary data
//!   directory, ephemeral ports and captured logs, and restarts, SIGTERMs or SIGKILLs it;
//! - [`wait`] waits on a condition with a deadline ([`wait_until`]) instead of sleeping;
//! - [`metrics`] scrapes and parses the broker's Prometheus `/metrics`;
//! - [`wire`] speaks the native protocol over a blocking `TcpStream`, byte for byte, for tests
//!   that need knobs or malformed input the client crate never produces.
//!
//! Invariants: nothing here uses a fixed port or a shared directory, so tests run in parallel;
//! every wait has a deadline and fails with a message saying what did not happen; a broker child
//! never outlives the [`BrokerProcess`] that started it, and a test that fails prints the
//! broker's log.

pub mod bins;
pub mod broker;
pub mod metrics;
pub mod wait;
pub mod wire;

pub use broker::{BrokerOptions, BrokerProcess, ReadyAddresses};
pub use metrics::Metrics;
pub use wait::{wait_until, wait_until_async};
pub use wire::WireClient;
