//! Queries made from PromQL's grammar with a seeded generator: valid ones (of Prometheus 3.5's
//! syntax, so a running 3.5 can judge them), long ones (deeper, with longer names, for the
//! multi-line form of `/api/v1/format_query`), and malformed ones made from valid ones by
//! cutting, inserting and swapping pieces. The same seed gives the same queries.

/// A small seeded generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const METRICS: &[&str] = &[
    "up",
    "http_requests_total",
    "job:rate5m",
    "node_cpu_seconds_total",
    "sum",
    "by",
    "offset",
    "and",
    "x",
];
const LABELS: &[&str] = &["job", "instance", "code", "le", "\"a.b\"", "__name__", "on"];
const VALUES: &[&str] = &[
    "\"a\"",
    "'b'",
    "`c`",
    "\"\"",
    "\"5..\"",
    "\"\\x41\\u00e9\"",
    "\"a|b\"",
    "\".*\"",
    "\"(\"",
];
const NUMBERS: &[&str] = &[
    "1", "0.5", "1e3", "0x1F", "1_000", "Inf", "NaN", ".5", "017", "5m", "1h30m", "1e400",
];
/// Names and values [`Knobs::long_names`] adds, as real dashboards write them.
const LONG_METRICS: &[&str] = &[
    "apiserver_request_duration_seconds_bucket",
    "node_filesystem_avail_bytes",
    "container_memory_working_set_bytes",
    "kube_pod_container_status_restarts_total",
    "alertmanager_notifications_failed_total",
];
const LONG_VALUES: &[&str] = &[
    "\"kube-state-metrics\"",
    "\"/api/v1/query_range\"",
    "\"node-exporter.monitoring.svc:9100\"",
    "\"5..|4..\"",
];
const DURATIONS: &[&str] = &[
    "5m", "1m", "30s", "1h", "90s", "1.5", "0s", "2", "1y", "5m1h",
];
const VECTOR_FNS: &[&str] = &["abs", "ceil", "sort", "timestamp", "absent", "sgn"];
const RANGE_FNS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "max_over_time",
    "changes",
    "present_over_time",
];
const AGGS: &[&str] = &[
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
];
const PARAM_AGGS: &[&str] = &["topk", "bottomk", "quantile", "limitk", "limit_ratio"];
const BINOPS: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "atan2", "==", "!=", ">", "<", ">=", "<=", "and", "or", "unless",
];

/// How the generator shapes its queries.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    /// How many levels deep an expression nests at most.
    pub depth: usize,
    /// Metric names and label values picked half the time from longer ones.
    pub long_names: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            depth: 4,
            long_names: false,
        }
    }
}

fn selector(r: &mut Rng, k: Knobs) -> String {
    let mut s = String::new();
    let named = r.chance(80);
    if named {
        if k.long_names && r.chance(50) {
            s.push_str(r.pick(LONG_METRICS));
        } else {
            s.push_str(r.pick(METRICS));
        }
    }
    if !named || r.chance(40) {
        let n = r.below(3) + usize::from(!named);
        let ms: Vec<String> = (0..n)
            .map(|_| {
                if r.chance(10) {
                    return "\"metric.name\"".to_string();
                }
                let (name, op) = (r.pick(LABELS), r.pick(&["=", "!=", "=~", "!~"]));
                let value = if k.long_names && r.chance(50) {
                    r.pick(LONG_VALUES)
                } else {
                    r.pick(VALUES)
                };
                format!("{name}{op}{value}")
            })
            .collect();
        s.push('{');
        s.push_str(&ms.join(", "));
        if r.chance(10) {
            s.push(',');
        }
        s.push('}');
    }
    s
}

fn modifiers(r: &mut Rng, s: &mut String) {
    if r.chance(15) {
        s.push_str(" offset ");
        if r.chance(20) {
            s.push('-');
        }
        if r.chance(15) {
            s.push_str(&format!("({} + {})", r.pick(DURATIONS), r.pick(DURATIONS)));
        } else {
            s.push_str(r.pick(DURATIONS));
        }
    }
    if r.chance(10) {
        s.push_str(" @ ");
        s.push_str(r.pick(&["start()", "end()", "1700000000", "-5", "1e30", "100.5"]));
    }
}

fn range(r: &mut Rng) -> String {
    if r.chance(15) {
        format!(
            "{} {} {}",
            r.pick(DURATIONS),
            r.pick(&["+", "*", "-"]),
            r.pick(DURATIONS)
        )
    } else {
        r.pick(DURATIONS).to_string()
    }
}

