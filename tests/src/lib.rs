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

use std::sync::Arc;

use weir_client::{ClientConfig, Cluster};

/// A multi-threaded tokio runtime for the async parts of a test. Tests build their own instead
/// of using `#[tokio::test]` so that broker starts, kills and restarts (blocking, with deadlines)
/// run on the test thread, outside the runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a tokio runtime")
}

/// Connects the client crate to `broker`; fails the test if it cannot.
pub async fn connect_cluster(broker: &BrokerProcess) -> Arc<Cluster> {
    let config = ClientConfig {
        client_id: "weir-tests".to_string(),
        ..ClientConfig::new(broker.bootstrap())
    };
    Cluster::connect(config).await.unwrap_or_else(|error| {
        panic!(
            "cannot connect the client to {}: {error}",
            broker.bootstrap()
        )
    })
}

/// Raises this process's soft open-files limit to at least `wanted` (bounded by the hard
/// limit), so a test can hold many sockets; a broker spawned afterwards inherits it. Returns the
/// new soft limit.
pub fn raise_open_files_limit(wanted: libc::rlim_t) -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if limit.rlim_cur >= wanted {
        return limit.rlim_cur;
    }
    limit.rlim_cur = wanted.min(limit.rlim_max);
    // SAFETY: setrlimit reads the struct; a soft limit at most the hard limit is always allowed.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(set, 0, "setrlimit: {}", std::io::Error::last_os_error());
    limit.rlim_cur
}
