//! Aggregation operators as folds: series arrive one at a time in input order (streamed from
//! storage or from a materialized vector) and are folded into their group's step columns, so
//! `sum`, `count`, `min`, `max`, `group`, `avg`, `stddev`, `stdvar`, `topk` and `bottomk` never
//! hold their input. `quantile`, `count_values`, `limitk` and `limit_ratio` keep their input
//! columns and finish over them.

use std::collections::HashMap;

use crate::parser::AggregateExpr;

use super::{Col, Evaluator, LabelModifier, Steps, Val, absent, is_absent};
use crate::Compat;
use crate::error::PromqlError;
use crate::functions::go_sort::go_sort;
use crate::functions::{kahan_inc, quantile_sorted, sort_floats};
use gauntlet_engine::go_format::{FloatFormat, format_float, quoted};
use gauntlet_engine::labels::{Label, Labels};

mod histograms;

use histograms::HistInput;

/// Whether a label of a series is part of its group's labels.
fn in_group(l: &Label, modifier: Option<&LabelModifier>) -> bool {
    match modifier {
        None => false,
        Some(LabelModifier::Include(by)) => super::listed(&by.labels, &l.name),
        Some(LabelModifier::Exclude(without)) => {
            !super::is_name_label(&l.name) && !super::listed(&without.labels, &l.name)
        }
    }
}

/// The labels of the group a series falls in; with `drop_name`, the series has lost its
/// metric name first (so `by (__name__)` does not bring it back).
pub(crate) fn group_labels(
    labels: &Labels,
    modifier: Option<&LabelModifier>,
    drop_name: bool,
) -> Labels {
    Labels::from_sorted(
        labels
            .iter()
            .filter(|l| in_group(l, modifier) && !(drop_name && super::is_name_label(&l.name)))
            .cloned()
            .collect(),
    )
}

/// The label-set hash `limit_ratio` samples by, as Prometheus's default (string) label
/// representation computes it: xxhash64 over each name and value, each preceded by its length
/// as a uvarint.
fn labels_hash(labels: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(256);
    for l in labels {
        for part in [&l.name, &l.value] {
            gauntlet_engine::encoding::put_uvarint(&mut buf, part.len() as u64);
            buf.extend_from_slice(part.as_bytes());
        }
    }
    xxhash_rust::xxh64::xxh64(&buf, 0)
}

/// Finds a series' group without building its group labels: groups are keyed by a hash of
/// the grouping labels and confirmed by comparing them in place. Groups sharing a hash are
/// chained through `next`, so a group costs no allocation of its own here.
#[derive(Default)]
struct GroupIndex {
    /// The last group inserted under each hash.
    by_hash: HashMap<u64, u32, std::hash::BuildHasherDefault<KeyHasher>>,
    /// Per group (in insertion order), the group inserted before it under the same hash.
    next: Vec<u32>,
    buf: Vec<u8>,
}

/// End of a [`GroupIndex`] chain.
const NO_GROUP: u32 = u32::MAX;

/// The map's keys are xxhash64 values already: use them as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl GroupIndex {
    /// The group of `labels` among the groups (`group_labels` gives each one's labels), or
    /// its hash when it is new.
    fn find<'g>(
        &mut self,
        labels: &Labels,
        modifier: Option<&LabelModifier>,
        group_labels: impl Fn(usize) -> &'g Labels,
    ) -> Result<usize, u64> {
        self.buf.clear();
        for l in labels.iter().filter(|l| in_group(l, modifier)) {
            self.buf.extend_from_slice(l.name.as_bytes());
            self.buf.push(0xff);
            self.buf.extend_from_slice(l.value.as_bytes());
            self.buf.push(0xff);
        }
        let h = xxhash_rust::xxh64::xxh64(&self.buf, 0);
        let mut g = self.by_hash.get(&h).copied().unwrap_or(NO_GROUP);
        while g != NO_GROUP {
            let mut mine = labels.iter().filter(|l| in_group(l, modifier));
            let theirs = group_labels(g as usize).iter();
            if theirs.map(Some).chain([None]).all(|t| t == mine.next()) {
                return Ok(g as usize);
            }
            g = self.next[g as usize];
        }
        Err(h)
    }

    /// The group whose labels are `labels`, already a group's labels, with `hash` as
    /// [`GroupIndex::find`] computes it.
    fn find_hashed<'g>(
        &self,
        hash: u64,
        labels: &Labels,
        group_labels: impl Fn(usize) -> &'g Labels,
    ) -> Option<usize> {
        let mut g = self.by_hash.get(&hash).copied().unwrap_or(NO_GROUP);
        while g != NO_GROUP {
            if group_labels(g as usize) == labels {
                return Some(g as usize);
            }
            g = self.next[g as usize];
        }
        None
    }

    /// Adds the next group (groups are inserted in order, each once) under `hash`.
    fn insert(&mut self, hash: u64, group: usize) {
        debug_assert_eq!(group, self.next.len());
        let prev = self.by_hash.insert(hash, group as u32).unwrap_or(NO_GROUP);
        self.next.push(prev);
    }
}

