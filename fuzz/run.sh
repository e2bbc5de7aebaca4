#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (seconds per target, default 60), seeding the
# corpora from the fixture blocks. Exits non-zero when a target finds a crash.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
fixtures=../testdata/tsdb
mkdir -p corpus/chunk_decode corpus/chunk_lanes corpus/index_reader corpus/meta_json corpus/chunk_segment corpus/tombstones
if [ -z "$(ls -A corpus/index_reader)" ]; then
  i=0
  for idx in "$fixtures"/*/*/index; do cp "$idx" "corpus/index_reader/seed$i"; i=$((i+1)); done
  for m in "$fixtures"/*/*/meta.json; do cp "$m" "corpus/meta_json/seed$i"; i=$((i+1)); done
  for t in "$fixtures"/*/*/tombstones; do cp "$t" "corpus/tombstones/seed$i"; i=$((i+1)); done
  head -c 4096 "$(ls "$fixtures"/promtool-200series-2h/*/chunks/000001)" > corpus/chunk_segment/seed0
  # First chunk payloads of a segment: skip the 8-byte header, take slices of the records.
  seg=$(ls "$fixtures"/promtool-200series-2h/*/chunks/000001)
  for off in 10 400 4000 40000; do dd if="$seg" of="corpus/chunk_decode/seed$off" bs=1 skip=$off count=300 status=none; done
fi
for t in chunk_decode chunk_lanes index_reader meta_json chunk_segment tombstones; do
  echo "==> $t ($secs s)"
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048
done
