//! One scraped host and the state behind its series: counters that only grow (until a process
//! restart), gauges that hold plateaus and move in page-sized steps, pods that come and go.

use gauntlet_engine::chunk::STALE_NAN_BITS;

use super::rng::Rng;
use super::{Family, GenConfig, MetricType, Sample, SeriesSet, rng_for};

pub(crate) const NODE_FAMILIES: &[Family] = &[
    Family {
        name: "node_cpu_seconds",
        kind: MetricType::Counter,
        help: "Seconds the CPUs spent in each mode.",
    },
    Family {
        name: "node_memory_MemAvailable_bytes",
        kind: MetricType::Gauge,
        help: "Memory information field MemAvailable_bytes.",
    },
    Family {
        name: "node_filesystem_avail_bytes",
        kind: MetricType::Gauge,
        help: "Filesystem space available to non-root users in bytes.",
    },
    Family {
        name: "node_network_receive_bytes",
        kind: MetricType::Counter,
        help: "Network device statistic receive_bytes.",
    },
];

pub(crate) const KUBE_FAMILIES: &[Family] = &[
    Family {
        name: "kube_pod_status_phase",
        kind: MetricType::Gauge,
        help: "The pods current phase.",
    },
    Family {
        name: "kube_pod_container_status_restarts",
        kind: MetricType::Counter,
        help: "The number of container restarts per container.",
    },
];

pub(crate) const APP_FAMILIES: &[Family] = &[
    Family {
        name: "http_requests",
        kind: MetricType::Counter,
        help: "Requests handled, by method, status code and handler.",
    },
    Family {
        name: "http_request_duration_seconds",
        kind: MetricType::Histogram,
        help: "Request latency in seconds.",
    },
    Family {
        name: "http_requests_in_flight",
        kind: MetricType::Gauge,
        help: "Requests being served.",
    },
];

const CPUS: usize = 4;
const MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
/// Device, mountpoint, fstype.
const MOUNTS: [(&str, &str, &str); 3] = [
    ("/dev/sda1", "/", "ext4"),
    ("/dev/sdb1", "/data", "xfs"),
    ("tmpfs", "/run", "tmpfs"),
];
const NICS: [(&str, f64); 2] = [("eth0", 2.0e6), ("lo", 4.0e4)];
/// Deployment and namespace of pod slots, cycled when a target has more than eight pods.
const DEPLOYS: [(&str, &str); 8] = [
    ("api", "prod"),
    ("web", "prod"),
    ("worker", "batch"),
    ("cache", "prod"),
    ("ingress", "infra"),
    ("ingest", "batch"),
    ("auth", "prod"),
    ("search", "prod"),
];
const PHASES: [&str; 5] = ["Failed", "Pending", "Running", "Succeeded", "Unknown"];
const PENDING: usize = 1;
const RUNNING: usize = 2;
/// Handler, requests per second at load 1, median latency in seconds.
const HANDLERS: [(&str, f64, f64); 3] = [
    ("/api/v1/query", 12.0, 0.04),
    ("/api/v1/series", 3.0, 0.015),
    ("/metrics", 0.1, 0.003),
];
const METHODS: [(&str, f64); 2] = [("GET", 0.9), ("POST", 0.1)];
const CODES: [(&str, f64); 3] = [("200", 0.955), ("404", 0.04), ("500", 0.005)];
const LE: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const LE_TEXT: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const PAGE: u64 = 4096;
const GIB: u64 = 1 << 30;
/// Mean time between application restarts, ms.
const APP_RESTART_EVERY_MS: f64 = 6.0 * 3_600_000.0;

#[derive(Debug)]
struct Node {
    cpu: [[u32; 8]; CPUS],
    cpu_cents: [[u64; 8]; CPUS],
    mem: u32,
    mem_bytes: u64,
    mem_total: u64,
    fs: [u32; 3],
    fs_avail: [u64; 3],
    fs_size: [u64; 3],
    net: [u32; 2],
    net_bytes: [u64; 2],
}

#[derive(Debug)]
struct Pod {
    phase: [u32; 5],
    restarts_series: u32,
    restarts: u64,
    pending_left: u32,
}

