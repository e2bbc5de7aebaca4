//! Functions over range vectors: each series' windows are visited in one pass over its sorted
//! samples, one output value per step.

use promql_parser::parser::Expr;

use super::{kahan_inc, nonempty, quantile_sorted, sort_floats, unwrap_parens};
use crate::labels::Labels;
use crate::promql::error::PromqlError;
use crate::promql::eval::{Col, Evaluator, Steps, Val, absent, is_absent};

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
    name: &'static str,
    /// First scalar parameter per step (quantile, prediction horizon, smoothing factor).
    p1: Option<Vec<f64>>,
    /// Second scalar parameter per step (trend factor).
    p2: Option<Vec<f64>>,
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
        if name == "double_exponential_smoothing" {
            let (sf, tf) = (p1.as_deref().unwrap_or(&[]), p2.as_deref().unwrap_or(&[]));
            if let Some(&s) = sf.iter().find(|&&s| s <= 0.0 || s >= 1.0 || s.is_nan()) {
                return Err(PromqlError::Execution(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {s:.6}"
                )));
            }
            if let Some(&t) = tf.iter().find(|&&t| t <= 0.0 || t >= 1.0 || t.is_nan()) {
                return Err(PromqlError::Execution(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {t:.6}"
                )));
            }
        }
        let Some(f) = kind(name) else {
            return Err(PromqlError::Execution(format!("unknown function {name}")));
        };
        Ok((RangeCall { f, name, p1, p2 }, range_arg))
    }

    /// The function's name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the result keeps the metric name (`last_over_time`, `first_over_time` act like
    /// an offset).
    pub(crate) fn keeps_name(&self) -> bool {
        matches!(self.f, F::LastOverTime | F::FirstOverTime)
    }

    /// Warnings owed once some series was selected (an out-of-range quantile).
    pub(crate) fn warn_params(&self, ev: &mut Evaluator<'_>) {
        if self.f == F::QuantileOverTime {
            ev.check_quantile_param(self.p1.as_deref().unwrap_or(&[]));
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
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"{metric}\""
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
        let (p1, p2) = (self.p1.as_deref(), self.p2.as_deref());
        // Counter resets are rare: find them once per series instead of once per window.
        let resets: Vec<usize> = if matches!(self.f, F::Rate | F::Increase | F::Resets) {
            (1..vs.len()).filter(|&j| vs[j] < vs[j - 1]).collect()
        } else {
            Vec::new()
        };
        let all_vs = vs;
        for_each_window(ts, ends, range, |i, lo, hi| {
            if hi <= lo {
                return;
            }
            let ts = &ts[lo..hi];
            let vs = &vs[lo..hi];
            let end = ends[i];
            // The resets inside the window: at positions lo+1..hi.
            let in_window = || {
                let a = resets.partition_point(|&j| j <= lo);
                let b = resets.partition_point(|&j| j < hi);
                &resets[a..b]
            };
            let counter_adj = || in_window().iter().map(|&j| all_vs[j - 1]);
            let r = match self.f {
                F::Rate => {
                    let start = end.saturating_sub(range);
                    extrapolated(ts, vs, start, end, true, counter_adj(), true)
                }
                F::Increase => {
                    let start = end.saturating_sub(range);
                    extrapolated(ts, vs, start, end, true, counter_adj(), false)
                }
                F::Delta => {
                    let start = end.saturating_sub(range);
                    extrapolated(ts, vs, start, end, false, std::iter::empty(), false)
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
    let mut prev_end = i64::MIN;
    for (i, &end) in ends.iter().enumerate() {
        if end < prev_end {
            lo = 0;
            hi = 0;
        }
        prev_end = end;
        let start = end.saturating_sub(range);
        while hi < ts.len() && ts[hi] <= end {
            hi += 1;
        }
        while lo < hi && ts[lo] <= start {
            lo += 1;
        }
        f(i, lo, hi);
    }
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
    if let Expr::MatrixSelector(ms) = unwrap_parens(range_arg) {
        let kernel = ev.range_kernel(rc, ms, steps)?;
        return Ok(Val::Vector(ev.collect_columns(&ms.vs, &kernel)?));
    }
    let rv = ev.arg_range(range_arg, steps)?;
    if !rv.series.is_empty() {
        rc.warn_params(ev);
    }
    let n = steps.n;
    let mut out = Vec::with_capacity(rv.series.len());
    let mut buf: Vec<f64> = Vec::new();
    for s in &rv.series {
        let mut v = vec![absent(); n];
        rc.column(&s.ts, &s.v, &rv.ends, rv.range, steps, &mut buf, &mut v);
        if let Some(note) = rc.counter_note(&s.labels, &v) {
            ev.note_info(note);
        }
        out.push(Col {
            labels: s.labels.clone(),
            drop_name: s.drop_name || !rc.keeps_name(),
            v,
        });
    }
    Ok(nonempty(out))
}

/// `rate`/`increase`/`delta`: the change over the window, extrapolated towards the window's
/// edges (Prometheus 3 rules), per second for `rate`. `resets` are the values just before each
/// counter reset in the window, in order (none for `delta`); each is added back as Prometheus
/// adds it while walking the window.
fn extrapolated(
    ts: &[i64],
    vs: &[f64],
    range_start: i64,
    range_end: i64,
    counter: bool,
    resets: impl Iterator<Item = f64>,
    per_second: bool,
) -> Option<f64> {
    if ts.len() < 2 {
        return None;
    }
    let (first_t, last_t) = (ts[0], ts[ts.len() - 1]);
    let mut result = vs[vs.len() - 1] - vs[0];
    for prev in resets {
        result += prev;
    }
    let mut to_start = (first_t as f64 - range_start as f64) / 1000.0;
    let mut to_end = (range_end as f64 - last_t as f64) / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_gap = sampled / (ts.len() - 1) as f64;
    let threshold = avg_gap * 1.1;
    if to_start >= threshold {
        to_start = avg_gap / 2.0;
    }
    if counter && result > 0.0 && vs[0] >= 0.0 {
        // A counter cannot have been below zero: do not extrapolate past its zero point.
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
        factor /= (range_end as f64 - range_start as f64) / 1000.0;
    }
    Some(result * factor)
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
