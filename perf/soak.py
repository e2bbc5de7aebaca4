#!/usr/bin/env python3
"""Helpers of perf/soak.sh (the memory budget soak): sampling a process's resident memory,
StoreAPI Series load, and the summary.

  soak.py sample PID HTTP_PORT CSV STOP_FILE MAX_S
      Every second: VmRSS of PID (/proc/PID/status), gauntlet_memory_refusals_total from its
      /metrics and VmHWM (the kernel's record of the most VmRSS has been, so a peak between two
      samples is not missed), one CSV row each (t_s,rss_bytes,refusals_total,alive,hwm_bytes).
      Stops when STOP_FILE exists, when PID is gone (a last row with alive=0) or after MAX_S
      seconds.
  soak.py storeapi HOST:PORT DURATION_S CONCURRENCY OUT_JSON
      StoreAPI Series calls, CONCURRENCY at a time for DURATION_S, each for every series of a
      family over all time; counts answered calls, refusals (ResourceExhausted) and other
      errors. Every call has a 120 s deadline.
  soak.py report CSV LIMIT_BYTES OUT_DIR
      Prints the summary (RSS max, p99, p50 against the limit; requests accepted and refused
      per kind) from the CSV and the load reports in OUT_DIR, and writes OUT_DIR/summary.txt.
"""
import json
import os
import re
import sys
import threading
import time
import urllib.request