/// A query of the type `want` (0 scalar, 1 instant vector, 2 range vector), `depth` levels
/// deep at most; now and then of another type, as users also write.
fn expr(r: &mut Rng, k: Knobs, depth: usize, want: u8) -> String {
    if depth == 0 || r.chance(25) {
        return match want {
            0 => r.pick(NUMBERS).to_string(),
            2 => {
                let mut s = format!("{}[{}]", selector(r, k), range(r));
                modifiers(r, &mut s);
                s
            }
            _ => {
                let mut s = selector(r, k);
                modifiers(r, &mut s);
                s
            }
        };
    }
    let d = depth - 1;
    match (want, r.below(8)) {
        (2, 0..=3) => {
            let mut s = format!(
                "{}[{}:{}]",
                expr(r, k, d, 1),
                range(r),
                if r.chance(50) {
                    range(r)
                } else {
                    String::new()
                }
            );
            modifiers(r, &mut s);
            s
        }
        (2, _) => expr(r, k, 0, 2),
        (0, 0) => format!("scalar({})", expr(r, k, d, 1)),
        (0, 1) => "time()".into(),
        (0, 2) => format!("-{}", expr(r, k, d, 0)),
        (0, 3) => format!("({})", expr(r, k, d, 0)),
        (0, _) => format!(
            "{} {}{} {}",
            expr(r, k, d, 0),
            r.pick(&["+", "*", "/", "^", "%", "-"]),
            if r.chance(10) { " bool" } else { "" },
            expr(r, k, d, 0)
        ),
        (_, 0) => format!("{}({})", r.pick(VECTOR_FNS), expr(r, k, d, 1)),
        (_, 1) => format!("{}({})", r.pick(RANGE_FNS), expr(r, k, d, 2)),
        (_, 2) => {
            let op = r.pick(AGGS);
            let grouping = format!(
                "{} ({})",
                r.pick(&["by", "without"]),
                (0..r.below(3))
                    .map(|_| r.pick(LABELS))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if r.chance(30) {
                format!("{op}({})", expr(r, k, d, 1))
            } else if r.chance(50) {
                format!("{op} {grouping} ({})", expr(r, k, d, 1))
            } else {
                format!("{op}({}) {grouping}", expr(r, k, d, 1))
            }
        }
        (_, 3) => format!(
            "{}({}, {})",
            r.pick(PARAM_AGGS),
            expr(r, k, d, 0),
            expr(r, k, d, 1)
        ),
        (_, 4) => format!("-{}", expr(r, k, d, 1)),
        (_, 5) => format!("({})", expr(r, k, d, 1)),
        (_, 6) => {
            let op = r.pick(BINOPS);
            let mut m = String::new();
            if r.chance(30) {
                m.push_str(&format!(
                    " {}({})",
                    r.pick(&["on", "ignoring"]),
                    (0..r.below(3))
                        .map(|_| r.pick(LABELS))
                        .collect::<Vec<_>>()
                        .join(",")
                ));
                if r.chance(40) {
                    m.push_str(r.pick(&[" group_left", " group_right", " group_left(code)"]));
                }
            }
            let b = if r.chance(15) { " bool" } else { "" };
            let rhs_type = r.below(2) as u8;
            let lhs = expr(r, k, d, 1);
            format!("{lhs} {op}{b}{m} {}", expr(r, k, d, rhs_type))
        }
        _ => format!(
            "label_replace({}, \"dst\", \"$1\", \"src\", \"(.*)\")",
            expr(r, k, d, 1)
        ),
    }
}

/// `n` queries of PromQL's grammar, mostly valid.
pub fn valid_queries(seed: u64, n: usize) -> Vec<String> {
    queries(seed, n, Knobs::default())
}

/// `n` queries of PromQL's grammar shaped by `knobs`, mostly valid.
pub fn queries(seed: u64, n: usize, knobs: Knobs) -> Vec<String> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let want = r.below(2) as u8;
            expr(&mut r, knobs, knobs.depth, want)
        })
        .collect()
}

/// `n` queries of PromQL's grammar longer than `min_len` bytes (fewer if the generator does
/// not find them in `100 * n` tries), six levels deep at most, with longer names.
pub fn long_queries(seed: u64, n: usize, min_len: usize) -> Vec<String> {
    let knobs = Knobs {
        depth: 6,
        long_names: true,
    };
    let mut r = Rng::new(seed);
    let mut out = Vec::new();
    for _ in 0..100 * n {
        if out.len() == n {
            break;
        }
        let want = r.below(2) as u8;
        let q = expr(&mut r, knobs, knobs.depth, want);
        if q.len() > min_len {
            out.push(q);
        }
    }
    out
}

const PIECES: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    "!",
    "~",
    ":",
    "5m",
    "1",
    "x",
    "by",
    "offset",
    "@",
    "+",
    "\"",
    "'",
    "#",
    " ",
    "bool",
    "on(",
    "group_left",
    "sum",
    "rate(",
    "0x",
    "1e",
    "\\",
    "`",
    "$",
    "{}",
    "[5m]",
    "-",
    "==",
    "=~",
    "\n",
    "é",
    "without",
    "1_",
    "..",
];

/// `n` queries made malformed (mostly) from valid ones: a piece cut out, a piece put in, two
/// characters swapped, or the query cut short.
pub fn malformed_queries(seed: u64, n: usize) -> Vec<String> {
    let mut r = Rng::new(seed);
    let base = valid_queries(seed ^ 0x5EED, n);
    base.into_iter()
        .map(|q| {
            let chars: Vec<char> = q.chars().collect();
            let mut out = chars.clone();
            for _ in 0..1 + r.below(2) {
                if out.is_empty() {
                    break;
                }
                let at = r.below(out.len());
                match r.below(4) {
                    0 => {
                        let len = 1 + r.below(3.min(out.len() - at));
                        out.drain(at..at + len);
                    }
                    1 => {
                        let piece: Vec<char> = r.pick(PIECES).chars().collect();
                        out.splice(at..at, piece);
                    }
                    2 if at + 1 < out.len() => out.swap(at, at + 1),
                    _ => out.truncate(at),
                }
            }
            out.into_iter().collect()
        })
        .collect()
}
