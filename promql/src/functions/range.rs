//! Functions over range vectors: each series' windows are visited in one pass over its sorted
//! samples, one output value per step.

use crate::parser::Expr;

pub(crate) mod extended;
mod hist;

pub(crate) use hist::Notes;

use super::{kahan_inc, nonempty, quantile_sorted, sort_floats, unwrap_parens};
use crate::error::PromqlError;
use crate::eval::{Col, Evaluator, RangeReach, Steps, Val, absent, is_absent};
use gauntlet_engine::go_format::format_fixed;
use gauntlet_engine::labels::Labels;

/// Whether `name` takes a range vector.
pub(crate) fn is_range_function(name: &str) -> bool {
    kind(name).is_some()
}

/// The range functions, resolved once per call so the per-step dispatch is an integer match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Resets,
    Changes,
    Deriv,
    PredictLinear,
    DoubleExponentialSmoothing,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    StddevOverTime,
    StdvarOverTime,
    LastOverTime,
    FirstOverTime,
    PresentOverTime,
    QuantileOverTime,
    MadOverTime,
    TsOfMaxOverTime,
    TsOfMinOverTime,
    TsOfLastOverTime,
    TsOfFirstOverTime,
}

fn kind(name: &str) -> Option<F> {
    Some(match name {
        "rate" => F::Rate,
        "increase" => F::Increase,
        "delta" => F::Delta,
        "irate" => F::Irate,
        "idelta" => F::Idelta,
        "resets" => F::Resets,
        "changes" => F::Changes,
        "deriv" => F::Deriv,
        "predict_linear" => F::PredictLinear,
        "double_exponential_smoothing" => F::DoubleExponentialSmoothing,
        "avg_over_time" => F::AvgOverTime,
        "sum_over_time" => F::SumOverTime,
        "count_over_time" => F::CountOverTime,
        "min_over_time" => F::MinOverTime,
        "max_over_time" => F::MaxOverTime,
        "stddev_over_time" => F::StddevOverTime,
        "stdvar_over_time" => F::StdvarOverTime,
        "last_over_time" => F::LastOverTime,
        "first_over_time" => F::FirstOverTime,
        "present_over_time" => F::PresentOverTime,
        "quantile_over_time" => F::QuantileOverTime,
        "mad_over_time" => F::MadOverTime,
        "ts_of_max_over_time" => F::TsOfMaxOverTime,
        "ts_of_min_over_time" => F::TsOfMinOverTime,
        "ts_of_last_over_time" => F::TsOfLastOverTime,
        "ts_of_first_over_time" => F::TsOfFirstOverTime,
        _ => return None,
    })
}

/// A range function call with its scalar parameters evaluated: turns one series' samples into
/// its step column. The same kernel serves streamed selectors and materialized range vectors
/// (subqueries).
#[derive(Debug, Clone)]
pub(crate) struct RangeCall {
    f: F,
    /// First scalar parameter per step (quantile, prediction horizon, smoothing factor).
    p1: Option<Vec<f64>>,
    /// Second scalar parameter per step (trend factor).
    p2: Option<Vec<f64>>,
    /// Where the first argument starts in the query, as annotations about it end: the
    /// quantile of `quantile_over_time`, the range argument of `rate` ([`Evaluator::at`]).
    first_at: String,
    /// How far the range argument reads past its windows (`anchored`, `smoothed`).
    reach: RangeReach,
    /// The Prometheus release whose answers are given where they differ.
    compat: crate::Compat,
}

