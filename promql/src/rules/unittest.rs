//! Rule unit tests in promtool's format (`rule_files`, `evaluation_interval`,
//! `group_eval_order`, `tests` with `input_series`, `alert_rule_test`, `promql_expr_test`):
//! the rules run over the input from time 0, as `promtool test rules` runs them, and each
//! expectation is checked at its time.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{MemSeries, Series};

use super::alerting::{AlertState, AlertTemplates};
use super::file::{self, ParseOptions, TemplateCheck};
use super::group::{Group, RuleKind, RuleQuerier, rule_vector};
use super::yaml::{self, Kind, Node};
use crate::parser::format_duration_ms;
use crate::promqltest::{histogram_is, notation_labels, notation_series};
use crate::{Engine, InstantSample};

pub mod junit;

/// Makes the template expander for one test group: its external labels and URL, and the
/// querier its `query` function reads.
pub trait TemplatesFactory {
    /// The expander.
    fn make<'q>(
        &self,
        external_labels: &BTreeMap<String, String>,
        external_url: &str,
        querier: &'q dyn RuleQuerier,
    ) -> Box<dyn AlertTemplates + 'q>;
}

/// What running one unit-test file found, laid out as promtool's JUnit report is: an error
/// that stopped the file before its groups ran, or each group that ran with its failures.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The error that stopped the file (unreadable, bad YAML, a repeated group in
    /// `group_eval_order`): promtool's aborted suite.
    pub aborted: Option<String>,
    /// Whether the file got as far as its test groups (promtool stamps the suite's time then).
    pub started: bool,
    /// The test groups run, in file order.
    pub groups: Vec<GroupReport>,
}

/// One test group that ran.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// Its name, `unnamed#N` (N its index in the file) when it has none.
    pub name: String,
    /// Its failures, each worded as promtool words it; empty when it passed.
    pub errors: Vec<String>,
}

impl FileReport {
    fn aborted(e: String) -> Self {
        FileReport {
            aborted: Some(e),
            ..FileReport::default()
        }
    }

    /// Every problem found, in the order promtool prints them (empty: the file passed).
    pub fn errors(&self) -> Vec<String> {
        match &self.aborted {
            Some(e) => vec![e.clone()],
            None => self.groups.iter().flat_map(|g| g.errors.clone()).collect(),
        }
    }
}

/// Runs the unit-test file at `path`: every test group whose name (as written, empty when
/// it has none) `selected` accepts, as `promtool test rules --run` picks them.
pub fn run_file(
    path: &Path,
    engine: &Engine,
    templates: &dyn TemplatesFactory,
    check_template: Option<&TemplateCheck>,
    selected: &dyn Fn(&str) -> bool,
) -> FileReport {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return FileReport::aborted(format!("open {}: {e}", path.display())),
    };
    let spec = match parse_spec(&text) {
        Ok(s) => s,
        Err(e) => return FileReport::aborted(e),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rule_files = Vec::new();
    for rf in &spec.rule_files {
        let full = if Path::new(rf).is_absolute() {
            PathBuf::from(rf)
        } else {
            base.join(rf)
        };
        match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => rule_files.extend(paths.flatten()),
            Err(e) => return FileReport::aborted(e.to_string()),
        }
    }
    let mut report = FileReport {
        started: true,
        ..FileReport::default()
    };
    let mut order = HashMap::new();
    for (i, g) in spec.group_eval_order.iter().enumerate() {
        if order.insert(g.as_str(), i).is_some() {
            report.aborted = Some(format!("group name repeated in evaluation order: {g}"));
            return report;
        }
    }
    for (i, t) in spec.tests.iter().enumerate() {
        if !selected(&t.name) {
            continue;
        }
        let name = if t.name.is_empty() {
            format!("unnamed#{i}")
        } else {
            t.name.clone()
        };
        let ctx = Ctx {
            engine,
            templates,
            check_template,
            eval_interval_ms: spec.evaluation_interval_ms,
            order: &order,
            rule_files: &rule_files,
            fuzzy: spec.fuzzy_compare,
        };
        let errors = run_group(&ctx, t, &name);
        report.groups.push(GroupReport { name, errors });
    }
    report
}

