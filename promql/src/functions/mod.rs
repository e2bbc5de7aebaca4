//! PromQL functions: dispatch by name, and the numeric helpers shared with aggregations.

pub(crate) mod go_sort;
mod histogram;
mod info;
pub(crate) mod instant;
mod labels;
pub(crate) mod range;

pub(crate) use instant::InstantFn;
pub(crate) use range::{RangeCall, for_each_window, is_range_function};

use crate::hist_math;
use crate::parser::{Call, Expr, MatchOp, Matcher};

use super::error::PromqlError;
use super::eval::{Col, Evaluator, RangeVec, Steps, Val, absent, convert_matcher};
use gauntlet_engine::labels::Labels;

/// Kahan–Babuška compensated addition as Prometheus does it: returns the new sum and
/// compensation; an infinite sum resets the compensation.
#[inline]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Sorts floats ascending with NaN first, as Go's `sort.Float64s`.
pub(crate) fn sort_floats(v: &mut [f64]) {
    v.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
}

/// The `q`-quantile of sorted, non-empty `v`, interpolating between neighbours.
pub(crate) fn quantile_sorted(q: f64, v: &[f64]) -> f64 {
    if v.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let w = rank - rank.floor();
    v[lower as usize] * (1.0 - w) + v[upper as usize] * w
}

pub(crate) fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// Evaluation helpers for arguments of a known type.
impl Evaluator<'_> {
    pub(crate) fn arg_vector(&mut self, e: &Expr, steps: &Steps) -> Result<Vec<Col>, PromqlError> {
        match self.eval(e, steps)? {
            Val::Vector(v) => Ok(v),
            other => Err(PromqlError::Execution(format!(
                "expected instant vector argument, got {}",
                other.type_name()
            ))),
        }
    }

    pub(crate) fn arg_scalar(&mut self, e: &Expr, steps: &Steps) -> Result<Vec<f64>, PromqlError> {
        match self.eval(e, steps)? {
            Val::Scalar(v) => Ok(v),
            other => Err(PromqlError::Execution(format!(
                "expected scalar argument, got {}",
                other.type_name()
            ))),
        }
    }

    fn arg_string(&mut self, e: &Expr, steps: &Steps) -> Result<String, PromqlError> {
        match self.eval(e, steps)? {
            Val::Str(s) => Ok(s),
            other => Err(PromqlError::Execution(format!(
                "expected string argument, got {}",
                other.type_name()
            ))),
        }
    }

    pub(crate) fn arg_range(&mut self, e: &Expr, steps: &Steps) -> Result<RangeVec, PromqlError> {
        match self.eval(e, steps)? {
            Val::Range(r) => Ok(r),
            other => Err(PromqlError::Execution(format!(
                "expected range vector argument, got {}",
                other.type_name()
            ))),
        }
    }
}

