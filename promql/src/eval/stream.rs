//! Streamed evaluation: a selector's series come from storage a batch at a time; on worker
//! threads each series is decoded, turned into its step column (lookback for instant
//! selectors, a sliding window for range functions, then any element-wise functions and
//! scalar operations), and its samples dropped; the columns are handed on in stream order, to
//! an aggregation's fold or into a vector.

use crate::parser::{Expr, MatchOp, MatrixSelector, VectorSelector};

use super::aggregate::group_labels;
use super::binary::{is_comparison, vector_scalar_col, vector_scalar_hists};
use super::smoothed::smoothed_column;
use super::{
    Col, Evaluator, HCol, LabelModifier, Loaded, Steps, absent, histogram_weight, is_absent,
};
use crate::Compat;
use crate::error::PromqlError;
use crate::functions::range::{Notes, advance_past};
use crate::functions::{InstantFn, RangeCall, is_range_function, unwrap_parens};
use gauntlet_engine::chunk::{
    HistogramBatch, ReusedDecode, SampleBatch, decode_histogram_chunks_reusing, is_stale_nan,
};
use gauntlet_engine::histogram::FloatHistogram;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{
    DecodeScratch, Grouping, SelectHints, SeriesData, SeriesStream, StreamSeries,
    decode_histograms, decode_many_flat,
};

/// Most pool workers one query's tasks are counted against when its memory is accounted.
const MAX_WORKERS: usize = 8;

/// Consecutive series one worker task takes from a batch. Tasks are cut by count alone, and
/// their results are merged in task order, so answers depend neither on thread timing nor on
/// the number of cores; batches of fewer series (every small query) are one task.
pub(crate) const TASK_SERIES: usize = 512;

/// Folds one column into a task's partial result: the column, and the metric name its
/// histogram samples are reported under (empty for columns without histograms). Gives back
/// the column's value buffer when it keeps only the values.
pub(crate) type AddCol<'f, P> = dyn Fn(&mut P, Col, &str) -> Option<Vec<f64>> + Sync + 'f;

/// Takes one task's result, in task order.
type Absorb<'f, E, P> = dyn FnMut(&mut E, TaskOut<P>) -> Result<(), PromqlError> + 'f;

/// What one worker task hands back: its fold of the task's series and what the evaluator must
/// account for.
struct TaskOut<P> {
    acc: P,
    /// Annotations owed: info notes and warnings.
    notes: Vec<String>,
    warnings: Vec<String>,
    /// Samples of the decode group being worked on.
    decoded: usize,
    /// Most samples one decode group of the task held at once.
    decoded_most: usize,
    /// Whether any series had samples to work on.
    selected: bool,
    /// Samples the task's series loaded (the query's `totalQueryableSamples`).
    loaded: Loaded,
}

/// The tasks workers take, cut from the stream's batches as they are needed.
struct Feed<'s> {
    stream: Box<dyn SeriesStream + 's>,
    /// Tasks cut from the last batch read, not yet taken.
    cut: std::collections::VecDeque<(usize, Vec<StreamSeries>)>,
    /// Number of the next task cut.
    next: usize,
    /// Whether the stream has ended (or failed).
    done: bool,
}

/// A task for a worker: its number and series, or the error reading its batch failed with.
type FeedTask = (usize, Result<Vec<StreamSeries>, PromqlError>);

impl Feed<'_> {
    /// Cuts `batch` into tasks of at most [`TASK_SERIES`] consecutive series.
    fn cut_batch(&mut self, mut batch: Vec<StreamSeries>) {
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(TASK_SERIES));
            self.cut
                .push_back((self.next, std::mem::replace(&mut batch, rest)));
            self.next += 1;
        }
    }

    /// The next task, reading the next batch when none is cut; `None` once the stream ended.
    fn take(&mut self) -> Option<FeedTask> {
        loop {
            if let Some((i, s)) = self.cut.pop_front() {
                return Some((i, Ok(s)));
            }
            if self.done {
                return None;
            }
            match self.stream.next_batch() {
                Ok(Some(b)) => self.cut_batch(b),
                Ok(None) => self.done = true,
                Err(e) => {
                    self.done = true;
                    self.next += 1;
                    return Some((self.next - 1, Err(e.into())));
                }
            }
        }
    }
}

/// Where a streamed series' step values come from.
pub(crate) enum Source {
    /// An instant selector: at each evaluation time the latest sample within the lookback,
    /// none when it is a stale marker; with `want_ts` the sample's timestamp in seconds.
    Instant {
        times: Vec<i64>,
        lookback: i64,
        want_ts: bool,
    },
    /// A `smoothed` instant selector: at each evaluation time the series interpolated from
    /// its samples within the lookback either side; `at` is the selector's position, for
    /// warnings.
    Smoothed {
        times: Vec<i64>,
        lookback: i64,
        at: String,
    },
    /// A range function over a range selector's windows `(end - range, end]` (or spans, see
    /// [`RangeCall::reach`]).
    Range {
        call: RangeCall,
        ends: Vec<i64>,
        range: i64,
    },
}

/// What is applied to a series' column after its source, in order.
pub(crate) enum PostOp {
    /// Unary minus, with the semantics of this Prometheus version.
    Neg(Compat),
    /// An element-wise function.
    Func(InstantFn),
    /// `series op scalar` (`swap`: `scalar op series`), `bool` when `rb`; `at` is where the
    /// expression starts, for its annotations.
    Scalar {
        op: String,
        s: Vec<f64>,
        swap: bool,
        rb: bool,
        at: String,
        compat: Compat,
    },
}