/// What every test group of a file shares.
struct Ctx<'a> {
    engine: &'a Engine,
    templates: &'a dyn TemplatesFactory,
    check_template: Option<&'a TemplateCheck>,
    eval_interval_ms: i64,
    order: &'a HashMap<&'a str, usize>,
    rule_files: &'a [PathBuf],
    fuzzy: bool,
}

/// The unit-test file.
struct Spec {
    rule_files: Vec<String>,
    evaluation_interval_ms: i64,
    group_eval_order: Vec<String>,
    tests: Vec<TestGroup>,
    fuzzy_compare: bool,
}

#[derive(Default)]
struct TestGroup {
    name: String,
    interval_ms: i64,
    input: Vec<(String, String)>,
    alert_tests: Vec<AlertTest>,
    expr_tests: Vec<ExprTest>,
    external_labels: BTreeMap<String, String>,
    external_url: String,
}

struct AlertTest {
    eval_time_ms: i64,
    alertname: String,
    /// (labels, annotations) expected firing.
    exp: Vec<(BTreeMap<String, String>, BTreeMap<String, String>)>,
}

struct ExprTest {
    expr: String,
    eval_time_ms: i64,
    /// (labels as written, value, histogram as written).
    exp: Vec<(String, f64, String)>,
}

fn run_group(ctx: &Ctx<'_>, t: &TestGroup, name: &str) -> Vec<String> {
    let interval = if t.interval_ms > 0 {
        t.interval_ms
    } else {
        ctx.eval_interval_ms
    };
    let mut input = Vec::new();
    for (series, values) in &t.input {
        match notation_series(series, values, interval) {
            Ok(s) => input.push(s),
            // promtool loads the series as line 2 of a `load` script: its positions say so.
            Err(e) => return vec![e.strip_prefix("1:").map_or(e.clone(), |r| format!("2:{r}"))],
        }
    }
    let mut groups = Vec::new();
    let mut errs = Vec::new();
    for f in ctx.rule_files {
        let shown = f.to_string_lossy().to_string();
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => return vec![format!("{shown}: {e}")],
        };
        let opts = ParseOptions {
            ignore_unknown_fields: false,
            check_template: ctx.check_template,
        };
        match file::parse(&text, opts) {
            Ok(gs) => {
                for g in &gs {
                    match Group::new(&shown, g, ctx.eval_interval_ms, 0) {
                        Ok(mut g) => {
                            g.set_restored();
                            groups.push(g);
                        }
                        Err(e) => errs.push(e),
                    }
                }
            }
            Err(es) => errs.extend(es.into_iter().map(|e| format!("{shown}: {e}"))),
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    groups.sort_by_key(|g| ctx.order.get(g.name.as_str()).copied().unwrap_or(0));

    let max_t = t
        .alert_tests
        .iter()
        .map(|a| a.eval_time_ms)
        .chain(t.expr_tests.iter().map(|e| e.eval_time_ms))
        .max()
        .unwrap_or(0);
    let mut alert_times: Vec<i64> = t.alert_tests.iter().map(|a| a.eval_time_ms).collect();
    alert_times.sort_unstable();
    alert_times.dedup();
    let mut next_alert = 0;
    let mut store = Store {
        input,
        recorded: BTreeMap::new(),
    };
    let step = ctx.eval_interval_ms.max(1);
    let mut ts = 0i64;
    while ts <= max_t {
        let mut eval_errs = Vec::new();
        for g in &mut groups {
            let mem = store.snapshot(ts);
            let querier = EngineQuerier {
                engine: ctx.engine,
                mem: std::cell::RefCell::new(mem),
            };
            let tmpl = ctx
                .templates
                .make(&t.external_labels, &t.external_url, &querier);
            let mut recorded: Vec<InstantSample> = Vec::new();
            let mut record = |s: Vec<InstantSample>| {
                // A rule reads what the rules before it in its group recorded.
                querier.add(&s);
                recorded.extend(s);
            };
            g.eval(ts, &querier, tmpl.as_ref(), 0, &mut record);
            drop(tmpl);
            store.record(recorded);
            for r in &g.rules {
                if let Some(e) = &r.last_error {
                    eval_errs.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        r.name(),
                        go_duration(ts)
                    ));
                }
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        while next_alert < alert_times.len()
            && ts <= alert_times[next_alert]
            && alert_times[next_alert] < ts + step
        {
            let at = alert_times[next_alert];
            for case in t.alert_tests.iter().filter(|a| a.eval_time_ms == at) {
                let mut got: Vec<(Labels, Labels)> = Vec::new();
                for g in &groups {
                    for r in &g.rules {
                        if let RuleKind::Alerting(a) = &r.kind
                            && a.name == case.alertname
                        {
                            for al in a.active_alerts() {
                                if al.state == AlertState::Firing {
                                    got.push((
                                        al.labels.clone(),
                                        Labels::from_pairs(al.annotations.clone()),
                                    ));
                                }
                            }
                        }
                    }
                }
                let mut exp: Vec<(Labels, Labels)> = case
                    .exp
                    .iter()
                    .map(|(l, a)| {
                        let mut l = l.clone();
                        l.insert("alertname".into(), case.alertname.clone());
                        (Labels::from_pairs(l), Labels::from_pairs(a.clone()))
                    })
                    .collect();
                got.sort();
                exp.sort();
                if got != exp {
                    let test_name = if t.name.is_empty() {
                        String::new()
                    } else {
                        format!("    name: {},\n", t.name)
                    };
                    errs.push(format!(
                        "{test_name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        case.alertname,
                        format_duration_ms(at),
                        indent(&alerts_text(&exp), "            "),
                        indent(&alerts_text(&got), "            ")
                    ));
                }
            }
            next_alert += 1;
        }
        ts += step;
    }

    let mem = store.snapshot(max_t);
    for case in &t.expr_tests {
        let res = ctx
            .engine
            .instant_query(&mem, &case.expr, case.eval_time_ms)
            .map_err(|e| e.to_string())
            .and_then(|r| rule_vector(r.value));
        let got = match res {
            Ok(v) => v,
            Err(e) => {
                errs.push(format!(
                    "    expr: {}, time: {}, err: {e}",
                    gauntlet_engine::go_format::quoted(&case.expr),
                    format_duration_ms(case.eval_time_ms)
                ));
                continue;
            }
        };
        match expr_matches(case, got, ctx.fuzzy) {
            Ok(None) => {}
            Ok(Some(diff)) => errs.push(diff),
            Err(e) => errs.push(format!(
                "    expr: {}, time: {}, err: {e}",
                gauntlet_engine::go_format::quoted(&case.expr),
                format_duration_ms(case.eval_time_ms)
            )),
        }
    }
    let _ = name;
    errs
}

/// `None` when the samples are the expected ones, else promtool's account of both.
fn expr_matches(
    case: &ExprTest,
    got: Vec<InstantSample>,
    fuzzy: bool,
) -> Result<Option<String>, String> {
    let mut exp = Vec::with_capacity(case.exp.len());
    for (l, v, h) in &case.exp {
        let labels = if l.trim().is_empty() {
            Labels::empty()
        } else {
            notation_labels(l)
                .map_err(|e| format!("labels {}: {e}", gauntlet_engine::go_format::quoted(l)))?
        };
        exp.push((labels, *v, h.clone()));
    }
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    let mut got = got;
    got.sort_by(|a, b| a.labels.cmp(&b.labels));
    let same = exp.len() == got.len()
        && exp.iter().zip(&got).try_fold(true, |ok, (e, g)| {
            if !ok || e.0 != g.labels {
                return Ok::<bool, String>(false);
            }
            Ok(match (&g.h, e.2.is_empty()) {
                (Some(h), false) => histogram_is(&e.2, h)?,
                (None, true) => floats_equal(e.1, g.v, fuzzy),
                _ => false,
            })
        })?;
    if same {
        return Ok(None);
    }
    let exp_text: Vec<String> = exp
        .iter()
        .map(|(l, v, h)| {
            if h.is_empty() {
                format!("{l} {}", go_e(*v))
            } else {
                format!("{l} {h}")
            }
        })
        .collect();
    let got_text: Vec<String> = got
        .iter()
        .map(|s| match &s.h {
            Some(h) => format!("{} {h:?}", s.labels),
            None => format!("{} {}", s.labels, go_e(s.v)),
        })
        .collect();
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "nil".to_string()
        } else {
            v.join(", ")
        }
    };
    Ok(Some(format!(
        "    expr: {}, time: {},\n        exp: {}\n        got: {}",
        gauntlet_engine::go_format::quoted(&case.expr),
        format_duration_ms(case.eval_time_ms),
        list(exp_text),
        list(got_text)
    )))
}

