//! Tests of histogram arithmetic, iteration and printing. Expected values are worked out by
//! hand from the rules in `ops.rs`, or taken from the Prometheus 3.5.3 promqltest file
//! `testdata/promql/v3.5.3/native_histograms.test`. (The PromQL statistics are tested where
//! they are, in gauntlet-promql.)

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Parses the promqltest notation of one histogram, `{{schema:1 count:5 buckets:[1 2] ...}}`.
fn parse(notation: &str) -> FloatHistogram {
    let inner = notation
        .trim()
        .strip_prefix("{{")
        .and_then(|s| s.strip_suffix("}}"))
        .unwrap_or_else(|| panic!("not a histogram: {notation}"));
    let mut h = FloatHistogram::default();
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once(':').expect("key:value");
        let (value, next) = if after.starts_with('[') {
            let end = after.find(']').expect("closing ]");
            (&after[..=end], &after[end + 1..])
        } else {
            after.split_once(' ').unwrap_or((after, ""))
        };
        let list = || -> Vec<f64> {
            value
                .trim_matches(|c| c == '[' || c == ']')
                .split_whitespace()
                .map(num)
                .collect()
        };
        match key.trim() {
            "schema" => h.schema = value.parse().unwrap(),
            "count" => h.count = num(value),
            "sum" => h.sum = num(value),
            "z_bucket" => h.zero_count = num(value),
            "z_bucket_w" => h.zero_threshold = num(value),
            "offset" => offset = value.parse().unwrap(),
            "n_offset" => n_offset = value.parse().unwrap(),
            "buckets" => h.positive_buckets = list(),
            "n_buckets" => h.negative_buckets = list(),
            "custom_values" => h.custom_values = list().into(),
            "counter_reset_hint" => {
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => panic!("hint {other}"),
                }
            }
            other => panic!("unknown key {other}"),
        }
        rest = next.trim();
    }
    if !h.positive_buckets.is_empty() {
        h.positive_spans = vec![Span::new(offset, h.positive_buckets.len() as u32)];
    }
    if !h.negative_buckets.is_empty() {
        h.negative_spans = vec![Span::new(n_offset, h.negative_buckets.len() as u32)];
    }
    h
}

/// A float as promqltest writes one.
fn num(s: &str) -> f64 {
    match s.trim() {
        "Inf" | "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| panic!("not a number: {v}")),
    }
}

/// promqltest's comparison: equal, both NaN, or within a relative 1e-6.
fn almost(a: f64, b: f64) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    let diff = (a - b).abs();
    let abs_sum = a.abs() + b.abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < 1e-6
}

/// All buckets of one side as (index, count).
fn side(spans: &[Span], counts: &[f64]) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut next = 0i64;
    let mut k = 0;
    for s in spans {
        next += i64::from(s.offset);
        for _ in 0..s.length {
            out.push((next, counts[k]));
            k += 1;
            next += 1;
        }
    }
    out
}

/// Histograms as promqltest compares them: schema, zero threshold, the counts within 1e-6,
/// and the same bucket indices.
fn assert_hist_close(got: &FloatHistogram, want: &FloatHistogram, what: &str) {
    let close = got.schema == want.schema
        && got.zero_threshold == want.zero_threshold
        && almost(got.count, want.count)
        && almost(got.sum, want.sum)
        && almost(got.zero_count, want.zero_count)
        && [
            (
                side(&got.positive_spans, &got.positive_buckets),
                side(&want.positive_spans, &want.positive_buckets),
            ),
            (
                side(&got.negative_spans, &got.negative_buckets),
                side(&want.negative_spans, &want.negative_buckets),
            ),
        ]
        .iter()
        .all(|(g, w)| {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| a.0 == b.0 && almost(a.1, b.1))
        });
    assert!(
        close,
        "{what}: got {}, want {}",
        got.test_expression(),
        want.test_expression()
    );
}

fn spans(list: &[(i32, u32)]) -> Vec<Span> {
    list.iter().map(|&(o, l)| Span::new(o, l)).collect()
}

// ---------------------------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------------------------

#[test]
// The format's √2 is one ulp below the correctly rounded one, which is the point here.
#[allow(clippy::approx_constant)]
fn exponential_bounds_follow_schema_and_index() {
    assert_eq!(exponential_bound(0, 0), 1.0);
    assert_eq!(exponential_bound(1, 0), 2.0);
    assert_eq!(exponential_bound(-1, 0), 0.5);
    assert_eq!(exponential_bound(1, -1), 4.0);
    assert_eq!(exponential_bound(-1, -2), 1.0 / 16.0);
    assert_eq!(exponential_bound(1, -4), 65536.0);
    // Schema 1 splits each power of two in two: bound 1 is √2 as the format's table has it.
    assert_eq!(exponential_bound(1, 1), 1.414213562373095);
    assert_eq!(exponential_bound(3, 1), 2.82842712474619);
    assert_eq!(exponential_bound(-1, 1), 0.7071067811865475);
    assert_eq!(exponential_bound(8, 3), 2.0);
    assert_eq!(exponential_bound(256 * 3, 8), 8.0);
    // The last finite bucket ends at f64::MAX; the next holds ±Inf.
    assert_eq!(exponential_bound(1024, 0), f64::MAX);
    assert_eq!(exponential_bound(1025, 0), f64::INFINITY);
    assert_eq!(exponential_bound(64, -4), f64::MAX);
    assert_eq!(exponential_bound(1024 * 256, 8), f64::MAX);
    assert_eq!(exponential_bound(1024 * 256 + 1, 8), f64::INFINITY);
    // Down to the smallest subnormal, then 0.
    assert_eq!(exponential_bound(-1074, 0), f64::from_bits(1));
    assert_eq!(exponential_bound(-1075, 0), 0.0);
    assert_eq!(exponential_bound(i64::from(i32::MIN), 8), 0.0);
    assert_eq!(exponential_bound(i64::from(i32::MAX), -4), f64::INFINITY);
    assert!(exponential_bound(0, 9).is_nan());
    assert!(exponential_bound(0, -5).is_nan());
}

#[test]
fn bound_table_is_increasing_and_near_the_exact_powers() {
    let mut prev = 0.0;
    for k in 0..256 {
        // Bucket k+256·j of schema 8 ends at frac_k · 2^(j+1); j = -1 gives the fraction.
        let b = exponential_bound(k - 256, 8);
        assert!(b > prev, "fraction {k} not increasing");
        let exact = (std::f64::consts::LN_2 * k as f64 / 256.0).exp() / 2.0;
        assert!(
            (b - exact).abs() <= 4.0 * f64::EPSILON * exact,
            "fraction {k}: {b} vs {exact}"
        );
        prev = b;
    }
    // Each lower schema takes every other bound of the next.
    for s in 1..=8 {
        for i in -600..600 {
            assert_eq!(exponential_bound(i, s - 1), exponential_bound(2 * i, s));
        }
    }
}

#[test]
fn custom_bounds_end_in_infinities() {
    let cv = [1.0, 5.0];
    assert_eq!(bucket_bound(-1, -53, &cv), f64::NEG_INFINITY);
    assert_eq!(bucket_bound(-7, -53, &cv), f64::NEG_INFINITY);
    assert_eq!(bucket_bound(0, -53, &cv), 1.0);
    assert_eq!(bucket_bound(1, -53, &cv), 5.0);
    assert_eq!(bucket_bound(2, -53, &cv), f64::INFINITY);
    assert_eq!(bucket_bound(99, -53, &cv), f64::INFINITY);
}

// ---------------------------------------------------------------------------------------------
// Iteration
// ---------------------------------------------------------------------------------------------

fn bounds(it: impl Iterator<Item = Bucket>) -> Vec<(f64, f64, bool, bool, f64, i64)> {
    it.map(|b| {
        (
            b.lower,
            b.upper,
            b.lower_inclusive,
            b.upper_inclusive,
            b.count,
            b.index,
        )
    })
    .collect()
}

