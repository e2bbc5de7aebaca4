//! Rule files: Prometheus's `groups:` format (with Thanos's per-group
//! `partial_response_strategy`), read and checked with the messages Prometheus gives, each
//! citing the line and column of the group or rule at fault.

use std::collections::{BTreeMap, HashSet};

use gauntlet_engine::go_format::quoted;

use super::yaml::{self, Kind, Node};
use crate::parse_duration_ms;

/// A group of rules, evaluated in order at the group's interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleGroup {
    /// The group's name, unique within its file.
    pub name: String,
    /// How often the group runs, ms; `None` takes the ruler's `--eval-interval`.
    pub interval_ms: Option<i64>,
    /// How far behind the evaluation time the queries look, ms; `None` takes the ruler's
    /// default.
    pub query_offset_ms: Option<i64>,
    /// The most series a recording rule, or alerts an alerting rule, may give; 0 is no limit.
    pub limit: u64,
    /// Labels added to every rule's results (a rule's own labels win).
    pub labels: BTreeMap<String, String>,
    /// Thanos's `partial_response_strategy` (`warn` or `abort`), as written.
    pub partial_response_strategy: Option<String>,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

/// One recording or alerting rule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rule {
    /// `record:`, the recorded metric's name; empty for an alerting rule.
    pub record: String,
    /// `alert:`, the alert's name; empty for a recording rule.
    pub alert: String,
    /// The PromQL expression, as written.
    pub expr: String,
    /// How long an alert stays pending before it fires, ms.
    pub for_ms: i64,
    /// How long a firing alert keeps firing after its condition clears, ms.
    pub keep_firing_for_ms: i64,
    /// Labels set on the results (templates for an alerting rule).
    pub labels: BTreeMap<String, String>,
    /// An alert's annotations (templates).
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    /// The rule's name: the alert's or the recorded metric's.
    pub fn name(&self) -> &str {
        if self.alert.is_empty() {
            &self.record
        } else {
            &self.alert
        }
    }
}

/// Checks a template's text parses (`name` is the template's name); `Err` is the parser's
/// message.
pub type TemplateCheck = dyn Fn(&str, &str) -> Result<(), String>;

/// How a rule file is read.
#[derive(Clone, Copy, Default)]
pub struct ParseOptions<'a> {
    /// Fields the format does not have are ignored instead of refused.
    pub ignore_unknown_fields: bool,
    /// Checks an alerting rule's label or annotation template parses; `Err` is the parser's
    /// message. `None` leaves templates to be checked when they are expanded.
    pub check_template: Option<&'a TemplateCheck>,
}

impl std::fmt::Debug for ParseOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParseOptions")
            .field("ignore_unknown_fields", &self.ignore_unknown_fields)
            .field("check_template", &self.check_template.is_some())
            .finish()
    }
}

/// Reads and checks a rule file's text. `Err` holds every problem found, each worded as
/// Prometheus words it (without the file name, which the caller puts in front).
pub fn parse(text: &str, opts: ParseOptions<'_>) -> Result<Vec<RuleGroup>, Vec<String>> {
    let root = yaml::parse(text).map_err(|e| vec![e])?;
    let mut d = Decoder {
        ignore_unknown: opts.ignore_unknown_fields,
        errors: Vec::new(),
    };
    let positioned = match &root {
        Some(node) => d.groups(node).map_err(|e| vec![e])?,
        None => Vec::new(),
    };
    if !d.errors.is_empty() {
        let mut msg = String::from("yaml: unmarshal errors:");
        for e in &d.errors {
            msg.push_str("\n  ");
            msg.push_str(e);
        }
        return Err(vec![msg]);
    }
    let errs = validate(&positioned, &opts);
    if errs.is_empty() {
        Ok(positioned.into_iter().map(|g| g.group).collect())
    } else {
        Err(errs)
    }
}

/// A group with where its rules' parts are in the file. (Prometheus cites a group itself at
/// 0:0 whatever its line, so its place is not kept.)
struct Positioned {
    group: RuleGroup,
    rules: Vec<RulePos>,
}