/// The aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Sum,
    Count,
    Group,
    Min,
    Max,
    Avg,
    Stddev,
    Stdvar,
    TopK,
    BottomK,
    Quantile,
    CountValues,
    LimitK,
    LimitRatio,
}

impl Op {
    fn parse(s: &str) -> Result<Op, PromqlError> {
        Ok(match s {
            "sum" => Op::Sum,
            "count" => Op::Count,
            "group" => Op::Group,
            "min" => Op::Min,
            "max" => Op::Max,
            "avg" => Op::Avg,
            "stddev" => Op::Stddev,
            "stdvar" => Op::Stdvar,
            "topk" => Op::TopK,
            "bottomk" => Op::BottomK,
            "quantile" => Op::Quantile,
            "count_values" => Op::CountValues,
            "limitk" => Op::LimitK,
            "limit_ratio" => Op::LimitRatio,
            other => {
                return Err(PromqlError::Execution(format!(
                    "unsupported aggregation {other}"
                )));
            }
        })
    }

    /// Whether the output names input series, so inputs must keep all their labels.
    fn outputs_input_series(self) -> bool {
        matches!(self, Op::TopK | Op::BottomK | Op::LimitK | Op::LimitRatio)
    }

    /// Whether the operator needs every input column until the end.
    fn keeps_input(self) -> bool {
        matches!(
            self,
            Op::Quantile | Op::CountValues | Op::LimitK | Op::LimitRatio
        )
    }
}

/// Running state of one group, per step.
enum State {
    /// `sum`, `count`, `group`, `min`, `max`: the value so far, its Kahan compensation, and
    /// whether any member had a value at the step.
    Simple {
        acc: Vec<f64>,
        comp: Vec<f64>,
        seen: Vec<bool>,
    },
    /// `avg`: count, Kahan sum and compensation, and the incremental mean once the sum
    /// overflowed (as Prometheus switches to it).
    Avg {
        count: Vec<f64>,
        sum: Vec<f64>,
        comp: Vec<f64>,
        mean: Vec<f64>,
        incremental: Vec<bool>,
    },
    /// `stddev`, `stdvar`: Welford's count, mean and sum of squared deviations.
    Var {
        count: Vec<f64>,
        mean: Vec<f64>,
        m2: Vec<f64>,
    },
    /// `topk`, `bottomk`: at each step a heap of the best members so far, as (value, input
    /// position), kept exactly as Prometheus keeps it so ties pick the same members.
    Top(Vec<Vec<(f64, usize)>>),
    /// Input kept for the finish.
    Members(Vec<usize>),
}

struct Group {
    labels: Labels,
    /// The metric name is dropped later when the first member's is (`by (__name__)`).
    drop_name: bool,
    state: State,
}

/// An aggregation in progress: created with its parameter, fed every input series in order
/// with [`Aggregator::push`], and finished into its output columns.
pub(crate) struct Aggregator {
    op: Op,
    op_name: String,
    modifier: Option<LabelModifier>,
    by_name: bool,
    /// Prometheus 3.14: a `by (__name__)` group drops its name when any member does (3.5:
    /// when its first member does).
    drop_if_any: bool,
    n: usize,
    param: Option<Val>,
    /// Where the parameter starts in the query, as annotations about it end (` (1:10)`).
    param_at: String,
    /// `k` per step for `topk`/`bottomk` (0 where no member is taken, `None` where the
    /// parameter does not convert to an int64).
    k: Vec<Option<usize>>,
    /// The first step with input at which `k` is `None`: the query fails there, reported at
    /// the finish, after the input was evaluated.
    bad_k_step: Option<usize>,
    groups: Vec<Group>,
    index: GroupIndex,
    /// Input columns kept: all of them for [`Op::keeps_input`], the candidates of `topk`.
    kept: HashMap<usize, Col>,
    /// Position of the next input series.
    seq: usize,
    /// The input's native histograms, as the operator treats them.
    hist: HistInput,
}

impl Aggregator {
    fn new(
        a: &AggregateExpr,
        param: Option<Val>,
        param_at: String,
        n: usize,
        compat: crate::Compat,
    ) -> Result<Self, PromqlError> {
        let op_name = a.op.as_str().to_string();
        let op = Op::parse(&op_name)?;
        let modifier = LabelModifier::grouping(a);
        let by_name = matches!(&modifier, Some(LabelModifier::Include(by)) if by.labels.iter().any(|l| l == "__name__"));
        let k = match (op, &param) {
            (Op::TopK | Op::BottomK, Some(Val::Scalar(p))) => k_per_step(p),
            (Op::TopK | Op::BottomK, _) => {
                return Err(PromqlError::Execution(format!(
                    "expected scalar parameter for {op_name}"
                )));
            }
            _ => Vec::new(),
        };
        Ok(Aggregator {
            op,
            op_name,
            modifier,
            by_name,
            drop_if_any: by_name && compat.at_least_3_14(),
            n,
            param,
            param_at,
            k,
            bad_k_step: None,
            groups: Vec::new(),
            index: GroupIndex::default(),
            kept: HashMap::new(),
            seq: 0,
            hist: HistInput::default(),
        })
    }

    /// Bytes the groups take, about: a label set and three words a step each (a sum, its
    /// compensation and whether it was seen; a mean's count, sum and mean).
    fn state_bytes(&self) -> u64 {
        self.groups.len() as u64 * (128 + 24 * self.n as u64)
    }

