//! A rule group at run time: its rules in order, evaluated at times aligned as Prometheus
//! aligns them, recording what they give and marking stale what they stopped giving.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use gauntlet_engine::chunk::STALE_NAN_BITS;
use gauntlet_engine::labels::Labels;

use super::alerting::{Alert, AlertTemplates, AlertingRule, set};
use super::file::RuleGroup;
use crate::InstantSample;

/// Runs a rule's expression: an instant query at `t_ms`, its answer as a vector (a scalar
/// becomes one sample without labels); `Err` is the query's message.
pub trait RuleQuerier {
    /// The expression's value at `t_ms` (ms).
    fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<InstantSample>, String>;

    /// Says that `exprs` are queried next, in this order, each at `t_ms`, and that none of
    /// them reads what the others' results add: a querier may read all they select at once.
    /// What it read for the expressions announced before is no longer to be used (results
    /// have been recorded since). The default does nothing.
    fn prepare(&self, exprs: &[&str], t_ms: i64) {
        let _ = (exprs, t_ms);
    }
}

/// How a rule fared at its last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not evaluated yet.
    Unknown,
    /// Evaluated without error.
    Ok,
    /// The last evaluation failed.
    Err,
}

impl Health {
    /// The name the APIs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A recording rule.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    /// The recorded metric's name.
    pub name: String,
    /// The expression as Prometheus prints it.
    pub expr: String,
    /// The group's labels with the rule's over them.
    pub labels: BTreeMap<String, String>,
}

impl RecordingRule {
    /// The series recorded from `res`: renamed, relabelled, checked as Prometheus checks them.
    fn eval(&self, res: Vec<InstantSample>, limit: u64) -> Result<Vec<InstantSample>, String> {
        let mut out = Vec::with_capacity(res.len());
        let mut seen = HashSet::with_capacity(res.len());
        for mut s in res {
            let mut lb: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            lb.insert("__name__".into(), self.name.clone());
            for (k, v) in &self.labels {
                set(&mut lb, k, v.clone());
            }
            s.labels = Labels::from_pairs(lb);
            if !seen.insert(s.labels.clone()) {
                return Err(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .into(),
                );
            }
            out.push(s);
        }
        if limit > 0 && out.len() as u64 > limit {
            return Err(format!(
                "exceeded limit of {limit} with {} series",
                out.len()
            ));
        }
        Ok(out)
    }
}

/// A rule of either kind.
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// Records a series.
    Recording(RecordingRule),
    /// Raises alerts.
    Alerting(AlertingRule),
}

/// A rule with how its last evaluation went.
#[derive(Debug, Clone)]
pub struct RuleState {
    /// The rule.
    pub kind: RuleKind,
    /// How the last evaluation went.
    pub health: Health,
    /// The last evaluation's error.
    pub last_error: Option<String>,
    /// When it was last evaluated, ms (0 before).
    pub last_eval_ms: i64,
    /// How long the last evaluation took.
    pub eval_duration: Duration,
    /// The series it recorded at its last evaluation: those missing next time get a stale
    /// marker.
    previous: HashSet<Labels>,
    /// The metric names its expression can read.
    reads: Reads,
}

/// The metric names an expression can read: each of its selectors names one, or one
/// selects by other labels only and could read any series.
#[derive(Debug, Clone, PartialEq)]
enum Reads {
    Names(Vec<String>),
    Any,
}

impl Reads {
    /// What `expr`'s selectors can read.
    fn of(expr: &crate::parser::ast::Expr) -> Reads {
        use crate::parser::ast::Expr;
        let mut names = Vec::new();
        let mut stack = vec![expr];
        while let Some(e) = stack.pop() {
            let vs = match e {
                Expr::Number(_) | Expr::String(_) => continue,
                Expr::Vector(v) => v,
                Expr::Matrix(m) => &m.selector,
                Expr::Subquery(q) => {
                    stack.push(&q.expr);
                    continue;
                }
                Expr::Paren(p) => {
                    stack.push(&p.expr);
                    continue;
                }
                Expr::Unary(u) => {
                    stack.push(&u.expr);
                    continue;
                }
                Expr::Binary(b) => {
                    stack.extend([&*b.lhs, &*b.rhs]);
                    continue;
                }
                Expr::Call(c) => {
                    stack.extend(c.args.iter());
                    continue;
                }
                Expr::Aggregate(a) => {
                    stack.push(&a.expr);
                    stack.extend(a.param.as_deref());
                    continue;
                }
            };
            let name = vs
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && m.op == crate::parser::ast::MatchOp::Equal);
            match name {
                Some(m) => names.push(m.value.clone()),
                None => return Reads::Any,
            }
        }
        Reads::Names(names)
    }

    /// Whether a series named one of `written` can be among what is read.
    fn any_of(&self, written: &HashSet<String>) -> bool {
        match self {
            Reads::Any => !written.is_empty(),
            Reads::Names(n) => n.iter().any(|n| written.contains(n)),
        }
    }
}