fn two_sided() -> FloatHistogram {
    FloatHistogram {
        schema: 0,
        zero_threshold: 0.001,
        zero_count: 2.0,
        count: 12.0,
        sum: 3.0,
        positive_spans: spans(&[(-1, 2), (2, 1)]),
        positive_buckets: vec![1.0, 2.0, 3.0],
        negative_spans: spans(&[(1, 2)]),
        negative_buckets: vec![4.0, 0.0],
        ..FloatHistogram::default()
    }
}

#[test]
fn positive_and_negative_buckets_in_order_with_bounds() {
    let h = two_sided();
    assert_eq!(
        bounds(h.positive_buckets_iter()),
        vec![
            (0.25, 0.5, false, true, 1.0, -1),
            (0.5, 1.0, false, true, 2.0, 0),
            (4.0, 8.0, false, true, 3.0, 3),
        ]
    );
    assert_eq!(
        bounds(h.negative_buckets_iter()),
        vec![
            (-2.0, -1.0, true, false, 4.0, 1),
            (-4.0, -2.0, true, false, 0.0, 2),
        ]
    );
    let mut rev = bounds(h.positive_buckets_reverse_iter());
    rev.reverse();
    assert_eq!(rev, bounds(h.positive_buckets_iter()));
    let mut rev = bounds(h.negative_buckets_reverse_iter());
    rev.reverse();
    assert_eq!(rev, bounds(h.negative_buckets_iter()));
}

#[test]
fn all_buckets_go_from_lowest_value_to_highest_through_the_zero_bucket() {
    let h = two_sided();
    let all = bounds(h.all_buckets_iter());
    assert_eq!(
        all,
        vec![
            (-4.0, -2.0, true, false, 0.0, 2),
            (-2.0, -1.0, true, false, 4.0, 1),
            (-0.001, 0.001, true, true, 2.0, 0),
            (0.25, 0.5, false, true, 1.0, -1),
            (0.5, 1.0, false, true, 2.0, 0),
            (4.0, 8.0, false, true, 3.0, 3),
        ]
    );
    let mut rev = bounds(h.all_buckets_reverse_iter());
    rev.reverse();
    assert_eq!(rev, all);
}

#[test]
fn buckets_reaching_into_the_zero_bucket_are_cut_at_the_threshold() {
    let h = FloatHistogram {
        zero_threshold: 0.75,
        zero_count: 1.0,
        positive_spans: spans(&[(0, 2)]),
        positive_buckets: vec![1.0, 1.0],
        negative_spans: spans(&[(0, 1)]),
        negative_buckets: vec![1.0],
        ..FloatHistogram::default()
    };
    let all = bounds(h.all_buckets_iter());
    assert_eq!(all[0].0..all[0].1, -1.0..-0.75);
    assert_eq!(all[1].0..all[1].1, -0.75..0.75);
    assert_eq!(all[2].0..all[2].1, 0.75..1.0);
    assert_eq!(all[3].0..all[3].1, 1.0..2.0);
}

#[test]
fn an_empty_zero_bucket_is_not_visited() {
    let mut h = two_sided();
    h.zero_count = 0.0;
    assert_eq!(h.all_buckets_iter().count(), 5);
    h.zero_count = -1.0;
    assert_eq!(h.all_buckets_reverse_iter().count(), 5);
}

#[test]
fn custom_buckets_run_from_minus_infinity_to_infinity() {
    let h = parse("{{schema:-53 sum:5 count:4 custom_values:[5 10] buckets:[1 2 1]}}");
    assert_eq!(
        bounds(h.all_buckets_iter()),
        vec![
            (f64::NEG_INFINITY, 5.0, true, true, 1.0, 0),
            (5.0, 10.0, false, true, 2.0, 1),
            (10.0, f64::INFINITY, false, true, 1.0, 2),
        ]
    );
    assert_eq!(h.zero_bucket(), None);
}