/// Where a rule's `record`, `alert` and `expr` are; (0, 0) when absent, as Prometheus prints
/// a missing node.
#[derive(Default, Clone, Copy)]
struct RulePos {
    record: Pos,
    alert: Pos,
    expr: Pos,
}

#[derive(Default, Clone, Copy)]
struct Pos {
    line: usize,
    col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

fn pos(n: &Node) -> Pos {
    Pos {
        line: n.line,
        col: n.col,
    }
}

/// Turns the YAML tree into groups, collecting type and unknown-field errors as Go's YAML
/// decoder words them; a bad duration stops it, as it stops Go's.
struct Decoder {
    ignore_unknown: bool,
    errors: Vec<String>,
}

impl Decoder {
    fn groups(&mut self, root: &Node) -> Result<Vec<Positioned>, String> {
        let mut out = Vec::new();
        if root.is_null() {
            return Ok(out);
        }
        let Some(fields) = self.map(root, "rulefmt.RuleGroups") else {
            return Ok(out);
        };
        for (k, v) in fields {
            match key(k) {
                "groups" => {
                    for g in self.seq(v, "[]rulefmt.RuleGroup") {
                        if let Some(g) = self.group(g)? {
                            out.push(g);
                        }
                    }
                }
                other => self.unknown(k, other, "rulefmt.RuleGroups"),
            }
        }
        Ok(out)
    }

    fn group(&mut self, node: &Node) -> Result<Option<Positioned>, String> {
        let Some(fields) = self.map(node, "rulefmt.RuleGroup") else {
            return Ok(None);
        };
        let mut p = Positioned {
            group: RuleGroup::default(),
            rules: Vec::new(),
        };
        let g = &mut p.group;
        for (k, v) in fields {
            match key(k) {
                "name" => g.name = self.string(v),
                "interval" => g.interval_ms = duration(v)?,
                "query_offset" => g.query_offset_ms = duration(v)?,
                "limit" => g.limit = self.uint(v),
                "labels" => g.labels = self.string_map(v),
                "partial_response_strategy" => g.partial_response_strategy = Some(self.string(v)),
                "rules" => {
                    for r in self.seq(v, "[]rulefmt.Rule") {
                        if let Some((rule, rp)) = self.rule(r)? {
                            g.rules.push(rule);
                            p.rules.push(rp);
                        }
                    }
                }
                other => self.unknown(k, other, "rulefmt.RuleGroup"),
            }
        }
        Ok(Some(p))
    }

    fn rule(&mut self, node: &Node) -> Result<Option<(Rule, RulePos)>, String> {
        let Some(fields) = self.map(node, "rulefmt.Rule") else {
            return Ok(None);
        };
        let mut r = Rule::default();
        let mut p = RulePos::default();
        for (k, v) in fields {
            match key(k) {
                "record" => {
                    r.record = self.string(v);
                    p.record = pos(v);
                }
                "alert" => {
                    r.alert = self.string(v);
                    p.alert = pos(v);
                }
                "expr" => {
                    r.expr = self.string(v);
                    p.expr = pos(v);
                }
                "for" => r.for_ms = duration(v)?.unwrap_or(0),
                "keep_firing_for" => r.keep_firing_for_ms = duration(v)?.unwrap_or(0),
                "labels" => r.labels = self.string_map(v),
                "annotations" => r.annotations = self.string_map(v),
                other => self.unknown(k, other, "rulefmt.Rule"),
            }
        }
        Ok(Some((r, p)))
    }

    fn unknown(&mut self, k: &Node, name: &str, ty: &str) {
        if !self.ignore_unknown {
            self.errors.push(format!(
                "line {}: field {name} not found in type {ty}",
                k.line
            ));
        }
    }