impl RuleState {
    /// The metric names of the series it records: its own name (or the one its labels set),
    /// or an alerting rule's `ALERTS` and `ALERTS_FOR_STATE`.
    fn writes(&self) -> Vec<String> {
        match &self.kind {
            RuleKind::Recording(r) => {
                let mut names = vec![r.name.clone()];
                names.extend(r.labels.get("__name__").cloned());
                names
            }
            RuleKind::Alerting(a) => {
                let mut names = vec!["ALERTS".to_string(), "ALERTS_FOR_STATE".to_string()];
                names.extend(a.labels.get("__name__").cloned());
                names
            }
        }
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Recording(r) => &r.name,
            RuleKind::Alerting(r) => &r.name,
        }
    }

    /// The rule's expression as printed.
    pub fn expr(&self) -> &str {
        match &self.kind {
            RuleKind::Recording(r) => &r.expr,
            RuleKind::Alerting(r) => &r.expr,
        }
    }
}

/// What one evaluation of a group gave.
#[derive(Debug, Default)]
pub struct EvalOutput {
    /// Samples to record: the recording rules' series, `ALERTS` and `ALERTS_FOR_STATE`, and
    /// stale markers for the series a rule no longer gives.
    pub samples: Vec<InstantSample>,
    /// Alerts due to Alertmanager, with the expression of the rule that raised them.
    pub alerts: Vec<(String, Alert)>,
}

/// A group ready to run.
#[derive(Debug, Clone)]
pub struct Group {
    /// The file it came from.
    pub file: String,
    /// Its name.
    pub name: String,
    /// How often it runs, ms.
    pub interval_ms: i64,
    /// How far behind evaluation time its queries look, ms.
    pub query_offset_ms: i64,
    /// The most series or alerts a rule may give; 0 is no limit.
    pub limit: u64,
    /// Thanos's `partial_response_strategy`, as written.
    pub partial_response_strategy: Option<String>,
    /// Its rules, in order.
    pub rules: Vec<RuleState>,
    /// When it last ran, ms (0 before).
    pub last_eval_ms: i64,
    /// How long its last run took.
    pub eval_duration: Duration,
    /// Series that rules dropped by a reload recorded: marked stale at the next round.
    pending_stale: Vec<Labels>,
}

/// A round's samples not handed to `record` yet, with their metric names.
#[derive(Default)]
struct Unrecorded {
    samples: Vec<InstantSample>,
    names: HashSet<String>,
}

impl Unrecorded {
    fn add(&mut self, samples: Vec<InstantSample>) {
        for s in &samples {
            if let Some(n) = s.labels.get("__name__")
                && !self.names.contains(n)
            {
                self.names.insert(n.to_string());
            }
        }
        self.samples.extend(samples);
    }

    fn hand_to(&mut self, record: &mut dyn FnMut(Vec<InstantSample>)) {
        self.names.clear();
        if !self.samples.is_empty() {
            record(std::mem::take(&mut self.samples));
        }
    }
}

impl Group {
    /// The group `g` of `file`, with the ruler's defaults for its interval and offset. `Err`
    /// when an expression does not parse (files are checked before this).
    pub fn new(
        file: &str,
        g: &RuleGroup,
        default_interval_ms: i64,
        default_query_offset_ms: i64,
    ) -> Result<Group, String> {
        let mut rules = Vec::with_capacity(g.rules.len());
        for r in &g.rules {
            let parsed = crate::parse(&r.expr)
                .map_err(|e| format!("group {:?}, rule {:?}: {e}", g.name, r.name()))?;
            let reads = Reads::of(&parsed);
            let expr = parsed.to_string();
            let mut labels = g.labels.clone();
            labels.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            let kind = if r.alert.is_empty() {
                RuleKind::Recording(RecordingRule {
                    name: r.record.clone(),
                    expr,
                    labels,
                })
            } else {
                RuleKind::Alerting(AlertingRule {
                    name: r.alert.clone(),
                    expr,
                    for_ms: r.for_ms,
                    keep_firing_for_ms: r.keep_firing_for_ms,
                    labels,
                    annotations: r.annotations.clone(),
                    active: HashMap::new(),
                    restored: false,
                })
            };
            rules.push(RuleState {
                kind,
                health: Health::Unknown,
                last_error: None,
                last_eval_ms: 0,
                eval_duration: Duration::ZERO,
                previous: HashSet::new(),
                reads,
            });
        }
        Ok(Group {
            file: file.to_string(),
            name: g.name.clone(),
            interval_ms: g.interval_ms.unwrap_or(default_interval_ms).max(1),
            query_offset_ms: g.query_offset_ms.unwrap_or(default_query_offset_ms),
            limit: g.limit,
            partial_response_strategy: g.partial_response_strategy.clone(),
            rules,
            last_eval_ms: 0,
            eval_duration: Duration::ZERO,
            pending_stale: Vec::new(),
        })
    }

