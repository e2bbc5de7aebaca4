//! Binary operators: arithmetic, comparisons (filtering or `bool`), and the set operators,
//! between scalars and vectors, with `on`/`ignoring` and `group_left`/`group_right` matching.

use std::collections::HashMap;

use crate::parser::{BinaryExpr, Cardinality};

use super::{Col, Evaluator, LabelList, LabelModifier, Steps, Val, absent, is_absent};
use crate::Compat;
use crate::error::PromqlError;
use crate::hist_math::{self, TrimKeep};
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram};
use gauntlet_engine::labels::{Label, Labels};

/// Whether `op` compares (`==`, `!=`, `<`, `<=`, `>`, `>=`).
pub(crate) fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Whether `op` trims a histogram (`</`, `>/`): like a filtering comparison, it keeps the
/// metric name.
pub(crate) fn is_trim(op: &str) -> bool {
    matches!(op, "</" | ">/")
}

/// `lhs op rhs` for two numbers: the value and whether a comparison holds (arithmetic always
/// holds). A comparison's value is its left operand, as Prometheus's filter keeps it.
pub(crate) fn scalar_binop(op: &str, l: f64, r: f64) -> (f64, bool) {
    match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

/// How a binary operation's sides pair up, with the `group_left`/`group_right` labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VectorMatchCardinality {
    OneToOne,
    ManyToOne(LabelList),
    OneToMany(LabelList),
    ManyToMany,
}

impl VectorMatchCardinality {
    /// The cardinality `b` asks for (one-to-one when it names none).
    fn of(b: &BinaryExpr) -> VectorMatchCardinality {
        let Some(m) = &b.matching else {
            return VectorMatchCardinality::OneToOne;
        };
        let include = || LabelList {
            labels: m.include.clone(),
        };
        match m.card {
            Cardinality::OneToOne => VectorMatchCardinality::OneToOne,
            Cardinality::ManyToOne => VectorMatchCardinality::ManyToOne(include()),
            Cardinality::OneToMany => VectorMatchCardinality::OneToMany(include()),
            Cardinality::ManyToMany => VectorMatchCardinality::ManyToMany,
        }
    }

    /// The labels `group_left`/`group_right` copy from the "one" side.
    fn labels(&self) -> Option<&LabelList> {
        match self {
            VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => Some(l),
            _ => None,
        }
    }
}

/// The labels two series are matched on: only the `on` labels, or all but the `ignoring`
/// labels and the metric name.
fn signature(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => Labels::from_sorted(
            labels
                .iter()
                .filter(|l| super::listed(&on.labels, &l.name))
                .cloned()
                .collect(),
        ),
        Some(LabelModifier::Exclude(ign)) => Labels::from_sorted(
            labels
                .iter()
                .filter(|l| l.name != "__name__" && !super::listed(&ign.labels, &l.name))
                .cloned()
                .collect(),
        ),
        None => Labels::from_sorted(
            labels
                .iter()
                .filter(|l| l.name != "__name__")
                .cloned()
                .collect(),
        ),
    }
}