    /// Samples an input column holds while this aggregation keeps it (0 when it is folded).
    fn holds(&self, c: &Col) -> usize {
        if self.op.keeps_input() {
            (0..c.v.len()).filter(|&i| c.present(i)).count()
        } else {
            0
        }
    }

    /// Takes the native histograms out of an input column as the operator treats them, before
    /// it is pushed; `name` is its metric name for annotations.
    fn take_histograms(&mut self, c: &mut Col, name: &str) {
        let spec = (self.op, self.modifier.as_ref(), self.by_name, self.n);
        self.hist.take(spec, c, name);
    }

    /// Folds one input series (in input order) into its group; returns how many step
    /// values the aggregation now holds beyond before.
    fn push(&mut self, c: Col) -> usize {
        let seq = self.seq;
        self.seq += 1;
        let n = self.n;
        let g = find_or_create(
            &mut self.index,
            &mut self.groups,
            self.op,
            self.modifier.as_ref(),
            self.by_name && c.drop_name,
            &c.labels,
            n,
        );
        if self.drop_if_any && c.drop_name {
            self.groups[g].drop_name = true;
        }
        let held = self.holds(&c);
        let op = self.op;
        match &mut self.groups[g].state {
            State::Simple { acc, comp, seen } => fold_simple(op, acc, comp, seen, &c.v),
            State::Avg {
                count,
                sum,
                comp,
                mean,
                incremental,
            } => {
                for (i, &x) in c.v.iter().enumerate() {
                    if is_absent(x) {
                        continue;
                    }
                    count[i] += 1.0;
                    let cnt = count[i];
                    if !incremental[i] {
                        let (ns, nc) = kahan_inc(x, sum[i], comp[i]);
                        if cnt == 1.0 || !ns.is_infinite() {
                            sum[i] = ns;
                            comp[i] = nc;
                            continue;
                        }
                        // The sum overflowed: carry on with an incremental mean.
                        incremental[i] = true;
                        mean[i] = sum[i] / (cnt - 1.0);
                        comp[i] /= cnt - 1.0;
                    }
                    let q = (cnt - 1.0) / cnt;
                    (mean[i], comp[i]) = kahan_inc(x / cnt, q * mean[i], q * comp[i]);
                }
            }
            State::Var { count, mean, m2 } => {
                for (i, &x) in c.v.iter().enumerate() {
                    if is_absent(x) {
                        continue;
                    }
                    count[i] += 1.0;
                    let d = x - mean[i];
                    mean[i] += d / count[i];
                    m2[i] += d * (x - mean[i]);
                }
            }
            State::Top(heaps) => {
                let top = op == Op::TopK;
                let mut taken = false;
                for (i, &x) in c.v.iter().enumerate() {
                    if is_absent(x) {
                        continue;
                    }
                    let k = match self.k[i] {
                        Some(0) => continue,
                        Some(k) => k,
                        None => {
                            self.bad_k_step = Some(self.bad_k_step.map_or(i, |b| b.min(i)));
                            continue;
                        }
                    };
                    let h = &mut heaps[i];
                    if h.len() < k {
                        h.push((x, seq));
                        let last = h.len() - 1;
                        heap_up(h, last, top);
                        taken = true;
                        continue;
                    }
                    let root = h[0].0;
                    let beats = if top { root < x } else { root > x };
                    if beats || (root.is_nan() && !x.is_nan()) {
                        h[0] = (x, seq);
                        if k > 1 {
                            heap_fix(h, 0, top);
                        }
                        taken = true;
                    }
                }
                // Candidates are bounded by k per step and group: not counted as held input.
                if taken {
                    self.kept.insert(seq, c);
                }
                return 0;
            }
            State::Members(m) => m.push(seq),
        }
        if held > 0 {
            self.kept.insert(seq, c);
        }
        held
    }

    /// How worker tasks can fold their series ahead of this aggregation, for the operators
    /// whose partial results combine: `sum` (compensated sums added), `count`, `group`, `min`,
    /// `max` (exactly).
    pub(crate) fn partial_spec(&self) -> Option<PartialSpec> {
        matches!(self.op, Op::Sum | Op::Count | Op::Group | Op::Min | Op::Max).then(|| {
            PartialSpec {
                op: self.op,
                modifier: self.modifier.clone(),
                by_name: self.by_name,
                drop_if_any: self.drop_if_any,
                n: self.n,
                compat: self.hist.sums.compat,
            }
        })
    }

    /// Merges a task's partial groups, tasks in input order.
    pub(crate) fn merge(&mut self, p: Partial) {
        self.hist.merge(p.hist);
        let (op, n) = (self.op, self.n);
        for (k, pg) in p.groups.into_iter().enumerate() {
            let steps = k * n..(k + 1) * n;
            let (pacc, pcomp, pseen) = (
                &p.acc[steps.clone()],
                &p.comp[steps.clone()],
                &p.seen[steps],
            );
            let groups = &self.groups;
            let Some(g) = self
                .index
                .find_hashed(pg.hash, &pg.labels, |g| &groups[g].labels)
            else {
                // New here: the task's group is the whole group so far.
                self.groups.push(Group {
                    labels: pg.labels,
                    drop_name: pg.drop_name,
                    state: State::Simple {
                        acc: pacc.to_vec(),
                        comp: pcomp.to_vec(),
                        seen: pseen.to_vec(),
                    },
                });
                self.index.insert(pg.hash, self.groups.len() - 1);
                continue;
            };
            if self.drop_if_any && pg.drop_name {
                self.groups[g].drop_name = true;
            }
            if let State::Simple { acc, comp, seen } = &mut self.groups[g].state {
                merge_simple(op, (acc, comp, seen), (pacc, pcomp, pseen));
            }
        }
    }

