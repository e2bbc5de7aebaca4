//! The evaluator: walks the parsed expression once, evaluating each node for every step of the
//! query at once (columns of step values), over a [`Queryable`].

mod aggregate;
mod annotation_at;
mod binary;
#[cfg(test)]
mod bucket_free_tests;
mod hints;
#[cfg(test)]
mod hist_stream_tests;
mod histogram_stats;
mod modifiers;
mod reach;
#[cfg(test)]
mod reach_tests;
pub(crate) mod selector;
mod smoothed;
#[cfg(test)]
mod stats_tests;
mod stream;
mod subquery;

pub(crate) use aggregate::valid_label_name;
pub(crate) use reach::RangeReach;
pub(crate) use selector::{convert_matcher, selector_matchers};

use std::collections::HashMap;
use std::time::Instant;

use crate::parser::{AggregateExpr, At, BinaryExpr, BinaryOp, Expr, ValueType};

pub(crate) use annotation_at::AnnotationAt;

use super::error::PromqlError;
use super::functions::unwrap_parens;
use super::value::{InstantSample, QueryResult, QueryStats, Value};
use super::{EngineOptions, functions};
use gauntlet_engine::budget::Reservation;
use gauntlet_engine::chunk::{HistogramBatch, SampleBatch};
use gauntlet_engine::histogram::FloatHistogram;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{Queryable, Series};

/// The label list of a `by`/`without` grouping or an `on`/`ignoring` matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabelList {
    pub labels: Vec<String>,
}

/// Which labels an aggregation groups by, or a binary operation matches on: only the listed
/// ones (`by`, `on`), or all but them (`without`, `ignoring`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LabelModifier {
    Include(LabelList),
    Exclude(LabelList),
}

impl LabelModifier {
    /// An aggregation's grouping; `None` groups everything together (no `by`, or `by ()`).
    pub fn grouping(a: &AggregateExpr) -> Option<LabelModifier> {
        let list = LabelList {
            labels: a.grouping.clone(),
        };
        if a.without {
            Some(LabelModifier::Exclude(list))
        } else if a.grouping.is_empty() {
            None
        } else {
            Some(LabelModifier::Include(list))
        }
    }

    /// A binary operation's matching; `None` matches on every label but the metric name (no
    /// modifier, or `ignoring ()`).
    pub fn matching(b: &BinaryExpr) -> Option<LabelModifier> {
        let m = b.matching.as_ref()?;
        let list = LabelList {
            labels: m.labels.clone(),
        };
        if m.on {
            Some(LabelModifier::Include(list))
        } else if m.labels.is_empty() {
            None
        } else {
            Some(LabelModifier::Exclude(list))
        }
    }
}

/// The bit pattern marking "no sample at this step" in a step column. It is a NaN payload no
/// computation produces and no stored sample carries (stale markers end in `2`), so one f64
/// column holds both presence and value.
const ABSENT_BITS: u64 = 0x7ff8_0000_dead_beef;

/// The "no sample" marker for step columns.
#[inline]
pub(crate) fn absent() -> f64 {
    f64::from_bits(ABSENT_BITS)
}

/// Whether a step column entry is the "no sample" marker.
#[inline]
pub(crate) fn is_absent(v: f64) -> bool {
    v.to_bits() == ABSENT_BITS
}

/// The evaluation timestamps of one (sub)query: `start + i * step` for `i < n`, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Steps {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Steps {
    /// Timestamp of step `i` (ms).
    #[inline]
    pub fn t(&self, i: usize) -> i64 {
        self.start.wrapping_add((i as i64).wrapping_mul(self.step))
    }
}

/// One series of an instant vector, with one value (or [`absent`]) per step.
#[derive(Debug, Clone)]
pub(crate) struct Col {
    pub labels: Labels,
    /// Prometheus 3's delayed name removal: the name is dropped when the query ends, so
    /// `label_replace` and `by (__name__)` still see it.
    pub drop_name: bool,
    pub v: Vec<f64>,
    /// Histogram samples, only for series that have any: at a step holding one, `v` is
    /// [`absent`].
    pub h: Option<HCol>,
}

/// The histogram samples of a step column, one per step.
pub(crate) type HCol = Vec<Option<FloatHistogram>>;

