//! Native histograms on the streamed path give the answers of the materialized evaluation:
//! every query below runs both ways over the same store and must agree in its value, its
//! annotations, the samples it loaded and (for the streamed side) without falling back.

use super::{QueryResult, run_mode};
use crate::hist_notation::parse_histogram;
use crate::value::Value;
use crate::{EngineOptions, parse};
use gauntlet_engine::chunk::{HistogramBatch, STALE_NAN_BITS, SampleBatch};
use gauntlet_engine::histogram::FloatHistogram;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{MemSeries, Series};

/// Scrape interval of the test data, ms.
const SCRAPE: i64 = 15_000;
/// Samples per series (2 h).
const SAMPLES: i64 = 480;

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// A counter histogram of schema `schema` after `k` scrapes, growing by `rate` a scrape.
fn counter(schema: i32, k: i64, rate: f64) -> FloatHistogram {
    let x = k as f64 * rate;
    let (b1, b2, b3, z) = (x, 2.0 * x, 0.5 * x, 0.25 * x);
    parse_histogram(&format!(
        "schema:{schema} sum:{} count:{} z_bucket:{z} z_bucket_w:0.001 buckets:[{b1} {b2} {b3}] offset:{}",
        x * 0.7,
        b1 + b2 + b3 + z,
        if schema == 3 { 2 } else { -1 },
    ))
    .expect("a test histogram")
}

/// A custom-bucket histogram after `k` scrapes, with bounds `bounds`.
fn custom(k: i64, bounds: &str) -> FloatHistogram {
    let x = k as f64;
    parse_histogram(&format!(
        "schema:-53 sum:{} count:{} buckets:[{} {} {}] custom_values:[{bounds}]",
        x * 3.0,
        6.0 * x,
        x,
        2.0 * x,
        3.0 * x
    ))
    .expect("a custom-bucket histogram")
}

fn stale_histogram() -> FloatHistogram {
    FloatHistogram {
        sum: stale(),
        ..FloatHistogram::default()
    }
}

/// One series of metric `m` in group `g`: floats and histograms by time.
fn series(g: &str, i: usize, floats: Vec<(i64, f64)>, hists: Vec<(i64, FloatHistogram)>) -> Series {
    let (ts, val) = floats.into_iter().unzip();
    let (hts, h) = hists.into_iter().unzip();
    Series {
        labels: Labels::from_pairs([
            ("__name__", "m".to_string()),
            ("g", g.to_string()),
            ("i", format!("{i:04}")),
        ]),
        samples: SampleBatch { ts, val },
        histograms: HistogramBatch { ts: hts, h },
    }
}

/// `n` series of six kinds, over two groups: exponential histograms (schema 3, and schema 1 in
/// the same group), a counter reset, a stale marker and a gap, floats turning into histograms,
/// plain floats; and in group `c`, custom-bucket histograms with two sets of bounds.
fn store(n: usize) -> MemSeries {
    let times = || (0..SAMPLES).map(|k| k * SCRAPE);
    let mut out = Vec::new();
    for i in 0..n {
        let g = if i % 2 == 0 { "a" } else { "b" };
        let rate = 1.0 + (i % 7) as f64;
        let s = match i % 6 {
            0 => series(
                g,
                i,
                vec![],
                times().map(|t| (t, counter(3, t / SCRAPE, rate))).collect(),
            ),
            1 => series(
                g,
                i,
                vec![],
                times().map(|t| (t, counter(1, t / SCRAPE, rate))).collect(),
            ),
            2 => series(
                g,
                i,
                vec![],
                times()
                    .map(|t| {
                        let k = t / SCRAPE;
                        (t, counter(3, if k >= 300 { k - 300 } else { k }, rate))
                    })
                    .collect(),
            ),
            3 => {
                let mut h = Vec::new();
                for t in times() {
                    let k = t / SCRAPE;
                    match k {
                        200 => h.push((t, stale_histogram())),
                        201..=260 => {}
                        _ => h.push((t, counter(3, k, rate))),
                    }
                }
                series(g, i, vec![], h)
            }
            4 => {
                let mut f = Vec::new();
                let mut h = Vec::new();
                for t in times() {
                    let k = t / SCRAPE;
                    if k < 240 {
                        f.push((t, if k == 100 { stale() } else { k as f64 * rate }));
                    } else {
                        h.push((t, counter(3, k, rate)));
                    }
                }
                series(g, i, f, h)
            }
            _ => series(
                g,
                i,
                times().map(|t| (t, (t / SCRAPE) as f64 * rate)).collect(),
                vec![],
            ),
        };
        out.push(s);
    }
    for (i, bounds) in [(0, "0.1 1"), (1, "0.1 1"), (2, "0.5 1")] {
        let s = series(
            "c",
            9000 + i,
            vec![],
            times().map(|t| (t, custom(t / SCRAPE, bounds))).collect(),
        );
        out.push(s);
    }
    MemSeries::new(out)
}

