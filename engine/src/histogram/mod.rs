//! Native histograms: the integer [`Histogram`] and the [`FloatHistogram`], laid out as
//! Prometheus lays them out (`model/histogram`), so that chunks, the WAL, remote write and
//! PromQL can share one model.
//!
//! A histogram has a schema (exponential schemas -4..=8, or [`CUSTOM_BUCKETS_SCHEMA`] for
//! custom bucket bounds), a zero bucket, and positive and negative buckets described by
//! [`Span`]s: runs of consecutive bucket indices. An integer histogram stores its bucket counts
//! as deltas (the first bucket absolute, each later one relative to the one before); a float
//! histogram stores absolute counts.
//!
//! Nothing here panics on bad input: [`Histogram::validate`] and [`FloatHistogram::validate`]
//! name what is wrong with a [`HistogramError`].

pub mod ops;
pub(crate) mod validate;

use std::fmt;
use std::sync::Arc;

pub use ops::{
    AddOutcome, AllBucketIter, Bucket, BucketIter, HistogramOpError, ReverseBucketIter,
    bucket_bound, exponential_bound,
};
pub use validate::{FloatValue, HistogramError, Side};

/// The smallest exponential schema: each bucket spans a factor of 2^16.
pub const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
/// The largest exponential schema: each power of two is split into 256 buckets.
pub const EXPONENTIAL_SCHEMA_MAX: i32 = 8;
/// The schema of native histograms with custom bucket bounds (NHCB): the bounds are in
/// `custom_values`, there is no zero bucket and no negative bucket.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Whether `schema` is one of the exponential schemas -4..=8.
#[inline]
pub fn is_exponential_schema(schema: i32) -> bool {
    (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&schema)
}

/// Whether `schema` is the custom-buckets schema.
#[inline]
pub fn is_custom_buckets_schema(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA
}

/// Whether `schema` is one Gauntlet (like Prometheus 3.5) can store: -4..=8 or -53.
#[inline]
pub fn is_known_schema(schema: i32) -> bool {
    is_exponential_schema(schema) || is_custom_buckets_schema(schema)
}

/// Whether two custom bound lists are the same (compared as numbers; empty matches empty).
pub fn custom_bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// A run of consecutive buckets: `length` buckets starting `offset` indices after the end of
/// the previous span (for the first span, at bucket index `offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Gap to the previous span (never negative after the first span), or the index of the
    /// first bucket for the first span.
    pub offset: i32,
    /// Number of buckets in the span.
    pub length: u32,
}

impl Span {
    /// A span of `length` buckets, `offset` after the previous one.
    pub const fn new(offset: i32, length: u32) -> Self {
        Span { offset, length }
    }
}

/// Total number of buckets `spans` describe.
pub fn count_buckets(spans: &[Span]) -> u64 {
    spans.iter().map(|s| u64::from(s.length)).sum()
}

/// What is known about a counter reset at a histogram sample, or that the histogram is a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum CounterResetHint {
    /// Nothing is known; a reader detects resets itself.
    #[default]
    Unknown = 0,
    /// The counters reset at this sample.
    CounterReset = 1,
    /// The counters did not reset since the previous sample.
    NotCounterReset = 2,
    /// A gauge histogram: counts go up and down, there are no resets.
    Gauge = 3,
}

impl CounterResetHint {
    /// The hint for its number in the remote-write protocol (0..=3); `None` for others.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => CounterResetHint::Unknown,
            1 => CounterResetHint::CounterReset,
            2 => CounterResetHint::NotCounterReset,
            3 => CounterResetHint::Gauge,
            _ => return None,
        })
    }
}

/// The upper bounds of a custom-bucket histogram's buckets (schema -53), shared between the
/// samples that use them. Exponential histograms have none, and then hold no reference at all:
/// creating, copying and dropping their histograms touches no count shared between threads
/// (an empty `Arc<[f64]>` is one static whose count every thread would update).
#[derive(Clone, Default)]
pub struct CustomBounds(Option<Arc<[f64]>>);

