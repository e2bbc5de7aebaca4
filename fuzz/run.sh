#!/usr/bin/env bash
# Builds and runs every fuzz target in turn, each for a bounded time. The targets are the ones
# `cargo fuzz list` reports (the [[bin]] entries of fuzz/Cargo.toml), so a new target is built
# and run without touching this script. An empty corpus is seeded from the repository's
# fixtures first (fuzz/corpus/TARGET/).
#
#   bash fuzz/run.sh [SECONDS [TARGET...]]   SECONDS per target, 60 by default; every target
#                                            unless some are named
#
# Inputs that once made a target fail are kept in fuzz/regressions/TARGET/ and copied into its
# corpus before every run, so a fixed crash stays fixed.
#
# Every target runs even when one fails; the script then exits non-zero if any target found a
# crash, a leak, an input slower than 60 s or one above 2 GiB of memory (the input is kept in
# fuzz/artifacts/TARGET/, the target's output in fuzz/artifacts/TARGET.log).
#
# cargo-fuzz (`cargo install cargo-fuzz --locked`) needs a nightly compiler for its sanitizer
# flags: rustup's nightly toolchain when there is one (or $FUZZ_TOOLCHAIN), otherwise the
# toolchain in use with RUSTC_BOOTSTRAP=1, which lets a stable compiler take nightly flags.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
root=$(cd .. && pwd)
fixtures=$root/testdata/tsdb

tc=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  tc=("+$FUZZ_TOOLCHAIN")
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  tc=(+nightly)
fi
if ! rustc "${tc[@]}" --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi
echo "fuzz toolchain: $(rustc "${tc[@]}" --version)${RUSTC_BOOTSTRAP:+, with RUSTC_BOOTSTRAP=1}"
fuzz() { cargo "${tc[@]}" fuzz "$@"; }

# A short run (a minute or less per target, as in CI) is bound by the build: the targets are
# then built with `--dev` (fuzz/Cargo.toml's dev profile: a little optimization, debug
# assertions on), which builds in far less time than the release profile; longer runs are
# worth the release profile's faster code. FUZZ_BUILD=dev|release chooses.
build_profile=${FUZZ_BUILD:-$([ "$secs" -le 60 ] && echo dev || echo release)}
case "$build_profile" in
dev) profile_flag=--dev; bin_dir=target/x86_64-unknown-linux-gnu/debug ;;
release) profile_flag=--release; bin_dir=target/x86_64-unknown-linux-gnu/release ;;
*) echo "FUZZ_BUILD must be dev or release, not $build_profile" >&2; exit 1 ;;
esac
echo "fuzz build profile: $build_profile"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  list=$(fuzz list)
  mapfile -t targets <<<"$list"
