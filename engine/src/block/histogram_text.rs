//! Native histograms as text, spelled as Prometheus's `Histogram.String()` and
//! `FloatHistogram.String()` spell them (what `promtool tsdb dump` prints for a histogram
//! sample): `{count:N, sum:S, <buckets>}` with every non-empty bucket as `[lower,upper]:count`,
//! negative buckets first (farthest from zero first), then the zero bucket, then the positive
//! buckets. An integer histogram prints its count as an integer, a float histogram with `%g`.

use crate::go_format::{FloatFormat, push_float};
use crate::histogram::{FloatHistogram, Histogram, Span, bucket_bound, is_custom_buckets_schema};

/// Appends `h` as Prometheus's `Histogram.String()` prints it.
pub fn push_histogram(out: &mut String, h: &Histogram) {
    out.push_str("{count:");
    push_u64(out, h.count);
    out.push_str(", sum:");
    push_float(out, h.sum, FloatFormat::G);
    // Deltas summed as Prometheus sums them: in i64, read back as u64.
    let abs = |deltas: &[i64]| -> Vec<u64> {
        let mut acc = 0i64;
        deltas
            .iter()
            .map(|d| {
                acc = acc.wrapping_add(*d);
                acc as u64
            })
            .collect()
    };
    push_buckets(
        out,
        h.schema,
        &h.custom_values,
        (&h.negative_spans, &abs(&h.negative_buckets)),
        (h.zero_threshold, h.zero_count),
        (&h.positive_spans, &abs(&h.positive_buckets)),
        &|out: &mut String, c: u64| push_u64(out, c),
    );
    out.push('}');
}

/// Appends `h` as Prometheus's `FloatHistogram.String()` prints it.
pub fn push_float_histogram(out: &mut String, h: &FloatHistogram) {
    out.push_str("{count:");
    push_float(out, h.count, FloatFormat::G);
    out.push_str(", sum:");
    push_float(out, h.sum, FloatFormat::G);
    push_buckets(
        out,
        h.schema,
        &h.custom_values,
        (&h.negative_spans, &h.negative_buckets),
        (h.zero_threshold, h.zero_count),
        (&h.positive_spans, &h.positive_buckets),
        &|out: &mut String, c: f64| push_float(out, c, FloatFormat::G),
    );
    out.push('}');
}

/// One bucket's index and count, in span order.
fn indexed<'a, T: Copy>(spans: &'a [Span], counts: &'a [T]) -> impl Iterator<Item = (i32, T)> + 'a {
    let mut idx = 0i32;
    let mut pos = 0usize;
    spans.iter().enumerate().flat_map(move |(n, s)| {
        idx = if n == 0 {
            s.offset
        } else {
            idx.wrapping_add(s.offset)
        };
        let start = idx;
        let at = pos;
        pos += s.length as usize;
        idx = idx.wrapping_add(s.length as i32);
        (0..s.length as usize).filter_map(move |k| {
            counts
                .get(at + k)
                .map(|&c| (start.wrapping_add(k as i32), c))
        })
    })
}

/// Prints one bucket count: an integer histogram's as an integer, a float one's with `%g`.
type CountWriter<'a, T> = &'a dyn Fn(&mut String, T);

/// The buckets with a count other than zero (a NaN count is printed), in Prometheus's order.
fn push_buckets<T: Copy + PartialEq + Default>(
    out: &mut String,
    schema: i32,
    custom: &[f64],
    negative: (&[Span], &[T]),
    zero: (f64, T),
    positive: (&[Span], &[T]),
    count: CountWriter<'_, T>,
) {
    let none = T::default();
    let neg: Vec<(i32, T)> = indexed(negative.0, negative.1)
        .filter(|&(_, c)| c != none)
        .collect();
    for &(idx, c) in neg.iter().rev() {
        let lower = -bound(idx, schema, custom);
        let upper = -bound(idx.wrapping_sub(1), schema, custom);
        push_bucket(out, schema, idx, lower, upper, c, count);
    }
    if zero.1 != none {
        out.push_str(", [");
        push_float(out, -zero.0, FloatFormat::G);
        out.push(',');
        push_float(out, zero.0, FloatFormat::G);
        out.push_str("]:");
        count(out, zero.1);
    }
    for (idx, c) in indexed(positive.0, positive.1) {
        if c == none {
            continue;
        }
        let lower = bound(idx.wrapping_sub(1), schema, custom);
        let upper = bound(idx, schema, custom);
        push_bucket(out, schema, idx, lower, upper, c, count);
    }
}

