//! The checks a histogram passes before Gauntlet stores it, and the errors naming what failed.

use std::fmt;

use super::{
    FloatHistogram, Histogram, Span, count_buckets, is_custom_buckets_schema, is_exponential_schema,
};

/// Which side of the zero bucket a problem is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The positive buckets.
    Positive,
    /// The negative buckets.
    Negative,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Positive => "positive",
            Side::Negative => "negative",
        })
    }
}

/// A float inside an error, compared by bit pattern so that errors stay comparable (a NaN
/// equals itself).
#[derive(Debug, Clone, Copy)]
pub struct FloatValue(pub f64);

impl PartialEq for FloatValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for FloatValue {}

impl fmt::Display for FloatValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a histogram is not one Gauntlet stores. Bucket and span numbers count from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistogramError {
    /// The schema is neither exponential (-4..=8) nor custom buckets (-53); the sender uses a
    /// resolution Gauntlet does not know. Reject the sample.
    #[error("histogram schema {schema} is neither -4..=8 nor -53")]
    UnknownSchema {
        /// The schema found.
        schema: i64,
    },
    /// A span after the first has a negative offset, which would revisit bucket indices.
    /// Reject the sample.
    #[error("{side} span {span} has offset {offset}; only the first span may be negative")]
    SpanNegativeOffset {
        /// Positive or negative buckets.
        side: Side,
        /// The span's position.
        span: usize,
        /// The offset found.
        offset: i32,
    },
    /// The spans describe a different number of buckets than are given. Reject the sample.
    #[error("{side} spans describe {spans} buckets but {buckets} are given")]
    SpansBucketsMismatch {
        /// Positive or negative buckets.
        side: Side,
        /// Buckets the spans describe.
        spans: u64,
        /// Bucket counts given.
        buckets: usize,
    },
    /// A bucket's absolute count is negative. Reject the sample.
    #[error("{side} bucket {bucket} has a negative count {count}")]
    NegativeBucketCount {
        /// Positive or negative buckets.
        side: Side,
        /// The bucket's position.
        bucket: usize,
        /// Its absolute count.
        count: FloatValue,
    },
    /// The bucket and zero counts add up to more than the total count ever could (beyond
    /// `u64`). Reject the sample.
    #[error("bucket counts overflow the 64-bit total")]
    CountOverflow,
    /// The total count differs from the bucket and zero counts (the sum is not NaN, so no
    /// observation can be outside the buckets). Reject the sample.
    #[error("count is {count} but the buckets hold {in_buckets} observations")]
    CountMismatch {
        /// The histogram's count.
        count: u64,
        /// Observations in the buckets and the zero bucket.
        in_buckets: u64,
    },
    /// The total count is below the bucket and zero counts (the sum is NaN). Reject the
    /// sample.
    #[error("count is {count} but the buckets hold {in_buckets} observations, more than that")]
    CountNotBigEnough {
        /// The histogram's count.
        count: u64,
        /// Observations in the buckets and the zero bucket.
        in_buckets: u64,
    },
    /// Custom bounds are not strictly increasing (or a bound is NaN). Reject the sample.
    #[error("custom bound {index} is {current}, not above the one before it ({previous})")]
    CustomBoundsNotIncreasing {
        /// Position of the offending bound.
        index: usize,
        /// The bound before it (-Inf for the first).
        previous: FloatValue,
        /// The offending bound.
        current: FloatValue,
    },
    /// The last custom bound is +Inf, which is implicit and must not be given. Reject the
    /// sample.
    #[error("the last custom bound is +Inf, which must not be given explicitly")]
    CustomBoundsInfinite,
    /// The custom bounds are too few for the buckets the spans reach. Reject the sample.
    #[error("{bounds} custom bounds define {} buckets, but the spans reach bucket {reach}", bounds + 1)]
    CustomBoundsTooFew {
        /// Number of custom bounds.
        bounds: usize,
        /// One past the highest bucket index the spans reach.
        reach: u64,
    },
    /// A custom-buckets histogram has a zero count. Reject the sample.
    #[error("a custom-buckets histogram has zero count {0}")]
    CustomBucketsZeroCount(FloatValue),
    /// A custom-buckets histogram has a zero threshold. Reject the sample.
    #[error("a custom-buckets histogram has zero threshold {0}")]
    CustomBucketsZeroThreshold(FloatValue),
    /// A custom-buckets histogram has negative spans or buckets. Reject the sample.
    #[error("a custom-buckets histogram has negative spans or buckets")]
    CustomBucketsNegativeBuckets,
    /// An exponential histogram carries custom bounds. Reject the sample.
    #[error("a histogram with exponential schema {schema} carries {bounds} custom bounds")]
    ExponentialWithCustomBounds {
        /// The schema.
        schema: i32,
        /// Number of custom bounds.
        bounds: usize,
    },
    /// A float count is not a whole number in range, so the float histogram has no integer
    /// form; keep it as a float histogram.
    #[error("{what}{} is {value}, not a whole non-negative number in range", index.map(|i| format!(" {i}")).unwrap_or_default())]
    NotIntegral {
        /// Which count.
        what: &'static str,
        /// The bucket's position, for bucket counts.
        index: Option<usize>,
        /// The count found.
        value: FloatValue,
    },
}

