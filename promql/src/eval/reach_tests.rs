//! `anchored` and `smoothed` selectors at the edges of their windows, with answers worked out
//! by hand from Prometheus 3.14's rules; every query runs streamed and materialized, which
//! must agree bit for bit. Then the same modifiers over the histogram test store of
//! `hist_stream_tests`: streamed and materialized agree on every kind of series there.

use super::QueryResult;
use super::hist_stream_tests::{agree, both, check_all};
use crate::EngineOptions;
use crate::value::Value;
use gauntlet_engine::chunk::{HistogramBatch, STALE_NAN_BITS, SampleBatch};
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{MemSeries, Series};

const S: i64 = 1000;

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// A float series named `name` with samples at `(seconds, value)`.
fn floats(name: &str, points: &[(i64, f64)]) -> Series {
    Series {
        labels: Labels::from_pairs([("__name__", name)]),
        samples: SampleBatch {
            ts: points.iter().map(|p| p.0 * S).collect(),
            val: points.iter().map(|p| p.1).collect(),
        },
        histograms: HistogramBatch::default(),
    }
}

fn store() -> MemSeries {
    MemSeries::new(vec![
        // A sample exactly at the start of the window (10, 40].
        floats(
            "x",
            &[(0, 0.0), (10, 5.0), (20, 20.0), (30, 30.0), (40, 31.0)],
        ),
        // Nothing before 20 s.
        floats("y", &[(20, 100.0), (30, 110.0), (40, 130.0)]),
        // A counter that resets at 20 s.
        floats("z", &[(0, 50.0), (10, 60.0), (20, 5.0), (30, 15.0)]),
        // A stale marker at 20 s.
        floats("w", &[(0, 1.0), (10, 2.0), (20, stale()), (30, 10.0)]),
    ])
}

/// Runs `q` streamed and materialized at `t` seconds (instant), or from `t` to `end` seconds
/// by 10 s, checks that both agree exactly, and gives the streamed answer.
fn run(store: &MemSeries, q: &str, (t, end): (i64, i64)) -> QueryResult {
    let opts = EngineOptions {
        per_step_stats: true,
        ..EngineOptions::default()
    };
    let step = if t == end { 0 } else { 10 * S };
    let (s, m) = both(&opts, store, q, (t * S, end * S, step));
    let (s, m) = (s.expect(q), m.expect(q));
    if let Err(e) = agree(&s, &m, true) {
        panic!("{q}: {e}");
    }
    s
}

/// The only value of `q`'s instant answer at `t` seconds, `None` when it is empty.
fn value(store: &MemSeries, q: &str, t: i64) -> Option<f64> {
    match run(store, q, (t, t)).value {
        Value::Vector(v) if v.is_empty() => None,
        Value::Vector(v) if v.len() == 1 && v[0].h.is_none() => Some(v[0].v),
        other => panic!("{q}: {other:?}"),
    }
}

#[test]
fn a_sample_exactly_at_the_window_start_is_its_left_edge() {
    let s = store();
    // (10, 40]: the sample at 10 s is the anchor, and needs no interpolation when smoothed.
    assert_eq!(value(&s, "increase(x[30s] anchored)", 40), Some(26.0));
    assert_eq!(value(&s, "increase(x[30s] smoothed)", 40), Some(26.0));
    assert_eq!(value(&s, "rate(x[30s] anchored)", 40), Some(26.0 / 30.0));
    assert_eq!(value(&s, "delta(x[30s] anchored)", 40), Some(26.0));
    assert_eq!(value(&s, "changes(x[30s] anchored)", 40), Some(3.0));
    // Without the modifiers the window starts after it.
    assert_eq!(value(&s, "changes(x[30s])", 40), Some(2.0));
    assert_ne!(value(&s, "increase(x[30s])", 40), Some(26.0));
    // Smoothed between samples: (5, 35] interpolates 2.5 at 5 s and 30.5 at 35 s.
    assert_eq!(value(&s, "increase(x[30s] smoothed)", 35), Some(28.0));
}

#[test]
fn without_a_sample_before_the_window_its_first_sample_is_the_edge() {
    let s = store();
    assert_eq!(value(&s, "increase(y[30s] anchored)", 40), Some(30.0));
    assert_eq!(value(&s, "increase(y[30s] smoothed)", 40), Some(30.0));
    assert_eq!(value(&s, "changes(y[30s] anchored)", 40), Some(2.0));
    // Samples only after the window (smoothed), none in reach (anchored), or only before.
    assert_eq!(value(&s, "increase(y[10s] smoothed)", 15), None);
    assert_eq!(value(&s, "increase(y[10s] anchored)", 15), None);
    assert_eq!(value(&s, "increase(y[5s] smoothed)", 60), None);
    assert_eq!(value(&s, "increase(y[5s] anchored)", 60), None);
    assert_eq!(value(&s, "changes(y[5s] anchored)", 60), None);
    // A single sample after the start: no change.
    assert_eq!(value(&s, "increase(y[5s] anchored)", 20), Some(0.0));
}