fn push_bucket<T>(
    out: &mut String,
    schema: i32,
    idx: i32,
    lower: f64,
    upper: f64,
    c: T,
    count: CountWriter<'_, T>,
) {
    let (lower_incl, upper_incl) = if is_custom_buckets_schema(schema) {
        (idx == 0, true)
    } else {
        (lower < 0.0, upper > 0.0)
    };
    out.push_str(", ");
    out.push(if lower_incl { '[' } else { '(' });
    push_float(out, lower, FloatFormat::G);
    out.push(',');
    push_float(out, upper, FloatFormat::G);
    out.push(if upper_incl { ']' } else { ')' });
    out.push(':');
    count(out, c);
}

fn push_u64(out: &mut String, v: u64) {
    use std::fmt::Write;
    let _ = write!(out, "{v}");
}

/// The upper bound of bucket `idx` of `schema` (for custom buckets, of `custom`), as
/// Prometheus computes it: the shared [`bucket_bound`].
pub fn bound(idx: i32, schema: i32, custom: &[f64]) -> f64 {
    bucket_bound(i64::from(idx), schema, custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_at_the_edges() {
        assert_eq!(bound(0, 0, &[]), 1.0);
        assert_eq!(bound(1, 0, &[]), 2.0);
        assert_eq!(bound(-1, 0, &[]), 0.5);
        assert_eq!(bound(1024, 0, &[]), f64::MAX);
        assert_eq!(bound(1025, 0, &[]), f64::INFINITY);
        assert_eq!(bound(64, -4, &[]), f64::MAX);
        assert_eq!(bound(8 * 1024, 3, &[]), f64::MAX);
        assert_eq!(bound(-1, -53, &[1.0, 2.0]), f64::NEG_INFINITY);
        assert_eq!(bound(2, -53, &[1.0, 2.0]), f64::INFINITY);
        assert_eq!(bound(-1074, 0, &[]), f64::from_bits(1));
    }

    #[test]
    fn integer_histogram_text() {
        let h = Histogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 2,
            count: 19,
            sum: 2.5,
            positive_spans: vec![Span::new(0, 2), Span::new(1, 1)],
            positive_buckets: vec![1, 2, -3],
            negative_spans: vec![Span::new(0, 2)],
            negative_buckets: vec![4, -4],
            ..Default::default()
        };
        let mut s = String::new();
        push_histogram(&mut s, &h);
        assert_eq!(
            s,
            "{count:19, sum:2.5, [-1,-0.5):4, [-0.001,0.001]:2, (0.5,1]:1, (1,2]:3}"
        );
        let mut f = String::new();
        push_float_histogram(&mut f, &h.to_float());
        assert_eq!(
            f,
            "{count:19, sum:2.5, [-1,-0.5):4, [-0.001,0.001]:2, (0.5,1]:1, (1,2]:3}"
        );
    }

    #[test]
    fn custom_buckets_text() {
        let h = FloatHistogram {
            schema: -53,
            count: 6.5,
            sum: 10.0,
            positive_spans: vec![Span::new(0, 3)],
            positive_buckets: vec![1.5, 0.0, 5.0],
            custom_values: vec![1.0, 2.0].into(),
            ..Default::default()
        };
        let mut s = String::new();
        push_float_histogram(&mut s, &h);
        assert_eq!(s, "{count:6.5, sum:10, [-Inf,1]:1.5, (2,+Inf]:5}");
    }

    #[test]
    fn a_zero_threshold_of_zero_prints_minus_zero() {
        let h = FloatHistogram {
            zero_count: 3.0,
            count: 3.0,
            ..Default::default()
        };
        let mut s = String::new();
        push_float_histogram(&mut s, &h);
        assert_eq!(s, "{count:3, sum:0, [-0,0]:3}");
    }
}