/// Turns one selected series into its step column without looking at any other series, so it
/// runs on worker threads.
pub(crate) struct SeriesKernel {
    source: Source,
    post: Vec<PostOp>,
    /// The selected time range, ms inclusive.
    mint: i64,
    maxt: i64,
    steps: Steps,
    hints: SelectHints,
    /// Which labels a column keeps: all, or (inside an aggregation that needs no more) only
    /// its group's, dropped on the worker rather than where columns are folded.
    keep: KeepLabels,
    /// Whether a column whose operations drop the metric name loses it on the worker, before
    /// any grouping (without delayed name removal, as Prometheus 3 does by default).
    drop_name_now: bool,
    /// Whether the selector's histograms get the counter-reset hints of a count-and-sum read
    /// ([`super::histogram_stats`]).
    stats_hints: bool,
    /// Whether the selector's histograms are decoded without buckets
    /// ([`super::histogram_stats::BucketFreeSelectors`]).
    bucket_free: bool,
}

/// The labels a streamed column keeps.
pub(crate) enum KeepLabels {
    /// Every label (the series is part of the result).
    All,
    /// Only the labels of its aggregation group (`by`, `without`, or none).
    Group(Option<LabelModifier>),
}

impl SeriesKernel {
    /// Keeps only the labels of each series' aggregation group under `modifier`.
    /// Storage is told so, and may hand over only those labels (and the metric name).
    pub(crate) fn keep_group_labels(&mut self, modifier: Option<LabelModifier>) {
        self.hints.grouping = Some(match &modifier {
            None => Grouping::default_by(),
            Some(LabelModifier::Include(l)) => Grouping {
                by: true,
                names: l.labels.clone(),
            },
            Some(LabelModifier::Exclude(l)) => Grouping {
                by: false,
                names: l.labels.clone(),
            },
        });
        self.keep = KeepLabels::Group(modifier);
    }

    /// Drops the metric name on the worker as soon as an operation drops it. Only for
    /// expressions whose series stay distinct without their names ([`names_stay_distinct`]),
    /// since the same-labelset check needs every series at once.
    pub(crate) fn drop_name_now(&mut self) {
        self.drop_name_now = true;
    }
}

/// Series a worker decodes together (one `decode_xor_many` call for all their chunks),
/// small enough that their samples stay in cache until their columns are computed.
const DECODE_GROUP: usize = 32;

/// A worker's reusable buffers.
#[derive(Default)]
struct Scratch {
    decode: DecodeScratch,
    /// The decode group's samples, series after series.
    samples: SampleBatch,
    /// Where each series' samples lie in `samples`.
    spans: Vec<std::ops::Range<usize>>,
    buf: Vec<f64>,
    /// A column buffer to build the next series' column in: the last one not handed on, or
    /// given back by the fold.
    spare: Vec<f64>,
    /// The native histograms of the series being worked on.
    hist: HistogramBatch,
}

/// One series' result.
struct SeriesOut {
    col: Option<Col>,
    /// Info annotations owed.
    notes: Vec<String>,
    warnings: Vec<String>,
    /// The metric name aggregations report the column's histograms under: the series' name
    /// unless an operation dropped it (empty without histograms).
    hist_name: String,
    /// The error the series fails the query with (a function parameter checked per call).
    fail: Option<String>,
    /// Samples decoded for the series (held while it was processed).
    decoded: usize,
    /// Whether the series had samples to work on (range functions: after stale markers).
    selected: bool,
}

