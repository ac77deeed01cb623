//! Interop vectors: batches written by kafka-python (the reference encoder) must decode to
//! exactly what their JSON says, and BatchBuilder must write the same bytes for the same records.
//! Batches written by BatchBuilder (`weir_*.bin`) are checked in too, so that
//! `scripts/gen_batch_vectors.py` can prove kafka-python reads them; this test keeps them equal
//! to what the builder writes today. `WEIR_WRITE_VECTORS=1` rewrites them.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use weir_proto::batch::{
    records, set_base_offset, set_partition_leader_epoch, validate_batch, BatchBuilder, BatchError,
    BatchInfo, BatchIter, BatchLimits, Compression,
};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/batches")
}

/// Every vector as (name, batch bytes, expected JSON), sorted by name.
fn load_vectors() -> Vec<(String, Vec<u8>, Value)> {
    let mut names: Vec<String> = fs::read_dir(vectors_dir())
        .expect("testdata/batches exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let dir = vectors_dir();
            let bytes = fs::read(dir.join(format!("{name}.bin"))).expect("vector .bin");
            let text = fs::read_to_string(dir.join(format!("{name}.json"))).expect("vector .json");
            let expected = serde_json::from_str(&text).expect("vector JSON parses");
            (name, bytes, expected)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).expect("hex"))
        .collect()
}

fn nullable_hex(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |bytes| Value::String(hex(bytes)))
}

fn nullable_unhex(value: &Value) -> Option<Vec<u8>> {
    value.as_str().map(unhex)
}

/// The JSON view of a batch, in the same shape as the script writes. The records of a
/// compressed batch are left out: Weir passes them through without decoding them.
fn describe(batch: &[u8]) -> Value {
    let info = validate_batch(batch, &BatchLimits::default()).expect("vector validates");
    let crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
    if info.compression() != Compression::None {
        assert_eq!(
            records(batch).err(),
            Some(BatchError::CompressedRecords(info.compression().code()))
        );
    }
    let records: Vec<Value> = records(batch)
        .into_iter()
        .flatten()
        .map(|record| {
            let record = record.expect("record decodes");
            let headers: Vec<Value> = record
                .headers
                .map(|header| {
                    let (key, value) = header.expect("header decodes");
                    json!([hex(key), nullable_hex(value)])
                })
                .collect();
            json!({
                "offset": record.offset,
                "timestamp": record.timestamp,
                "key": nullable_hex(record.key),
                "value": nullable_hex(record.value),
                "headers": headers,
            })
        })
        .collect();
    json!({
        "base_offset": info.base_offset,
        "size_bytes": info.size_bytes,
        "partition_leader_epoch": info.partition_leader_epoch,
        "crc": crc,
        "attributes": info.attributes,
        "last_offset_delta": info.last_offset_delta,
        "base_timestamp": info.base_timestamp,
        "max_timestamp": info.max_timestamp,
        "producer_id": info.producer_id,
        "producer_epoch": info.producer_epoch,
        "base_sequence": info.base_sequence,
        "records_count": info.records_count,
        "records": records,
    })
}

/// Builds a batch from a vector's JSON records, stamped with its base offset and leader epoch.
fn rebuild(expected: &Value) -> Vec<u8> {
    let field = |name: &str| expected[name].as_i64().expect("integer field");
    let records = expected["records"].as_array().expect("records array");
    let base_timestamp = records[0]["timestamp"].as_i64().expect("timestamp");
    let mut builder = BatchBuilder::new(base_timestamp).producer(
        field("producer_id"),
        field("producer_epoch") as i16,
        field("base_sequence") as i32,
    );
    for record in records {
        let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = record["headers"]
            .as_array()
            .expect("headers array")
            .iter()
            .map(|pair| (unhex(pair[0].as_str().unwrap()), nullable_unhex(&pair[1])))
            .collect();
        let header_refs: Vec<(&[u8], Option<&[u8]>)> = headers
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_deref()))
            .collect();
        builder.push(
            record["timestamp"].as_i64().expect("timestamp"),
            nullable_unhex(&record["key"]).as_deref(),
            nullable_unhex(&record["value"]).as_deref(),
            &header_refs,
        );
    }
    let mut batch = builder.finish();
    set_base_offset(&mut batch, field("base_offset")).unwrap();
    set_partition_leader_epoch(&mut batch, field("partition_leader_epoch") as i32).unwrap();
    batch
}

