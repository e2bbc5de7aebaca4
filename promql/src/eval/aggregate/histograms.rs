//! The native histograms of an aggregation's input, as each operator treats them: `sum` and
//! `avg` add them up per group and step (compensated, and reconciling custom bounds, under
//! Prometheus 3.14), the others count, pass on or ignore them.

use std::collections::HashMap;

use super::{Op, group_labels};
use crate::Compat;
use crate::eval::{Col, Evaluator, HCol, LabelModifier, absent, is_absent};
use crate::hist_math;
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram};
use gauntlet_engine::labels::Labels;

/// How an aggregation treats native histogram samples of its input: `sum` and `avg` add them
/// up apart from the floats ([`HistSums`]; a group mixing floats and histograms at a step has
/// no value there, with a warning), `count` and `group` count them, `limitk`, `limit_ratio`
/// and `count_values` pass them on, and the others ignore them with an info annotation.
#[derive(Default)]
pub(crate) struct HistInput {
    pub(super) sums: HistSums,
    /// Where the aggregated expression starts (` (line:column)`), for annotations.
    pub(super) at: String,
    /// Whether histograms were ignored (the annotation is owed).
    ignored: bool,
}

impl HistInput {
    /// Takes the histogram samples out of input column `c` (labels as they reach the
    /// aggregation, `name` its metric name for annotations) where the operator does not pass
    /// them on.
    pub(super) fn take(
        &mut self,
        (op, modifier, by_name, n): (Op, Option<&LabelModifier>, bool, usize),
        c: &mut Col,
        name: &str,
    ) {
        if c.h.is_none() {
            return;
        }
        match op {
            Op::Count | Op::Group => {
                if let Some(h) = c.h.take() {
                    for (i, x) in h.iter().enumerate() {
                        if x.is_some() {
                            c.v[i] = 1.0;
                        }
                    }
                }
            }
            Op::LimitK | Op::LimitRatio | Op::CountValues => {}
            Op::Sum | Op::Avg => {
                let Some(h) = c.h.take() else { return };
                let key = group_labels(&c.labels, modifier, by_name && c.drop_name);
                self.sums.avg = op == Op::Avg;
                self.sums.add(key, h, name, n);
            }
            _ => self.ignored |= c.drop_histograms(),
        }
    }

    /// Takes in a later task's histograms, tasks in input order.
    pub(super) fn merge(&mut self, other: HistInput) {
        self.ignored |= other.ignored;
        self.sums.merge(other.sums);
    }

    /// Joins the histogram sums (`avg`: means) to the aggregation's float output `out` and
    /// reports the annotations owed. A group mixing floats and histograms at a step, or holding
    /// histograms that could not be added, has no value there.
    pub(super) fn finish(
        self,
        ev: &mut Evaluator<'_>,
        (op, op_name, n): (Op, &str, usize),
        out: Vec<Col>,
    ) -> Vec<Col> {
        let at = self.at.as_str();
        if self.ignored {
            ev.note_info(format!(
                "PromQL info: ignored histogram in {op_name} aggregation{at}"
            ));
        }
        for w in &self.sums.warnings {
            ev.warn(format!("{w}{at}"));
        }
        if self.sums.reconciled {
            ev.note_info(hist_math::reconciled_info("aggregation", at));
        }
        if self.sums.groups.is_empty() || !matches!(op, Op::Sum | Op::Avg) {
            return out;
        }
        let mut out = out;
        let mut warned_mix = false;
        let mut pos: HashMap<Labels, usize> = out
            .iter()
            .enumerate()
            .map(|(k, c)| (c.labels.clone(), k))
            .collect();
        let mut groups: Vec<(Labels, HistAcc)> = self.sums.groups.into_iter().collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        if groups.iter().any(|(_, acc)| acc.resets.contains(&3)) {
            ev.warn(format!(
                "PromQL warning: conflicting counter resets during histogram aggregation{at}"
            ));
        }
        for (key, mut acc) in groups {
            acc.finish_compensated();
            let k = *pos.entry(key.clone()).or_insert_with(|| {
                out.push(Col {
                    labels: key,
                    drop_name: false,
                    v: vec![absent(); n],
                    h: None,
                });
                out.len() - 1
            });
            let col = &mut out[k];
            let mut hv: HCol = vec![None; n];
            for (i, sum) in acc.sum.into_iter().enumerate() {
                if sum.is_none() && !acc.bad[i] {
                    continue;
                }
                if !is_absent(col.v[i]) {
                    col.v[i] = absent();
                    if !warned_mix {
                        warned_mix = true;
                        ev.warn(format!(
                            "PromQL warning: encountered a mix of histograms and floats for aggregation{at}"
                        ));
                    }
                    continue;
                }
                let Some(mut sum) = sum else { continue };
                // Empty buckets go, as Prometheus compacts the result.
                let _ = sum.compact(0);
                hv[i] = Some(sum);
            }
            if hv.iter().any(|x| x.is_some()) {
                col.h = Some(hv);
            }
        }
        out.into_iter()
            .filter(|c| (0..n).any(|i| c.present(i)))
            .collect()
    }
}