    /// Drops kept `topk` candidates that no step holds any more.
    fn prune(&mut self) {
        if !matches!(self.op, Op::TopK | Op::BottomK) || self.kept.len() < 4096 {
            return;
        }
        let mut live = std::collections::HashSet::new();
        for g in &self.groups {
            if let State::Top(best) = &g.state {
                for l in best {
                    live.extend(l.iter().map(|&(_, s)| s));
                }
            }
        }
        self.kept.retain(|s, _| live.contains(s));
    }

    /// The aggregation's output columns, empty ones removed.
    fn finish(mut self, ev: &mut Evaluator<'_>) -> Result<Vec<Col>, PromqlError> {
        let mut hist = std::mem::take(&mut self.hist);
        hist.sums.avg = self.op == Op::Avg;
        let (op, op_name, n) = (self.op, self.op_name.clone(), self.n);
        let out = self.finish_floats(ev)?;
        Ok(hist.finish(ev, (op, &op_name, n), out))
    }

    /// [`Aggregator::finish`] of the float samples.
    fn finish_floats(mut self, ev: &mut Evaluator<'_>) -> Result<Vec<Col>, PromqlError> {
        let n = self.n;
        // The output columns are made while the groups still stand.
        ev.hold_state(self.state_bytes() + (self.groups.len() * n) as u64 * super::SAMPLE_BYTES)?;
        let out = match self.op {
            Op::Sum
            | Op::Count
            | Op::Group
            | Op::Min
            | Op::Max
            | Op::Avg
            | Op::Stddev
            | Op::Stdvar => {
                let mut out = Vec::with_capacity(self.groups.len());
                for g in self.groups {
                    let mut v = vec![absent(); n];
                    match g.state {
                        State::Simple { acc, comp, seen } => {
                            for i in 0..n {
                                if seen[i] {
                                    v[i] = acc[i] + comp[i];
                                }
                            }
                        }
                        State::Avg {
                            count,
                            sum,
                            comp,
                            mean,
                            incremental,
                        } => {
                            for i in 0..n {
                                if count[i] > 0.0 {
                                    v[i] = if incremental[i] {
                                        mean[i] + comp[i]
                                    } else {
                                        sum[i] / count[i] + comp[i] / count[i]
                                    };
                                }
                            }
                        }
                        State::Var { count, m2, .. } => {
                            for i in 0..n {
                                if count[i] > 0.0 {
                                    let var = m2[i] / count[i];
                                    v[i] = if self.op == Op::Stddev {
                                        var.sqrt()
                                    } else {
                                        var
                                    };
                                }
                            }
                        }
                        _ => {}
                    }
                    out.push(Col {
                        h: None,
                        labels: g.labels,
                        drop_name: g.drop_name,
                        v,
                    });
                }
                out
            }
            Op::TopK | Op::BottomK => {
                if let (Some(i), Some(Val::Scalar(p))) = (self.bad_k_step, &self.param) {
                    return Err(k_overflow(p[i]));
                }
                let top = self.op == Op::TopK;
                // Per kept member, the steps at which it is among the best.
                let mut keep: HashMap<usize, Vec<bool>> = HashMap::new();
                let mut order: Vec<usize> = Vec::new();
                for g in &self.groups {
                    let State::Top(heaps) = &g.state else {
                        continue;
                    };
                    for (i, h) in heaps.iter().enumerate() {
                        for &(_, s) in h {
                            keep.entry(s).or_insert_with(|| vec![false; n])[i] = true;
                        }
                        if n == 1 {
                            order.extend(best_first(h, top).iter().map(|&(_, s)| s));
                        }
                    }
                }
                if n != 1 {
                    order = keep.keys().copied().collect();
                    order.sort_unstable();
                }
                let mut out = Vec::with_capacity(order.len());
                for s in order {
                    let Some(mut c) = self.kept.remove(&s) else {
                        continue;
                    };
                    let Some(mask) = keep.get(&s) else { continue };
                    for (x, &k) in c.v.iter_mut().zip(mask) {
                        if !k {
                            *x = absent();
                        }
                    }
                    out.push(c);
                }
                out
            }
            _ => {
                let mut cols: Vec<Col> = Vec::with_capacity(self.kept.len());
                let mut pos: HashMap<usize, usize> = HashMap::with_capacity(self.kept.len());
                let mut seqs: Vec<usize> = self.kept.keys().copied().collect();
                seqs.sort_unstable();
                for s in seqs {
                    if let Some(c) = self.kept.remove(&s) {
                        pos.insert(s, cols.len());
                        cols.push(c);
                    }
                }
                let groups: Vec<MemberGroup> = self
                    .groups
                    .into_iter()
                    .map(|g| {
                        let members = match g.state {
                            State::Members(m) => {
                                m.iter().filter_map(|s| pos.get(s).copied()).collect()
                            }
                            _ => Vec::new(),
                        };
                        (g.labels, g.drop_name, members)
                    })
                    .filter(|(_, _, m)| !m.is_empty())
                    .collect();
                finish_members(
                    ev,
                    (self.op, &self.op_name, self.modifier.as_ref()),
                    (self.param.as_ref(), &self.param_at),
                    cols,
                    groups,
                    n,
                )?
            }
        };
        Ok(out
            .into_iter()
            .filter(|c| (0..n).any(|i| c.present(i)))
            .collect())
    }
}