impl SeriesKernel {
    /// One series' column from its samples (decoded, in the selected range): floats `ts`/`val`,
    /// which it may reorder in place, and native histograms `hist` (empty for float series),
    /// which it may reorder too. The samples the source loads are counted in `loaded`.
    fn run(
        &self,
        labels: Labels,
        (ts, val): (&mut [i64], &mut [f64]),
        hist: &mut HistogramBatch,
        (buf, spare): (&mut Vec<f64>, &mut Vec<f64>),
        loaded: &mut Loaded,
    ) -> SeriesOut {
        let floats = ts.len().min(val.len());
        let mut out = SeriesOut {
            col: None,
            notes: Vec::new(),
            warnings: Vec::new(),
            hist_name: String::new(),
            fail: None,
            decoded: floats + hist.h.iter().map(histogram_weight).sum::<usize>(),
            selected: false,
        };
        if floats == 0 && hist.is_empty() {
            return out;
        }
        // The column is built in the worker's spare buffer, which goes back unless the column
        // is handed on.
        let mut v = std::mem::take(spare);
        v.clear();
        v.resize(self.steps.n, absent());
        let mut h = None;
        let drop_name = match &self.source {
            Source::Instant {
                times,
                lookback,
                want_ts,
            } => {
                out.selected = true;
                if hist.is_empty() {
                    let n = instant_column(ts, val, times, *lookback, *want_ts, &mut v);
                    if loaded.wants_steps() {
                        loaded.count_col(&v, None);
                    } else {
                        loaded.total += n as u64;
                    }
                } else {
                    h = instant_mixed(
                        (ts, val),
                        (&hist.ts, &hist.h),
                        times,
                        *lookback,
                        *want_ts,
                        &mut v,
                    );
                    loaded.count_col(&v, h.as_ref());
                }
                *want_ts
            }
            Source::Smoothed {
                times,
                lookback,
                at,
            } => {
                out.selected = true;
                let n = remove_stale(ts, val);
                remove_stale_histograms(hist);
                // Prometheus counts no samples loaded for a smoothed selector.
                h = smoothed_column(
                    (&ts[..n], &val[..n]),
                    (&hist.ts, &hist.h),
                    times,
                    *lookback,
                    labels.get("__name__").unwrap_or(""),
                    at,
                    &mut v,
                    &mut out.warnings,
                );
                false
            }
            Source::Range { call, ends, range } => {
                let n = remove_stale(ts, val);
                let hn = remove_stale_histograms(hist);
                if n == 0 && hn == 0 {
                    *spare = v;
                    return out;
                }
                out.selected = true;
                loaded.count_spans(call.reach(), &ts[..n], (&hist.ts, &hist.h), ends, *range);
                out.fail = call.param_error(&ts[..n], ends, *range);
                if out.fail.is_some() {
                    *spare = v;
                    return out;
                }
                call.column(&ts[..n], &val[..n], ends, *range, &self.steps, buf, &mut v);
                if hn > 0 {
                    let mut notes = Notes::default();
                    let name = labels.get("__name__").unwrap_or("");
                    h = call.hist_column(
                        name,
                        (&ts[..n], &val[..n]),
                        (&hist.ts, &hist.h),
                        ends,
                        *range,
                        &mut v,
                        &mut notes,
                    );
                    out.warnings = notes.warnings;
                    out.notes = notes.info;
                }
                out.notes.extend(call.counter_note(&labels, &v));
                !call.keeps_name()
            }
        };
        if h.is_none() && v.iter().all(|x| is_absent(*x)) {
            *spare = v;
            return out;
        }
        let mut col = Col {
            h,
            labels,
            drop_name,
            v,
        };
        for op in &self.post {
            match op {
                PostOp::Neg(compat) => negate(&mut col, *compat),
                PostOp::Func(f) => f.apply(&mut col),
                PostOp::Scalar {
                    op,
                    s,
                    swap,
                    rb,
                    at,
                    compat,
                } => {
                    out.notes.extend(
                        vector_scalar_hists(op, &mut col, s, *swap, *rb, *compat)
                            .map(|note| format!("{note}{at}")),
                    );
                    vector_scalar_col(op, &mut col, s, *swap, *rb)
                }
            }
        }
        // Series left without a value are dropped, as each materialized step drops them.
        let has_value = match &col.h {
            None => col.v.iter().any(|x| !is_absent(*x)),
            Some(_) => (0..col.v.len()).any(|i| col.present(i)),
        };
        if has_value {
            let drop_name = self.drop_name_now && col.drop_name;
            if col.h.is_some() && !drop_name {
                out.hist_name = col.labels.get("__name__").unwrap_or("").to_string();
            }
            match &self.keep {
                // One pass keeps the group's labels, less the name if it goes now.
                KeepLabels::Group(m) => {
                    col.labels = group_labels(&col.labels, m.as_ref(), drop_name)
                }
                KeepLabels::All if drop_name => {
                    let mut ls = std::mem::take(&mut col.labels).into_vec();
                    ls.retain(|l| l.name != "__name__");
                    col.labels = Labels::from_sorted(ls);
                }
                KeepLabels::All => {}
            }
            col.drop_name &= !drop_name;
            out.col = Some(col);
        } else {
            *spare = col.v;
        }
        out
    }
}

impl SeriesKernel {
    /// The selected time range (ms, inclusive) and the selection's hints.
    pub(crate) fn span(&self) -> (i64, i64, &SelectHints) {
        (self.mint, self.maxt, &self.hints)
    }

    /// An instant selector's column of one materialized series, native histograms included:
    /// at each step the latest sample of either kind within the lookback, none when that is a
    /// stale marker (or for a `smoothed` selector, the interpolated value, with its warnings
    /// added to `warnings`). `None` for other kernels or when no step has a sample.
    pub(crate) fn instant_col(
        &self,
        mut s: gauntlet_engine::query::Series,
        warnings: &mut Vec<String>,
    ) -> Option<Col> {
        let mut v = vec![absent(); self.steps.n];
        let (h, drop_name) = match &self.source {
            Source::Instant {
                times,
                lookback,
                want_ts,
            } => {
                let h = instant_mixed(
                    (&s.samples.ts, &s.samples.val),
                    (&s.histograms.ts, &s.histograms.h),
                    times,
                    *lookback,
                    *want_ts,
                    &mut v,
                );
                (h, *want_ts)
            }
            Source::Smoothed {
                times,
                lookback,
                at,
            } => {
                let n = remove_stale(&mut s.samples.ts, &mut s.samples.val);
                remove_stale_histograms(&mut s.histograms);
                let h = smoothed_column(
                    (&s.samples.ts[..n], &s.samples.val[..n]),
                    (&s.histograms.ts, &s.histograms.h),
                    times,
                    *lookback,
                    s.labels.get("__name__").unwrap_or(""),
                    at,
                    &mut v,
                    warnings,
                );
                (h, false)
            }
            Source::Range { .. } => return None,
        };
        if h.is_none() && v.iter().all(|x| is_absent(*x)) {
            return None;
        }
        Some(Col {
            labels: s.labels,
            drop_name,
            v,
            h,
        })
    }
}