impl std::ops::Deref for CustomBounds {
    type Target = [f64];

    #[inline]
    fn deref(&self) -> &[f64] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl fmt::Debug for CustomBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq for CustomBounds {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl From<Arc<[f64]>> for CustomBounds {
    fn from(bounds: Arc<[f64]>) -> Self {
        CustomBounds((!bounds.is_empty()).then_some(bounds))
    }
}

impl From<Vec<f64>> for CustomBounds {
    fn from(bounds: Vec<f64>) -> Self {
        CustomBounds((!bounds.is_empty()).then(|| bounds.into()))
    }
}

impl From<&[f64]> for CustomBounds {
    fn from(bounds: &[f64]) -> Self {
        CustomBounds((!bounds.is_empty()).then(|| bounds.into()))
    }
}

impl FromIterator<f64> for CustomBounds {
    fn from_iter<I: IntoIterator<Item = f64>>(bounds: I) -> Self {
        bounds.into_iter().collect::<Vec<f64>>().into()
    }
}

impl<const N: usize> From<[f64; N]> for CustomBounds {
    fn from(bounds: [f64; N]) -> Self {
        CustomBounds::from(&bounds[..])
    }
}

/// An integer native histogram, as Prometheus's `histogram.Histogram`.
///
/// Bucket counts are deltas: `positive_buckets[0]` is the count of the first positive bucket,
/// each later element the difference to the bucket before it. A sum with Prometheus's stale
/// marker bits ([`crate::chunk::STALE_NAN_BITS`]) marks the series stale; such a sample carries
/// nothing else.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Counter reset information for this sample.
    pub counter_reset_hint: CounterResetHint,
    /// -4..=8 for exponential buckets, -53 for custom bounds.
    pub schema: i32,
    /// Observations with an absolute value at most this fall into the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// Total number of observations (NaN observations count here but in no bucket).
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
    /// Spans of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// Spans of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts as deltas.
    pub positive_buckets: Vec<i64>,
    /// Negative bucket counts as deltas.
    pub negative_buckets: Vec<i64>,
    /// Upper bounds of the custom buckets (schema -53 only), strictly increasing, without the
    /// implicit +Inf; shared between samples that use the same bounds.
    pub custom_values: CustomBounds,
}

/// A float native histogram, as Prometheus's `histogram.FloatHistogram`: the same layout as
/// [`Histogram`], with absolute float counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    /// Counter reset information for this sample.
    pub counter_reset_hint: CounterResetHint,
    /// -4..=8 for exponential buckets, -53 for custom bounds.
    pub schema: i32,
    /// Observations with an absolute value at most this fall into the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Total number of observations.
    pub count: f64,
    /// Sum of the observations.
    pub sum: f64,
    /// Spans of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// Spans of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// Absolute positive bucket counts.
    pub positive_buckets: Vec<f64>,
    /// Absolute negative bucket counts.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema -53 only).
    pub custom_values: CustomBounds,
}

/// Whether `sum` is Prometheus's stale marker.
#[inline]
fn is_stale(sum: f64) -> bool {
    crate::chunk::is_stale_nan(sum)
}

impl Histogram {
    /// The stale marker: a histogram whose sum is Prometheus's stale NaN and nothing else.
    pub fn stale_marker() -> Self {
        Histogram {
            sum: f64::from_bits(crate::chunk::STALE_NAN_BITS),
            ..Histogram::default()
        }
    }

    /// Whether this sample is a stale marker.
    #[inline]
    pub fn is_stale(&self) -> bool {
        is_stale(self.sum)
    }

    /// Whether the schema is the custom-buckets schema.
    #[inline]
    pub fn uses_custom_buckets(&self) -> bool {
        is_custom_buckets_schema(self.schema)
    }