#[derive(Debug)]
struct Kube {
    pods: Vec<Pod>,
    next_churn_ms: i64,
}

#[derive(Debug)]
struct Handler {
    /// Request counters by method then code.
    req: [[u32; 3]; 2],
    req_count: [[u64; 3]; 2],
    buckets: [u32; 12],
    bucket_counts: [u64; 12],
    cdf: [f64; 11],
    sum: u32,
    sum_ms: u64,
    count: u32,
    mean_ms: f64,
}

#[derive(Debug)]
struct App {
    handlers: Vec<Handler>,
    in_flight: u32,
    in_flight_val: u64,
}

/// One host with its node, kube and app series.
#[derive(Debug)]
pub(crate) struct Target {
    /// Offset of this target's scrapes within the interval, ms.
    pub(crate) offset_ms: i64,
    rng: Rng,
    host: String,
    /// Phase of the hourly load wave, in periods [0, 1).
    load_phase: f64,
    node: Option<Node>,
    kube: Option<Kube>,
    app: Option<App>,
}

impl Target {
    pub(crate) fn new(cfg: &GenConfig, index: usize, set: &mut SeriesSet) -> Self {
        let mut rng = rng_for(cfg, index as u64);
        // Leaves room for the jitter so a scrape never slides into the next interval.
        let offset_ms = rng.below((cfg.scrape_interval_ms - 3) as u64) as i64;
        let host = format!("host-{index:04}");
        let load_phase = rng.f64();
        let node = cfg.families.node.then(|| new_node(&host, &mut rng, set));
        let kube = cfg.families.kube.then(|| {
            let inst = format!("{host}:8080");
            let pods = (0..cfg.pods_per_target)
                .map(|slot| new_pod(&inst, slot, 0, &mut rng, set))
                .collect();
            Kube {
                pods,
                next_churn_ms: cfg.start_ms.saturating_add(cfg.churn_every_ms),
            }
        });
        let app = cfg.families.app.then(|| new_app(&host, set));
        Target {
            offset_ms,
            rng,
            host,
            load_phase,
            node,
            kube,
            app,
        }
    }

    /// Scrape-time jitter, ms: rarely a millisecond or two; Prometheus snaps timestamps within
    /// 2 ms of the schedule, so most scrapes land exactly on it.
    pub(crate) fn jitter_ms(&mut self) -> i64 {
        if self.rng.chance(0.02) {
            1 + self.rng.below(2) as i64
        } else {
            0
        }
    }

    pub(crate) fn scrape(
        &mut self,
        cfg: &GenConfig,
        ts: i64,
        set: &mut SeriesSet,
        out: &mut Vec<Sample>,
    ) {
        let rng = &mut self.rng;
        // An hourly wave plus noise, shared by all of the host's families.
        let load = 0.7 + 0.3 * wave(ts as f64 / 3_600_000.0 + self.load_phase);
        let interval_s = cfg.scrape_interval_ms as f64 / 1000.0;
        let mut push = |series: u32, value: f64| {
            out.push(Sample {
                series,
                ts_ms: ts,
                value,
            })
        };
        if let Some(n) = &mut self.node {
            scrape_node(n, rng, load, cfg.scrape_interval_ms, interval_s, &mut push);
        }
        if let Some(k) = &mut self.kube {
            if cfg.churn_every_ms > 0 && ts >= k.next_churn_ms {
                while k.next_churn_ms <= ts {
                    k.next_churn_ms = k.next_churn_ms.saturating_add(cfg.churn_every_ms);
                }
                let inst = format!("{}:8080", self.host);
                churn(k, cfg.churn_fraction, &inst, rng, set, &mut push);
            }
            scrape_kube(k, rng, &mut push);
        }
        if let Some(a) = &mut self.app {
            scrape_app(a, rng, load, cfg.scrape_interval_ms, interval_s, &mut push);
        }
    }
}

/// A sine-like wave of period 1 in [-1, 1], built from parabolas: unlike `sin`, plain IEEE
/// arithmetic gives the same bits on every platform, which keeps a seed's output stable.
fn wave(x: f64) -> f64 {
    let f = x - x.floor();
    if f < 0.5 {
        16.0 * f * (0.5 - f)
    } else {
        -16.0 * (f - 0.5) * (1.0 - f)
    }
}

