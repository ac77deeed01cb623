//! Crash test: acknowledged appends survive SIGKILL of the process that made them.
//!
//! The parent test re-runs this test executable as a child (`--exact` on the child test, with
//! [`CHILD_DIR_VAR`] set; without it the child test returns at once). The child opens a log
//! under `FlushPolicy::Always` and keeps [`CHILD_TASKS`] appends in flight on one glommio
//! executor, so group commit covers many appends per fdatasync. It prints `start` before each
//! append and `ack` (offset, size, hash, identity, fdatasyncs so far) after each one returns,
//! flushing every line. The parent reads the lines, kills the child with SIGKILL after a
//! seeded random number of lines, reads whatever the child printed before dying (those appends
//! were acknowledged too), and starts the next child on the same directory: every child
//! recovers the crashed log and continues appending. Small segments make rolls (sealing and
//! creating segments) part of the crash surface.
//!
//! At the end the parent opens the log in-process and checks: offsets are contiguous from 0;
//! every stored batch is, byte for byte apart from its assigned `baseOffset`, a batch some
//! child generated (its identity is in the producer fields); and every acknowledged append is
//! at its acknowledged offset with its size and hash. Unacknowledged batches may or may not be
//! there. Set `WEIR_CRASH_SEED` to replay a run; the seed is printed.

use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead, BufReader, Write},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    rc::Rc,
    sync::mpsc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use glommio::LocalExecutorBuilder;
use weir_proto::batch::{set_base_offset, BatchBuilder, BatchHeader, BatchLimits};
use weir_storage::{FlushPolicy, LogConfig, PartitionLog};

/// Environment variable naming the log directory; its presence makes the child test run.
const CHILD_DIR_VAR: &str = "WEIR_CRASH_CHILD_DIR";
/// Environment variable carrying the run's seed to the child.
const CHILD_SEED_VAR: &str = "WEIR_CRASH_CHILD_SEED";
/// Environment variable carrying the round number to the child.
const CHILD_ROUND_VAR: &str = "WEIR_CRASH_CHILD_ROUND";
/// Environment variable that replays a run with a given seed.
const SEED_VAR: &str = "WEIR_CRASH_SEED";
/// Name of the child test, as `--exact` wants it.
const CHILD_TEST_NAME: &str = "sigkill_child_appends_until_killed";

/// Starts the child's report lines. The test harness shares the child's stdout and may print
/// on the same line before the first report ("test name ... "), so reports are found by it.
const LINE_MARKER: &str = "@crash ";
/// Children killed, one after another, on the same log.
const ROUNDS: u32 = 5;
/// Appends the child keeps in flight at once.
const CHILD_TASKS: u32 = 16;
/// Range of output lines the parent reads before it kills a child.
const KILL_AFTER_LINES_MIN: u64 = 200;
const KILL_AFTER_LINES_MAX: u64 = 3000;
/// A child that lives this long stops appending (the parent must have died).
const CHILD_LIFETIME_MAX: Duration = Duration::from_secs(60);
/// Longest the parent waits for a child's next line.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// Fewest appends in flight at a kill for the round to count as exercising group commit.
const INFLIGHT_AT_KILL_MIN: usize = 8;

/// splitmix64: a small seeded generator, enough to pick sizes and kill points reproducibly.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// Who generated a batch: stored in the batch's producer id and base sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity {
    round: u32,
    task: u32,
    sequence: u32,
}

impl Identity {
    fn producer_id(self) -> i64 {
        (i64::from(self.round) << 16) | i64::from(self.task)
    }

    fn from_batch(batch: &[u8]) -> Identity {
        let header = BatchHeader::view(batch).expect("batch header");
        let producer_id = header.producer_id.get();
        Identity {
            round: u32::try_from(producer_id >> 16).expect("round"),
            task: u32::try_from(producer_id & 0xffff).expect("task"),
            sequence: u32::try_from(header.base_sequence.get()).expect("sequence"),
        }
    }
}

/// The batch a child appends for `identity`: 1 to 8 records of 8 to 600 pseudo-random bytes,
/// a deterministic function of the seed and the identity so the parent can regenerate it.
fn generate(seed: u64, identity: Identity) -> Bytes {
    let mut rng = Rng(seed
        ^ (u64::from(identity.round) << 48)
        ^ (u64::from(identity.task) << 32)
        ^ u64::from(identity.sequence));
    let timestamp_ms = 1_700_000_000_000 + i64::from(identity.sequence);
    let mut builder = BatchBuilder::new(timestamp_ms).producer(
        identity.producer_id(),
        0,
        i32::try_from(identity.sequence).expect("sequence fits"),
    );
    for _ in 0..rng.range(1, 8) {
        let value: Vec<u8> = (0..rng.range(8, 600))
            .map(|_| rng.next_u64() as u8)
            .collect();
        builder.push(timestamp_ms, None, Some(&value), &[]);
    }
    Bytes::from(builder.finish())
}