const QUERIES: &[&str] = &[
    "m",
    "m{g=\"a\"}",
    "-m",
    "m * 2",
    "2 * m",
    "m / 4",
    "m + 1",
    "m > 3",
    "abs(m)",
    "timestamp(m)",
    "rate(m[5m])",
    "increase(m[10m])",
    "delta(m[5m])",
    "irate(m[5m])",
    "idelta(m[5m])",
    "resets(m[20m])",
    "changes(m[20m])",
    "sum_over_time(m[5m])",
    "avg_over_time(m[5m])",
    "count_over_time(m[5m])",
    "last_over_time(m[5m])",
    "first_over_time(m[5m])",
    "max_over_time(m[5m])",
    "sum(m)",
    "sum by (g) (rate(m[5m]))",
    "sum without (i) (increase(m[10m]))",
    "sum by (g) (m{g!=\"c\"})",
    "sum(rate(m{g=\"c\"}[5m]))",
    "avg by (g) (rate(m[5m]))",
    "avg(m)",
    "count(m)",
    "count by (g) (rate(m[5m]))",
    "group by (g) (m)",
    "min(m)",
    "max by (g) (rate(m[5m]))",
    "stddev(m)",
    "topk(2, m)",
    "quantile(0.5, m)",
    "limitk(2, m)",
    "sum by (__name__) (m)",
    "histogram_quantile(0.9, sum by (g) (rate(m[5m])))",
    "histogram_quantile(0.5, rate(m[15m]))",
    "histogram_count(sum(rate(m[5m])))",
    "histogram_sum(sum by (g) (increase(m[1h])))",
    "histogram_avg(sum by (g) (rate(m[5m])))",
    "histogram_fraction(0, 0.1, sum by (g) (rate(m[5m])))",
    "histogram_stddev(rate(m[5m]))",
    "histogram_stdvar(rate(m{g=\"a\"}[5m]))",
];

/// Runs `query` streamed and materialized (instant at `t`, or over `[start, end]` by `step`).
pub(super) fn both(
    opts: &EngineOptions,
    store: &MemSeries,
    query: &str,
    (start, end, step): (i64, i64, i64),
) -> (Result<QueryResult, String>, Result<QueryResult, String>) {
    let expr = parse(query).expect("the query parses");
    let instant = step == 0;
    let args = (
        opts,
        store as &dyn gauntlet_engine::query::Queryable,
        &expr,
        query,
        start,
        end,
        step,
        instant,
    );
    let streamed = run_mode(args, false).map_err(|e| e.to_string());
    let materialized = run_mode(args, true).map_err(|e| e.to_string());
    (streamed, materialized)
}

