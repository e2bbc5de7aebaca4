//! Query results as the API returns them.

use crate::histogram::FloatHistogram;
use crate::labels::Labels;
use crate::query::Series;

/// A finished query's answer, with the annotations Prometheus reports beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The result.
    pub value: Value,
    /// Warnings (`PromQL warning: …`), e.g. a `rate` over a metric that is not a counter.
    pub warnings: Vec<String>,
    /// Informational notes (`PromQL info: …`).
    pub info: Vec<String>,
    /// The most samples the evaluation held at once (stored samples being worked on and step
    /// values), the figure `--query.max-samples` limits.
    pub peak_samples: usize,
}

/// One of PromQL's four result types.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number at the evaluation time (ms).
    Scalar {
        /// Evaluation time, ms since the epoch.
        t_ms: i64,
        /// The number.
        v: f64,
    },
    /// A string literal at the evaluation time (ms).
    String {
        /// Evaluation time, ms since the epoch.
        t_ms: i64,
        /// The string.
        v: String,
    },
    /// An instant vector: one sample per series.
    Vector(Vec<InstantSample>),
    /// A range vector or range query result: many samples per series.
    Matrix(Vec<Series>),
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    /// The series' labels.
    pub labels: Labels,
    /// Sample time, ms since the epoch (the evaluation time).
    pub t_ms: i64,
    /// The value (unused when `h` holds a histogram).
    pub v: f64,
    /// A native histogram sample in place of the float.
    pub h: Option<Box<FloatHistogram>>,
}