impl RangeCall {
    /// Evaluates the scalar arguments of `name(args)` and checks them; returns the call and
    /// its range argument.
    pub(crate) fn prepare<'e>(
        ev: &mut Evaluator<'_>,
        name: &'static str,
        args: &[&'e Expr],
        steps: &Steps,
    ) -> Result<(RangeCall, &'e Expr), PromqlError> {
        let (range_arg, p1, p2) = match name {
            "quantile_over_time" => (args[1], Some(ev.arg_scalar(args[0], steps)?), None),
            "predict_linear" => (args[0], Some(ev.arg_scalar(args[1], steps)?), None),
            "double_exponential_smoothing" => (
                args[0],
                Some(ev.arg_scalar(args[1], steps)?),
                Some(ev.arg_scalar(args[2], steps)?),
            ),
            _ => (args[0], None, None),
        };
        let Some(f) = kind(name) else {
            return Err(PromqlError::Execution(format!("unknown function {name}")));
        };
        // A subquery reaches the function as a selector Prometheus builds without a position,
        // so annotations about it point at the query's start.
        let first_at = match args.first() {
            Some(a) if matches!(unwrap_parens(a), Expr::Subquery(_)) => " (1:1)".to_string(),
            Some(a) => ev.at(a),
            None => String::new(),
        };
        let reach = match unwrap_parens(range_arg) {
            Expr::Matrix(ms) => RangeReach::of(&ms.selector, ev.opts.lookback_delta_ms),
            _ => RangeReach::Window,
        };
        Ok((
            RangeCall {
                f,
                p1,
                p2,
                first_at,
                reach,
                compat: ev.opts.compat,
            },
            range_arg,
        ))
    }

    /// How far the range argument reads past its windows: each step's samples are those of
    /// its span (see [`RangeReach`]).
    pub(crate) fn reach(&self) -> RangeReach {
        self.reach
    }

    /// Whether the result keeps the metric name (`last_over_time`, `first_over_time` act like
    /// an offset).
    pub(crate) fn keeps_name(&self) -> bool {
        matches!(self.f, F::LastOverTime | F::FirstOverTime)
    }

