//! `histogram_quantile` over classic histograms: series with an `le` label, grouped by their
//! other labels, one quantile per group and step.

use std::collections::HashMap;

use crate::error::PromqlError;
use crate::eval::{Col, Evaluator, absent, is_absent};
use crate::hist_math;
use gauntlet_engine::go_format::{FloatFormat, format_float};
use gauntlet_engine::histogram::FloatHistogram;
use gauntlet_engine::labels::{Label, Labels};

/// Relative difference below which neighbouring bucket counts count as equal (float noise).
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// Parses an `le` value as Go's `strconv.ParseFloat` would.
fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

/// `histogram_quantile(phi, buckets)` per group and step; `at` holds where the two arguments
/// start in the query ([`Evaluator::at`]).
pub(crate) fn histogram_quantile(
    ev: &mut Evaluator<'_>,
    phi: &[f64],
    cols: Vec<Col>,
    n: usize,
    (phi_at, buckets_at): (String, String),
) -> Vec<Col> {
    // Prometheus checks the quantile at every step, with or without buckets.
    ev.check_quantile_param(phi, &phi_at);
    per_histogram(
        ev,
        cols,
        n,
        true,
        &buckets_at,
        |i, b| bucket_quantile(phi[i], b),
        |i, h| hist_math::quantile(phi[i], h),
    )
}

/// `histogram_quantiles(buckets, label, phi1, phi2, …)` (Prometheus 3.14, experimental): the
/// quantiles `histogram_quantile` gives for each `phi`, each result series labelled `label`
/// with its `phi` as OpenMetrics writes a float (`0.5`, `1.0`, `NaN`). `at` is where the
/// buckets argument starts; each `phi` comes with where it starts. Two results with the same
/// labels at a step fail the query.
pub(crate) fn histogram_quantiles(
    ev: &mut Evaluator<'_>,
    cols: Vec<Col>,
    label: &str,
    phis: Vec<(Vec<f64>, String)>,
    n: usize,
    at: &str,
) -> Result<Vec<Col>, PromqlError> {
    let mut out: Vec<Col> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (phi, phi_at) in phis {
        let quantiles = histogram_quantile(ev, &phi, cols.clone(), n, (phi_at, at.to_string()));
        for q in quantiles {
            for i in (0..n).filter(|&i| !is_absent(q.v[i])) {
                let mut ls: Vec<Label> = q
                    .labels
                    .iter()
                    .filter(|l| l.name != label)
                    .cloned()
                    .collect();
                ls.push(Label::new(label, open_metrics_float(phi[i])));
                ls.sort();
                let labels = Labels::from_sorted(ls);
                let k = *index.entry(labels.clone()).or_insert_with(|| {
                    out.push(Col {
                        labels,
                        drop_name: q.drop_name,
                        v: vec![absent(); n],
                        h: None,
                    });
                    out.len() - 1
                });
                if !is_absent(out[k].v[i]) {
                    return Err(PromqlError::Execution(
                        "vector cannot contain metrics with the same labelset".into(),
                    ));
                }
                out[k].v[i] = q.v[i];
            }
        }
    }
    Ok(out)
}

/// `f` as OpenMetrics writes a float label value: Go's shortest `%g`, with `.0` added to a
/// whole number (`1.0`, `0.25`, `1e+06`, `NaN`, `+Inf`).
fn open_metrics_float(f: f64) -> String {
    let mut s = format_float(f, FloatFormat::G);
    if f.is_finite() && !s.contains(['e', '.']) {
        s.push_str(".0");
    }
    s
}

/// `histogram_fraction(lower, upper, buckets)` per group and step.
pub(crate) fn histogram_fraction(
    ev: &mut Evaluator<'_>,
    lower: &[f64],
    upper: &[f64],
    cols: Vec<Col>,
    n: usize,
    buckets_at: &str,
) -> Vec<Col> {
    let compat = ev.opts.compat;
    let v3_14 = compat.at_least_3_14();
    per_histogram(
        ev,
        cols,
        n,
        false,
        buckets_at,
        |i, b| (bucket_fraction(lower[i], upper[i], b, v3_14), false),
        |i, h| hist_math::fraction(lower[i], upper[i], h, compat),
    )
}

