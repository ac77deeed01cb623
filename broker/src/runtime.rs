//! Process start-up and shutdown: the data directory, the catalog, listeners, one pinned glommio
//! executor per shard, the ready file, and signal handling.
//!
//! This module owns the main thread. It does blocking file I/O only before the shards start
//! (creating and locking the data directory, loading the catalog) and after they stop. Shutdown
//! is two-phase so that no shard closes its logs while another may still forward it a request:
//! on SIGTERM/SIGINT every shard is told to drain (stop accepting, finish in-flight requests,
//! bounded by `shutdown-timeout-ms`); once all have drained, every shard flushes and closes its
//! logs. A crash at any point loses nothing acknowledged: acknowledgements follow the storage
//! durability policy, not this sequence. A shard that cannot open a partition it owns (internal
//! or user) stops start-up before the ready file is written, and the process exits with an error
//! naming the partition and the cause.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::catalog::{self, Catalog};
use crate::config::Config;
use crate::net::{self, Addresses};
use crate::peers::{self, PeerEnds};
use crate::shard::{self, PeerReply, PeerRequest};

/// Name of the lock file that keeps two brokers off one data directory.
pub const LOCK_FILE: &str = "broker.lock";

/// Commands the main thread sends a shard over its control socket (one byte each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    /// Stop accepting connections and finish in-flight requests.
    Drain = b'D',
    /// Flush and close every log, then stop the executor.
    Close = b'C',
}

/// What shards and the signal thread tell the main thread.
#[derive(Debug)]
pub enum Event {
    /// The shard opened its partitions and accepts connections.
    Ready(usize),
    /// The shard finished draining.
    Drained(usize),
    /// The shard's executor ended, cleanly or with the error text.
    Stopped(usize, Result<(), String>),
    /// A termination signal arrived.
    Signal(i32),
}

/// Everything a shard receives from the main thread at start.
pub struct ShardSetup {
    /// The shard's index.
    pub shard: usize,
    /// The resolved configuration.
    pub config: Arc<Config>,
    /// Every bound address (for Metadata responses).
    pub addresses: Arc<Addresses>,
    /// The catalog as loaded at start.
    pub catalog: Arc<Catalog>,
    /// This shard's socket on the shared port.
    pub shared_listener: OwnedFd,
    /// This shard's direct socket.
    pub direct_listener: OwnedFd,
    /// The metrics socket (shard 0 only).
    pub metrics_listener: Option<OwnedFd>,
    /// The shard's end of its control socket.
    pub control: UnixStream,
    /// The shard's channel ends to its peers.
    pub peers: PeerEnds<PeerRequest, PeerReply>,
    /// Where to report [`Event`]s.
    pub events: SyncSender<Event>,
}

/// Why the broker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data directory could not be created or locked.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The catalog could not be loaded or written.
    #[error("topic catalog: {0}")]
    Catalog(String),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] net::BindError),
    /// An executor could not be created.
    #[error("cannot start shard {shard}: {reason}")]
    Spawn {
        /// The shard.
        shard: usize,
        /// glommio's explanation.
        reason: String,
    },
    /// A shard stopped with an error.
    #[error("shard {shard} failed: {reason}")]
    Shard {
        /// The shard.
        shard: usize,
        /// The shard's error.
        reason: String,
    },
    /// Some other start-up step failed.
    #[error("{0}")]
    Other(String),
}

/// The CPUs this process may run on, in ascending order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it for pid 0
    // (this thread) and only reads/writes within its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let result =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if result != 0 {
        return (0..crate::config::default_cores()).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the set's capacity.
        .filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, &set) })
        .collect()
}