impl Col {
    /// The histogram at step `i`, if any.
    #[inline]
    pub fn hist(&self, i: usize) -> Option<&FloatHistogram> {
        self.h.as_ref().and_then(|h| h[i].as_ref())
    }

    /// Whether step `i` holds a sample, float or histogram.
    #[inline]
    pub fn present(&self, i: usize) -> bool {
        !is_absent(self.v[i]) || self.hist(i).is_some()
    }

    /// Removes the sample at step `i`, float or histogram.
    #[inline]
    pub fn clear(&mut self, i: usize) {
        self.v[i] = absent();
        if let Some(h) = self.h.as_mut() {
            h[i] = None;
        }
    }

    /// Samples the column holds as the sample limit counts them: one per float, a histogram
    /// by its size ([`histogram_weight`]).
    pub fn samples(&self) -> usize {
        self.v.iter().filter(|x| !is_absent(**x)).count()
            + self
                .h
                .as_ref()
                .map_or(0, |h| h.iter().flatten().map(histogram_weight).sum())
    }

    /// Drops every histogram sample (functions and operators that ignore them).
    pub fn drop_histograms(&mut self) -> bool {
        self.h.take().is_some_and(|h| h.iter().any(|x| x.is_some()))
    }
}

/// One series of a range vector: its samples, sorted by time, stale markers removed.
#[derive(Debug, Clone)]
pub(crate) struct RSeries {
    pub labels: Labels,
    pub drop_name: bool,
    pub ts: Vec<i64>,
    pub v: Vec<f64>,
    /// Histogram samples, apart from the floats, sorted by time (empty for float series).
    pub hts: Vec<i64>,
    pub h: Vec<FloatHistogram>,
}

/// A range vector for every step: series with their samples, the window length, and each
/// step's window end (ms). Step `i` sees the samples in `(ends[i] - range, ends[i]]`, or with
/// an `anchored` or `smoothed` selector those of its span (see [`RangeReach`]).
#[derive(Debug, Clone)]
pub(crate) struct RangeVec {
    pub series: Vec<RSeries>,
    pub range: i64,
    pub ends: Vec<i64>,
    pub reach: RangeReach,
}

impl RangeVec {
    /// Calls `f(step, lo, hi)` with the sample index range of each step's window of `s`,
    /// sliding two indices along the sorted samples (ends never decrease).
    pub fn windows(&self, s: &RSeries, f: impl FnMut(usize, usize, usize)) {
        functions::for_each_window(&s.ts, &self.ends, self.range, f);
    }
}

/// A value during evaluation: every variant covers all steps.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<Col>),
    Range(RangeVec),
}

impl Val {
    /// Samples the value holds: present step values, range vector samples; a scalar counts
    /// one per step, as Prometheus counts it.
    pub fn samples(&self) -> usize {
        match self {
            Val::Scalar(v) => v.len(),
            Val::Str(_) => 0,
            Val::Vector(cols) => cols.iter().map(Col::samples).sum(),
            Val::Range(r) => r
                .series
                .iter()
                .map(|s| s.ts.len() + s.h.iter().map(histogram_weight).sum::<usize>())
                .sum(),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Range(_) => "range vector",
        }
    }
}

/// Samples the selectors of a query load, summed over its steps: what Prometheus reports as
/// `totalQueryableSamples`. An instant selector counts each series once at every step it has
/// a sample for, a range vector the samples in each step's window; a histogram sample weighs
/// [`histogram_weight`] samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Loaded {
    pub total: u64,
    /// The count of each step of the query, when asked for; empty otherwise (and while a
    /// subquery's inner expression is evaluated at steps of its own).
    pub per_step: Vec<u64>,
}

impl Loaded {
    /// A count that keeps the `n` steps apart when `per_step`.
    pub fn new(n: usize, per_step: bool) -> Loaded {
        Loaded {
            total: 0,
            per_step: if per_step { vec![0; n] } else { Vec::new() },
        }
    }

    /// An empty count of the same kind as this one (per step or not).
    pub fn fresh(&self) -> Loaded {
        Loaded {
            total: 0,
            per_step: vec![0; self.per_step.len()],
        }
    }

    /// Whether counts are kept step by step.
    #[inline]
    pub fn wants_steps(&self) -> bool {
        !self.per_step.is_empty()
    }

