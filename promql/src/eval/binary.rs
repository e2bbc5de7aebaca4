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
                    let fill = b.matching.as_ref().map(|m| m.fill).unwrap_or_default();
                    let filled = fill.lhs.is_some() || fill.rhs.is_some();
                    let pairing = Pairing {
                        matching,
                        card: &card,
                        // Prometheus fills its right operand after swapping the sides of
                        // `group_right`, so `fill_right` fills the "one" side either way.
                        fill_one: fill.rhs,
                        fill_many: fill.lhs,
                        // Syntax 3.5 could not parse gets 3.14's answers whatever the compat.
                        strict: filled || self.opts.compat.at_least_3_14(),
                        compat: self.opts.compat,
                    };
                    let mut notes = Vec::new();
                    let cols =
                        vector_vector(&op, l, r, &pairing, return_bool, steps.n, &mut notes)?;
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

/// How the two sides of a vector-vector operation pair up, and what fills in for a missing
/// sample.
struct Pairing<'m> {
    matching: Option<&'m LabelModifier>,
    card: &'m VectorMatchCardinality,
    /// The value standing in for a missing "one"-side sample (`fill_right`, `fill`).
    fill_one: Option<f64>,
    /// The value standing in for a missing "many"-side sample (`fill_left`, `fill`).
    fill_many: Option<f64>,
    /// Prometheus 3.14's matching: every pair counts against the uniqueness of matches before
    /// a comparison filters it (3.5 counted only the pairs it kept), and the two series of a
    /// duplicate "one"-side error are named in label order.
    strict: bool,
    /// The Prometheus release whose histogram arithmetic applies.
    compat: Compat,
}

/// One operand at step `i` of a series.
fn operand(c: &Col, i: usize) -> Operand<'_> {
    match c.hist(i) {
        Some(h) => Operand::Hist(h),
        None => Operand::Float(c.v[i]),
    }
}