    /// Checks the histogram as Prometheus checks one before storing it: a known schema; spans
    /// that describe exactly the buckets given, with no negative offset after the first span;
    /// no bucket with a negative count; `count` equal to the bucket and zero counts (at least
    /// that when the sum is NaN, as NaN observations land in no bucket); and for custom
    /// buckets, strictly increasing finite bounds covering every bucket, no zero bucket and no
    /// negative buckets.
    pub fn validate(&self) -> Result<(), HistogramError> {
        validate::validate_int(self)
    }

    /// The same histogram with absolute float counts (Prometheus's `ToFloat`).
    pub fn to_float(&self) -> FloatHistogram {
        FloatHistogram {
            positive_buckets: deltas_to_float_counts(&self.positive_buckets),
            negative_buckets: deltas_to_float_counts(&self.negative_buckets),
            ..self.to_float_header()
        }
    }

    /// The histogram as a chunk iterator hands it to PromQL (Prometheus's
    /// `AtFloatHistogram`): each bucket the float nearest its absolute integer count. Unlike
    /// [`Histogram::to_float`], which adds the deltas up as floats, this is exact wherever
    /// the float can be, also past 2^53.
    pub fn to_float_from_counts(&self) -> FloatHistogram {
        FloatHistogram {
            positive_buckets: deltas_to_exact_float_counts(&self.positive_buckets),
            negative_buckets: deltas_to_exact_float_counts(&self.negative_buckets),
            ..self.to_float_header()
        }
    }

    /// The fields of [`Histogram::to_float`] but the buckets (left empty).
    fn to_float_header(&self) -> FloatHistogram {
        FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: Vec::new(),
            negative_buckets: Vec::new(),
            custom_values: self.custom_values.clone(),
        }
    }

    /// Absolute counts of the positive buckets (deltas summed, wrapping as Go's int64 does).
    pub fn positive_counts(&self) -> Vec<i64> {
        deltas_to_counts(&self.positive_buckets)
    }

    /// Absolute counts of the negative buckets.
    pub fn negative_counts(&self) -> Vec<i64> {
        deltas_to_counts(&self.negative_buckets)
    }

    /// Whether `other` holds the same data: floats compared by bit pattern (so a NaN sum
    /// equals itself), spans and buckets exactly, the counter reset hint included.
    pub fn identical(&self, other: &Histogram) -> bool {
        self.counter_reset_hint == other.counter_reset_hint
            && self.schema == other.schema
            && self.zero_threshold.to_bits() == other.zero_threshold.to_bits()
            && self.zero_count == other.zero_count
            && self.count == other.count
            && self.sum.to_bits() == other.sum.to_bits()
            && self.positive_spans == other.positive_spans
            && self.negative_spans == other.negative_spans
            && self.positive_buckets == other.positive_buckets
            && self.negative_buckets == other.negative_buckets
            && bits_eq(&self.custom_values, &other.custom_values)
    }
}

impl FloatHistogram {
    /// The stale marker: a float histogram whose sum is Prometheus's stale NaN.
    pub fn stale_marker() -> Self {
        FloatHistogram {
            sum: f64::from_bits(crate::chunk::STALE_NAN_BITS),
            ..FloatHistogram::default()
        }
    }

    /// Whether this sample is a stale marker.
    #[inline]
    pub fn is_stale(&self) -> bool {
        is_stale(self.sum)
    }

    /// Whether the schema is the custom-buckets schema.
    #[inline]
    pub fn uses_custom_buckets(&self) -> bool {
        is_custom_buckets_schema(self.schema)
    }

    /// Checks the histogram as Prometheus checks a float histogram before storing it: a
    /// known schema, spans that describe exactly the buckets given (no negative offset after
    /// the first), no negative bucket count, and the custom-buckets rules of
    /// [`Histogram::validate`]. The total count is not compared with the buckets, as float
    /// arithmetic makes that comparison unreliable.
    pub fn validate(&self) -> Result<(), HistogramError> {
        validate::validate_float(self)
    }