    /// The error `double_exponential_smoothing` owes a series (samples `ts`, stale markers
    /// removed): Prometheus checks the factors each time it runs the function, which is at
    /// every step whose window holds a sample, smoothing factor first.
    pub(crate) fn param_error(&self, ts: &[i64], ends: &[i64], range: i64) -> Option<String> {
        if self.f != F::DoubleExponentialSmoothing {
            return None;
        }
        let (sf, tf) = (self.p1.as_deref()?, self.p2.as_deref()?);
        // As Prometheus compares them: a NaN factor is no error (its answer is NaN).
        let bad = |x: f64| x <= 0.0 || x >= 1.0;
        if !sf.iter().chain(tf).any(|&x| bad(x)) {
            return None;
        }
        let mut err = None;
        for_each_window(ts, ends, range, |i, lo, hi| {
            if err.is_some() || hi <= lo {
                return;
            }
            if bad(sf[i]) {
                err = Some(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                    format_fixed(sf[i], 6)
                ));
            } else if bad(tf[i]) {
                err = Some(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                    format_fixed(tf[i], 6)
                ));
            }
        });
        err
    }

    /// Warnings owed once some series was selected (an out-of-range quantile).
    pub(crate) fn warn_params(&self, ev: &mut Evaluator<'_>) {
        if self.f == F::QuantileOverTime {
            ev.check_quantile_param(self.p1.as_deref().unwrap_or(&[]), &self.first_at);
        }
    }

    /// The info annotation `rate`/`increase` owe a series whose name does not look like a
    /// counter's, when the series produced a value.
    pub(crate) fn counter_note(&self, labels: &Labels, out: &[f64]) -> Option<String> {
        if !matches!(self.f, F::Rate | F::Increase) {
            return None;
        }
        let metric = labels.get("__name__")?;
        if ["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|x| metric.ends_with(x))
            || out.iter().all(|x| is_absent(*x))
        {
            return None;
        }
        Some(format!(
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"{metric}\"{}",
            self.first_at
        ))
    }

    /// Fills `out[i]` with the function over step `i`'s window `(ends[i] - range, ends[i]]` of
    /// one series' samples (sorted, stale markers removed), for every step whose window holds
    /// a result; the other entries are left as they are (absent). One pass: the window's two
    /// ends only move forward while ends increase.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn column(
        &self,
        ts: &[i64],
        vs: &[f64],
        ends: &[i64],
        range: i64,
        steps: &Steps,
        buf: &mut Vec<f64>,
        out: &mut [f64],
    ) {
        if self.reach.is_extended() {
            self.extended_column(ts, vs, ends, range, out);
            return;
        }
        if matches!(self.f, F::Rate | F::Increase | F::Delta) {
            extrapolated_column(self.f, ts, vs, ends, range, out);
            return;
        }
        let (p1, p2) = (self.p1.as_deref(), self.p2.as_deref());
        // Counter resets are rare: find them once per series instead of once per window.
        let resets = if self.f == F::Resets {
            counter_resets(vs)
        } else {
            Vec::new()
        };
        for_each_window(ts, ends, range, |i, lo, hi| {
            if hi <= lo {
                return;
            }
            let ts = &ts[lo..hi];
            let vs = &vs[lo..hi];
            // The resets inside the window: at positions lo+1..hi.
            let in_window = || {
                let a = resets.partition_point(|&j| j <= lo);
                let b = resets.partition_point(|&j| j < hi);
                &resets[a..b]
            };
            let r = match self.f {
                F::Rate | F::Increase | F::Delta => {
                    unreachable!("extrapolating functions take the columnar kernel")
                }
                F::Irate => instant_delta(ts, vs, true),
                F::Idelta => instant_delta(ts, vs, false),
                F::Resets => Some(in_window().len() as f64),
                F::Changes => Some(
                    vs.windows(2)
                        .filter(|w| !(w[1] == w[0] || (w[1].is_nan() && w[0].is_nan())))
                        .count() as f64,
                ),
                F::Deriv => (ts.len() >= 2).then(|| linear_regression(ts, vs, ts[0]).0),
                F::PredictLinear => (ts.len() >= 2).then(|| {
                    let dur = p1.map_or(0.0, |p| p[i]);
                    let (slope, intercept) = linear_regression(ts, vs, steps.t(i));
                    slope * dur + intercept
                }),
                F::DoubleExponentialSmoothing => {
                    let sf = p1.map_or(0.5, |p| p[i]);
                    let tf = p2.map_or(0.5, |p| p[i]);
                    double_exp(vs, sf, tf)
                }
                F::AvgOverTime => Some(avg(vs)),
                F::SumOverTime => {
                    let (mut s, mut c) = (0.0, 0.0);
                    for &x in vs {
                        (s, c) = kahan_inc(x, s, c);
                    }
                    Some(s + c)
                }
                F::CountOverTime => Some(vs.len() as f64),
                F::MinOverTime => Some(extreme(vs, |cur, acc| cur < acc)),
                F::MaxOverTime => Some(extreme(vs, |cur, acc| cur > acc)),
                F::StddevOverTime => Some(variance(vs).sqrt()),
                F::StdvarOverTime => Some(variance(vs)),
                F::LastOverTime => Some(vs[vs.len() - 1]),
                F::FirstOverTime => Some(vs[0]),
                F::PresentOverTime => Some(1.0),
                F::QuantileOverTime => {
                    buf.clear();
                    buf.extend_from_slice(vs);
                    sort_floats(buf);
                    Some(quantile_sorted(p1.map_or(f64::NAN, |p| p[i]), buf))
                }
                // Prometheus 3.14 answers NaN for a window holding one; 3.5 sorted it first.
                F::MadOverTime if self.compat.at_least_3_14() && vs.iter().any(|x| x.is_nan()) => {
                    Some(f64::NAN)
                }
                F::MadOverTime => {
                    buf.clear();
                    buf.extend_from_slice(vs);
                    sort_floats(buf);
                    let median = quantile_sorted(0.5, buf);
                    for x in buf.iter_mut() {
                        *x = (*x - median).abs();
                    }
                    sort_floats(buf);
                    Some(quantile_sorted(0.5, buf))
                }
                F::TsOfMaxOverTime => Some(ts_of_extreme(ts, vs, |cur, acc| cur >= acc)),
                F::TsOfMinOverTime => Some(ts_of_extreme(ts, vs, |cur, acc| cur <= acc)),
                F::TsOfLastOverTime => Some(ts[ts.len() - 1] as f64 / 1000.0),
                F::TsOfFirstOverTime => Some(ts[0] as f64 / 1000.0),
            };
            if let Some(x) = r {
                out[i] = x;
            }
        });
    }
}

