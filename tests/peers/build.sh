#!/usr/bin/env bash
# Builds the upstream peers that Gauntlet's compatibility tests run next to Gauntlet: Thanos
# (`thanos`) and VictoriaMetrics single-node (`victoria-metrics`), each at the version its Go
# module under tests/peers/ pins, and `parquet-peer`, our own small program in
# tests/peers/parquet/ built on the pinned parquet-common library, into .tools/peers/bin/ at
# the repository root (git-ignored).
#
# A binary is built only when it is missing or older than the go.mod or go.sum that pins it
# (or parquet-peer's main.go), so after the first run this only prints the versions. Needs
# Go 1.26.6 or newer; the modules come from the Go module proxy and are checked against the
# committed go.sum.
#
# Usage: tests/peers/build.sh [thanos] [victoria-metrics] [parquet-peer]   (all when none is named)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$root/.tools/peers/bin"

fail() { echo "tests/peers/build.sh: $*" >&2; exit 1; }

# Go's usual install place, for shells whose PATH lacks it.
command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null \
  || fail "Go is required to build the Thanos, VictoriaMetrics and parquet-peer test peers (Go 1.26.6 or newer), and no 'go' command was found"

# The pinned versions build with the Go on the machine: never switch toolchains behind the
# user's back. go.sum is the lock: a build that would need to change go.mod or go.sum fails.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS=-mod=readonly
# Pure-Go static binaries: no C compiler needed (VictoriaMetrics then uses its pure-Go zstd).
export CGO_ENABLED=0

# Prints the version that go.mod in module directory $1 requires of module $2.
pinned() { awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1/go.mod"; }

# build NAME MODULE_DIR PACKAGE [go build flags...]: builds PACKAGE as $bin/NAME when missing
# or stale (older than the module's go.mod, go.sum or, for our own code, any *.go file in the
# module directory), through a temporary file so that an interrupted build leaves no binary
# behind.
build() {
  local name="$1" dir="$2" pkg="$3"; shift 3
  local out="$bin/$name" src fresh=1
  if [[ -x "$out" ]]; then
    for src in "$dir/go.mod" "$dir/go.sum" "$dir"/*.go; do
      [[ -e "$src" ]] || continue
      [[ "$out" -nt "$src" ]] || fresh=0
    done
    (( fresh )) && return 0
  fi
  echo "building $name from $pkg (pinned in ${dir#"$root"/}/go.mod) ..." >&2
  mkdir -p "$bin"
  local tmp="$out.tmp.$$"
  if ! (cd "$dir" && go build -trimpath -buildvcs=false "$@" -o "$tmp" "$pkg"); then
    rm -f "$tmp"
    fail "building $name failed (Go $(go env GOVERSION)); the go command's message is above"
  fi
  mv -f "$tmp" "$out"
}

build_thanos() {
  local dir="$here/thanos" v
  v="$(pinned "$dir" github.com/thanos-io/thanos)"
  [[ -n "$v" ]] || fail "no github.com/thanos-io/thanos version in $dir/go.mod"
  # The tags and version variables are the ones Thanos's release builds use.
  local p=github.com/prometheus/common/version
  build thanos "$dir" github.com/thanos-io/thanos/cmd/thanos \
    -tags netgo,slicelabels \
    -ldflags "-s -w -X $p.Version=${v#v} -X $p.Revision=unknown -X $p.Branch=$v -X $p.BuildUser=gauntlet@tests-peers -X $p.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
}

build_victoria_metrics() {
  local dir="$here/victoriametrics" v
  v="$(pinned "$dir" github.com/VictoriaMetrics/VictoriaMetrics)"
  [[ -n "$v" ]] || fail "no github.com/VictoriaMetrics/VictoriaMetrics version in $dir/go.mod"
  # Shaped like VictoriaMetrics's own version string, so that its short version (v1.x.y in
  # vm_app_version and in --version) is the pinned one.
  build victoria-metrics "$dir" github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics \
    -ldflags "-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-metrics-$(date -u +%Y%m%d-%H%M%S)-tags-$v"
}

build_parquet_peer() {
  local dir="$here/parquet"
  [[ -n "$(pinned "$dir" github.com/prometheus-community/parquet-common)" ]] \
    || fail "no github.com/prometheus-community/parquet-common version in $dir/go.mod"
  # Our own main package; it reads the library's version from its build info for --version.
  build parquet-peer "$dir" . -ldflags "-s -w"
}

# Prints the first line of `$bin/$1 --version`, failing when the binary does not run.
show_version() {
  local out
  out="$("$bin/$1" --version 2>&1)" || fail "$bin/$1 --version failed: $out"
  echo "${out%%$'\n'*}"
}

(( $# )) || set -- thanos victoria-metrics parquet-peer
for peer in "$@"; do
  case "$peer" in
    thanos) build_thanos ;;
    victoria-metrics) build_victoria_metrics ;;
    parquet-peer) build_parquet_peer ;;
    *) fail "unknown peer '$peer' (known: thanos, victoria-metrics, parquet-peer)" ;;
  esac
  show_version "$peer"
done
