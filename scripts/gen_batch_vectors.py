#!/usr/bin/env python3
"""Write Kafka RecordBatch v2 interop vectors for weir-proto's batch tests.

Each vector is built with kafka-python's own encoder (DefaultRecordBatchBuilder, magic 2, no
compression) and written to proto/testdata/batches/NAME.bin, with NAME.json holding what a reader
must find in it: the header fields and every record's offset, timestamp, key, value and headers
(bytes as lowercase hex, null as JSON null). Before writing, the script decodes each batch again
with kafka-python's DefaultRecordBatch and checks it against the JSON, so a vector never disagrees
with the reference implementation.

A gzip-compressed vector shows that compressed batches pass through: weir-proto validates their
header and CRC without decoding the records.

It also checks the other direction: every proto/testdata/batches/weir_*.bin (batches written by
weir-proto's BatchBuilder, see docs/BATCH_FORMAT.md) must decode with kafka-python, pass its CRC
check, and match its JSON.

Finally it refreshes the fuzz seed corpus proto/fuzz/corpus/batch/: every vector, plus a few
derived inputs (concatenated batches, a buffer cut inside a batch, a log-append-time batch).

Usage (from anywhere; rerunnable, output is deterministic):
    pip install kafka-python
    python3 scripts/gen_batch_vectors.py
"""

import json
import pathlib
import struct
import sys

from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.util import calc_crc32c

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "proto" / "testdata" / "batches"
CORPUS_DIR = ROOT / "proto" / "fuzz" / "corpus" / "batch"
CODEC_GZIP = 1
BATCH_BYTES_MAX = 4 * 1024 * 1024
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z in milliseconds

# Header field layout, big-endian: baseOffset, batchLength, partitionLeaderEpoch, magic, crc,
# attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId, producerEpoch,
# baseSequence, recordsCount.
HEADER = struct.Struct(">qiibIhiqqqhii")
assert HEADER.size == 61


def pattern(size, seed):
    """Deterministic bytes that are not all alike, so misplaced slices are caught."""
    return bytes((seed + i * 31 + (i >> 8)) & 0xFF for i in range(size))


def vectors():
    """Each vector: name, producer state, transactional flag, stamped offset and epoch, records.

    A record is (timestamp, key, value, headers) with headers as [(str key, bytes or None)].
    """
    yield dict(
        name="simple",
        records=[
            (T0, b"key-0", b"value-0", []),
            (T0 + 1, b"key-1", b"value-1", []),
            (T0 + 2, b"key-2", b"value-2", []),
        ],
    )
    yield dict(
        name="idempotent_headers",
        producer=(123_456_789, 7, 1_000),
        records=[
            (T0, b"order-17", b'{"qty":3}', [("trace-id", b"abc123"), ("empty", b"")]),
            (T0 + 10, b"order-18", b'{"qty":1}', [("null-value", None)]),
            (T0 + 20, None, b"no key", [("caf\u00e9", b"\xff\x00\x01"), ("dup", b"1"), ("dup", b"2")]),
        ],
    )
    yield dict(
        name="null_key_empty_value",
        records=[
            (T0, None, b"", []),
            (T0, b"", None, []),
            (T0, None, None, []),
            (T0, b"", b"", []),
        ],
    )
    yield dict(
        name="large_record",
        records=[
            (T0, b"big", pattern(70_000, 7), [("h", pattern(300, 1))]),
            (T0 + 5, b"small", b"x", []),
        ],
    )
    yield dict(
        name="varied_timestamps",
        records=[
            (T0, b"a", b"first", []),
            (T0 - 86_400_000, b"b", b"a day earlier", []),
            (T0 + 3_600_000_123, b"c", b"much later", []),
            (0, b"d", b"epoch", []),
            (T0 + 1, b"e", b"just after", []),
        ],
    )
    yield dict(
        name="many_records",
        producer=(42, 0, 2_147_483_000),
        records=[(T0 + i, b"k%d" % i, pattern(i % 50, i), []) for i in range(300)],
    )
    yield dict(
        name="transactional",
        producer=(9_001, 3, 0),
        transactional=True,
        records=[(T0, b"tx", b"in a transaction", [])],
    )
    yield dict(
        name="compressed_gzip",
        compression=CODEC_GZIP,
        records=[(T0 + i, b"same-key", b"a value that repeats " * 8, []) for i in range(20)],
    )
    yield dict(
        name="stamped_offset",
        base_offset=1_000_000_007,
        leader_epoch=12,
        records=[(T0, b"k", b"v%d" % i, []) for i in range(3)],
    )


def build(vector):
    producer_id, producer_epoch, base_sequence = vector.get("producer", (-1, -1, -1))
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=vector.get("compression", 0),
        is_transactional=vector.get("transactional", False),
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=BATCH_BYTES_MAX,
    )
    for offset_delta, (timestamp, key, value, headers) in enumerate(vector["records"]):
        if builder.append(offset_delta, timestamp, key, value, headers) is None:
            raise SystemExit(f"{vector['name']}: record {offset_delta} did not fit")
    batch = bytearray(builder.build())
    codec = struct.unpack_from(">h", batch, 21)[0] & 0x07
    if codec != vector.get("compression", 0):
        raise SystemExit(f"{vector['name']}: kafka-python wrote codec {codec}")
    if codec == CODEC_GZIP:
        # The gzip header holds the compression time (bytes 4-7): zero it so reruns write the
        # same bytes, and reseal the CRC it is covered by.
        assert batch[61:63] == b"\x1f\x8b", "gzip member at the start of the records"
        batch[65:69] = bytes(4)
        reseal(batch)
    # baseOffset and partitionLeaderEpoch are outside the CRC: stamp them as a broker would.
    struct.pack_into(">q", batch, 0, vector.get("base_offset", 0))
    struct.pack_into(">i", batch, 12, vector.get("leader_epoch", 0))
    return bytes(batch)