/// [`instant_column`] over a series holding native histograms as well as floats: at each step
/// the latest sample of either kind within the lookback, none when that is a stale marker.
/// Float results go to `out`; the histogram results are returned, `None` when there are none.
fn instant_mixed(
    (fts, fv): (&[i64], &[f64]),
    (hts, hv): (&[i64], &[FloatHistogram]),
    times: &[i64],
    lookback: i64,
    want_ts: bool,
    out: &mut [f64],
) -> Option<HCol> {
    let mut h: HCol = vec![None; out.len()];
    let mut any_h = false;
    for (i, &t) in times.iter().enumerate() {
        let fi = fts.partition_point(|&x| x <= t);
        let hi = hts.partition_point(|&x| x <= t);
        let f = fi.checked_sub(1).map(|j| (fts[j], j));
        let hh = hi.checked_sub(1).map(|j| (hts[j], j));
        let pick_hist = match (f, hh) {
            (None, None) => continue,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((a, _)), Some((b, _))) => b > a,
        };
        if pick_hist {
            #[allow(
                clippy::expect_used,
                reason = "`pick_hist` is true only with a histogram"
            )]
            let (tj, j) = hh.expect("a histogram");
            if tj <= t.saturating_sub(lookback) || hv[j].is_stale() {
                continue;
            }
            if want_ts {
                out[i] = tj as f64 / 1000.0;
            } else {
                h[i] = Some(hv[j].clone());
                any_h = true;
            }
        } else {
            #[allow(clippy::expect_used, reason = "`pick_hist` is false only with a float")]
            let (tj, j) = f.expect("a float");
            if tj <= t.saturating_sub(lookback) || is_stale_nan(fv[j]) {
                continue;
            }
            out[i] = if want_ts { tj as f64 / 1000.0 } else { fv[j] };
        }
    }
    any_h.then_some(h)
}

/// Unary minus of one series; the result loses its metric name.
pub(crate) fn negate(c: &mut Col, compat: Compat) {
    c.drop_name = true;
    if let Some(h) = c.h.as_mut() {
        h.iter_mut()
            .flatten()
            .for_each(|h| crate::hist_math::scale(h, -1.0, compat));
    }
    for x in c.v.iter_mut().filter(|x| !is_absent(**x)) {
        *x = -*x;
    }
}

/// Moves the samples that are not stale markers (which range functions do not see) to the
/// front, in order; returns how many there are.
fn remove_stale(ts: &mut [i64], val: &mut [f64]) -> usize {
    let n = ts.len().min(val.len());
    if !val[..n].iter().any(|x| is_stale_nan(*x)) {
        return n;
    }
    let mut k = 0;
    for j in 0..n {
        if !is_stale_nan(val[j]) {
            ts[k] = ts[j];
            val[k] = val[j];
            k += 1;
        }
    }
    k
}

/// Drops the histograms that are stale markers (which range functions do not see), keeping
/// the others in order; returns how many are left.
fn remove_stale_histograms(b: &mut HistogramBatch) -> usize {
    if b.h.iter().any(|h| h.is_stale()) {
        let mut k = 0;
        for j in 0..b.h.len() {
            if !b.h[j].is_stale() {
                b.ts.swap(k, j);
                b.h.swap(k, j);
                k += 1;
            }
        }
        b.ts.truncate(k);
        b.h.truncate(k);
    }
    b.h.len()
}

/// Fills `out[i]` with the latest sample at or before `times[i]` and after
/// `times[i] - lookback`, unless it is a stale marker; `want_ts` puts its timestamp (s)
/// instead. Returns how many steps got a value.
pub(crate) fn instant_column(
    ts: &[i64],
    vals: &[f64],
    times: &[i64],
    lookback: i64,
    want_ts: bool,
    out: &mut [f64],
) -> usize {
    // One loop per output kind: as a select inside one loop, the timestamp's division ran at
    // every step even when values were asked for.
    if want_ts {
        instant_steps::<true>(ts, vals, times, lookback, out)
    } else {
        instant_steps::<false>(ts, vals, times, lookback, out)
    }
}

/// [`instant_column`] for one output kind.
#[inline(always)]
fn instant_steps<const WANT_TS: bool>(
    ts: &[i64],
    vals: &[f64],
    times: &[i64],
    lookback: i64,
    out: &mut [f64],
) -> usize {
    let n = ts.len().min(vals.len());
    let (ts, vals) = (&ts[..n], &vals[..n]);
    let mut found = 0;
    let (mut hi, mut moved) = (0usize, 0usize);
    let mut prev = i64::MIN;
    for (o, &t) in out.iter_mut().zip(times) {
        if t < prev {
            hi = 0;
        }
        prev = t;
        hi = advance_past(ts, hi, t, &mut moved);
        let Some(j) = hi.checked_sub(1) else {
            continue;
        };
        let (tj, vj) = (ts[j], vals[j]);
        if tj > t.saturating_sub(lookback) && !is_stale_nan(vj) {
            *o = if WANT_TS { tj as f64 / 1000.0 } else { vj };
            found += 1;
        }
    }
    found
}

/// Whether `e` maps every series it selects to at most one output series on its own: a
/// selector, a range function over a range selector, and element-wise functions, unary
/// minus and scalar operations over those. Such expressions are streamed into
/// aggregations.
pub(crate) fn streamable(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => streamable(&p.expr),
        Expr::Vector(_) => true,
        Expr::Unary(u) => streamable(&u.expr),
        Expr::Call(c) => {
            let args: Vec<&Expr> = c.args.iter().collect();
            let name = c.func.name;
            if name == "timestamp" {
                return matches!(
                    args.first().map(|a| unwrap_parens(a)),
                    Some(Expr::Vector(_))
                );
            }
            if is_range_function(name) {
                let arg = if name == "quantile_over_time" {
                    args.get(1)
                } else {
                    args.first()
                };
                return matches!(arg.map(|a| unwrap_parens(a)), Some(Expr::Matrix(_)));
            }
            InstantFn::handles(name) && args.first().is_some_and(|a| streamable(a))
        }
        Expr::Binary(b) => {
            use crate::parser::ValueType;
            let op = b.op.as_str().to_string();
            let arith_or_cmp = is_comparison(&op)
                || matches!(op.as_str(), "+" | "-" | "*" | "/" | "%" | "^" | "atan2");
            let (l, r) = (b.lhs.value_type(), b.rhs.value_type());
            arith_or_cmp
                && ((l == ValueType::Scalar && streamable(&b.rhs))
                    || (r == ValueType::Scalar && streamable(&b.lhs)))
        }
        _ => false,
    }
}

