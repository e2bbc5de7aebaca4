//! Native histograms in a query endpoint's answer, read back into histograms the ruler can
//! record: Prometheus's JSON (`{"count","sum","buckets":[[rule,"lower","upper","count"],…]}`)
//! lists only the populated buckets by their bounds, so the schema and each bucket's index are
//! found from the bounds.
//!
//! - Exponential schemas: every bound is one of the fixed bucket bounds of schema -4..=8; the
//!   schema is the one in which every listed bucket's bounds are those of one bucket index (a
//!   bound clipped to the zero threshold excepted). The zero bucket is the one with boundary
//!   rule 3 and bounds ±threshold; when it is empty (not listed) the threshold is read from
//!   a bucket it cuts, else taken as Prometheus's default, 2^-128.
//! - Otherwise custom bucket bounds (schema -53): the bounds are the finite bounds listed, so
//!   unpopulated buckets between them are not kept; the histogram answers and prints the
//!   same, but may not add to one that kept every bound.
//! - Custom bounds that happen to be exponential bounds are read as an exponential schema.

use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram, Span, exponential_bound};
use serde_json::Value;

/// Prometheus's default zero threshold, for histograms whose zero bucket is not listed.
const DEFAULT_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;
/// The custom-buckets schema.
const CUSTOM_SCHEMA: i32 = -53;

/// One listed bucket.
#[derive(Debug, Clone, Copy)]
struct Listed {
    rule: u64,
    lower: f64,
    upper: f64,
    count: f64,
}

/// The histogram of a query answer's `"histogram": [t, {…}]` object.
pub fn parse_histogram(h: &Value) -> Result<FloatHistogram, String> {
    let count = number(&h["count"]).ok_or("a histogram without a count")?;
    let sum = number(&h["sum"]).ok_or("a histogram without a sum")?;
    let mut listed = Vec::new();
    for b in h["buckets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let bad = || format!("a histogram bucket {b}");
        listed.push(Listed {
            rule: b[0].as_u64().filter(|r| *r <= 3).ok_or_else(bad)?,
            lower: number(&b[1]).ok_or_else(bad)?,
            upper: number(&b[2]).ok_or_else(bad)?,
            count: number(&b[3]).ok_or_else(bad)?,
        });
    }
    let zero = listed
        .iter()
        .position(|b| b.rule == 3 && b.upper.is_finite() && b.lower == -b.upper);
    let (zero_threshold, zero_count) = match zero {
        Some(i) => {
            let z = listed.remove(i);
            (z.upper, z.count)
        }
        None => (DEFAULT_ZERO_THRESHOLD, 0.0),
    };
    let mut out = FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 0,
        zero_threshold,
        zero_count,
        count,
        sum,
        ..FloatHistogram::default()
    };
    let (negative, positive): (Vec<Listed>, Vec<Listed>) =
        listed.iter().partition(|b| b.upper <= 0.0 && b.lower < 0.0);
    if let Some(schema) = exponential_schema(&negative, &positive, zero_threshold, zero.is_some()) {
        out.schema = schema;
        if zero.is_none()
            && let Some(clipped) = clipped_bound(&negative, &positive, schema)
        {
            // An empty zero bucket is not listed, but a bucket it cuts shows its threshold.
            out.zero_threshold = clipped;
        }
        let index = |far: f64, count: f64| Some((exponential_index(far, schema)?, count));
        let pos: Vec<(i64, f64)> = positive
            .iter()
            .filter_map(|b| index(b.upper, b.count))
            .collect();
        let neg: Vec<(i64, f64)> = negative
            .iter()
            .filter_map(|b| index(-b.lower, b.count))
            .collect();
        (out.positive_spans, out.positive_buckets) = spans(pos);
        (out.negative_spans, out.negative_buckets) = spans(neg);
        return Ok(out);
    }
    out.schema = CUSTOM_SCHEMA;
    out.zero_threshold = 0.0;
    let mut bounds: Vec<f64> = listed
        .iter()
        .flat_map(|b| [b.lower, b.upper])
        .filter(|v| v.is_finite())
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    let mut buckets = Vec::with_capacity(listed.len());
    for b in &listed {
        let index = if b.upper == f64::INFINITY {
            bounds.len()
        } else {
            bounds
                .iter()
                .position(|v| *v == b.upper)
                .ok_or_else(|| format!("a histogram bucket bound {}", b.upper))?
        };
        buckets.push((index as i64, b.count));
    }
    (out.positive_spans, out.positive_buckets) = spans(buckets);
    out.custom_values = bounds.into();
    Ok(out)
}

/// The bound of the bucket next to zero that the zero bucket cut (the zero threshold), if any.
fn clipped_bound(negative: &[Listed], positive: &[Listed], schema: i32) -> Option<f64> {
    let pairs = positive
        .iter()
        .map(|b| (b.upper, b.lower))
        .chain(negative.iter().map(|b| (-b.lower, -b.upper)));
    pairs
        .filter_map(|(far, near)| {
            let i = exponential_index(far, schema)?;
            (near != exponential_bound(i - 1, schema)).then_some(near)
        })
        .next()
}