#[test]
fn a_counter_reset_at_the_edge_is_added_back() {
    let s = store();
    // (10, 20]: 60 at the left edge, 5 at the right one, after a reset.
    assert_eq!(value(&s, "increase(z[10s] anchored)", 20), Some(5.0));
    assert_eq!(value(&s, "delta(z[10s] anchored)", 20), Some(-55.0));
    assert_eq!(value(&s, "resets(z[10s] anchored)", 20), Some(1.0));
    assert_eq!(value(&s, "resets(z[10s])", 20), Some(0.0));
    // (5, 15]: 55 interpolated at 5 s; at 15 s the counter restarted from zero, so 2.5.
    assert_eq!(value(&s, "increase(z[10s] smoothed)", 15), Some(7.5));
    // As a gauge, 32.5 at 15 s.
    assert_eq!(value(&s, "delta(z[10s] smoothed)", 15), Some(-22.5));
}

#[test]
fn stale_markers_are_not_samples_of_the_span() {
    let s = store();
    // (15, 30]: the anchor is the sample at 10 s, the stale marker at 20 s is passed over.
    assert_eq!(value(&s, "increase(w[15s] anchored)", 30), Some(8.0));
    assert_eq!(value(&s, "changes(w[15s] anchored)", 30), Some(1.0));
    // A smoothed selector interpolates across it where a plain one has nothing.
    assert_eq!(value(&s, "w", 20), None);
    assert_eq!(value(&s, "w smoothed", 20), Some(6.0));
    assert_eq!(value(&s, "w smoothed", 25), Some(8.0));
    // Before the first sample nothing; after the last it is held for the lookback delta.
    assert_eq!(value(&s, "w smoothed", -5), None);
    assert_eq!(value(&s, "w smoothed", 320), Some(10.0));
    assert_eq!(value(&s, "w smoothed", 340), None);
}

#[test]
fn smoothed_selectors_in_range_queries_with_offsets() {
    let s = store();
    let r = run(&s, "x offset -5s smoothed", (0, 40));
    let Value::Matrix(m) = r.value else {
        panic!("{:?}", r.value)
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].samples.ts, [0, 10, 20, 30, 40].map(|t| t * S));
    assert_eq!(m[0].samples.val, [2.5, 12.5, 25.0, 30.5, 31.0]);
    // Aggregated and with `@`, streamed the same as materialized.
    run(&s, "sum(x smoothed @ 15)", (0, 40));
    run(
        &s,
        "max(rate(x[20s] smoothed)) + sum(increase(z[15s] anchored))",
        (0, 40),
    );
}

#[test]
fn a_range_selector_alone_gets_a_sample_at_each_edge() {
    let s = store();
    let series = |q: &str| {
        let r = run(&s, q, (35, 35));
        let Value::Matrix(m) = r.value else {
            panic!("{q}: {:?}", r.value)
        };
        assert_eq!(m.len(), 1, "{q}");
        let s = &m[0].samples;
        let points: Vec<(i64, f64)> = s.ts.iter().map(|t| t / S).zip(s.val.clone()).collect();
        (points, r.stats.total_samples)
    };
    // (5, 35]: the sample at 0 s is the anchor, placed at 5 s; the last one is held at 35 s.
    assert_eq!(
        series("x[30s] anchored"),
        (
            vec![(5, 0.0), (10, 5.0), (20, 20.0), (30, 30.0), (35, 30.0)],
            5
        )
    );
    assert_eq!(
        series("x[30s] smoothed"),
        (
            vec![(5, 2.5), (10, 5.0), (20, 20.0), (30, 30.0), (35, 30.5)],
            5
        )
    );
}

#[test]
fn spans_are_counted_as_loaded() {
    let s = store();
    // Every sample of the span (10 - 300, 40] (and to 340 when smoothed), not only (10, 40].
    assert_eq!(run(&s, "rate(x[30s])", (40, 40)).stats.total_samples, 3);
    assert_eq!(
        run(&s, "rate(x[30s] anchored)", (40, 40))
            .stats
            .total_samples,
        5
    );
    assert_eq!(
        run(&s, "rate(x[30s] smoothed)", (30, 30))
            .stats
            .total_samples,
        5
    );
}

/// The modifiers over every kind of series of the histogram store: floats, histograms of two
/// schemas, a reset, a stale marker and gap, floats turning into histograms, custom buckets.
const QUERIES: &[&str] = &[
    "rate(m[5m] anchored)",
    "rate(m[5m] smoothed)",
    "increase(m[10m] anchored)",
    "increase(m[10m] smoothed)",
    "delta(m[5m] anchored)",
    "delta(m[5m] smoothed)",
    "resets(m[20m] anchored)",
    "changes(m[20m] anchored)",
    "increase(m[3m] anchored offset 2m)",
    "rate(m[2m] smoothed @ 3000)",
    "m smoothed",
    "m offset 1m smoothed",
    "histogram_count(m smoothed)",
    "-m smoothed",
    "sum(m smoothed)",
    "sum by (g) (rate(m[5m] smoothed))",
    "sum without (i) (increase(m[10m] anchored))",
    "histogram_count(sum(rate(m[5m] anchored)))",
    "m{g=\"c\"}[5m] anchored",
];

#[test]
fn streamed_extended_ranges_match_the_materialized_evaluation() {
    check_all(60, true, QUERIES, true);
}

#[test]
fn streamed_extended_ranges_split_across_tasks_match_the_materialized_evaluation() {
    let folded: Vec<&str> = QUERIES
        .iter()
        .copied()
        .filter(|q| q.starts_with("sum") || q.starts_with("histogram_count(sum"))
        .collect();
    check_all(super::stream::TASK_SERIES + 100, false, &folded, false);
}