/// Whether the series of a [`streamable`] expression stay distinct once their metric names
/// are dropped where its operations drop them: when no operation drops the name (a selector,
/// possibly filtered by a comparison), or when the selector pins the name to one value, so
/// series that differed stay different without it. Otherwise, without delayed name removal,
/// the series must all be seen together to reject the duplicates, as Prometheus does.
pub(crate) fn names_stay_distinct(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => names_stay_distinct(&p.expr),
        Expr::Vector(_) => true,
        Expr::Binary(b) if !b.return_bool && b.op.is_comparison() => {
            use crate::parser::ValueType;
            if b.lhs.value_type() == ValueType::Scalar {
                names_stay_distinct(&b.rhs)
            } else {
                names_stay_distinct(&b.lhs)
            }
        }
        _ => stream_selector(e).is_some_and(|vs| {
            vs.name.is_some()
                || vs
                    .matchers
                    .iter()
                    .any(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
        }),
    }
}

/// The selector a [`streamable`] expression reads.
fn stream_selector(e: &Expr) -> Option<&VectorSelector> {
    match e {
        Expr::Paren(p) => stream_selector(&p.expr),
        Expr::Vector(vs) => Some(vs),
        Expr::Matrix(ms) => Some(&ms.selector),
        Expr::Unary(u) => stream_selector(&u.expr),
        Expr::Call(c) => {
            let args = &c.args;
            let arg = if c.func.name == "quantile_over_time" {
                args.get(1)
            } else {
                args.first()
            };
            stream_selector(arg?)
        }
        Expr::Binary(b) => {
            use crate::parser::ValueType;
            if b.lhs.value_type() == ValueType::Scalar {
                stream_selector(&b.rhs)
            } else {
                stream_selector(&b.lhs)
            }
        }
        _ => None,
    }
}

