//! Query results as the API returns them.

use std::time::Duration;

use gauntlet_engine::histogram::FloatHistogram;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::Series;

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
    /// What the evaluation loaded and how long it took.
    pub stats: QueryStats,
}

/// A query's statistics, as Prometheus reports them under `stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryStats {
    /// Samples the query's selectors loaded, summed over its steps (Prometheus's
    /// `totalQueryableSamples`): an instant selector counts each series once at every step it
    /// has a sample for, a range vector the samples in each step's window, a subquery under a
    /// range function the results in each window; a native histogram sample weighs as many
    /// samples as it does against the sample limit.
    pub total_samples: u64,
    /// `total_samples` step by step, as (step time in ms, samples), when
    /// [`EngineOptions::per_step_stats`](super::EngineOptions::per_step_stats) asked for it;
    /// empty otherwise.
    pub samples_per_step: Vec<(i64, u64)>,
    /// Reading the query: parsing it and finding its positions.
    pub preparation: Duration,
    /// Evaluating the parsed query.
    pub inner_eval: Duration,
    /// Putting the result in its answer form, a matrix sorted by labels.
    pub result_sort: Duration,
    /// The whole query, from its text to its answer.
    pub eval_total: Duration,
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