def status_bytes(pid, key):
    """A size line of /proc/PID/status (`VmRSS`, `VmHWM`) in bytes; None when PID is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def rss_bytes(pid):
    return status_bytes(pid, "VmRSS")


def refusals(http_port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=0.8) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("gauntlet_memory_refusals_total "):
                    return int(float(line.split()[1]))
    except OSError:
        return ""
    return ""


def sample(pid, http_port, csv_path, stop_file, max_s):
    start = time.monotonic()
    with open(csv_path, "w") as out:
        out.write("t_s,rss_bytes,refusals_total,alive,hwm_bytes\n")
        tick = 0
        while time.monotonic() - start < max_s and not os.path.exists(stop_file):
            rss = rss_bytes(pid)
            t = time.monotonic() - start
            if rss is None:
                out.write(f"{t:.1f},,,0\n")
                out.flush()
                return
            hwm = status_bytes(pid, "VmHWM") or ""
            out.write(f"{t:.1f},{rss},{refusals(http_port)},1,{hwm}\n")
            out.flush()
            tick += 1
            time.sleep(max(0.0, start + tick - time.monotonic()))


def varint(n):
    n &= (1 << 64) - 1
    b = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            b.append(low | 0x80)
        else:
            b.append(low)
            return bytes(b)


def field(num, wire, payload):
    return varint(num << 3 | wire) + payload


def length_delimited(num, data):
    return field(num, 2, varint(len(data)) + data)


def series_request(matchers):
    """A thanos.SeriesRequest over all time with `matchers` as (type, name, value)."""
    body = field(1, 0, varint(-(1 << 63))) + field(2, 0, varint((1 << 63) - 1))
    for typ, name, value in matchers:
        m = field(1, 0, varint(typ)) + length_delimited(2, name.encode()) + length_delimited(
            3, value.encode())
        body += length_delimited(3, m)
    return body


# Heavy selections over the generator's families: every node series, every kube series, the
# request histograms' buckets (type 2 is =~).
SELECTIONS = [
    [(2, "__name__", "node_.+")],
    [(2, "__name__", "kube_.+")],
    [(0, "__name__", "http_request_duration_seconds_bucket")],
]


def storeapi(addr, duration_s, concurrency, out_path):
    import grpc

    counts = {"ok": 0, "refused": 0, "refused_by_budget": 0, "errors": 0, "bytes": 0}
    first_error = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s

    def worker(k):
        channel = grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", -1)])
        call = channel.unary_stream("/thanos.Store/Series", request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        i = k
        while time.monotonic() < deadline:
            req = series_request(SELECTIONS[i % len(SELECTIONS)])
            i += 1
            got = 0
            try:
                for msg in call(req, timeout=120):
                    got += len(msg)
                with lock:
                    counts["ok"] += 1
                    counts["bytes"] += got
            except grpc.RpcError as e:
                with lock:
                    if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        counts["refused"] += 1
                        meta = dict(e.trailing_metadata() or ())
                        if meta.get("gauntlet-refused") == "memory-budget":
                            counts["refused_by_budget"] += 1
                    else:
                        counts["errors"] += 1
                        if not first_error:
                            first_error.append(f"{e.code()}: {e.details()}")
                # A refused call is retried after a pause, as a querier's next query would.
                time.sleep(0.5)
        channel.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts["first_error"] = first_error[0] if first_error else None
    with open(out_path, "w") as f:
        json.dump(counts, f)


def bench_counts(path):
    """(requests, 2xx, {status: n}) from a gauntlet-bench load report."""
    try:
        text = open(path).read()
    except FileNotFoundError:
        return None
    total = ok = None
    m = re.search(r"^requests (\d+) \(2xx (\d+)\)", text, re.M)
    if m:
        total, ok = int(m.group(1)), int(m.group(2))
    m = re.search(r"^queries (\d+) \(200: (\d+)\)", text, re.M)
    if m:
        total, ok = int(m.group(1)), int(m.group(2))
    other = {int(c): int(n) for n, c in re.findall(r"^non-2xx: (\d+) answers with status (\d+)",
                                                    text, re.M)}
    m = re.search(r"^transport errors: (\d+)", text, re.M)
    transport = int(m.group(1)) if m else 0
    return total, ok, other, transport


def percentile(sorted_values, q):
    if not sorted_values:
        return 0
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def report(csv_path, limit, out_dir):
    rows = [line.rstrip("\n").split(",") for line in open(csv_path).readlines()[1:]]
    rss = sorted(int(r[1]) for r in rows if r[1])
    died = any(r[3] == "0" for r in rows)
    span = float(rows[-1][0]) if rows else 0.0
    over = sum(1 for v in rss if limit and v > limit)
    hwm = max((int(r[4]) for r in rows if len(r) > 4 and r[4]), default=0)
    mib = lambda b: b / (1 << 20)
    lines = [
        f"duration sampled: {span:.0f} s, {len(rss)} samples (1/s)",
        f"limit: {mib(limit):.0f} MiB" if limit else "limit: none",
        f"RSS max {mib(rss[-1] if rss else 0):.1f} MiB, p99 {mib(percentile(rss, 0.99)):.1f} MiB, "
        f"p50 {mib(percentile(rss, 0.5)):.1f} MiB",
        f"RSS peak (VmHWM, the kernel's high-water mark over the whole run): {mib(hwm):.1f} MiB"
        + (f", {'OVER' if hwm > limit else 'under'} the limit" if limit else ""),
        f"samples over the limit: {over}" if limit else "samples over the limit: n/a",
        f"process died: {'YES' if died else 'no'}",
    ]
    for kind, name in [("remote write", "rw.txt"), ("queries (HTTP)", "query.txt")]:
        c = bench_counts(os.path.join(out_dir, name))
        if c is None or c[0] is None:
            lines.append(f"{kind}: no report")
            continue
        total, ok, other, transport = c
        refused = other.get(503, 0)
        errors = sum(n for code, n in other.items() if code != 503) + transport
        lines.append(f"{kind}: {total} requests, accepted {ok}, refused (503) {refused}, "
                     f"other errors {errors} {dict(sorted(other.items()))}")
    try:
        s = json.load(open(os.path.join(out_dir, "storeapi.json")))
        lines.append(f"StoreAPI Series: accepted {s['ok']} ({s['bytes'] / (1 << 20):.0f} MiB "
                     f"received), refused (ResourceExhausted) "
                     f"{s['refused']} (by the budget {s['refused_by_budget']}), other errors "
                     f"{s['errors']}" + (f" (first: {s['first_error']})" if s["first_error"] else ""))
    except FileNotFoundError:
        lines.append("StoreAPI Series: no report")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(out_dir, "summary.txt"), "w") as f:
        f.write(text)
    return 1 if died else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sample":
        sample(int(args[0]), int(args[1]), args[2], args[3], float(args[4]))
    elif cmd == "storeapi":
        storeapi(args[0], float(args[1]), int(args[2]), args[3])
    elif cmd == "report":
        sys.exit(report(args[0], int(args[1]), args[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
