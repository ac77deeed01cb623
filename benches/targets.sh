#!/usr/bin/env bash
# targets.sh: Weir's performance targets as ratios against limits measured in the same run.
#
#   bash benches/targets.sh
#
# Builds the release binaries, starts a release weir-broker on ephemeral ports (a scratch data
# directory, --ready-file, all allowed cores unless WEIR_TARGETS_CORES, default settings), and
# runs, in order:
#
#   tcp-copy (before)   plain loopback socket copy of 2 GiB (benches/src/bin/tcp_copy.rs)
#   produce-never       weir bench: 1 producer, 1 partition, flush=never, 1 KiB messages,
#                       batches of at most 1 MiB (about 1,000 records), produce only
#   fio (before)        fio's fdatasync'd sequential write, the flags of benches/src/fio.rs
#   produce-always      as produce-never with flush=always
#   fio (after)
#   produce-consume     as produce-never with one consumer reading while the producer writes
#                       (shown, not a target: it is bound by the produce side)
#   tcp-copy (after)
#   half-rate           as produce-consume, open loop at half of produce-never's records/s, with
#                       --linger-ms 1: a 5 ms linger alone puts p50 above the 2 ms target
#   consume-fill        on a second broker with a tail cache of WEIR_TARGETS_TAIL_CACHE_BYTES:
#                       produce WEIR_TARGETS_CONSUME_MESSAGES into a kept topic (not a target)
#   consume             weir bench --read-existing: one consumer alone reads that topic from its
#                       start, from the tail cache
#   cpu-1, cpu-1000     produce only, open loop at WEIR_TARGETS_CPU_RATE messages/s in all,
#                       1 and 1,000 partitions (one producer rotating over all of them), batches
#                       of at most WEIR_TARGETS_CPU_BATCH_RECORDS records and a 2 s linger, so
#                       both runs send batches of the same size; on a third broker started with
#                       8 MiB segments (preallocated per partition)
#
# then prints one line per target: `measured / limit = ratio (target ...) met|missed`.
# Limits measured twice (tcp-copy, fio) are the mean of the two runs; the drift is printed.
# Every weir bench run's table, JSON and the broker's log stay in the scratch directory until
# the script exits; the broker and the scratch directory are removed on exit (trap), also on
# error. Needs cargo, fio and python3 (JSON and TOML are read with python3; jq is not needed).
#
# Settings (environment):
#   WEIR_TARGETS_DIR        parent of the scratch directory: the disk fio and the broker use
#                           [default: the system temporary directory]
#   WEIR_TARGETS_CORES      broker shards [default: all allowed cores]
#   WEIR_TARGETS_MESSAGES   messages of the closed-loop flush=never runs [default: 2000000]
#   WEIR_TARGETS_DURABLE_MESSAGES  messages of the flush=always run; fio writes as many
#                           bytes [default: 1000000]
#   WEIR_TARGETS_OPEN_S     seconds of each open-loop run [default: 10]
#   WEIR_TARGETS_CONSUME_MESSAGES  messages the consumer-alone run reads [default: 1000000]
#   WEIR_TARGETS_TAIL_CACHE_BYTES  the consume broker's tail cache per shard; must hold
#                           the consume run's topic [default: 1342177280]
#   WEIR_TARGETS_CPU_RATE   messages/s of both CPU runs [default: 40000]
#   WEIR_TARGETS_CPU_BATCH_RECORDS  records per batch in both CPU runs [default: 40]
#   WEIR_TARGETS_CPU_SEGMENT_BYTES  segment size of the CPU runs' broker: every partition's
#                           active segment is preallocated to it [default: 8388608]
#   WEIR_TARGETS_TCP_MIB    MiB of each tcp-copy [default: 2048]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