    /// The same histogram with integer counts, if every count is a whole number that fits:
    /// counts and zero count in `u64`, buckets non-negative with deltas in `i64`. Otherwise
    /// [`HistogramError::NotIntegral`] names the first count that is not.
    pub fn to_int(&self) -> Result<Histogram, HistogramError> {
        Ok(Histogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: float_to_u64("zero count", self.zero_count)?,
            count: float_to_u64("count", self.count)?,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: counts_to_deltas("positive bucket", &self.positive_buckets)?,
            negative_buckets: counts_to_deltas("negative bucket", &self.negative_buckets)?,
            custom_values: self.custom_values.clone(),
        })
    }

    /// Whether `other` holds the same data, floats compared by bit pattern.
    pub fn identical(&self, other: &FloatHistogram) -> bool {
        self.counter_reset_hint == other.counter_reset_hint
            && self.schema == other.schema
            && self.zero_threshold.to_bits() == other.zero_threshold.to_bits()
            && self.zero_count.to_bits() == other.zero_count.to_bits()
            && self.count.to_bits() == other.count.to_bits()
            && self.sum.to_bits() == other.sum.to_bits()
            && self.positive_spans == other.positive_spans
            && self.negative_spans == other.negative_spans
            && bits_eq(&self.positive_buckets, &other.positive_buckets)
            && bits_eq(&self.negative_buckets, &other.negative_buckets)
            && bits_eq(&self.custom_values, &other.custom_values)
    }
}

/// Whether two float slices hold the same bit patterns.
fn bits_eq(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Absolute counts from deltas, summed in float as Prometheus sums them (each delta converted
/// first), so large counts round the same way.
pub(crate) fn deltas_to_float_counts(deltas: &[i64]) -> Vec<f64> {
    let mut current = 0.0;
    deltas
        .iter()
        .map(|&d| {
            current += d as f64;
            current
        })
        .collect()
}

/// Absolute counts from deltas, each the float nearest its integer count (the chunk
/// iterator's reading; [`deltas_to_float_counts`] adds the deltas as floats instead).
pub(crate) fn deltas_to_exact_float_counts(deltas: &[i64]) -> Vec<f64> {
    let mut current = 0i64;
    deltas
        .iter()
        .map(|&d| {
            current = current.wrapping_add(d);
            current as f64
        })
        .collect()
}

/// Absolute counts from deltas, wrapping on overflow.
pub(crate) fn deltas_to_counts(deltas: &[i64]) -> Vec<i64> {
    let mut current = 0i64;
    deltas
        .iter()
        .map(|&d| {
            current = current.wrapping_add(d);
            current
        })
        .collect()
}

/// `v` as a `u64` if it is a whole number in range.
fn float_to_u64(what: &'static str, v: f64) -> Result<u64, HistogramError> {
    // 2^64 is the first float past u64::MAX.
    if (0.0..18_446_744_073_709_551_616.0).contains(&v) && v.fract() == 0.0 {
        Ok(v as u64)
    } else {
        Err(HistogramError::NotIntegral {
            what,
            index: None,
            value: FloatValue(v),
        })
    }
}

/// Deltas of absolute float counts, each a whole non-negative number within `i64`.
fn counts_to_deltas(what: &'static str, counts: &[f64]) -> Result<Vec<i64>, HistogramError> {
    let mut prev = 0i64;
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            // 2^63 is the first float past i64::MAX.
            if !((0.0..9_223_372_036_854_775_808.0).contains(&c) && c.fract() == 0.0) {
                return Err(HistogramError::NotIntegral {
                    what,
                    index: Some(i),
                    value: FloatValue(c),
                });
            }
            let abs = c as i64;
            let d = abs - prev;
            prev = abs;
            Ok(d)
        })
        .collect()
}

#[cfg(test)]
mod tests;