fi
if [ ${#targets[@]} -eq 0 ] || [ -z "${targets[0]}" ]; then
  echo "no fuzz targets found" >&2
  exit 1
fi

# Disk: the targets share their instrumented dependencies, but each binary holds a whole
# instrumented Gauntlet (hundreds of MB). Each target is built just before its run; when less
# than FUZZ_MIN_FREE_GB (20 by default) is free on the disk of fuzz/target, each binary is also
# deleted once it has run, so the targets never need room for all binaries at once.
min_free_kb=$(( ${FUZZ_MIN_FREE_GB:-20} * 1024 * 1024 ))
free_kb() { mkdir -p target && df -Pk target | awk 'NR == 2 { print $4 }'; }
echo "==> ${#targets[@]} targets: ${targets[*]}"

# With room for every binary at once, they are built in one cargo call, which links them two
# at a time; the per-target builds below then find them built.
if [ $# -eq 0 ] && [ "$(free_kb)" -gt $((min_free_kb + ${#targets[@]} * 400 * 1024)) ]; then
  mkdir -p artifacts
  fuzz build "$profile_flag" >artifacts/build-all.log 2>&1 || echo "note: building every target at once failed; each is built alone below"
fi

# Seeds that need Gauntlet itself: the server binary (to downsample a fixture block) and the
# index-header seed writer, from the main workspace built with the test profile, as
# `cargo nextest run --workspace` builds them: after the test suite has run, this build does
# nothing.
tools_built=
tools() {
  if [ -z "$tools_built" ]; then
    (cd "$root" && cargo build -q --workspace --bins --examples --profile test)
    tools_built=1
  fi
}
tdir=${CARGO_TARGET_DIR:-$root/target}
tdir=$(cd "$root" && cd "$tdir" && pwd)
block=$(ls -d "$fixtures"/promtool-200series-2h/*/)
segment=$(ls "$fixtures"/promtool-200series-2h/*/chunks/000001)

# Writes each line on stdin as one seed file in directory $1.
seed_lines() {
  awk -v dir="$1" 'NF { f = sprintf("%s/seed%05d", dir, NR); printf "%s", $0 > f; close(f) }'
}

# Queries of the PromQL scripts, perf query sets and malformed queries, one per line.
queries() {
  grep -h '^eval' "$root"/testdata/promql/v3.5.3/*.test "$root"/testdata/promql/gauntlet/*.test |
    sed -E 's/^eval[a-z_]* +(instant +at +[^ ]+|range +from +[^ ]+ +to +[^ ]+ +step +[^ ]+) +//'
  grep -hE '^(instant|range) ' "$root"/perf/queries/default.txt |
    sed -E 's/^instant +[^ ]+ +//; s/^range +[^ ]+ +[^ ]+ +[^ ]+ +//'
  grep -v '^#' "$root"/testdata/promql/invalid_queries.txt
}

# Fills corpus directory $2 for target $1.
seed() {
  local t=$1 dir=$2 i=0 f off
  case "$t" in
  index_reader)
    for f in "$fixtures"/*/*/index; do cp "$f" "$dir/seed$i"; i=$((i + 1)); done ;;
  meta_json)
    for f in "$fixtures"/*/*/meta.json; do cp "$f" "$dir/seed$i"; i=$((i + 1)); done
    printf '{"id":"01M80EDTXX3TS2DC5H3CJBESG9","version":1,"details":"","deletion_time":1735689600}' >"$dir/deletion-mark"
    printf '{"id":"01M80EDTXX3TS2DC5H3CJBESG9","version":1,"details":"x","no_compact_time":1735689600,"reason":"manual"}' >"$dir/no-compact-mark"
    printf '{"id":"01M80EDTXX3TS2DC5H3CJBESG9","version":1,"details":"","no_downsample_time":1735689600,"reason":"manual"}' >"$dir/no-downsample-mark" ;;
  tombstones)
    for f in "$fixtures"/*/*/tombstones; do cp "$f" "$dir/seed$i"; i=$((i + 1)); done ;;
  chunk_segment)
    head -c 4096 "$segment" >"$dir/seed0" ;;
  chunk_decode | chunk_lanes)
    # Slices of a segment's records (the first payload starts after the 8-byte header).
    for off in 10 400 4000 40000; do
      dd if="$segment" of="$dir/seed$off" bs=1 skip=$off count=300 status=none
    done ;;
  aggr_chunk)
    # Record payloads of the fixture block downsampled to 5m (the first starts after the
    # segment header, its 2-byte length and its 0xFF byte).
    tools
    local tmp
    tmp=$(mktemp -d)
    "$tdir/debug/gauntlet" tools block downsample "$block" "$tmp" --resolution 5m >/dev/null
    f=$(ls "$tmp"/*/chunks/000001)
    for off in 8 2000 20000; do
      dd if="$f" of="$dir/seed$off" bs=1 skip=$((off + 3)) count=1500 status=none
    done
    rm -rf "$tmp" ;;
  histogram_chunk | float_histogram_chunk)
    # The payloads of Prometheus-written histogram chunks (encoding 2 or 3) in the chunk tests'
    # fixture.
    local enc=2
    [ "$t" = float_histogram_chunk ] && enc=3
    python3 -c '
import gzip, json, sys
out, enc = sys.argv[1], int(sys.argv[2])
n = 0
for s in json.load(gzip.open(sys.argv[3]))["series"]:
    for c in s["chunks"]:
        if c["encoding"] == enc:
            open(f"{out}/seed{n:03d}", "wb").write(bytes.fromhex(c["data"]))
            n += 1
' "$dir" "$enc" "$root/engine/src/chunk/testdata/histogram-chunks/prometheus-3.json.gz" ;;
  label_filter)
    # Structured inputs: a 0 byte, 8 edit bytes, then name=value lines (see the target).
    printf '\0\0\0\0\0\0\0\0\0job=api\ncode=500\ninstance=host-01\n' >"$dir/seed0"
    printf '\0\x30\x01\x20\x80\0\0\0\0__name__=up\n' >"$dir/seed1" ;;
  index_header | series_entry)
    # Two bytes giving the header's length, the header the store builds for a fixture block,
    # then the index; series entries from the start of the index's series section.
    tools
    mkdir -p corpus/index_header corpus/series_entry
    "$tdir/debug/examples/index_header_seed" "$block" corpus/index_header/seed0 corpus/series_entry ;;
  wal_reader)
    # WAL segments from Gauntlet's writer (plain and snappy, a record across pages) and
    # single records.
    tools
    "$tdir/debug/examples/wal_seed" "$dir" ;;
  remote_write_v1 | remote_write_v2)
    # A mode byte (bit 0: the rest is a snappy body; bits 1-4: label limits), then requests
    # cut by the bench encoder and one with histograms, exemplars and metadata, in both
    # protocol versions.
    tools
    mkdir -p corpus/remote_write_v1 corpus/remote_write_v2
    "$tdir/debug/examples/remote_write_seed" corpus/remote_write_v1 corpus/remote_write_v2 ;;
  promql_parse | promql_parser)
    queries | seed_lines "$dir" ;;
  http_api)
    # Requests as the target reads them: an endpoint byte, a method byte, the URL query (and
    # a 0 byte then a form body): instant and range queries, series, label and label-value
    # selections, with the queries and selectors above and Thanos's parameters.
    queries | python3 -c '
import sys, urllib.parse as u
out, n = sys.argv[1], 0
def put(pick, post, query, body=b""):
    global n
    with open(f"{out}/seed{n:05d}", "wb") as f:
        f.write(bytes([pick, post]) + query.encode() + (b"\0" + body if body else b""))
    n += 1
for i, q in enumerate(l.rstrip("\n") for l in sys.stdin):
    e = u.quote(q, safe="")
    if i % 2:
        put(0, 1, "time=300", f"query={e}&dedup=false".encode())
    else:
        put(0, 0, f"query={e}&time=300&timeout=1s")
    put(1, i % 2, f"query={e}&start=0&end=600&step=30&max_source_resolution=auto")
    if "{" in q:
        put(3, 0, f"match[]={e}&start=0&end=600&limit=5")
        put(5, 0, f"job&match[]={e}")
put(4, 0, "start=-1e300&end=abc")
put(7, 0, "limit=-1&metric=up")
put(2, 0, "query=" + u.quote("sum by (job) (rate(x[5m]))", safe=""))
' "$dir" ;;
  parquet_shard)
    # Four bytes giving the labels file's length, the labels file, then the chunks file: the
    # shards Gauntlet's converter writes for a fixture block, in one and in small row groups.
    tools
    local tmp
    tmp=$(mktemp -d)
    mkdir -p "$tmp/b"
    cp -r "$block" "$tmp/b/"
    printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$tmp/b" >"$tmp/o.yml"
    local n=0
    for rows in 1000000 37; do
      rm -f "$tmp"/b/*/*.parquet
      "$tdir/debug/gauntlet" tools bucket convert --to=parquet --parquet.row-group-size=$rows \
        --objstore.config-file="$tmp/o.yml" >/dev/null
      local l c
      l=$(ls "$tmp"/b/*/0.labels.parquet)
      c=$(ls "$tmp"/b/*/0.chunks.parquet)
      python3 -c 'import struct,sys; l=open(sys.argv[1],"rb").read(); c=open(sys.argv[2],"rb").read(); open(sys.argv[3],"wb").write(struct.pack("<I",len(l))+l+c)' \
        "$l" "$c" "$dir/seed$n"
      n=$((n + 1))
    done
    rm -rf "$tmp" ;;
  rule_file)
    # Prometheus's rule files and rule unit-test files, as they are.
    local n=0
    for f in "$root"/testdata/rules/rulefmt/* "$root"/testdata/rules/promtool/*; do
      cp "$f" "$dir/seed$n"
      n=$((n + 1))
    done ;;
  rule_template)
    # Every label and annotation of the rule fixtures, one per seed, and the template forms
    # alerting rules use.
    { grep -hoE '(summary|description|severity|message): .*' "$root"/testdata/rules/*/* \
        | sed -E 's/^[a-z]+: //; s/^"//; s/"$//'
      printf '%s\n' '{{ $labels.instance }} is at {{ $value | humanize }}' \
        '{{ range query "up" }}{{ .Labels.job }}={{ .Value }} {{ end }}' \
        '{{ printf "%.2f" $value }} {{ $externalLabels.cluster }} {{ humanizeDuration 3600 }}' \
        '{{ if gt $value 80.0 }}high{{ else }}ok{{ end }} {{ reReplaceAll "(.*):.*" "$1" $labels.instance }}'
    } | seed_lines "$dir" ;;
  rule_inputs)
    # A byte picking the input (0: instant answer, 1: range answer, 2: remote-write
    # configuration), then the input: answers with floats, a scalar and native histograms
    # (exponential and custom bounds), and configurations with most of their fields.
    printf '\0{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1700000000.123,"1"]},{"metric":{"le":"x"},"histogram":[1700000000,{"count":"12","sum":"3.5","buckets":[[0,"-0.001","0.001","2"],[0,"1","1.4142135623730951","4"],[3,"-2","-1.4142135623730951","6"]]}]}]}}' >"$dir/seed0"
    printf '\0{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{"count":"3","sum":"NaN","buckets":[[0,"0.1","0.25","1"],[0,"0.25","0.5","2"]]}]}]}}' >"$dir/seed1"
    printf '\0{"status":"success","data":{"resultType":"scalar","result":[1700000000,"+Inf"]}}' >"$dir/seed2"
    printf '\1{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"alertname":"A"},"values":[[1,"1700000000"],[2,"1700000000"]]}]}}' >"$dir/seed3"
    printf '\2remote_write:\n- url: http://127.0.0.1:10908/api/v1/receive\n  name: r\n  remote_timeout: 5s\n  headers: {X-Scope-OrgID: t}\n  basic_auth: {username: u, password: p}\n  write_relabel_configs:\n  - source_labels: [__name__]\n    regex: x.*\n    action: drop\n  queue_config: {max_samples_per_send: 500, batch_send_deadline: 5s, min_backoff: 30ms, max_backoff: 5s, retry_on_http_429: true}\n' >"$dir/seed4" ;;
  peer_answers)
    # A byte picking the input (0: a streamed remote-read body, 1: memcached and Redis
    # replies, 2: a cache entry), then the input: a frame holding one series of one chunk;
    # a memcached hit and miss, RESP bulk, nil, status, error and integer replies; an entry.
    printf '\0\x38\xbb\x6f\x0a\xdd\x0a\x36\x0a\x0e\x0a\x08\x5f\x5f\x6e\x61\x6d\x65\x5f\x5f\x12\x02\x75\x70\x0a\x08\x0a\x03\x6a\x6f\x62\x12\x01\x61\x12\x1a\x08\xe8\x07\x10\xd0\x0f\x18\x01\x22\x10\x00\x01\x80\x90\xf4\xe0\xa3\x62\x3f\xf0\x00\x00\x00\x00\x00\x00' >"$dir/seed0"
    printf '\1VALUE k 0 3\r\nabc\r\nEND\r\n' >"$dir/seed1"
    printf '\1END\r\n$3\r\nabc\r\n$-1\r\n+OK\r\n-ERR wrong\r\n:5\r\n' >"$dir/seed2"
    printf '\2{"key":"fe:t:up:15000:86400000:0:","extents":[{"start":0,"end":60000,"answer":"{\\"status\\":\\"success\\",\\"data\\":{\\"resultType\\":\\"matrix\\",\\"result\\":[{\\"metric\\":{\\"job\\":\\"a\\"},\\"values\\":[[0,\\"1\\"],[60,\\"2\\"]]}]}}"}]}' >"$dir/seed3" ;;
  packed_refs)
    # Packed lists of 300 refs (one block of 256, then 44 plain): 0 to 299 (deltas of 0
    # bits), and with the block's deltas in 1 bit after a previous ref; then raw refs.
    python3 - "$dir" <<'PY'