/// Calls `f(step, lo, hi)` with the index range of each step's window `(end - range, end]`
/// over sorted `ts`, sliding two indices forward (restarting if an end goes backwards).
pub(crate) fn for_each_window(
    ts: &[i64],
    ends: &[i64],
    range: i64,
    mut f: impl FnMut(usize, usize, usize),
) {
    let (mut lo, mut hi) = (0usize, 0usize);
    let (mut lo_move, mut hi_move) = (0usize, 0usize);
    let mut prev_end = i64::MIN;
    for (i, &end) in ends.iter().enumerate() {
        if end < prev_end {
            lo = 0;
            hi = 0;
        }
        prev_end = end;
        let start = end.saturating_sub(range);
        hi = advance_past(ts, hi, end, &mut hi_move);
        lo = advance_past(ts, lo, start, &mut lo_move).min(hi);
        f(i, lo, hi);
    }
}

/// The first index from `i` on whose timestamp is past `limit` (`ts` sorted), trying first
/// the index `*guess` samples on: windows of regular samples move as far each step as the step
/// before, and checking that guess costs two compares and one well-predicted branch where a
/// loop over the samples mispredicts at every step's exit. `*guess` becomes this step's move.
#[inline(always)]
pub(crate) fn advance_past(ts: &[i64], i: usize, limit: i64, guess: &mut usize) -> usize {
    let j = i + *guess;
    if j <= ts.len() && (j == i || ts[j - 1] <= limit) && ts.get(j).is_none_or(|&t| t > limit) {
        return j;
    }
    // Otherwise gallop: the first step of an instant query over a long range moves hundreds
    // of samples at once, where a scan would test each.
    let rest = &ts[i.min(ts.len())..];
    let mut bound = 1;
    while bound < rest.len() && rest[bound - 1] <= limit {
        bound *= 2;
    }
    let from = bound / 2;
    let to = bound.min(rest.len());
    let k = i + from + rest[from..to].partition_point(|&t| t <= limit);
    *guess = k - i;
    k
}

/// Evaluates a range function at every step: streamed when its argument is a range
/// selector, over the materialized range vector otherwise (subqueries).
pub(crate) fn call(
    ev: &mut Evaluator<'_>,
    name: &'static str,
    args: &[&Expr],
    steps: &Steps,
) -> Result<Val, PromqlError> {
    let (rc, range_arg) = RangeCall::prepare(ev, name, args, steps)?;
    if let Expr::Matrix(ms) = unwrap_parens(range_arg)
        && !ev.materialize
    {
        let kernel = ev.range_kernel(rc, ms, steps)?;
        return Ok(Val::Vector(ev.collect_columns(&ms.selector, &kernel)?));
    }
    let rv = ev.arg_range(range_arg, steps)?;
    if !rv.series.is_empty() {
        rc.warn_params(ev);
    }
    let n = steps.n;
    let mut out = Vec::with_capacity(rv.series.len());
    let mut buf: Vec<f64> = Vec::new();
    for s in &rv.series {
        // A series' windows over a long subquery can take a while each.
        ev.check_deadline("query execution")?;
        if let Some(msg) = rc.param_error(&s.ts, &rv.ends, rv.range) {
            return Err(PromqlError::Execution(msg));
        }
        let mut v = vec![absent(); n];
        rc.column(&s.ts, &s.v, &rv.ends, rv.range, steps, &mut buf, &mut v);
        let mut h = None;
        if !s.h.is_empty() {
            let mut notes = Notes::default();
            let name = s.labels.get("__name__").unwrap_or("");
            h = rc.hist_column(
                name,
                (&s.ts, &s.v),
                (&s.hts, &s.h),
                &rv.ends,
                rv.range,
                &mut v,
                &mut notes,
            );
            notes.warnings.into_iter().for_each(|w| ev.warn(w));
            notes.info.into_iter().for_each(|w| ev.note_info(w));
        }
        if let Some(note) = rc.counter_note(&s.labels, &v) {
            ev.note_info(note);
        }
        out.push(Col {
            h,
            labels: s.labels.clone(),
            drop_name: s.drop_name || !rc.keeps_name(),
            v,
        });
    }
    Ok(nonempty(out))
}

