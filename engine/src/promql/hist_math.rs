//! The few float histogram operations the evaluator needs while the shared histogram
//! arithmetic (`crate::histogram`) does not have them: buckets are handled by absolute index,
//! which keeps these short rather than fast.

use std::collections::BTreeMap;

use crate::histogram::{CounterResetHint, FloatHistogram, Span};

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MathError {
    /// Custom-bucket histograms with different bounds.
    IncompatibleSchemas,
    /// One histogram with custom buckets, one with exponential ones.
    MixedSchemas,
}

/// Buckets by absolute index.
fn indexed(spans: &[Span], counts: &[f64]) -> BTreeMap<i32, f64> {
    let mut out = BTreeMap::new();
    let mut idx = 0i32;
    let mut k = 0usize;
    for (n, s) in spans.iter().enumerate() {
        idx = if n == 0 { s.offset } else { idx + s.offset };
        for _ in 0..s.length {
            if let Some(&c) = counts.get(k) {
                *out.entry(idx).or_insert(0.0) += c;
            }
            idx += 1;
            k += 1;
        }
    }
    out
}

/// Spans and counts of buckets by index, each run of consecutive indices one span.
fn spans_of(m: &BTreeMap<i32, f64>) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::with_capacity(m.len());
    let mut next = i32::MIN;
    for (&i, &c) in m {
        if spans.is_empty() {
            spans.push(Span::new(i, 1));
        } else if i == next {
            spans.last_mut().expect("a span").length += 1;
        } else {
            spans.push(Span::new(i - next, 1));
        }
        counts.push(c);
        next = i + 1;
    }
    (spans, counts)
}

/// The index of bucket `i` of schema `from` in the coarser schema `to`.
fn coarser(i: i32, from: i32, to: i32) -> i32 {
    ((i - 1) >> (from - to)) + 1
}

/// A histogram's buckets in `schema` (not finer than its own), with those at or under
/// `zero_threshold` moved into the zero bucket; returns (zero count, positive, negative).
fn normalized(
    h: &FloatHistogram,
    schema: i32,
    zero_threshold: f64,
) -> (f64, BTreeMap<i32, f64>, BTreeMap<i32, f64>) {
    let mut zero = h.zero_count;
    let mut sides = [BTreeMap::new(), BTreeMap::new()];
    for (side, (spans, counts)) in [
        (&h.positive_spans, &h.positive_buckets),
        (&h.negative_spans, &h.negative_buckets),
    ]
    .into_iter()
    .enumerate()
    {
        for (i, c) in indexed(spans, counts) {
            let j = if h.uses_custom_buckets() {
                i
            } else {
                coarser(i, h.schema, schema)
            };
            if !h.uses_custom_buckets()
                && zero_threshold > h.zero_threshold
                && upper_bound(j, schema) <= zero_threshold
            {
                zero += c;
                continue;
            }
            *sides[side].entry(j).or_insert(0.0) += c;
        }
    }
    let [p, n] = sides;
    (zero, p, n)
}

/// The upper bound of exponential bucket `i` in `schema`.
pub(crate) fn upper_bound(i: i32, schema: i32) -> f64 {
    2f64.powf(i as f64 * 2f64.powi(-schema))
}

/// The hint of `a + b` (or `a - b`), as Prometheus combines them.
fn combined_hint(a: CounterResetHint, b: CounterResetHint) -> CounterResetHint {
    use CounterResetHint::*;
    match (a, b) {
        (x, y) if x == y => x,
        (Gauge, _) | (_, Gauge) => Gauge,
        _ => Unknown,
    }
}

/// `a + sign * b`.
fn combine(a: &FloatHistogram, b: &FloatHistogram, sign: f64) -> Result<FloatHistogram, MathError> {
    if a.uses_custom_buckets() != b.uses_custom_buckets() {
        return Err(MathError::MixedSchemas);
    }
    if a.uses_custom_buckets()
        && !crate::histogram::custom_bounds_match(&a.custom_values, &b.custom_values)
    {
        return Err(MathError::IncompatibleSchemas);
    }
    let schema = a.schema.min(b.schema);
    let zt = a.zero_threshold.max(b.zero_threshold);
    let (za, mut pa, mut na) = normalized(a, schema, zt);
    let (zb, pb, nb) = normalized(b, schema, zt);
    for (i, c) in pb {
        *pa.entry(i).or_insert(0.0) += sign * c;
    }
    for (i, c) in nb {
        *na.entry(i).or_insert(0.0) += sign * c;
    }
    let (positive_spans, positive_buckets) = spans_of(&pa);
    let (negative_spans, negative_buckets) = spans_of(&na);
    Ok(FloatHistogram {
        counter_reset_hint: combined_hint(a.counter_reset_hint, b.counter_reset_hint),
        schema,
        zero_threshold: zt,
        zero_count: za + sign * zb,
        count: a.count + sign * b.count,
        sum: a.sum + sign * b.sum,
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values: a.custom_values.clone(),
    })
}