    /// Counts `n` samples at step `i`.
    #[inline]
    pub fn add(&mut self, i: usize, n: u64) {
        self.total += n;
        if let Some(s) = self.per_step.get_mut(i) {
            *s += n;
        }
    }

    /// Adds another count of the same steps.
    pub fn merge(&mut self, other: &Loaded) {
        self.total += other.total;
        for (a, b) in self.per_step.iter_mut().zip(&other.per_step) {
            *a += b;
        }
    }

    /// Counts the samples an instant selector's column holds: one per float, a histogram by
    /// its weight.
    pub fn count_col(&mut self, v: &[f64], h: Option<&HCol>) {
        match h {
            None if !self.wants_steps() => {
                self.total += v.iter().filter(|x| !is_absent(**x)).count() as u64;
            }
            _ => {
                for (i, x) in v.iter().enumerate() {
                    match h.and_then(|h| h[i].as_ref()) {
                        Some(h) => self.add(i, histogram_weight(h) as u64),
                        None if !is_absent(*x) => self.add(i, 1),
                        None => {}
                    }
                }
            }
        }
    }

    /// Counts the samples in each step's window `(ends[i] - range, ends[i]]` of one series:
    /// floats at `fts`, histograms at `hts` (stale markers already removed).
    pub fn count_windows(
        &mut self,
        fts: &[i64],
        (hts, h): (&[i64], &[FloatHistogram]),
        ends: &[i64],
        range: i64,
    ) {
        if !fts.is_empty() {
            if self.wants_steps() {
                functions::for_each_window(fts, ends, range, |i, lo, hi| {
                    self.add(i, (hi - lo) as u64)
                });
            } else {
                let mut n = 0;
                functions::for_each_window(fts, ends, range, |_, lo, hi| n += hi - lo);
                self.total += n as u64;
            }
        }
        if !hts.is_empty() {
            // The window's weight is kept as it slides: what enters is added, what leaves
            // taken off, so each histogram is weighed about twice, not once a step.
            let (mut at_lo, mut at_hi, mut sum) = (0usize, 0usize, 0u64);
            let weight = |j: usize| histogram_weight(&h[j]) as u64;
            functions::for_each_window(hts, ends, range, |i, lo, hi| {
                if lo < at_lo || hi < at_hi {
                    (at_lo, at_hi, sum) = (lo, lo, 0);
                }
                sum += (at_hi..hi).map(weight).sum::<u64>();
                sum -= (at_lo..lo.max(at_lo)).map(weight).sum::<u64>();
                (at_lo, at_hi) = (lo, hi);
                self.add(i, sum);
            });
        }
    }

    /// Counts the samples in every step's window of a range vector.
    pub fn count_range(&mut self, rv: &RangeVec) {
        for s in &rv.series {
            self.count_spans(rv.reach, &s.ts, (&s.hts, &s.h), &rv.ends, rv.range);
        }
    }
}

/// How many samples a histogram counts as against the sample limit, as Prometheus 3 counts a
/// histogram point: its size in memory (a 168-byte header, 8 bytes per span, bucket and
/// custom bound, and the 8-byte timestamp) in units of a float sample's 16 bytes, rounded
/// down.
pub(crate) fn histogram_weight(h: &FloatHistogram) -> usize {
    let parts = h.positive_spans.len()
        + h.negative_spans.len()
        + h.positive_buckets.len()
        + h.negative_buckets.len()
        + h.custom_values.len();
    (168 + 8 * parts + 8) / 16
}

/// Bytes a held sample is counted as against the memory budget: a float sample's timestamp and
/// value, what [`histogram_weight`] counts a histogram in.
pub(crate) const SAMPLE_BYTES: u64 = 16;