/// The histogram sums of `sum` and `avg` groups, per group (keyed by its labels) and step,
/// added in input order.
#[derive(Default)]
pub(super) struct HistSums {
    groups: HashMap<Labels, HistAcc>,
    /// `avg`: each group's running mean rather than its sum.
    pub(super) avg: bool,
    /// Warnings owed (histograms that could not be added), without their position.
    warnings: Vec<String>,
    /// The semantics of this Prometheus version.
    pub(super) compat: Compat,
    /// Whether custom bounds were reconciled (an info annotation is owed).
    reconciled: bool,
}

impl HistSums {
    /// Adds one input series' histograms to its group's sums.
    fn add(&mut self, key: Labels, h: HCol, name: &str, n: usize) {
        let acc = self.groups.entry(key).or_insert_with(|| HistAcc::new(n));
        if acc.name.is_none() {
            acc.name = Some(name.to_string());
        }
        for (i, x) in h.into_iter().enumerate() {
            let Some(x) = x else { continue };
            acc.count[i] += 1.0;
            if acc.bad[i] {
                continue;
            }
            if self.compat.at_least_3_14() {
                acc.resets[i] |= reset_bits(&x);
                let added = match acc.comp[i].as_mut() {
                    None => {
                        acc.comp[i] = Some(Compensated::new(x, self.avg));
                        continue;
                    }
                    Some(c) => c.add(&x),
                };
                match added {
                    Ok(reconciled) => self.reconciled |= reconciled,
                    Err(e) => {
                        acc.comp[i] = None;
                        acc.bad[i] = true;
                        push_once(&mut self.warnings, incompatible_warning(e, name));
                    }
                }
                continue;
            }
            let Some(sum) = acc.sum[i].as_mut() else {
                acc.sum[i] = Some(x);
                continue;
            };
            let added = if self.avg {
                hist_math::mean_step(sum, &x, acc.count[i], self.compat).map(|_| ())
            } else {
                sum.add(&x).map(|_| ()).map_err(Into::into)
            };
            if let Err(e) = added {
                acc.sum[i] = None;
                acc.bad[i] = true;
                push_once(&mut self.warnings, incompatible_warning(e, name));
            }
        }
    }

    /// Adds a later task's sums to these, group by group and step by step.
    fn merge(&mut self, other: HistSums) {
        for w in other.warnings {
            push_once(&mut self.warnings, w);
        }
        self.reconciled |= other.reconciled;
        for (key, mut o) in other.groups {
            let Some(acc) = self.groups.get_mut(&key) else {
                self.groups.insert(key, o);
                continue;
            };
            let name = o.name.clone().unwrap_or_default();
            for (a, b) in acc.resets.iter_mut().zip(&o.resets) {
                *a |= *b;
            }
            for (i, x) in std::mem::take(&mut o.comp).into_iter().enumerate() {
                let Some(x) = x else { continue };
                if acc.bad[i] || o.bad[i] {
                    continue;
                }
                let merged = match acc.comp[i].as_mut() {
                    None => {
                        acc.comp[i] = Some(x);
                        continue;
                    }
                    Some(c) => c.merge(x),
                };
                match merged {
                    Ok(reconciled) => self.reconciled |= reconciled,
                    Err(e) => {
                        acc.comp[i] = None;
                        acc.bad[i] = true;
                        push_once(&mut self.warnings, incompatible_warning(e, &name));
                    }
                }
            }
            for (i, x) in o.sum.into_iter().enumerate() {
                let (n_a, n_b) = (acc.count[i], o.count[i]);
                acc.count[i] += n_b;
                if acc.bad[i] || o.bad[i] {
                    acc.bad[i] = true;
                    acc.sum[i] = None;
                    continue;
                }
                let Some(mut x) = x else { continue };
                let Some(sum) = acc.sum[i].as_mut() else {
                    acc.sum[i] = Some(x);
                    continue;
                };
                if self.avg {
                    // Two means weighed by their counts.
                    let n = n_a + n_b;
                    sum.mul(n_a / n);
                    x.mul(n_b / n);
                }
                if let Err(e) = sum.add(&x) {
                    acc.sum[i] = None;
                    acc.bad[i] = true;
                    push_once(&mut self.warnings, incompatible_warning(e.into(), &name));
                }
            }
        }
    }
}