/// Positions `j` where a counter reset: `vs[j] < vs[j - 1]`. Most series have none, so a
/// branch-free scan decides that before any position is collected.
fn counter_resets(vs: &[f64]) -> Vec<usize> {
    let mut any = false;
    for j in 1..vs.len() {
        any |= vs[j] < vs[j - 1];
    }
    if !any {
        return Vec::new();
    }
    (1..vs.len()).filter(|&j| vs[j] < vs[j - 1]).collect()
}

/// Go's `time.Duration.Seconds()` of a duration of `ms` milliseconds: whole seconds plus the
/// nanosecond remainder divided by 1e9, which for ranges that are not whole seconds can differ
/// in the last bit from `ms / 1000`. `rate` divides by it.
fn duration_seconds(ms: i64) -> f64 {
    let (sec, rem_ms) = (ms / 1000, ms % 1000);
    sec as f64 + (rem_ms * 1_000_000) as f64 / 1e9
}

/// Steps per block of [`extrapolated_column`]: windows are summarized on the stack a block at
/// a time, then the block's arithmetic runs as one straight loop the compiler vectorizes (the
/// seven divisions per window are what a scalar loop waits on).
const BLOCK: usize = 64;

/// Window summaries of up to [`BLOCK`] steps that hold at least two samples.
struct WindowBlock {
    len: usize,
    step: [u32; BLOCK],
    /// First and last sample timestamps, ms.
    first_t: [i64; BLOCK],
    last_t: [i64; BLOCK],
    /// The window's start and end, ms.
    start: [i64; BLOCK],
    end: [i64; BLOCK],
    /// Samples in the window minus one.
    gaps: [f64; BLOCK],
    first_v: [f64; BLOCK],
    /// Last minus first value, counter resets added back.
    change: [f64; BLOCK],
    out: [f64; BLOCK],
}

impl WindowBlock {
    fn new() -> Self {
        WindowBlock {
            len: 0,
            step: [0; BLOCK],
            first_t: [0; BLOCK],
            last_t: [0; BLOCK],
            start: [0; BLOCK],
            end: [0; BLOCK],
            gaps: [0.0; BLOCK],
            first_v: [0.0; BLOCK],
            change: [0.0; BLOCK],
            out: [0.0; BLOCK],
        }
    }
}

/// `rate`/`increase`/`delta` of one series at every step, extrapolated towards each window's
/// edges by Prometheus 3's rules, into `out` (steps whose window holds fewer than two samples
/// are left as they are). Every window's operations are the same IEEE operations in the same
/// order as Prometheus's `extrapolatedRate`, so results are bit-identical; only the loop
/// shape differs.
fn extrapolated_column(f: F, ts: &[i64], vs: &[f64], ends: &[i64], range: i64, out: &mut [f64]) {
    let counter = matches!(f, F::Rate | F::Increase);
    let k = Extrapolation {
        counter,
        per_second: f == F::Rate,
        range_seconds: duration_seconds(range),
    };
    // Counter resets are rare: find them once per series instead of once per window.
    let resets = if counter {
        counter_resets(vs)
    } else {
        Vec::new()
    };
    let mut b = WindowBlock::new();
    for_each_window(ts, ends, range, |i, lo, hi| {
        if hi < lo + 2 {
            return;
        }
        let mut change = vs[hi - 1] - vs[lo];
        if !resets.is_empty() {
            // The resets inside the window: at positions lo+1..hi, added in order.
            let a = resets.partition_point(|&j| j <= lo);
            let z = resets.partition_point(|&j| j < hi);
            for &j in &resets[a..z] {
                change += vs[j - 1];
            }
        }
        let n = b.len;
        b.step[n] = i as u32;
        b.first_t[n] = ts[lo];
        b.last_t[n] = ts[hi - 1];
        b.end[n] = ends[i];
        b.start[n] = ends[i].saturating_sub(range);
        b.gaps[n] = (hi - lo - 1) as f64;
        b.first_v[n] = vs[lo];
        b.change[n] = change;
        b.len += 1;
        if b.len == BLOCK {
            k.flush(&mut b, out);
        }
    });
    k.flush(&mut b, out);
}