/// Per-query state: limits, the query's own start and end (for `@ start()`/`end()`), and the
/// annotations collected.
pub(crate) struct Evaluator<'a> {
    pub opts: &'a EngineOptions,
    /// This query's tag in the worker pool: its parallel tasks are scheduled under it.
    pub work: std::sync::Arc<gauntlet_engine::query::PoolQuery>,
    pub storage: &'a dyn Queryable,
    pub q_start: i64,
    pub q_end: i64,
    /// The query's step (ms); 0 for an instant query.
    pub q_step: i64,
    pub deadline: Instant,
    /// Samples (stored samples and step values) held at this point of the evaluation, counted
    /// as Prometheus counts them for `--query.max-samples`.
    pub held: usize,
    /// The most samples held at once so far.
    pub peak: usize,
    /// Bytes of working state beyond the samples held (an aggregation's groups), counted in
    /// the memory budget only: `--query.max-samples` counts samples as Prometheus does.
    pub state_bytes: u64,
    /// What `held` ([`SAMPLE_BYTES`] a sample) and `state_bytes` take of the process's memory
    /// budget.
    pub memory: Reservation,
    pub warnings: Vec<String>,
    pub info: Vec<String>,
    /// Where the query's arguments start, for the position annotations end with.
    pub positions: &'a AnnotationAt,
    /// The function each selector feeds, for its selection's hints.
    pub select_funcs: hints::SelectorFuncs,
    /// The selectors whose histograms Prometheus 3.14 reads for count and sum only.
    pub stats_selectors: histogram_stats::StatsSelectors,
    /// The selectors whose histograms are decoded without buckets.
    pub bucket_free: histogram_stats::BucketFreeSelectors,
    /// Whether selections are materialized whole rather than streamed: the plain evaluation
    /// the streamed one is held to in tests.
    pub materialize: bool,
    /// Samples loaded so far (the query's `totalQueryableSamples`).
    pub loaded: Loaded,
}

impl Evaluator<'_> {
    /// Fails once the query's wall-clock budget is spent or its client went away.
    pub fn check_deadline(&self, stage: &'static str) -> Result<(), PromqlError> {
        if Instant::now() > self.deadline {
            return Err(PromqlError::Timeout(stage));
        }
        if self.opts.cancel.is_canceled() {
            return Err(PromqlError::Canceled);
        }
        Ok(())
    }

    /// Accounts `n` more samples held, failing past the per-query limit as Prometheus does.
    pub fn acquire(&mut self, n: usize) -> Result<(), PromqlError> {
        self.held = self.held.saturating_add(n);
        self.peak = self.peak.max(self.held);
        if self.held > self.opts.max_samples {
            return Err(PromqlError::TooManySamples("query execution"));
        }
        self.cover_memory()
    }

    /// Accounts `n` samples no longer held.
    pub fn release(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n);
        // Giving bytes back cannot fail.
        let _ = self.cover_memory();
    }

    /// Accounts `bytes` of working state beyond the samples held, replacing the figure
    /// before: what an aggregation's groups take as they are made, before its output is.
    pub fn hold_state(&mut self, bytes: u64) -> Result<(), PromqlError> {
        self.state_bytes = bytes;
        self.cover_memory()
    }

    /// Reserves what the held samples and the working state take from the memory budget.
    fn cover_memory(&mut self) -> Result<(), PromqlError> {
        self.memory
            .cover(self.held as u64 * SAMPLE_BYTES + self.state_bytes)
            .map_err(|e| PromqlError::Storage(e.into()))
    }

    /// Records a warning once (`PromQL warning: …`).
    pub fn warn(&mut self, msg: String) {
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    /// Records an info annotation once (`PromQL info: …`).
    pub fn note_info(&mut self, msg: String) {
        if !self.info.contains(&msg) {
            self.info.push(msg);
        }
    }

    /// Warns once per query about each out-of-range quantile parameter; `at` is where the
    /// parameter starts ([`Evaluator::at`]).
    pub fn check_quantile_param(&mut self, phi: &[f64], at: &str) {
        if let Some(&q) = phi.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
            self.warn(format!(
                "PromQL warning: quantile value should be between 0 and 1, got {}{at}",
                gauntlet_engine::go_format::format_float(
                    q,
                    gauntlet_engine::go_format::FloatFormat::G
                ),
            ));
        }
    }

    /// The position Prometheus appends to an annotation about argument `e` (` (1:6)`), or
    /// nothing when it is not known.
    pub fn at(&self, e: &Expr) -> String {
        self.positions.suffix(e)
    }

    /// The time an `@` modifier pins evaluation to (ms).
    pub fn at_time(&self, at: &Option<At>) -> Option<i64> {
        at.as_ref().map(|a| match a {
            At::Start => self.q_start,
            At::End => self.q_end,
            At::Timestamp(t) => *t,
        })
    }

    /// Evaluates `e` at every step of `steps`. As in Prometheus, a node's inputs count as
    /// held while it runs, and once it returns only its result does.
    pub fn eval(&mut self, e: &Expr, steps: &Steps) -> Result<Val, PromqlError> {
        let before = self.held;
        let v = self.eval_node(e, steps)?;
        self.held = before;
        // A node's working state is gone once it returns; its result is counted below.
        self.state_bytes = 0;
        let v = match v {
            // Without delayed name removal, the name goes as soon as an operation drops it,
            // and series that become equal must not collide at any step.
            Val::Vector(cols)
                if !self.opts.delayed_name_removal && cols.iter().any(|c| c.drop_name) =>
            {
                Val::Vector(finish_names(cols)?)
            }
            v => v,
        };
        self.acquire(v.samples())?;
        Ok(v)
    }

    fn eval_node(&mut self, e: &Expr, steps: &Steps) -> Result<Val, PromqlError> {
        self.check_deadline("query evaluation")?;
        match e {
            Expr::Number(n) => Ok(Val::Scalar(vec![n.value; steps.n])),
            Expr::String(s) => Ok(Val::Str(s.value.clone())),
            Expr::Paren(p) => self.eval(&p.expr, steps),
            // A unary plus changes nothing.
            Expr::Unary(u) if u.op == BinaryOp::Add => self.eval(&u.expr, steps),
            Expr::Unary(u) => match self.eval(&u.expr, steps)? {
                Val::Scalar(mut v) => {
                    v.iter_mut().for_each(|x| *x = -*x);
                    Ok(Val::Scalar(v))
                }
                Val::Vector(mut cols) => {
                    let compat = self.opts.compat;
                    cols.iter_mut().for_each(|c| stream::negate(c, compat));
                    Ok(Val::Vector(cols))
                }
                other => Err(PromqlError::Execution(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {:?}",
                    other.type_name()
                ))),
            },
            Expr::Vector(vs) => Ok(Val::Vector(self.vector_selector(vs, steps, false)?)),
            // A range vector counts the samples of each step's window, as a range function
            // over it sees them (a subquery: its results, not what its inner expression
            // loaded).
            Expr::Matrix(ms) => {
                let rv = self.matrix_selector(ms, steps)?;
                self.loaded.count_range(&rv);
                Ok(Val::Range(rv))
            }
            Expr::Subquery(sq) => {
                let (rv, _) = self.subquery(sq, steps)?;
                self.loaded.count_range(&rv);
                Ok(Val::Range(rv))
            }
            Expr::Aggregate(a) => self.aggregate(a, steps),
            Expr::Binary(b) => {
                let at = self.at(e);
                self.binary(b, &at, steps)
            }
            Expr::Call(c) => functions::call(self, c, steps),
        }
    }
}

