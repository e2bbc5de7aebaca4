//! Aggregation operators over step columns: series are assigned to groups once, then each
//! group's accumulators are updated column by column.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::{Col, Evaluator, Steps, Val, absent, is_absent};
use crate::labels::{Label, Labels};
use crate::promql::error::PromqlError;
use crate::promql::functions::{kahan_inc, quantile_sorted, sort_floats};

/// The labels of the group a series falls in.
fn group_labels(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    match modifier {
        None => Labels::empty(),
        Some(LabelModifier::Include(by)) => Labels::from_sorted(
            labels
                .iter()
                .filter(|l| by.labels.contains(&l.name))
                .cloned()
                .collect(),
        ),
        Some(LabelModifier::Exclude(without)) => Labels::from_sorted(
            labels
                .iter()
                .filter(|l| !super::is_name_label(&l.name) && !without.labels.contains(&l.name))
                .cloned()
                .collect(),
        ),
    }
}

/// The label-set hash `limit_ratio` samples by, as Prometheus's default (string) label
/// representation computes it: xxhash64 over each name and value, each preceded by its length
/// as a uvarint.
fn labels_hash(labels: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(256);
    for l in labels {
        for part in [&l.name, &l.value] {
            crate::encoding::put_uvarint(&mut buf, part.len() as u64);
            buf.extend_from_slice(part.as_bytes());
        }
    }
    xxhash_rust::xxh64::xxh64(&buf, 0)
}