fn push_once(v: &mut Vec<String>, msg: String) {
    if !v.contains(&msg) {
        v.push(msg);
    }
}

/// The warning for histograms of an aggregation group that could not be added (its position
/// is appended when it is reported).
fn incompatible_warning(e: hist_math::MathError, name: &str) -> String {
    hist_math::incompatible_warning(e, name, "")
}

/// Histogram sums (or means) of one aggregation group, per step.
struct HistAcc {
    sum: Vec<Option<FloatHistogram>>,
    /// The compensated sums or means of Prometheus 3.14, in place of `sum`.
    comp: Vec<Option<Compensated>>,
    /// Prometheus 3.14: whether a histogram added at the step said "counter reset" (bit 0)
    /// or "not a counter reset" (bit 1); both at once are a conflict it warns about.
    resets: Vec<u8>,
    count: Vec<f64>,
    /// Steps whose histograms could not be added.
    bad: Vec<bool>,
    /// The metric name of the group's first histogram series, for annotations.
    name: Option<String>,
}

impl HistAcc {
    fn new(n: usize) -> HistAcc {
        HistAcc {
            sum: vec![None; n],
            comp: (0..n).map(|_| None).collect(),
            resets: vec![0; n],
            count: vec![0.0; n],
            bad: vec![false; n],
            name: None,
        }
    }

    /// Moves the compensated sums or means into `sum`, as results.
    fn finish_compensated(&mut self) {
        for (s, c) in self.sum.iter_mut().zip(self.comp.iter_mut()) {
            if let Some(c) = c.take() {
                *s = Some(c.finish());
            }
        }
    }
}

/// The bit of [`HistAcc::resets`] the counter-reset hint of `h` sets.
fn reset_bits(h: &FloatHistogram) -> u8 {
    match h.counter_reset_hint {
        CounterResetHint::CounterReset => 1,
        CounterResetHint::NotCounterReset => 2,
        _ => 0,
    }
}

/// One step's compensated sum or mean of a group (Prometheus 3.14).
enum Compensated {
    Sum(hist_math::KahanSum),
    Mean(hist_math::KahanMean),
}

impl Compensated {
    fn new(h: FloatHistogram, avg: bool) -> Self {
        if avg {
            Compensated::Mean(hist_math::KahanMean::new(h))
        } else {
            Compensated::Sum(hist_math::KahanSum::new(h))
        }
    }

    fn add(&mut self, x: &FloatHistogram) -> Result<bool, hist_math::MathError> {
        match self {
            Compensated::Sum(s) => s.add(x),
            Compensated::Mean(m) => m.add(x),
        }
    }

    fn merge(&mut self, other: Compensated) -> Result<bool, hist_math::MathError> {
        match (self, other) {
            (Compensated::Sum(s), Compensated::Sum(o)) => s.merge(o),
            (Compensated::Mean(m), Compensated::Mean(o)) => m.merge(o),
            // One aggregation is either a sum or a mean throughout.
            _ => Ok(false),
        }
    }

    fn finish(self) -> FloatHistogram {
        match self {
            Compensated::Sum(s) => s.finish(),
            Compensated::Mean(m) => m.finish(),
        }
    }
}