/// What the extrapolation of a block depends on besides its windows.
#[derive(Clone, Copy)]
struct Extrapolation {
    /// `rate`/`increase`: never extrapolate below zero.
    counter: bool,
    /// `rate`: divide by the range in seconds.
    per_second: bool,
    range_seconds: f64,
}

impl Extrapolation {
    /// Computes the block's results and writes them to their steps in `out`.
    fn flush(self, b: &mut WindowBlock, out: &mut [f64]) {
        let n = b.len;
        if n == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.block_avx2(b) };
        } else {
            self.block(b);
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.block(b);
        for (&i, &x) in b.step[..n].iter().zip(&b.out[..n]) {
            out[i as usize] = x;
        }
        b.len = 0;
    }

    /// [`Self::block_body`] for the baseline CPU: the twin the AVX2 build is held to.
    #[inline(never)]
    fn block(self, b: &mut WindowBlock) {
        self.block_body(b);
    }

    /// [`Self::block_body`] with AVX2: four windows per vector division.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn block_avx2(self, b: &mut WindowBlock) {
        self.block_body(b);
    }

    /// The extrapolation of every window of the block, branch-free so it vectorizes; each line
    /// is one step of Prometheus's `extrapolatedRate`, in its order.
    #[inline(always)]
    fn block_body(self, b: &mut WindowBlock) {
        let n = b.len.min(BLOCK);
        for k in 0..n {
            let result = b.change[k];
            let first_v = b.first_v[k];
            let mut to_start = b.first_t[k].wrapping_sub(b.start[k]) as f64 / 1000.0;
            let mut to_end = b.end[k].wrapping_sub(b.last_t[k]) as f64 / 1000.0;
            let sampled = b.last_t[k].wrapping_sub(b.first_t[k]) as f64 / 1000.0;
            let avg_gap = sampled / b.gaps[k];
            let threshold = avg_gap * 1.1;
            let half_gap = avg_gap / 2.0;
            to_start = if to_start >= threshold {
                half_gap
            } else {
                to_start
            };
            // A counter cannot have been below zero: do not extrapolate past its zero point.
            let to_zero = sampled * (first_v / result);
            let zero_first = self.counter && result > 0.0 && first_v >= 0.0 && to_zero < to_start;
            to_start = if zero_first { to_zero } else { to_start };
            to_end = if to_end >= threshold {
                half_gap
            } else {
                to_end
            };
            let mut factor = (sampled + to_start + to_end) / sampled;
            if self.per_second {
                factor /= self.range_seconds;
            }
            b.out[k] = result * factor;
        }
    }
}

/// `irate`/`idelta` from the window's last two samples.
fn instant_delta(ts: &[i64], vs: &[f64], rate: bool) -> Option<f64> {
    if ts.len() < 2 {
        return None;
    }
    let k = ts.len();
    let (last, prev) = (vs[k - 1], vs[k - 2]);
    let dt = ts[k - 1] - ts[k - 2];
    if dt == 0 {
        return None;
    }
    let mut d = last - prev;
    if rate && last < prev {
        d = last;
    }
    if rate {
        d /= dt as f64 / 1000.0;
    }
    Some(d)
}