pub(super) fn validate_int(h: &Histogram) -> Result<(), HistogramError> {
    let mut in_buckets: u64 = 0;
    check_schema_rules(
        h.schema,
        &h.custom_values,
        &h.positive_spans,
        h.positive_buckets.len(),
        &h.negative_spans,
        h.negative_buckets.len(),
        h.zero_count as f64,
        h.zero_threshold,
    )?;
    for (side, buckets) in [
        (Side::Negative, &h.negative_buckets),
        (Side::Positive, &h.positive_buckets),
    ] {
        let mut current = 0i64;
        for (i, &d) in buckets.iter().enumerate() {
            current = current.wrapping_add(d);
            if current < 0 {
                return Err(HistogramError::NegativeBucketCount {
                    side,
                    bucket: i,
                    count: FloatValue(current as f64),
                });
            }
            in_buckets = in_buckets
                .checked_add(current as u64)
                .ok_or(HistogramError::CountOverflow)?;
        }
    }
    in_buckets = in_buckets
        .checked_add(h.zero_count)
        .ok_or(HistogramError::CountOverflow)?;
    if h.sum.is_nan() {
        if in_buckets > h.count {
            return Err(HistogramError::CountNotBigEnough {
                count: h.count,
                in_buckets,
            });
        }
    } else if in_buckets != h.count {
        return Err(HistogramError::CountMismatch {
            count: h.count,
            in_buckets,
        });
    }
    Ok(())
}

pub(super) fn validate_float(h: &FloatHistogram) -> Result<(), HistogramError> {
    check_schema_rules(
        h.schema,
        &h.custom_values,
        &h.positive_spans,
        h.positive_buckets.len(),
        &h.negative_spans,
        h.negative_buckets.len(),
        h.zero_count,
        h.zero_threshold,
    )?;
    for (side, buckets) in [
        (Side::Negative, &h.negative_buckets),
        (Side::Positive, &h.positive_buckets),
    ] {
        if let Some((i, &c)) = buckets.iter().enumerate().find(|(_, c)| **c < 0.0) {
            return Err(HistogramError::NegativeBucketCount {
                side,
                bucket: i,
                count: FloatValue(c),
            });
        }
    }
    Ok(())
}

