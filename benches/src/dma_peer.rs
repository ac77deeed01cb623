//! The glommio peer: fio's reference write pattern issued straight through glommio `DmaFile`, so
//! a program can tell the cost of glommio's I/O path (measured against fio) from the cost of
//! Weir's write path (measured against this peer) in one run.
//!
//! Owns one scratch file (`raw-dma.tmp` in the directory it is given) while it runs and removes
//! it afterwards; a crash can leave the file behind inside the caller's scratch directory. The
//! pattern is fio's `--bs=1M --rw=write --direct=1 --iodepth=4 --fdatasync=16` on a
//! preallocated file: 1 MiB aligned writes, `inflight` of them running, and after every 16 MiB
//! (`writes_per_sync`) the writes are drained and the file is fdatasynced (an fdatasync issued
//! while writes run would not cover them, so draining is what a durable end needs).

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::Context;
use glommio::{
    io::{DmaBuffer, DmaFile, OpenOptions},
    LocalExecutorBuilder,
};
use weir_storage::io::{DmaBackend, StorageBackend};

use crate::MIB;

/// Name of the peer's data file inside the scratch directory.
pub const PEER_FILE_NAME: &str = "raw-dma.tmp";

/// Bytes per write, as fio's `--bs=1M`.
pub const WRITE_BYTES: u64 = MIB;

/// Writes between two fdatasyncs by default, as fio's `--fdatasync=16`.
pub const WRITES_PER_SYNC_DEFAULT: u64 = 16;

/// Where the peer's write buffers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerBuffers {
    /// A new `alloc_dma_buffer` per write, filled by a 1 MiB copy: what Weir's DMA backend does.
    Fresh,
    /// `inflight` buffers filled once and written again and again (`write_rc_at`): what fio does.
    Reused,
}

impl std::fmt::Display for PeerBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerBuffers::Fresh => "fresh",
            PeerBuffers::Reused => "reused",
        })
    }
}

/// How the peer runs.
#[derive(Debug, Clone, Copy)]
pub struct PeerConfig {
    /// Bytes to write (rounded up to whole writes).
    pub total_bytes: u64,
    /// Writes in flight at once.
    pub inflight: usize,
    /// Buffer policy.
    pub buffers: PeerBuffers,
    /// glommio's `spin_before_park` for the peer's executor, if any.
    pub spin_before_park: Option<Duration>,
    /// Bytes every write position is shifted by (a multiple of the file's O_DIRECT alignment).
    /// 0 is fio's pattern; 512 keeps the writes aligned for a 512-byte-sector device but not
    /// for a 4 KiB file-system block, which is where the log's writes land.
    pub shift_bytes: u64,
    /// Writes between two fdatasyncs (1 MiB each).
    pub writes_per_sync: u64,
}

/// What one peer run measured.
#[derive(Debug, Clone, Copy)]
pub struct PeerRun {
    /// Bytes written.
    pub bytes: u64,
    /// Writes issued.
    pub write_count: u64,
    /// fdatasyncs issued.
    pub fsync_count: u64,
    /// From the first write to the end of the last fdatasync.
    pub elapsed: Duration,
    /// CPU time of the executor thread and of the whole process during the timed part.
    pub cpu: CpuSpent,
}

/// CPU time spent during a timed stretch, split between the executor thread and the rest of
/// the process (io_uring's `iou-wrk` workers and glommio's blocking thread are threads of the
/// process, so their time lands in the second figure).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSpent {
    /// User and system time of the executor thread.
    pub executor_thread: Duration,
    /// User and system time of every thread of the process, ended threads included.
    pub process: Duration,
}

impl CpuSpent {
    /// Process time outside the executor thread.
    pub fn other_threads(&self) -> Duration {
        self.process.saturating_sub(self.executor_thread)
    }
}

/// CPU clocks read at the start of a timed stretch, on the thread that will be measured.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    thread: Duration,
    process: Duration,
}

impl CpuClock {
    /// Reads the calling thread's and the process's CPU time now.
    pub fn start() -> CpuClock {
        CpuClock {
            thread: cpu_time("/proc/thread-self/stat"),
            process: cpu_time("/proc/self/stat"),
        }
    }

    /// CPU spent since `start`; call it on the same thread.
    pub fn spent(&self) -> CpuSpent {
        CpuSpent {
            executor_thread: cpu_time("/proc/thread-self/stat").saturating_sub(self.thread),
            process: cpu_time("/proc/self/stat").saturating_sub(self.process),
        }
    }
}

/// Clock ticks per second in `/proc/*/stat` (USER_HZ: 100 in the Linux ABI on every
/// architecture Weir builds for), so CPU figures have a 10 ms resolution.
const USER_HZ: u64 = 100;

/// User plus system time (`utime + stime`) from a `/proc/.../stat` file: of one thread for
/// `/proc/thread-self/stat`, of every thread of the process, ended ones included, for
/// `/proc/self/stat`. Zero if the file cannot be read, so a missing `/proc` only blanks the
/// CPU figures.
fn cpu_time(path: &str) -> Duration {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses and may hold spaces; utime and
    // stime are fields 14 and 15 of the file, so 12th and 13th after the name.
    let Some((_, after_name)) = text.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 1000 / USER_HZ)
}