messages=${WEIR_TARGETS_MESSAGES:-2000000}
durable_messages=${WEIR_TARGETS_DURABLE_MESSAGES:-1000000}
open_s=${WEIR_TARGETS_OPEN_S:-10}
consume_messages=${WEIR_TARGETS_CONSUME_MESSAGES:-1000000}
tail_cache_bytes=${WEIR_TARGETS_TAIL_CACHE_BYTES:-1342177280}
cpu_rate=${WEIR_TARGETS_CPU_RATE:-40000}
cpu_batch_records=${WEIR_TARGETS_CPU_BATCH_RECORDS:-40}
# A batch holds at most this many 1 KiB bench records: the producer reserves 61 bytes of batch
# header and at most 1024 + 36 bytes of framing and value, plus the key, per record.
cpu_batch_bytes=$((61 + cpu_batch_records * 1075))
tcp_mib=${WEIR_TARGETS_TCP_MIB:-2048}
message_bytes=1024
batch_bytes_max=1048576
many_partitions=1000
cpu_segment_bytes=${WEIR_TARGETS_CPU_SEGMENT_BYTES:-8388608}
ready_timeout_s=60

echo "targets.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

cargo build --release -p weir-benches -p weir-broker -p weir-tools >&2
bin="$root/target/release"

scratch=$(mktemp -d "${WEIR_TARGETS_DIR:-${TMPDIR:-/tmp}}/weir-targets-XXXXXX")
broker_pid=""
cleanup() {
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Reads one value from a JSON file by a dotted path (`summary.produce.records_per_s`).
json_get() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value[key]
print(value)
EOF
}

# --- the broker -----------------------------------------------------------------------------
# start_broker NAME FLAGS...: a broker with its data in $scratch/NAME; sets listen, ready and
# broker_pid. stop_broker: stops it and removes its data.
cores_flag=()
if [[ -n "${WEIR_TARGETS_CORES:-}" ]]; then
    cores_flag=(--cores "$WEIR_TARGETS_CORES")
fi
start_broker() {
    local name=$1
    shift
    ready="$scratch/$name-ready.toml"
    "$bin/weir-broker" --data-dir "$scratch/$name" --listen 127.0.0.1:0 \
        --metrics-listen 127.0.0.1:0 --ready-file "$ready" "${cores_flag[@]}" "$@" \
        >"$scratch/$name.log" 2>&1 &
    broker_pid=$!
    local deadline=$((SECONDS + ready_timeout_s))
    until [[ -s "$ready" ]]; do
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            echo "weir-broker exited before it was ready:" >&2
            tail -c 4000 "$scratch/$name.log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "weir-broker not ready after ${ready_timeout_s} s" >&2
            exit 1
        fi
        sleep 0.1
    done
    local ready_pid shard_count
    read -r listen ready_pid shard_count < <(python3 - "$ready" <<'EOF'
import sys, tomllib
ready = tomllib.load(open(sys.argv[1], "rb"))
print(ready["listen"], ready["pid"], len(ready["shards"]))
EOF
)
    echo "broker $name: pid $ready_pid, $shard_count shards, listen $listen${*:+, $*}"
}
stop_broker() {
    kill "$broker_pid"
    wait "$broker_pid" || true
    broker_pid=""
    rm -rf "$scratch/broker-"*/
}

