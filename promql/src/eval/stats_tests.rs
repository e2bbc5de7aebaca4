//! The samples a query loads (`totalQueryableSamples`), counted by hand on a small store: for
//! instant and range queries, selectors, range functions, subqueries, `@`, native histograms
//! and stale markers; streamed and materialized alike.

use super::{histogram_weight, run_mode};
use crate::hist_notation::parse_histogram;
use crate::{EngineOptions, parse};
use gauntlet_engine::chunk::{HistogramBatch, STALE_NAN_BITS, SampleBatch};
use gauntlet_engine::histogram::FloatHistogram;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{MemSeries, Series};

const S: i64 = 1000;

/// `a{i="1"}`: a float every 15 s from 0 to 300 s. `a{i="2"}`: floats at 0, 60, 120 s, a stale
/// marker at 150 s, a float at 240 s. `h`: a histogram (weighing 13) at 0, 30 and 60 s, a stale
/// marker at 90 s.
fn store() -> MemSeries {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let floats = |i: &str, pts: Vec<(i64, f64)>| {
        let (ts, val) = pts.into_iter().unzip();
        Series::floats(
            Labels::from_pairs([("__name__", "a".to_string()), ("i", i.to_string())]),
            SampleBatch { ts, val },
        )
    };
    let a1 = floats("1", (0..=20).map(|k| (k * 15 * S, k as f64)).collect());
    let a2 = floats(
        "2",
        vec![
            (0, 1.0),
            (60 * S, 2.0),
            (120 * S, 3.0),
            (150 * S, stale),
            (240 * S, 4.0),
        ],
    );
    let mut hb = HistogramBatch::default();
    for (k, t) in [0, 30, 60].into_iter().enumerate() {
        hb.ts.push(t * S);
        hb.h.push(hist(k as f64 + 1.0));
    }
    hb.ts.push(90 * S);
    hb.h.push(FloatHistogram {
        sum: stale,
        ..FloatHistogram::default()
    });
    let h = Series {
        labels: Labels::from_pairs([("__name__", "h".to_string())]),
        samples: SampleBatch::default(),
        histograms: hb,
    };
    MemSeries::new(vec![a1, a2, h])
}

/// One span of three buckets: (168 + 8 × 4 + 8) / 16 = 13 samples.
fn hist(k: f64) -> FloatHistogram {
    parse_histogram(&format!(
        "schema:0 sum:{k} count:{} buckets:[{k} {k} {k}]",
        3.0 * k
    ))
    .expect("a test histogram")
}

/// The samples `query` loads over `[start, end]` by `step` (s; `step` 0 for an instant query
/// at `start`): the total and the count of each step, the same streamed and materialized.
fn loaded(query: &str, start: i64, end: i64, step: i64) -> (u64, Vec<u64>) {
    let store = store();
    let expr = parse(query).expect("the query parses");
    let opts = EngineOptions {
        per_step_stats: true,
        ..EngineOptions::default()
    };
    let args = (
        &opts,
        &store as &dyn gauntlet_engine::query::Queryable,
        &expr,
        query,
        start * S,
        end * S,
        step * S,
        step == 0,
    );
    let counts = |materialize| {
        let r = run_mode(args, materialize).expect("the query runs");
        let per_step: Vec<u64> = r.stats.samples_per_step.iter().map(|p| p.1).collect();
        assert_eq!(
            per_step.iter().sum::<u64>(),
            r.stats.total_samples,
            "{query}"
        );
        let times: Vec<i64> = r.stats.samples_per_step.iter().map(|p| p.0).collect();
        let want: Vec<i64> = if step == 0 {
            vec![start * S]
        } else {
            (start..=end)
                .step_by(step as usize)
                .map(|t| t * S)
                .collect()
        };
        assert_eq!(times, want, "{query}: step times");
        (r.stats.total_samples, per_step)
    };
    let streamed = counts(false);
    assert_eq!(streamed, counts(true), "{query}: streamed vs materialized");
    streamed
}

#[test]
fn a_test_histogram_weighs_13_samples() {
    assert_eq!(histogram_weight(&hist(1.0)), 13);
}