    fn mismatch(&mut self, n: &Node, ty: &str) {
        let tag = n.tag();
        let msg = match &n.kind {
            Kind::Scalar { value, .. } => {
                format!(
                    "line {}: cannot unmarshal {tag} `{value}` into {ty}",
                    n.line
                )
            }
            _ => format!("line {}: cannot unmarshal {tag} into {ty}", n.line),
        };
        self.errors.push(msg);
    }

    fn map<'n>(&mut self, n: &'n Node, ty: &str) -> Option<&'n [(Node, Node)]> {
        match &n.kind {
            Kind::Map(m) => Some(m),
            _ if n.is_null() => Some(&[]),
            _ => {
                self.mismatch(n, ty);
                None
            }
        }
    }

    fn seq<'n>(&mut self, n: &'n Node, ty: &str) -> &'n [Node] {
        match &n.kind {
            Kind::Seq(s) => s,
            _ if n.is_null() => &[],
            _ => {
                self.mismatch(n, ty);
                &[]
            }
        }
    }

    fn string(&mut self, n: &Node) -> String {
        match &n.kind {
            _ if n.is_null() => String::new(),
            Kind::Scalar { value, .. } => value.clone(),
            _ => {
                self.mismatch(n, "string");
                String::new()
            }
        }
    }

    fn uint(&mut self, n: &Node) -> u64 {
        match &n.kind {
            _ if n.is_null() => 0,
            Kind::Scalar { value, .. } if n.tag() == "!!int" => match value.parse::<i64>() {
                // A negative limit is no limit, as Prometheus treats it.
                Ok(v) => u64::try_from(v).unwrap_or(0),
                Err(_) => 0,
            },
            _ => {
                self.mismatch(n, "int");
                0
            }
        }
    }

    fn string_map(&mut self, n: &Node) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(m) = self.map(n, "map[string]string") {
            for (k, v) in m {
                let k = self.string(k);
                let v = self.string(v);
                out.insert(k, v);
            }
        }
        out
    }
}

fn key(n: &Node) -> &str {
    match &n.kind {
        Kind::Scalar { value, .. } => value,
        _ => "",
    }
}

/// A duration field: Prometheus's duration syntax, refused with its message.
fn duration(n: &Node) -> Result<Option<i64>, String> {
    let s = match &n.kind {
        _ if n.is_null() => return Ok(None),
        Kind::Scalar { value, .. } => value.as_str(),
        _ => {
            return Err(format!(
                "yaml: unmarshal errors:\n  line {}: cannot unmarshal {} into string",
                n.line,
                n.tag()
            ));
        }
    };
    match parse_duration_ms(s) {
        Some(v) => Ok(Some(v)),
        None if s.is_empty() => Err("empty duration string".into()),
        None => Err(format!("not a valid duration string: {}", quoted(s))),
    }
}

/// Prometheus's semantic checks of the groups of one file.
fn validate(groups: &[Positioned], opts: &ParseOptions<'_>) -> Vec<String> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for p in groups {
        let g = &p.group;
        if g.name.is_empty() {
            errs.push("0:0: Groupname must not be empty".to_string());
        }
        if !names.insert(g.name.as_str()) {
            errs.push(format!(
                "0:0: groupname: \"{}\" is repeated in the same file",
                g.name
            ));
        }
        for (k, v) in &g.labels {
            errs.extend(label_problems(k, v));
        }
        if let Some(s) = &g.partial_response_strategy
            && !matches!(s.to_ascii_lowercase().as_str(), "warn" | "abort")
        {
            errs.push(format!(
                "group {}: unknown partial_response_strategy {}",
                quoted(&g.name),
                quoted(s)
            ));
        }
        for (i, (r, rp)) in g.rules.iter().zip(&p.rules).enumerate() {
            let prefix = format!(
                "group {}, rule {}, {}",
                quoted(&g.name),
                i + 1,
                quoted(r.name())
            );
            for (at, msg) in rule_problems(r, rp, opts) {
                errs.push(match at {
                    Some(at) => format!("{at}: {prefix}: {msg}"),
                    None => format!("{prefix}: {msg}"),
                });
            }
        }
    }
    errs
}

