//! `storage-append`: durable append throughput of one partition log against the disk's
//! fdatasync'd sequential write bandwidth measured by fio in the same run.
//!
//! Runs fio, then the log, then fio again (so drift between the two fio runs shows), and prints
//! `ratio weir/fio` against the mean of the two fio figures. The log workload: one batch of
//! `--records-per-batch` records of `--record-bytes` bytes is built once and appended
//! `--total-gib` worth of times to one partition by `--inflight` concurrent tasks on one glommio
//! executor, under `--flush` (default `always`: every append waits for an fdatasync that covers
//! it, shared by concurrent appends). The measured time ends after a final flush, so every
//! policy is timed to the same durable end. All data lives in a scratch directory that is
//! removed at the end; a crash can leave it behind.
//!
//! With `--peer glommio-raw`, fio's own pattern is also written straight through glommio
//! `DmaFile` (see `weir_benches::dma_peer`) before and after the log, and the program prints
//! `ratio weir/raw` (the cost of Weir's write path over glommio) and `ratio raw/fio` (the cost
//! of glommio's I/O path over fio). `--spin-before-park-us` builds every executor of the run
//! with glommio's `spin_before_park`.

use std::{
    cell::{Cell, RefCell},
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use weir_benches::{
    dma_peer::{self, CpuClock, CpuSpent, PeerBuffers, PeerConfig, PeerRun},
    fio, make_batch, megabytes_per_second, parse_gib, scratch_dir, GIB, MIB,
};
use weir_storage::{FlushPolicy, LogConfig, LogStats, PartitionLog};

/// Append throughput of one partition under a durability policy, compared with fio.
#[derive(Debug, Parser)]
#[command(name = "storage-append")]
struct Args {
    /// Bytes of batches to append, in GiB (fractions allowed).
    #[arg(long, default_value = "4", value_parser = parse_gib)]
    total_gib: u64,
    /// Appends in flight at once (tasks on one executor).
    #[arg(long, default_value_t = 8)]
    inflight: usize,
    /// Value bytes per record.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    records_per_batch: usize,
    /// Durability policy: `always`, `never` or `interval:<ms>`.
    #[arg(long, default_value = "always")]
    flush: FlushPolicy,
    /// Segment size in MiB (default: the log's default).
    #[arg(long)]
    segment_mib: Option<u64>,
    /// The log's write buffer in MiB (default: the log's default): the most bytes one group
    /// commit can write.
    #[arg(long)]
    write_buffer_mib: Option<usize>,
    /// Largest file fio writes, in GiB.
    #[arg(long, default_value = "4", value_parser = parse_gib)]
    fio_gib_max: u64,
    /// Skip fio (no ratio is printed).
    #[arg(long)]
    no_fio: bool,
    /// Also run a peer in the same run: `glommio-raw` writes fio's pattern through glommio
    /// `DmaFile` before and after the log.
    #[arg(long, value_enum)]
    peer: Option<Peer>,
    /// Writes the peer keeps in flight (fio's iodepth is 4).
    #[arg(long, default_value_t = 4)]
    peer_inflight: usize,
    /// The peer's buffers: `fresh` (allocated and filled per write, as the log's DMA backend
    /// does) or `reused` (filled once, as fio does).
    #[arg(long, value_enum, default_value_t = PeerBuffers::Fresh)]
    peer_buffers: PeerBuffers,
    /// MiB the peer writes between two fdatasyncs (fio's `--fdatasync=16`; the log syncs about
    /// every `--inflight` batches).
    #[arg(long, default_value_t = dma_peer::WRITES_PER_SYNC_DEFAULT)]
    peer_sync_mib: u64,
    /// Shift every peer write by this many bytes (a multiple of the device's sector size):
    /// 512 makes the peer's writes misaligned for a 4 KiB file-system block, as the log's are.
    #[arg(long, default_value_t = 0)]
    peer_shift_bytes: u64,
    /// Build every glommio executor of the run with `spin_before_park` of this many
    /// microseconds (default: glommio's default, no spinning).
    #[arg(long)]
    spin_before_park_us: Option<u64>,
    /// Parent of the scratch directory (default: the system temporary directory). Use a
    /// directory on the disk you mean to measure.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Peers that can run beside the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Peer {
    /// fio's pattern through glommio `DmaFile`.
    GlommioRaw,
}

/// What the log part of the run measured.
struct AppendRun {
    elapsed: Duration,
    appends: u64,
    bytes: u64,
    latency_us: Histogram<u64>,
    stats: LogStats,
    cpu: CpuSpent,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.inflight > 0, "--inflight must be at least 1");
    anyhow::ensure!(args.peer_inflight > 0, "--peer-inflight must be at least 1");
    anyhow::ensure!(
        args.records_per_batch > 0,
        "--records-per-batch must be at least 1"
    );
    let scratch = scratch_dir(args.dir.as_deref(), "weir-storage-append-")?;
    let batch = make_batch(args.records_per_batch, args.record_bytes);
    let mut config = LogConfig {
        flush: args.flush,
        ..LogConfig::default()
    };
    if let Some(segment_mib) = args.segment_mib {
        config.segment_bytes_max = segment_mib * MIB;
    }
    if let Some(write_buffer_mib) = args.write_buffer_mib {
        config.write_buffer_bytes_max = write_buffer_mib << 20;
    }
    config.validate().context("log configuration")?;
    anyhow::ensure!(
        batch.len() <= config.batch_limits.batch_bytes_max as usize,
        "a batch of {} bytes exceeds the log's batch limit of {} bytes",
        batch.len(),
        config.batch_limits.batch_bytes_max
    );
    let fio_bytes = args.total_gib.min(args.fio_gib_max);
    println!(
        "workload: 1 partition, {} records x {} B per batch ({} B batches, built once), \
         {} appends in flight, flush={}, segment {} MiB, write buffer {} MiB, {:.2} GiB; fio: {:.2} GiB, bs=1M, \
         iodepth=4, fdatasync every 16 MiB, O_DIRECT, io_uring; scratch {}",
        args.records_per_batch,
        args.record_bytes,
        batch.len(),
        args.inflight,
        args.flush,
        config.segment_bytes_max / MIB,
        config.write_buffer_bytes_max as u64 / MIB,
        args.total_gib as f64 / GIB as f64,
        fio_bytes as f64 / GIB as f64,
        scratch.path().display()
    );
    let spin_before_park = args.spin_before_park_us.map(Duration::from_micros);
    let peer = args.peer.map(|_| PeerConfig {
        total_bytes: args.total_gib,
        inflight: args.peer_inflight,
        buffers: args.peer_buffers,
        spin_before_park,
        shift_bytes: args.peer_shift_bytes,
        writes_per_sync: args.peer_sync_mib,
    });
    if let Some(peer) = &peer {
        println!(
            "peer glommio-raw: DmaFile, {:.2} GiB, 1 MiB writes, {} in flight, {} buffers, \
             fdatasync every {} MiB, preallocated, positions shifted by {} B; executors: \
             spin_before_park {}",
            peer.total_bytes as f64 / GIB as f64,
            peer.inflight,
            peer.buffers,
            peer.writes_per_sync,
            peer.shift_bytes,
            spin_before_park.map_or("off".to_string(), |spin| format!("{} us", spin.as_micros()))
        );
    }

    let fio_before = run_fio(&args, scratch.path(), fio_bytes, "fio (before)")?;
    let peer_before = run_peer(peer.as_ref(), scratch.path(), "glommio raw (before)")?;
    let log_dir = scratch.path().join("partition-0");
    let run = append_run(
        log_dir,
        config,
        batch,
        args.total_gib,
        args.inflight,
        spin_before_park,
    )?;
    print_run(&run);
    let peer_after = run_peer(peer.as_ref(), scratch.path(), "glommio raw (after)")?;
    let fio_after = run_fio(&args, scratch.path(), fio_bytes, "fio (after)")?;

    let weir = run.bytes as f64 / run.elapsed.as_secs_f64();
    let fio_mean = mean_of("fio", fio_before, fio_after);
    let raw_mean = mean_of(
        "glommio raw",
        peer_before.map(|peer| peer_bytes_per_second(&peer)),
        peer_after.map(|peer| peer_bytes_per_second(&peer)),
    );
    if let Some(raw) = raw_mean {
        println!("ratio weir/raw = {:.2}", weir / raw);
    }
    if let (Some(raw), Some(fio)) = (raw_mean, fio_mean) {
        println!("ratio raw/fio = {:.2}", raw / fio);
    }
    if let Some(fio) = fio_mean {
        println!("ratio weir/fio = {:.2} (target >= 0.80)", weir / fio);
    }
    scratch.close().context("removing the scratch directory")?;
    Ok(())
}

