#!/usr/bin/env python3
"""Reference Thanos downsampling, written from docs/formats/downsampling.md (Windows,
Aggregates, Counter aggregate) independently of Gauntlet's Rust code, for tests to compare
against.

Reads `promtool tsdb dump` output (`{labels} value timestamp_ms` per line) and prints JSON:
a list of [labels, chunks] per series, where chunks is the list of aggregate chunks Thanos
would write at the 5m resolution, and (with --then-1h) also their 1h re-aggregation, each chunk
{"count": [[t, "v"], ...], "sum": ..., "min": ..., "max": ..., "counter": ...} with values
as text.

Usage: downsample_ref.py DUMP_FILE [--then-1h]"""
import json, math, sys

RES_5M, RES_1H = 300_000, 3_600_000
F64_MAX = sys.float_info.max


def window_end(t, r):
    # Timestamps here are >= 0, so Python's floor modulo equals Go's truncating one.
    return t - (t % r) + r - 1


def target_chunk_count(mint, maxt, in_res, out_res, count):
    max_samples = float((maxt - mint) // out_res)
    span = float(maxt - mint) / float(in_res)
    fullness = 1.0 if span == 0 else min(count / span, 1.0)
    expected = int(max_samples * fullness) + 1
    x = 1
    while expected // x > 140:
        x += 1
    return x


class Stats:
    """One window's count/sum/min/max, and a counter running since the batch began."""

    def __init__(self):
        self.total, self.counter, self.last = 0, 0.0, 0.0
        self.start_window()

    def start_window(self):
        self.count, self.sum, self.min, self.max = 0, 0.0, F64_MAX, -F64_MAX

    def add(self, v):
        if self.total > 0:
            self.counter += v if v < self.last else v - self.last
        else:
            self.counter = v
        self.last = v
        self.sum += v
        self.count += 1
        self.total += 1
        self.min = v if v < self.min else self.min
        self.max = v if v > self.max else self.max


def windows(samples, res, emit):
    """Aggregates time-ordered samples per window; emit(t, stats) at each window end, the
    timestamp capped at the last sample's. Returns the last window's timestamp."""
    st, next_t, last_t = Stats(), -1, samples[-1][0]
    for t, v in samples:
        if t > next_t:
            if next_t != -1:
                emit(next_t, st)
            st.start_window()
            next_t = min(window_end(t, res), last_t)
        st.add(v)
    emit(next_t, st)
    return next_t


def raw_to_chunks(samples, res):
    """Raw samples of one series -> aggregate chunks (dicts of sample lists)."""
    if not samples:
        return []
    n = target_chunk_count(samples[0][0], samples[-1][0], 60_000, res, len(samples))
    size = len(samples) // n + 1
    out, rest = [], samples
    while rest:
        j = min(size, len(rest))
        w = window_end(rest[j - 1][0], res)
        while j < len(rest) and rest[j][0] <= w:
            j += 1
        batch = [s for s in rest[:j] if not math.isnan(s[1])]
        rest = rest[j:]
        if not batch:
            continue
        c = {"count": [], "sum": [], "min": [], "max": [], "counter": [list(batch[0])]}

        def emit(t, st):
            c["count"].append([t, float(st.count)])
            c["sum"].append([t, st.sum])
            c["min"].append([t, st.min])
            c["max"].append([t, st.max])
            c["counter"].append([t, st.counter])

        last_t = windows(batch, res, emit)
        c["counter"].append([last_t, batch[-1][1]])
        out.append(c)
    return out


def keep_forward(samples):
    """Drops samples going back in time (before the previous one, or before 0)."""
    out, last = [], 0
    for t, v in samples:
        if t >= last:
            out.append((t, v))
            last = t
    return out


def chain_counters(chunks):
    """Counter sub-chunks -> one monotonic series and the true last raw value."""
    out, total, last_t, last_v, total_v = [], 0, 0, 0.0, 0.0
    seek = None
    for ch in chunks:
        for t, v in ch:
            if math.isnan(v):
                continue
            if total == 0:
                total, last_t, last_v, total_v = 1, t, v, v
            elif t > last_t:
                total_v += v - last_v if v >= last_v else v
                last_t, last_v = t, v
                total += 1
            else:
                if t == last_t:
                    last_v = v
                continue
            if seek is not None and last_t < seek:
                continue
            out.append((last_t, total_v))
        seek = last_t + 1
    return out, last_v


def aggr_to_chunks(chunks, mint, maxt, in_res, out_res):
    """Aggregate chunks of one series -> coarser aggregate chunks, in whole runs of chunks."""
    n_samples = sum(len(c["count"]) for c in chunks)
    n = target_chunk_count(mint, maxt, in_res, out_res, n_samples)
    size = max(len(chunks) // n, 1)
    out = []
    for i in range(0, len(chunks), size):
        part = chunks[i:i + size]
        c = {}
        for name, pick in (("count", lambda s: s.sum), ("sum", lambda s: s.sum),
                           ("min", lambda s: s.min), ("max", lambda s: s.max)):
            buf = []
            for p in part:
                buf += keep_forward([tuple(s) for s in p[name]])
            c[name] = []
            if buf:
                windows(buf, out_res, lambda t, st, name=name, pick=pick: c[name].append([t, pick(st)]))
        chained, last_raw = chain_counters([[tuple(s) for s in p["counter"]] for p in part])
        buf = keep_forward(chained)
        c["counter"] = []
        if buf:
            c["counter"].append(list(buf[0]))
            last_t = windows(buf, out_res, lambda t, st: c["counter"].append([t, st.counter]))
            c["counter"].append([last_t, last_raw])
        out.append(c)
    return out


def parse_dump(path):
    series = {}
    with open(path) as f:
        for line in f:
            close = line.rindex("} ")
            v, t = line[close + 2:].split()
            labels = {}
            for pair in line[1:close].split(", "):
                k, val = pair.split("=", 1)
                labels[k] = val.strip('"')
            key = tuple(sorted(labels.items()))
            series.setdefault(key, []).append((int(t), float(v)))
    return series


def main():
    series = parse_dump(sys.argv[1])
    then_1h = "--then-1h" in sys.argv[2:]
    out = []
    for key, samples in sorted(series.items()):
        samples.sort(key=lambda s: s[0])
        c5 = raw_to_chunks(keep_forward(samples), RES_5M)
        entry = {"labels": dict(key), "5m": c5}
        if then_1h and c5:
            # Chunk metas of the 5m block: bounds are the first and last window timestamps.
            mint = c5[0]["count"][0][0]
            maxt = c5[-1]["count"][-1][0]
            entry["1h"] = aggr_to_chunks(c5, mint, maxt, RES_5M, RES_1H)
        out.append(entry)
    # Values as Python's shortest round-trip text: JSON number parsers need not round exactly.
    def text(chunks):
        return [{k: [[t, repr(v)] for t, v in c[k]] for k in c} for c in chunks]

    for e in out:
        for r in ("5m", "1h"):
            if r in e:
                e[r] = text(e[r])
    json.dump(out, sys.stdout)


main()