impl Evaluator<'_> {
    /// `b`, which starts at `at` (` (line:column)`, for its annotations).
    pub(crate) fn binary(
        &mut self,
        b: &BinaryExpr,
        at: &str,
        steps: &Steps,
    ) -> Result<Val, PromqlError> {
        let op = b.op.as_str().to_string();
        let return_bool = b.return_bool;
        let lhs = self.eval(&b.lhs, steps)?;
        let rhs = self.eval(&b.rhs, steps)?;
        let matching = LabelModifier::matching(b);
        let matching = matching.as_ref();
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.iter()
                    .zip(r.iter())
                    .map(|(&a, &c)| {
                        let (v, keep) = scalar_binop(&op, a, c);
                        if is_comparison(&op) {
                            if keep { 1.0 } else { 0.0 }
                        } else {
                            v
                        }
                    })
                    .collect(),
            )),
            (Val::Vector(l), Val::Scalar(r)) => Ok(Val::Vector(vector_scalar(
                self,
                (&op, at),
                l,
                &r,
                false,
                return_bool,
            ))),
            (Val::Scalar(l), Val::Vector(r)) => Ok(Val::Vector(vector_scalar(
                self,
                (&op, at),
                r,
                &l,
                true,
                return_bool,
            ))),
            (Val::Vector(l), Val::Vector(r)) => match op.as_str() {
                "and" => Ok(Val::Vector(set_and_unless(l, &r, matching, true))),
                "unless" => Ok(Val::Vector(set_and_unless(l, &r, matching, false))),
                "or" => Ok(Val::Vector(set_or(l, r, matching))),
                _ => {
                    let card = VectorMatchCardinality::of(b);
                    let mut notes = Vec::new();
                    let cols = vector_vector(
                        &op,
                        l,
                        r,
                        matching,
                        &card,
                        return_bool,
                        steps.n,
                        self.opts.compat,
                        &mut notes,
                    )?;
                    for note in notes {
                        let note = format!("{note}{at}");
                        if note.starts_with("PromQL warning") {
                            self.warn(note);
                        } else {
                            self.note_info(note);
                        }
                    }
                    Ok(Val::Vector(cols))
                }
            },
            (l, r) => Err(PromqlError::Execution(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            ))),
        }
    }
}

/// A vector against a per-step scalar; `swap` when the scalar is the left operand.
fn vector_scalar(
    ev: &mut Evaluator<'_>,
    (op, at): (&str, &str),
    mut cols: Vec<Col>,
    s: &[f64],
    swap: bool,
    rb: bool,
) -> Vec<Col> {
    let trim = is_trim(op);
    let compat = ev.opts.compat;
    for c in &mut cols {
        if let Some(note) = vector_scalar_hists(op, c, s, swap, rb, compat) {
            ev.note_info(format!("{note}{at}"));
        }
        if trim {
            trim_floats(ev, (op, at), c);
            continue;
        }
        vector_scalar_col(op, c, s, swap, rb);
    }
    let n = s.len();
    cols.retain(|c| (0..n).any(|i| c.present(i)));
    cols
}

/// The float samples of one series under a trim operator, which applies to histograms only:
/// dropped, with the info annotation Prometheus gives for them.
fn trim_floats(ev: &mut Evaluator<'_>, (op, at): (&str, &str), c: &mut Col) {
    let mut dropped = false;
    for x in c.v.iter_mut().filter(|x| !is_absent(**x)) {
        *x = absent();
        dropped = true;
    }
    if dropped {
        ev.note_info(format!(
            "PromQL info: incompatible sample types encountered for binary operator {op:?}: float {op} float{at}"
        ));
    }
}

/// The histogram samples of one series against a per-step scalar (before
/// [`vector_scalar_col`] does its floats): a scaled histogram, a 0/1 with `bool`, or dropped
/// where the operator does not apply, with the info annotation that is owed then.
pub(crate) fn vector_scalar_hists(
    op: &str,
    c: &mut Col,
    s: &[f64],
    swap: bool,
    rb: bool,
    compat: Compat,
) -> Option<String> {
    let mut h = c.h.take()?;
    let mut note = None;
    for (i, slot) in h.iter_mut().enumerate() {
        let Some(x) = slot.take() else { continue };
        let (l, r) = if swap {
            (Operand::Float(s[i]), Operand::Hist(&x))
        } else {
            (Operand::Hist(&x), Operand::Float(s[i]))
        };
        let (v, nh, keep) = match elem_binop(op, l, r, compat) {
            Ok((v, nh, keep, _)) => (v, nh, keep),
            Err(n) => {
                note.get_or_insert(n);
                continue;
            }
        };
        if rb {
            c.v[i] = if keep { 1.0 } else { 0.0 };
        } else if keep {
            match nh {
                Some(nh) => *slot = Some(nh),
                None => c.v[i] = v,
            }
        }
    }
    if h.iter().any(|x| x.is_some()) {
        c.h = Some(h);
    }
    note
}