# --- the runs -------------------------------------------------------------------------------
# Runs weir bench as `bench NAME OPTIONS...`: table in NAME.txt, JSON in NAME.json, and one
# line of figures on stdout.
bench() {
    local name=$1
    shift
    "$bin/weir" --broker "$listen" bench --ready-file "$ready" --quiet \
        --message-bytes "$message_bytes" --json "$scratch/$name.json" "$@" \
        >"$scratch/$name.txt" 2>&1 || {
        echo "weir bench $name failed:" >&2
        tail -c 4000 "$scratch/$name.txt" >&2
        exit 1
    }
    python3 - "$scratch/$name.json" "$name" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
summary, histograms = report["summary"], report["histograms"]
options = report["config"]["options"]
parts = [f"{sys.argv[2]}: {report['config']['partitions']} partition(s), flush={report['config']['flush']}"]
if options["read_existing"]:
    parts.append("read existing")
else:
    parts += [f"rate={options['rate'] or 'closed loop'}, linger {options['linger_ms']} ms, "
              f"batch <= {options['batch_bytes_max']} B",
              f"produce {summary['produce']['messages']} msgs {summary['produce']['megabytes_per_s']:.1f} MB/s "
              f"{summary['produce']['records_per_s']:.0f} rec/s"]
if summary.get("consume"):
    parts.append(f"consume {summary['consume']['messages']} msgs {summary['consume']['megabytes_per_s']:.1f} MB/s")
if histograms.get("end_to_end"):
    e2e = histograms["end_to_end"]
    parts.append(f"e2e p50 {e2e['p50_us'] / 1e3:.2f} ms p99 {e2e['p99_us'] / 1e3:.2f} ms")
broker = summary["broker"]
parts.append(f"broker CPU {broker['cpu_s_per_million_records']:.2f} s/M records")
parts.append(f"generator CPU {summary['generator_cpu_s']:.2f} s")
if broker.get("cpu_wait_s") is not None and summary.get("generator_cpu_wait_s") is not None:
    parts.append(f"waited for a CPU: broker {broker['cpu_wait_s']:.2f} s, generator {summary['generator_cpu_wait_s']:.2f} s")
machine = summary.get("machine_cpu")
if machine is not None:
    parts.append(f"machine idle {machine['idle_s']:.2f} s, steal {machine['steal_s']:.2f} s")
parts.append(f"forwarded {broker['forwarded_requests_delta']:.0f}")
print("  " + ", ".join(parts))
EOF
}

tcp_copy() {
    "$bin/tcp_copy" --total-mib "$tcp_mib" --json "$scratch/$1.json" | sed -n 's/^/  /; /tcp-copy:/p'
}

fio_write() {
    local bytes=$((durable_messages * message_bytes))
    local file="$scratch/fio.tmp"
    fio --name=seq --filename="$file" --size="$bytes" --bs=1M --rw=write --direct=1 \
        --ioengine=io_uring --iodepth=4 --fdatasync=16 --output-format=json \
        >"$scratch/$1.json"
    rm -f "$file"
    python3 - "$scratch/$1.json" "$1" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
write = json.loads(text[text.index("{"):])["jobs"][0]["write"]
print(f"  {sys.argv[2]}: {write['io_bytes'] / 2**20:.0f} MiB in {write['runtime']} ms = {write['bw_bytes'] / 1e6:.1f} MB/s")
EOF
}

echo "runs (1 KiB messages, 1 producer, acks=leader; batch-bytes-max 1 MiB and linger 5 ms unless shown):"
start_broker broker-default
tcp_copy tcp-before
big=(--batch-bytes-max "$batch_bytes_max" --producers 1)
bench produce-never "${big[@]}" --partitions 1 --flush never --consumers 0 --messages "$messages"
fio_write fio-before
bench produce-always "${big[@]}" --partitions 1 --flush always --consumers 0 \
    --messages "$durable_messages"
fio_write fio-after
bench produce-consume "${big[@]}" --partitions 1 --flush never --consumers 1 \
    --messages "$messages"
tcp_copy tcp-after
max_records_per_s=$(json_get "$scratch/produce-never.json" summary.produce.records_per_s)
half_rate=$(python3 -c "import sys; print(max(1, int(float(sys.argv[1]) / 2)))" "$max_records_per_s")
bench half-rate "${big[@]}" --linger-ms 1 --partitions 1 --flush never --consumers 1 \
    --rate "$half_rate" --messages $((half_rate * open_s))
# A consumer alone reads a topic written before it starts, held whole in the tail cache.
stop_broker
start_broker broker-tail-cache --tail-cache-bytes-max "$tail_cache_bytes"
bench consume-fill "${big[@]}" --partitions 1 --flush never --consumers 0 \
    --messages "$consume_messages" --keep-topic
