//! `storage-open`: `PartitionLog::open` time (recovery) for logs of several sizes, side by side,
//! to check that opening does not grow with the total log size.
//!
//! For each size it builds a log (1 MiB batches of 1,000 × 1 KiB records under
//! `FlushPolicy::Never`, one final flush, default segment size), closes it, then opens it
//! `--opens` times and prints the median, dropping the OS page cache before each open when it
//! can (as root: `sync` and `echo 3 > /proc/sys/vm/drop_caches`; it says when it cannot). Each
//! log is deleted before the next is built; a crash can leave the scratch directory behind.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use glommio::LocalExecutorBuilder;
use weir_benches::{make_batch, megabytes_per_second, scratch_dir, GIB, MIB};
use weir_storage::{FlushPolicy, LogConfig, PartitionLog};

/// Open (recovery) time of partition logs of several sizes.
#[derive(Debug, Parser)]
#[command(name = "storage-open")]
struct Args {
    /// Log sizes to build and open, in GiB, comma-separated.
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    sizes_gib: Vec<u64>,
    /// Opens measured per size (the median is reported).
    #[arg(long, default_value_t = 5)]
    opens: usize,
    /// Parent of the scratch directory (default: the system temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// What was measured for one size.
struct OpenRun {
    size_gib: u64,
    segment_count: usize,
    build: Duration,
    opens: Vec<Duration>,
}

impl OpenRun {
    fn median(&self) -> Duration {
        let mut sorted = self.opens.clone();
        sorted.sort();
        sorted[sorted.len() / 2]
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.opens > 0, "--opens must be at least 1");
    anyhow::ensure!(
        args.sizes_gib.iter().all(|size| *size > 0),
        "sizes must be at least 1 GiB"
    );
    let scratch = scratch_dir(args.dir.as_deref(), "weir-storage-open-")?;
    let batch = make_batch(1000, 1024);
    let config = LogConfig {
        flush: FlushPolicy::Never,
        ..LogConfig::default()
    };
    let drop_caches = drop_page_cache().is_ok();
    println!(
        "workload: 1 partition, {} B batches (1000 x 1 KiB records), built with flush=never \
         and one final flush, segment {} MiB, index every {} B; {} opens per size, median; \
         page cache {}; scratch {}",
        batch.len(),
        config.segment_bytes_max / MIB,
        config.index_interval_bytes,
        args.opens,
        if drop_caches {
            "dropped before each open"
        } else {
            "NOT dropped (needs root and a writable /proc/sys/vm/drop_caches)"
        },
        scratch.path().display()
    );

    let mut runs = Vec::new();
    for &size_gib in &args.sizes_gib {
        let dir = scratch.path().join(format!("partition-{size_gib}gib"));
        let run = measure_size(&dir, &config, &batch, size_gib, args.opens, drop_caches)?;
        let opens: Vec<String> = run
            .opens
            .iter()
            .map(|open| format!("{:.2}", open.as_secs_f64() * 1e3))
            .collect();
        println!(
            "{size_gib} GiB: {} segments, built in {:.1} s ({:.0} MB/s); open median {:.2} ms \
             (all, ms: {})",
            run.segment_count,
            run.build.as_secs_f64(),
            megabytes_per_second(size_gib * GIB, run.build.as_secs_f64()),
            run.median().as_secs_f64() * 1e3,
            opens.join(", ")
        );
        runs.push(run);
    }
    if let (Some(first), Some(last)) = (runs.first(), runs.last()) {
        if runs.len() > 1 {
            let columns: Vec<String> = runs
                .iter()
                .map(|run| {
                    format!(
                        "{} GiB {:.2} ms",
                        run.size_gib,
                        run.median().as_secs_f64() * 1e3
                    )
                })
                .collect();
            println!("open median: {}", columns.join(" | "));
            println!(
                "ratio open({} GiB)/open({} GiB) = {:.2} (target ~1: open time does not grow \
                 with log size)",
                last.size_gib,
                first.size_gib,
                last.median().as_secs_f64() / first.median().as_secs_f64()
            );
        }
    }
    scratch.close().context("removing the scratch directory")?;
    Ok(())
}

/// Builds a log of `size_gib` in `dir`, measures its opens, and deletes it.
fn measure_size(
    dir: &Path,
    config: &LogConfig,
    batch: &Bytes,
    size_gib: u64,
    opens: usize,
    drop_caches: bool,
) -> anyhow::Result<OpenRun> {
    let dir = dir.to_path_buf();
    let config = config.clone();
    let batch = batch.clone();
    let handle = LocalExecutorBuilder::default()
        .name("storage-open")
        .spawn(move || async move {
            let batch_count = (size_gib * GIB).div_ceil(batch.len() as u64);
            let started = Instant::now();
            let log = PartitionLog::open(&dir, config.clone())
                .await
                .context("creating the log")?;
            for _ in 0..batch_count {
                log.append(batch.clone()).await.context("append")?;
            }
            log.close().await.context("closing the built log")?;
            let build = started.elapsed();

            let mut durations = Vec::with_capacity(opens);
            let mut segment_count = 0;
            for _ in 0..opens {
                if drop_caches {
                    drop_page_cache()?;
                }
                let started = Instant::now();
                let log = PartitionLog::open(&dir, config.clone())
                    .await
                    .context("reopening the log")?;
                durations.push(started.elapsed());
                segment_count = log.stats().segment_count;
                anyhow::ensure!(
                    log.log_end_offset() == (batch_count * 1000) as i64,
                    "reopened log ends at {}, expected {}",
                    log.log_end_offset(),
                    batch_count * 1000
                );
                log.close().await.context("closing the reopened log")?;
            }
            let log = PartitionLog::open(&dir, config)
                .await
                .context("opening to delete")?;
            log.delete().await.context("deleting the log")?;
            Ok::<_, anyhow::Error>(OpenRun {
                size_gib,
                segment_count,
                build,
                opens: durations,
            })
        })
        .map_err(|error| anyhow::anyhow!("starting the glommio executor: {error}"))?;
    handle
        .join()
        .map_err(|error| anyhow::anyhow!("executor thread: {error}"))?
}

/// Writes dirty pages back and drops the page, dentry and inode caches (needs root).
fn drop_page_cache() -> anyhow::Result<()> {
    // Dirty pages cannot be dropped: write them back first.
    let status = std::process::Command::new("sync")
        .status()
        .context("running sync")?;
    anyhow::ensure!(status.success(), "sync failed: {status}");
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").context("writing /proc/sys/vm/drop_caches")
}