    /// The group's latest evaluation time at or before `now_ms`: Prometheus spreads groups
    /// over their interval by a hash of their name and file, so groups of one interval do not
    /// all run at once, and every ruler runs a group at the same moments.
    pub fn eval_timestamp(&self, now_ms: i64) -> i64 {
        let interval_ns = i128::from(self.interval_ms) * 1_000_000;
        let hash = label_set_hash(&[("file", &self.file), ("name", &self.name)]);
        let offset = i128::from(hash) % interval_ns;
        let adj = i128::from(now_ms) * 1_000_000 - offset;
        let next = adj - adj.rem_euclid(interval_ns) + offset;
        (next.div_euclid(1_000_000)) as i64
    }

    /// Marks every alerting rule as restored: its `ALERTS` samples are recorded from now on.
    pub fn set_restored(&mut self) {
        for r in &mut self.rules {
            if let RuleKind::Alerting(a) = &mut r.kind {
                a.restored = true;
            }
        }
    }

    /// Evaluates every rule in order at `ts_ms`. A rule that fails is marked `err` with its
    /// message and the others go on; `resend_delay_ms` paces alerts to Alertmanager.
    /// `record` takes the rules' samples, a group's worth at a time: before a rule whose
    /// expression can read a series not yet handed over, so a rule reads what the rules
    /// before it recorded in this round, and at the end.
    pub fn eval(
        &mut self,
        ts_ms: i64,
        querier: &dyn RuleQuerier,
        templates: &dyn AlertTemplates,
        resend_delay_ms: i64,
        record: &mut dyn FnMut(Vec<InstantSample>),
    ) -> Vec<(String, Alert)> {
        let began = Instant::now();
        let mut alerts = Vec::new();
        let q_ts = ts_ms - self.query_offset_ms;
        // Samples not handed to `record` yet, and their metric names.
        let mut unrecorded = Unrecorded::default();
        unrecorded.add(
            std::mem::take(&mut self.pending_stale)
                .into_iter()
                .map(|labels| stale_marker(labels, q_ts))
                .collect(),
        );
        // Rules up to here were announced to the querier.
        let mut prepared_until = 0;
        for i in 0..self.rules.len() {
            let rule_began = Instant::now();
            if self.rules[i].reads.any_of(&unrecorded.names) {
                unrecorded.hand_to(record);
            }
            if i >= prepared_until {
                // A run of one has nothing to gain; it is announced empty, which ends what the
                // querier read for the run before.
                prepared_until = self.independent_run(i, &unrecorded.names);
                let exprs: Vec<&str> = match &self.rules[i..prepared_until] {
                    [_] => Vec::new(),
                    run => run.iter().map(RuleState::expr).collect(),
                };
                querier.prepare(&exprs, q_ts);
            }
            let rule = &mut self.rules[i];
            let res = querier.query(rule.expr(), q_ts);
            let result = res.and_then(|res| match &mut rule.kind {
                RuleKind::Recording(r) => r.eval(res, self.limit),
                RuleKind::Alerting(a) => {
                    a.eval(res, ts_ms, self.query_offset_ms, self.limit, templates)
                }
            });
            rule.last_eval_ms = ts_ms;
            match result {
                Ok(mut samples) => {
                    rule.health = Health::Ok;
                    rule.last_error = None;
                    if let RuleKind::Alerting(a) = &mut rule.kind {
                        let expr = a.expr.clone();
                        alerts.extend(
                            a.alerts_to_send(ts_ms, resend_delay_ms, self.interval_ms)
                                .into_iter()
                                .map(|al| (expr.clone(), al)),
                        );
                    }
                    let now: HashSet<Labels> = samples.iter().map(|s| s.labels.clone()).collect();
                    for gone in rule.previous.difference(&now) {
                        samples.push(stale_marker(gone.clone(), q_ts));
                    }
                    rule.previous = now;
                    unrecorded.add(samples);
                }
                Err(e) => {
                    rule.health = Health::Err;
                    rule.last_error = Some(e);
                }
            }
            rule.eval_duration = rule_began.elapsed();
        }
        unrecorded.hand_to(record);
        self.last_eval_ms = ts_ms;
        self.eval_duration = began.elapsed();
        alerts
    }