consume_topic=$(json_get "$scratch/consume-fill.json" config.topic)
bench consume --topic "$consume_topic" --read-existing --consumers 1
# The active segment of every partition is preallocated to the segment size, 1 GiB by default:
# 1,000 of them would need 1 TB. Both CPU runs use a broker with small segments. The unacked
# bound must hold every record lingering in 1,000 partitions' open batches.
stop_broker
start_broker broker-small-segments --default-segment-bytes-max "$cpu_segment_bytes"
small=(--batch-bytes-max "$cpu_batch_bytes" --linger-ms 2000 --unacked-messages-max 1000000)
bench cpu-1 "${small[@]}" --producers 1 --partitions 1 --flush never --consumers 0 \
    --rate "$cpu_rate" --messages $((cpu_rate * open_s))
bench "cpu-$many_partitions" "${small[@]}" --producers 1 --partitions "$many_partitions" \
    --flush never --consumers 0 --rate "$cpu_rate" --messages $((cpu_rate * open_s))

# --- the targets ----------------------------------------------------------------------------
echo "targets:"
python3 - "$scratch" "$many_partitions" <<'EOF'
import json, os, sys
scratch, many = sys.argv[1], sys.argv[2]
def load(name):
    return json.load(open(os.path.join(scratch, name + ".json")))
def fio_mb_s(name):
    text = open(os.path.join(scratch, name + ".json")).read()
    return json.loads(text[text.index("{"):])["jobs"][0]["write"]["bw_bytes"] / 1e6
def mean_with_drift(before, after):
    return (before + after) / 2, (after - before) / before * 100

def line(what, measured, limit, unit, at_least, target):
    ratio = measured / limit
    met = ratio >= target if at_least else ratio <= target
    sign = ">=" if at_least else "<="
    print(f"{what}: {measured:.2f} {unit} / {limit:.2f} {unit} = {ratio:.2f} "
          f"(target {sign} {target:.2f}) {'met' if met else 'missed'}")

tcp, tcp_drift = mean_with_drift(load("tcp-before")["megabytes_per_second"],
                                 load("tcp-after")["megabytes_per_second"])
fio, fio_drift = mean_with_drift(fio_mb_s("fio-before"), fio_mb_s("fio-after"))
print(f"  limits: tcp-copy mean {tcp:.1f} MB/s (drift {tcp_drift:+.1f}%), "
      f"fio mean {fio:.1f} MB/s (drift {fio_drift:+.1f}%)")
runs = ["produce-never", "produce-always", "produce-consume", "half-rate", "consume-fill", "consume",
        "cpu-1", f"cpu-{many}"]
reports = {name: load(name) for name in runs}
summary = {name: report["summary"] for name, report in reports.items()}

line("produce flush=never MB/s vs tcp-copy",
     summary["produce-never"]["produce"]["megabytes_per_s"], tcp, "MB/s", True, 0.5)
line("produce flush=always MB/s vs fio",
     summary["produce-always"]["produce"]["megabytes_per_s"], fio, "MB/s", True, 0.6)
line("consume (one consumer alone, tail cache) MB/s vs tcp-copy",
     summary["consume"]["consume"]["megabytes_per_s"], tcp, "MB/s", True, 0.6)
half = reports["half-rate"]
line(f"end-to-end p99 at {half['config']['options']['rate']} msg/s (half of max) vs 2 ms",
     half["histograms"]["end_to_end"]["p99_us"] / 1e3, 2.0, "ms", False, 1.0)
cpu_options = reports["cpu-1"]["config"]["options"]
line(f"broker CPU per record, {many} partitions vs 1, {cpu_options['rate']} msg/s, "
     f"batches <= {cpu_options['batch_bytes_max']} B",
     summary[f"cpu-{many}"]["broker"]["cpu_s_per_million_records"],
     summary["cpu-1"]["broker"]["cpu_s_per_million_records"], "s/M", False, 1.25)
forwarded = [summary[name]["broker"]["forwarded_requests_delta"] for name in runs]
total = sum(forwarded)
print(f"forwarded requests, every run: {' + '.join(f'{value:.0f}' for value in forwarded)} = "
      f"{total:.0f} (target = 0) {'met' if total == 0 else 'missed'}")
EOF
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