/// `a + b`.
pub(crate) fn add(a: &FloatHistogram, b: &FloatHistogram) -> Result<FloatHistogram, MathError> {
    combine(a, b, 1.0)
}

/// `a - b`.
pub(crate) fn sub(a: &FloatHistogram, b: &FloatHistogram) -> Result<FloatHistogram, MathError> {
    combine(a, b, -1.0)
}

/// Every count and the sum multiplied by `f`.
pub(crate) fn scale(h: &mut FloatHistogram, f: f64) {
    h.count *= f;
    h.sum *= f;
    h.zero_count *= f;
    h.positive_buckets.iter_mut().for_each(|x| *x *= f);
    h.negative_buckets.iter_mut().for_each(|x| *x *= f);
}

/// Whether the counters of `cur` reset since `prev`, as Prometheus decides it: by the hint
/// when it says so, else when a count went down, the zero bucket shrank, or the resolution
/// went up.
pub(crate) fn detect_reset(cur: &FloatHistogram, prev: &FloatHistogram) -> bool {
    match cur.counter_reset_hint {
        CounterResetHint::CounterReset => return true,
        CounterResetHint::NotCounterReset => return false,
        _ => {}
    }
    if cur.count < prev.count {
        return true;
    }
    if cur.uses_custom_buckets() != prev.uses_custom_buckets()
        || (cur.uses_custom_buckets()
            && !crate::histogram::custom_bounds_match(&cur.custom_values, &prev.custom_values))
    {
        return true;
    }
    if cur.schema > prev.schema || cur.zero_threshold < prev.zero_threshold {
        return true;
    }
    let schema = cur.schema;
    let zt = cur.zero_threshold;
    let (zc, pc, nc) = normalized(cur, schema, zt);
    let (zp, pp, np) = normalized(prev, schema, zt);
    if zc < zp {
        return true;
    }
    for (old, new) in [(pp, pc), (np, nc)] {
        for (i, c) in old {
            if new.get(&i).copied().unwrap_or(0.0) < c {
                return true;
            }
        }
    }
    false
}

/// Every count and the sum divided by `f`.
pub(crate) fn divide(h: &mut FloatHistogram, f: f64) {
    h.count /= f;
    h.sum /= f;
    h.zero_count /= f;
    if f == 0.0 {
        // Division by zero leaves no buckets.
        h.positive_spans.clear();
        h.negative_spans.clear();
        h.positive_buckets.clear();
        h.negative_buckets.clear();
        return;
    }
    h.positive_buckets.iter_mut().for_each(|x| *x /= f);
    h.negative_buckets.iter_mut().for_each(|x| *x /= f);
}

/// Whether two histograms hold the same data: schema, zero bucket, count, sum (NaN equal to
/// NaN), custom bounds and the same non-empty buckets.
pub(crate) fn equals(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let feq = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
    let nonzero = |m: BTreeMap<i32, f64>| -> Vec<(i32, f64)> {
        m.into_iter().filter(|(_, c)| *c != 0.0).collect()
    };
    a.schema == b.schema
        && a.zero_threshold == b.zero_threshold
        && feq(a.zero_count, b.zero_count)
        && feq(a.count, b.count)
        && feq(a.sum, b.sum)
        && (!a.uses_custom_buckets()
            || crate::histogram::custom_bounds_match(&a.custom_values, &b.custom_values))
        && nonzero(indexed(&a.positive_spans, &a.positive_buckets))
            == nonzero(indexed(&b.positive_spans, &b.positive_buckets))
        && nonzero(indexed(&a.negative_spans, &a.negative_buckets))
            == nonzero(indexed(&b.negative_spans, &b.negative_buckets))
}

/// `h` in the coarser `schema`.
pub(crate) fn reduce(h: &FloatHistogram, schema: i32) -> FloatHistogram {
    let (zero_count, p, n) = normalized(h, schema, h.zero_threshold);
    let (positive_spans, positive_buckets) = spans_of(&p);
    let (negative_spans, negative_buckets) = spans_of(&n);
    FloatHistogram {
        schema,
        zero_count,
        positive_spans,
        positive_buckets,
        negative_spans,
        negative_buckets,
        ..h.clone()
    }
}