/// FNV-1a over a batch without its first 8 bytes (the `baseOffset` the log assigns).
fn content_hash(batch: &[u8]) -> u64 {
    batch[8..].iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The log configuration every child and the final check use: small segments so rolls happen
/// often, a write buffer that holds every in-flight append, and small log writes so a kill
/// lands among several writes in flight.
fn crash_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 256 << 10,
        index_interval_bytes: 1024,
        flush: FlushPolicy::Always,
        tail_cache_bytes_max: 64 << 10,
        write_buffer_bytes_max: 256 << 10,
        writes_in_flight_max: 4,
        write_chunk_bytes_max: 4 << 10,
        batch_limits: BatchLimits {
            batch_bytes_max: 16 << 10,
            ..BatchLimits::default()
        },
        ..LogConfig::default()
    }
}

/// The child: appends until killed. Returns at once unless run by the parent.
#[test]
fn sigkill_child_appends_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR_VAR) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED_VAR)
        .expect("seed")
        .parse()
        .expect("seed");
    let round: u32 = std::env::var(CHILD_ROUND_VAR)
        .expect("round")
        .parse()
        .expect("round");
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            let log = Rc::new(
                PartitionLog::open(PathBuf::from(dir), crash_config())
                    .await
                    .expect("child opens the log"),
            );
            let started = Instant::now();
            let tasks: Vec<_> = (0..CHILD_TASKS)
                .map(|task| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        let mut sequence = 0;
                        while started.elapsed() < CHILD_LIFETIME_MAX {
                            let identity = Identity {
                                round,
                                task,
                                sequence,
                            };
                            let batch = generate(seed, identity);
                            emit(&format!("start {task} {sequence}"));
                            let info = log.append(batch.clone()).await.expect("append");
                            let fsyncs = log.stats().fsync_count;
                            emit(&format!(
                                "ack {} {} {} {task} {sequence} {fsyncs}",
                                info.base_offset,
                                info.size_bytes,
                                content_hash(&batch)
                            ));
                            sequence += 1;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
        })
        .expect("child executor")
        .join()
        .expect("child executor thread");
}

/// Writes one line to stdout, after [`LINE_MARKER`], and flushes it, so the parent sees it
/// before anything else the child does.
fn emit(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{LINE_MARKER}{line}").expect("write to parent");
    stdout.flush().expect("flush to parent");
}

/// An append the child reported as done.
#[derive(Debug, Clone, Copy)]
struct Ack {
    base_offset: i64,
    size_bytes: u32,
    hash: u64,
    identity: Identity,
}

/// What the parent saw of one child.
#[derive(Debug, Default)]
struct RoundReport {
    acks: Vec<Ack>,
    inflight_at_kill: usize,
    fsyncs: u64,
}

/// A child process that is killed when dropped, so a failing parent leaves nothing running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one child on `dir`, kills it after `kill_after_lines` lines, and returns what it
/// acknowledged (including lines it wrote before dying that the parent read after the kill).
fn run_child(dir: &Path, seed: u64, round: u32, kill_after_lines: u64) -> RoundReport {
    let executable = std::env::current_exe().expect("test executable");
    let mut child = ChildGuard(
        Command::new(executable)
            .args([
                "--exact",
                CHILD_TEST_NAME,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_VAR, dir)
            .env(CHILD_SEED_VAR, seed.to_string())
            .env(CHILD_ROUND_VAR, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child"),
    );
    let stdout = child.0.stdout.take().expect("child stdout");
    let (sender, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });

    let mut report = RoundReport::default();
    let mut started: HashSet<(u32, u32)> = HashSet::new();
    let mut seen_lines = 0u64;
    let mut killed = false;
    loop {
        let line = if killed {
            // After the kill the pipe holds a bounded remainder; the reader ends at EOF.
            match lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("round {round}: no EOF after kill"),
            }
        } else {
            match lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => line,
                Err(error) => panic!(
                    "round {round}: child stopped after {seen_lines} lines without being killed \
                     ({error:?}, status {:?})",
                    child.0.try_wait()
                ),
            }
        };
        let Some((_, report_line)) = line.split_once(LINE_MARKER) else {
            // The test harness's own lines ("running 1 test", ...).
            continue;
        };
        let fields: Vec<&str> = report_line.split_whitespace().collect();
        match fields.as_slice() {
            ["start", task, sequence] => {
                started.insert((parse(task), parse(sequence)));
            }
            ["ack", base_offset, size_bytes, hash, task, sequence, fsyncs] => {
                let identity = Identity {
                    round,
                    task: parse(task),
                    sequence: parse(sequence),
                };
                assert!(
                    started.remove(&(identity.task, identity.sequence)),
                    "ack without start: {line}"
                );
                report.acks.push(Ack {
                    base_offset: parse(base_offset),
                    size_bytes: parse(size_bytes),
                    hash: parse(hash),
                    identity,
                });
                report.fsyncs = parse(fsyncs);
            }
            _ => panic!("round {round}: unexpected child line {line:?}"),
        }
        seen_lines += 1;
        if !killed && seen_lines >= kill_after_lines {
            child.0.kill().expect("SIGKILL the child");
            killed = true;
        }
    }
    let status = child.0.wait().expect("wait for child");
    reader.join().expect("reader thread");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "round {round}: child ended by {status:?}, not by SIGKILL"
    );
    report.inflight_at_kill = started.len();
    report
}