/// The group of `labels` (created empty when new), as an aggregation or a task's partial
/// keeps its groups.
fn find_or_create(
    index: &mut GroupIndex,
    groups: &mut Vec<Group>,
    op: Op,
    modifier: Option<&LabelModifier>,
    drop_name: bool,
    labels: &Labels,
    n: usize,
) -> usize {
    match index.find(labels, modifier, |g| &groups[g].labels) {
        Ok(g) => g,
        Err(hash) => {
            let state = match op {
                Op::Sum | Op::Count | Op::Group | Op::Min | Op::Max => State::Simple {
                    acc: vec![0.0; n],
                    comp: vec![0.0; n],
                    seen: vec![false; n],
                },
                Op::Avg => State::Avg {
                    count: vec![0.0; n],
                    sum: vec![0.0; n],
                    comp: vec![0.0; n],
                    mean: vec![0.0; n],
                    incremental: vec![false; n],
                },
                Op::Stddev | Op::Stdvar => State::Var {
                    count: vec![0.0; n],
                    mean: vec![0.0; n],
                    m2: vec![0.0; n],
                },
                Op::TopK | Op::BottomK => State::Top(vec![Vec::new(); n]),
                _ => State::Members(Vec::new()),
            };
            groups.push(Group {
                labels: group_labels(labels, modifier, false),
                drop_name,
                state,
            });
            index.insert(hash, groups.len() - 1);
            groups.len() - 1
        }
    }
}

/// Folds one series' steps into a `sum`, `count`, `group`, `min` or `max` group, in input
/// order, as Prometheus does step by step.
fn fold_simple(op: Op, acc: &mut [f64], comp: &mut [f64], seen: &mut [bool], v: &[f64]) {
    let steps = acc.iter_mut().zip(comp.iter_mut()).zip(seen.iter_mut());
    let present = steps.zip(v).filter(|(_, x)| !is_absent(**x));
    match op {
        Op::Sum => {
            for (((a, c), s), &x) in present {
                (*a, *c) = kahan_inc(x, *a, *c);
                *s = true;
            }
        }
        Op::Count => {
            for (((a, _), s), _) in present {
                *a += 1.0;
                *s = true;
            }
        }
        Op::Group => {
            for (((a, _), s), _) in present {
                *a = 1.0;
                *s = true;
            }
        }
        Op::Min => {
            for (((a, _), s), &x) in present {
                if !*s || *a > x || a.is_nan() {
                    *a = x;
                }
                *s = true;
            }
        }
        _ => {
            for (((a, _), s), &x) in present {
                if !*s || *a < x || a.is_nan() {
                    *a = x;
                }
                *s = true;
            }
        }
    }
}

/// What a worker task needs to fold its series into partial groups.
#[derive(Clone)]
pub(crate) struct PartialSpec {
    op: Op,
    modifier: Option<LabelModifier>,
    by_name: bool,
    /// As [`Aggregator::drop_if_any`].
    drop_if_any: bool,
    n: usize,
    compat: Compat,
}

/// One task's groups, merged into the aggregation with [`Aggregator::merge`]. The groups' step
/// values lie in flat arrays, so a group costs no allocation of its own: with fine grouping
/// (`count by (pod)`) most series start a group of their task.
#[derive(Default)]
pub(crate) struct Partial {
    index: GroupIndex,
    groups: Vec<PartialGroup>,
    /// `n` steps per group, group after group: the value so far, its Kahan compensation, and
    /// whether any member had a value at the step.
    acc: Vec<f64>,
    comp: Vec<f64>,
    seen: Vec<bool>,
    /// The task's native histograms, as the operator treats them.
    hist: HistInput,
}

struct PartialGroup {
    labels: Labels,
    /// As [`Group::drop_name`].
    drop_name: bool,
    /// The group's key hash, so the merge does not compute it again.
    hash: u64,
}