/// Whether two query answers agree: equal values bit for bit (`exact`), or within a relative
/// 1e-9 (sums whose additions were grouped differently).
pub(super) fn agree(a: &QueryResult, b: &QueryResult, exact: bool) -> Result<(), String> {
    let loaded = |r: &QueryResult| (r.stats.total_samples, r.stats.samples_per_step.clone());
    if loaded(a) != loaded(b) {
        return Err(format!(
            "samples loaded differ: {:?} vs {:?}",
            loaded(a),
            loaded(b)
        ));
    }
    if a.warnings != b.warnings || a.info != b.info {
        return Err(format!(
            "annotations differ: {:?} {:?} vs {:?} {:?}",
            a.warnings, a.info, b.warnings, b.info
        ));
    }
    if exact {
        return if format!("{:?}", a.value) == format!("{:?}", b.value) {
            Ok(())
        } else {
            Err(format!("values differ:\n{:?}\nvs\n{:?}", a.value, b.value))
        };
    }
    let close = |x: f64, y: f64| {
        x.to_bits() == y.to_bits()
            || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
            || (x.is_nan() && y.is_nan())
    };
    let hclose = |x: &FloatHistogram, y: &FloatHistogram| {
        x.schema == y.schema
            && x.positive_spans == y.positive_spans
            && x.negative_spans == y.negative_spans
            && x.counter_reset_hint == y.counter_reset_hint
            && close(x.count, y.count)
            && close(x.sum, y.sum)
            && close(x.zero_count, y.zero_count)
            && x.positive_buckets.len() == y.positive_buckets.len()
            && x.positive_buckets
                .iter()
                .zip(&y.positive_buckets)
                .all(|(p, q)| close(*p, *q))
            && x.negative_buckets
                .iter()
                .zip(&y.negative_buckets)
                .all(|(p, q)| close(*p, *q))
    };
    let ok = match (&a.value, &b.value) {
        (Value::Vector(x), Value::Vector(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| {
                    p.labels == q.labels
                        && close(p.v, q.v)
                        && match (&p.h, &q.h) {
                            (None, None) => true,
                            (Some(g), Some(h)) => hclose(g, h),
                            _ => false,
                        }
                })
        }
        (Value::Matrix(x), Value::Matrix(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| {
                    p.labels == q.labels
                        && p.samples.ts == q.samples.ts
                        && p.samples
                            .val
                            .iter()
                            .zip(&q.samples.val)
                            .all(|(u, v)| close(*u, *v))
                        && p.histograms.ts == q.histograms.ts
                        && p.histograms
                            .h
                            .iter()
                            .zip(&q.histograms.h)
                            .all(|(g, h)| hclose(g, h))
                })
        }
        (x, y) => format!("{x:?}") == format!("{y:?}"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("values differ:\n{:?}\nvs\n{:?}", a.value, b.value))
    }
}

