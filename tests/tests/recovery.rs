//! Recovery from damaged segment files, written on purpose while the broker is down: a bit flip
//! in the last batch (CRC mismatch), a torn last batch (its second half zeroed, as a partial
//! write leaves it), and a torn batch header after the last whole batch.
//!
//! After a SIGKILL, the damage and a restart, each partition must hold exactly the whole, valid
//! batches before the damage — served unchanged, never the damaged bytes — and the next append
//! must continue at the offset after the last batch kept.

use std::path::{Path, PathBuf};

use weir_proto::batch::{BatchIter, BatchLimits};
use weir_proto::wire::{ErrorCode, FlushPolicy, TopicId};
use weir_tests::wire::{build_values_batch, StoredRecord};
use weir_tests::{BrokerProcess, WireClient};

const BATCHES: usize = 6;
const RECORDS_PER_BATCH: usize = 5;

/// How a segment file is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// One byte of the last batch's last record flipped.
    FlipInLastBatch,
    /// The second half of the last batch zeroed.
    TornLastBatch,
    /// The first 30 bytes of a copy of the last batch written after it.
    TornHeaderAfterLast,
}

impl Damage {
    /// Batches that survive recovery.
    fn batches_kept(self) -> usize {
        match self {
            Damage::FlipInLastBatch | Damage::TornLastBatch => BATCHES - 1,
            Damage::TornHeaderAfterLast => BATCHES,
        }
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The first segment file of the only partition of topic `name`.
fn first_segment(data_dir: &Path, name: &str) -> PathBuf {
    let segments: Vec<PathBuf> = files_under(data_dir)
        .into_iter()
        .filter(|path| {
            path.file_name().and_then(|n| n.to_str()) == Some("00000000000000000000.log")
                && path.components().any(|part| {
                    part.as_os_str()
                        .to_string_lossy()
                        .ends_with(&format!("-{name}"))
                })
        })
        .collect();
    assert_eq!(
        segments.len(),
        1,
        "exactly one first segment of topic {name} under {}: {segments:?}",
        data_dir.display()
    );
    segments.into_iter().next().expect("one segment")
}

/// `(position, size)` of every whole, valid batch at the start of `bytes`.
fn batch_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut position = 0;
    for batch in BatchIter::new(bytes, &BatchLimits::default()) {
        let Ok((_, batch)) = batch else { break };
        spans.push((position, batch.len()));
        position += batch.len();
    }
    spans
}

fn damage(path: &Path, damage: Damage) {
    let mut bytes =
        std::fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let spans = batch_spans(&bytes);
    assert_eq!(
        spans.len(),
        BATCHES,
        "{} holds the {BATCHES} batches produced, from byte 0",
        path.display()
    );
    let (last_position, last_size) = spans[BATCHES - 1];
    let end = last_position + last_size;
    match damage {
        Damage::FlipInLastBatch => bytes[end - 1] ^= 0x5a,
        Damage::TornLastBatch => bytes[last_position + last_size / 2..end].fill(0),
        Damage::TornHeaderAfterLast => {
            let copy = bytes[last_position..last_position + 30].to_vec();
            if bytes.len() < end + 30 {
                bytes.resize(end + 30, 0);
            }
            bytes[end..end + 30].copy_from_slice(&copy);
        }
    }
    std::fs::write(path, &bytes)
        .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

#[test]
fn damaged_segment_tails_are_cut_at_the_last_whole_batch() {
    let cases = [
        ("flip-in-last", Damage::FlipInLastBatch),
        ("torn-last", Damage::TornLastBatch),
        ("torn-header-after", Damage::TornHeaderAfterLast),
    ];
    let mut broker = BrokerProcess::start_with_cores(1);
    let mut client = WireClient::connect_and_handshake(broker.addresses().listen);
    let mut written: Vec<(TopicId, Vec<StoredRecord>)> = Vec::new();
    for (name, _) in cases {
        let topic_id = client.create_topic(name, 1, FlushPolicy::Always);
        let mut records = Vec::new();
        for batch in 0..BATCHES {
            let values: Vec<String> = (0..RECORDS_PER_BATCH)
                .map(|index| format!("{name}-{batch}-{index}"))
                .collect();
            let result = client.produce(topic_id, 0, build_values_batch(&values));
            assert_eq!(
                result.error_code,
                ErrorCode::None,
                "{}",
                result.error_message
            );
            for value in values {
                records.push(StoredRecord {
                    offset: records.len() as i64,
                    key: None,
                    value: Some(value.into_bytes()),
                });
            }
        }
        assert!(client.read_partition(topic_id, 0, 0) == records);
        written.push((topic_id, records));
    }
    drop(client);

    broker.kill_9();
    for (name, how) in cases {
        damage(&first_segment(broker.data_dir(), name), how);
    }
    broker.restart();

    let mut client = WireClient::connect_and_handshake(broker.addresses().listen);
    for ((name, how), (topic_id, records)) in cases.iter().zip(&written) {
        let kept = &records[..how.batches_kept() * RECORDS_PER_BATCH];
        let found = client.read_partition(*topic_id, 0, 0);
        assert!(
            found == kept,
            "{name} ({how:?}): {} records served after recovery, {} expected (the whole \
             batches before the damage)",
            found.len(),
            kept.len()
        );
        let next = client.produce(*topic_id, 0, build_values_batch(&["after recovery"]));
        assert_eq!(
            next.error_code,
            ErrorCode::None,
            "{name}: {}",
            next.error_message
        );
        assert_eq!(
            next.base_offset,
            kept.len() as i64,
            "{name}: appends continue right after the last batch kept"
        );
        let found = client.read_partition(*topic_id, 0, 0);
        assert_eq!(found.len(), kept.len() + 1, "{name}");
        assert_eq!(
            found.last().and_then(|r| r.value.as_deref()),
            Some(&b"after recovery"[..])
        );
    }
}