fn floats_equal(a: f64, b: f64, fuzzy: bool) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (fuzzy && (a.next_down() == b || a.next_up() == b))
}

/// A float as Go's `strconv.FormatFloat(v, 'E', -1, 64)` prints it (`1E+00`, `2.5E-03`).
fn go_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let s = format!("{v:E}");
    let (mant, exp) = s.split_once('E').unwrap_or((&s, "0"));
    let e: i32 = exp.parse().unwrap_or(0);
    let sign = if e < 0 { '-' } else { '+' };
    format!("{mant}E{sign}{:02}", e.abs())
}

/// Alerts as promtool lists them.
fn alerts_text(v: &[(Labels, Labels)]) -> String {
    if v.is_empty() {
        return "[]".into();
    }
    let mut s = String::from("[");
    for (i, (l, a)) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let one = format!("\nLabels:{}\nAnnotations:{}", braces(l), braces(a));
        s.push_str(&format!("\n{i}:{}", indent(&one, "  ")));
    }
    s.push_str("\n]");
    s
}

/// A label set as Prometheus prints it, braces always.
fn braces(l: &Labels) -> String {
    let inner: Vec<String> = l
        .iter()
        .map(|x| {
            format!(
                "{}={}",
                x.name,
                gauntlet_engine::go_format::quoted(&x.value)
            )
        })
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn indent(text: &str, pad: &str) -> String {
    text.split('\n')
        .collect::<Vec<_>>()
        .join(&format!("\n{pad}"))
}

/// A duration in ms as Go's `time.Duration` prints it (`0s`, `5m0s`, `1h2m3.5s`).
pub(crate) fn go_duration(ms: i64) -> String {
    super::template::go_duration_string(ms.saturating_mul(1_000_000))
}

/// The input series and what the rules recorded so far.
struct Store {
    input: Vec<Series>,
    recorded: BTreeMap<Labels, Series>,
}

impl Store {
    /// Everything the rules may read at `till_ms`: the input up to then, and every recorded
    /// sample.
    fn snapshot(&self, till_ms: i64) -> MemSeries {
        let mut all: Vec<Series> = self.input.iter().map(|s| truncated(s, till_ms)).collect();
        all.extend(self.recorded.values().cloned());
        MemSeries::new(all)
    }

    fn record(&mut self, samples: Vec<InstantSample>) {
        for s in samples {
            let e = self
                .recorded
                .entry(s.labels.clone())
                .or_insert_with(|| Series {
                    labels: s.labels.clone(),
                    samples: Default::default(),
                    histograms: Default::default(),
                });
            push_sample(e, s);
        }
    }
}

fn push_sample(e: &mut Series, s: InstantSample) {
    match s.h {
        Some(h) => {
            e.histograms.ts.push(s.t_ms);
            e.histograms.h.push(*h);
        }
        None => {
            e.samples.ts.push(s.t_ms);
            e.samples.val.push(s.v);
        }
    }
}

fn truncated(s: &Series, till_ms: i64) -> Series {
    let mut out = s.clone();
    let n = out.samples.ts.partition_point(|&t| t <= till_ms);
    out.samples.ts.truncate(n);
    out.samples.val.truncate(n);
    let n = out.histograms.ts.partition_point(|&t| t <= till_ms);
    out.histograms.ts.truncate(n);
    out.histograms.h.truncate(n);
    out
}

/// Queries the engine over a snapshot that grows as a group's rules record.
struct EngineQuerier<'a> {
    engine: &'a Engine,
    mem: std::cell::RefCell<MemSeries>,
}