impl<'a> Evaluator<'a> {
    /// The selector and per-series kernel of a [`streamable`] expression; scalar arguments
    /// are evaluated here, in the order the materialized evaluation would.
    pub(crate) fn build_kernel<'e>(
        &mut self,
        e: &'e Expr,
        steps: &Steps,
    ) -> Result<(&'e VectorSelector, SeriesKernel), PromqlError> {
        match e {
            Expr::Paren(p) => self.build_kernel(&p.expr, steps),
            Expr::Vector(vs) => Ok((vs, self.instant_kernel(vs, steps, false))),
            Expr::Unary(u) => {
                let (vs, mut k) = self.build_kernel(&u.expr, steps)?;
                k.post.push(PostOp::Neg(self.opts.compat));
                Ok((vs, k))
            }
            Expr::Call(c) => {
                let args: Vec<&Expr> = c.args.iter().collect();
                let name = c.func.name;
                if name == "timestamp" {
                    if let Expr::Vector(vs) = unwrap_parens(args[0]) {
                        return Ok((vs, self.instant_kernel(vs, steps, true)));
                    }
                } else if is_range_function(name) {
                    let (rc, arg) = RangeCall::prepare(self, name, &args, steps)?;
                    if let Expr::Matrix(ms) = unwrap_parens(arg) {
                        return Ok((&ms.selector, self.range_kernel(rc, ms, steps)?));
                    }
                } else if InstantFn::handles(name) && !args.is_empty() {
                    let (vs, mut k) = self.build_kernel(args[0], steps)?;
                    let f = InstantFn::prepare(self, name, &args, steps)?;
                    k.post.push(PostOp::Func(f));
                    return Ok((vs, k));
                }
                Err(not_streamable(e))
            }
            Expr::Binary(b) => {
                use crate::parser::ValueType;
                let op = b.op.as_str().to_string();
                let rb = b.return_bool;
                let at = self.at(e);
                if b.lhs.value_type() == ValueType::Scalar {
                    let s = self.arg_scalar(&b.lhs, steps)?;
                    let (vs, mut k) = self.build_kernel(&b.rhs, steps)?;
                    k.post.push(PostOp::Scalar {
                        op,
                        s,
                        swap: true,
                        rb,
                        at,
                        compat: self.opts.compat,
                    });
                    Ok((vs, k))
                } else {
                    let (vs, mut k) = self.build_kernel(&b.lhs, steps)?;
                    let s = self.arg_scalar(&b.rhs, steps)?;
                    k.post.push(PostOp::Scalar {
                        op,
                        s,
                        swap: false,
                        rb,
                        at,
                        compat: self.opts.compat,
                    });
                    Ok((vs, k))
                }
            }
            _ => Err(not_streamable(e)),
        }
    }

    /// Each step's evaluation time for a selector: the `@` time or the step, minus the offset.
    pub(crate) fn selector_times(&self, vs: &VectorSelector, steps: &Steps) -> Vec<i64> {
        let off = self.offset_ms(&vs.offset);
        match self.at_time(&vs.at) {
            Some(at) => vec![at.saturating_sub(off); steps.n],
            None => (0..steps.n)
                .map(|i| steps.t(i).saturating_sub(off))
                .collect(),
        }
    }

    /// The kernel of an instant selector (`want_ts`: of `timestamp(selector)`).
    pub(crate) fn instant_kernel(
        &self,
        vs: &VectorSelector,
        steps: &Steps,
        want_ts: bool,
    ) -> SeriesKernel {
        let mut times = self.selector_times(vs, steps);
        let mut lookback = self.opts.lookback_delta_ms;
        if want_ts && let Some(at) = self.at_time(&vs.at) {
            // `timestamp(v @ t offset d)`, as Prometheus 3 evaluates it: v's samples are read
            // for the selector's window `(t - d - lookback, t - d]` but looked up at `t`,
            // without the offset, so the answer is the latest sample in `(t - lookback, t]`
            // that the window holds (none once the two do not meet).
            let d = self.offset_ms(&vs.offset);
            times = vec![at.saturating_sub(d.max(0)); steps.n];
            lookback = lookback.saturating_sub(d.saturating_abs()).max(0);
        }
        let mint = times
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
            .saturating_sub(lookback.max(1))
            .saturating_add(1);
        let mut maxt = times.iter().copied().max().unwrap_or(0);
        // `timestamp()` reads a smoothed selector as a plain one, as Prometheus does.
        let source = if vs.smoothed && !want_ts {
            maxt = maxt.saturating_add(lookback);
            Source::Smoothed {
                times,
                lookback,
                at: format!(" ({})", self.positions.line_col(vs.span.start)),
            }
        } else {
            Source::Instant {
                times,
                lookback,
                want_ts,
            }
        };
        SeriesKernel {
            source,
            post: Vec::new(),
            keep: KeepLabels::All,
            drop_name_now: false,
            stats_hints: self.stats_selectors.contains(vs),
            bucket_free: self.bucket_free.contains(vs),
            mint,
            maxt,
            steps: *steps,
            hints: SelectHints {
                step_ms: steps.step,
                func: self.select_funcs.of(vs),
                range_ms: 0,
                grouping: None,
                cancel: self.opts.cancel.clone(),
            },
        }
    }

    /// The kernel of a range function over a range selector.
    pub(crate) fn range_kernel(
        &self,
        call: RangeCall,
        ms: &MatrixSelector,
        steps: &Steps,
    ) -> Result<SeriesKernel, PromqlError> {
        let (range, ends, mint, maxt) = self.range_span(ms, steps);
        Ok(SeriesKernel {
            hints: SelectHints {
                step_ms: steps.step,
                func: self.select_funcs.of(&ms.selector),
                range_ms: range,
                grouping: None,
                cancel: self.opts.cancel.clone(),
            },
            source: Source::Range { call, ends, range },
            post: Vec::new(),
            keep: KeepLabels::All,
            drop_name_now: false,
            stats_hints: self.stats_selectors.contains(&ms.selector),
            bucket_free: self.bucket_free.contains(&ms.selector),
            mint,
            maxt,
            steps: *steps,
        })
    }

    /// Streams the series `vs` selects through `kernel`: each worker task folds its series'
    /// columns (those with a value, in stream order) into a fresh `new()` with `add` (which
    /// gives back a column's buffer when it keeps only the values), and the tasks' folds are
    /// handed to `merge` in stream order.
    ///
    /// A selection that fits one task runs on this thread. Otherwise its tasks go to the
    /// process's worker pool (see [`Evaluator::stream_pool`]), which reads the batches and
    /// computes tasks as they come, and this thread merges their results in task order, so
    /// answers never depend on which worker finished first.
    pub(crate) fn stream_partials<P: Send>(
        &mut self,
        vs: &VectorSelector,
        kernel: &SeriesKernel,
        new: &(dyn Fn() -> P + Sync),
        add: &AddCol<'_, P>,
        merge: &mut dyn FnMut(&mut Self, P) -> Result<(), PromqlError>,
    ) -> Result<(), PromqlError> {
        let mut stream = self.open_stream(vs, kernel.mint, kernel.maxt, &kernel.hints)?;
        let no_loads = self.loaded.fresh();
        let cancel = self.opts.cancel.clone();
        let compat = self.opts.compat;
        let task = |sc: &mut Scratch, series: Vec<StreamSeries>| {
            let mut out = TaskOut {
                acc: new(),
                notes: Vec::new(),
                warnings: Vec::new(),
                decoded: 0,
                decoded_most: 0,
                selected: false,
                loaded: no_loads.clone(),
            };
            let mut series = series.into_iter().peekable();
            while series.peek().is_some() {
                // A task can take a while on a large range; a query whose client left stops
                // between decode groups rather than at the task's end.
                if cancel.is_canceled() {
                    return Err(PromqlError::Canceled);
                }
                let group: Vec<StreamSeries> = series.by_ref().take(DECODE_GROUP).collect();
                decode_many_flat(
                    &group,
                    kernel.mint,
                    kernel.maxt,
                    &mut sc.decode,
                    &mut sc.samples,
                    &mut sc.spans,
                )?;
                for (s, span) in group.into_iter().zip(&sc.spans) {
                    if s.data.has_histograms() {
                        decode_kernel_histograms(&s, kernel, compat, &mut sc.hist)?;
                    } else {
                        sc.hist.clear();
                    }
                    let r = kernel.run(
                        s.labels,
                        (
                            &mut sc.samples.ts[span.clone()],
                            &mut sc.samples.val[span.clone()],
                        ),
                        &mut sc.hist,
                        (&mut sc.buf, &mut sc.spare),
                        &mut out.loaded,
                    );
                    if let Some(msg) = r.fail {
                        return Err(PromqlError::Execution(msg));
                    }
                    out.decoded += r.decoded;
                    out.selected |= r.selected;
                    for note in r.notes {
                        if !out.notes.contains(&note) {
                            out.notes.push(note);
                        }
                    }
                    for w in r.warnings {
                        if !out.warnings.contains(&w) {
                            out.warnings.push(w);
                        }
                    }
                    if let Some(col) = r.col
                        && let Some(v) = add(&mut out.acc, col, &r.hist_name)
                    {
                        sc.spare = v;
                    }
                }
                out.decoded_most = out.decoded_most.max(out.decoded);
                out.decoded = 0;
            }
            Ok::<_, PromqlError>(out)
        };
        let mut selected = false;
        let workers = self.work.threads().clamp(1, MAX_WORKERS);
        let mut absorb = |ev: &mut Self, out: TaskOut<P>| {
            selected |= out.selected;
            ev.loaded.merge(&out.loaded);
            for w in out.warnings {
                ev.warn(w);
            }
            for note in out.notes {
                ev.note_info(note);
            }
            // Each worker running one of the query's tasks holds one decode group's samples.
            ev.acquire(out.decoded_most * workers)?;
            ev.release(out.decoded_most * workers);
            merge(ev, out.acc)
        };
        let Some(first) = stream.next_batch()? else {
            return self.finish_stream(kernel, selected);
        };
        if first.len() <= TASK_SERIES {
            let mut more = Some(first);
            let mut sc = Scratch::default();
            while let Some(mut batch) = more {
                self.check_deadline("query execution")?;
                while !batch.is_empty() {
                    let rest = batch.split_off(batch.len().min(TASK_SERIES));
                    let out = task(&mut sc, std::mem::replace(&mut batch, rest))?;
                    absorb(self, out)?;
                }
                // A small selection ends here; a larger one goes to the pool, even with one
                // worker, so it waits its turn behind cheaper queries.
                more = stream.next_batch()?;
                if more.is_some() {
                    self.stream_pool(more, stream, &task, &mut absorb, workers)?;
                    return self.finish_stream(kernel, selected);
                }
            }
            return self.finish_stream(kernel, selected);
        }
        self.stream_pool(Some(first), stream, &task, &mut absorb, workers)?;
        self.finish_stream(kernel, selected)
    }

    /// The parallel half of [`Evaluator::stream_partials`]: `first` and the rest of `stream`
    /// as tasks on the process's worker pool, under this query's tag, results absorbed in
    /// task order. This is the one place query work fans out across cores.
    ///
    /// Each pool task takes the next cut of series itself: one that finds none cut reads the
    /// next batch from the stream, keeps its first cut and leaves the rest to the tasks after
    /// it. So a batch costs one hand-off from storage and one per result. At most
    /// `2 × workers` tasks are queued at once (a new one for each result), which bounds the
    /// results waiting to be absorbed and lets the pool put other queries' tasks between
    /// this one's.
    fn stream_pool<P: Send, F>(
        &mut self,
        first: Option<Vec<StreamSeries>>,
        stream: Box<dyn SeriesStream + 'a>,
        task: &F,
        absorb: &mut Absorb<'_, Self, P>,
        workers: usize,
    ) -> Result<(), PromqlError>
    where
        F: Fn(&mut Scratch, Vec<StreamSeries>) -> Result<TaskOut<P>, PromqlError> + Sync,
    {
        let mut feed = Feed {
            stream,
            cut: std::collections::VecDeque::new(),
            next: 0,
            done: false,
        };
        if let Some(b) = first {
            feed.cut_batch(b);
        }
        let feed = std::sync::Mutex::new(feed);
        // Scratch buffers outlive a task, as a worker thread's did: a task takes a free one.
        let scratches = std::sync::Mutex::new(Vec::<Scratch>::new());
        let window = 2 * workers.max(1);
        let work = self.work.clone();
        work.scope(|sc| -> Result<(), PromqlError> {
            let (res_tx, res_rx) = std::sync::mpsc::channel();
            // One task: the next cut through `task`, or `None` once the stream is done.
            let spawn = |res_tx: std::sync::mpsc::Sender<Option<(usize, _)>>| {
                let (feed, scratches) = (&feed, &scratches);
                sc.spawn(move || {
                    // A poisoned lock means another task panicked; the scope raises it.
                    let job = match feed.lock() {
                        Ok(mut f) => f.take(),
                        Err(_) => None,
                    };
                    let Some((i, job)) = job else {
                        let _ = res_tx.send(None);
                        return;
                    };
                    let mut scratch = scratches
                        .lock()
                        .ok()
                        .and_then(|mut s| s.pop())
                        .unwrap_or_default();
                    let r = job.and_then(|series| task(&mut scratch, series));
                    if let Ok(mut s) = scratches.lock() {
                        s.push(scratch);
                    }
                    let _ = res_tx.send(Some((i, r)));
                });
            };
            for _ in 0..window {
                spawn(res_tx.clone());
            }
            let mut queued = window;
            let mut ended = false;
            let mut pending = std::collections::BTreeMap::new();
            let mut merged = 0usize;
            let mut absorb_ready = |ev: &mut Self,
                                    pending: &mut std::collections::BTreeMap<usize, _>|
             -> Result<(), PromqlError> {
                ev.check_deadline("query execution")?;
                while let Some(r) = pending.remove(&merged) {
                    absorb(ev, r?)?;
                    merged += 1;
                }
                Ok(())
            };
            while queued > 0 {
                // Every task answers once, run or not: a dropped task (its query cancelled)
                // drops its sender, and the deadline check below ends the loop.
                let Some(got) = sc.recv(&res_rx) else { break };
                queued -= 1;
                match got {
                    None => ended = true,
                    Some((i, r)) => {
                        pending.insert(i, r);
                        if let Err(e) = absorb_ready(self, &mut pending) {
                            sc.drop_queued();
                            return Err(e);
                        }
                        if !ended {
                            spawn(res_tx.clone());
                            queued += 1;
                        }
                    }
                }
                if queued == 0 || self.opts.cancel.interrupted().is_some() {
                    break;
                }
            }
            drop(res_tx);
            self.check_deadline("query execution")?;
            // Every result is in: absorb what is left in order.
            absorb_ready(self, &mut pending)
        })
    }

    /// What a stream owes once its series are all seen.
    fn finish_stream(&mut self, kernel: &SeriesKernel, selected: bool) -> Result<(), PromqlError> {
        if selected && let Source::Range { call, .. } = &kernel.source {
            call.warn_params(self);
        }
        Ok(())
    }

    /// Streams the series `vs` selects through `kernel`, calling `sink` with every column
    /// that has a value, in stream order, and the name its histograms are reported under.
    pub(crate) fn stream_columns(
        &mut self,
        vs: &VectorSelector,
        kernel: &SeriesKernel,
        sink: &mut dyn FnMut(&mut Self, Col, &str) -> Result<(), PromqlError>,
    ) -> Result<(), PromqlError> {
        self.stream_partials(
            vs,
            kernel,
            &Vec::new,
            &|v: &mut Vec<(Col, String)>, c, name| {
                v.push((c, name.to_string()));
                None
            },
            &mut |ev, cols| {
                for (c, name) in cols {
                    sink(ev, c, &name)?;
                }
                Ok(())
            },
        )
    }

    /// Every column of a streamed expression, each counted as held.
    pub(crate) fn collect_columns(
        &mut self,
        vs: &VectorSelector,
        kernel: &SeriesKernel,
    ) -> Result<Vec<Col>, PromqlError> {
        let mut out = Vec::new();
        self.stream_columns(vs, kernel, &mut |ev, c, _| {
            ev.acquire(c.samples())?;
            out.push(c);
            Ok(())
        })?;
        Ok(out)
    }

    /// The storage stream of the series `vs` selects in `[mint, maxt]`. A selector with
    /// several matcher groups (`{a="1" or b="2"}`) is the union of their selections.
    pub(crate) fn open_stream(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Box<dyn SeriesStream + 'a>, PromqlError> {
        let storage: &'a dyn gauntlet_engine::query::Queryable = self.storage;
        let ms = super::selector::selector_matchers(vs, Some(&self.opts.budget))?;
        Ok(storage.select_stream(&ms, mint, maxt, hints)?)
    }
}

