//! The float histogram operations the evaluator uses, over the shared histogram arithmetic
//! ([`gauntlet_engine::histogram::ops`]): results are compacted as Prometheus compacts them, and errors
//! are sorted into the two kinds PromQL warns about.

use gauntlet_engine::histogram::{FloatHistogram, HistogramOpError};

mod trim;

pub(crate) use trim::{TrimKeep, trim};

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MathError {
    /// Custom-bucket histograms with different bounds (or histograms that cannot be combined
    /// for another reason).
    IncompatibleSchemas,
    /// One histogram with custom buckets, one with exponential ones.
    MixedSchemas,
}

impl From<HistogramOpError> for MathError {
    fn from(e: HistogramOpError) -> Self {
        match e {
            HistogramOpError::MixedExponentialAndCustom => MathError::MixedSchemas,
            _ => MathError::IncompatibleSchemas,
        }
    }
}

/// `a + b`, compacted.
pub(crate) fn add(a: &FloatHistogram, b: &FloatHistogram) -> Result<FloatHistogram, MathError> {
    let mut r = a.clone();
    add_to(&mut r, b)?;
    Ok(r)
}

/// `a += b`, compacted: [`add`] without the copy, for running sums.
pub(crate) fn add_to(a: &mut FloatHistogram, b: &FloatHistogram) -> Result<(), MathError> {
    a.add(b)?;
    a.compact(0)?;
    Ok(())
}

/// One step of an incremental mean: `mean += x / count - mean / count`, the operations in
/// Prometheus's order (`count` counts `x`).
pub(crate) fn mean_step(
    mean: &mut FloatHistogram,
    x: &FloatHistogram,
    count: f64,
) -> Result<(), MathError> {
    let mut step = x.clone();
    step.div(count);
    let mut right = mean.clone();
    right.div(count);
    step.sub(&right)?;
    mean.add(&step)?;
    Ok(())
}

/// `a - b`, compacted.
pub(crate) fn sub(a: &FloatHistogram, b: &FloatHistogram) -> Result<FloatHistogram, MathError> {
    let mut r = a.clone();
    r.sub(b)?;
    r.compact(0)?;
    Ok(r)
}

/// Every count and the sum multiplied by `f`.
pub(crate) fn scale(h: &mut FloatHistogram, f: f64) {
    h.mul(f);
}

/// Every count and the sum divided by `f`.
pub(crate) fn divide(h: &mut FloatHistogram, f: f64) {
    h.div(f);
}

/// Whether the counters of `cur` reset since `prev`, as Prometheus decides it. Histograms
/// that cannot be compared count as a reset.
pub(crate) fn detect_reset(cur: &FloatHistogram, prev: &FloatHistogram) -> bool {
    cur.detect_reset(prev).unwrap_or(true)
}

/// Whether two histograms hold the same data, as PromQL's `==` compares them.
pub(crate) fn equals(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    a.equals(b)
}

/// `h` in the coarser `schema`.
pub(crate) fn reduce(h: &FloatHistogram, schema: i32) -> FloatHistogram {
    h.copy_to_schema(schema).unwrap_or_else(|_| h.clone())
}

/// The warning PromQL gives for histograms of metric `name` that could not be combined, with
/// the expression's position `at` (` (line:column)`, or empty).
pub(crate) fn incompatible_warning(e: MathError, name: &str, at: &str) -> String {
    match e {
        MathError::MixedSchemas => format!(
            "PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}{at}"
        ),
        MathError::IncompatibleSchemas => format!(
            "PromQL warning: vector contains histograms with incompatible custom buckets for metric name {name:?}{at}"
        ),
    }
}

#[cfg(test)]
mod trim_tests;