impl Evaluator<'_> {
    pub(crate) fn aggregate(
        &mut self,
        a: &AggregateExpr,
        steps: &Steps,
    ) -> Result<Val, PromqlError> {
        let op = a.op.to_string();
        let n = steps.n;
        let param = match &a.param {
            Some(p) => Some(self.eval(p, steps)?),
            None => None,
        };
        let cols = match self.eval(&a.expr, steps)? {
            Val::Vector(c) => c,
            other => {
                return Err(PromqlError::Execution(format!(
                    "expected instant vector in aggregation, got {}",
                    other.type_name()
                )));
            }
        };
        let modifier = a.modifier.as_ref();
        let by_name = matches!(modifier, Some(LabelModifier::Include(by)) if by.labels.iter().any(|l| l == "__name__"));

        // Group assignment, in first-seen order.
        let mut group_of = Vec::with_capacity(cols.len());
        let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for (i, c) in cols.iter().enumerate() {
            let g = group_labels(&c.labels, modifier);
            let gi = *index.entry(g.clone()).or_insert_with(|| {
                groups.push((g, Vec::new()));
                groups.len() - 1
            });
            groups[gi].1.push(i);
            group_of.push(gi);
        }

        let scalar_param = |name: &str| -> Result<Vec<f64>, PromqlError> {
            match &param {
                Some(Val::Scalar(v)) => Ok(v.clone()),
                _ => Err(PromqlError::Execution(format!(
                    "expected scalar parameter for {name}"
                ))),
            }
        };

        let out = match op.as_str() {
            "sum" | "count" | "min" | "max" | "group" => {
                // Series-major: each member column is added into its group's accumulator in
                // one sequential pass, instead of gathering a strided value per step.
                let mut out = Vec::with_capacity(groups.len());
                let (mut acc, mut comp) = (vec![0.0f64; n], vec![0.0f64; n]);
                let code = match op.as_str() {
                    "sum" => 0u8,
                    "count" => 1,
                    "group" => 2,
                    "min" => 3,
                    _ => 4,
                };
                for (g, members) in &groups {
                    let mut v = vec![absent(); n];
                    comp.iter_mut().for_each(|x| *x = 0.0);
                    acc.iter_mut().for_each(|x| *x = 0.0);
                    for &m in members {
                        let col = &cols[m].v;
                        for i in 0..n {
                            let x = col[i];
                            if is_absent(x) {
                                continue;
                            }
                            let first = is_absent(v[i]);
                            match code {
                                0 => (acc[i], comp[i]) = kahan_inc(x, acc[i], comp[i]),
                                1 => acc[i] += 1.0,
                                2 => acc[i] = 1.0,
                                3 if first || acc[i] > x || acc[i].is_nan() => acc[i] = x,
                                4 if first || acc[i] < x || acc[i].is_nan() => acc[i] = x,
                                _ => {}
                            }
                            v[i] = 0.0;
                        }
                    }
                    for i in 0..n {
                        if !is_absent(v[i]) {
                            v[i] = acc[i] + comp[i];
                        }
                    }
                    out.push(Col {
                        labels: g.clone(),
                        drop_name: by_name && cols[members[0]].drop_name,
                        v,
                    });
                }
                out
            }
            "avg" | "stddev" | "stdvar" => {
                let mut out = Vec::with_capacity(groups.len());
                for (g, members) in &groups {
                    let mut v = vec![absent(); n];
                    for (i, slot) in v.iter_mut().enumerate() {
                        let vals = members
                            .iter()
                            .map(|&m| cols[m].v[i])
                            .filter(|x| !is_absent(*x));
                        if let Some(x) = simple_agg(&op, vals) {
                            *slot = x;
                        }
                    }
                    let drop_name = by_name && cols[members[0]].drop_name;
                    out.push(Col {
                        labels: g.clone(),
                        drop_name,
                        v,
                    });
                }
                out
            }
            "quantile" => {
                let phi = scalar_param("quantile")?;
                self.check_quantile_param(&phi);
                let mut out = Vec::with_capacity(groups.len());
                let mut buf = Vec::new();
                for (g, members) in &groups {
                    let mut v = vec![absent(); n];
                    for (i, slot) in v.iter_mut().enumerate() {
                        buf.clear();
                        buf.extend(
                            members
                                .iter()
                                .map(|&m| cols[m].v[i])
                                .filter(|x| !is_absent(*x)),
                        );
                        if !buf.is_empty() {
                            sort_floats(&mut buf);
                            *slot = quantile_sorted(phi[i], &buf);
                        }
                    }
                    out.push(Col {
                        labels: g.clone(),
                        drop_name: by_name && cols[members[0]].drop_name,
                        v,
                    });
                }
                out
            }
            "count_values" => {
                let label = match &param {
                    Some(Val::Str(s)) => s.clone(),
                    _ => {
                        return Err(PromqlError::Execution(
                            "expected string parameter for count_values".into(),
                        ));
                    }
                };
                if !valid_label_name(&label) {
                    return Err(PromqlError::Execution(format!(
                        "invalid label name {}",
                        go_quoted(&label)
                    )));
                }
                let mut out: Vec<Col> = Vec::new();
                let mut idx: HashMap<Labels, usize> = HashMap::new();
                for (g, members) in &groups {
                    for i in 0..n {
                        for &m in members {
                            let x = cols[m].v[i];
                            if is_absent(x) {
                                continue;
                            }
                            let mut ls: Vec<Label> =
                                g.iter().filter(|l| l.name != label).cloned().collect();
                            ls.push(Label::new(label.clone(), format_float(x)));
                            ls.sort();
                            let labels = Labels::from_sorted(ls);
                            let k = *idx.entry(labels.clone()).or_insert_with(|| {
                                out.push(Col {
                                    labels,
                                    drop_name: false,
                                    v: vec![absent(); n],
                                });
                                out.len() - 1
                            });
                            let slot = &mut out[k].v[i];
                            *slot = if is_absent(*slot) { 1.0 } else { *slot + 1.0 };
                        }
                    }
                }
                out
            }
            "topk" | "bottomk" | "limitk" | "limit_ratio" => {
                let p = scalar_param(&op)?;
                let mut keep = vec![vec![false; n]; cols.len()];
                let mut order: Vec<usize> = Vec::new();
                if op == "limit_ratio" {
                    for (i, &r) in p.iter().enumerate() {
                        if r.is_nan() {
                            return Err(PromqlError::Execution("Ratio value is NaN".to_string()));
                        }
                        if !(-1.0..=1.0).contains(&r) {
                            let capped = r.clamp(-1.0, 1.0);
                            let msg = format!(
                                "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
                                format_float(r),
                                format_float(capped)
                            );
                            if !self.warnings.contains(&msg) {
                                self.warnings.push(msg);
                            }
                        }
                        let r = r.clamp(-1.0, 1.0);
                        for (ci, c) in cols.iter().enumerate() {
                            let off = labels_hash(&c.labels) as f64 / 18_446_744_073_709_551_616.0;
                            let sel = if r >= 0.0 { off < r } else { off >= 1.0 + r };
                            keep[ci][i] = sel && !is_absent(c.v[i]);
                        }
                    }
                    order.extend(0..cols.len());
                } else {
                    let mut buf: Vec<usize> = Vec::new();
                    for (i, &kf) in p.iter().enumerate() {
                        if kf.is_nan() {
                            return Err(PromqlError::Execution(
                                "Parameter value is NaN".to_string(),
                            ));
                        }
                        if kf >= 9.223_372_036_854_775e18 || kf <= -9.223_372_036_854_775e18 {
                            return Err(PromqlError::Execution(format!(
                                "Scalar value {} overflows int64",
                                format_float(kf)
                            )));
                        }
                        let k = kf as i64;
                        if k < 1 {
                            continue;
                        }
                        for (_, members) in &groups {
                            buf.clear();
                            buf.extend(
                                members
                                    .iter()
                                    .copied()
                                    .filter(|&m| !is_absent(cols[m].v[i])),
                            );
                            match op.as_str() {
                                "topk" => {
                                    buf.sort_by(|&x, &y| desc_nan_last(cols[x].v[i], cols[y].v[i]))
                                }
                                "bottomk" => {
                                    buf.sort_by(|&x, &y| asc_nan_last(cols[x].v[i], cols[y].v[i]))
                                }
                                _ => {}
                            }
                            buf.truncate(k as usize);
                            for &m in &buf {
                                keep[m][i] = true;
                            }
                            if n == 1 {
                                order.extend(buf.iter().copied());
                            }
                        }
                    }
                    if n != 1 {
                        order.extend(0..cols.len());
                    }
                }
                let mut cols = cols;
                let mut out = Vec::with_capacity(order.len());
                for ci in order {
                    let mut c = std::mem::replace(
                        &mut cols[ci],
                        Col {
                            labels: Labels::empty(),
                            drop_name: false,
                            v: Vec::new(),
                        },
                    );
                    for (x, &k) in c.v.iter_mut().zip(keep[ci].iter()) {
                        if !k {
                            *x = absent();
                        }
                    }
                    if c.v.iter().any(|x| !is_absent(*x)) {
                        out.push(c);
                    }
                }
                let _ = group_of;
                out
            }
            other => {
                return Err(PromqlError::Execution(format!(
                    "unsupported aggregation {other}"
                )));
            }
        };
        Ok(Val::Vector(
            out.into_iter()
                .filter(|c| c.v.iter().any(|x| !is_absent(*x)))
                .collect(),
        ))
    }
}