/// The native histograms of `s` in the span of `kernel` into `out`, without buckets where the
/// kernel's selector needs none, and with the hints of a count-and-sum read where it gets
/// them.
fn decode_kernel_histograms(
    s: &StreamSeries,
    kernel: &SeriesKernel,
    compat: crate::Compat,
    out: &mut HistogramBatch,
) -> Result<(), PromqlError> {
    let (mint, maxt) = (kernel.mint, kernel.maxt);
    if kernel.bucket_free
        && super::histogram_stats::decode_bucket_free(s, (mint, maxt), compat, out)
    {
        return Ok(());
    }
    decode_histograms_reusing(s, mint, maxt, out)?;
    if kernel.stats_hints {
        super::histogram_stats::assign_reset_hints(out, compat);
    }
    Ok(())
}

/// The native histograms of `s` in `[mint, maxt]` (ms) into `out`, as [`decode_histograms`]
/// decodes them, but overwriting the histograms `out` holds from the series before, so a
/// worker allocates spans and buckets once rather than once a sample. Chunks that overlap in
/// time, and corrupt ones (to be reported naming the series), go to [`decode_histograms`].
fn decode_histograms_reusing(
    s: &StreamSeries,
    mint: i64,
    maxt: i64,
    out: &mut HistogramBatch,
) -> Result<(), PromqlError> {
    if let SeriesData::Chunks(chunks) = &s.data {
        let picked = chunks
            .iter()
            .filter(|c| c.max_time >= mint && c.min_time <= maxt)
            .map(|c| (c.encoding, &c.data[..]));
        if let Ok(ReusedDecode::Done) = decode_histogram_chunks_reusing(picked, (mint, maxt), out) {
            return Ok(());
        }
    }
    decode_histograms(s, mint, maxt, out)?;
    Ok(())
}