/// Every query of `queries`, instant at several times (inside the stale gap, where floats
/// turn into histograms, after the counter reset, at the end) and as a range query, both
/// name-removal modes; `all_times` false keeps the last instant and the range query only.
pub(super) fn check_all(n: usize, exact: bool, queries: &[&str], all_times: bool) {
    let store = store(n);
    let end = (SAMPLES - 1) * SCRAPE;
    let mut failures = Vec::new();
    for delayed in [false, true] {
        let opts = EngineOptions {
            delayed_name_removal: delayed,
            per_step_stats: true,
            ..EngineOptions::default()
        };
        for q in queries {
            let spans = [
                (end, end, 0),
                (30 * 60_000, end, 60_000),
                (205 * SCRAPE, 205 * SCRAPE, 0),
                (242 * SCRAPE, 242 * SCRAPE, 0),
                (302 * SCRAPE, 302 * SCRAPE, 0),
            ];
            for span in &spans[..if all_times { spans.len() } else { 2 }] {
                let span = *span;
                let (s, m) = both(&opts, &store, q, span);
                let verdict = match (&s, &m) {
                    (Ok(s), Ok(m)) => agree(s, m, exact),
                    (Err(a), Err(b)) if a == b => Ok(()),
                    _ => Err(format!(
                        "outcomes differ: {:?} vs {:?}",
                        s.as_ref().err(),
                        m.as_ref().err()
                    )),
                };
                if let Err(e) = verdict {
                    failures.push(format!("{q} at {span:?} (delayed names {delayed}): {e}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the checks failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn streamed_histograms_match_the_materialized_evaluation() {
    // Few enough series for one worker task: the same additions in the same order.
    check_all(60, true, QUERIES, true);
}

#[test]
fn streamed_histograms_split_across_tasks_match_the_materialized_evaluation() {
    // More than one task's series: sums of tasks are added, so values agree to rounding.
    // The aggregations are what tasks fold apart.
    let folded: Vec<&str> = QUERIES
        .iter()
        .copied()
        .filter(|q| {
            ["sum", "avg(", "count(", "group", "min(", "histogram_count"]
                .iter()
                .any(|a| q.contains(a))
        })
        .collect();
    check_all(super::stream::TASK_SERIES + 100, false, &folded, false);
}

/// The streamed evaluation holds a few decode groups and the output, never the whole
/// selection: with a limit the materialized evaluation passes, it still answers.
#[test]
fn streamed_histograms_hold_little_against_the_sample_limit() {
    let store = store(480);
    let end = (SAMPLES - 1) * SCRAPE;
    let q = "sum(rate(m[5m]))";
    let (s, m) = both(
        &EngineOptions::default(),
        &store,
        q,
        (30 * 60_000, end, 60_000),
    );
    let (s, m) = (s.expect("streamed"), m.expect("materialized"));
    assert!(
        s.peak_samples * 4 < m.peak_samples,
        "streamed peak {} vs materialized {}",
        s.peak_samples,
        m.peak_samples
    );
    let opts = EngineOptions {
        max_samples: s.peak_samples,
        ..EngineOptions::default()
    };
    let (s2, m2) = both(&opts, &store, q, (30 * 60_000, end, 60_000));
    assert!(s2.is_ok(), "{s2:?}");
    assert!(
        m2.is_err(),
        "the materialized evaluation needs more than the streamed peak"
    );
}

#[test]
fn histogram_weight_is_prometheus_size_in_float_samples() {
    // 168-byte header + 8-byte timestamp, 8 bytes a span, bucket and bound; 16 bytes a sample.
    let h = counter(3, 10, 1.0);
    assert_eq!(h.positive_spans.len(), 1);
    assert_eq!(h.positive_buckets.len(), 3);
    assert_eq!(super::histogram_weight(&h), (176 + 8 * 4) / 16);
    assert_eq!(super::histogram_weight(&FloatHistogram::default()), 11);
}

/// The annotations the checks above compare are there to compare: a group mixing floats and
/// histograms, custom bounds that do not add up, histograms an operator ignores.
#[test]
fn streamed_histogram_aggregations_report_what_they_drop() {
    let store = store(60);
    let end = (SAMPLES - 1) * SCRAPE;
    let opts = EngineOptions::default();
    let run = |q: &str| {
        both(&opts, &store, q, (end, end, 0))
            .0
            .expect("the streamed query answers")
    };
    let r = run("sum(m{g!=\"c\"})");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("mix of histograms and floats for aggregation")),
        "{:?}",
        r.warnings
    );
    let r = run("sum(rate(m{g=\"c\"}[5m]))");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("incompatible custom buckets")),
        "{:?}",
        r.warnings
    );
    let r = run("min(m)");
    assert!(
        r.info
            .iter()
            .any(|w| w.contains("ignored histogram in min aggregation")),
        "{:?}",
        r.info
    );
    // Group `a` holds histograms only; `b` has float series too, so no value.
    let Value::Vector(v) = run("sum by (g) (rate(m{g!=\"c\"}[5m]))").value else {
        panic!("an instant vector");
    };
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].labels.get("g"), Some("a"));
    assert!(v[0].h.as_ref().is_some_and(|h| h.count > 0.0), "{v:?}");
}