impl PartialSpec {
    /// Folds one series, whose labels are already its group's, into the task's partial groups;
    /// gives its column's buffer back for reuse. `name` is its metric name for annotations
    /// about its histograms.
    pub(crate) fn add(&self, p: &mut Partial, mut c: Col, name: &str) -> Option<Vec<f64>> {
        p.hist.sums.compat = self.compat;
        p.hist.take(
            (self.op, self.modifier.as_ref(), self.by_name, self.n),
            &mut c,
            name,
        );
        let Col {
            labels,
            drop_name,
            v,
            ..
        } = c;
        let n = self.n;
        let groups = &p.groups;
        let g = match p
            .index
            .find(&labels, self.modifier.as_ref(), |g| &groups[g].labels)
        {
            Ok(g) => {
                if self.drop_if_any && drop_name {
                    p.groups[g].drop_name = true;
                }
                g
            }
            Err(hash) => {
                debug_assert_eq!(labels, group_labels(&labels, self.modifier.as_ref(), false));
                p.groups.push(PartialGroup {
                    labels,
                    drop_name: self.by_name && drop_name,
                    hash,
                });
                p.index.insert(hash, p.groups.len() - 1);
                p.acc.resize(p.acc.len() + n, 0.0);
                p.comp.resize(p.comp.len() + n, 0.0);
                p.seen.resize(p.seen.len() + n, false);
                p.groups.len() - 1
            }
        };
        let steps = g * n..(g + 1) * n;
        fold_simple(
            self.op,
            &mut p.acc[steps.clone()],
            &mut p.comp[steps.clone()],
            &mut p.seen[steps],
            &v,
        );
        Some(v)
    }
}

/// Merges a later task's values of a group (`p`: value, compensation, seen per step) into the
/// group's running ones (`g`), as folding its members one by one would.
fn merge_simple(
    op: Op,
    (acc, comp, seen): (&mut [f64], &mut [f64], &mut [bool]),
    (pacc, pcomp, pseen): (&[f64], &[f64], &[bool]),
) {
    let steps = acc.iter_mut().zip(comp.iter_mut()).zip(seen.iter_mut());
    let later = pacc.iter().zip(pcomp).zip(pseen);
    for (((a, c), s), ((&x, &xc), &xs)) in steps.zip(later) {
        if !xs {
            continue;
        }
        if !*s {
            (*a, *c, *s) = (x, xc, true);
            continue;
        }
        match op {
            Op::Sum => {
                (*a, *c) = kahan_inc(x, *a, *c);
                *c += xc;
            }
            Op::Count => *a += x,
            Op::Min if *a > x || a.is_nan() => *a = x,
            Op::Max if *a < x || a.is_nan() => *a = x,
            _ => {}
        }
    }
}

/// Go's `container/heap` order for `topk` (a min-heap) or `bottomk` (a max-heap), NaN at the
/// root first, as Prometheus's value heaps compare.
fn heap_less(top: bool, a: f64, b: f64) -> bool {
    if a.is_nan() {
        return true;
    }
    if top { a < b } else { a > b }
}

fn heap_up(h: &mut [(f64, usize)], mut j: usize, top: bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !heap_less(top, h[j].0, h[i].0) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [(f64, usize)], i0: usize, top: bool) -> bool {
    let n = h.len();
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && heap_less(top, h[j1 + 1].0, h[j1].0) {
            j = j1 + 1;
        }
        if !heap_less(top, h[j].0, h[i].0) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    i > i0
}

fn heap_fix(h: &mut [(f64, usize)], i: usize, top: bool) {
    if !heap_down(h, i, top) {
        heap_up(h, i, top);
    }
}

/// The heap's members best first, in the order Prometheus lists an instant `topk`: Go's
/// `sort.Sort` of the reversed heap.
fn best_first(h: &[(f64, usize)], top: bool) -> Vec<(f64, usize)> {
    let mut v = h.to_vec();
    go_sort(&mut v, |a, b| heap_less(top, b.0, a.0));
    v
}

/// The order Prometheus lists an instant `limitk` or `limit_ratio` group in: each member
/// (value, id), in input order, pushed onto `topk`'s min-heap, whose array is then read as it
/// stands.
fn pushed_heap_order(members: impl Iterator<Item = (f64, usize)>) -> Vec<usize> {
    let mut h: Vec<(f64, usize)> = Vec::new();
    for m in members {
        h.push(m);
        let last = h.len() - 1;
        heap_up(&mut h, last, true);
    }
    h.into_iter().map(|(_, m)| m).collect()
}

/// `k` per step of `topk`/`bottomk`/`limitk` as Prometheus 3.5 reads the parameter: 0 (take
/// nothing) below 1, `None` where it does not convert to an int64 (NaN included), which fails
/// the query only at a step with input ([`k_overflow`]). When every step's `k` is below 1
/// the aggregation takes nothing and checks nothing.
fn k_per_step(p: &[f64]) -> Vec<Option<usize>> {
    if p.iter().all(|&k| k < 1.0) {
        return vec![Some(0); p.len()];
    }
    // Prometheus's bounds: the largest float below 2^63 that converts exactly, and -2^63.
    const MAX: f64 = 9_223_372_036_854_774_784.0;
    const MIN: f64 = -9_223_372_036_854_775_808.0;
    p.iter()
        .map(|&kf| {
            (MIN..=MAX).contains(&kf).then(|| {
                let k = kf as i64;
                if k < 1 {
                    0
                } else {
                    usize::try_from(k).unwrap_or(usize::MAX)
                }
            })
        })
        .collect()
}

/// The error for a `k` that does not convert to an int64 (Go's `%v` of the value).
fn k_overflow(kf: f64) -> PromqlError {
    PromqlError::Execution(format!(
        "Scalar value {} overflows int64",
        format_float(kf, FloatFormat::G)
    ))
}