#[test]
fn every_vector_decodes_to_its_json() {
    let vectors = load_vectors();
    let kafka_python_vectors = vectors
        .iter()
        .filter(|(name, _, _)| !name.starts_with("weir_"))
        .count();
    assert!(
        kafka_python_vectors >= 8,
        "the kafka-python vectors are checked in"
    );
    let mut compressed = 0;
    for (name, bytes, expected) in &vectors {
        let mut expected = expected.clone();
        if expected["attributes"].as_i64().unwrap() & 0x07 != 0 {
            // kafka-python decompressed these records to write the JSON; Weir does not.
            expected["records"] = json!([]);
            compressed += 1;
        }
        assert_eq!(describe(bytes), expected, "vector {name}");
    }
    assert!(compressed >= 1, "a compressed vector is checked in");
}

#[test]
fn builder_writes_the_same_bytes_as_kafka_python() {
    let mut compared = 0;
    for (name, bytes, expected) in load_vectors() {
        // The builder writes attributes 0 only; the transactional vector has bit 4 set.
        if name.starts_with("weir_") || expected["attributes"] != 0 {
            continue;
        }
        assert_eq!(hex(&rebuild(&expected)), hex(&bytes), "vector {name}");
        compared += 1;
    }
    assert!(compared >= 7, "compared {compared} vectors");
}

#[test]
fn batch_iter_walks_all_vectors_concatenated() {
    let vectors = load_vectors();
    let mut buffer = Vec::new();
    for (_, bytes, _) in &vectors {
        buffer.extend_from_slice(bytes);
    }
    let limits = BatchLimits::default();
    let yielded: Vec<(BatchInfo, &[u8])> = BatchIter::new_with_record_walk(&buffer, &limits)
        .map(|item| item.expect("every vector is valid"))
        .collect();
    assert_eq!(yielded.len(), vectors.len());
    for ((info, batch), (name, bytes, expected)) in yielded.iter().zip(&vectors) {
        assert_eq!(*batch, bytes.as_slice(), "vector {name}");
        assert_eq!(
            i64::from(info.records_count),
            expected["records_count"].as_i64().unwrap()
        );
    }
}

/// Batches written by BatchBuilder, for kafka-python to read back in the script.
fn weir_built() -> Vec<(&'static str, Vec<u8>)> {
    let t0 = 1_700_000_000_000;
    let mut mixed = BatchBuilder::new(t0).producer(77, 2, 5);
    mixed.push(
        t0,
        Some(b"k"),
        Some(b"v"),
        &[(b"trace", Some(b"01")), (b"none", None)],
    );
    mixed.push(t0 - 1_000, None, Some(b""), &[]);
    mixed.push(t0 + 60_000, Some(b""), None, &[(b"", Some(b""))]);
    let big: Vec<u8> = (0..20_000u32)
        .map(|index| (index * 7 % 251) as u8)
        .collect();
    mixed.push(t0 + 1, Some(b"big"), Some(&big), &[]);
    for index in 0..100u8 {
        mixed.push(
            t0 + i64::from(index),
            Some(&[index]),
            Some(&[index; 3]),
            &[],
        );
    }
    let mut stamped = BatchBuilder::new(t0);
    stamped.push(t0, Some(b"a"), Some(b"b"), &[]);
    let mut stamped = stamped.finish();
    set_base_offset(&mut stamped, 4_000_000_000).unwrap();
    set_partition_leader_epoch(&mut stamped, 3).unwrap();
    vec![("weir_mixed", mixed.finish()), ("weir_stamped", stamped)]
}

#[test]
fn weir_built_vectors_match_the_builder() {
    let dir = vectors_dir();
    let write = std::env::var_os("WEIR_WRITE_VECTORS").is_some_and(|value| value == "1");
    for (name, batch) in weir_built() {
        if write {
            let json_text = format!("{:#}\n", describe(&batch));
            fs::write(dir.join(format!("{name}.bin")), &batch).unwrap();
            fs::write(dir.join(format!("{name}.json")), &json_text).unwrap();
        }
        let stored = fs::read(dir.join(format!("{name}.bin"))).expect("weir_*.bin checked in");
        assert_eq!(
            hex(&stored),
            hex(&batch),
            "{name}: the builder's output changed"
        );
        let stored_json: Value =
            serde_json::from_str(&fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
                .unwrap();
        assert_eq!(stored_json, describe(&batch), "{name}.json");
    }
}
