#!/usr/bin/env bash
# The memory budget soak (run by hand, not in CI): `gauntlet all` with a --memory.limit on a
# fresh data dir, under sustained remote write of many series, high-cardinality range queries
# and StoreAPI Series calls, for DURATION seconds; its resident memory is sampled every second.
# The load is sized to take the process past the limit without the budget (LIMIT=0 shows it).
#
#   perf/soak.sh [DURATION_S]        (default 600)
#
# Environment (all optional):
#   LIMIT=512MiB          the budget (--memory.limit); 0 runs without one, for comparison
#   TARGETS=2000 PODS=8   the generated data set (147 series a target with 8 pods)
#   HOURS=0.25            hours of data the remote-write load replays (shifted forward as it wraps)
#   RW_CONNECTIONS=4 QUERY_CONCURRENCY=2 SERIES_CONCURRENCY=2
#   GAUNTLET_ARGS="..."   more flags for `gauntlet all` (e.g. --query.max-samples=5000000)
#   OUT=DIR               where the CSV, load reports, log and data go (default: a new temp dir)
#   GAUNTLET=PATH GAUNTLET_BENCH=PATH   prebuilt release binaries; otherwise they are built with
#                         `cargo build --release` into $CARGO_TARGET_DIR (default target/)
#
# Prints a summary (RSS max / p99 / p50 of the samples and the kernel's high-water mark VmHWM
# against the limit, requests accepted and refused per kind, duration) and writes
# OUT/rss.csv (t_s,rss_bytes,refusals_total,alive,hwm_bytes) and OUT/summary.txt. Exits
# non-zero if the process died. Everything listens on 127.0.0.1. The loads back off refusals
# as clients do: remote write retries a 429/5xx after 30 ms doubling to 5 s (Prometheus's
# backoff), the query load and the StoreAPI load pause 0.5 s after a refusal.
set -euo pipefail

DURATION=${1:-600}
LIMIT=${LIMIT:-512MiB}
TARGETS=${TARGETS:-2000}
PODS=${PODS:-8}
HOURS=${HOURS:-0.25}
RW_CONNECTIONS=${RW_CONNECTIONS:-4}
QUERY_CONCURRENCY=${QUERY_CONCURRENCY:-2}
SERIES_CONCURRENCY=${SERIES_CONCURRENCY:-2}

cd "$(dirname "$0")/.."
if [[ -z ${GAUNTLET:-} || -z ${GAUNTLET_BENCH:-} ]]; then
    cargo build --release -p gauntlet -p gauntlet-bench --bins
    target=${CARGO_TARGET_DIR:-target}
    GAUNTLET=${GAUNTLET:-$target/release/gauntlet}
    GAUNTLET_BENCH=${GAUNTLET_BENCH:-$target/release/gauntlet-bench}
fi
OUT=${OUT:-$(mktemp -d /tmp/gauntlet-soak.XXXXXX)}
mkdir -p "$OUT"
rm -rf "$OUT/data" "$OUT/stop"

# As Gauntlet reads --memory.limit: an integer and a unit, every unit a power of 1024.
limit_bytes=$(python3 - "$LIMIT" <<'EOF'
import re, sys
m = re.fullmatch(r"(\d+)\s*([KMGT]?I?B?)", sys.argv[1].strip().upper())
if not m:
    sys.exit(f"bad LIMIT {sys.argv[1]!r}")
print(int(m.group(1)) << {"": 0, "B": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2)[:1]])
EOF
)
read -r HTTP GRPC RW < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')

pids=()
cleanup() {
    touch "$OUT/stop"
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    if [[ -n ${server:-} ]]; then
        kill -TERM "$server" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$server" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server" 2>/dev/null || true
    fi
}
trap cleanup EXIT

echo "soak: ${DURATION}s, --memory.limit=$LIMIT ${GAUNTLET_ARGS:-}, $TARGETS targets x $PODS pods, output in $OUT"
"$GAUNTLET" all --data-dir="$OUT/data" --memory.limit="$LIMIT" \
    --http-address="127.0.0.1:$HTTP" --grpc-address="127.0.0.1:$GRPC" \
    --remote-write.address="127.0.0.1:$RW" ${GAUNTLET_ARGS:-} >"$OUT/gauntlet.log" 2>&1 &
server=$!
for _ in $(seq 600); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$HTTP/-/ready" 2>/dev/null; then
        break
    fi
    kill -0 "$server" 2>/dev/null || { echo "gauntlet exited at start:"; tail "$OUT/gauntlet.log"; exit 1; }
    sleep 0.1
done

# Sampling runs from the start until the loads end (at most DURATION + 300 s: the remote-write
# load generates its requests before its clock starts).
python3 perf/soak.py sample "$server" "$HTTP" "$OUT/rss.csv" "$OUT/stop" $((DURATION + 300)) &
sampler=$!
pids+=("$sampler")

now_ms=$(($(date +%s) * 1000))
"$GAUNTLET_BENCH" load remote-write --url "http://127.0.0.1:$RW/api/v1/receive" \
    --connections "$RW_CONNECTIONS" --duration "${DURATION}s" \
    --targets "$TARGETS" --pods-per-target "$PODS" --hours "$HOURS" >"$OUT/rw.txt" 2>&1 &
rw=$!
pids+=("$rw")
# The reads start once the head holds series (the remote-write load first generates its
# requests): queries over an empty head would be answered at once and measure nothing.
for _ in $(seq 300); do
    if curl -fsS "http://127.0.0.1:$HTTP/api/v1/status/tenants" 2>/dev/null |
        python3 -c 'import json,sys; sys.exit(0 if any(t["series"] for t in json.load(sys.stdin)["data"]["tenants"]) else 1)'; then
        break
    fi
    sleep 1
done
# The queries cover the data from an hour before now (where the replay starts) to the end of
# the run; they are refused or answered over whatever has been received by then.
"$GAUNTLET_BENCH" load query --url "http://127.0.0.1:$HTTP" --queries perf/queries/soak.txt \
    --concurrency "$QUERY_CONCURRENCY" --duration "${DURATION}s" \
    --data-start-ms $((now_ms - 3600 * 1000)) --data-end-ms $((now_ms + DURATION * 1000)) \
    >"$OUT/query.txt" 2>&1 &
queries=$!
pids+=("$queries")
python3 perf/soak.py storeapi "127.0.0.1:$GRPC" "$DURATION" "$SERIES_CONCURRENCY" \
    "$OUT/storeapi.json" &
series=$!
pids+=("$series")

deadline=$((SECONDS + DURATION + 300))
for p in "$rw" "$queries" "$series"; do
    while kill -0 "$p" 2>/dev/null; do
        if ((SECONDS > deadline)); then
            echo "a load did not end in time; stopping it"
            kill "$p" 2>/dev/null || true
        fi
        sleep 1
    done
    wait "$p" || echo "load $p exited with $?"
done
alive=yes
kill -0 "$server" 2>/dev/null || alive=no
touch "$OUT/stop"
wait "$sampler" || true

echo "--- remote write ($OUT/rw.txt)"
cat "$OUT/rw.txt"
echo "--- queries ($OUT/query.txt)"
cat "$OUT/query.txt"
echo "--- summary ($OUT/summary.txt)"
status=0
python3 perf/soak.py report "$OUT/rss.csv" "$limit_bytes" "$OUT" || status=$?
echo "gauntlet alive at the end: $alive"
[[ $alive == yes ]] || status=1
exit $status
