#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (seconds per target, default 60), seeding the
# corpora from the fixture blocks. Exits non-zero when a target finds a crash.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
fixtures=../testdata/tsdb
mkdir -p corpus/chunk_decode corpus/chunk_lanes corpus/index_reader corpus/meta_json corpus/chunk_segment corpus/tombstones \
  corpus/aggr_chunk corpus/label_filter corpus/index_header corpus/series_entry
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
# Aggregate chunks: record payloads of a block downsampled from a fixture (the first one
# starts right after its 2-byte length and 0xFF byte); label filters: structured inputs.
if [ -z "$(ls -A corpus/aggr_chunk)" ] || [ -z "$(ls -A corpus/label_filter)" ]; then
  (cd .. && cargo run -q -p gauntlet -- tools block downsample \
      "$(ls -d testdata/tsdb/promtool-200series-2h/*/)" fuzz/seed-blocks --resolution 5m >/dev/null)
  seg=$(ls seed-blocks/*/chunks/000001)
  for off in 8 2000 20000; do dd if="$seg" of="corpus/aggr_chunk/seed$off" bs=1 skip=$((off + 3)) count=1500 status=none; done
  rm -rf seed-blocks
  # Structured seeds: a 0 byte, 8 edit bytes, then name=value lines (see the target).
  printf '\0\0\0\0\0\0\0\0\0job=api\ncode=500\ninstance=host-01\n' > corpus/label_filter/seed0
  printf '\0\x30\x01\x20\x80\0\0\0\0__name__=up\n' > corpus/label_filter/seed1
fi
# Index-headers and series entries: seeded from a header the store builds for a fixture block
# (two bytes giving the header's length, the header, then the index) and from the fixture
# indexes' series sections.
if [ -z "$(ls -A corpus/index_header)" ]; then
  (cd .. && cargo run -q -p gauntlet-bench --example index_header_seed -- \
      "$(ls -d testdata/tsdb/promtool-200series-2h/*/)" fuzz/corpus/index_header/seed0 fuzz/corpus/series_entry)
fi
for t in chunk_decode chunk_lanes index_reader meta_json chunk_segment tombstones aggr_chunk label_filter index_header series_entry selector_parse; do
  echo "==> $t ($secs s)"
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048
done