impl EngineQuerier<'_> {
    fn add(&self, samples: &[InstantSample]) {
        if samples.is_empty() {
            return;
        }
        let mut mem = self.mem.borrow_mut();
        let mut all: Vec<Series> = mem.series().to_vec();
        for s in samples {
            let mut one = Series {
                labels: s.labels.clone(),
                samples: Default::default(),
                histograms: Default::default(),
            };
            push_sample(&mut one, s.clone());
            all.push(one);
        }
        *mem = MemSeries::new(all);
    }
}

impl RuleQuerier for EngineQuerier<'_> {
    fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<InstantSample>, String> {
        let mem = self.mem.borrow();
        let r = self
            .engine
            .instant_query(&*mem, expr, t_ms)
            .map_err(|e| e.to_string())?;
        rule_vector(r.value)
    }
}

// ---- reading the file ----

fn parse_spec(text: &str) -> Result<Spec, String> {
    let root = yaml::parse(text)?.ok_or("empty unit-test file")?;
    let mut spec = Spec {
        rule_files: Vec::new(),
        evaluation_interval_ms: 60_000,
        group_eval_order: Vec::new(),
        tests: Vec::new(),
        fuzzy_compare: false,
    };
    for (k, v) in map(&root)? {
        match scalar(k)?.as_str() {
            "rule_files" => spec.rule_files = strings(v)?,
            "evaluation_interval" => {
                let d = duration(v)?;
                if d > 0 {
                    spec.evaluation_interval_ms = d;
                }
            }
            "group_eval_order" => spec.group_eval_order = strings(v)?,
            "fuzzy_compare" => spec.fuzzy_compare = scalar(v)? == "true",
            "tests" => {
                for t in seq(v)? {
                    spec.tests.push(test_group(t)?);
                }
            }
            other => return Err(unknown(k, other, "main.unitTestFile")),
        }
    }
    Ok(spec)
}

