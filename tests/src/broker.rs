//! A `weir-broker` child process for one test: its own data directory, ephemeral ports, logs in
//! files, and the life-cycle operations the tests need (restart, SIGTERM, SIGKILL).
//!
//! [`BrokerProcess::start`] runs the broker with `--listen 127.0.0.1:0 --metrics-listen
//! 127.0.0.1:0 --ready-file <work dir>/ready-<n>.toml`, so every listener takes an ephemeral port,
//! and waits (at most [`BrokerOptions::ready_timeout`]) for the ready file the broker writes
//! atomically once every shard serves: TOML with `listen`, `shards`, `metrics` and `pid`. The
//! child's stdout and stderr go to `broker-<n>.{stdout,stderr}.log` in the work directory, one
//! pair per start, so a failing test prints them (see the `Drop` impl). Invariants: the child
//! never outlives its `BrokerProcess` (Drop sends SIGKILL and reaps it); `restart` reuses the data
//! directory and nothing else, so the addresses change with every start.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::bins;
use crate::metrics::Metrics;
use crate::wait::{poll_until, wait_until};

/// How long a broker may take from spawn to its ready file.
pub const READY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How long a broker may take to exit after SIGTERM or SIGKILL.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of each log file printed when a test fails.
const LOG_TAIL_BYTES: usize = 16 * 1024;

/// How to start a broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// `--cores`: the number of shards.
    pub cores: usize,
    /// The data directory; `None` = `data/` in the process's own temporary work directory.
    pub data_dir: Option<PathBuf>,
    /// More command-line flags, appended after the ones the harness sets.
    pub extra_args: Vec<String>,
    /// How long to wait for the ready file.
    pub ready_timeout: Duration,
    /// The broker's `RUST_LOG` filter.
    pub log_filter: String,
}

impl Default for BrokerOptions {
    /// One shard, a fresh data directory, the `RUST_LOG` filter in `WEIR_TEST_BROKER_LOG`
    /// (default `info`), and the whitespace-separated flags in `WEIR_TEST_BROKER_ARGS` (none by
    /// default), which let a whole run try a broker setting without editing the tests.
    fn default() -> Self {
        BrokerOptions {
            cores: 1,
            data_dir: None,
            extra_args: std::env::var("WEIR_TEST_BROKER_ARGS")
                .map(|args| args.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            ready_timeout: READY_TIMEOUT_DEFAULT,
            log_filter: std::env::var("WEIR_TEST_BROKER_LOG").unwrap_or_else(|_| "info".into()),
        }
    }
}

impl BrokerOptions {
    /// Default options with `cores` shards.
    pub fn with_cores(cores: usize) -> Self {
        BrokerOptions {
            cores,
            ..BrokerOptions::default()
        }
    }

    /// Adds command-line flags (e.g. `["--connections-max", "2000"]`).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Uses `dir` as the data directory instead of a fresh one.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
}

/// The addresses a running broker reported in its ready file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ReadyAddresses {
    /// The shared client address (every shard accepts here).
    pub listen: SocketAddr,
    /// Each shard's direct client address, by shard index.
    pub shards: Vec<SocketAddr>,
    /// The Prometheus `/metrics` address.
    pub metrics: SocketAddr,
    /// The broker's process id.
    pub pid: u32,
}

/// A running (or stopped) `weir-broker` child process; see the module documentation.
pub struct BrokerProcess {
    options: BrokerOptions,
    work_dir: tempfile::TempDir,
    data_dir: PathBuf,
    child: Option<Child>,
    addresses: ReadyAddresses,
    /// How many times a broker was started on this data directory (1 after `start`).
    starts: u32,
}

impl std::fmt::Debug for BrokerProcess {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BrokerProcess")
            .field("addresses", &self.addresses)
            .field("data_dir", &self.data_dir)
            .field("starts", &self.starts)
            .finish_non_exhaustive()
    }
}