/// Runs fio unless disabled; returns its bandwidth in bytes per second.
fn run_fio(
    args: &Args,
    dir: &std::path::Path,
    size_bytes: u64,
    label: &str,
) -> anyhow::Result<Option<f64>> {
    if args.no_fio {
        return Ok(None);
    }
    let write = fio::run_seq_write(dir, size_bytes)?;
    println!(
        "{label}: {:.0} MB/s ({} MiB in {} ms)",
        write.bytes_per_second / 1e6,
        write.io_bytes / MIB,
        write.runtime_ms
    );
    Ok(Some(write.bytes_per_second))
}

/// Prints and returns the mean of a figure measured before and after the log, with its drift.
fn mean_of(label: &str, before: Option<f64>, after: Option<f64>) -> Option<f64> {
    let (before, after) = (before?, after?);
    let mean = (before + after) / 2.0;
    println!(
        "{label} mean: {:.0} MB/s (before {:.0}, after {:.0}; drift {:+.1}%)",
        mean / 1e6,
        before / 1e6,
        after / 1e6,
        (after - before) / before * 100.0
    );
    Some(mean)
}

fn peer_bytes_per_second(run: &PeerRun) -> f64 {
    run.bytes as f64 / run.elapsed.as_secs_f64()
}

/// Runs the glommio peer if asked and prints what it measured.
fn run_peer(
    peer: Option<&PeerConfig>,
    dir: &std::path::Path,
    label: &str,
) -> anyhow::Result<Option<PeerRun>> {
    let Some(peer) = peer else {
        return Ok(None);
    };
    let run = dma_peer::run(dir, *peer)?;
    let seconds = run.elapsed.as_secs_f64();
    println!(
        "{label}: {:.0} MB/s ({} MiB in {} ms, {} writes, {} fdatasyncs); {}",
        megabytes_per_second(run.bytes, seconds),
        run.bytes / MIB,
        run.elapsed.as_millis(),
        run.write_count,
        run.fsync_count,
        cpu_text(&run.cpu, seconds)
    );
    Ok(Some(run))
}