    /// The end of the run of rules from `from` on whose expressions read nothing that the
    /// run's earlier rules write, nor what is `unrecorded`: what they read is in the head
    /// before the first of them is evaluated, so it can be read at once.
    fn independent_run(&self, from: usize, unrecorded: &HashSet<String>) -> usize {
        let mut written = unrecorded.clone();
        for (i, r) in self.rules.iter().enumerate().skip(from) {
            if i > from && r.reads.any_of(&written) {
                return i;
            }
            written.extend(r.writes());
        }
        self.rules.len()
    }

    /// Takes over the state of `old`, the same group before a reload: each rule of the same
    /// name and labels keeps the series it recorded, its health and its alerts, and the
    /// series of old rules that are gone get stale markers at the next round.
    pub fn copy_state_from(&mut self, old: &Group) {
        let key = |r: &RuleState| -> (String, Vec<(String, String)>) {
            let labels = match &r.kind {
                RuleKind::Recording(x) => &x.labels,
                RuleKind::Alerting(x) => &x.labels,
            };
            (
                r.name().to_string(),
                labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            )
        };
        let mut olds: HashMap<_, Vec<&RuleState>> = HashMap::new();
        for r in &old.rules {
            olds.entry(key(r)).or_default().push(r);
        }
        for r in &mut self.rules {
            let Some(list) = olds.get_mut(&key(r)) else {
                continue;
            };
            if list.is_empty() {
                continue;
            }
            let o = list.remove(0);
            r.previous = o.previous.clone();
            r.health = o.health;
            r.last_error = o.last_error.clone();
            r.last_eval_ms = o.last_eval_ms;
            r.eval_duration = o.eval_duration;
            if let (RuleKind::Alerting(new), RuleKind::Alerting(prev)) = (&mut r.kind, &o.kind) {
                new.active = prev.active.clone();
                new.restored = prev.restored;
            }
        }
        self.pending_stale = olds
            .into_values()
            .flatten()
            .flat_map(|r| r.previous.iter().cloned())
            .collect();
        self.last_eval_ms = old.last_eval_ms;
        self.eval_duration = old.eval_duration;
    }

    /// Stale markers at `ts_ms` for every series the group's rules recorded last: for a
    /// group that is removed or whose rules changed.
    pub fn stale_markers(&self, ts_ms: i64) -> Vec<InstantSample> {
        self.rules
            .iter()
            .flat_map(|r| r.previous.iter())
            .chain(&self.pending_stale)
            .map(|l| stale_marker(l.clone(), ts_ms - self.query_offset_ms))
            .collect()
    }
}

/// Prometheus 3's hash of a label set (sorted pairs), as its default label representation
/// computes it: xxhash64 of every name and value, each preceded by its length (one byte below
/// 255, else 255 and three bytes little-endian). The hash groups are aligned by.
fn label_set_hash(pairs: &[(&str, &str)]) -> u64 {
    let mut buf = Vec::new();
    for s in pairs.iter().flat_map(|(n, v)| [*n, *v]) {
        let n = s.len();
        if n < 255 {
            buf.push(n as u8);
        } else {
            buf.extend_from_slice(&[255, n as u8, (n >> 8) as u8, (n >> 16) as u8]);
        }
        buf.extend_from_slice(s.as_bytes());
    }
    xxhash_rust::xxh64::xxh64(&buf, 0)
}

/// A stale marker for `labels` at `t_ms`: the series ends there.
fn stale_marker(labels: Labels, t_ms: i64) -> InstantSample {
    InstantSample {
        labels,
        t_ms,
        v: f64::from_bits(STALE_NAN_BITS),
        h: None,
    }
}

