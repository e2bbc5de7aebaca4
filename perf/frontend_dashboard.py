"""The query frontend side by side with Thanos's, by hand until the runner has a scenario.

`gauntlet all --demo` writes SPLIT_DAYS days (30 by default) of demo data (10 hosts) and runs
Gauntlet's frontend in front of its own API (`--query-frontend.http-address`); `thanos
query-frontend` sits in front of the same API. Both split by 24h and cache in memory. A
dashboard of 20 range queries over 7 days (10 min step) is asked once cold, then refreshed
every 30 s three times (60 queries, the window moving with now); each refresh's latencies are
what the figures are. Then a 7-day query and a SPLIT_DAYS-day query, each at the finest step
a whole query may take (11,000 points: 60 s for 7 days, 240 s for 30), are asked of the API
whole and through Gauntlet's frontend split (24h parts in parallel, `Cache-Control:
no-store` so nothing comes from the cache), five times each.

    GAUNTLET_BIN=target/release/gauntlet THANOS_BIN=.tools/peers/bin/thanos [SPLIT_DAYS=30] \
        python3 perf/frontend_dashboard.py [WORK_DIR]

Loopback ports 19090-19096 must be free. Prints one JSON line per figure.
"""

import json, os, subprocess, sys, time, urllib.parse, urllib.request, statistics, shutil

GA = os.environ.get("GAUNTLET_BIN", "target/release/gauntlet")
TH = os.environ.get("THANOS_BIN", ".tools/peers/bin/thanos")
D = sys.argv[1] if len(sys.argv) > 1 else "/tmp/frontend-dashboard"
SPLIT_DAYS = max(7, int(os.environ.get("SPLIT_DAYS", "30")))
CACHE = "type: IN-MEMORY\nconfig:\n  max_size: 1GB\n  max_size_items: 100000\n"

def get(port, path, headers=None, timeout=300):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
    return time.perf_counter() - t, body

def wait(port, path="/-/ready", limit=900):
    end = time.time() + limit
    while time.time() < end:
        try:
            get(port, path, timeout=5)
            return
        except Exception:
            time.sleep(1)
    sys.exit(f"port {port} not ready")

shutil.rmtree(f"{D}/data", ignore_errors=True)
os.makedirs(f"{D}/data")
log = open(f"{D}/all.log", "w")
t0 = time.time()
allp = subprocess.Popen([GA, "all", f"--data-dir={D}/data", "--demo", f"--demo.history={SPLIT_DAYS}d",
    "--http-address=127.0.0.1:19090", "--grpc-address=127.0.0.1:19091",
    "--remote-write.address=127.0.0.1:19292", "--compact.interval=0s",
    "--query-frontend.http-address=127.0.0.1:19095",
    "--query-range.split-interval=24h", f"--query-range.response-cache-config={CACHE}"],
    stdout=log, stderr=log)
wait(19090)
wait(19095)
print(f"all ready in {time.time()-t0:.0f}s", flush=True)
tlog = open(f"{D}/thanos.log", "w")
thp = subprocess.Popen([TH, "query-frontend", "--http-address=127.0.0.1:19096",
    "--query-frontend.downstream-url=http://127.0.0.1:19090",
    "--query-range.split-interval=24h", f"--query-range.response-cache-config={CACHE}"],
    stdout=tlog, stderr=tlog)
wait(19096)
try:
    _, names = get(19090, "/api/v1/label/__name__/values")
    names = json.loads(names)["data"]
    print("metrics:", len(names), names[:12], flush=True)
    counters = [n for n in names if n.endswith("_total")][:10]
    gauges = [n for n in names if not n.endswith("_total") and not n.endswith("_bucket")][:10]
    qs = [f"sum by (instance) (rate({c}[5m]))" for c in counters] + [f"max by (instance) ({g})" for g in gauges]
    qs = (qs * 2)[:20]
    step = 600
    def window():
        end = int(time.time())
        return end - 7 * 86400, end
    def refresh(port, s, e):
        out = []
        for q in qs:
            p = "/api/v1/query_range?" + urllib.parse.urlencode({"query": q, "start": s, "end": e, "step": step})
            dt, body = get(port, p)
            assert json.loads(body)["status"] == "success"
            out.append(dt * 1000)
        return out
    res = {}
    for name, port in [("gauntlet", 19095), ("thanos", 19096)]:
        s, e = window()
        first = refresh(port, s, e)
        later = []
        for i in range(3):
            time.sleep(30)
            s, e = window()
            later += refresh(port, s, e)
        later.sort()
        res[name] = dict(first_sum_ms=sum(first), first_p99_ms=max(first),
                         # 60 samples: the 99th percentile is the largest.
                         refresh_p50_ms=statistics.median(later), refresh_p99_ms=later[-1],
                         refresh_largest_ms=[round(x, 1) for x in later[-5:]], n=len(later))
        print(name, json.dumps(res[name]), flush=True)
    # Split (24h parts, in parallel, uncached) against the querier asked whole.
    heavy = f"sum by (instance) (rate({counters[0]}[5m]))"
    for days in sorted({7, SPLIT_DAYS}):
        e = int(time.time())
        e -= e % 60
        s = e - days * 86400
        # The finest step a whole query may take (11,000 points a series), in whole minutes.
        step = 60 * -(-days * 86400 // (11000 * 60))
        p = "/api/v1/query_range?" + urllib.parse.urlencode({"query": heavy, "start": s, "end": e, "step": step})
        whole, split = [], []
        for _ in range(5):
            whole.append(get(19090, p)[0] * 1000)
            split.append(get(19095, p, {"Cache-Control": "no-store"})[0] * 1000)
        print(f"split{days}d", json.dumps(dict(step_s=step, whole_median_ms=statistics.median(whole),
            split_median_ms=statistics.median(split), whole=whole, split=split)), flush=True)
finally:
    thp.terminate(); allp.terminate()
    thp.wait(30); allp.wait(60)