fn test_group(n: &Node) -> Result<TestGroup, String> {
    let mut t = TestGroup::default();
    for (k, v) in map(n)? {
        match scalar(k)?.as_str() {
            "name" => t.name = scalar(v)?,
            "interval" => t.interval_ms = duration(v)?,
            "external_labels" => t.external_labels = string_map(v)?,
            "external_url" => t.external_url = scalar(v)?,
            "input_series" => {
                for s in seq(v)? {
                    let mut series = String::new();
                    let mut values = String::new();
                    for (k, v) in map(s)? {
                        match scalar(k)?.as_str() {
                            "series" => series = scalar(v)?,
                            "values" => values = scalar(v)?,
                            other => return Err(unknown(k, other, "main.series")),
                        }
                    }
                    t.input.push((series, values));
                }
            }
            "alert_rule_test" => {
                for a in seq(v)? {
                    let mut case = AlertTest {
                        eval_time_ms: 0,
                        alertname: String::new(),
                        exp: Vec::new(),
                    };
                    for (k, v) in map(a)? {
                        match scalar(k)?.as_str() {
                            "eval_time" => case.eval_time_ms = duration(v)?,
                            "alertname" => case.alertname = scalar(v)?,
                            "exp_alerts" => {
                                for e in seq(v)? {
                                    let mut l = BTreeMap::new();
                                    let mut an = BTreeMap::new();
                                    for (k, v) in map(e)? {
                                        match scalar(k)?.as_str() {
                                            "exp_labels" => l = string_map(v)?,
                                            "exp_annotations" => an = string_map(v)?,
                                            other => return Err(unknown(k, other, "main.alert")),
                                        }
                                    }
                                    case.exp.push((l, an));
                                }
                            }
                            other => return Err(unknown(k, other, "main.alertTestCase")),
                        }
                    }
                    if case.alertname.is_empty() {
                        let group = if t.name.is_empty() {
                            String::new()
                        } else {
                            format!(" (in TestGroup {})", t.name)
                        };
                        return Err(format!(
                            "an item under alert_rule_test misses required attribute alertname at eval_time {}{group}",
                            go_duration(case.eval_time_ms)
                        ));
                    }
                    t.alert_tests.push(case);
                }
            }
            "promql_expr_test" => {
                for e in seq(v)? {
                    let mut case = ExprTest {
                        expr: String::new(),
                        eval_time_ms: 0,
                        exp: Vec::new(),
                    };
                    for (k, v) in map(e)? {
                        match scalar(k)?.as_str() {
                            "expr" => case.expr = scalar(v)?,
                            "eval_time" => case.eval_time_ms = duration(v)?,
                            "exp_samples" => {
                                for s in seq(v)? {
                                    let (mut l, mut val, mut h) =
                                        (String::new(), 0.0, String::new());
                                    for (k, v) in map(s)? {
                                        match scalar(k)?.as_str() {
                                            "labels" => l = scalar(v)?,
                                            "value" => {
                                                let s = scalar(v)?;
                                                val = crate::promqltest::parse_number(&s)
                                                    .ok_or_else(|| format!("line {}: cannot unmarshal !!str `{s}` into float64", v.line))?;
                                            }
                                            "histogram" => h = scalar(v)?,
                                            other => return Err(unknown(k, other, "main.sample")),
                                        }
                                    }
                                    case.exp.push((l, val, h));
                                }
                            }
                            other => return Err(unknown(k, other, "main.promqlTestCase")),
                        }
                    }
                    t.expr_tests.push(case);
                }
            }
            other => return Err(unknown(k, other, "main.testGroup")),
        }
    }
    Ok(t)
}