import struct, sys
d = sys.argv[1]
def packed(prev, bits, data, tail):
    meta = struct.pack('<IIBB', 0, prev or 0, prev is not None, bits)
    return struct.pack('<II', 256 + len(tail), 1) + meta + data + b''.join(struct.pack('<I', t) for t in tail)
open(d + '/seed0', 'wb').write(packed(None, 0, b'', range(256, 300)))
open(d + '/seed1', 'wb').write(packed(7, 1, bytes([0x55] * 32), range(1000, 1044)))
open(d + '/seed2', 'wb').write(b''.join(struct.pack('<I', i * 3 + (i % 5)) for i in range(700)))
PY
    ;;
  selector_parse)
    { grep -hv '^#' "$root"/perf/queries/series.txt | sed -E 's/^series +[^ ]+ +[^ ]+ +//'
      queries | grep '[{]'; } | seed_lines "$dir" ;;
  *)
    echo "note: no seeds for $t; it starts from an empty corpus (add a case to seed() in fuzz/run.sh)" ;;
  esac
}

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" artifacts
  if [ -z "$(ls -A "corpus/$t")" ]; then
    seed "$t" "corpus/$t"
  fi
  # Inputs that once failed, kept in git: every run starts by replaying them.
  if [ -d "regressions/$t" ]; then
    cp regressions/"$t"/* "corpus/$t/"
  fi
  log=artifacts/$t.log
  if ! fuzz build "$profile_flag" "$t" >"$log" 2>&1; then
    echo "==> $t: FAILED to build; the end of $PWD/$log:"
    tail -n 60 "$log"
    failed+=("$t")
    continue
  fi
  start=$(date +%s)
  if fuzz run "$profile_flag" "$t" -- -max_total_time="$secs" -timeout=60 -rss_limit_mb=2048 >"$log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 || true)
    echo "==> $t: ok, ${runs:-no run count} in $(($(date +%s) - start)) s, corpus $(ls "corpus/$t" | wc -l) inputs"
  else
    echo "==> $t: FAILED after $(($(date +%s) - start)) s; the end of $PWD/$log:"
    tail -n 60 "$log"
    failed+=("$t")
  fi
  if [ "$(free_kb)" -lt "$min_free_kb" ]; then
    rm -f "$bin_dir/$t" "$bin_dir"/deps/"$t"-*
    echo "    (less than ${FUZZ_MIN_FREE_GB:-20} GB free: the $t binary deleted after its run)"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets that failed: ${failed[*]} (inputs in fuzz/artifacts/TARGET/)" >&2
  exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${secs} s each without a failure"