/// The checks both kinds share: the schema, the spans against the number of buckets, and the
/// custom-bucket rules.
#[allow(
    clippy::too_many_arguments,
    reason = "the shared fields of two histogram types"
)]
fn check_schema_rules(
    schema: i32,
    custom_values: &[f64],
    positive_spans: &[Span],
    positive_buckets: usize,
    negative_spans: &[Span],
    negative_buckets: usize,
    zero_count: f64,
    zero_threshold: f64,
) -> Result<(), HistogramError> {
    if is_custom_buckets_schema(schema) {
        check_custom_bounds(custom_values, positive_spans, positive_buckets)?;
        if zero_count != 0.0 {
            return Err(HistogramError::CustomBucketsZeroCount(FloatValue(
                zero_count,
            )));
        }
        if zero_threshold != 0.0 {
            return Err(HistogramError::CustomBucketsZeroThreshold(FloatValue(
                zero_threshold,
            )));
        }
        if !negative_spans.is_empty() || negative_buckets > 0 {
            return Err(HistogramError::CustomBucketsNegativeBuckets);
        }
        return Ok(());
    }
    if !is_exponential_schema(schema) {
        return Err(HistogramError::UnknownSchema {
            schema: i64::from(schema),
        });
    }
    check_spans(Side::Positive, positive_spans, positive_buckets)?;
    check_spans(Side::Negative, negative_spans, negative_buckets)?;
    if !custom_values.is_empty() {
        return Err(HistogramError::ExponentialWithCustomBounds {
            schema,
            bounds: custom_values.len(),
        });
    }
    Ok(())
}

/// Spans of an exponential histogram: no negative offset after the first, as many buckets as
/// given.
pub(crate) fn check_spans(
    side: Side,
    spans: &[Span],
    buckets: usize,
) -> Result<(), HistogramError> {
    if let Some((n, s)) = spans.iter().enumerate().skip(1).find(|(_, s)| s.offset < 0) {
        return Err(HistogramError::SpanNegativeOffset {
            side,
            span: n,
            offset: s.offset,
        });
    }
    let need = count_buckets(spans);
    if need != buckets as u64 {
        return Err(HistogramError::SpansBucketsMismatch {
            side,
            spans: need,
            buckets,
        });
    }
    Ok(())
}

/// Custom bounds and the positive spans of a custom-buckets histogram: bounds strictly
/// increasing and finite at the top, spans with no negative offset (the first included, as
/// bucket 0 is the lowest), reaching no bucket beyond the bounds.
pub(crate) fn check_custom_bounds(
    bounds: &[f64],
    spans: &[Span],
    buckets: usize,
) -> Result<(), HistogramError> {
    check_bounds(bounds)?;
    let mut reach: u64 = 0;
    for (n, s) in spans.iter().enumerate() {
        if s.offset < 0 {
            return Err(HistogramError::SpanNegativeOffset {
                side: Side::Positive,
                span: n,
                offset: s.offset,
            });
        }
        reach += s.offset as u64 + u64::from(s.length);
    }
    let need = count_buckets(spans);
    if need != buckets as u64 {
        return Err(HistogramError::SpansBucketsMismatch {
            side: Side::Positive,
            spans: need,
            buckets,
        });
    }
    if reach > bounds.len() as u64 + 1 {
        return Err(HistogramError::CustomBoundsTooFew {
            bounds: bounds.len(),
            reach,
        });
    }
    Ok(())
}

/// Custom bounds on their own: strictly increasing (no NaN), the last one finite.
pub(crate) fn check_bounds(bounds: &[f64]) -> Result<(), HistogramError> {
    let mut previous = f64::NEG_INFINITY;
    for (i, &b) in bounds.iter().enumerate() {
        // NaN fails too: it compares with nothing.
        if b.partial_cmp(&previous) != Some(std::cmp::Ordering::Greater) {
            return Err(HistogramError::CustomBoundsNotIncreasing {
                index: i,
                previous: FloatValue(previous),
                current: FloatValue(b),
            });
        }
        previous = b;
    }
    if previous == f64::INFINITY {
        return Err(HistogramError::CustomBoundsInfinite);
    }
    Ok(())
}