/// One operand of a binary operation between samples.
#[derive(Clone, Copy)]
enum Operand<'h> {
    Float(f64),
    Hist(&'h FloatHistogram),
}

impl Operand<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Operand::Float(_) => "float",
            Operand::Hist(_) => "histogram",
        }
    }
}

/// What [`elem_binop`] gives: the float value, the histogram value (if any), whether a
/// comparison keeps the sample, and the operation that reconciled custom bounds (if any).
type ElemOutcome = (f64, Option<FloatHistogram>, bool, Option<&'static str>);

/// `l op r` where either side may be a histogram: the float result, or a histogram one,
/// whether a comparison keeps it, and the operation (`addition`, `subtraction`) if it
/// reconciled custom bounds; an info annotation when the operator does not apply to these
/// types (the sample is then dropped).
fn elem_binop(
    op: &str,
    l: Operand<'_>,
    r: Operand<'_>,
    compat: Compat,
) -> Result<ElemOutcome, String> {
    let incompatible = || {
        format!(
            "PromQL info: incompatible sample types encountered for binary operator {op:?}: {} {op} {}",
            l.type_name(),
            r.type_name()
        )
    };
    match (l, r) {
        (Operand::Float(a), Operand::Float(b)) => {
            let (v, keep) = scalar_binop(op, a, b);
            Ok((v, None, keep, None))
        }
        (Operand::Hist(a), Operand::Hist(b)) => match op {
            "+" | "-" => {
                let (res, what) = if op == "+" {
                    (hist_math::add(a, b, compat), "addition")
                } else {
                    (hist_math::sub(a, b, compat), "subtraction")
                };
                match res {
                    Ok((mut h, reconciled)) => {
                        // Prometheus 3.14 makes every difference a gauge.
                        if op == "-" && compat.at_least_3_14() {
                            h.counter_reset_hint = CounterResetHint::Gauge;
                        }
                        Ok((0.0, Some(h), true, reconciled.then_some(what)))
                    }
                    Err(_) => Err(format!(
                        "PromQL warning: incompatible bucket layout encountered for binary operator {op}"
                    )),
                }
            }
            "==" => Ok((0.0, Some(a.clone()), hist_math::equals(a, b), None)),
            "!=" => Ok((0.0, Some(a.clone()), !hist_math::equals(a, b), None)),
            _ => Err(incompatible()),
        },
        (Operand::Hist(a), Operand::Float(b)) => match op {
            "</" => Ok((
                0.0,
                Some(hist_math::trim(a, b, TrimKeep::Below)),
                true,
                None,
            )),
            ">/" => Ok((
                0.0,
                Some(hist_math::trim(a, b, TrimKeep::Above)),
                true,
                None,
            )),
            "*" => {
                let mut h = a.clone();
                hist_math::scale(&mut h, b, compat);
                Ok((0.0, Some(h), true, None))
            }
            "/" => {
                let mut h = a.clone();
                hist_math::divide(&mut h, b, compat);
                Ok((0.0, Some(h), true, None))
            }
            _ => Err(incompatible()),
        },
        (Operand::Float(a), Operand::Hist(b)) => match op {
            "*" => {
                let mut h = b.clone();
                hist_math::scale(&mut h, a, compat);
                Ok((0.0, Some(h), true, None))
            }
            _ => Err(incompatible()),
        },
    }
}

/// One series against a per-step scalar: the value, a 0/1 with `bool`, or absent where a
/// filtering comparison fails.
pub(crate) fn vector_scalar_col(op: &str, c: &mut Col, s: &[f64], swap: bool, rb: bool) {
    let cmp = is_comparison(op);
    for (x, &sv) in c.v.iter_mut().zip(s.iter()) {
        if is_absent(*x) {
            continue;
        }
        let (l, r) = if swap { (sv, *x) } else { (*x, sv) };
        let (mut v, keep) = scalar_binop(op, l, r);
        if cmp && swap {
            // The vector's own value survives a filtering comparison either way round.
            v = r;
        }
        *x = if rb {
            if keep { 1.0 } else { 0.0 }
        } else if keep {
            v
        } else {
            absent()
        };
    }
    if !(cmp || is_trim(op)) || rb {
        c.drop_name = true;
    }
}

/// Per signature and step, whether any series of `cols` has a value.
fn presence(cols: &[Col], matching: Option<&LabelModifier>) -> HashMap<Labels, Vec<bool>> {
    let mut m: HashMap<Labels, Vec<bool>> = HashMap::new();
    for c in cols {
        let p = m
            .entry(signature(&c.labels, matching))
            .or_insert_with(|| vec![false; c.v.len()]);
        for (i, b) in p.iter_mut().enumerate() {
            *b |= c.present(i);
        }
    }
    m
}

fn set_and_unless(
    mut l: Vec<Col>,
    r: &[Col],
    matching: Option<&LabelModifier>,
    and: bool,
) -> Vec<Col> {
    let p = presence(r, matching);
    for c in &mut l {
        let sig = signature(&c.labels, matching);
        let present = p.get(&sig);
        for i in 0..c.v.len() {
            let other = present.is_some_and(|v| v[i]);
            if other != and {
                c.clear(i);
            }
        }
    }
    l.retain(|c| (0..c.v.len()).any(|i| c.present(i)));
    l
}

fn set_or(mut l: Vec<Col>, r: Vec<Col>, matching: Option<&LabelModifier>) -> Vec<Col> {
    let p = presence(&l, matching);
    for mut c in r {
        let sig = signature(&c.labels, matching);
        if let Some(present) = p.get(&sig) {
            for (i, &b) in present.iter().enumerate() {
                if b {
                    c.clear(i);
                }
            }
        }
        if (0..c.v.len()).any(|i| c.present(i)) {
            l.push(c);
        }
    }
    l
}

/// The labels of a matched pair's result: the "many" side's labels, reduced to the `on`
/// labels (or without the `ignoring` labels) for one-to-one matching, plus the `group_x`
/// labels copied from the "one" side.
fn result_labels(
    many: &Labels,
    one: &Labels,
    matching: Option<&LabelModifier>,
    card: &VectorMatchCardinality,
) -> Labels {
    let mut ls: Vec<Label> = many.iter().cloned().collect();
    if matches!(card, VectorMatchCardinality::OneToOne) {
        match matching {
            Some(LabelModifier::Include(on)) => {
                ls.retain(|l| super::listed(&on.labels, &l.name));
            }
            Some(LabelModifier::Exclude(ign)) => {
                ls.retain(|l| !super::listed(&ign.labels, &l.name));
            }
            None => {}
        }
    }
    if let Some(include) = card.labels() {
        for name in &include.labels {
            ls.retain(|l| l.name != *name);
            if let Some(v) = one.get(name)
                && !v.is_empty()
            {
                ls.push(Label::new(name.as_str(), v));
            }
        }
        ls.sort();
    }
    Labels::from_sorted(ls)
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    op: &str,
    l: Vec<Col>,
    r: Vec<Col>,
    matching: Option<&LabelModifier>,
    card: &VectorMatchCardinality,
    rb: bool,
    n: usize,
    compat: Compat,
    notes: &mut Vec<String>,
) -> Result<Vec<Col>, PromqlError> {
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (r, l) } else { (l, r) };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let cmp = is_comparison(op);
    let trim = is_trim(op);
    let drop = rb || !(cmp || trim);
    // Prometheus drops the "many" side's name for arithmetic before it copies the group_x
    // labels, so `group_left(__name__)` keeps the "one" side's name, with or without delayed
    // name removal (`bool` drops the name afterwards, so nothing keeps it).
    let name_from_one = !(cmp || trim)
        && card
            .labels()
            .is_some_and(|l| l.labels.iter().any(|x| x == "__name__"));

    let mut groups: HashMap<Labels, Vec<usize>> = HashMap::new();
    for (i, c) in one.iter().enumerate() {
        groups
            .entry(signature(&c.labels, matching))
            .or_default()
            .push(i);
    }
    // Two "one"-side series with the same signature at the same step cannot be told apart;
    // a step where the other side is empty matches nothing, so it is not checked (as in
    // Prometheus, which skips matching when either side is empty).
    let many_present: Vec<bool> = (0..n).map(|i| many.iter().any(|c| c.present(i))).collect();
    for (sig, members) in groups.iter().filter(|(_, m)| m.len() > 1) {
        for i in (0..n).filter(|&i| many_present[i]) {
            let present: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&m| one[m].present(i))
                .collect();
            // Prometheus names the second series it meets, then the first.
            if present.len() > 1 {
                return Err(PromqlError::Execution(format!(
                    "found duplicate series for the match group {sig} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    if swapped { "left" } else { "right" },
                    one[present[1]].labels,
                    one[present[0]].labels
                )));
            }
        }
    }

    let mut out: Vec<Col> = Vec::new();
    let mut out_idx: HashMap<Labels, usize> = HashMap::new();
    let mut pair_idx: HashMap<(usize, usize), usize> = HashMap::new();
    let mut matched: HashMap<Labels, Vec<bool>> = HashMap::new();
    for (mi, m) in many.iter().enumerate() {
        let sig = signature(&m.labels, matching);
        let Some(members) = groups.get(&sig) else {
            continue;
        };
        for i in 0..n {
            if !m.present(i) {
                continue;
            }
            let Some(oi) = members.iter().copied().find(|&o| one[o].present(i)) else {
                continue;
            };
            let mut hv = None;
            let (mut v, keep) = if !trim && m.h.is_none() && one[oi].h.is_none() {
                let (mv, ov) = (m.v[i], one[oi].v[i]);
                let (lv, rv) = if swapped { (ov, mv) } else { (mv, ov) };
                scalar_binop(op, lv, rv)
            } else {
                fn operand(c: &Col, i: usize) -> Operand<'_> {
                    match c.hist(i) {
                        Some(h) => Operand::Hist(h),
                        None => Operand::Float(c.v[i]),
                    }
                }
                let (mo, oo) = (operand(m, i), operand(&one[oi], i));
                let (lo, ro) = if swapped { (oo, mo) } else { (mo, oo) };
                match elem_binop(op, lo, ro, compat) {
                    Ok((v, h, keep, reconciled)) => {
                        if let Some(what) = reconciled {
                            let note = hist_math::reconciled_info(what, "");
                            if !notes.contains(&note) {
                                notes.push(note);
                            }
                        }
                        hv = h;
                        (v, keep)
                    }
                    Err(note) => {
                        if !notes.contains(&note) {
                            notes.push(note);
                        }
                        continue;
                    }
                }
            };
            if rb {
                hv = None;
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            // Only pairs a comparison keeps count as matches: a filter may leave one "many"
            // series per group at a step, and then one-to-one matching holds there.
            if one_to_one {
                let seen = matched.entry(sig.clone()).or_insert_with(|| vec![false; n]);
                if seen[i] {
                    return Err(PromqlError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                    ));
                }
                seen[i] = true;
            }
            let idx = match pair_idx.get(&(mi, oi)) {
                Some(&x) => x,
                None => {
                    let labels = if name_from_one {
                        let many = super::without_name(&m.labels);
                        result_labels(&many, &one[oi].labels, matching, card)
                    } else {
                        result_labels(&m.labels, &one[oi].labels, matching, card)
                    };
                    let x = *out_idx.entry(labels.clone()).or_insert_with(|| {
                        out.push(Col {
                            h: None,
                            labels,
                            drop_name: !name_from_one && (drop || m.drop_name),
                            v: vec![absent(); n],
                        });
                        out.len() - 1
                    });
                    pair_idx.insert((mi, oi), x);
                    x
                }
            };
            if out[idx].present(i) {
                return Err(PromqlError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                        .into(),
                ));
            }
            match hv {
                Some(h) => out[idx].h.get_or_insert_with(|| vec![None; n])[i] = Some(h),
                None => out[idx].v[i] = v,
            }
        }
    }
    Ok(out)
}