/// An executor builder for a benchmark role, with `spin_before_park` if asked.
pub fn executor_builder(name: &str, spin_before_park: Option<Duration>) -> LocalExecutorBuilder {
    let builder = LocalExecutorBuilder::default().name(name);
    match spin_before_park {
        Some(spin) => builder.spin_before_park(spin),
        None => builder,
    }
}

/// Runs the peer on its own executor thread in `dir` and returns what it measured.
pub fn run(dir: &Path, config: PeerConfig) -> anyhow::Result<PeerRun> {
    anyhow::ensure!(
        config.inflight > 0,
        "the peer needs at least one write in flight"
    );
    anyhow::ensure!(
        config.writes_per_sync > 0,
        "the peer needs at least one write per fdatasync"
    );
    let dir = dir.to_path_buf();
    let handle = executor_builder("storage-append-peer", config.spin_before_park)
        .spawn(move || async move { write_on_executor(dir, config).await })
        .map_err(|error| anyhow::anyhow!("starting the peer's glommio executor: {error}"))?;
    handle
        .join()
        .map_err(|error| anyhow::anyhow!("peer executor thread: {error}"))?
}

fn glommio_error(action: &str) -> impl FnOnce(glommio::GlommioError<()>) -> anyhow::Error + '_ {
    move |error| anyhow::anyhow!("{action}: {error}")
}

async fn write_on_executor(dir: PathBuf, config: PeerConfig) -> anyhow::Result<PeerRun> {
    // The same priming the log does before its first DmaFile on a device (see
    // weir_storage::io::DmaBackend): without it glommio may pick the poll ring for a device
    // without poll queues.
    DmaBackend::new()
        .prepare_dir(&dir)
        .await
        .context("priming glommio's polled-I/O probe")?;
    let path = dir.join(PEER_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .map_err(glommio_error("opening the peer file"))?;
    let file = Rc::new(file);
    anyhow::ensure!(
        // The alignment is a power of two.
        config.shift_bytes & (file.alignment() - 1) == 0,
        "a shift of {} bytes is not a multiple of the file's O_DIRECT alignment ({} bytes)",
        config.shift_bytes,
        file.alignment()
    );
    let write_count = config.total_bytes.div_ceil(WRITE_BYTES);
    let total_bytes = write_count * WRITE_BYTES + config.shift_bytes;
    // As fio lays its file out before it writes: no write extends the file.
    file.pre_allocate(total_bytes, false)
        .await
        .map_err(glommio_error("preallocating the peer file"))?;
    let result = write_all(&file, write_count, config).await;
    let file = Rc::into_inner(file).context("every write has ended")?;
    file.close()
        .await
        .map_err(glommio_error("closing the peer file"))?;
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    result
}

/// Data for the peer's writes: incompressible-looking bytes, as in the log's batches.
fn pattern() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..WRITE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn write_all(
    file: &Rc<DmaFile>,
    write_count: u64,
    config: PeerConfig,
) -> anyhow::Result<PeerRun> {
    let pattern = pattern();
    let fill = |mut buffer: DmaBuffer| {
        buffer.as_bytes_mut().copy_from_slice(&pattern);
        buffer
    };
    let reused: Vec<Rc<DmaBuffer>> = match config.buffers {
        PeerBuffers::Reused => (0..config.inflight)
            .map(|_| Rc::new(fill(file.alloc_dma_buffer(WRITE_BYTES as usize))))
            .collect(),
        PeerBuffers::Fresh => Vec::new(),
    };
    let mut running = VecDeque::with_capacity(config.inflight);
    let mut fsync_count = 0u64;
    let mut writes_since_sync = 0u64;
    let cpu = CpuClock::start();
    let started = Instant::now();
    for write_index in 0..write_count {
        if running.len() == config.inflight {
            finish_oldest(&mut running).await?;
        }
        let position = config.shift_bytes + write_index * WRITE_BYTES;
        let writer = file.clone();
        // Write `write_index` reuses the buffer of write `write_index - inflight`, which has
        // completed: the oldest running write was awaited above.
        let task = match config.buffers {
            PeerBuffers::Fresh => {
                let buffer = fill(file.alloc_dma_buffer(WRITE_BYTES as usize));
                glommio::spawn_local(async move { writer.write_at(buffer, position).await })
            }
            PeerBuffers::Reused => {
                let buffer = reused[write_index as usize % config.inflight].clone();
                glommio::spawn_local(async move { writer.write_rc_at(buffer, position).await })
            }
        };
        running.push_back(task);
        writes_since_sync += 1;
        let last = write_index + 1 == write_count;
        if writes_since_sync == config.writes_per_sync || last {
            writes_since_sync = 0;
            while !running.is_empty() {
                finish_oldest(&mut running).await?;
            }
            file.fdatasync()
                .await
                .map_err(glommio_error("fdatasync of the peer file"))?;
            fsync_count += 1;
        }
    }
    let elapsed = started.elapsed();
    Ok(PeerRun {
        bytes: write_count * WRITE_BYTES,
        write_count,
        fsync_count,
        elapsed,
        cpu: cpu.spent(),
    })
}

async fn finish_oldest(
    running: &mut VecDeque<glommio::Task<glommio::Result<usize, ()>>>,
) -> anyhow::Result<()> {
    let Some(task) = running.pop_front() else {
        return Ok(());
    };
    let written = task.await.map_err(glommio_error("peer write"))?;
    anyhow::ensure!(
        written as u64 == WRITE_BYTES,
        "short peer write: {written} of {WRITE_BYTES} bytes"
    );
    Ok(())
}