/// CPU time of the executor thread and of the process's other threads, as shares of `seconds`.
fn cpu_text(cpu: &CpuSpent, seconds: f64) -> String {
    let share = |time: Duration| time.as_secs_f64() / seconds * 100.0;
    format!(
        "cpu: executor thread {:.2} s ({:.0}%), other threads {:.2} s ({:.0}%)",
        cpu.executor_thread.as_secs_f64(),
        share(cpu.executor_thread),
        cpu.other_threads().as_secs_f64(),
        share(cpu.other_threads())
    )
}

/// Appends `total_bytes` of `batch` with `inflight` tasks and times it up to a final flush.
fn append_run(
    dir: PathBuf,
    config: LogConfig,
    batch: Bytes,
    total_bytes: u64,
    inflight: usize,
    spin_before_park: Option<Duration>,
) -> anyhow::Result<AppendRun> {
    let handle = dma_peer::executor_builder("storage-append", spin_before_park)
        .spawn(move || async move {
            append_on_executor(dir, config, batch, total_bytes, inflight).await
        })
        .map_err(|error| anyhow::anyhow!("starting the glommio executor: {error}"))?;
    handle
        .join()
        .map_err(|error| anyhow::anyhow!("executor thread: {error}"))?
}

async fn append_on_executor(
    dir: PathBuf,
    config: LogConfig,
    batch: Bytes,
    total_bytes: u64,
    inflight: usize,
) -> anyhow::Result<AppendRun> {
    let log = Rc::new(
        PartitionLog::open(&dir, config)
            .await
            .with_context(|| format!("opening {}", dir.display()))?,
    );
    let flusher = match log.config().flush {
        FlushPolicy::Interval { .. } => Some(glommio::spawn_local(
            weir_storage::run_interval_flusher(log.clone()),
        )),
        FlushPolicy::Always | FlushPolicy::Never => None,
    };
    let batch_count = total_bytes.div_ceil(batch.len() as u64);
    let claimed = Rc::new(Cell::new(0u64));
    let latency_us = Rc::new(RefCell::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).context("histogram")?,
    ));
    let cpu = CpuClock::start();
    let started = Instant::now();
    let tasks: Vec<_> = (0..inflight)
        .map(|_| {
            let log = log.clone();
            let batch = batch.clone();
            let claimed = claimed.clone();
            let latency_us = latency_us.clone();
            glommio::spawn_local(async move {
                while claimed.get() < batch_count {
                    claimed.set(claimed.get() + 1);
                    let append_started = Instant::now();
                    log.append(batch.clone()).await?;
                    let micros = append_started.elapsed().as_micros() as u64;
                    latency_us.borrow_mut().saturating_record(micros.max(1));
                }
                Ok::<(), weir_storage::AppendError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("append")?;
    }
    log.flush().await.context("final flush")?;
    let elapsed = started.elapsed();
    let cpu = cpu.spent();
    if let Some(flusher) = flusher {
        flusher.cancel().await;
    }
    let stats = log.stats();
    let log = Rc::into_inner(log).context("every task has ended")?;
    log.delete().await.context("deleting the log")?;
    let latency_us = Rc::into_inner(latency_us)
        .context("every task has ended")?
        .into_inner();
    Ok(AppendRun {
        elapsed,
        appends: batch_count,
        bytes: batch_count * batch.len() as u64,
        latency_us,
        stats,
        cpu,
    })
}

fn print_run(run: &AppendRun) {
    let seconds = run.elapsed.as_secs_f64();
    let stats = &run.stats;
    let latency = &run.latency_us;
    println!(
        "weir: {:.0} MB/s, {:.0} appends/s ({} appends, {} MiB in {:.2} s); {}",
        megabytes_per_second(run.bytes, seconds),
        run.appends as f64 / seconds,
        run.appends,
        run.bytes / MIB,
        seconds,
        cpu_text(&run.cpu, seconds)
    );
    println!(
        "append latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        latency.value_at_quantile(0.50) as f64 / 1e3,
        latency.value_at_quantile(0.99) as f64 / 1e3,
        latency.value_at_quantile(0.999) as f64 / 1e3,
        latency.max() as f64 / 1e3
    );
    let fsyncs = stats.fsync_count.max(1);
    println!(
        "storage: {} fdatasyncs ({:.1} appends each, {:.2} ms mean), {} log writes ({:.2} MiB \
         each), {} segments",
        stats.fsync_count,
        stats.batches_appended as f64 / fsyncs as f64,
        stats.fsync_time_total_us as f64 / fsyncs as f64 / 1e3,
        stats.log_write_count,
        stats.bytes_appended as f64 / stats.log_write_count.max(1) as f64 / MIB as f64,
        stats.segment_count
    );
}