/// Groups classic bucket series by their labels other than `le` and computes `f` over each
/// group's `(upper bound, count)` buckets at each step.
fn per_histogram(
    ev: &mut Evaluator<'_>,
    cols: Vec<Col>,
    n: usize,
    quantile: bool,
    at: &str,
    mut f: impl FnMut(usize, &mut Vec<(f64, f64)>) -> (f64, bool),
    mut native: impl FnMut(usize, &FloatHistogram) -> f64,
) -> Vec<Col> {
    // Native histograms answer on their own; a series holding floats as well goes on to the
    // classic grouping with its floats.
    let mut natives: Vec<Col> = Vec::new();
    let mut cols = cols;
    for c in &mut cols {
        let Some(hs) = c.h.take() else { continue };
        let name = c.labels.get("__name__").unwrap_or("").to_string();
        let mut v = vec![absent(); n];
        for (i, h) in hs.iter().enumerate() {
            let Some(h) = h else { continue };
            v[i] = native(i, h);
            if h.sum.is_nan() {
                let msg = if !quantile {
                    format!(
                        "PromQL info: input to histogram_fraction has NaN observations, which are excluded from all fractions for metric name {name:?}{at}"
                    )
                } else if v[i].is_nan() {
                    format!(
                        "PromQL info: input to histogram_quantile has NaN observations, result is NaN for metric name {name:?}{at}"
                    )
                } else {
                    format!(
                        "PromQL info: input to histogram_quantile has NaN observations, result is skewed higher for metric name {name:?}{at}"
                    )
                };
                ev.note_info(msg);
            }
        }
        natives.push(Col {
            labels: c.labels.clone(),
            drop_name: true,
            v,
            h: None,
        });
    }
    cols.retain(|c| c.v.iter().any(|x| !is_absent(*x)));
    let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (ci, c) in cols.iter().enumerate() {
        let Some(le) = c.labels.get("le").and_then(parse_le) else {
            let name = c.labels.get("__name__").unwrap_or("");
            let msg = format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of \"{}\" for metric name \"{name}\"{at}",
                c.labels.get("le").unwrap_or("")
            );
            if !ev.warnings.contains(&msg) {
                ev.warnings.push(msg);
            }
            continue;
        };
        let key = Labels::from_sorted(
            c.labels
                .iter()
                .filter(|l| l.name != "le")
                .cloned()
                .collect::<Vec<Label>>(),
        );
        let gi = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push((le, ci));
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (labels, members) in groups {
        let mut v = vec![absent(); n];
        let mut forced = false;
        for (i, slot) in v.iter_mut().enumerate() {
            buckets.clear();
            buckets.extend(
                members
                    .iter()
                    .filter(|(_, ci)| !is_absent(cols[*ci].v[i]))
                    .map(|&(le, ci)| (le, cols[ci].v[i])),
            );
            if buckets.is_empty() {
                continue;
            }
            let (q, fixed) = f(i, &mut buckets);
            forced |= fixed;
            *slot = q;
        }
        if forced && quantile {
            let msg = format!(
                "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"{}\"{at}",
                labels.get("__name__").unwrap_or("")
            );
            if !ev.info.contains(&msg) {
                ev.info.push(msg);
            }
        }
        out.push(Col {
            h: None,
            labels,
            drop_name: true,
            v,
        });
    }
    // A classic histogram and a native one of the same labels at the same step: neither
    // answers there.
    if !natives.is_empty() {
        let pos: HashMap<&Labels, usize> = natives
            .iter()
            .enumerate()
            .map(|(k, c)| (&c.labels, k))
            .collect();
        let mut clash: Vec<(usize, usize, String)> = Vec::new();
        for (oi, c) in out.iter().enumerate() {
            if let Some(&k) = pos.get(&c.labels) {
                clash.push((oi, k, c.labels.get("__name__").unwrap_or("").to_string()));
            }
        }
        for (oi, k, name) in clash {
            let mut any = false;
            for i in 0..n {
                if !is_absent(out[oi].v[i]) && !is_absent(natives[k].v[i]) {
                    out[oi].v[i] = absent();
                    natives[k].v[i] = absent();
                    any = true;
                }
            }
            if any {
                ev.warn(format!(
                    "PromQL warning: vector contains a mix of classic and native histograms for metric name {name:?}{at}"
                ));
            }
        }
    }
    natives.extend(out);
    let mut out = natives;
    out.retain(|c| c.v.iter().any(|x| !is_absent(*x)));
    out
}

/// The `q`-quantile of cumulative `(upper bound, count)` buckets, and whether the counts had
/// to be forced monotonic.
fn bucket_quantile(q: f64, b: &mut Vec<(f64, f64)>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    if b.last().map(|x| x.0) != Some(f64::INFINITY) {
        return (f64::NAN, false);
    }
    coalesce(b);
    let mut forced = false;
    let mut prev = b[0].1;
    for x in b.iter_mut().skip(1) {
        let cur = x.1;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, SMALL_DELTA_TOLERANCE) {
            x.1 = prev;
            continue;
        }
        if cur < prev {
            x.1 = prev;
            forced = true;
            continue;
        }
        prev = cur;
    }
    if b.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = b[b.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let last = b.len() - 1;
    let idx = b[..last].partition_point(|x| x.1 < rank);
    if idx == last {
        return (b[last - 1].0, forced);
    }
    if idx == 0 && b[0].0 <= 0.0 {
        return (b[0].0, forced);
    }
    let (mut start, end, mut count) = (0.0, b[idx].0, b[idx].1);
    if idx > 0 {
        start = b[idx - 1].0;
        count -= b[idx - 1].1;
        rank -= b[idx - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}

/// The fraction of observations between `lower` and `upper`, interpolating linearly inside
/// buckets.
///
/// Prometheus 3.14 takes the buckets to start at 0 when the first upper bound is above 0, and
/// lets a bound inside a bucket reaching to -Inf rank at that bucket's end.
fn bucket_fraction(lower: f64, upper: f64, b: &mut Vec<(f64, f64)>, v3_14: bool) -> f64 {
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    if b.last().map(|x| x.0) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    coalesce(b);
    let count = b[b.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, &(ub, c)) in b.iter().enumerate() {
        // The first bucket reaches down to -Inf, so a bound inside it interpolates to NaN,
        // and one inside the +Inf bucket to that bucket's lower rank, as in Prometheus 3.5.
        let lb = if i > 0 {
            b[i - 1].0
        } else if v3_14 && ub > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        let interpolate = |v: f64| {
            if v3_14 && lb == f64::NEG_INFINITY {
                return c;
            }
            rank + (c - rank) * (v - lb) / (ub - lb)
        };
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = c;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// Merges buckets with equal upper bounds (e.g. `le="1"` and `le="1.0"`), adding counts.
fn coalesce(b: &mut Vec<(f64, f64)>) {
    let mut k = 0;
    for j in 0..b.len() {
        if k > 0 && b[k - 1].0 == b[j].0 {
            b[k - 1].1 += b[j].1;
        } else {
            b[k] = b[j];
            k += 1;
        }
    }
    b.truncate(k);
}

/// Whether `a` and `b` differ by less than `eps` relative to their magnitude.
fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < eps * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < eps
}