#[test]
fn iteration_stops_where_a_broken_layout_ends() {
    let mut h = two_sided();
    h.positive_buckets.truncate(1);
    assert_eq!(h.positive_buckets_iter().count(), 1);
    // The reverse walk skips the positions that have no count.
    assert_eq!(
        bounds(h.positive_buckets_reverse_iter()),
        vec![(0.25, 0.5, false, true, 1.0, -1)]
    );
    h.positive_spans = spans(&[(0, u32::MAX), (i32::MAX, u32::MAX)]);
    assert_eq!(h.positive_buckets_iter().count(), 1);
    assert_eq!(h.positive_buckets_reverse_iter().count(), 1);
    h.positive_spans = spans(&[(0, 0), (3, 0), (1, 1)]);
    assert_eq!(bounds(h.positive_buckets_iter())[0].5, 4);
    assert_eq!(bounds(h.positive_buckets_reverse_iter())[0].5, 4);
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

#[test]
fn display_prints_populated_buckets_as_prometheus_string() {
    let h = FloatHistogram {
        schema: 0,
        zero_threshold: 0.001,
        zero_count: 2.0,
        count: 5.0,
        sum: 12.0,
        positive_spans: spans(&[(0, 2)]),
        positive_buckets: vec![0.0, 2.0],
        negative_spans: spans(&[(1, 1)]),
        negative_buckets: vec![1.0],
        ..FloatHistogram::default()
    };
    assert_eq!(
        h.to_string(),
        "{count:5, sum:12, [-2,-1):1, [-0.001,0.001]:2, (1,2]:2}"
    );
    let h = parse("{{schema:-53 sum:5 count:4 custom_values:[5 10] buckets:[1 0 1]}}");
    assert_eq!(h.to_string(), "{count:4, sum:5, [-Inf,5]:1, (10,+Inf]:1}");
    let h = parse("{{schema:2 count:1e+06 sum:1.5e-07 n_buckets:[0.5 1e+06] n_offset:-2}}");
    assert_eq!(
        h.to_string(),
        "{count:1e+06, sum:1.5e-07, [-0.8408964152537144,-0.7071067811865475):1e+06, \
         [-0.7071067811865475,-0.5946035575013605):0.5}"
    );
    assert_eq!(FloatHistogram::default().to_string(), "{count:0, sum:0}");
}

#[test]
fn test_expression_round_trips_the_promqltest_notation() {
    for s in [
        "{{schema:1 count:5 sum:12 z_bucket:2 z_bucket_w:0.001 buckets:[1 1] n_buckets:[1]}}",
        "{{schema:-1 count:5 sum:8 offset:1 buckets:[5]}}",
        "{{count:-30 sum:-33 z_bucket:-3 z_bucket_w:0.001 counter_reset_hint:gauge buckets:[-3 -3 -3] n_buckets:[-6 -6 -6]}}",
        "{{schema:-53 count:4 sum:5 custom_values:[5 10] buckets:[1 2 1]}}",
        "{{count:+Inf sum:NaN z_bucket:+Inf z_bucket_w:0.001 counter_reset_hint:reset}}",
        "{{schema:8 count:10 sum:10 counter_reset_hint:not_reset offset:-3 buckets:[1 2 3 4] n_offset:7 n_buckets:[0.06666666666666667]}}",
        "{{}}",
    ] {
        assert_eq!(parse(s).test_expression(), s);
    }
}

#[test]
fn test_expression_compacts_to_one_span_per_side() {
    let h = FloatHistogram {
        count: 3.0,
        positive_spans: spans(&[(-2, 2), (3, 1), (0, 2)]),
        positive_buckets: vec![0.0, 1.0, 2.0, 0.0, 0.0],
        ..FloatHistogram::default()
    };
    assert_eq!(
        h.test_expression(),
        "{{count:3 offset:-1 buckets:[1 0 0 0 2]}}"
    );
}

// ---------------------------------------------------------------------------------------------
// Arithmetic
// ---------------------------------------------------------------------------------------------

#[test]
fn add_of_same_layout_adds_every_field() {
    let mut a = parse("{{schema:0 count:4 sum:5 buckets:[1 2 1]}}");
    let b = parse("{{schema:0 count:4 sum:-4 n_buckets:[1 2 1]}}");
    assert_eq!(a.add(&b), Ok(AddOutcome::default()));
    assert_eq!(
        a.test_expression(),
        "{{count:8 sum:1 buckets:[1 2 1] n_buckets:[1 2 1]}}"
    );
}

#[test]
fn add_reduces_to_the_lower_resolution() {
    // low_res_histogram of native_histograms.test: schema 0 buckets 1 and 2 both fall into
    // bucket 1 of schema -1, (1, 4].
    for (a, b) in [
        (
            "{{schema:-1 sum:4 count:1 buckets:[1] offset:1}}",
            "{{schema:0 sum:4 count:4 buckets:[2 2] offset:1}}",
        ),
        (
            "{{schema:0 sum:4 count:4 buckets:[2 2] offset:1}}",
            "{{schema:-1 sum:4 count:1 buckets:[1] offset:1}}",
        ),
    ] {
        let mut h = parse(a);
        h.add(&parse(b)).unwrap();
        assert!(
            h.equals(&parse("{{schema:-1 count:5 sum:8 offset:1 buckets:[5]}}")),
            "{a} + {b} = {}",
            h.test_expression()
        );
    }
}

#[test]
fn add_widens_the_zero_bucket_over_the_buckets_it_covers() {
    // a: zero bucket ±0.001 with 1, buckets (0.25,0.5]:1 and (0.5,1]:2, (-0.5,-0.25]:3.
    let mut a = FloatHistogram {
        zero_threshold: 0.001,
        zero_count: 1.0,
        count: 7.0,
        positive_spans: spans(&[(-1, 2)]),
        positive_buckets: vec![1.0, 2.0],
        negative_spans: spans(&[(-1, 1)]),
        negative_buckets: vec![3.0],
        ..FloatHistogram::default()
    };
    // b: zero bucket ±0.5 with 4, buckets (0.5,1]:1 and (1,2]:1.
    let b = FloatHistogram {
        zero_threshold: 0.5,
        zero_count: 4.0,
        count: 6.0,
        positive_spans: spans(&[(0, 2)]),
        positive_buckets: vec![1.0, 1.0],
        ..FloatHistogram::default()
    };
    a.add(&b).unwrap();
    // The (0.25,0.5] and [-0.5,-0.25) buckets of a join its zero bucket: 1+1+3, plus b's 4.
    assert_eq!(
        a.test_expression(),
        "{{count:13 z_bucket:9 z_bucket_w:0.5 buckets:[3 1]}}"
    );
    assert_eq!(a.negative_spans, vec![]);

    // The other way round gives the same.
    let mut b2 = b.clone();
    b2.add(&FloatHistogram {
        zero_threshold: 0.001,
        zero_count: 1.0,
        count: 7.0,
        positive_spans: spans(&[(-1, 2)]),
        positive_buckets: vec![1.0, 2.0],
        negative_spans: spans(&[(-1, 1)]),
        negative_buckets: vec![3.0],
        ..FloatHistogram::default()
    })
    .unwrap();
    assert!(b2.equals(&a), "{}", b2.test_expression());
}

#[test]
fn a_zero_threshold_inside_a_populated_bucket_moves_to_its_upper_bound() {
    // b's threshold 0.7 cuts a's populated bucket (0.5, 1]: the threshold becomes 1.
    let mut a = FloatHistogram {
        zero_threshold: 0.001,
        count: 3.0,
        positive_spans: spans(&[(0, 2)]),
        positive_buckets: vec![1.0, 2.0],
        ..FloatHistogram::default()
    };
    let b = FloatHistogram {
        zero_threshold: 0.7,
        zero_count: 1.0,
        count: 2.0,
        positive_spans: spans(&[(1, 1)]),
        positive_buckets: vec![1.0],
        ..FloatHistogram::default()
    };
    a.add(&b).unwrap();
    assert_eq!(a.zero_threshold, 1.0);
    assert_eq!(
        a.test_expression(),
        "{{count:5 z_bucket:2 z_bucket_w:1 offset:1 buckets:[3]}}"
    );
}

#[test]
fn an_unaligned_zero_threshold_counts_a_bucket_twice_as_prometheus_does() {
    // a's zero threshold 0.5 is no bound of its schema -1. b's bucket (0.25, 0.5] joins the
    // zero bucket at b's schema, but merged to schema -1 it is (0.25, 1], above the threshold,
    // so it is added there too.
    let mut a = parse("{{schema:-1 z_bucket_w:0.5}}");
    let b = parse("{{count:1 offset:-1 buckets:[1]}}");
    a.add(&b).unwrap();
    assert_eq!(
        a.test_expression(),
        "{{schema:-1 count:1 z_bucket:1 z_bucket_w:0.5 buckets:[1]}}"
    );
}

#[test]
fn sub_subtracts_and_keeps_buckets_of_either() {
    let mut a = parse(
        "{{schema:1 count:12 sum:18.4 z_bucket:2 z_bucket_w:0.001 buckets:[1 2 0 1 1] n_buckets:[1 2 0 1 1]}}",
    );
    let b = parse(
        "{{schema:1 count:9 sum:18.4 z_bucket:1 z_bucket_w:0.001 offset:2 buckets:[1 1 0 1 1] n_buckets:[1 1]}}",
    );
    a.sub(&b).unwrap();
    assert_eq!(
        a.test_expression(),
        "{{schema:1 count:3 z_bucket:1 z_bucket_w:0.001 buckets:[1 2 -1 0 1 -1 -1] n_offset:1 n_buckets:[1 0 1 1]}}"
    );
}

/// `got` and `want` compared as promqltest does, after dropping empty buckets from both.
fn assert_compacted_close(got: &FloatHistogram, want: &str, what: &str) {
    let mut got = got.clone();
    got.compact(0).unwrap();
    let mut want = parse(want);
    want.compact(0).unwrap();
    assert_hist_close(&got, &want, what);
}

#[test]
fn sums_and_differences_of_native_histograms_test() {
    // "Test native histograms with sum, count, avg" and "with sub operator".
    let a = "{{schema:0 count:25 sum:1234.5 z_bucket:4 z_bucket_w:0.001 buckets:[1 2 0 1 1] n_buckets:[2 4 0 0 1 9]}}";
    let b = "{{schema:0 count:41 sum:2345.6 z_bucket:5 z_bucket_w:0.001 buckets:[1 3 1 2 1 1 1] n_buckets:[0 1 4 2 7 0 0 0 0 5 5 2]}}";
    let c = "{{schema:0 count:41 sum:1111.1 z_bucket:5 z_bucket_w:0.001 buckets:[1 3 1 2 1 1 1] n_buckets:[0 1 4 2 7 0 0 0 0 5 5 2]}}";
    let d = "{{schema:1 count:0}}";
    let mut sum = parse(a);
    for h in [b, c, d] {
        sum.add(&parse(h)).unwrap();
    }
    assert_compacted_close(
        &sum,
        "{{schema:0 count:107 sum:4691.2 z_bucket:14 z_bucket_w:0.001 buckets:[3 8 2 5 3 2 2] n_buckets:[2 6 8 4 15 9 0 0 0 10 10 4]}}",
        "sum",
    );
    sum.div(4.0);
    assert_compacted_close(
        &sum,
        "{{schema:0 count:26.75 sum:1172.8 z_bucket:3.5 z_bucket_w:0.001 buckets:[0.75 2 0.5 1.25 0.75 0.5 0.5] n_buckets:[0.5 1.5 2 1 3.75 2.25 0 0 0 2.5 2.5 1]}}",
        "avg",
    );
    let small =
        "{{count:11 sum:1234.5 z_bucket:3 z_bucket_w:0.001 buckets:[0 2 1] n_buckets:[0 0 3 2]}}";
    let small_fine = "{{schema:1 count:11 sum:1234.5 z_bucket:3 z_bucket_w:0.001 buckets:[0 2 1] n_buckets:[0 0 3 2]}}";
    for (x, y, want) in [
        (
            b,
            small,
            "{{schema:0 count:30 sum:1111.1 z_bucket:2 z_bucket_w:0.001 buckets:[1 1 0 2 1 1 1] n_buckets:[0 1 1 0 7 0 0 0 0 5 5 2]}}",
        ),
        (
            b,
            small_fine,
            "{{schema:0 count:30 sum:1111.1 z_bucket:2 z_bucket_w:0.001 buckets:[1 0 1 2 1 1 1] n_buckets:[0 -2 2 2 7 0 0 0 0 5 5 2]}}",
        ),
        (
            small_fine,
            b,
            "{{schema:0 count:-30 sum:-1111.1 z_bucket:-2 z_bucket_w:0.001 buckets:[-1 0 -1 -2 -1 -1 -1] n_buckets:[0 2 -2 -2 -7 0 0 0 0 -5 -5 -2]}}",
        ),
    ] {
        let mut h = parse(x);
        h.sub(&parse(y)).unwrap();
        assert_compacted_close(&h, want, &format!("{x} - {y}"));
    }
}

#[test]
fn counter_reset_hints_combine_as_prometheus_does() {
    use CounterResetHint::*;
    let cases = [
        (Unknown, Unknown, Unknown, false),
        (Gauge, Unknown, Gauge, false),
        (Unknown, Gauge, Gauge, false),
        (CounterReset, Gauge, Gauge, false),
        (Unknown, CounterReset, Unknown, false),
        (NotCounterReset, Unknown, Unknown, false),
        (CounterReset, CounterReset, CounterReset, false),
        (NotCounterReset, NotCounterReset, NotCounterReset, false),
        (CounterReset, NotCounterReset, Unknown, true),
        (NotCounterReset, CounterReset, Unknown, true),
    ];
    for (mine, theirs, want, collision) in cases {
        let mut a = parse("{{count:1 buckets:[1]}}");
        a.counter_reset_hint = mine;
        let mut b = parse("{{count:1 buckets:[1]}}");
        b.counter_reset_hint = theirs;
        let out = a.add(&b).unwrap();
        assert_eq!(
            (a.counter_reset_hint, out.counter_reset_collision),
            (want, collision),
            "{mine:?} + {theirs:?}"
        );
        // Subtraction keeps the receiver's hint, as in Prometheus 3.5.
        let mut a = parse("{{count:1 buckets:[1]}}");
        a.counter_reset_hint = mine;
        assert_eq!(a.sub(&b), Ok(AddOutcome::default()));
        assert_eq!(a.counter_reset_hint, mine, "{mine:?} - {theirs:?}");
    }
}

#[test]
fn custom_buckets_add_only_with_the_same_bounds() {
    let mut a = parse("{{schema:-53 sum:1 count:1 custom_values:[5 10] buckets:[1]}}");
    let b = parse("{{schema:-53 sum:15 count:2 custom_values:[5 10] offset:1 buckets:[2]}}");
    a.add(&b).unwrap();
    assert_eq!(
        a.test_expression(),
        "{{schema:-53 count:3 sum:16 custom_values:[5 10] buckets:[1 2]}}"
    );
    let before = a.clone();
    let other = parse("{{schema:-53 sum:1 count:1 custom_values:[2] buckets:[1]}}");
    assert_eq!(
        a.add(&other),
        Err(HistogramOpError::IncompatibleCustomBuckets)
    );
    assert_eq!(
        a.sub(&other),
        Err(HistogramOpError::IncompatibleCustomBuckets)
    );
    let exp = parse("{{count:1 sum:1 buckets:[1]}}");
    assert_eq!(
        a.add(&exp),
        Err(HistogramOpError::MixedExponentialAndCustom)
    );
    let mut e = exp.clone();
    assert_eq!(e.sub(&a), Err(HistogramOpError::MixedExponentialAndCustom));
    assert!(a.identical(&before));
    assert!(e.identical(&exp));
    assert!(
        HistogramOpError::IncompatibleCustomBuckets
            .to_string()
            .contains("incompatible custom buckets")
    );
}

/// A change made to a histogram in place.
type Op<'a> = &'a dyn Fn(&mut FloatHistogram);

#[test]
fn mul_div_and_neg_match_native_histograms_test() {
    let h = parse(
        "{{schema:0 count:30 sum:33 z_bucket:3 z_bucket_w:0.001 buckets:[3 3 3] n_buckets:[6 6 6]}}",
    );
    let apply = |f: &dyn Fn(&mut FloatHistogram)| {
        let mut c = h.clone();
        f(&mut c);
        c
    };
    let cases: [(Op, &str); 7] = [
        (
            &|c| c.mul(3.0),
            "{{schema:0 count:90 sum:99 z_bucket:9 z_bucket_w:0.001 buckets:[9 9 9] n_buckets:[18 18 18]}}",
        ),
        (
            &|c| c.mul(-1.0),
            "{{schema:0 count:-30 sum:-33 z_bucket:-3 z_bucket_w:0.001 buckets:[-3 -3 -3] n_buckets:[-6 -6 -6]}}",
        ),
        (
            &|c| c.neg(),
            "{{schema:0 count:-30 sum:-33 z_bucket:-3 z_bucket_w:0.001 buckets:[-3 -3 -3] n_buckets:[-6 -6 -6]}}",
        ),
        (
            &|c| c.div(-3.0),
            "{{schema:0 count:-10 sum:-11 z_bucket:-1 z_bucket_w:0.001 buckets:[-1 -1 -1] n_buckets:[-2 -2 -2]}}",
        ),
        (
            &|c| c.mul(0.0),
            "{{schema:0 count:0 sum:0 z_bucket:0 z_bucket_w:0.001 buckets:[0 0 0] n_buckets:[0 0 0]}}",
        ),
        (
            &|c| c.div(0.0),
            "{{schema:0 count:Inf sum:Inf z_bucket_w:0.001 z_bucket:Inf}}",
        ),
        (
            &|c| {
                c.mul(0.0);
                c.div(0.0)
            },
            "{{schema:0 count:NaN sum:NaN z_bucket_w:0.001 z_bucket:NaN}}",
        ),
    ];
    for (i, (f, want)) in cases.iter().enumerate() {
        assert_hist_close(&apply(*f), &parse(want), &format!("case {i}"));
    }
    // Prometheus 3.5 keeps the hint whatever the sign.
    let ops: [Op; 3] = [&|c| c.neg(), &|c| c.div(-3.0), &|c| c.mul(-2.0)];
    for op in ops {
        let mut c = h.clone();
        c.counter_reset_hint = CounterResetHint::NotCounterReset;
        op(&mut c);
        assert_eq!(c.counter_reset_hint, CounterResetHint::NotCounterReset);
    }
}

// ---------------------------------------------------------------------------------------------
// Reshaping and comparing
// ---------------------------------------------------------------------------------------------

#[test]
fn compact_drops_empty_buckets_and_joins_close_spans() {
    let h = FloatHistogram {
        positive_spans: spans(&[(0, 3), (1, 2)]),
        positive_buckets: vec![0.0, 1.0, 0.0, 0.0, 2.0],
        negative_spans: spans(&[(-3, 1), (0, 1), (0, 0), (2, 2)]),
        negative_buckets: vec![1.0, 2.0, 0.0, 3.0],
        ..FloatHistogram::default()
    };
    let compacted = |n| {
        let mut c = h.clone();
        c.compact(n).unwrap();
        c
    };
    let c = compacted(0);
    assert_eq!(c.positive_spans, spans(&[(1, 1), (3, 1)]));
    assert_eq!(c.positive_buckets, vec![1.0, 2.0]);
    assert_eq!(c.negative_spans, spans(&[(-3, 2), (3, 1)]));
    assert_eq!(c.negative_buckets, vec![1.0, 2.0, 3.0]);
    let c = compacted(2);
    assert_eq!(c.positive_spans, spans(&[(1, 1), (3, 1)]));
    let c = compacted(3);
    assert_eq!(c.positive_spans, spans(&[(1, 5)]));
    assert_eq!(c.positive_buckets, vec![1.0, 0.0, 0.0, 0.0, 2.0]);
    assert_eq!(c.negative_spans, spans(&[(-3, 6)]));
    assert_eq!(c.negative_buckets, vec![1.0, 2.0, 0.0, 0.0, 0.0, 3.0]);
    // All empty: no spans left.
    let mut e = parse("{{buckets:[0 0] n_buckets:[0]}}");
    e.compact(5).unwrap();
    assert!(e.positive_spans.is_empty() && e.negative_buckets.is_empty());
}

#[test]
fn reduce_resolution_merges_buckets_of_the_target_schema() {
    // Schema 1 buckets -1..=2 end at 2^-0.5, 1, √2 and 2: the first two fall into schema 0's
    // (0.5, 1], the other two into (1, 2].
    let mut h =
        parse("{{schema:1 count:10 sum:3 z_bucket:0 offset:-1 buckets:[1 2 3 4] n_buckets:[5]}}");
    h.reduce_resolution(0).unwrap();
    assert_eq!(
        h.test_expression(),
        "{{count:10 sum:3 buckets:[3 7] n_buckets:[5]}}"
    );
    h.reduce_resolution(-2).unwrap();
    // Schema -2 bucket 0 is (1/16, 1] and bucket 1 (1, 16]: nothing more merges.
    assert_eq!(
        h.test_expression(),
        "{{schema:-2 count:10 sum:3 buckets:[3 7] n_buckets:[5]}}"
    );
    assert_eq!(
        h.reduce_resolution(0),
        Err(HistogramOpError::SchemaChange { from: -2, to: 0 })
    );
    assert_eq!(h.reduce_resolution(-2), Ok(()));
    assert!(h.reduce_resolution(-53).is_err());
    let mut c = parse("{{schema:-53 count:1 custom_values:[1] buckets:[1]}}");
    assert!(c.reduce_resolution(-1).is_err());
}

#[test]
fn copy_to_schema_copies_at_a_lower_resolution_without_the_hint() {
    // Schema 3 buckets 1 and 2, (1, 2^⅛] and (2^⅛, 2^¼], both fall into (1, 2] of schema 0.
    let mut h =
        parse("{{schema:3 count:2 sum:1 offset:1 buckets:[1 1] counter_reset_hint:not_reset}}");
    let c = h.copy_to_schema(0).unwrap();
    assert_eq!(
        c.test_expression(),
        "{{count:2 sum:1 offset:1 buckets:[2]}}"
    );
    let same = h.copy_to_schema(3).unwrap();
    assert!(same.identical(&h));
    assert!(h.copy_to_schema(4).is_err());
    h.positive_buckets.push(1.0);
    assert!(matches!(
        h.copy_to_schema(0),
        Err(HistogramOpError::SpansBucketsMismatch { .. })
    ));
}

#[test]
fn equals_compares_layout_not_span_cuts() {
    let a = FloatHistogram {
        count: 3.0,
        sum: f64::NAN,
        positive_spans: spans(&[(0, 1), (0, 2)]),
        positive_buckets: vec![1.0, 0.0, 2.0],
        ..FloatHistogram::default()
    };
    let mut b = a.clone();
    b.positive_spans = spans(&[(0, 3), (5, 0)]);
    b.counter_reset_hint = CounterResetHint::Gauge;
    assert!(a.equals(&b));
    b.positive_spans = spans(&[(0, 2), (1, 1)]);
    assert!(!a.equals(&b));
    let mut c = a.clone();
    c.sum = f64::NAN.copysign(-1.0);
    assert!(!a.equals(&c), "NaNs with other bits differ");
    let mut d = a.clone();
    d.zero_threshold = 0.1;
    assert!(!a.equals(&d));
    let mut e = a.clone();
    e.positive_buckets[1] = -0.0;
    assert!(!a.equals(&e));
    let x = parse("{{schema:-53 custom_values:[1 2] buckets:[1]}}");
    let y = parse("{{schema:-53 custom_values:[1 3] buckets:[1]}}");
    assert!(!x.equals(&y));
    assert!(x.equals(&x.clone()));
}

#[test]
fn detect_reset_follows_hints_counts_and_buckets() {
    let prev = parse(
        "{{schema:1 count:10 sum:5 z_bucket:2 z_bucket_w:0.001 buckets:[1 2 3] n_buckets:[2]}}",
    );
    let reset = |cur: &str| parse(cur).detect_reset(&prev).unwrap();
    // More of everything: no reset.
    assert!(!reset(
        "{{schema:1 count:11 sum:5 z_bucket:2 z_bucket_w:0.001 buckets:[1 3 3] n_buckets:[2]}}"
    ));
    // The hint decides.
    assert!(reset(
        "{{schema:1 count:11 sum:5 z_bucket:2 z_bucket_w:0.001 buckets:[1 3 3] n_buckets:[2] counter_reset_hint:reset}}"
    ));
    assert!(!reset("{{count:1 counter_reset_hint:not_reset}}"));
    // Lower count, zero count, a bucket lower or missing.
    assert!(reset(
        "{{schema:1 count:9 sum:5 z_bucket:2 z_bucket_w:0.001 buckets:[1 2 3] n_buckets:[2]}}"
    ));
    assert!(reset(
        "{{schema:1 count:10 sum:5 z_bucket:1 z_bucket_w:0.001 buckets:[1 2 4] n_buckets:[2]}}"
    ));
    assert!(reset(
        "{{schema:1 count:10 sum:5 z_bucket:2 z_bucket_w:0.001 buckets:[1 1 4] n_buckets:[2]}}"
    ));
    assert!(reset(
        "{{schema:1 count:10 sum:5 z_bucket:2 z_bucket_w:0.001 buckets:[1 2 5]}}"
    ));
    // Higher resolution or narrower zero bucket.
    assert!(reset(
        "{{schema:2 count:10 sum:5 z_bucket:2 z_bucket_w:0.001 buckets:[1 2 3] n_buckets:[2]}}"
    ));
    assert!(reset(
        "{{schema:1 count:10 sum:5 z_bucket:2 z_bucket_w:0.0001 buckets:[1 2 3] n_buckets:[2]}}"
    ));
    // Lower resolution: prev's buckets (0.707,1], (1,1.414] and (1.414,2] merge to 1 and 5 in
    // schema 0's (0.5,1] and (1,2].
    assert!(!reset(
        "{{schema:0 count:10 sum:5 z_bucket:2 z_bucket_w:0.001 buckets:[1 5] n_buckets:[2]}}"
    ));
    assert!(reset(
        "{{schema:0 count:10 sum:5 z_bucket:2 z_bucket_w:0.001 buckets:[3 3] n_buckets:[2]}}"
    ));
    assert!(reset(
        "{{schema:0 count:10 sum:5 z_bucket:2 z_bucket_w:0.001 buckets:[2 4] n_buckets:[2]}}"
    ));
    // A zero bucket widened to ±1 takes prev's (0.707,1] and [-1,-0.707), which hold 3, so
    // the zero count must reach 5.
    let wide = "{{schema:1 count:10 sum:5 z_bucket:5 z_bucket_w:1 offset:1 buckets:[2 3]}}";
    assert!(!reset(wide));
    assert!(reset(&wide.replace("z_bucket:5", "z_bucket:4")));
    // A zero threshold cutting a populated bucket of prev.
    assert!(reset(
        "{{schema:1 count:10 sum:5 z_bucket:5 z_bucket_w:0.8 offset:1 buckets:[2 3]}}"
    ));
    // Empty buckets of prev may go.
    let prev0 = parse("{{count:1 buckets:[0 1 0]}}");
    assert!(
        !parse("{{count:1 offset:1 buckets:[1]}}")
            .detect_reset(&prev0)
            .unwrap()
    );
    // Custom buckets: other bounds or a switch to them is a reset.
    let c = parse("{{schema:-53 count:2 custom_values:[1 2] buckets:[1 1]}}");
    let c2 = parse("{{schema:-53 count:2 custom_values:[1 3] buckets:[1 1]}}");
    assert!(c.detect_reset(&c2).unwrap());
    assert!(!c.detect_reset(&c.clone()).unwrap());
    assert!(c.detect_reset(&parse("{{count:1 buckets:[1]}}")).unwrap());
    assert!(parse("{{count:3 buckets:[3]}}").detect_reset(&c).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

#[test]
fn broken_layouts_are_errors_and_leave_the_receiver_alone() {
    let good = parse("{{schema:0 count:4 sum:5 buckets:[1 2 1]}}");
    let mut short = good.clone();
    short.positive_buckets.pop();
    let mut backwards = good.clone();
    backwards.positive_spans = spans(&[(0, 1), (-2, 2)]);
    let mut far = good.clone();
    far.positive_spans = spans(&[(i32::MAX - 1, 3)]);
    let mut unknown = good.clone();
    unknown.schema = 9;
    let mut nan_zt = good.clone();
    nan_zt.zero_threshold = f64::NAN;
    let mut custom_out = parse("{{schema:-53 count:1 custom_values:[1] buckets:[1]}}");
    custom_out.positive_spans = spans(&[(2, 1)]);
    for (bad, want) in [
        (&short, "positive spans describe 3 buckets but 2 are given"),
        (
            &backwards,
            "positive span 1 has offset -2; only the first span may be negative",
        ),
        (
            &far,
            "positive bucket index 2147483648 is outside the 32-bit range of span offsets",
        ),
        (&unknown, "histogram schema 9 is neither -4..=8 nor -53"),
        (&nan_zt, "zero threshold is NaN"),
    ] {
        let mut a = good.clone();
        assert_eq!(a.add(bad).unwrap_err().to_string(), want);
        assert!(a.identical(&good));
        let mut b = bad.clone();
        assert_eq!(b.sub(&good).unwrap_err().to_string(), want);
        assert!(b.identical(bad));
        // A NaN zero threshold is merely compared when detecting resets.
        let reset = b.detect_reset(&good);
        assert_eq!(reset.is_ok(), bad.zero_threshold.is_nan(), "{want}");
    }
    let mut c = custom_out.clone();
    assert_eq!(
        c.add(&custom_out),
        Err(HistogramOpError::CustomBucketOutOfRange {
            index: 2,
            bounds: 1
        })
    );
    for bad in [&short, &backwards] {
        let mut b = bad.clone();
        assert!(b.compact(0).is_err());
        assert!(b.reduce_resolution(-1).is_err());
        assert!(b.identical(bad));
        // Printing never fails.
        let _ = bad.to_string();
        let _ = bad.test_expression();
    }
}

#[test]
fn sums_whose_buckets_are_too_far_apart_for_a_span_are_errors() {
    let mut a = FloatHistogram {
        count: 1.0,
        positive_spans: spans(&[(i32::MIN, 1)]),
        positive_buckets: vec![1.0],
        ..FloatHistogram::default()
    };
    let b = FloatHistogram {
        count: 1.0,
        positive_spans: spans(&[(i32::MAX - 1, 1)]),
        positive_buckets: vec![1.0],
        ..FloatHistogram::default()
    };
    let before = a.clone();
    assert!(matches!(
        a.add(&b),
        Err(HistogramOpError::BucketIndexOverflow { .. })
    ));
    assert!(a.identical(&before));
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// One side: (first index, [(gap, run of counts)]) with whole-number counts, so sums are exact.
fn side_strategy() -> impl Strategy<Value = (i32, Vec<(u8, Vec<u8>)>)> {
    (
        -40i32..40,
        prop::collection::vec((1u8..6, prop::collection::vec(0u8..5, 1..5)), 0..4),
    )
}

/// Spans and counts of one side, its first bucket moved up to where buckets start above the
/// zero bucket (clients put no bucket inside it).
fn build_side(
    schema: i32,
    zero_threshold: f64,
    first: i32,
    runs: &[(u8, Vec<u8>)],
) -> (Vec<Span>, Vec<f64>) {
    let mut first = first;
    while exponential_bound(i64::from(first) - 1, schema) < zero_threshold {
        first += 1;
    }
    let mut sp = Vec::new();
    let mut counts = Vec::new();
    for (k, (gap, run)) in runs.iter().enumerate() {
        let offset = if k == 0 { first } else { i32::from(*gap) };
        sp.push(Span::new(offset, run.len() as u32));
        counts.extend(run.iter().map(|&c| f64::from(c)));
    }
    (sp, counts)
}

prop_compose! {
    fn histogram_strategy(schema: i32, zero_threshold: f64)(
        pos in side_strategy(),
        neg in side_strategy(),
        zero in 0u8..4,
        sum in -50i32..50,
    ) -> FloatHistogram {
        let (positive_spans, positive_buckets) = build_side(schema, zero_threshold, pos.0, &pos.1);
        let (negative_spans, negative_buckets) = build_side(schema, zero_threshold, neg.0, &neg.1);
        let count = f64::from(zero)
            + positive_buckets.iter().sum::<f64>()
            + negative_buckets.iter().sum::<f64>();
        FloatHistogram {
            schema,
            zero_threshold,
            zero_count: f64::from(zero),
            count,
            sum: f64::from(sum),
            positive_spans,
            positive_buckets,
            negative_spans,
            negative_buckets,
            ..FloatHistogram::default()
        }
    }
}

/// Zero thresholds that are bucket bounds in every schema, as clients choose them (with others,
/// adding histograms of different schemas can count a bucket twice, as in Prometheus; see
/// `an_unaligned_zero_threshold_counts_a_bucket_twice_as_prometheus_does`).
fn aligned_thresholds() -> Vec<f64> {
    vec![0.0, 2f64.powi(-128), 2f64.powi(-32), 2f64.powi(-16)]
}

fn any_histogram() -> impl Strategy<Value = FloatHistogram> {
    (-4i32..=8, prop::sample::select(aligned_thresholds()))
        .prop_flat_map(|(s, zt)| histogram_strategy(s, zt))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn add_then_sub_gives_the_original_after_compact(
        (a, b) in (-4i32..=8, prop::sample::select(aligned_thresholds()))
            .prop_flat_map(|(s, zt)| (histogram_strategy(s, zt), histogram_strategy(s, zt)))
    ) {
        let mut h = a.clone();
        h.add(&b).unwrap();
        h.sub(&b).unwrap();
        h.compact(0).unwrap();
        let mut want = a.clone();
        want.compact(0).unwrap();
        prop_assert!(h.equals(&want), "{} vs {}", h.test_expression(), want.test_expression());
    }

    #[test]
    fn add_keeps_count_and_sum_and_the_observations_in_buckets(a in any_histogram(), b in any_histogram()) {
        let mut h = a.clone();
        h.add(&b).unwrap();
        prop_assert_eq!(h.schema, a.schema.min(b.schema));
        prop_assert_eq!(h.count, a.count + b.count);
        prop_assert_eq!(h.sum, a.sum + b.sum);
        let in_buckets = h.zero_count + h.positive_buckets.iter().sum::<f64>() + h.negative_buckets.iter().sum::<f64>();
        prop_assert_eq!(in_buckets, h.count);
        prop_assert!(h.validate().is_ok());
        // Adding is commutative in what it holds.
        let mut h2 = b.clone();
        h2.add(&a).unwrap();
        h.compact(0).unwrap();
        h2.compact(0).unwrap();
        prop_assert!(h.equals(&h2), "{} vs {}", h.test_expression(), h2.test_expression());
    }

    #[test]
    fn reduce_resolution_keeps_count_sum_and_bucket_totals(a in any_histogram(), down in 0i32..13) {
        let target = (a.schema - down).max(-4);
        let mut h = a.clone();
        h.reduce_resolution(target).unwrap();
        prop_assert_eq!(h.schema, target);
        prop_assert_eq!(h.count, a.count);
        prop_assert_eq!(h.sum, a.sum);
        prop_assert_eq!(h.positive_buckets.iter().sum::<f64>(), a.positive_buckets.iter().sum::<f64>());
        prop_assert_eq!(h.negative_buckets.iter().sum::<f64>(), a.negative_buckets.iter().sum::<f64>());
        prop_assert!(h.validate().is_ok());
        // The histogram is no reset of itself at a lower resolution, nor is it of the original.
        prop_assert!(!h.detect_reset(&a).unwrap());
        prop_assert!(!a.detect_reset(&a).unwrap());
        // Bucket bounds of the result are bounds of the original schema.
        for b in h.positive_buckets_iter() {
            let step = 1i64 << (a.schema - target);
            prop_assert_eq!(b.upper, exponential_bound(b.index * step, a.schema));
        }
    }

    #[test]
    fn compact_keeps_the_populated_buckets(a in any_histogram(), max_empty in 0usize..4) {
        let mut h = a.clone();
        h.compact(max_empty).unwrap();
        let populated = |h: &FloatHistogram| -> Vec<(i64, f64)> {
            side(&h.positive_spans, &h.positive_buckets).into_iter().filter(|b| b.1 != 0.0).collect()
        };
        prop_assert_eq!(populated(&h), populated(&a));
        prop_assert!(h.validate().is_ok());
        // Compacting again changes nothing, and spans are separated by more than max_empty.
        let mut again = h.clone();
        again.compact(max_empty).unwrap();
        prop_assert!(again.identical(&h));
        for s in h.positive_spans.iter().skip(1) {
            prop_assert!(s.offset as usize > max_empty);
        }
    }

    #[test]
    fn compact_in_place_matches_the_bucket_list_path(
        pos_spans in prop::collection::vec((prop_oneof![-3i32..4, any::<i32>()], 0u32..4), 0..5),
        pos in prop::collection::vec(prop_oneof![Just(0.0), Just(-0.0), Just(f64::NAN), -3.0f64..3.0], 0..12),
        neg_spans in prop::collection::vec((-3i32..4, 0u32..4), 0..4),
        neg in prop::collection::vec(prop_oneof![Just(0.0), -3.0f64..3.0], 0..10),
    ) {
        let spans = |v: &[(i32, u32)]| v.iter().map(|&(o, l)| Span::new(o, l)).collect::<Vec<_>>();
        // Counts cut or padded to what the spans describe, mostly; sometimes left to disagree.
        let fit = |spans: &[Span], mut counts: Vec<f64>| {
            let n = count_buckets(spans) as usize;
            if counts.len() % 5 != 1 {
                counts.resize(n, 1.5);
            }
            counts
        };
        let (ps, ns) = (spans(&pos_spans), spans(&neg_spans));
        let mut h = FloatHistogram {
            schema: 1,
            positive_buckets: fit(&ps, pos),
            positive_spans: ps,
            negative_buckets: fit(&ns, neg),
            negative_spans: ns,
            ..FloatHistogram::default()
        };
        // What the general path gives: each side decoded to indices, compacted, encoded.
        let general = |spans: &[Span], counts: &[f64], side: Side| {
            decode_side(side, spans, counts).map(|b| encode_side(&compact_buckets(&b, 0)))
        };
        let want_pos = general(&h.positive_spans, &h.positive_buckets, Side::Positive);
        let want_neg = general(&h.negative_spans, &h.negative_buckets, Side::Negative);
        let before = h.clone();
        let got = h.compact(0);
        match (want_pos, want_neg) {
            (Ok((psp, pb)), Ok((nsp, nb))) => {
                prop_assert!(got.is_ok());
                prop_assert_eq!(&h.positive_spans, &psp);
                prop_assert_eq!(&h.negative_spans, &nsp);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&h.positive_buckets), bits(&pb));
                prop_assert_eq!(bits(&h.negative_buckets), bits(&nb));
            }
            _ => {
                prop_assert!(got.is_err());
                prop_assert!(h.identical(&before));
            }
        }
    }

    #[test]
    fn hostile_layouts_never_panic(
        schema in prop_oneof![-6i32..=10, Just(-53)],
        pos_spans in prop::collection::vec((any::<i32>(), 0u32..4), 0..4),
        pos in prop::collection::vec(prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -3.0f64..3.0], 0..8),
        neg_spans in prop::collection::vec((prop_oneof![any::<i32>(), -3i32..3], 0u32..4), 0..4),
        neg in prop::collection::vec(-3.0f64..3.0, 0..8),
        zt in prop_oneof![Just(f64::NAN), Just(-1.0), Just(f64::INFINITY), 0.0f64..2.0],
        custom in prop::collection::vec(-3.0f64..3.0, 0..3),
        other in any_histogram(),
    ) {
        let h = FloatHistogram {
            schema,
            zero_threshold: zt,
            zero_count: 1.0,
            count: 5.0,
            sum: 1.0,
            positive_spans: pos_spans.iter().map(|&(o, l)| Span::new(o, l)).collect(),
            positive_buckets: pos,
            negative_spans: neg_spans.iter().map(|&(o, l)| Span::new(o, l)).collect(),
            negative_buckets: neg,
            custom_values: custom.into(),
            ..FloatHistogram::default()
        };
        let mut x = h.clone();
        let _ = x.add(&other);
        let mut x = other.clone();
        if x.sub(&h).is_err() {
            prop_assert!(x.identical(&other));
        }
        let mut x = h.clone();
        let _ = x.compact(usize::MAX);
        let _ = h.clone().reduce_resolution(-4);
        let _ = h.copy_to_schema(-4);
        let _ = h.detect_reset(&other);
        let _ = other.detect_reset(&h);
        let _ = h.equals(&other);
        let _ = h.to_string();
        let _ = h.test_expression();
        let _ = h.all_buckets_reverse_iter().count();
    }
}

/// `h` with its spans written as the general path writes them (and `split`: its first span
/// cut in two with a zero gap, a layout the shortcut refuses).
fn relaid(h: &FloatHistogram, split: bool) -> FloatHistogram {
    let mut out = h.clone();
    let (ps, _) =
        encode_side(&decode_side(Side::Positive, &h.positive_spans, &h.positive_buckets).unwrap());
    let (ns, _) =
        encode_side(&decode_side(Side::Negative, &h.negative_spans, &h.negative_buckets).unwrap());
    out.positive_spans = ps;
    out.negative_spans = ns;
    if split && let Some(first) = out.positive_spans.first().copied().filter(|s| s.length > 1) {
        out.positive_spans[0] = Span::new(first.offset, 1);
        out.positive_spans.insert(1, Span::new(0, first.length - 1));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Adding or subtracting a histogram whose buckets are among this one's (the shortcut that
    /// works in place) gives the general path's answer bit for bit.
    #[test]
    fn adding_within_one_layout_agrees_with_the_general_path(
        (a, keep, counts, negate, odd_b) in any_histogram().prop_flat_map(|a| {
            let n = a.positive_buckets.len() + a.negative_buckets.len();
            (
                Just(a),
                prop::collection::vec(any::<bool>(), n),
                prop::collection::vec(-5.0f64..100.0, n),
                any::<bool>(),
                any::<bool>(),
            )
        })
    ) {
        let a = relaid(&a, false);
        // `b`: some of `a`'s buckets, other counts.
        let mut b = a.clone();
        let np = a.positive_buckets.len();
        let side = |spans: &[Span], offset: usize| -> Vec<(i64, f64)> {
            span_indices(spans)
                .enumerate()
                .filter(|(k, _)| keep[offset + k])
                .map(|(k, i)| (i, counts[offset + k]))
                .collect()
        };
        (b.positive_spans, b.positive_buckets) = encode_side(&side(&a.positive_spans, 0));
        (b.negative_spans, b.negative_buckets) = encode_side(&side(&a.negative_spans, np));
        b.count = 7.5;
        b.sum = -2.25;
        b.zero_count = 1.5;
        if odd_b {
            // Spans as no writer lays them out, which the shortcut walks all the same: the
            // first cut in two with a zero gap, an empty span after it.
            b = relaid(&b, true);
            b.positive_spans.insert(1.min(b.positive_spans.len()), Span::new(0, 0));
        }
        let op = |h: &mut FloatHistogram| if negate { h.sub(&b) } else { h.add(&b) };
        let mut fast = a.clone();
        let fast_out = match fast.combine_within_layout(&b, negate) {
            Some(out) => Ok(out),
            None => op(&mut fast),
        };
        let mut slow = relaid(&a, true);
        let slow_out = slow.combine_general(&b, negate);
        prop_assert_eq!(fast_out.is_ok(), slow_out.is_ok());
        if let (Ok(f), Ok(s)) = (fast_out, slow_out) {
            prop_assert_eq!(f.counter_reset_collision, s.counter_reset_collision);
        }
        prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Deciding a reset run by run over the current layout (when every bucket of the previous
    /// histogram lies in it) gives the answer of comparing bucket lists, and otherwise leaves
    /// the case to them.
    #[test]
    fn resets_within_one_layout_agree_with_bucket_lists(
        (a, keep, counts, zero) in any_histogram().prop_flat_map(|a| {
            let n = a.positive_buckets.len() + a.negative_buckets.len();
            (
                Just(a),
                prop::collection::vec(any::<bool>(), n),
                prop::collection::vec(prop_oneof![Just(-1.0), 0.0f64..10.0, Just(f64::NAN)], n),
                prop_oneof![Just(0.0), 0.0f64..4.0],
            )
        }),
        other in any_histogram(),
    ) {
        let a = relaid(&a, false);
        // `b`: some of `a`'s buckets, each moved by a little (-1 makes it smaller).
        let mut b = a.clone();
        let np = a.positive_buckets.len();
        let side = |spans: &[Span], buckets: &[f64], offset: usize| -> Vec<(i64, f64)> {
            span_indices(spans)
                .zip(buckets)
                .enumerate()
                .filter(|(k, _)| keep[offset + k])
                .map(|(k, (i, c))| (i, c + counts[offset + k]))
                .collect()
        };
        (b.positive_spans, b.positive_buckets) =
            encode_side(&side(&a.positive_spans, &a.positive_buckets, 0));
        (b.negative_spans, b.negative_buckets) =
            encode_side(&side(&a.negative_spans, &a.negative_buckets, np));
        b.zero_count = zero;
        for (cur, prev) in [(&a, &b), (&b, &a), (&a, &other), (&other, &a)] {
            if let Some(fast) = cur.decreased_within_layout(prev) {
                prop_assert_eq!(fast, cur.decreased_by_bucket_lists(prev).unwrap());
            }
        }
        // Buckets above a zero threshold of 0 always fit the case.
        if a.zero_threshold == 0.0 {
            prop_assert!(a.decreased_within_layout(&b).is_some());
        }
    }
}

#[test]
fn sums_of_one_layout_take_the_shortcut() {
    let mut a = relaid(&two_sided(), false);
    let b = a.clone();
    assert!(a.combine_within_layout(&b, false).is_some());
    assert_eq!(a.count, 2.0 * b.count);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Adding or subtracting a histogram of the same schema and zero bucket but another
    /// layout (the shortcut that merges into scratch vectors) gives the general path's answer
    /// bit for bit, whatever either layout (split spans, empty spans and buckets inside the zero
    /// bucket included), hints and collisions included.
    #[test]
    fn adding_across_layouts_agrees_with_the_general_path(
        (a, b) in (-4i32..=8, prop::sample::select(aligned_thresholds()))
            .prop_flat_map(|(s, zt)| (histogram_strategy(s, zt), histogram_strategy(s, zt))),
        split_a in any::<bool>(),
        split_b in any::<bool>(),
        hints in (0u8..4, 0u8..4),
        negate in any::<bool>(),
    ) {
        let mut a = relaid(&a, split_a);
        let mut b = relaid(&b, split_b);
        a.counter_reset_hint = CounterResetHint::from_u8(hints.0).unwrap();
        b.counter_reset_hint = CounterResetHint::from_u8(hints.1).unwrap();
        let mut merged = a.clone();
        let merged_out = merged.combine_merging_layouts(&b, negate);
        prop_assert!(merged_out.is_some());
        let mut general = a.clone();
        let general_out = general.combine_general(&b, negate).unwrap();
        prop_assert_eq!(
            merged_out.unwrap().counter_reset_collision,
            general_out.counter_reset_collision
        );
        prop_assert_eq!(format!("{merged:?}"), format!("{general:?}"));
        // Adding through the public path agrees too.
        let mut public = a.clone();
        let _ = if negate { public.sub(&b) } else { public.add(&b) };
        prop_assert_eq!(format!("{public:?}"), format!("{general:?}"));
    }
}

#[test]
fn sums_across_layouts_merge_without_the_general_path() {
    let mut a = parse("{{schema:0 count:3 sum:1 buckets:[1 2]}}");
    let b = parse("{{schema:0 count:4 sum:2 offset:3 buckets:[4]}}");
    let mut want = a.clone();
    want.combine_general(&b, false).unwrap();
    assert!(a.combine_merging_layouts(&b, false).is_some());
    assert_eq!(format!("{a:?}"), format!("{want:?}"));
    assert_eq!(a.positive_spans, vec![Span::new(0, 2), Span::new(1, 1)]);
    assert_eq!(a.positive_buckets, vec![1.0, 2.0, 4.0]);
    // Buckets far apart on the index scale merge by walking both lists, not an array as
    // wide as the gap: the same answer.
    let mut far = parse("{{schema:0 count:3 sum:1 buckets:[1 2]}}");
    let distant = parse("{{schema:0 count:4 sum:2 offset:100000 buckets:[4 -1]}}");
    let mut want = far.clone();
    want.combine_general(&distant, true).unwrap();
    assert!(far.combine_merging_layouts(&distant, true).is_some());
    assert_eq!(format!("{far:?}"), format!("{want:?}"));
    assert_eq!(
        far.positive_spans,
        vec![Span::new(0, 2), Span::new(99998, 2)]
    );
    assert_eq!(far.positive_buckets, vec![1.0, 2.0, -4.0, 1.0]);
    // A side with only an empty span and no bucket in either comes out with no span.
    let mut empty_span = parse("{{schema:0 count:3 sum:1 buckets:[1 2]}}");
    empty_span.negative_spans = vec![Span::new(3, 0)];
    let b = parse("{{schema:0 count:4 sum:2 offset:3 buckets:[4]}}");
    let mut want = empty_span.clone();
    want.combine_general(&b, false).unwrap();
    assert!(empty_span.combine_merging_layouts(&b, false).is_some());
    assert_eq!(format!("{empty_span:?}"), format!("{want:?}"));
    assert!(empty_span.negative_spans.is_empty());
    // Another schema, zero bucket or custom bounds take the general path.
    let other_schema = parse("{{schema:1 count:4 sum:2 buckets:[4]}}");
    assert!(
        a.clone()
            .combine_merging_layouts(&other_schema, false)
            .is_none()
    );
}
