"""Deterministic OpenMetrics input that drives Prometheus's XOR writer through its rare paths."""
import random, struct, sys
rnd = random.Random(20260517)
START = 1735689600000  # ms, 2h aligned
out = ["# TYPE edge gauge"]

def fmt(v):
    if v != v: return "NaN"
    if v == float("inf"): return "+Inf"
    if v == float("-inf"): return "-Inf"
    return repr(v)

def series(name, samples):
    for t, v in samples:
        out.append('edge{case="%s"} %s %d.%03d' % (name, fmt(v), t // 1000, t % 1000))

def rand_float():
    while True:
        b = rnd.getrandbits(64)
        v = struct.unpack(">d", struct.pack(">Q", b))[0]
        if v == v and abs(v) != float("inf"):
            return v

series("a_single", [(START + 5, 42.5)])
series("b_two", [(START + 5, -0.0), (START + 7, 0.0)])
series("c_specials", [(START + i * 1000, v) for i, v in enumerate([
    float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 5e-324, 2.2250738585072014e-308,
    1.7976931348623157e308, -1.7976931348623157e308, 1.0, 1.0, 1.0, 1.0000000000000002,
    float("nan"), float("nan"), 3.0, -3.0, 1e-300, 1e300, 0.1, 0.2, 0.30000000000000004])])
# Deltas whose dod lands just inside and just outside every bucket, and the 64-bit one.
deltas = [1000, 1000, 1000 + 8192, 1000, 1000 + 8193, 1000, 9193 - 8191, 1000, 1000 + 65536,
          1000, 1000 + 65537, 1000, 1000 + 524288, 1000, 1000 + 524289, 1000, 1, 2_000_000, 1,
          3_000_000, 1, 1, 1]
t = START; s = []
for i, d in enumerate(deltas):
    t += d; s.append((t, float(i % 3)))
series("d_dod_buckets", s)
# Random values and jittered timestamps, of many lengths; chunk cuts at 120 samples.
for k in range(40):
    n = rnd.choice([1, 2, 3, 7, 8, 9, 16, 17, 119, 120, 121, 240, 300])
    t = START + rnd.randrange(0, 1000)
    s = []
    mode = k % 4
    v = rnd.uniform(-1e6, 1e6)
    for i in range(n):
        t += rnd.choice([15000, 15000, 15000, 14999, 15001, rnd.randrange(1, 30000)])
        if mode == 0:
            v = rand_float()
        elif mode == 1:
            v = float(rnd.randrange(0, 1 << rnd.randrange(1, 53)))
        elif mode == 2:
            v = v + rnd.choice([0, 0, 1, 0.5, rnd.uniform(-10, 10)])
        else:
            v = rnd.choice([v, v * 2, -v, v / 3, 0.0, rand_float()])
        s.append((t, v))
    series("r_%02d" % k, s)
out.append("# EOF")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