#[test]
fn instant_selectors_count_a_sample_per_series_and_step() {
    // At 300 s: a{i="1"} at 300 s, a{i="2"} at 240 s.
    assert_eq!(loaded("a", 300, 300, 0), (2, vec![2]));
    // At 160 s a{i="2"}'s latest sample is its stale marker: nothing.
    assert_eq!(loaded("a", 160, 160, 0), (1, vec![1]));
    // Beyond the 5 min lookback nothing is found.
    assert_eq!(loaded("a{i=\"2\"}", 600, 600, 0), (0, vec![0]));
    // Steps 0, 60, …, 300 s: a{i="2"} is stale at 180 s.
    assert_eq!(loaded("a", 0, 300, 60), (11, vec![2, 2, 2, 1, 2, 2]));
    // Aggregations and operators count what their selectors load, nothing of their own.
    assert_eq!(loaded("sum(a)", 0, 300, 60), (11, vec![2, 2, 2, 1, 2, 2]));
    assert_eq!(loaded("a{i=\"1\"} + a{i=\"1\"}", 300, 300, 0), (2, vec![2]));
    assert_eq!(
        loaded("-a{i=\"1\"} * 2 > 1000", 0, 300, 60),
        (6, vec![1; 6])
    );
    // `@` pins every step to the same sample, counted at each step.
    assert_eq!(loaded("a{i=\"1\"} @ 300", 0, 300, 60), (6, vec![1; 6]));
    assert_eq!(loaded("timestamp(a)", 300, 300, 0), (2, vec![2]));
    assert_eq!(loaded("vector(1) + time()", 0, 300, 60), (0, vec![0; 6]));
}

#[test]
fn range_vectors_count_each_steps_window() {
    // (240, 300]: 255, 270, 285, 300 s.
    assert_eq!(loaded("rate(a{i=\"1\"}[1m])", 300, 300, 0), (4, vec![4]));
    assert_eq!(loaded("a{i=\"1\"}[1m]", 300, 300, 0), (4, vec![4]));
    // Windows overlap: each step counts its own, (t - 60 s, t].
    assert_eq!(
        loaded("rate(a{i=\"1\"}[1m])", 60, 300, 60),
        (20, vec![4; 5])
    );
    assert_eq!(
        loaded("sum(increase(a{i=\"1\"}[2m]))", 120, 300, 90),
        (24, vec![8, 8, 8])
    );
    // Stale markers are not loaded into a range: (80, 200] holds 120 s and the marker.
    assert_eq!(
        loaded("count_over_time(a{i=\"2\"}[2m])", 200, 200, 0),
        (1, vec![1])
    );
    assert_eq!(loaded("a{i=\"2\"}[2m]", 200, 200, 0), (1, vec![1]));
    // A function over a range vector that comes out empty still counted its windows.
    assert_eq!(
        loaded("absent_over_time(a{i=\"2\"}[1m])", 60, 240, 60),
        (3, vec![1, 1, 0, 1])
    );
    assert_eq!(
        loaded("quantile_over_time(0.5, a{i=\"1\"}[30s] @ 300)", 0, 120, 60),
        (6, vec![2, 2, 2])
    );
}

#[test]
fn subqueries_count_their_results_under_a_function_and_their_loads_alone() {
    // Inner steps at 240 and 300 s (aligned to 1 m within (180, 300]): two results in the
    // window; what the inner rate loaded (4 + 4) is not counted.
    assert_eq!(
        loaded("sum_over_time(rate(a{i=\"1\"}[1m])[2m:1m])", 300, 300, 0),
        (2, vec![2])
    );
    // Range query: each outer step counts the inner results in its window.
    assert_eq!(
        loaded("max_over_time(a{i=\"1\"}[1m:30s])", 60, 300, 120),
        (6, vec![2, 2, 2])
    );
    // A subquery as the whole query counts what its inner expression loaded.
    assert_eq!(
        loaded("rate(a{i=\"1\"}[1m])[2m:1m]", 300, 300, 0),
        (8, vec![8])
    );
    assert_eq!(loaded("(a[2m:1m])", 300, 300, 0), (4, vec![4]));
}

#[test]
fn histograms_weigh_their_size_and_stale_markers_count_nothing() {
    assert_eq!(loaded("h", 60, 60, 0), (13, vec![13]));
    // At 100 s the latest sample is the stale marker.
    assert_eq!(loaded("h", 0, 120, 30), (39, vec![13, 13, 13, 0, 0]));
    // (0, 60]: the histograms at 30 and 60 s.
    assert_eq!(loaded("rate(h[1m])", 60, 60, 0), (26, vec![26]));
    // (-60, 0], (-30, 30], (0, 60], (30, 90] less the marker, (60, 120] only the marker.
    assert_eq!(
        loaded("count_over_time(h[1m])", 0, 120, 30),
        (78, vec![13, 26, 26, 13, 0])
    );
    assert_eq!(loaded("h[1m]", 60, 60, 0), (26, vec![26]));
    assert_eq!(loaded("sum(h)", 60, 60, 0), (13, vec![13]));
    // timestamp() reads each sample's time alone: one a step.
    assert_eq!(loaded("timestamp(h)", 60, 60, 0), (1, vec![1]));
}