impl BrokerProcess {
    /// Starts a broker and waits for its ready file; fails the test (printing the broker's log)
    /// if it exits or is not ready in time.
    pub fn start(options: BrokerOptions) -> BrokerProcess {
        let work_dir = tempfile::Builder::new()
            .prefix("weir-test-")
            .tempdir()
            .expect("create a temporary work directory");
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| work_dir.path().join("data"));
        let mut broker = BrokerProcess {
            options,
            work_dir,
            data_dir,
            child: None,
            addresses: ReadyAddresses {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                shards: Vec::new(),
                metrics: SocketAddr::from(([127, 0, 0, 1], 0)),
                pid: 0,
            },
            starts: 0,
        };
        broker.spawn();
        broker
    }

    /// Starts a broker with default options and `cores` shards.
    pub fn start_with_cores(cores: usize) -> BrokerProcess {
        BrokerProcess::start(BrokerOptions::with_cores(cores))
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "a broker is already running");
        self.starts += 1;
        let start = self.starts;
        let ready_file = self.work_dir.path().join(format!("ready-{start}.toml"));
        let stdout = File::create(self.log_path(start, "stdout")).expect("create the stdout log");
        let stderr = File::create(self.log_path(start, "stderr")).expect("create the stderr log");
        let mut command = Command::new(bins::broker_path());
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--cores")
            .arg(self.options.cores.to_string())
            .arg("--ready-file")
            .arg(&ready_file)
            .args(&self.options.extra_args)
            .env("RUST_LOG", &self.options.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot spawn {:?}: {error}", bins::broker_path()));
        self.child = Some(child);

        let deadline = Instant::now() + self.options.ready_timeout;
        let addresses = loop {
            if let Some(addresses) = read_ready_file(&ready_file) {
                break addresses;
            }
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "weir-broker exited ({status}) before it was ready\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "weir-broker wrote no ready file within {:?}\n{}",
                    self.options.ready_timeout,
                    self.log_tail()
                );
            }
            poll_until(Duration::from_millis(20), || ready_file.exists());
        };
        assert_eq!(
            addresses.pid,
            self.pid(),
            "the ready file names another process"
        );
        assert_eq!(
            addresses.shards.len(),
            self.options.cores,
            "the ready file lists one direct address per shard"
        );
        self.addresses = addresses;
    }

    fn log_path(&self, start: u32, stream: &str) -> PathBuf {
        self.work_dir
            .path()
            .join(format!("broker-{start}.{stream}.log"))
    }

    /// The addresses of the current (or last) run.
    pub fn addresses(&self) -> &ReadyAddresses {
        &self.addresses
    }

    /// The shared address as `host:port`, for `ClientConfig::new` and `--broker`.
    pub fn bootstrap(&self) -> String {
        self.addresses.listen.to_string()
    }

    /// Shard `shard`'s direct address.
    pub fn shard_address(&self, shard: usize) -> SocketAddr {
        self.addresses.shards[shard]
    }

    /// The `/metrics` address.
    pub fn metrics_address(&self) -> SocketAddr {
        self.addresses.metrics
    }

    /// The data directory (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temporary directory holding logs, ready files and (by default) the data directory.
    pub fn work_dir(&self) -> &Path {
        self.work_dir.path()
    }

    /// How many times a broker has been started on this data directory.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The process id of the running broker.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("the broker is not running")
    }

    /// Whether the child is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_exit_status().is_none()
    }

    /// Fails the test, with the broker's log, unless the broker is still running.
    pub fn assert_running(&mut self, context: &str) {
        if let Some(status) = self.try_exit_status() {
            panic!(
                "weir-broker exited ({status}) {context}\n{}",
                self.log_tail()
            );
        }
        assert!(self.child.is_some(), "no broker was started {context}");
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("waitpid on the broker")
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) with the pid of a child this process has not reaped yet (it stays a
        // zombie until waited for), so the pid cannot name an unrelated process.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            result,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    fn wait_for_exit(&mut self, what: &str) -> ExitStatus {
        let mut status = None;
        let exited = poll_until(EXIT_TIMEOUT, || {
            status = self.try_exit_status();
            status.is_some()
        });
        if !exited {
            let tail = self.log_tail();
            if let Some(child) = self.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            self.child = None;
            panic!("weir-broker did not exit within {EXIT_TIMEOUT:?} after {what}\n{tail}");
        }
        self.child = None;
        status.expect("poll_until saw an exit status")
    }

    /// Sends SIGKILL and reaps the broker: a crash at whatever point it was.
    pub fn kill_9(&mut self) {
        self.assert_running("before SIGKILL");
        self.signal(libc::SIGKILL);
        let status = self.wait_for_exit("SIGKILL");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "the broker ended by SIGKILL, not {status}"
        );
    }

    /// Sends SIGTERM, waits for the broker to exit, and fails the test unless it exited with
    /// status 0 (a clean shutdown).
    pub fn terminate(&mut self) {
        self.assert_running("before SIGTERM");
        self.signal(libc::SIGTERM);
        let status = self.wait_for_exit("SIGTERM");
        if status.code() != Some(0) {
            panic!(
                "weir-broker exited with {status} after SIGTERM, expected status 0\n{}",
                self.log_tail()
            );
        }
    }

    /// Starts the broker again on the same data directory (after a SIGTERM first if it is still
    /// running) and waits until it is ready; the addresses change.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.terminate();
        }
        self.child = None;
        self.spawn();
    }

    /// The broker's resident set size, from `VmRSS` in `/proc/<pid>/status`, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .unwrap_or_else(|| panic!("{path} has no VmRSS line"));
        let kib: u64 = line
            .trim_start_matches("VmRSS:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("cannot parse {line:?}"));
        kib * 1024
    }

    /// Scrapes `/metrics`; fails the test if the scrape or its parsing fails.
    pub fn metrics(&self) -> Metrics {
        Metrics::scrape(self.metrics_address())
            .unwrap_or_else(|error| panic!("cannot scrape the broker's /metrics: {error}"))
    }

    /// Everything the broker wrote to stderr and stdout, over every start.
    pub fn log(&self) -> String {
        let mut text = String::new();
        for start in 1..=self.starts {
            for stream in ["stderr", "stdout"] {
                let contents = std::fs::read(self.log_path(start, stream)).unwrap_or_default();
                if !contents.is_empty() {
                    text.push_str(&format!("--- broker start {start}, {stream} ---\n"));
                    text.push_str(&String::from_utf8_lossy(&contents));
                }
            }
        }
        text
    }

    /// The last part of every log file, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        for start in 1..=self.starts {
            for stream in ["stderr", "stdout"] {
                let path = self.log_path(start, stream);
                let contents = std::fs::read(&path).unwrap_or_default();
                if contents.is_empty() {
                    continue;
                }
                let from = contents.len().saturating_sub(LOG_TAIL_BYTES);
                text.push_str(&format!(
                    "--- broker start {start}, {stream} ({}, last {} of {} bytes) ---\n",
                    path.display(),
                    contents.len() - from,
                    contents.len()
                ));
                text.push_str(&String::from_utf8_lossy(&contents[from..]));
                if !text.ends_with('\n') {
                    text.push('\n');
                }
            }
        }
        if text.is_empty() {
            text.push_str("(the broker wrote no log)\n");
        }
        text
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("weir-broker log of the failed test:\n{}", self.log_tail());
        }
    }
}

fn read_ready_file(path: &Path) -> Option<ReadyAddresses> {
    let text = std::fs::read_to_string(path).ok()?;
    match toml::from_str::<ReadyAddresses>(&text) {
        Ok(addresses) => Some(addresses),
        Err(error) => panic!(
            "the ready file {} does not parse: {error}\n{text}",
            path.display()
        ),
    }
}

/// Waits until `broker`'s `/metrics` satisfies `condition`; fails the test after `timeout` with
/// `what` and the last scrape's value of the metrics involved.
pub fn wait_for_metrics(
    broker: &BrokerProcess,
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut(&Metrics) -> bool,
) -> Metrics {
    let mut last = None;
    wait_until(timeout, what, || {
        let metrics = broker.metrics();
        let satisfied = condition(&metrics);
        last = Some(metrics);
        satisfied
    });
    last.expect("at least one scrape ran")
}