/// Warns as Prometheus 3.5 does about `limit_ratio` parameters outside `[-1, 1]`, whether or
/// not the aggregation has input: once for the largest above 1 and once for the smallest below
/// -1, and not at all when any step's ratio is NaN (the maximum and minimum are NaN then).
fn ratio_warnings(ev: &mut Evaluator<'_>, p: &[f64], at: &str) {
    if p.iter().any(|r| r.is_nan()) {
        return;
    }
    let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = p.iter().copied().fold(f64::INFINITY, f64::min);
    for (out, r, cap) in [(max > 1.0, max, 1.0), (min < -1.0, min, -1.0)] {
        if out {
            ev.warn(format!(
                "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}{at}",
                format_float(r, FloatFormat::G),
                format_float(cap, FloatFormat::G)
            ));
        }
    }
}

impl Evaluator<'_> {
    pub(crate) fn aggregate(
        &mut self,
        a: &AggregateExpr,
        steps: &Steps,
    ) -> Result<Val, PromqlError> {
        let param = match &a.param {
            Some(p) => Some(self.eval(p, steps)?),
            None => None,
        };
        // Prometheus 3.14 refuses a NaN `k` or ratio at any step, before it looks at the input
        // (3.5 only where there is input, as an int64 overflow for `k`).
        if self.opts.compat.at_least_3_14()
            && let Some(Val::Scalar(p)) = &param
            && p.iter().any(|x| x.is_nan())
        {
            use crate::parser::AggregateOp as A;
            match a.op {
                A::Topk | A::Bottomk | A::Limitk => {
                    return Err(PromqlError::Execution("Parameter value is NaN".into()));
                }
                A::LimitRatio => {
                    return Err(PromqlError::Execution("Ratio value is NaN".into()));
                }
                _ => {}
            }
        }
        let param_at = a.param.as_deref().map(|p| self.at(p)).unwrap_or_default();
        let mut agg = Aggregator::new(a, param, param_at, steps.n, self.opts.compat)?;
        agg.hist.at = self.at(&a.expr);
        agg.hist.sums.compat = self.opts.compat;
        // Without delayed name removal, series left equal by a dropped name are an error,
        // which only the whole input shows: such input is evaluated first.
        let eager_names = !self.opts.delayed_name_removal;
        if !self.materialize
            && super::stream::streamable(&a.expr)
            && (!eager_names || super::stream::names_stay_distinct(&a.expr))
        {
            let (vs, mut kernel) = self.build_kernel(&a.expr, steps)?;
            if eager_names {
                kernel.drop_name_now();
            }
            if !agg.op.outputs_input_series() {
                kernel.keep_group_labels(LabelModifier::grouping(a));
            }
            if let Some(spec) = agg.partial_spec() {
                self.stream_partials(
                    vs,
                    &kernel,
                    &Partial::default,
                    &|p, c, name| spec.add(p, c, name),
                    &mut |ev, p| {
                        agg.merge(p);
                        ev.hold_state(agg.state_bytes())
                    },
                )?;
                return Ok(Val::Vector(agg.finish(self)?));
            }
            let mut batch_seen = 0usize;
            self.stream_columns(vs, &kernel, &mut |ev, mut c, name| {
                agg.take_histograms(&mut c, name);
                let held = agg.push(c);
                ev.acquire(held)?;
                ev.hold_state(agg.state_bytes())?;
                batch_seen += 1;
                if batch_seen.is_multiple_of(1024) {
                    agg.prune();
                }
                Ok(())
            })?;
        } else {
            let cols = match self.eval(&a.expr, steps)? {
                Val::Vector(c) => c,
                other => {
                    return Err(PromqlError::Execution(format!(
                        "expected instant vector in aggregation, got {}",
                        other.type_name()
                    )));
                }
            };
            // The input is already counted as held by its own evaluation.
            for mut c in cols {
                if c.h.is_some() {
                    let name = c.labels.get("__name__").unwrap_or("").to_string();
                    agg.take_histograms(&mut c, &name);
                }
                agg.push(c);
                self.hold_state(agg.state_bytes())?;
            }
        }
        Ok(Val::Vector(agg.finish(self)?))
    }
}

/// A group's labels, whether it drops the metric name, and its members (indexes into the
/// kept columns).
type MemberGroup = (Labels, bool, Vec<usize>);

