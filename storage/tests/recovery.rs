//! Recovery from what a crash or a bad disk leaves behind: torn and corrupt tails of the last
//! segment, garbage after the end, corruption inside a sealed segment, damaged or missing
//! indexes, and a segment whose name disagrees with its first batch.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{base_offset, batch, read_all, run, small_config, stored};
use proptest::prelude::*;
use weir_proto::batch::{BatchIter, BatchLimits};
use weir_storage::{FlushPolicy, LogConfig, OpenError, PartitionLog, ReadError};

/// Offsets of the bytes of a batch that the CRC does not cover and that recovery cannot check
/// on their own: `partitionLeaderEpoch` (bytes 12..16). `baseOffset` (0..8) is checked against
/// the sequence.
const EPOCH_BYTES: std::ops::Range<usize> = 12..16;

fn config() -> LogConfig {
    small_config(FlushPolicy::Always)
}

/// Appends `count` batches of varying sizes; returns what the log stores for each.
fn build_log(path: &Path, count: u8) -> Vec<Bytes> {
    let path = path.to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, config()).await.expect("open");
        let mut expected = Vec::new();
        for tag in 0..count {
            let appended = batch(
                tag,
                usize::from(tag % 3) + 1,
                300 + usize::from(tag) * 7,
                1_000 + i64::from(tag),
            );
            let info = log.append(appended.clone()).await.expect("append");
            expected.push(stored(&appended, info.base_offset));
        }
        log.close().await.expect("close");
        expected
    })
}

/// Segment log files in offset order.
fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    logs.sort();
    logs
}

/// (position, size) of each valid batch at the start of a segment file.
fn batch_positions(file: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(file).expect("read segment");
    let limits = BatchLimits::default();
    let mut positions = Vec::new();
    let mut position = 0;
    for item in BatchIter::new(&bytes, &limits) {
        let Ok((info, _)) = item else { break };
        positions.push((position, info.size_bytes as usize));
        position += info.size_bytes as usize;
    }
    positions
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncate,
    ZeroFrom,
    FlipByte(u8),
    GarbageAfterEnd(u8),
}

fn damage_strategy() -> impl Strategy<Value = (Damage, f64)> {
    (
        prop_oneof![
            Just(Damage::Truncate),
            Just(Damage::ZeroFrom),
            (1u8..=255).prop_map(Damage::FlipByte),
            (1u8..=255).prop_map(Damage::GarbageAfterEnd),
        ],
        0.0f64..1.0,
    )
}

/// Applies `damage` at `position` of the file; returns the position that matters (the first
/// damaged byte).
fn apply(file: &Path, damage: Damage, position: usize, data_end: usize) -> usize {
    let mut bytes = std::fs::read(file).expect("read");
    match damage {
        Damage::Truncate => bytes.truncate(position),
        Damage::ZeroFrom => bytes[position..].fill(0),
        Damage::FlipByte(mask) => bytes[position] ^= mask,
        Damage::GarbageAfterEnd(seed) => {
            let garbage_bytes = 300.min(bytes.len() - data_end);
            for (index, byte) in bytes[data_end..data_end + garbage_bytes]
                .iter_mut()
                .enumerate()
            {
                *byte = seed.wrapping_mul(index as u8 | 1).wrapping_add(7);
            }
            return data_end;
        }
    }
    std::fs::write(file, bytes).expect("write damaged file");
    position
}

/// Reads batch by batch from offset 0, returning the batches served and the error that stopped
/// the reading, if any.
async fn read_until_error(log: &PartitionLog) -> (Vec<Bytes>, Option<ReadError>) {
    let mut batches = Vec::new();
    let mut offset = 0;
    loop {
        match log.read(offset, 1).await {
            Ok(read) if read.batches.is_empty() => return (batches, None),
            Ok(read) => {
                let last = read.batches.last().expect("one batch");
                offset = base_offset(last) + i64::from(common_last_delta(last)) + 1;
                batches.extend(read.batches);
            }
            Err(error) => return (batches, Some(error)),
        }
    }
}