/// Least-squares slope (per second) and intercept at `intercept_t` (ms), with compensated
/// sums.
pub(crate) fn linear_regression(ts: &[i64], vs: &[f64], intercept_t: i64) -> (f64, f64) {
    let init = vs[0];
    let const_y = vs.iter().all(|&y| y == init);
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let n = vs.len() as f64;
    let (mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (&t, &y) in ts.iter().zip(vs) {
        let x = (t as f64 - intercept_t as f64) / 1000.0;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(y, sy, cy);
        (sxy, cxy) = kahan_inc(x * y, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

fn double_exp(vs: &[f64], sf: f64, tf: f64) -> Option<f64> {
    if vs.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, vs[0]);
    let mut b = vs[1] - vs[0];
    for (i, &x) in vs.iter().enumerate().skip(1) {
        let xs = sf * x;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = xs + y;
    }
    Some(s1)
}

/// Mean with compensated summation, switching to an incremental mean if the sum overflows.
fn avg(vs: &[f64]) -> f64 {
    let (mut sum, mut mean, mut c) = (0.0, 0.0, 0.0);
    let mut count = 0.0;
    let mut incremental = false;
    for &x in vs {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_inc(x, sum, c);
            if count == 1.0 || !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(x / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// Population variance, Welford's method with compensated sums.
fn variance(vs: &[f64]) -> f64 {
    let (mut count, mut mean, mut cm, mut aux, mut ca) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &x in vs {
        count += 1.0;
        let d = x - (mean + cm);
        (mean, cm) = kahan_inc(d / count, mean, cm);
        (aux, ca) = kahan_inc(d * (x - (mean + cm)), aux, ca);
    }
    (aux + ca) / count
}

/// The value `better` prefers over the running pick; a NaN pick is always replaced.
fn extreme(vs: &[f64], better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut acc = vs[0];
    for &x in &vs[1..] {
        if better(x, acc) || acc.is_nan() {
            acc = x;
        }
    }
    acc
}

fn ts_of_extreme(ts: &[i64], vs: &[f64], better: impl Fn(f64, f64) -> bool) -> f64 {
    let (mut acc, mut at) = (vs[0], ts[0]);
    for (&t, &x) in ts.iter().zip(vs).skip(1) {
        if better(x, acc) || acc.is_nan() {
            acc = x;
            at = t;
        }
    }
    at as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The per-window form of the extrapolation, written straight from Prometheus's
    /// `extrapolatedRate`: the reference the columnar kernel is held to.
    fn extrapolated_ref(
        ts: &[i64],
        vs: &[f64],
        range_start: i64,
        range_end: i64,
        counter: bool,
        per_second: bool,
        range: i64,
    ) -> Option<f64> {
        if ts.len() < 2 {
            return None;
        }
        let (first_t, last_t) = (ts[0], ts[ts.len() - 1]);
        let mut result = vs[vs.len() - 1] - vs[0];
        if counter {
            for w in vs.windows(2) {
                if w[1] < w[0] {
                    result += w[0];
                }
            }
        }
        let mut to_start = (first_t - range_start) as f64 / 1000.0;
        let mut to_end = (range_end - last_t) as f64 / 1000.0;
        let sampled = (last_t - first_t) as f64 / 1000.0;
        let avg_gap = sampled / (ts.len() - 1) as f64;
        let threshold = avg_gap * 1.1;
        if to_start >= threshold {
            to_start = avg_gap / 2.0;
        }
        if counter && result > 0.0 && vs[0] >= 0.0 {
            let to_zero = sampled * (vs[0] / result);
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
        if to_end >= threshold {
            to_end = avg_gap / 2.0;
        }
        let mut factor = (sampled + to_start + to_end) / sampled;
        if per_second {
            let d = std::time::Duration::from_millis(range as u64);
            factor /= d.as_secs() as f64 + f64::from(d.subsec_nanos()) / 1e9;
        }
        Some(result * factor)
    }

    fn extrapolating(f: F) -> RangeCall {
        RangeCall {
            f,
            p1: None,
            p2: None,
            first_at: String::new(),
            reach: RangeReach::Window,
            compat: crate::Compat::default(),
        }
    }

    /// Values that stress the extrapolation: counters with resets, zeros, negatives, NaN,
    /// infinities, tiny and huge magnitudes.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => 0.0f64..1e6,
            1 => -1e6f64..1e6,
            1 => Just(0.0),
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(1e-310),
            1 => any::<f64>(),
        ]
    }

    proptest! {
        /// `rate`, `increase` and `delta` through the columnar kernel (as dispatched, and
        /// through the baseline build) equal the per-window reference bit for bit, at every
        /// step, for jittered timestamps, odd ranges and ends that go backwards.
        #[test]
        fn extrapolation_matches_the_per_window_form(
            gaps in proptest::collection::vec(1i64..40_000, 0..300),
            vals in proptest::collection::vec(value(), 300),
            t0 in -1_000_000i64..1_000_000,
            mut ends in proptest::collection::vec(-100_000i64..3_000_000, 1..200),
            range in 1i64..700_000,
            sorted_ends in any::<bool>(),
        ) {
            let mut ts = Vec::with_capacity(gaps.len() + 1);
            let mut t = t0;
            ts.push(t);
            for g in &gaps {
                t += g;
                ts.push(t);
            }
            let vs = &vals[..ts.len()];
            if sorted_ends {
                ends.sort_unstable();
            }
            for f in [F::Rate, F::Increase, F::Delta] {
                let counter = f != F::Delta;
                let mut want = vec![absent(); ends.len()];
                for_each_window(&ts, &ends, range, |i, lo, hi| {
                    let start = ends[i].saturating_sub(range);
                    if let Some(x) = extrapolated_ref(
                        &ts[lo..hi], &vs[lo..hi], start, ends[i], counter, f == F::Rate, range,
                    ) {
                        want[i] = x;
                    }
                });
                let steps = Steps { start: 0, step: 1, n: ends.len() };
                let mut got = vec![absent(); ends.len()];
                extrapolating(f).column(&ts, vs, &ends, range, &steps, &mut Vec::new(), &mut got);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&got), bits(&want), "{:?}", f);
                // The baseline build alone.
                let k = Extrapolation {
                    counter,
                    per_second: f == F::Rate,
                    range_seconds: duration_seconds(range),
                };
                let mut b = WindowBlock::new();
                let mut scalar = vec![absent(); ends.len()];
                for_each_window(&ts, &ends, range, |i, lo, hi| {
                    if hi < lo + 2 || b.len == BLOCK {
                        return;
                    }
                    let n = b.len;
                    let mut change = vs[hi - 1] - vs[lo];
                    if counter {
                        for j in lo + 1..hi {
                            if vs[j] < vs[j - 1] {
                                change += vs[j - 1];
                            }
                        }
                    }
                    b.step[n] = i as u32;
                    b.first_t[n] = ts[lo];
                    b.last_t[n] = ts[hi - 1];
                    b.start[n] = ends[i].saturating_sub(range);
                    b.end[n] = ends[i];
                    b.gaps[n] = (hi - lo - 1) as f64;
                    b.first_v[n] = vs[lo];
                    b.change[n] = change;
                    b.len += 1;
                });
                let n = b.len;
                k.block(&mut b);
                for (&i, &x) in b.step[..n].iter().zip(&b.out[..n]) {
                    scalar[i as usize] = x;
                }
                for (i, x) in scalar.iter().enumerate() {
                    if !is_absent(*x) {
                        prop_assert_eq!(x.to_bits(), got[i].to_bits(), "baseline build, step {}", i);
                    }
                }
            }
        }
    }

    #[test]
    fn range_seconds_follow_go_durations() {
        // 31.952 s: Go's whole seconds plus nanoseconds / 1e9 differs from 31952 / 1000.
        assert_eq!(duration_seconds(31_952), 31.0 + 952_000_000.0 / 1e9);
        assert_ne!(duration_seconds(31_952), 31_952.0 / 1000.0);
        assert_eq!(duration_seconds(300_000), 300.0);
        assert_eq!(duration_seconds(1), 0.001);
    }

    proptest! {
        /// Every window holds exactly the samples in `(end - range, end]`.
        #[test]
        fn windows_hold_their_samples(
            mut ts in proptest::collection::vec(0i64..1000, 0..60),
            mut ends in proptest::collection::vec(0i64..1100, 1..20),
            range in 1i64..300,
        ) {
            ts.sort_unstable();
            ts.dedup();
            ends.sort_unstable();
            for_each_window(&ts, &ends, range, |i, lo, hi| {
                let want: Vec<i64> =
                    ts.iter().copied().filter(|&x| x > ends[i] - range && x <= ends[i]).collect();
                assert_eq!(&ts[lo..hi], want.as_slice());
            });
        }
    }
}