def hex_or_null(data):
    return None if data is None else bytes(data).hex()


def describe(batch):
    """The JSON view of a batch: its header, and its records as kafka-python decodes them."""
    fields = HEADER.unpack_from(batch)
    (base_offset, batch_length, leader_epoch, magic, crc, attributes, last_offset_delta,
     base_timestamp, max_timestamp, producer_id, producer_epoch, base_sequence,
     records_count) = fields
    assert magic == 2
    assert batch_length + 12 == len(batch)
    decoded = DefaultRecordBatch(batch)
    assert decoded.validate_crc(), "kafka-python rejects the CRC"
    records = [
        dict(
            offset=record.offset,
            timestamp=record.timestamp,
            key=hex_or_null(record.key),
            value=hex_or_null(record.value),
            headers=[[key.encode("utf-8").hex(), hex_or_null(value)] for key, value in record.headers],
        )
        for record in decoded
    ]
    return dict(
        base_offset=base_offset,
        size_bytes=len(batch),
        partition_leader_epoch=leader_epoch,
        crc=crc,
        attributes=attributes,
        last_offset_delta=last_offset_delta,
        base_timestamp=base_timestamp,
        max_timestamp=max_timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        records_count=records_count,
        records=records,
    )


def expected(vector, batch):
    """The JSON view computed from the inputs alone, to compare with what kafka-python reads."""
    base_offset = vector.get("base_offset", 0)
    timestamps = [timestamp for timestamp, _, _, _ in vector["records"]]
    return [
        dict(
            offset=base_offset + delta,
            timestamp=timestamp,
            key=hex_or_null(key),
            value=hex_or_null(value),
            headers=[[name.encode("utf-8").hex(), hex_or_null(data)] for name, data in headers],
        )
        for delta, (timestamp, key, value, headers) in enumerate(vector["records"])
    ], max(timestamps)


def to_json(view):
    """Pretty JSON with one record per line, so diffs of regenerated vectors stay readable."""
    lines = ["{"]
    for key, value in view.items():
        if key != "records":
            lines.append(f' "{key}": {json.dumps(value)},')
    records = [f"  {json.dumps(record, separators=(', ', ': '))}" for record in view["records"]]
    lines.append(' "records": [')
    lines.append(",\n".join(records))
    lines.append(" ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == view
    return text


def write_vectors():
    for vector in vectors():
        batch = build(vector)
        view = describe(batch)
        records, max_timestamp = expected(vector, batch)
        assert view["records"] == records, f"{vector['name']}: kafka-python reads other records"
        assert view["max_timestamp"] == max_timestamp, f"{vector['name']}: maxTimestamp"
        assert view["records_count"] == len(records)
        name = vector["name"]
        (OUT_DIR / f"{name}.bin").write_bytes(batch)
        (OUT_DIR / f"{name}.json").write_text(to_json(view))
        print(f"wrote {name}.bin ({len(batch)} bytes, {len(records)} records)")


def check_weir_built():
    """Batches written by weir-proto's BatchBuilder must read the same in kafka-python."""
    checked = 0
    for path in sorted(OUT_DIR.glob("weir_*.bin")):
        batch = path.read_bytes()
        want = json.loads(path.with_suffix(".json").read_text())
        got = describe(batch)
        if got != want:
            raise SystemExit(f"{path.name}: kafka-python reads {got} but the JSON says {want}")
        checked += 1
        print(f"kafka-python reads {path.name} as its JSON says")
    return checked


def reseal(batch):
    """Recomputes the CRC of a bytearray batch after an edit of its covered bytes."""
    struct.pack_into(">I", batch, 17, calc_crc32c(bytes(batch[21:])))


def write_corpus():
    """Seeds for the `batch` fuzz target: every vector and a few inputs derived from them."""
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    vectors = {path.stem: path.read_bytes() for path in sorted(OUT_DIR.glob("*.bin"))}
    seeds = {f"vector_{name}": batch for name, batch in vectors.items()}
    three = vectors["simple"] + vectors["idempotent_headers"] + vectors["null_key_empty_value"]
    seeds["concat_three"] = three
    seeds["concat_cut_inside_third"] = three[: len(three) - 7]
    seeds["concat_cut_inside_prefix"] = vectors["simple"] + vectors["transactional"][:9]
    log_append = bytearray(vectors["varied_timestamps"])
    struct.pack_into(">h", log_append, 21, 0x08)
    reseal(log_append)
    seeds["log_append_time"] = bytes(log_append)
    for name, data in seeds.items():
        (CORPUS_DIR / name).write_bytes(data)
    print(f"wrote {len(seeds)} seeds to {CORPUS_DIR.relative_to(ROOT)}")


def main():
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_vectors()
    if check_weir_built() == 0:
        print("no weir_*.bin found: run `WEIR_WRITE_VECTORS=1 cargo test -p weir-proto --test "
              "batch_vectors` first to check the reverse direction", file=sys.stderr)
    write_corpus()


if __name__ == "__main__":
    main()