fn lock_data_dir(config: &Config) -> Result<std::fs::File, RunError> {
    use std::os::fd::AsRawFd;
    let data_error = |reason: String| RunError::DataDir {
        path: config.data_dir.clone(),
        reason,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|error| data_error(error.to_string()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(config.data_dir.join(LOCK_FILE))
        .map_err(|error| data_error(format!("cannot open {LOCK_FILE}: {error}")))?;
    // SAFETY: flock on a descriptor this function owns.
    let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        return Err(data_error(
            "locked by another weir-broker process (broker.lock)".to_string(),
        ));
    }
    Ok(lock)
}

/// Removes topic directories whose topic is not in the catalog: left by a crash between a
/// DeleteTopic's catalog write and its partition deletions, or by a deletion that was deferred
/// while a request still held the partition. Runs before the shards start.
fn sweep_deleted_topics(config: &Config, catalog: &Catalog) -> Result<(), RunError> {
    let topics_dir = config.data_dir.join(crate::partition::TOPICS_DIR);
    std::fs::create_dir_all(&topics_dir).map_err(|error| RunError::DataDir {
        path: topics_dir.clone(),
        reason: error.to_string(),
    })?;
    let entries = std::fs::read_dir(&topics_dir).map_err(|error| RunError::DataDir {
        path: topics_dir.clone(),
        reason: error.to_string(),
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(topic_id) = name.to_str().and_then(crate::partition::topic_id_of_dir) else {
            continue;
        };
        let current = catalog.topic_by_id(topic_id).is_some_and(|topic| {
            crate::partition::topic_dir(&config.data_dir, topic) == entry.path()
        });
        if !current {
            info!(dir = %entry.path().display(), "removing the data of a deleted topic");
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                warn!(dir = %entry.path().display(), %error, "cannot remove a deleted topic's data");
            }
        }
    }
    Ok(())
}

fn load_catalog(config: &Config) -> Result<Catalog, RunError> {
    let loaded =
        catalog::load(&config.data_dir).map_err(|error| RunError::Catalog(error.to_string()))?;
    let catalog = loaded.with_offsets_topic(&config.topic_defaults);
    if catalog != loaded {
        catalog::persist_blocking(&config.data_dir, &catalog)
            .map_err(|error| RunError::Catalog(error.to_string()))?;
    }
    Ok(catalog)
}

/// Sends `command` to every shard that has not stopped (a stopped shard's socket is closed).
fn send_command(controls: &mut [UnixStream], stopped: &[bool], command: Command) {
    let running = controls
        .iter_mut()
        .enumerate()
        .filter(|(shard, _)| !stopped[*shard]);
    for (shard, control) in running {
        if let Err(error) = control.write_all(&[command as u8]) {
            warn!(shard, ?command, %error, "cannot send command to shard; it has stopped");
        }
    }
}

/// Runs the broker until a termination signal, then shuts it down in order.
pub fn run(mut config: Config) -> Result<(), RunError> {
    // glommio opens directories with no directory descriptor to resolve a relative path against
    // (it fails with EBADF), so every path the shards open must be absolute; the default
    // `./weir-data` is relative.
    config.data_dir = std::path::absolute(&config.data_dir).map_err(|error| RunError::DataDir {
        path: config.data_dir.clone(),
        reason: format!("cannot make the path absolute: {error}"),
    })?;
    let config = Arc::new(config);
    let _lock = lock_data_dir(&config)?;
    if let Some(path) = &config.ready_file {
        // A stale file from an earlier run must not look like readiness of this one.
        let _ = std::fs::remove_file(path);
    }
    let catalog = Arc::new(load_catalog(&config)?);
    sweep_deleted_topics(&config, &catalog)?;
    let shard_count = config.cores;
    let bound = net::bind_listeners(
        config.listen,
        config.shard_port_base,
        config.metrics_listen,
        shard_count,
    )?;
    let addresses = Arc::new(bound.addresses.clone());

    let (events, event_receiver) = std::sync::mpsc::sync_channel(shard_count * 4 + 4);
    start_signal_thread(events.clone())?;

    let cpus = allowed_cpus();
    if shard_count > cpus.len() {
        warn!(
            shards = shard_count,
            cpus = cpus.len(),
            "more shards than allowed CPUs: shards share cores"
        );
    }
    let mut controls = Vec::with_capacity(shard_count);
    let mut executors = Vec::with_capacity(shard_count);
    let mut metrics_listener = Some(bound.metrics);
    let mesh = peers::mesh(shard_count, config.forward_queue_depth as usize);
    for (shard, ((shared, direct), peer_ends)) in bound
        .shared
        .into_iter()
        .zip(bound.direct)
        .zip(mesh)
        .enumerate()
    {
        let (main_end, shard_end) =
            UnixStream::pair().map_err(|error| RunError::Other(error.to_string()))?;
        controls.push(main_end);
        let setup = ShardSetup {
            shard,
            config: Arc::clone(&config),
            addresses: Arc::clone(&addresses),
            catalog: Arc::clone(&catalog),
            shared_listener: shared,
            direct_listener: direct,
            metrics_listener: if shard == 0 {
                metrics_listener.take()
            } else {
                None
            },
            control: shard_end,
            peers: peer_ends,
            events: events.clone(),
        };
        let cpu = cpus[shard % cpus.len().max(1)];
        let events = events.clone();
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
            .name(&format!("weir-shard-{shard}"))
            .spawn(move || async move {
                let result = shard::run(setup).await.map_err(|error| error.to_string());
                let _ = events.send(Event::Stopped(shard, result));
            })
            .map_err(|error| RunError::Spawn {
                shard,
                reason: error.to_string(),
            })?;
        executors.push(executor);
    }
    drop(events);

    let outcome = serve(
        &config,
        &addresses,
        shard_count,
        &event_receiver,
        &mut controls,
    );
    for executor in executors {
        if executor.join().is_err() {
            error!("a shard executor panicked");
        }
    }
    outcome
}

fn start_signal_thread(events: SyncSender<Event>) -> Result<(), RunError> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|error| RunError::Other(format!("cannot install signal handlers: {error}")))?;
    std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if events.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .map_err(|error| RunError::Other(format!("cannot start the signal thread: {error}")))?;
    Ok(())
}