/// `many op one` (or `one op many` when `swapped`) at one step: the float or histogram
/// value and whether it is kept (a `bool` comparison always is, as 0 or 1); `None` with
/// the note owed when the operator does not apply to these sample types.
fn pair_value(
    op: &str,
    (mo, oo): (Operand<'_>, Operand<'_>),
    swapped: bool,
    rb: bool,
    compat: Compat,
    notes: &mut Vec<String>,
) -> Option<(f64, Option<FloatHistogram>, bool)> {
    let (lo, ro) = if swapped { (oo, mo) } else { (mo, oo) };
    let (mut v, mut hv, keep) = match elem_binop(op, lo, ro, compat) {
        Ok((v, h, keep, reconciled)) => {
            if let Some(what) = reconciled {
                let note = hist_math::reconciled_info(what, "");
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
            (v, h, keep)
        }
        Err(note) => {
            if !notes.contains(&note) {
                notes.push(note);
            }
            return None;
        }
    };
    if rb {
        hv = None;
        v = if keep { 1.0 } else { 0.0 };
    }
    Some((v, hv, keep || rb))
}

/// The result series of a vector-vector operation, by labels.
struct Output {
    cols: Vec<Col>,
    idx: HashMap<Labels, usize>,
    /// Per result series and step, whether a pair produced it, kept or not (only for
    /// [`Pairing::strict`] many-to-one matching).
    tried: Vec<Vec<bool>>,
    n: usize,
}

impl Output {
    /// The index of the result series with `labels`, added if new.
    fn index(&mut self, labels: Labels, drop_name: bool) -> usize {
        if let Some(&x) = self.idx.get(&labels) {
            return x;
        }
        self.idx.insert(labels.clone(), self.cols.len());
        self.cols.push(Col {
            h: None,
            labels,
            drop_name,
            v: vec![absent(); self.n],
        });
        self.tried.push(Vec::new());
        self.cols.len() - 1
    }

    /// Counts a pair producing result series `idx` at step `i`, kept or not: a second one
    /// is an error in Prometheus 3.14's many-to-one matching.
    fn try_once(&mut self, idx: usize, i: usize) -> Result<(), PromqlError> {
        let n = self.n;
        let t = &mut self.tried[idx];
        if t.is_empty() {
            t.resize(n, false);
        }
        if std::mem::replace(&mut t[i], true) {
            return Err(not_unique());
        }
        Ok(())
    }

    /// Sets result series `idx` at step `i`; `strict` when [`Output::try_once`] has already
    /// ruled out a second value there.
    fn set(
        &mut self,
        idx: usize,
        i: usize,
        (v, hv): (f64, Option<FloatHistogram>),
        strict: bool,
    ) -> Result<(), PromqlError> {
        let c = &mut self.cols[idx];
        if c.present(i) {
            return Err(if strict {
                PromqlError::Execution(
                    "vector cannot contain metrics with the same labelset".into(),
                )
            } else {
                not_unique()
            });
        }
        match hv {
            Some(h) => c.h.get_or_insert_with(|| vec![None; self.n])[i] = Some(h),
            None => c.v[i] = v,
        }
        Ok(())
    }
}

fn not_unique() -> PromqlError {
    PromqlError::Execution(
        "multiple matches for labels: grouping labels must ensure unique matches".into(),
    )
}

/// Whether signature `ord` already had a pair at step `i` (and marks it): Prometheus's
/// matched signatures, which one-to-one matching allows once and `fill_left` skips.
fn mark_matched(matched: &mut [Vec<bool>], ord: usize, i: usize, n: usize) -> bool {
    let m = &mut matched[ord];
    if m.is_empty() {
        m.resize(n, false);
    }
    std::mem::replace(&mut m[i], true)
}

fn vector_vector(
    op: &str,
    l: Vec<Col>,
    r: Vec<Col>,
    p: &Pairing<'_>,
    rb: bool,
    n: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<Col>, PromqlError> {
    let (matching, card, compat) = (p.matching, p.card, p.compat);
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (r, l) } else { (l, r) };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let cmp = is_comparison(op);
    let trim = is_trim(op);
    let drop = rb || !(cmp || trim);
    let filled = p.fill_one.is_some() || p.fill_many.is_some();
    // Prometheus drops the "many" side's name for arithmetic before it copies the group_x
    // labels, so `group_left(__name__)` keeps the "one" side's name, with or without delayed
    // name removal (`bool` drops the name afterwards, so nothing keeps it).
    let name_from_one = !(cmp || trim)
        && card
            .labels()
            .is_some_and(|l| l.labels.iter().any(|x| x == "__name__"));
    let result_drop_name = |many_drop: bool| !name_from_one && (drop || many_drop);

    // Signatures by ordinal, each with its "one"-side series.
    let mut ords: HashMap<Labels, usize> = HashMap::new();
    let mut sigs: Vec<Labels> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, c) in one.iter().enumerate() {
        let sig = signature(&c.labels, matching);
        let ord = *ords.entry(sig.clone()).or_insert_with(|| {
            sigs.push(sig);
            members.push(Vec::new());
            members.len() - 1
        });
        members[ord].push(i);
    }
    // Two "one"-side series with the same signature at the same step cannot be told apart;
    // a step where the other side is empty matches nothing, so it is not checked (as in
    // Prometheus, which skips matching when either side is empty and nothing is filled).
    let many_present: Vec<bool> = (0..n).map(|i| many.iter().any(|c| c.present(i))).collect();
    for (ord, group) in members.iter().enumerate().filter(|(_, m)| m.len() > 1) {
        for i in (0..n).filter(|&i| filled || many_present[i]) {
            let present: Vec<usize> = group
                .iter()
                .copied()
                .filter(|&m| one[m].present(i))
                .collect();
            if present.len() > 1 {
                // Prometheus 3.5 names the second series it meets, then the first; 3.14
                // names them in label order.
                let (mut a, mut b) = (&one[present[1]].labels, &one[present[0]].labels);
                if p.strict && b < a {
                    std::mem::swap(&mut a, &mut b);
                }
                return Err(PromqlError::Execution(format!(
                    "found duplicate series for the match group {} on the {} hand-side of the operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side",
                    sigs[ord],
                    if swapped { "left" } else { "right" },
                )));
            }
        }
    }

    let mut out = Output {
        cols: Vec::new(),
        idx: HashMap::new(),
        tried: Vec::new(),
        n,
    };
    // The result series of each ("many", "one") pair; `usize::MAX` stands for a filled
    // "one" side.
    let mut pair_idx: HashMap<(usize, usize), usize> = HashMap::new();
    let mut matched: Vec<Vec<bool>> = vec![Vec::new(); sigs.len()];
    for (mi, m) in many.iter().enumerate() {
        let sig = signature(&m.labels, matching);
        let ord = match ords.get(&sig) {
            Some(&x) => x,
            None if p.fill_one.is_some() => {
                ords.insert(sig.clone(), sigs.len());
                sigs.push(sig);
                members.push(Vec::new());
                matched.push(Vec::new());
                sigs.len() - 1
            }
            None => continue,
        };
        for i in 0..n {
            if !m.present(i) {
                continue;
            }
            let found = members[ord].iter().copied().find(|&o| one[o].present(i));
            let (oi, one_op) = match (found, p.fill_one) {
                (Some(o), _) => (o, operand(&one[o], i)),
                (None, Some(f)) => (usize::MAX, Operand::Float(f)),
                (None, None) => continue,
            };
            let (v, hv, keep) = if !trim && m.h.is_none() && oi != usize::MAX && one[oi].h.is_none()
            {
                // The float path, as plain as it can be.
                let (mv, ov) = (m.v[i], one[oi].v[i]);
                let (lv, rv) = if swapped { (ov, mv) } else { (mv, ov) };
                let (v, keep) = scalar_binop(op, lv, rv);
                if rb {
                    (if keep { 1.0 } else { 0.0 }, None, true)
                } else {
                    (v, None, keep)
                }
            } else {
                match pair_value(op, (operand(m, i), one_op), swapped, rb, compat, notes) {
                    Some(x) => x,
                    None => continue,
                }
            };
            if !keep && !p.strict {
                continue;
            }
            // Prometheus 3.5 counts only the pairs a comparison keeps as matches: a filter may
            // leave one "many" series per group at a step, and then one-to-one matching holds
            // there. 3.14 counts every pair, and `fill_left` needs them all.
            if one_to_one || p.strict {
                let again = mark_matched(&mut matched, ord, i, n);
                if again && one_to_one {
                    return Err(PromqlError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                    ));
                }
            }
            let idx = match pair_idx.get(&(mi, oi)) {
                Some(&x) => x,
                None => {
                    let one_labels = if oi == usize::MAX {
                        &sigs[ord]
                    } else {
                        &one[oi].labels
                    };
                    let labels = if name_from_one {
                        let many = super::without_name(&m.labels);
                        result_labels(&many, one_labels, matching, card)
                    } else {
                        result_labels(&m.labels, one_labels, matching, card)
                    };
                    let x = out.index(labels, result_drop_name(m.drop_name));
                    pair_idx.insert((mi, oi), x);
                    x
                }
            };
            if p.strict && !one_to_one {
                out.try_once(idx, i)?;
            }
            if keep {
                out.set(idx, i, (v, hv), p.strict && !one_to_one)?;
            }
        }
    }

    // A "one"-side sample no pair matched at its step meets the filled "many" side, whose
    // labels are the signature's.
    if let Some(f) = p.fill_many {
        for ord in 0..members.len() {
            for &o in &members[ord] {
                let mut idx = None;
                for i in 0..n {
                    if !one[o].present(i) || mark_matched(&mut matched, ord, i, n) {
                        continue;
                    }
                    let Some((v, hv, keep)) = pair_value(
                        op,
                        (Operand::Float(f), operand(&one[o], i)),
                        swapped,
                        rb,
                        compat,
                        notes,
                    ) else {
                        continue;
                    };
                    if !keep {
                        continue;
                    }
                    let x = *idx.get_or_insert_with(|| {
                        let labels = result_labels(&sigs[ord], &one[o].labels, matching, card);
                        out.index(labels, result_drop_name(false))
                    });
                    out.set(x, i, (v, hv), true)?;
                }
            }
        }
    }
    let mut cols = out.cols;
    if p.strict {
        // Series only filtered pairs produced.
        cols.retain(|c| (0..n).any(|i| c.present(i)));
    }
    Ok(cols)
}