fn unknown(k: &Node, name: &str, ty: &str) -> String {
    format!(
        "yaml: unmarshal errors:\n  line {}: field {name} not found in type {ty}",
        k.line
    )
}

fn map(n: &Node) -> Result<&[(Node, Node)], String> {
    match &n.kind {
        Kind::Map(m) => Ok(m),
        _ if n.is_null() => Ok(&[]),
        _ => Err(format!("yaml: line {}: expected a mapping", n.line)),
    }
}

fn seq(n: &Node) -> Result<&[Node], String> {
    match &n.kind {
        Kind::Seq(s) => Ok(s),
        _ if n.is_null() => Ok(&[]),
        _ => Err(format!("yaml: line {}: expected a sequence", n.line)),
    }
}

fn scalar(n: &Node) -> Result<String, String> {
    match &n.kind {
        _ if n.is_null() => Ok(String::new()),
        Kind::Scalar { value, .. } => Ok(value.clone()),
        _ => Err(format!("yaml: line {}: expected a scalar", n.line)),
    }
}

fn strings(n: &Node) -> Result<Vec<String>, String> {
    seq(n)?.iter().map(scalar).collect()
}

fn string_map(n: &Node) -> Result<BTreeMap<String, String>, String> {
    map(n)?
        .iter()
        .map(|(k, v)| Ok((scalar(k)?, scalar(v)?)))
        .collect()
}

fn duration(n: &Node) -> Result<i64, String> {
    let s = scalar(n)?;
    if s.is_empty() {
        return Ok(0);
    }
    crate::parse_duration_ms(&s).ok_or_else(|| {
        format!(
            "not a valid duration string: {}",
            gauntlet_engine::go_format::quoted(&s)
        )
    })
}

#[cfg(test)]
mod tests;