fn new_node(host: &str, rng: &mut Rng, set: &mut SeriesSet) -> Node {
    let inst = format!("{host}:9100");
    let base = [("instance", inst.as_str()), ("job", "node")];
    let uptime_cents = (86_400 + rng.below(30 * 86_400)) * 100;
    let mut cpu = [[0u32; 8]; CPUS];
    let mut cpu_cents = [[0u64; 8]; CPUS];
    for c in 0..CPUS {
        let cpu_name = c.to_string();
        for (m, mode) in MODES.iter().enumerate() {
            let mut l = base.to_vec();
            l.push(("cpu", &cpu_name));
            l.push(("mode", mode));
            cpu[c][m] = set.add("node_cpu_seconds_total", &l);
            let share = [0.8, 0.01, 0.002, 0.001, 0.005, 0.0, 0.05, 0.13][m];
            cpu_cents[c][m] = (uptime_cents as f64 * share * (0.9 + 0.2 * rng.f64())) as u64;
        }
    }
    let mem_total = (8 + 8 * rng.below(4)) * GIB;
    let mem = set.add("node_memory_MemAvailable_bytes", &base);
    let mem_bytes = (mem_total / 2 / PAGE) * PAGE;
    let mut fs = [0u32; 3];
    let mut fs_avail = [0u64; 3];
    let fs_size = [100 * GIB, 1024 * GIB, 2 * GIB];
    for (i, (dev, mp, fstype)) in MOUNTS.iter().enumerate() {
        let mut l = base.to_vec();
        l.extend_from_slice(&[("device", dev), ("fstype", fstype), ("mountpoint", mp)]);
        fs[i] = set.add("node_filesystem_avail_bytes", &l);
        fs_avail[i] = (fs_size[i] / 4 + rng.below(fs_size[i] / 2)) / PAGE * PAGE;
    }
    let mut net = [0u32; 2];
    let mut net_bytes = [0u64; 2];
    for (i, (dev, rate)) in NICS.iter().enumerate() {
        let mut l = base.to_vec();
        l.push(("device", dev));
        net[i] = set.add("node_network_receive_bytes_total", &l);
        net_bytes[i] = (rate * (uptime_cents / 100) as f64) as u64;
    }
    Node {
        cpu,
        cpu_cents,
        mem,
        mem_bytes,
        mem_total,
        fs,
        fs_avail,
        fs_size,
        net,
        net_bytes,
    }
}