fn common_last_delta(batch: &[u8]) -> i32 {
    weir_proto::batch::BatchHeader::view(batch)
        .expect("header")
        .last_offset_delta
        .get()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Damage anywhere in the last segment: reopening keeps exactly a prefix of the appended
    /// batches, never serves a damaged one, and continues appending at the right offset.
    #[test]
    fn damaged_tail_recovers_a_prefix((damage, fraction) in damage_strategy()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let expected = build_log(&path, 30);
        let last = segment_logs(&path).pop().expect("a segment");
        let positions = batch_positions(&last);
        let data_end = positions.last().map_or(0, |(position, size)| position + size);
        let first_in_last = expected.len() - positions.len();
        let mut position = ((data_end as f64) * fraction) as usize;
        if matches!(damage, Damage::FlipByte(_)) {
            // The leader epoch is outside the CRC by the format's design; see EPOCH_BYTES.
            let (start, _) = *positions.iter().rev().find(|(start, _)| *start <= position).expect("batch");
            if EPOCH_BYTES.contains(&(position - start)) {
                position = start + EPOCH_BYTES.end;
            }
        }
        let damaged_at = apply(&last, damage, position, data_end);
        // Index of the first damaged batch among all batches.
        let damaged_batch = first_in_last
            + positions.iter().take_while(|(start, size)| start + size <= damaged_at).count();
        let base_damaged = damaged_batch == first_in_last
            && matches!(damage, Damage::FlipByte(_))
            && damaged_at < 8;

        let outcome = run(move || async move {
            let log = match PartitionLog::open(&path, config()).await {
                Ok(log) => log,
                Err(error) => return Err(error),
            };
            let (served, error) = read_until_error(&log).await;
            let end = log.log_end_offset();
            let appended = batch(200, 2, 50, 9_000);
            let info = log.append(appended.clone()).await.expect("append after recovery");
            log.close().await.expect("close");
            let log = PartitionLog::open(&path, config()).await.expect("reopen after append");
            let after = read_until_error(&log).await;
            Ok((served, error, end, info.base_offset, stored(&appended, info.base_offset), after))
        });
        match outcome {
            Err(OpenError::Corrupt(corruption)) => {
                // Only a damaged base offset of the segment's first batch is refused outright.
                prop_assert!(base_damaged, "open refused: {corruption}");
                prop_assert_eq!(corruption.path, last);
                prop_assert_eq!(corruption.position, 0);
            }
            Err(other) => prop_assert!(false, "open failed: {other}"),
            Ok((served, error, end, new_offset, new_batch, after)) => {
                prop_assert!(!base_damaged);
                prop_assert_eq!(&served[..], &expected[..served.len()], "served batches are a prefix");
                let cut = error.is_none();
                match error {
                    None => {
                        // Recovery cut the log at the damaged batch.
                        prop_assert_eq!(served.len(), damaged_batch.min(expected.len()));
                    }
                    Some(ReadError::Corrupt(corruption)) => {
                        // The damage is before the last index entry recovery trusted: the
                        // batch is refused when read, never served.
                        prop_assert!(matches!(damage, Damage::FlipByte(_)));
                        prop_assert_eq!(served.len(), damaged_batch);
                        prop_assert_eq!(corruption.path, last.clone());
                        prop_assert_eq!(corruption.position as usize, positions[damaged_batch - first_in_last].0);
                    }
                    Some(other) => prop_assert!(false, "unexpected read error {other}"),
                }
                prop_assert_eq!(new_offset, end, "appends continue at the log end");
                let (after_served, after_error) = after;
                prop_assert_eq!(&after_served[..served.len()], &served[..]);
                if cut {
                    prop_assert!(after_error.is_none());
                    prop_assert_eq!(after_served.len(), served.len() + 1);
                    prop_assert_eq!(after_served.last(), Some(&new_batch));
                }
            }
        }
    }
}

