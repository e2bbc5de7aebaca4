//! Tests of the PromQL statistics of one native histogram. Expected values are worked out by
//! hand from the rules in `stats.rs`, or taken from the Prometheus 3.5.3 promqltest file
//! `testdata/promql/v3.5.3/native_histograms.test`, which [`promqltest_file_cases`] reads.

use gauntlet_engine::histogram::{Span, exponential_bound};
use proptest::prelude::*;

use super::*;
use crate::hist_notation::parse_histogram;

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
    parse_histogram(inner).unwrap_or_else(|e| panic!("{notation}: {e}"))
}

/// `histogram_fraction` as Prometheus 3.5 computes it.
fn fraction35(lower: f64, upper: f64, h: &FloatHistogram) -> f64 {
    fraction(lower, upper, h, Compat::Prometheus3_5)
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

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

#[test]
fn quantile_edge_cases() {
    let h = parse("{{schema:0 count:12 sum:100 z_bucket:2 z_bucket_w:0.001 buckets:[2 3 0 1 4]}}");
    assert_eq!(quantile(-1.0, &h), f64::NEG_INFINITY);
    assert_eq!(quantile(1.001, &h), f64::INFINITY);
    assert!(quantile(f64::NAN, &h).is_nan());
    assert!(quantile(0.5, &parse("{{}}")).is_nan());
    // NaN observations are in the count but in no bucket: a rank among them is NaN (as
    // `native_histograms.test`'s `histogram_nan` cases have it), a rank below them is not.
    let nan = parse("{{count:4 sum:NaN buckets:[1 1]}}");
    assert!(quantile(0.9, &nan).is_nan());
    assert_eq!(quantile(0.5, &nan), 2.0);
    assert_eq!(quantile(0.25, &nan), 1.0);
    assert!(quantile(0.5, &parse("{{count:3 sum:NaN}}")).is_nan());
    // Fractions leave them out: the buckets' total is the whole.
    assert_eq!(fraction35(f64::NEG_INFINITY, f64::INFINITY, &nan), 0.5);
    // A count but no buckets at all: the zero-valued default bucket.
    assert_eq!(quantile(0.5, &parse("{{count:3}}")), 0.0);
}

#[test]
fn quantile_of_custom_buckets_interpolates_linearly() {
    let h = parse("{{schema:-53 sum:5 count:4 custom_values:[5 10] buckets:[1 2 1]}}");
    // First bucket starts at 0: rank 0.8 of 1 → 4.
    assert_eq!(quantile(0.2, &h), 4.0);
    // (5, 10] holds ranks 1..3: rank 2 is its middle.
    assert_eq!(quantile(0.5, &h), 7.5);
    // In the +Inf bucket: its lower bound.
    assert_eq!(quantile(0.9, &h), 10.0);
    let neg = parse("{{schema:-53 sum:5 count:4 custom_values:[-5 10] buckets:[2 2]}}");
    assert_eq!(quantile(0.1, &neg), -5.0);
    assert_eq!(fraction35(5.0, 10.0, &h), 0.5);
    assert_eq!(fraction35(0.0, 2.5, &h), 0.125);
}

#[test]
fn fraction_edge_cases() {
    let h = parse("{{schema:0 count:4 sum:5 buckets:[1 2 1]}}");
    assert!(fraction35(f64::NAN, 1.0, &h).is_nan());
    assert!(fraction35(0.0, f64::NAN, &h).is_nan());
    assert!(fraction35(0.0, 1.0, &parse("{{}}")).is_nan());
    assert_eq!(fraction35(2.0, 1.0, &h), 0.0);
    assert_eq!(fraction35(f64::NEG_INFINITY, f64::INFINITY, &h), 1.0);
    // (1, 2] holds 2 of 4; with exponential interpolation √2 splits it in half.
    assert_eq!(fraction35(1.0, 2.0, &h), 0.5);
    assert!(almost(fraction35(1.0, 2f64.sqrt(), &h), 0.25));
}

#[test]
fn stdvar_uses_bucket_midpoints() {
    // One bucket (1, 4] (schema -1) with 2 observations and a mean of 2: the geometric
    // midpoint is 2, so the variance is 0.
    let h = parse("{{schema:-1 count:2 sum:4 offset:1 buckets:[2]}}");
    assert_eq!(stdvar(&h), 0.0);
    // Custom buckets take the arithmetic midpoint: (5, 10] → 7.5 around a mean of 5.
    let c = parse("{{schema:-53 count:2 sum:10 custom_values:[5 10] offset:1 buckets:[2]}}");
    assert_eq!(stdvar(&c), 6.25);
    assert_eq!(stddev(&c), 2.5);
    // The zero bucket counts at 0.
    let z = parse("{{count:2 sum:2 z_bucket:1 z_bucket_w:0.5 offset:1 buckets:[1]}}");
    // Values 0 and √2 around a mean of 1: ((0-1)² + (√2-1)²)/2.
    let want = (1.0 + (2f64.sqrt() - 1.0).powi(2)) / 2.0;
    assert!(almost(stdvar(&z), want));
    assert!(stdvar(&parse("{{}}")).is_nan());
    assert_eq!(avg(&h), 2.0);
}

/// Runs the native-histogram statistics of `native_histograms.test` that need only loaded
/// samples: each `load` series whose value is one histogram (`{{...}}` or `{{...}}xN`), and
/// each `eval instant` of `histogram_quantile`, `histogram_fraction`, `histogram_stddev`,
/// `histogram_stdvar`, `histogram_avg`, `histogram_count`, `histogram_sum`, or a product or
/// quotient with a number, over such a series.
#[test]
fn promqltest_file_cases() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/promql/v3.5.3/native_histograms.test"
    );
    let text = std::fs::read_to_string(path).expect("native_histograms.test");
    let lines: Vec<&str> = text.lines().collect();
    let mut series: Vec<(String, String, FloatHistogram)> = Vec::new(); // (name, labels, h)
    let mut checked = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if line == "clear" {
            series.clear();
            continue;
        }
        if line.starts_with("load ") {
            while i < lines.len()
                && lines[i].starts_with([' ', '\t'])
                && !lines[i].trim().is_empty()
            {
                let l = lines[i].trim();
                i += 1;
                let Some(start) = l.find("{{") else { continue };
                let (metric, value) = l.split_at(start);
                let value = value.trim();
                let Some(end) = value.find("}}") else {
                    continue;
                };
                let tail = &value[end + 2..];
                let constant = tail.is_empty()
                    || (tail.len() > 1
                        && tail.starts_with('x')
                        && tail[1..].chars().all(|c| c.is_ascii_digit()));
                if !constant {
                    continue;
                }
                let value = &value[..end + 2];
                let metric = metric.trim();
                let (name, labels) = match metric.find('{') {
                    Some(b) => (metric[..b].to_string(), metric[b..].to_string()),
                    None => (metric.to_string(), "{}".to_string()),
                };
                series.push((name, labels, parse(value)));
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("eval") else {
            continue;
        };
        let Some(expr) = rest.split_once(" instant at ").map(|(_, e)| e) else {
            continue;
        };
        let Some((_, expr)) = expr.split_once(' ') else {
            continue;
        };
        let expr = expr.trim();
        // Expected lines follow until a blank line.
        let mut expected: Vec<(String, String)> = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            let l = lines[i].trim();
            i += 1;
            if l.starts_with("expect") {
                continue;
            }
            if let Some(close) = l.find('}')
                && l.starts_with('{')
            {
                expected.push((l[..=close].to_string(), l[close + 1..].trim().to_string()));
            }
        }
        let Some((func, args)) = split_call(expr) else {
            continue;
        };
        let select = |sel: &str| -> Vec<&(String, String, FloatHistogram)> {
            let sel = sel.trim();
            let (name, labels) = match sel.find('{') {
                Some(b) => (&sel[..b], Some(&sel[b..])),
                None => (sel, None),
            };
            series
                .iter()
                .filter(|(n, l, _)| n == name && labels.is_none_or(|want| want == l))
                .collect()
        };
        let eval: Eval<'_> = match func {
            "histogram_quantile" if args.len() == 2 => {
                let q = num(&args[0]);
                Box::new(move |h| Outcome::Float(quantile(q, h)))
            }
            "histogram_fraction" if args.len() == 3 => {
                let (lo, hi) = (num(&args[0]), num(&args[1]));
                Box::new(move |h| Outcome::Float(fraction35(lo, hi, h)))
            }
            "histogram_stddev" => Box::new(|h| Outcome::Float(stddev(h))),
            "histogram_stdvar" => Box::new(|h| Outcome::Float(stdvar(h))),
            "histogram_avg" => Box::new(|h| Outcome::Float(avg(h))),
            "histogram_count" => Box::new(|h| Outcome::Float(h.count)),
            "histogram_sum" => Box::new(|h| Outcome::Float(h.sum)),
            "*" | "/" | "neg" => {
                let factor = args.get(1).map(|a| num(a));
                let op = func;
                Box::new(move |h| {
                    let mut c = h.clone();
                    match (op, factor) {
                        ("*", Some(f)) => c.mul(f),
                        ("/", Some(f)) => c.div(f),
                        _ => c.neg(),
                    }
                    Outcome::Hist(Box::new(c))
                })
            }
            _ => continue,
        };
        let selector = args.last().cloned().unwrap_or_default();
        let matched = select(&selector);
        if matched.is_empty() || matched.len() != expected.len() {
            continue;
        }
        for (_, labels, h) in matched {
            let want = expected
                .iter()
                .find(|(l, _)| l == labels)
                .unwrap_or_else(|| panic!("{expr}: no expected line for {labels}"));
            match eval(h) {
                Outcome::Float(v) => assert!(
                    almost(v, num(&want.1)),
                    "{expr} {labels}: got {v}, want {}",
                    want.1
                ),
                Outcome::Hist(got) => assert_hist_close(&got, &parse(&want.1), expr),
            }
            checked += 1;
        }
    }
    assert!(checked >= 180, "only {checked} cases checked");
}

