//! The float histogram operations the evaluator uses, over the shared histogram arithmetic
//! ([`gauntlet_engine::histogram::ops`]): results are compacted as Prometheus compacts them, and errors
//! are sorted into the two kinds PromQL warns about. Where Prometheus 3.14 combines histograms
//! differently from 3.5 (custom bounds reconciled, negative factors making gauges), the
//! operations take the [`Compat`] to follow; the trim operators and compensated sums are 3.14's
//! own. The statistics of one histogram (`histogram_quantile`, `histogram_fraction`,
//! `histogram_stdvar`, `histogram_stddev`, `histogram_avg`) are in `stats`.

use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram, HistogramOpError};

use crate::Compat;

mod custom_bounds;
mod kahan;
mod stats;
mod trim;

pub(crate) use kahan::{KahanMean, KahanSum};
pub(crate) use stats::{avg, fraction, quantile, stddev, stdvar};

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

/// `a + b`, compacted; true when custom bounds were reconciled ([`reconciled_info`] is owed).
pub(crate) fn add(
    a: &FloatHistogram,
    b: &FloatHistogram,
    compat: Compat,
) -> Result<(FloatHistogram, bool), MathError> {
    let mut r = a.clone();
    let reconciled = add_to(&mut r, b, compat)?;
    Ok((r, reconciled))
}

/// `a += b`, compacted: [`add`] without the copy, for running sums. Custom-bucket histograms
/// with different bounds are reconciled under Prometheus 3.14 (true is returned then) and
/// refused under 3.5.
pub(crate) fn add_to(
    a: &mut FloatHistogram,
    b: &FloatHistogram,
    compat: Compat,
) -> Result<bool, MathError> {
    if let Some((ra, rb)) = reconcilable(a, b, compat) {
        let mut ra = ra;
        ra.add(&rb)?;
        ra.compact(0)?;
        *a = ra;
        return Ok(true);
    }
    a.add(b)?;
    a.compact(0)?;
    Ok(false)
}

/// `a` and `b` on the custom bounds they share, where Prometheus 3.14 reconciles them.
fn reconcilable(
    a: &FloatHistogram,
    b: &FloatHistogram,
    compat: Compat,
) -> Option<(FloatHistogram, FloatHistogram)> {
    if !compat.at_least_3_14() {
        return None;
    }
    custom_bounds::reconcile(a, b)
}

/// One step of an incremental mean: `mean += x / count - mean / count`, the operations in
/// Prometheus's order (`count` counts `x`); true when custom bounds were reconciled.
pub(crate) fn mean_step(
    mean: &mut FloatHistogram,
    x: &FloatHistogram,
    count: f64,
    compat: Compat,
) -> Result<bool, MathError> {
    let mut step = x.clone();
    step.div(count);
    let mut right = mean.clone();
    right.div(count);
    let mut reconciled = false;
    if let Some((s, r)) = reconcilable(&step, &right, compat) {
        (step, right) = (s, r);
        reconciled = true;
    }
    step.sub(&right)?;
    if let Some((m, s)) = reconcilable(mean, &step, compat) {
        (*mean, step) = (m, s);
        reconciled = true;
    }
    mean.add(&step)?;
    Ok(reconciled)
}

/// `a - b`, compacted; true when custom bounds were reconciled (see [`add_to`]).
pub(crate) fn sub(
    a: &FloatHistogram,
    b: &FloatHistogram,
    compat: Compat,
) -> Result<(FloatHistogram, bool), MathError> {
    let mut r = a.clone();
    let reconciled = sub_in_place(&mut r, b, compat)?;
    Ok((r, reconciled))
}

/// [`sub`] into `a` itself, without a copy of it; true when custom bounds were reconciled. On
/// an error `a` is left as far as it got.
pub(crate) fn sub_in_place(
    a: &mut FloatHistogram,
    b: &FloatHistogram,
    compat: Compat,
) -> Result<bool, MathError> {
    let reconciled = match reconcilable(a, b, compat) {
        Some((ra, rb)) => {
            *a = ra;
            a.sub(&rb)?;
            true
        }
        None => {
            a.sub(b)?;
            false
        }
    };
    a.compact(0)?;
    Ok(reconciled)
}

/// Every count and the sum multiplied by `f`; under Prometheus 3.14 a negative factor makes
/// the result a gauge.
pub(crate) fn scale(h: &mut FloatHistogram, f: f64, compat: Compat) {
    h.mul(f);
    if f < 0.0 && compat.at_least_3_14() {
        h.counter_reset_hint = CounterResetHint::Gauge;
    }
}

/// Every count and the sum divided by `f`; under Prometheus 3.14 a negative divisor makes
/// the result a gauge.
pub(crate) fn divide(h: &mut FloatHistogram, f: f64, compat: Compat) {
    h.div(f);
    if f < 0.0 && compat.at_least_3_14() {
        h.counter_reset_hint = CounterResetHint::Gauge;
    }
}

/// Whether the counters of `cur` reset since `prev`, as Prometheus decides it. Histograms
/// that cannot be compared count as a reset; custom-bucket histograms with different bounds
/// are compared on the bounds they share under Prometheus 3.14.
pub(crate) fn detect_reset(cur: &FloatHistogram, prev: &FloatHistogram, compat: Compat) -> bool {
    if let Some((c, p)) = reconcilable(cur, prev, compat) {
        return c.detect_reset(&p).unwrap_or(true);
    }
    cur.detect_reset(prev).unwrap_or(true)
}

/// The info annotation Prometheus 3.14 gives when custom bounds were reconciled during
/// `what` (`addition`, `subtraction`, `aggregation`), with the position `at`.
pub(crate) fn reconciled_info(what: &str, at: &str) -> String {
    format!("PromQL info: mismatched custom buckets were reconciled during {what}{at}")
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

#[cfg(test)]
mod reconcile_tests;
