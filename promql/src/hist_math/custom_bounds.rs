//! Custom-bucket histograms with different bounds, reconciled as Prometheus 3.14 reconciles
//! them (3.5 refuses to combine them): both are mapped onto the bounds they share, each bucket
//! joining the reconciled bucket whose upper bound is the first shared bound at or above its
//! own (the +Inf bucket when there is none), and then combined as usual.

use std::sync::Arc;

use gauntlet_engine::histogram::{FloatHistogram, Span, custom_bounds_match};

/// The bounds present in both ascending lists, in order.
pub(crate) fn shared_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// `h`, a custom-bucket histogram, with its buckets merged onto `bounds`, a subset of its own
/// bounds: each bucket is added to the first bucket of `bounds` whose upper bound is at or
/// above its own, or to the +Inf bucket. Empty result buckets are left out.
pub(crate) fn onto_bounds(h: &FloatHistogram, bounds: &Arc<[f64]>) -> FloatHistogram {
    let mut counts = vec![0.0; bounds.len() + 1];
    let mut target = 0;
    let mut index = 0i64;
    let mut k = 0;
    for (n, s) in h.positive_spans.iter().enumerate() {
        index = if n == 0 {
            i64::from(s.offset)
        } else {
            index + i64::from(s.offset)
        };
        for _ in 0..s.length {
            let Some(&c) = h.positive_buckets.get(k) else {
                break;
            };
            let upper = usize::try_from(index)
                .ok()
                .and_then(|i| h.custom_values.get(i))
                .copied()
                .unwrap_or(f64::INFINITY);
            while target < bounds.len() && bounds[target] < upper {
                target += 1;
            }
            counts[target] += c;
            index += 1;
            k += 1;
        }
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut buckets = Vec::new();
    let mut last: Option<usize> = None;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0.0 {
            continue;
        }
        if let (Some(l), Some(span)) = (last, spans.last_mut())
            && l + 1 == i
        {
            span.length += 1;
        } else {
            // The gap since the last bucket kept, or the offset of the first.
            let gap = last.map_or(i, |l| i - l - 1);
            spans.push(Span::new(gap as i32, 1));
        }
        buckets.push(c);
        last = Some(i);
    }
    FloatHistogram {
        positive_spans: spans,
        positive_buckets: buckets,
        custom_values: bounds.clone().into(),
        ..h.clone()
    }
}

/// `a` and `b` mapped onto the bounds they share, when both have custom buckets with different
/// bounds; `None` otherwise.
pub(crate) fn reconcile(
    a: &FloatHistogram,
    b: &FloatHistogram,
) -> Option<(FloatHistogram, FloatHistogram)> {
    if !(a.uses_custom_buckets() && b.uses_custom_buckets())
        || custom_bounds_match(&a.custom_values, &b.custom_values)
    {
        return None;
    }
    let bounds: Arc<[f64]> = shared_bounds(&a.custom_values, &b.custom_values).into();
    Some((onto_bounds(a, &bounds), onto_bounds(b, &bounds)))
}