/// The operators that finish over their kept input: `quantile`, `count_values`, `limitk`,
/// `limit_ratio`. `cols` are the input columns in input order; `groups` name each group's
/// members in that order.
#[allow(clippy::too_many_arguments)]
fn finish_members(
    ev: &mut Evaluator<'_>,
    (op, op_name, modifier): (Op, &str, Option<&LabelModifier>),
    (param, param_at): (Option<&Val>, &str),
    cols: Vec<Col>,
    groups: Vec<MemberGroup>,
    n: usize,
) -> Result<Vec<Col>, PromqlError> {
    let scalar_param = |name: &str| -> Result<Vec<f64>, PromqlError> {
        match param {
            Some(Val::Scalar(v)) => Ok(v.clone()),
            _ => Err(PromqlError::Execution(format!(
                "expected scalar parameter for {name}"
            ))),
        }
    };
    Ok(match op {
        Op::Quantile => {
            let phi = scalar_param("quantile")?;
            ev.check_quantile_param(&phi, param_at);
            let mut out = Vec::with_capacity(groups.len());
            let mut buf = Vec::new();
            for (g, drop_name, members) in &groups {
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
                    h: None,
                    labels: g.clone(),
                    drop_name: *drop_name,
                    v,
                });
            }
            out
        }
        Op::CountValues => {
            let label = match param {
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
                    quoted(&label)
                )));
            }
            // Prometheus sets the value label before it groups, so `without` takes it off
            // again when it is listed or is the metric name: the values then count together.
            let value_dropped = matches!(modifier, Some(LabelModifier::Exclude(w))
                if label == "__name__" || super::listed(&w.labels, &label));
            let mut out: Vec<Col> = Vec::new();
            let mut idx: HashMap<Labels, usize> = HashMap::new();
            for (g, _, members) in &groups {
                for i in 0..n {
                    for &m in members {
                        let x = cols[m].v[i];
                        let text = match cols[m].hist(i) {
                            Some(h) => h.to_string(),
                            None if is_absent(x) => continue,
                            None => format_float(x, FloatFormat::F),
                        };
                        let mut ls: Vec<Label> =
                            g.iter().filter(|l| l.name != label).cloned().collect();
                        if !value_dropped {
                            ls.push(Label::new(label.as_str(), text));
                            ls.sort();
                        }
                        let labels = Labels::from_sorted(ls);
                        let k = *idx.entry(labels.clone()).or_insert_with(|| {
                            out.push(Col {
                                h: None,
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
        _ => {
            let p = scalar_param(op_name)?;
            let mut keep = vec![vec![false; n]; cols.len()];
            let mut order: Vec<usize> = Vec::new();
            // Parameters are checked only at steps where the aggregation has input.
            let has_input: Vec<bool> = (0..n).map(|i| cols.iter().any(|c| c.present(i))).collect();
            if op == Op::LimitRatio {
                if p.iter().all(|&r| r == 0.0) {
                    return Ok(Vec::new());
                }
                ratio_warnings(ev, &p, param_at);
                for (i, &r) in p.iter().enumerate() {
                    if !has_input[i] {
                        continue;
                    }
                    if r.is_nan() {
                        return Err(PromqlError::Execution(format!(
                            "Ratio value {} is NaN",
                            format_float(r, FloatFormat::G)
                        )));
                    }
                    let r = r.clamp(-1.0, 1.0);
                    for (ci, c) in cols.iter().enumerate() {
                        let off = labels_hash(&c.labels) as f64 / 18_446_744_073_709_551_616.0;
                        let sel = if r >= 0.0 { off < r } else { off >= 1.0 + r };
                        keep[ci][i] = sel && c.present(i);
                    }
                }
                if n == 1 {
                    for (_, _, members) in &groups {
                        let kept = members.iter().copied().filter(|&m| keep[m][0]);
                        order.extend(pushed_heap_order(kept.map(|m| (cols[m].v[0], m))));
                    }
                } else {
                    order.extend(0..cols.len());
                }
            } else {
                let mut buf: Vec<usize> = Vec::new();
                for (i, k) in k_per_step(&p).into_iter().enumerate() {
                    if !has_input[i] {
                        continue;
                    }
                    let k = match k {
                        Some(0) => continue,
                        Some(k) => k,
                        None => return Err(k_overflow(p[i])),
                    };
                    for (_, _, members) in &groups {
                        buf.clear();
                        buf.extend(members.iter().copied().filter(|&m| cols[m].present(i)));
                        match op_name {
                            "topk" => {
                                buf.sort_by(|&x, &y| desc_nan_last(cols[x].v[i], cols[y].v[i]))
                            }
                            "bottomk" => {
                                buf.sort_by(|&x, &y| asc_nan_last(cols[x].v[i], cols[y].v[i]))
                            }
                            _ => {}
                        }
                        buf.truncate(k);
                        for &m in &buf {
                            keep[m][i] = true;
                        }
                        if n == 1 && op == Op::LimitK {
                            order.extend(pushed_heap_order(buf.iter().map(|&m| (cols[m].v[i], m))));
                        } else if n == 1 {
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
                        h: None,
                        labels: Labels::empty(),
                        drop_name: false,
                        v: Vec::new(),
                    },
                );
                for (i, (x, &k)) in c.v.iter_mut().zip(keep[ci].iter()).enumerate() {
                    if !k {
                        *x = absent();
                        if let Some(h) = c.h.as_mut() {
                            h[i] = None;
                        }
                    }
                }
                if (0..n).any(|i| c.present(i)) {
                    out.push(c);
                }
            }
            out
        }
    })
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

/// Whether `s` is a valid Prometheus label name (UTF-8 names are valid in 3.x, but not
/// invalid UTF-8 or the empty string).
pub(crate) fn valid_label_name(s: &str) -> bool {
    !s.is_empty()
        && !s.contains('\u{FFFD}')
        && !s
            .chars()
            .any(|c| gauntlet_engine::go_format::as_raw_byte(c).is_some())
}