#[cfg(test)]
mod tests {
    use crate::promqltest::run_script;
    use crate::{Compat, Engine, EngineOptions, Features};

    /// Runs a promqltest script with every feature on, as Prometheus's test engine does, and
    /// fails with the evals that did not pass.
    fn pass(script: &str, compat: Compat) {
        let engine = Engine::new(EngineOptions {
            delayed_name_removal: true,
            features: Features::all(),
            compat,
            ..EngineOptions::default()
        });
        let r = run_script("binary.rs", script, &engine);
        assert!(r.failed.is_empty(), "{:#?}", r.failed);
        assert!(r.passed > 0);
    }

    const DATA: &str = "
load 5m
  a{k=\"1\", x=\"p\"} 1 _ 3
  a{k=\"1\", x=\"q\"} 10 _ _
  a{k=\"2\", x=\"p\"} 2 2 2
  b{k=\"1\"} 100 100 _
  b{k=\"3\"} 300 _ 300
";

    /// A filled side still counts as a match: two series of one signature against a filled
    /// side are as ambiguous as against a real one.
    #[test]
    fn filled_one_side_keeps_one_to_one_matching_unique() {
        let script = format!(
            "{DATA}
eval instant at 0m a + on(k) fill_right(0) b{{k=\"3\"}}
  expect fail msg: multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)

eval instant at 10m a + on(k) group_left fill(0) b
  {{k=\"1\", x=\"p\"}} 3
  {{k=\"2\", x=\"p\"}} 2
  {{k=\"3\"}} 300
"
        );
        pass(&script, Compat::Prometheus3_14);
    }

    /// `fill_left` fills only signatures no pair met at that step, even a pair a comparison
    /// filtered out; with `bool` the filled pairs give 0 or 1.
    #[test]
    fn fill_left_skips_signatures_a_filtered_pair_matched() {
        let script = format!(
            "{DATA}
eval instant at 5m a > on(k) fill_left(150) b
  {{k=\"1\"}} 150

eval instant at 0m a{{x=\"p\"}} > on(k) fill_left(1000) b
  {{k=\"3\"}} 1000

eval instant at 0m a{{x=\"p\"}} > bool on(k) fill(1000) b
  {{k=\"1\"}} 0
  {{k=\"2\"}} 0
  {{k=\"3\"}} 1
"
        );
        pass(&script, Compat::Prometheus3_14);
    }

    /// With `group_right` the "one" side is the left operand: `fill_right` still fills the
    /// "one" side and `fill_left` the "many" side, as Prometheus swaps the sides first.
    #[test]
    fn group_right_fills_by_side_after_the_swap() {
        let script = format!(
            "{DATA}
eval instant at 0m b * on(k) group_right fill_right(2) a
  {{k=\"1\", x=\"p\"}} 100
  {{k=\"1\", x=\"q\"}} 1000
  {{k=\"2\", x=\"p\"}} 4

eval instant at 0m b * on(k) group_right fill_left(2) a
  {{k=\"1\", x=\"p\"}} 100
  {{k=\"1\", x=\"q\"}} 1000
  {{k=\"3\"}} 600
"
        );
        pass(&script, Compat::Prometheus3_14);
    }

    /// Duplicate "one"-side series are an error at any step once something is filled, even
    /// where the other side is empty; without fill such a step is not looked at.
    #[test]
    fn duplicates_on_the_one_side_fail_once_filling() {
        let script = "
load 5m
  dup{k=\"1\", i=\"b\"} 1
  dup{k=\"1\", i=\"a\"} 2

eval instant at 0m nothing + on(k) fill_left(0) dup
  expect fail msg: found duplicate series for the match group {k=\"1\"} on the right hand-side of the operation: [{__name__=\"dup\", i=\"a\", k=\"1\"}, {__name__=\"dup\", i=\"b\", k=\"1\"}];many-to-many matching not allowed: matching labels must be unique on one side

eval instant at 0m nothing + on(k) dup
";
        pass(script, Compat::Prometheus3_14);
    }

    /// Prometheus 3.14 counts every pair of a comparison against one-to-one matching, before
    /// filtering; 3.5 only the pairs it kept.
    #[test]
    fn comparison_pairs_count_as_matches_from_3_14() {
        let data = "
load 5m
  many{label=\"foo\", job=\"test\"} 0
  many{label=\"bar\", job=\"test\"} 1
  one{job=\"test\"} 1
";
        pass(
            &format!("{data}\neval instant at 0m many > on(job) one\n  expect fail\n"),
            Compat::Prometheus3_14,
        );
        pass(
            &format!("{data}\neval instant at 0m many > on(job) one\n"),
            Compat::Prometheus3_5,
        );
        pass(
            &format!("{data}\neval instant at 0m many >= on(job) one\n  {{job=\"test\"}} 1\n"),
            Compat::Prometheus3_5,
        );
    }
}