fn not_streamable(e: &Expr) -> PromqlError {
    PromqlError::Execution(format!("expression cannot be streamed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Each step takes the newest sample at or before it, if that sample is inside the
        /// lookback window and not a stale marker: held against a scan of all samples, for
        /// regular and irregular samples and times that go backwards.
        #[test]
        fn instant_column_takes_the_newest_sample_in_lookback(
            gaps in proptest::collection::vec(prop_oneof![4 => Just(15_000i64), 1 => 1i64..60_000], 0..200),
            stale in proptest::collection::vec(any::<bool>(), 201),
            mut times in proptest::collection::vec(-10_000i64..3_500_000, 1..150),
            sorted in any::<bool>(),
            lookback in 1i64..400_000,
            want_ts in any::<bool>(),
        ) {
            let mut ts = vec![0i64];
            for g in &gaps {
                ts.push(ts[ts.len() - 1] + g);
            }
            let vals: Vec<f64> = ts
                .iter()
                .zip(&stale)
                .map(|(&t, &s)| if s && t % 3 == 0 { f64::from_bits(gauntlet_engine::chunk::STALE_NAN_BITS) } else { t as f64 })
                .collect();
            if sorted {
                times.sort_unstable();
            }
            let mut got = vec![absent(); times.len()];
            instant_column(&ts, &vals, &times, lookback, want_ts, &mut got);
            for (i, &t) in times.iter().enumerate() {
                let want = ts
                    .iter()
                    .zip(&vals)
                    .rev()
                    .find(|&(&tj, _)| tj <= t)
                    .filter(|&(&tj, &v)| tj > t - lookback && !is_stale_nan(v))
                    .map(|(&tj, &v)| if want_ts { tj as f64 / 1000.0 } else { v });
                prop_assert_eq!(
                    got[i].to_bits(),
                    want.unwrap_or(absent()).to_bits(),
                    "step {} at {}", i, t
                );
            }
        }
    }
}