fn desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

fn asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// One step of sum/avg/count/min/max/group/stddev/stdvar over a group's present values.
fn simple_agg(op: &str, vals: impl Iterator<Item = f64>) -> Option<f64> {
    let mut count = 0.0f64;
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    let mut mean = 0.0f64;
    let mut incremental = false;
    let mut acc = f64::NAN;
    let (mut wmean, mut m2) = (0.0f64, 0.0f64);
    for x in vals {
        count += 1.0;
        match op {
            "sum" => (sum, c) = kahan_inc(x, sum, c),
            "avg" => {
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
            "min" if count == 1.0 || acc > x || acc.is_nan() => acc = x,
            "max" if count == 1.0 || acc < x || acc.is_nan() => acc = x,
            "stddev" | "stdvar" => {
                let d = x - wmean;
                wmean += d / count;
                m2 += d * (x - wmean);
            }
            _ => {}
        }
    }
    if count == 0.0 {
        return None;
    }
    Some(match op {
        "sum" => sum + c,
        "avg" => {
            if incremental {
                mean + c
            } else {
                sum / count + c / count
            }
        }
        "count" => count,
        "group" => 1.0,
        "min" | "max" => acc,
        "stdvar" => m2 / count,
        "stddev" => (m2 / count).sqrt(),
        _ => f64::NAN,
    })
}

/// Whether `s` is a valid Prometheus label name (UTF-8 names are valid in 3.x, but not
/// invalid UTF-8 or the empty string).
pub(crate) fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('\u{FFFD}')
}

/// `s` quoted the way Go's `%q` prints it.
pub(crate) fn go_quoted(s: &str) -> String {
    let mut out = String::new();
    crate::labels::go_quote_into(&mut out, s);
    out
}

/// A float as Go's `strconv.FormatFloat(f, 'f', -1, 64)` prints it.
pub(crate) fn format_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x == f64::INFINITY {
        "+Inf".into()
    } else if x == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{x}")
    }
}