fn serve(
    config: &Config,
    addresses: &Addresses,
    shard_count: usize,
    events: &Receiver<Event>,
    controls: &mut [UnixStream],
) -> Result<(), RunError> {
    let mut ready = 0;
    let mut failure: Option<RunError> = None;
    let mut stopped = vec![false; shard_count];
    while ready < shard_count {
        match events.recv() {
            Ok(Event::Ready(_)) => ready += 1,
            Ok(Event::Stopped(shard, result)) => {
                stopped[shard] = true;
                failure = Some(RunError::Shard {
                    shard,
                    reason: result
                        .err()
                        .unwrap_or_else(|| "stopped during start-up".into()),
                });
                break;
            }
            Ok(Event::Signal(signal)) => {
                info!(signal, "termination signal during start-up");
                break;
            }
            Ok(Event::Drained(_)) | Err(_) => break,
        }
    }
    if failure.is_none() && ready == shard_count {
        if let Some(path) = &config.ready_file {
            if let Err(error) = net::write_ready_file(path, addresses) {
                error!(path = %path.display(), %error, "cannot write the ready file");
            }
        }
        info!(
            listen = %addresses.listen,
            metrics = %addresses.metrics,
            shards = shard_count,
            data_dir = %config.data_dir.display(),
            "weir-broker serving"
        );
        failure = wait_for_stop(events, &mut stopped);
    }
    info!("shutting down: draining connections");
    send_command(controls, &stopped, Command::Drain);
    let mut drained = 0;
    while drained + stopped.iter().filter(|s| **s).count() < shard_count {
        match events.recv() {
            Ok(Event::Drained(_)) => drained += 1,
            Ok(Event::Stopped(shard, result)) => {
                stopped[shard] = true;
                record_failure(&mut failure, shard, result);
            }
            Ok(Event::Signal(signal)) => {
                warn!(signal, "second signal while draining; still draining")
            }
            Ok(Event::Ready(_)) => {}
            Err(_) => break,
        }
    }
    info!("closing logs");
    send_command(controls, &stopped, Command::Close);
    while stopped.iter().any(|s| !*s) {
        match events.recv() {
            Ok(Event::Stopped(shard, result)) => {
                stopped[shard] = true;
                record_failure(&mut failure, shard, result);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    match failure {
        Some(error) => Err(error),
        None => {
            info!("weir-broker stopped cleanly");
            Ok(())
        }
    }
}

fn wait_for_stop(events: &Receiver<Event>, stopped: &mut [bool]) -> Option<RunError> {
    loop {
        match events.recv() {
            Ok(Event::Signal(signal)) => {
                info!(signal, "termination signal");
                return None;
            }
            Ok(Event::Stopped(shard, result)) => {
                stopped[shard] = true;
                return Some(RunError::Shard {
                    shard,
                    reason: result
                        .err()
                        .unwrap_or_else(|| "stopped unexpectedly".into()),
                });
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn record_failure(failure: &mut Option<RunError>, shard: usize, result: Result<(), String>) {
    if let Err(reason) = result {
        error!(shard, %reason, "shard stopped with an error");
        if failure.is_none() {
            *failure = Some(RunError::Shard { shard, reason });
        }
    }
}