/// Evaluates a function call at every step.
pub(crate) fn call(ev: &mut Evaluator<'_>, c: &Call, steps: &Steps) -> Result<Val, PromqlError> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.iter().collect();
    let n = steps.n;
    match name {
        "time" => Ok(Val::Scalar(
            (0..n).map(|i| steps.t(i) as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
        // Experimental: the query's own start, end, range and step, in seconds.
        "start" => Ok(Val::Scalar(vec![ev.q_start as f64 / 1000.0; n])),
        "end" => Ok(Val::Scalar(vec![ev.q_end as f64 / 1000.0; n])),
        "range" => Ok(Val::Scalar(vec![
            (ev.q_end - ev.q_start) as f64 / 1000.0;
            n
        ])),
        "step" => Ok(Val::Scalar(vec![ev.q_step as f64 / 1000.0; n])),
        "min_of" | "max_of" => {
            let a = ev.arg_scalar(args[0], steps)?;
            let b = ev.arg_scalar(args[1], steps)?;
            Ok(Val::Scalar(
                a.iter()
                    .zip(b.iter())
                    .map(|(&x, &y)| {
                        if x.is_nan() || y.is_nan() {
                            f64::NAN
                        } else if name == "min_of" {
                            x.min(y)
                        } else {
                            x.max(y)
                        }
                    })
                    .collect(),
            ))
        }
        "vector" => {
            let v = ev.arg_scalar(args[0], steps)?;
            Ok(Val::Vector(vec![Col {
                h: None,
                labels: Labels::empty(),
                drop_name: false,
                v,
            }]))
        }
        "scalar" => {
            let cols = ev.arg_vector(args[0], steps)?;
            let mut out = vec![f64::NAN; n];
            for (i, slot) in out.iter_mut().enumerate() {
                // Only float samples count: a histogram sample is passed over.
                let mut present = cols
                    .iter()
                    .filter(|c| c.present(i) && c.hist(i).is_none())
                    .map(|c| c.v[i]);
                if let (Some(x), None) = (present.next(), present.next()) {
                    *slot = x;
                }
            }
            Ok(Val::Scalar(out))
        }
        "timestamp" => {
            let mut cols = match unwrap_parens(args[0]) {
                Expr::Vector(vs) => ev.vector_selector(vs, steps, true)?,
                other => {
                    let mut cols = ev.arg_vector(other, steps)?;
                    for c in &mut cols {
                        for i in 0..n {
                            if c.present(i) {
                                c.v[i] = steps.t(i) as f64 / 1000.0;
                            }
                        }
                        c.h = None;
                    }
                    cols
                }
            };
            cols.iter_mut().for_each(|c| c.drop_name = true);
            Ok(Val::Vector(cols))
        }
        "absent" => {
            let cols = ev.arg_vector(args[0], steps)?;
            let labels = absent_labels(args[0]);
            let v = (0..n)
                .map(|i| {
                    if cols.iter().all(|c| !c.present(i)) {
                        1.0
                    } else {
                        absent()
                    }
                })
                .collect();
            Ok(nonempty(vec![Col {
                h: None,
                labels,
                drop_name: false,
                v,
            }]))
        }
        "absent_over_time" => {
            let rv = ev.arg_range(args[0], steps)?;
            let mut v = vec![1.0; n];
            for s in &rv.series {
                rv.windows(s, |i, lo, hi| {
                    if hi > lo {
                        v[i] = absent();
                    }
                });
                for_each_window(&s.hts, &rv.ends, rv.range, |i, lo, hi| {
                    if hi > lo {
                        v[i] = absent();
                    }
                });
            }
            Ok(nonempty(vec![Col {
                h: None,
                labels: absent_labels(args[0]),
                drop_name: false,
                v,
            }]))
        }
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            // Prometheus 3.14 warns that a sort over more than one step sorts nothing: the
            // result is ordered by labels.
            if n > 1 && ev.opts.compat.at_least_3_14() {
                ev.warn(format!(
                    "PromQL warning: sort is ineffective for range queries since results are always ordered by labels ({})",
                    ev.positions.line_col(c.span.start)
                ));
            }
            let cols = ev.arg_vector(args[0], steps)?;
            let mut names = Vec::new();
            for a in &args[1..] {
                names.push(ev.arg_string(a, steps)?);
            }
            Ok(Val::Vector(labels::sort(name, cols, &names, n)))
        }
        "label_replace" | "label_join" => {
            let cols = ev.arg_vector(args[0], steps)?;
            let mut strs = Vec::new();
            for a in &args[1..] {
                strs.push(ev.arg_string(a, steps)?);
            }
            let cols = if name == "label_replace" {
                labels::label_replace(cols, &strs)?
            } else {
                labels::label_join(cols, &strs)?
            };
            Ok(Val::Vector(cols))
        }
        "histogram_quantile" => {
            let phi = ev.arg_scalar(args[0], steps)?;
            let cols = ev.arg_vector(args[1], steps)?;
            let at = (ev.at(args[0]), ev.at(args[1]));
            Ok(Val::Vector(histogram::histogram_quantile(
                ev, &phi, cols, n, at,
            )))
        }
        "histogram_quantiles" => {
            let cols = ev.arg_vector(args[0], steps)?;
            let label = ev.arg_string(args[1], steps)?;
            let mut phis = Vec::with_capacity(args.len() - 2);
            for a in &args[2..] {
                phis.push((ev.arg_scalar(a, steps)?, ev.at(a)));
            }
            let at = ev.at(args[0]);
            Ok(Val::Vector(histogram::histogram_quantiles(
                ev, cols, &label, phis, n, &at,
            )?))
        }
        "histogram_fraction" => {
            let lower = ev.arg_scalar(args[0], steps)?;
            let upper = ev.arg_scalar(args[1], steps)?;
            let cols = ev.arg_vector(args[2], steps)?;
            let at = ev.at(args[2]);
            Ok(Val::Vector(histogram::histogram_fraction(
                ev, &lower, &upper, cols, n, &at,
            )))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            // Native histograms only; float samples yield nothing.
            let cols = ev.arg_vector(args[0], steps)?;
            let mut out = Vec::with_capacity(cols.len());
            for c in cols {
                let Some(h) = c.h else { continue };
                let v: Vec<f64> = h
                    .iter()
                    .map(|x| match x {
                        None => absent(),
                        Some(h) => match name {
                            "histogram_count" => h.count,
                            "histogram_sum" => h.sum,
                            "histogram_avg" => hist_math::avg(h),
                            "histogram_stddev" => hist_math::stddev(h),
                            _ => hist_math::stdvar(h),
                        },
                    })
                    .collect();
                out.push(Col {
                    labels: c.labels,
                    drop_name: true,
                    v,
                    h: None,
                });
            }
            Ok(Val::Vector(out))
        }
        "info" => info::info(ev, args[0], args.get(1).copied(), steps),
        _ if range::is_range_function(name) => range::call(ev, name, &args, steps),
        _ => instant::call(ev, name, &args, steps),
    }
}

/// Drops series with no value at any step.
pub(crate) fn nonempty(cols: Vec<Col>) -> Val {
    Val::Vector(
        cols.into_iter()
            .filter(|c| (0..c.v.len()).any(|i| c.present(i)))
            .collect(),
    )
}

/// The labels `absent` reports: the selector's equality matchers (other than the name), unless
/// a label is matched for equality twice.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unwrap_parens(e) {
        Expr::Vector(vs) => vs,
        Expr::Matrix(ms) => &ms.selector,
        _ => return Labels::empty(),
    };
    // In matcher order, except that negative matchers which match the empty value come last:
    // Prometheus's storage sorts the selector's matchers that way (in place) before absent()
    // reads them. The first equality matcher on a label sets it; any other matcher on it (a
    // second equality included) unsets it, and a later first equality sets it again.
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut set_once: Vec<&str> = Vec::new();
    let negative = |m: &&Matcher| {
        matches!(m.op, MatchOp::NotEqual | MatchOp::NotRegex)
            && convert_matcher(m, None).is_ok_and(|x| x.matches(""))
    };
    let ordered = vs
        .matchers
        .iter()
        .filter(|m| !negative(m))
        .chain(vs.matchers.iter().filter(negative));
    for m in ordered {
        if m.name == "__name__" {
            continue;
        }
        let equal = matches!(m.op, MatchOp::Equal);
        pairs.retain(|(n, _)| *n != m.name);
        if equal && !set_once.contains(&m.name.as_str()) {
            pairs.push((m.name.clone(), m.value.clone()));
            set_once.push(&m.name);
        }
    }
    pairs.retain(|(_, v)| !v.is_empty());
    Labels::from_pairs(pairs)
}