fn scrape_node(
    n: &mut Node,
    rng: &mut Rng,
    load: f64,
    interval_ms: i64,
    interval_s: f64,
    push: &mut impl FnMut(u32, f64),
) {
    // CPU time is kept in hundredths of a second, as /proc/stat reports it, so every CPU's modes
    // add up to the wall time that passed.
    let total = (interval_ms / 10) as u64;
    for c in 0..CPUS {
        // Share of wall time and chance of moving in a scrape, for iowait, irq, nice, softirq,
        // steal, system, user; idle takes the rest. Rare modes stand still most of the time,
        // as on real hosts, which is much of why real counters compress well.
        let modes = [
            (0.01, 0.3),
            (0.0005, 0.05),
            (0.0005, 0.02),
            (0.005, 0.4),
            (0.0, 0.0),
            (0.08 * load, 1.0),
            (0.25 * load, 1.0),
        ];
        let mut used = [0u64; 8];
        let mut sum = 0;
        for (i, &(share, p)) in modes.iter().enumerate() {
            if p == 0.0 || !rng.chance(p) {
                continue;
            }
            let x = total as f64 * share / p * (1.0 + 0.15 * rng.noise()).max(0.0);
            let v = rng.round_stochastic(x).min(total - sum);
            used[i + 1] = v;
            sum += v;
        }
        used[0] = total - sum;
        for ((cents, &series), add) in n.cpu_cents[c].iter_mut().zip(&n.cpu[c]).zip(used) {
            *cents += add;
            push(series, *cents as f64 / 100.0);
        }
    }

    if rng.chance(0.2) {
        let pages = (rng.noise() * 2000.0) as i64;
        let mut v = n.mem_bytes as i64 + pages * PAGE as i64;
        if rng.chance(0.02) {
            v += (rng.noise() * (n.mem_total / 10) as f64) as i64 / PAGE as i64 * PAGE as i64;
        }
        let lo = (n.mem_total / 10) as i64;
        let hi = (n.mem_total / 10 * 9) as i64;
        n.mem_bytes = (v.clamp(lo, hi) as u64) / PAGE * PAGE;
    }
    push(n.mem, n.mem_bytes as f64);

    for i in 0..3 {
        let a = &mut n.fs_avail[i];
        match i {
            0 => {
                if rng.chance(0.3) {
                    *a = a.saturating_sub(rng.below(512) * PAGE);
                }
                if rng.chance(0.002) {
                    *a = (*a + rng.below(4 * GIB) / PAGE * PAGE).min(n.fs_size[i]);
                }
            }
            1 => {
                if rng.chance(0.5) {
                    *a = a.saturating_sub(rng.below(4096) * PAGE);
                }
            }
            _ => {
                if rng.chance(0.01) {
                    let d = rng.below(32) * PAGE;
                    *a = if rng.chance(0.5) {
                        a.saturating_sub(d)
                    } else {
                        (*a + d).min(n.fs_size[i])
                    };
                }
            }
        }
        push(n.fs[i], *a as f64);
    }

    for (i, (_, rate)) in NICS.iter().enumerate() {
        // Loopback traffic is bursty: many scrapes see none.
        if i == 1 && rng.chance(0.5) {
            push(n.net[i], n.net_bytes[i] as f64);
            continue;
        }
        let x = rate * load * interval_s * (1.0 + 0.2 * rng.noise()).max(0.0);
        n.net_bytes[i] += rng.round_stochastic(x);
        push(n.net[i], n.net_bytes[i] as f64);
    }
}

fn new_pod(inst: &str, slot: usize, pending: u32, rng: &mut Rng, set: &mut SeriesSet) -> Pod {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let (deploy, ns) = DEPLOYS[slot % DEPLOYS.len()];
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
        .collect();
    let name = format!("{deploy}-{:09x}-{suffix}", rng.next_u64() >> 28);
    let base = [
        ("instance", inst),
        ("job", "kube-state-metrics"),
        ("namespace", ns),
        ("pod", name.as_str()),
    ];
    let mut phase = [0u32; 5];
    for (i, p) in PHASES.iter().enumerate() {
        let mut l = base.to_vec();
        l.push(("phase", p));
        phase[i] = set.add("kube_pod_status_phase", &l);
    }
    let mut l = base.to_vec();
    l.push(("container", deploy));
    let restarts_series = set.add("kube_pod_container_status_restarts_total", &l);
    Pod {
        phase,
        restarts_series,
        restarts: 0,
        pending_left: pending,
    }
}

/// Replaces a `fraction` of the pods: their series get a stale marker now, as Prometheus writes
/// when a series vanishes from a scrape, and the new pods' series start in this same scrape.
fn churn(
    k: &mut Kube,
    fraction: f64,
    inst: &str,
    rng: &mut Rng,
    set: &mut SeriesSet,
    push: &mut impl FnMut(u32, f64),
) {
    let n = ((k.pods.len() as f64 * fraction).round() as usize).min(k.pods.len());
    let mut slots: Vec<usize> = (0..k.pods.len()).collect();
    for i in 0..n {
        let j = i + rng.below((slots.len() - i) as u64) as usize;
        slots.swap(i, j);
    }
    let stale = f64::from_bits(STALE_NAN_BITS);
    for &slot in &slots[..n] {
        let old = &k.pods[slot];
        for &s in &old.phase {
            push(s, stale);
        }
        push(old.restarts_series, stale);
        let pending = 1 + rng.below(4) as u32;
        k.pods[slot] = new_pod(inst, slot, pending, rng, set);
    }
}