/// What an evaluated expression gives.
enum Outcome {
    Float(f64),
    Hist(Box<FloatHistogram>),
}

/// An expression over one histogram.
type Eval<'a> = Box<dyn Fn(&FloatHistogram) -> Outcome + 'a>;

/// `f(a, b, sel)` as ("f", [a, b, sel]); `sel*3`/`3*sel` as ("*", [sel, 3]); `sel/3` as
/// ("/", [sel, 3]); `-sel` as ("neg", [sel]).
fn split_call(expr: &str) -> Option<(&str, Vec<String>)> {
    if let Some(open) = expr.find('(') {
        let inner = expr[open + 1..].strip_suffix(')')?;
        if inner.contains('(') {
            return None;
        }
        let args = inner.split(',').map(|a| a.trim().to_string()).collect();
        return Some((&expr[..open], args));
    }
    let is_name =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if let Some(sel) = expr.strip_prefix('-')
        && is_name(sel)
    {
        return Some(("neg", vec![sel.to_string()]));
    }
    for op in ['*', '/'] {
        if let Some((a, b)) = expr.split_once(op) {
            let (a, b) = (a.trim(), b.trim());
            if b.contains(['*', '/']) {
                return None;
            }
            let is_num = |s: &str| s.parse::<f64>().is_ok();
            return match (
                is_name(a) && !is_num(a),
                is_num(b),
                is_num(a),
                is_name(b) && !is_num(b),
            ) {
                (true, true, _, _) => Some((
                    if op == '*' { "*" } else { "/" },
                    vec![a.to_string(), b.to_string()],
                )),
                (_, _, true, true) if op == '*' => Some(("*", vec![b.to_string(), a.to_string()])),
                _ => None,
            };
        }
    }
    None
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
    fn quantile_is_monotone_in_q(a in any_histogram(), mut qs in prop::collection::vec(0.0f64..=1.0, 2..8)) {
        qs.sort_by(f64::total_cmp);
        let values: Vec<f64> = qs.iter().map(|&q| quantile(q, &a)).collect();
        for w in values.windows(2) {
            if a.count > 0.0 {
                prop_assert!(w[0] <= w[1] + 1e-9 * w[1].abs(), "{:?} at {:?} for {}", values, qs, a.test_expression());
            }
        }
    }

    #[test]
    fn fraction_inverts_quantile_on_positive_histograms(a in any_histogram(), q in 0.01f64..0.99) {
        let mut h = a.clone();
        h.negative_spans.clear();
        h.negative_buckets.clear();
        h.zero_count = 0.0;
        h.count = h.positive_buckets.iter().sum();
        prop_assume!(h.count > 0.0);
        let v = quantile(q, &h);
        let f = fraction35(f64::NEG_INFINITY, v, &h);
        prop_assert!((f - q).abs() < 1e-9, "q {} gave {} and back {} for {}", q, v, f, h.test_expression());
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
        q in -0.5f64..1.5,
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
        let _ = quantile(q, &h);
        let _ = fraction(-1.0, q, &h, Compat::Prometheus3_5);
        let _ = fraction(-1.0, q, &h, Compat::Prometheus3_14);
        let _ = stddev(&h);
        let _ = avg(&h);
    }
}

#[test]
fn statistics_of_broken_layouts_never_fail() {
    let good = parse("{{schema:0 count:4 sum:5 buckets:[1 2 1]}}");
    let mut short = good.clone();
    short.positive_buckets.pop();
    let mut backwards = good.clone();
    backwards.positive_spans = vec![Span::new(0, 1), Span::new(-2, 2)];
    for bad in [&short, &backwards] {
        let _ = quantile(0.5, bad);
        let _ = fraction35(0.0, 1.0, bad);
        let _ = stdvar(bad);
    }
}