#[test]
fn corruption_in_a_sealed_segment_is_reported_and_nothing_is_touched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let expected = build_log(&path, 40);
    let logs = segment_logs(&path);
    assert!(logs.len() >= 3, "several segments");
    let sealed = logs[0].clone();
    let positions = batch_positions(&sealed);
    let (victim_position, _) = positions[positions.len() / 2];
    let mut bytes = std::fs::read(&sealed).expect("read");
    bytes[victim_position + 40] ^= 0x55;
    std::fs::write(&sealed, &bytes).expect("write");
    let snapshot = snapshot_dir(&path);

    let victim = positions.len() / 2;
    let first_of_next = positions.len();
    for index_missing in [false, true] {
        if index_missing {
            std::fs::remove_file(sealed.with_extension("index")).expect("remove index");
        }
        let path = path.clone();
        let sealed = sealed.clone();
        let expected = expected.clone();
        run(move || async move {
            let log = PartitionLog::open(&path, config())
                .await
                .expect("open: sealed segments are not scanned");
            let (served, error) = read_until_error(&log).await;
            match error {
                Some(ReadError::Corrupt(corruption)) => {
                    assert_eq!(corruption.path, sealed);
                    assert_eq!(corruption.position as usize, victim_position);
                    let message = corruption.to_string();
                    assert!(message.contains("00000000000000000000.log"), "{message}");
                    assert!(message.contains(&victim_position.to_string()), "{message}");
                }
                other => panic!("expected a corruption error, got {other:?}"),
            }
            if !index_missing {
                // The index led straight to batches before the damaged one.
                assert_eq!(&served[..], &expected[..victim]);
            }
            // Later segments are still readable.
            let later = base_offset(&expected[first_of_next]);
            let read = log.read(later, 1).await.expect("read a later segment");
            assert_eq!(read.batches[0], expected[first_of_next]);
            log.close().await.expect("close");
        });
    }
    let mut after = snapshot_dir(&path);
    let mut before = snapshot;
    // Only the removed index differs (it was not rebuilt: the rebuild hit the corruption).
    before.retain(|(name, _)| !name.ends_with("00000000000000000000.index"));
    after.retain(|(name, _)| !name.ends_with("00000000000000000000.index"));
    // The active segment's files are rewritten by recovery (cut and preallocated again) and
    // its index gets the scanned entries; compare the sealed segments only.
    let last = segment_logs(&path)
        .pop()
        .expect("last")
        .file_stem()
        .expect("stem")
        .to_owned();
    let last = last.to_string_lossy().to_string();
    before.retain(|(name, _)| !name.starts_with(&last));
    after.retain(|(name, _)| !name.starts_with(&last));
    assert_eq!(before, after, "sealed segment files untouched");
}

fn snapshot_dir(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_string();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn damaged_or_missing_indexes_are_rebuilt() {
    #[derive(Debug, Clone, Copy)]
    enum IndexDamage {
        Missing,
        Garbage,
        /// Well-formed entries that point at the wrong batches.
        Misleading,
        TimeIndexMissing,
    }
    for damage in [
        IndexDamage::Missing,
        IndexDamage::Garbage,
        IndexDamage::Misleading,
        IndexDamage::TimeIndexMissing,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let expected = build_log(&path, 40);
        let logs = segment_logs(&path);
        // Damage a sealed segment's and the last segment's indexes.
        for log_path in [&logs[0], logs.last().expect("last")] {
            let index = log_path.with_extension("index");
            let time_index = log_path.with_extension("timeindex");
            match damage {
                IndexDamage::Missing => std::fs::remove_file(&index).expect("remove"),
                IndexDamage::TimeIndexMissing => std::fs::remove_file(&time_index).expect("remove"),
                IndexDamage::Garbage => {
                    let length = std::fs::metadata(&index).expect("stat").len() as usize;
                    let garbage: Vec<u8> =
                        (0..length.max(64)).map(|i| (i * 31 + 7) as u8).collect();
                    std::fs::write(&index, garbage).expect("write");
                }
                IndexDamage::Misleading => {
                    let mut bytes = std::fs::read(&index).expect("read");
                    // Move every entry's position forward by one byte, keeping the order.
                    for entry in bytes.chunks_exact_mut(8) {
                        if entry.iter().all(|byte| *byte == 0) {
                            break;
                        }
                        let position = u32::from_be_bytes(entry[4..8].try_into().expect("4"));
                        entry[4..8].copy_from_slice(&(position + 1).to_be_bytes());
                    }
                    std::fs::write(&index, bytes).expect("write");
                }
            }
        }
        let expected_for_run = expected.clone();
        run(move || async move {
            let log = PartitionLog::open(&path, config()).await.expect("open");
            assert_eq!(
                read_all(&log, 0).await,
                expected_for_run,
                "{damage:?}: full read"
            );
            // Point lookups land on the right batch everywhere.
            for batch in &expected_for_run {
                let offset = base_offset(batch);
                let read = log.read(offset, 1).await.expect("point read");
                assert_eq!(&read.batches[0], batch, "{damage:?}: offset {offset}");
            }
            for (tag, batch) in expected_for_run.iter().enumerate() {
                let found = log
                    .offset_for_timestamp(1_000 + tag as i64)
                    .await
                    .expect("time lookup");
                assert_eq!(
                    found,
                    Some(base_offset(batch)),
                    "{damage:?}: timestamp of batch {tag}"
                );
            }
            log.close().await.expect("close");
        });
        // The sealed segment's index was written back.
        let index = logs[0].with_extension("index");
        assert!(index.exists(), "{damage:?}: index rebuilt on disk");
    }
}

#[test]
fn a_segment_whose_name_disagrees_with_its_first_batch_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    build_log(&path, 40);
    let last = segment_logs(&path).pop().expect("last");
    let wrong = path.join(format!("{:020}.log", 999_999));
    std::fs::rename(&last, &wrong).expect("rename");
    let before = std::fs::read(&wrong).expect("read");
    let result = run(move || async move { PartitionLog::open(&path, config()).await.map(|_| ()) });
    match result {
        Err(OpenError::Corrupt(corruption)) => {
            assert!(corruption.path.ends_with("00000000000000999999.log"));
            assert_eq!(corruption.position, 0);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&wrong).expect("read"),
        before,
        "nothing changed"
    );
}