fn scrape_kube(k: &mut Kube, rng: &mut Rng, push: &mut impl FnMut(u32, f64)) {
    for p in &mut k.pods {
        let current = if p.pending_left > 0 {
            p.pending_left -= 1;
            PENDING
        } else {
            RUNNING
        };
        for (i, &s) in p.phase.iter().enumerate() {
            push(s, if i == current { 1.0 } else { 0.0 });
        }
        if current == RUNNING && rng.chance(0.0005) {
            p.restarts += 1;
        }
        push(p.restarts_series, p.restarts as f64);
    }
}

fn new_app(host: &str, set: &mut SeriesSet) -> App {
    let inst = format!("{host}:8081");
    let base = [("instance", inst.as_str()), ("job", "app")];
    let handlers = HANDLERS
        .iter()
        .map(|&(h, _, median)| {
            let mut req = [[0u32; 3]; 2];
            for (m, (method, _)) in METHODS.iter().enumerate() {
                for (c, (code, _)) in CODES.iter().enumerate() {
                    let mut l = base.to_vec();
                    l.extend_from_slice(&[("code", code), ("handler", h), ("method", method)]);
                    req[m][c] = set.add("http_requests_total", &l);
                }
            }
            let mut buckets = [0u32; 12];
            for (b, le) in LE_TEXT.iter().enumerate() {
                let mut l = base.to_vec();
                l.extend_from_slice(&[("handler", h), ("le", le)]);
                buckets[b] = set.add("http_request_duration_seconds_bucket", &l);
            }
            let mut l = base.to_vec();
            l.push(("handler", h));
            // A log-logistic latency distribution around the handler's median.
            let cdf = LE.map(|le| 1.0 / (1.0 + (median / le) * (median / le)));
            Handler {
                req,
                req_count: [[0; 3]; 2],
                buckets,
                bucket_counts: [0; 12],
                cdf,
                sum: set.add("http_request_duration_seconds_sum", &l),
                sum_ms: 0,
                count: set.add("http_request_duration_seconds_count", &l),
                mean_ms: median * 1000.0 * 1.3,
            }
        })
        .collect();
    App {
        handlers,
        in_flight: set.add("http_requests_in_flight", &base),
        in_flight_val: 0,
    }
}

fn scrape_app(
    a: &mut App,
    rng: &mut Rng,
    load: f64,
    interval_ms: i64,
    interval_s: f64,
    push: &mut impl FnMut(u32, f64),
) {
    // A process restart zeroes every counter of the app at once.
    let restart = rng.chance(interval_ms as f64 / APP_RESTART_EVERY_MS);
    for (h, hd) in a.handlers.iter_mut().enumerate() {
        if restart {
            hd.req_count = [[0; 3]; 2];
            hd.bucket_counts = [0; 12];
            hd.sum_ms = 0;
        }
        let rps = HANDLERS[h].1 * load;
        let mut n = 0;
        for (m, (_, ms)) in METHODS.iter().enumerate() {
            for (c, (_, cs)) in CODES.iter().enumerate() {
                let x = rps * ms * cs * interval_s * (1.0 + 0.2 * rng.noise()).max(0.0);
                let inc = rng.round_stochastic(x);
                n += inc;
                hd.req_count[m][c] += inc;
                push(hd.req[m][c], hd.req_count[m][c] as f64);
            }
        }
        // One shared offset keeps the rounded bucket increments monotone in `le`.
        let u = rng.f64();
        for b in 0..11 {
            hd.bucket_counts[b] += (n as f64 * hd.cdf[b] + u).floor() as u64;
        }
        hd.bucket_counts[11] += n;
        for b in 0..12 {
            push(hd.buckets[b], hd.bucket_counts[b] as f64);
        }
        let x = n as f64 * hd.mean_ms * (1.0 + 0.1 * rng.noise()).max(0.0);
        hd.sum_ms += rng.round_stochastic(x);
        push(hd.sum, hd.sum_ms as f64 / 1000.0);
        push(hd.count, hd.bucket_counts[11] as f64);
    }
    if rng.chance(0.3) {
        let x = load * 3.0 * (1.0 + 0.5 * rng.noise()).max(0.0);
        a.in_flight_val = rng.round_stochastic(x);
    }
    push(a.in_flight, a.in_flight_val as f64);
}