/// The exponential schema every listed bucket fits, if one does. The bucket next to zero may
/// be cut at the zero threshold: at `zero_threshold` when the zero bucket is listed
/// (`zero_listed`), anywhere inside the bucket when it is not.
fn exponential_schema(
    negative: &[Listed],
    positive: &[Listed],
    zero_threshold: f64,
    zero_listed: bool,
) -> Option<i32> {
    if negative.is_empty() && positive.is_empty() {
        return Some(0);
    }
    (-4..=8).find(|&s| {
        let fits = |far: f64, near: f64| {
            exponential_index(far, s).is_some_and(|i| {
                let lower = exponential_bound(i - 1, s);
                near == lower
                    || near == zero_threshold
                    || (!zero_listed && near > lower && near < far)
            })
        };
        positive.iter().all(|b| fits(b.upper, b.lower))
            && negative.iter().all(|b| fits(-b.lower, -b.upper))
    })
}

/// The index of the exponential bucket of `schema` whose upper bound is `bound`, if one's is.
fn exponential_index(bound: f64, schema: i32) -> Option<i64> {
    if !(bound.is_finite() && bound > 0.0) {
        return None;
    }
    // |log2| <= 1075 for finite floats, so the guess is well inside i64.
    let guess = (bound.log2() * f64::from(schema).exp2()).round() as i64;
    // Rounding may land one off; the last finite bucket ends at f64::MAX rather than at its
    // power of two.
    (guess - 1..=guess + 1).find(|&i| exponential_bound(i, schema) == bound)
}

/// Buckets `(index, count)` as spans and counts, in index order.
fn spans(mut buckets: Vec<(i64, f64)>) -> (Vec<Span>, Vec<f64>) {
    buckets.sort_by_key(|b| b.0);
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::with_capacity(buckets.len());
    let mut next: Option<i64> = None;
    for (index, count) in buckets {
        match next {
            Some(n) if n == index => {
                if let Some(last) = spans.last_mut() {
                    last.length += 1;
                }
            }
            Some(n) => spans.push(Span::new((index - n) as i32, 1)),
            None => spans.push(Span::new(index as i32, 1)),
        }
        counts.push(count);
        next = Some(index + 1);
    }
    (spans, counts)
}

/// A number as the API spells it: a string (`"1.5"`, `"+Inf"`, `"NaN"`) or a JSON number.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => match s.as_str() {
            "+Inf" | "Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            s => s.parse().ok(),
        },
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_histogram;
    use crate::http::json::push_histogram;
    use gauntlet_engine::histogram::{FloatHistogram, Span};

    /// A histogram written as the API writes it reads back into the same histogram.
    fn round_trip(h: &FloatHistogram) -> FloatHistogram {
        let mut text = String::new();
        push_histogram(&mut text, h);
        let back = parse_histogram(&serde_json::from_str(&text).unwrap()).unwrap();
        let mut again = String::new();
        push_histogram(&mut again, &back);
        assert_eq!(again, text, "{back:?}");
        back
    }

    #[test]
    fn exponential_histograms_read_back_with_their_schema_and_indices() {
        for schema in [-4, -1, 0, 3, 8] {
            let h = FloatHistogram {
                schema,
                zero_threshold: 0.001,
                zero_count: 2.0,
                count: 20.0,
                sum: 10.5,
                positive_spans: vec![Span::new(-3, 2), Span::new(4, 1)],
                positive_buckets: vec![1.0, 2.5, 4.0],
                negative_spans: vec![Span::new(1, 2)],
                negative_buckets: vec![3.0, 0.5],
                ..FloatHistogram::default()
            };
            let back = round_trip(&h);
            assert_eq!(back.schema, schema);
            assert_eq!(back.positive_spans, h.positive_spans, "schema {schema}");
            assert_eq!(back.positive_buckets, h.positive_buckets);
            assert_eq!(back.negative_spans, h.negative_spans);
            assert_eq!(back.negative_buckets, h.negative_buckets);
            assert_eq!((back.zero_threshold, back.zero_count), (0.001, 2.0));
            assert_eq!((back.count, back.sum), (20.0, 10.5));
        }
    }

    #[test]
    fn a_bucket_clipped_by_the_zero_bucket_and_an_empty_zero_bucket() {
        let h = FloatHistogram {
            schema: 0,
            zero_threshold: 0.3,
            count: 3.0,
            sum: 1.0,
            positive_spans: vec![Span::new(-1, 2)],
            positive_buckets: vec![1.0, 2.0],
            ..FloatHistogram::default()
        };
        let back = round_trip(&h);
        assert_eq!(back.schema, 0);
        assert_eq!(back.positive_spans, h.positive_spans);
        assert_eq!(back.zero_threshold, 0.3);
        let empty = round_trip(&FloatHistogram {
            count: 0.0,
            sum: 0.0,
            ..FloatHistogram::default()
        });
        assert_eq!(empty.count, 0.0);
    }

    #[test]
    fn custom_bounds_keep_the_bounds_listed() {
        let h = FloatHistogram {
            schema: -53,
            count: 4.0,
            sum: 5.0,
            positive_spans: vec![Span::new(0, 3)],
            positive_buckets: vec![1.0, 2.0, 1.0],
            custom_values: vec![5.0, 10.0].into(),
            ..FloatHistogram::default()
        };
        let back = round_trip(&h);
        assert_eq!(back.schema, -53);
        assert_eq!(&*back.custom_values, &[5.0, 10.0]);
        assert!(parse_histogram(&serde_json::json!({"sum": "1"})).is_err());
        assert!(
            parse_histogram(
                &serde_json::json!({"count": "1", "sum": "1", "buckets": [[7, "1", "2", "1"]]})
            )
            .is_err()
        );
    }
}