fn parse<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().expect("number in child output")
}

/// Every batch in the log from offset 0, checked for contiguity and content, keyed by offset.
async fn recovered_batches(log: &PartitionLog, seed: u64) -> BTreeMap<i64, (Identity, Bytes)> {
    let mut batches = BTreeMap::new();
    let mut offset = 0;
    assert_eq!(log.log_start_offset(), 0, "nothing was deleted");
    loop {
        let read = log.read(offset, 1 << 20).await.expect("read recovered log");
        if read.batches.is_empty() {
            break;
        }
        for batch in read.batches {
            let header = BatchHeader::view(&batch).expect("header");
            assert_eq!(
                header.base_offset.get(),
                offset,
                "offsets are contiguous: batch at {offset}"
            );
            let identity = Identity::from_batch(&batch);
            let mut expected = generate(seed, identity).to_vec();
            set_base_offset(&mut expected, offset).expect("set base offset");
            assert!(
                batch[..] == expected[..],
                "batch at offset {offset} ({identity:?}) is not the batch its child generated"
            );
            let next = offset + i64::from(header.last_offset_delta.get()) + 1;
            batches.insert(offset, (identity, batch));
            offset = next;
        }
    }
    assert_eq!(offset, log.log_end_offset(), "read up to the log end");
    batches
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let seed = std::env::var(SEED_VAR).map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        },
        |text| text.parse().expect("WEIR_CRASH_SEED is a number"),
    );
    println!("crash_sigkill seed {seed} (replay with {SEED_VAR}={seed})");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let log_dir = dir.path().join("partition");

    let mut acks: Vec<Ack> = Vec::new();
    let mut fsyncs_total = 0;
    for round in 0..ROUNDS {
        let kill_after_lines = rng.range(KILL_AFTER_LINES_MIN, KILL_AFTER_LINES_MAX);
        let report = run_child(&log_dir, seed, round, kill_after_lines);
        println!(
            "round {round}: killed after {kill_after_lines} lines; {} acks, {} fdatasyncs, \
             {} appends in flight at the kill",
            report.acks.len(),
            report.fsyncs,
            report.inflight_at_kill
        );
        assert!(
            report.inflight_at_kill >= INFLIGHT_AT_KILL_MIN,
            "round {round}: only {} appends in flight at the kill",
            report.inflight_at_kill
        );
        for ack in &report.acks {
            assert_eq!(
                ack.hash,
                content_hash(&generate(seed, ack.identity)),
                "the parent regenerates what the child appended"
            );
        }
        fsyncs_total += report.fsyncs;
        acks.extend(report.acks);
    }
    assert!(
        acks.len() as u64 >= 2 * fsyncs_total,
        "group commit: {} acks took {fsyncs_total} fdatasyncs",
        acks.len()
    );

    let batches = LocalExecutorBuilder::default()
        .spawn(move || async move {
            let log = PartitionLog::open(&log_dir, crash_config())
                .await
                .expect("open crashed log");
            let batches = recovered_batches(&log, seed).await;
            log.close().await.expect("close");
            batches
        })
        .expect("executor")
        .join()
        .expect("executor thread");

    for ack in &acks {
        let Some((identity, batch)) = batches.get(&ack.base_offset) else {
            panic!("acknowledged append lost: {ack:?}");
        };
        assert_eq!(*identity, ack.identity, "another batch at {ack:?}");
        assert_eq!(batch.len(), ack.size_bytes as usize, "size of {ack:?}");
        assert_eq!(content_hash(batch), ack.hash, "content of {ack:?}");
    }
    println!(
        "{} acknowledged appends checked; the log holds {} batches",
        acks.len(),
        batches.len()
    );
}