fn label_problems(k: &str, _v: &str) -> Option<String> {
    // Label names and values are UTF-8 (Rust strings always are); a name must not be empty
    // and a rule must not set the metric name through its labels.
    (k.is_empty() || k == "__name__").then(|| format!("invalid label name: {k}"))
}

/// One rule's problems, each with where it is (one or two positions) when Prometheus cites it.
fn rule_problems(r: &Rule, p: &RulePos, opts: &ParseOptions<'_>) -> Vec<(Option<String>, String)> {
    let mut out: Vec<(Option<String>, String)> = Vec::new();
    let both = || Some(format!("{}: {}", p.record, p.alert));
    if !r.record.is_empty() && !r.alert.is_empty() {
        out.push((
            both(),
            "only one of 'record' and 'alert' must be set".into(),
        ));
    }
    if r.record.is_empty() && r.alert.is_empty() {
        out.push((both(), "one of 'record' or 'alert' must be set".into()));
    }
    let at_expr = Some(p.expr.to_string());
    if r.expr.is_empty() {
        out.push((at_expr, "field 'expr' must be set in rule".into()));
    } else if let Err(e) = crate::parse(&r.expr) {
        out.push((
            at_expr,
            format!("could not parse expression: {}", parse_message(&e)),
        ));
    }
    if !r.record.is_empty() {
        let at = Some(p.record.to_string());
        if !r.annotations.is_empty() {
            out.push((
                at.clone(),
                "invalid field 'annotations' in recording rule".into(),
            ));
        }
        if r.for_ms != 0 {
            out.push((at.clone(), "invalid field 'for' in recording rule".into()));
        }
        if r.keep_firing_for_ms != 0 {
            out.push((
                at.clone(),
                "invalid field 'keep_firing_for' in recording rule".into(),
            ));
        }
        if r.record.contains(['{', '}']) {
            out.push((
                at,
                format!(
                    "braces present in the recording rule name; should it be in expr?: {}",
                    r.record
                ),
            ));
        }
    }
    for (k, v) in &r.labels {
        if let Some(e) = label_problems(k, v) {
            out.push((None, e));
        }
    }
    for k in r.annotations.keys() {
        if k.is_empty() {
            out.push((None, format!("invalid annotation name: {k}")));
        }
    }
    if !r.alert.is_empty()
        && let Some(check) = opts.check_template
    {
        let name = format!("__alert_{}", r.alert);
        for (k, v) in &r.labels {
            if let Err(e) = check(&name, v) {
                out.push((None, format!("label {}: {e}", quoted(k))));
            }
        }
        for (k, v) in &r.annotations {
            if let Err(e) = check(&name, v) {
                out.push((None, format!("annotation {}: {e}", quoted(k))));
            }
        }
    }
    out
}

/// A parse error as the rule checks print it: the parser's message without the engine's
/// wrapper.
fn parse_message(e: &crate::PromqlError) -> String {
    match e {
        crate::PromqlError::Parse(m) => m.clone(),
        other => other.to_string(),
    }
}

/// A recording rule's metric and labels, for finding rules that record the same series.
type RecordedSeries = (String, BTreeMap<String, String>);

/// Recording rules that record the same metric with the same labels (group labels, then the
/// rule's), each once, in order: promtool's duplicate-rule lint.
pub fn duplicate_rules(groups: &[RuleGroup]) -> Vec<RecordedSeries> {
    let mut all: Vec<RecordedSeries> = groups
        .iter()
        .flat_map(|g| {
            g.rules.iter().map(|r| {
                let mut labels = g.labels.clone();
                labels.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                (r.name().to_string(), labels)
            })
        })
        .collect();
    all.sort();
    let mut dups: Vec<RecordedSeries> = Vec::new();
    for w in all.windows(2) {
        if w[0] == w[1] && dups.last() != Some(&w[1]) {
            dups.push(w[1].clone());
        }
    }
    dups
}

#[cfg(test)]
mod tests;