#[test]
fn an_empty_directory_and_leftover_index_files_open_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a").join("b");
    std::fs::create_dir_all(&path).expect("mkdir");
    std::fs::write(path.join(format!("{:020}.index", 77)), [1u8; 16]).expect("orphan");
    let check = path.clone();
    run(move || async move {
        let log = PartitionLog::open(&path, config()).await.expect("open");
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.log_start_offset(), 0);
        log.close().await.expect("close");
    });
    assert!(
        !check.join(format!("{:020}.index", 77)).exists(),
        "orphan index removed"
    );
    assert!(check.join(format!("{:020}.log", 0)).exists());
}

#[test]
fn a_gap_between_sealed_segments_is_reported_when_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let expected = build_log(&path, 80);
    let logs = segment_logs(&path);
    assert!(logs.len() >= 4);
    // Remove the second segment: the first now ends where nothing starts.
    for extension in ["log", "index", "timeindex"] {
        std::fs::remove_file(logs[1].with_extension(extension)).expect("remove");
    }
    let first = logs[0].clone();
    let first_count = batch_positions(&first).len();
    let expected_last = expected.last().cloned().expect("batches");
    run(move || async move {
        let log = PartitionLog::open(&path, config()).await.expect("open");
        match log.read(0, 1).await {
            Err(ReadError::Corrupt(corruption)) => {
                assert_eq!(corruption.path, first);
                assert!(
                    corruption.reason.contains("next segment starts at"),
                    "{corruption}"
                );
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(first_count > 0);
        // The newest data is still served.
        let last_offset = base_offset(&expected_last);
        let read = log.read(last_offset, 1).await.expect("read the tail");
        assert_eq!(read.batches[0], expected_last);
    });
}

#[test]
fn opening_reads_only_the_last_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    build_log(&path, 120);
    let logs = segment_logs(&path);
    let total_bytes: u64 = logs
        .iter()
        .map(|log| std::fs::metadata(log).expect("stat").len())
        .sum();
    let segment_bytes_max = config().segment_bytes_max;
    assert!(logs.len() >= 6 && total_bytes > 4 * segment_bytes_max);
    run(move || async move {
        let (log, plan) = common::open_faulty(&path, config()).await;
        let read_at_open = plan.counts().bytes_read;
        // The last segment (at most its preallocated size) and its two small index files.
        assert!(
            read_at_open <= segment_bytes_max + 4096,
            "open read {read_at_open} bytes of a {total_bytes}-byte log"
        );
        assert_eq!(log.stats().segment_count, logs.len());
        assert_eq!(log.stats().size_bytes, total_bytes_logical(&logs));
    });
}

/// Logical size of the log: sealed files as they are, the last one up to its data.
fn total_bytes_logical(logs: &[PathBuf]) -> u64 {
    let (last, sealed) = logs.split_last().expect("segments");
    let sealed: u64 = sealed
        .iter()
        .map(|log| std::fs::metadata(log).expect("stat").len())
        .sum();
    let data: usize = batch_positions(last).iter().map(|(_, size)| size).sum();
    sealed + data as u64
}