/// A vector query answer for rules: a scalar is one sample without labels; strings and
/// matrices are refused with Prometheus's message.
pub fn rule_vector(v: crate::Value) -> Result<Vec<InstantSample>, String> {
    match v {
        crate::Value::Vector(v) => Ok(v),
        crate::Value::Scalar { t_ms, v } => Ok(vec![InstantSample {
            labels: Labels::empty(),
            t_ms,
            v,
            h: None,
        }]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every query with one sample and remembers, per query, how many samples had
    /// been recorded when it ran.
    struct Counting<'a> {
        recorded: &'a std::cell::Cell<usize>,
        seen: std::cell::RefCell<Vec<(String, usize)>>,
        /// The runs announced by `prepare`, with how many samples had been recorded then.
        prepared: std::cell::RefCell<Vec<(Vec<String>, usize)>>,
    }

    impl RuleQuerier for Counting<'_> {
        fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<InstantSample>, String> {
            self.seen
                .borrow_mut()
                .push((expr.to_string(), self.recorded.get()));
            Ok(vec![InstantSample {
                labels: Labels::from_pairs([("__name__", "in"), ("expr", expr)]),
                t_ms,
                v: 1.0,
                h: None,
            }])
        }

        fn prepare(&self, exprs: &[&str], _t_ms: i64) {
            self.prepared.borrow_mut().push((
                exprs.iter().map(|e| e.to_string()).collect(),
                self.recorded.get(),
            ));
        }
    }

    struct Plain;

    impl AlertTemplates for Plain {
        fn expand(&self, _: &str, text: &str, _: &InstantSample, _: i64) -> String {
            text.to_string()
        }
    }

    #[test]
    fn a_rule_reads_what_rules_before_it_recorded_and_results_go_out_a_round_at_a_time() {
        let text = r#"
groups:
  - name: g
    rules:
      - record: a:x
        expr: x
      - record: b:y
        expr: rate(y[5m])
      - record: c:ax
        expr: sum(a:x)
      - record: d:z
        expr: z
      - record: e:any
        expr: 'count({job="j"})'
      - record: f:w
        expr: w
"#;
        let groups = super::super::file::parse(text, Default::default()).unwrap();
        let mut g = Group::new("f.yml", &groups[0], 15_000, 0).unwrap();
        let kinds: Vec<Reads> = g.rules.iter().map(|r| r.reads.clone()).collect();
        assert_eq!(kinds[1], Reads::Names(vec!["y".into()]));
        assert_eq!(kinds[4], Reads::Any);
        let recorded = std::cell::Cell::new(0);
        let q = Counting {
            recorded: &recorded,
            seen: Default::default(),
            prepared: Default::default(),
        };
        let mut calls = Vec::new();
        let mut record = |s: Vec<InstantSample>| {
            recorded.set(recorded.get() + s.len());
            calls.push(s.len());
        };
        g.eval(60_000, &q, &Plain, 0, &mut record);
        // `sum(a:x)` runs after a:x and b:y are recorded; `count({job="j"})` could read
        // anything, so c:ax and d:z go out before it; e:any and f:w go out at the end.
        let seen: Vec<usize> = q.seen.borrow().iter().map(|(_, n)| *n).collect();
        assert_eq!(seen, vec![0, 0, 2, 2, 4, 4]);
        assert_eq!(calls, vec![2, 2, 2]);
        assert!(g.rules.iter().all(|r| r.health == Health::Ok));
        // The same runs are announced before their first rule, each after what it reads was
        // recorded: every rule once, in order.
        let prepared = q.prepared.borrow();
        let runs: Vec<(usize, usize)> = prepared.iter().map(|(e, n)| (e.len(), *n)).collect();
        assert_eq!(runs, vec![(2, 0), (2, 2), (2, 4)]);
        let announced: Vec<String> = prepared.iter().flat_map(|(e, _)| e.clone()).collect();
        let queried: Vec<String> = q.seen.borrow().iter().map(|(e, _)| e.clone()).collect();
        assert_eq!(announced, queried);
    }

    #[test]
    fn a_run_of_one_rule_is_announced_empty_and_a_rule_reading_its_own_run_starts_a_new_one() {
        let text = r#"
groups:
  - name: g
    rules:
      - record: a:x
        expr: x
      - record: b:ax
        expr: a:x * 2
      - alert: High
        expr: b:ax > 1
      - record: c:alerts
        expr: count(ALERTS)
"#;
        let groups = super::super::file::parse(text, Default::default()).unwrap();
        let mut g = Group::new("f.yml", &groups[0], 15_000, 0).unwrap();
        let recorded = std::cell::Cell::new(0);
        let q = Counting {
            recorded: &recorded,
            seen: Default::default(),
            prepared: Default::default(),
        };
        let mut record = |s: Vec<InstantSample>| recorded.set(recorded.get() + s.len());
        g.eval(60_000, &q, &Plain, 0, &mut record);
        // Each rule reads what the one before it writes: four runs of one, none worth
        // announcing.
        let prepared = q.prepared.borrow();
        assert_eq!(prepared.len(), 4, "{prepared:?}");
        assert!(prepared.iter().all(|(e, _)| e.is_empty()), "{prepared:?}");
    }
}