/// Runs a whole query: `step_ms == 0` with `instant` for an instant query at `start_ms`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    opts: &EngineOptions,
    storage: &dyn Queryable,
    expr: &Expr,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    instant: bool,
) -> Result<QueryResult, PromqlError> {
    let args = (
        opts, storage, expr, query, start_ms, end_ms, step_ms, instant,
    );
    run_mode(args, false)
}

type RunArgs<'a> = (
    &'a EngineOptions,
    &'a dyn Queryable,
    &'a Expr,
    &'a str,
    i64,
    i64,
    i64,
    bool,
);

/// [`run`] with streamed selections, or (`materialize`) with every selection materialized
/// whole.
fn run_mode(args: RunArgs<'_>, materialize: bool) -> Result<QueryResult, PromqlError> {
    let (opts, storage, expr, query, start_ms, end_ms, step_ms, instant) = args;
    let positions = &AnnotationAt::find(query, expr);
    let steps = if instant {
        Steps {
            start: start_ms,
            step: 1,
            n: 1,
        }
    } else {
        let n = (end_ms.saturating_sub(start_ms) / step_ms) as usize + 1;
        if n > 11_000 {
            return Err(PromqlError::Parse(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        Steps {
            start: start_ms,
            step: step_ms,
            n,
        }
    };
    if !instant {
        let vt = expr.value_type();
        if vt != ValueType::Scalar && vt != ValueType::Vector {
            // Prometheus rejects this while building the query, so the API reports it as a
            // bad `query` parameter, not an execution error.
            return Err(PromqlError::Parse(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                match vt {
                    ValueType::Matrix => "range vector",
                    ValueType::String => "string",
                    _ => "unknown",
                }
            )));
        }
    }
    modifiers::check(
        expr,
        positions,
        if instant { 0 } else { step_ms },
        end_ms.saturating_sub(start_ms),
    )?;
    let mut ev = Evaluator {
        opts,
        work: std::sync::Arc::new(opts.pool.query(opts.cancel.clone())),
        storage,
        q_start: start_ms,
        q_end: end_ms,
        q_step: if instant { 0 } else { step_ms },
        deadline: Instant::now() + opts.timeout,
        held: 0,
        peak: 0,
        state_bytes: 0,
        memory: opts.budget.empty("query"),
        warnings: Vec::new(),
        info: Vec::new(),
        positions,
        select_funcs: hints::SelectorFuncs::find(expr),
        stats_selectors: if opts.compat.at_least_3_14() {
            histogram_stats::StatsSelectors::find(expr)
        } else {
            histogram_stats::StatsSelectors::default()
        },
        bucket_free: histogram_stats::BucketFreeSelectors::find(expr),
        materialize,
        loaded: Loaded::new(steps.n, opts.per_step_stats),
    };
    let began = Instant::now();
    let val = match unwrap_parens(expr) {
        // A subquery as the whole query counts what its inner expression loaded.
        Expr::Subquery(sq) => {
            let (rv, inner) = ev.subquery(sq, &steps)?;
            ev.loaded.add(0, inner);
            let v = Val::Range(rv);
            ev.acquire(v.samples())?;
            v
        }
        _ => ev.eval(expr, &steps)?,
    };
    let inner_eval = began.elapsed();
    let began = Instant::now();
    let value = match val {
        Val::Scalar(v) => {
            if instant {
                Value::Scalar {
                    t_ms: start_ms,
                    v: v[0],
                }
            } else {
                Value::Matrix(vec![Series::floats(
                    Labels::empty(),
                    SampleBatch {
                        ts: (0..steps.n).map(|i| steps.t(i)).collect(),
                        val: v,
                    },
                )])
            }
        }
        Val::Str(s) => Value::String {
            t_ms: start_ms,
            v: s,
        },
        Val::Vector(cols) => {
            let cols = finish_names(cols)?;
            if instant {
                // Prometheus answers an instant query in evaluation order (selectors sorted
                // by labels, aggregation groups as they first appear, `or` left then right,
                // sort functions their own way), and so does Gauntlet.
                let out: Vec<InstantSample> = cols
                    .into_iter()
                    .filter(|c| c.present(0))
                    .map(|mut c| InstantSample {
                        t_ms: start_ms,
                        v: c.v[0],
                        h: c.h.as_mut().and_then(|h| h[0].take()).map(Box::new),
                        labels: c.labels,
                    })
                    .collect();
                Value::Vector(out)
            } else {
                let mut out: Vec<Series> = cols
                    .into_iter()
                    .filter_map(|c| {
                        let mut b = SampleBatch::default();
                        for (i, &x) in c.v.iter().enumerate() {
                            if !is_absent(x) {
                                b.ts.push(steps.t(i));
                                b.val.push(x);
                            }
                        }
                        let mut hb = HistogramBatch::default();
                        for (i, h) in c.h.into_iter().flatten().enumerate() {
                            if let Some(h) = h {
                                hb.ts.push(steps.t(i));
                                hb.h.push(h);
                            }
                        }
                        (!b.ts.is_empty() || !hb.ts.is_empty()).then_some(Series {
                            labels: c.labels,
                            samples: b,
                            histograms: hb,
                        })
                    })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(out)
            }
        }
        Val::Range(rv) if rv.reach.is_extended() => {
            // Prometheus counts the samples of the answer, edges included.
            let (mut out, loaded) = rv.extended_instant()?;
            ev.loaded = ev.loaded.fresh();
            ev.loaded.add(0, loaded);
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(out)
        }
        Val::Range(rv) => {
            let mut out = Vec::new();
            for s in &rv.series {
                let mut b = SampleBatch::default();
                rv.windows(s, |i, lo, hi| {
                    if i == 0 {
                        b.ts.extend_from_slice(&s.ts[lo..hi]);
                        b.val.extend_from_slice(&s.v[lo..hi]);
                    }
                });
                let mut hb = HistogramBatch::default();
                functions::for_each_window(&s.hts, &rv.ends, rv.range, |i, lo, hi| {
                    if i == 0 {
                        hb.ts.extend_from_slice(&s.hts[lo..hi]);
                        hb.h.extend_from_slice(&s.h[lo..hi]);
                    }
                });
                if !b.ts.is_empty() || !hb.ts.is_empty() {
                    let labels = if s.drop_name {
                        without_name(&s.labels)
                    } else {
                        s.labels.clone()
                    };
                    out.push(Series {
                        labels,
                        samples: b,
                        histograms: hb,
                    });
                }
            }
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(out)
        }
    };
    let samples_per_step = ev
        .loaded
        .per_step
        .iter()
        .enumerate()
        .map(|(i, &n)| (steps.t(i), n))
        .collect();
    Ok(QueryResult {
        value,
        warnings: ev.warnings,
        info: ev.info,
        peak_samples: ev.peak,
        stats: QueryStats {
            total_samples: ev.loaded.total,
            samples_per_step,
            inner_eval,
            result_sort: began.elapsed(),
            ..QueryStats::default()
        },
    })
}

/// Applies delayed name removal at the end of a query and rejects the duplicates it creates.
fn finish_names(mut cols: Vec<Col>) -> Result<Vec<Col>, PromqlError> {
    let mut any = false;
    for c in &mut cols {
        if c.drop_name {
            let mut ls = std::mem::take(&mut c.labels).into_vec();
            ls.retain(|l| !is_name_label(&l.name));
            c.labels = Labels::from_sorted(ls);
            c.drop_name = false;
            any = true;
        }
    }
    if any {
        return merge_same_labels(cols);
    }
    Ok(cols)
}

/// Merges series whose labels became equal (after a name drop or relabelling) when they
/// never have a value at the same step; fails when they do, as Prometheus does.
pub(crate) fn merge_same_labels(cols: Vec<Col>) -> Result<Vec<Col>, PromqlError> {
    // Usually no two label sets are equal: tell by hashes alone, without copying labels.
    let mut buf = Vec::new();
    let mut hashes: Vec<u64> = cols
        .iter()
        .map(|c| {
            buf.clear();
            for l in &c.labels {
                buf.extend_from_slice(l.name.as_bytes());
                buf.push(0xff);
                buf.extend_from_slice(l.value.as_bytes());
                buf.push(0xff);
            }
            xxhash_rust::xxh64::xxh64(&buf, 0)
        })
        .collect();
    hashes.sort_unstable();
    if hashes.windows(2).all(|w| w[0] != w[1]) {
        return Ok(cols);
    }
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(cols.len());
    let mut out: Vec<Col> = Vec::with_capacity(cols.len());
    for c in cols {
        match index.get(&c.labels) {
            Some(&j) => {
                let into = &mut out[j];
                for i in 0..c.v.len() {
                    if !c.present(i) {
                        continue;
                    }
                    if into.present(i) {
                        return Err(PromqlError::Execution(
                            "vector cannot contain metrics with the same labelset".into(),
                        ));
                    }
                    into.v[i] = c.v[i];
                    if let Some(h) = c.hist(i) {
                        let n = into.v.len();
                        into.h.get_or_insert_with(|| vec![None; n])[i] = Some(h.clone());
                    }
                }
                into.drop_name &= c.drop_name;
            }
            None => {
                index.insert(c.labels.clone(), out.len());
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// Whether a label goes with the metric name: the name itself, and the type and unit labels
/// that describe what the name measures.
pub(crate) fn is_name_label(name: &str) -> bool {
    matches!(name, "__name__" | "__type__" | "__unit__")
}

/// Whether `name` is one of the label names a query lists (`by`, `without`, `on`, `ignoring`).
pub(crate) fn listed(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

/// `labels` without the metric name (and its type and unit labels).
pub(crate) fn without_name(labels: &Labels) -> Labels {
    Labels::from_sorted(
        labels
            .iter()
            .filter(|l| !is_name_label(&l.name))
            .cloned()
            .collect(),
    )
}
