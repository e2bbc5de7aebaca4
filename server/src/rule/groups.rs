//! Rule groups as the `thanos.Rules` messages carry them: built from a ruler's [`Manager`]
//! (what `gauntlet rule` streams, and what its Thanos-dialect `/api/v1/rules` shows), narrowed
//! by a request's kind, names, groups and files, and written as the JSON of `/api/v1/rules` and
//! `/api/v1/alerts` the way Thanos writes these messages (the querier uses the same writer for
//! the groups its endpoints send).

use std::collections::BTreeMap;

use gauntlet_engine::go_format::{FloatFormat, format_float};
use gauntlet_engine::labels::Labels;
use gauntlet_promql::rules::alerting::AlertState as RuleAlertState;
use gauntlet_promql::rules::group::{Group, RuleKind, RuleState};
use gauntlet_proto::thanos::{
    self, AlertInstance, PartialResponseStrategy, RecordingRule, Rule, RuleGroup, RulesRequest,
    rule, rules_request,
};
use prost_types::Timestamp;
use serde_json::{Map, Value, json};

use super::manager::Manager;
use crate::http::params::Form;

/// Seconds from Go's zero time (0001-01-01T00:00:00Z) to the Unix epoch: what a Thanos peer
/// sends for "never".
const GO_ZERO_UNIX_S: i64 = -62_135_596_800;

/// Which rules a request asks for: the HTTP API's `type`, `rule_name[]`, `rule_group[]` and
/// `file[]`, or the same fields of a `RulesRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSelection {
    /// Alerting rules only, recording rules only, or both.
    pub kind: rules_request::Type,
    /// Rule names to keep; empty keeps all.
    pub names: Vec<String>,
    /// Group names to keep; empty keeps all.
    pub groups: Vec<String>,
    /// Rule files to keep; empty keeps all.
    pub files: Vec<String>,
    /// `match[]` selectors, passed on to endpoints as they were given (a querier applies them
    /// itself, on the rules' labels).
    pub matchers: Vec<String>,
}

impl RuleSelection {
    /// The selection an HTTP request's form asks for (`group_name[]` is taken as Prometheus's
    /// spelling of `rule_group[]`); `Err` is the bad parameter's message.
    pub fn from_form(form: &Form) -> Result<Self, String> {
        let typ = form.value("type");
        let kind = match typ.to_ascii_lowercase().as_str() {
            "" => rules_request::Type::All,
            "alert" => rules_request::Type::Alert,
            "record" => rules_request::Type::Record,
            _ => {
                return Err(format!(
                    "invalid parameter \"type\": not supported value {:?}",
                    typ.to_ascii_lowercase()
                ));
            }
        };
        let owned = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
        let mut groups = owned(form.all("rule_group[]"));
        groups.extend(owned(form.all("group_name[]")));
        Ok(RuleSelection {
            kind,
            names: owned(form.all("rule_name[]")),
            groups,
            files: owned(form.all("file[]")),
            matchers: owned(form.all("match[]")),
        })
    }

    /// The selection a `thanos.Rules` request asks for.
    pub fn from_request(r: &RulesRequest) -> Self {
        RuleSelection {
            kind: r.r#type(),
            names: r.rule_name.clone(),
            groups: r.rule_group.clone(),
            files: r.file.clone(),
            matchers: r.matcher_string.clone(),
        }
    }

    /// The request that asks an endpoint for this selection under `strategy`.
    pub fn request(&self, strategy: PartialResponseStrategy) -> RulesRequest {
        let mut r = RulesRequest {
            rule_name: self.names.clone(),
            rule_group: self.groups.clone(),
            file: self.files.clone(),
            matcher_string: self.matchers.clone(),
            ..RulesRequest::default()
        };
        r.set_type(self.kind);
        r.set_partial_response_strategy(strategy);
        r
    }

    /// `groups` narrowed to the selection, as Thanos narrows them: the kind empties groups
    /// but keeps them; names, groups and files drop the groups they leave without rules.
    pub fn apply(&self, mut groups: Vec<RuleGroup>) -> Vec<RuleGroup> {
        for g in &mut groups {
            g.rules.retain(|r| match self.kind {
                rules_request::Type::All => true,
                rules_request::Type::Alert => matches!(r.result, Some(rule::Result::Alert(_))),
                rules_request::Type::Record => {
                    matches!(r.result, Some(rule::Result::Recording(_)))
                }
            });
        }
        if self.names.is_empty() && self.groups.is_empty() && self.files.is_empty() {
            return groups;
        }
        let listed = |set: &[String], v: &str| set.is_empty() || set.iter().any(|s| s == v);
        groups.retain_mut(|g| {
            if !listed(&self.groups, &g.name) || !listed(&self.files, &g.file) {
                return false;
            }
            g.rules.retain(|r| listed(&self.names, rule_name(r)));
            !g.rules.is_empty()
        });
        groups
    }
}

/// A rule's name, whichever kind it is.
pub fn rule_name(r: &Rule) -> &str {
    match &r.result {
        Some(rule::Result::Alert(a)) => &a.name,
        Some(rule::Result::Recording(x)) => &x.name,
        None => "",
    }
}

/// Every group `m` runs, as Thanos's ruler sends them: rules in its order (alerting first,
/// then by name, labels, expression and `for`), the external labels added to each rule's
/// labels, each group's and alert's partial-response strategy.
pub fn manager_groups(m: &Manager) -> Vec<RuleGroup> {
    m.groups()
        .iter()
        .map(|v| group_message(&v.group, m.external_labels()))
        .collect()
}

fn group_message(g: &Group, ext: &BTreeMap<String, String>) -> RuleGroup {
    let strategy = match g.partial_response_strategy.as_deref() {
        Some(s) if s.eq_ignore_ascii_case("warn") => PartialResponseStrategy::Warn,
        _ => PartialResponseStrategy::Abort,
    };
    let mut rules: Vec<&RuleState> = g.rules.iter().collect();
    rules.sort_by(|a, b| thanos_order(a, b));
    let mut out = RuleGroup {
        name: g.name.clone(),
        file: g.file.clone(),
        rules: rules
            .into_iter()
            .map(|r| rule_message(r, ext, strategy))
            .collect(),
        interval: g.interval_ms as f64 / 1000.0,
        evaluation_duration_seconds: g.eval_duration.as_secs_f64(),
        last_evaluation: Some(timestamp(g.last_eval_ms)),
        limit: i64::try_from(g.limit).unwrap_or(i64::MAX),
        ..RuleGroup::default()
    };
    out.set_partial_response_strategy(strategy);
    out
}

/// The order Thanos's ruler lists a group's rules in: alerting rules first, then by name,
/// labels, expression and `for`.
fn thanos_order(a: &RuleState, b: &RuleState) -> std::cmp::Ordering {
    let kind = |r: &RuleState| matches!(r.kind, RuleKind::Recording(_));
    let labels = |r: &RuleState| match &r.kind {
        RuleKind::Alerting(x) => x.labels.clone(),
        RuleKind::Recording(x) => x.labels.clone(),
    };
    let hold = |r: &RuleState| match &r.kind {
        RuleKind::Alerting(x) => x.for_ms,
        RuleKind::Recording(_) => 0,
    };
    kind(a)
        .cmp(&kind(b))
        .then_with(|| a.name().cmp(b.name()))
        .then_with(|| labels(a).into_iter().cmp(labels(b)))
        .then_with(|| a.expr().cmp(b.expr()))
        .then_with(|| hold(a).cmp(&hold(b)))
}

fn rule_message(
    r: &RuleState,
    ext: &BTreeMap<String, String>,
    strategy: PartialResponseStrategy,
) -> Rule {
    // External labels win over a rule's own, as on the series the ruler writes.
    let with_ext = |l: &BTreeMap<String, String>| {
        let mut all = l.clone();
        all.extend(ext.iter().map(|(k, v)| (k.clone(), v.clone())));
        label_set(all.iter())
    };
    let last_error = r.last_error.clone().unwrap_or_default();
    let result = match &r.kind {
        RuleKind::Alerting(a) => {
            let mut alert = thanos::Alert {
                name: a.name.clone(),
                query: a.expr.clone(),
                duration_seconds: a.for_ms as f64 / 1000.0,
                labels: Some(with_ext(&a.labels)),
                annotations: Some(label_set(a.annotations.iter())),
                alerts: a
                    .active_alerts()
                    .into_iter()
                    .map(|al| {
                        let mut i = AlertInstance {
                            labels: Some(thanos::ZLabelSet {
                                labels: crate::grpc::convert::labels(&al.labels),
                            }),
                            annotations: Some(label_set(al.annotations.iter())),
                            active_at: Some(timestamp(al.active_at_ms)),
                            value: format_float(al.value, FloatFormat::E),
                            ..AlertInstance::default()
                        };
                        i.set_state(alert_state(al.state));
                        i.set_partial_response_strategy(strategy);
                        i
                    })
                    .collect(),
                health: r.health.as_str().to_string(),
                last_error,
                evaluation_duration_seconds: r.eval_duration.as_secs_f64(),
                last_evaluation: Some(timestamp(r.last_eval_ms)),
                keep_firing_for_seconds: a.keep_firing_for_ms as f64 / 1000.0,
                ..thanos::Alert::default()
            };
            alert.set_state(alert_state(a.state()));
            rule::Result::Alert(alert)
        }
        RuleKind::Recording(x) => rule::Result::Recording(RecordingRule {
            name: x.name.clone(),
            query: x.expr.clone(),
            labels: Some(with_ext(&x.labels)),
            health: r.health.as_str().to_string(),
            last_error,
            evaluation_duration_seconds: r.eval_duration.as_secs_f64(),
            last_evaluation: Some(timestamp(r.last_eval_ms)),
        }),
    };
    Rule {
        result: Some(result),
    }
}

fn alert_state(s: RuleAlertState) -> thanos::AlertState {
    match s {
        RuleAlertState::Inactive => thanos::AlertState::Inactive,
        RuleAlertState::Pending => thanos::AlertState::Pending,
        RuleAlertState::Firing => thanos::AlertState::Firing,
    }
}

fn label_set<'a>(it: impl Iterator<Item = (&'a String, &'a String)>) -> thanos::ZLabelSet {
    thanos::ZLabelSet {
        labels: it
            .map(|(k, v)| thanos::Label {
                name: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

/// A time in ms as a Thanos peer sends it; 0 (never) is Go's zero time.
pub fn timestamp(ms: i64) -> Timestamp {
    if ms == 0 {
        return Timestamp {
            seconds: GO_ZERO_UNIX_S,
            nanos: 0,
        };
    }
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A rule's labels (external labels included).
pub fn rule_labels(r: &Rule) -> Labels {
    let set = match &r.result {
        Some(rule::Result::Alert(a)) => a.labels.as_ref(),
        Some(rule::Result::Recording(x)) => x.labels.as_ref(),
        None => None,
    };
    Labels::from_pairs(
        set.map(|s| s.labels.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|l| (l.name.clone(), l.value.clone())),
    )
}

/// `/api/v1/rules`'s `data` for `groups`, written as Thanos writes its rule messages;
/// `exclude_alerts` leaves each alerting rule's `alerts` null.
pub fn groups_json(groups: &[RuleGroup], exclude_alerts: bool) -> Value {
    let list: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "name": g.name,
                "file": g.file,
                "rules": g.rules.iter().map(|r| rule_json(r, exclude_alerts)).collect::<Vec<_>>(),
                "interval": go_number(g.interval),
                "evaluationTime": go_number(g.evaluation_duration_seconds),
                "lastEvaluation": go_time(g.last_evaluation.as_ref()),
                "limit": g.limit,
                "partialResponseStrategy": g.partial_response_strategy().as_str_name(),
            })
        })
        .collect();
    json!({ "groups": list })
}

/// `/api/v1/alerts`'s `data` for `groups`: every alert of every alerting rule, in order
/// (`null` when there are none, as Thanos's querier writes it).
pub fn alerts_json(groups: &[RuleGroup]) -> Value {
    let list: Vec<Value> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter_map(|r| match &r.result {
            Some(rule::Result::Alert(a)) => Some(&a.alerts),
            _ => None,
        })
        .flatten()
        .map(alert_json)
        .collect();
    json!({ "alerts": if list.is_empty() { Value::Null } else { list.into() } })
}

fn rule_json(r: &Rule, exclude_alerts: bool) -> Value {
    let mut o = Map::new();
    let (health, last_error, eval_s, last_eval) = match &r.result {
        Some(rule::Result::Alert(a)) => {
            o.insert("state".into(), state_name(a.state()).into());
            o.insert("name".into(), a.name.clone().into());
            o.insert("query".into(), a.query.clone().into());
            o.insert("duration".into(), go_number(a.duration_seconds));
            o.insert("labels".into(), labels_json(a.labels.as_ref()));
            o.insert("annotations".into(), labels_json(a.annotations.as_ref()));
            let alerts = if exclude_alerts {
                Value::Null
            } else {
                a.alerts.iter().map(alert_json).collect::<Vec<_>>().into()
            };
            o.insert("alerts".into(), alerts);
            (
                &a.health,
                &a.last_error,
                a.evaluation_duration_seconds,
                &a.last_evaluation,
            )
        }
        Some(rule::Result::Recording(x)) => {
            o.insert("name".into(), x.name.clone().into());
            o.insert("query".into(), x.query.clone().into());
            o.insert("labels".into(), labels_json(x.labels.as_ref()));
            (
                &x.health,
                &x.last_error,
                x.evaluation_duration_seconds,
                &x.last_evaluation,
            )
        }
        None => return Value::Object(o),
    };
    o.insert("health".into(), health.clone().into());
    if !last_error.is_empty() {
        o.insert("lastError".into(), last_error.clone().into());
    }
    o.insert("evaluationTime".into(), go_number(eval_s));
    o.insert("lastEvaluation".into(), go_time(last_eval.as_ref()).into());
    if let Some(rule::Result::Alert(a)) = &r.result {
        o.insert("keepFiringFor".into(), go_number(a.keep_firing_for_seconds));
    }
    let kind = match r.result {
        Some(rule::Result::Alert(_)) => "alerting",
        _ => "recording",
    };
    o.insert("type".into(), kind.into());
    Value::Object(o)
}

fn alert_json(a: &AlertInstance) -> Value {
    let mut o = Map::new();
    o.insert("labels".into(), labels_json(a.labels.as_ref()));
    o.insert("annotations".into(), labels_json(a.annotations.as_ref()));
    o.insert("state".into(), state_name(a.state()).into());
    if let Some(t) = &a.active_at {
        o.insert("activeAt".into(), go_time(Some(t)).into());
    }
    o.insert("value".into(), a.value.clone().into());
    o.insert(
        "partialResponseStrategy".into(),
        a.partial_response_strategy().as_str_name().into(),
    );
    Value::Object(o)
}

fn state_name(s: thanos::AlertState) -> String {
    s.as_str_name().to_ascii_lowercase()
}

fn labels_json(set: Option<&thanos::ZLabelSet>) -> Value {
    Value::Object(
        set.map(|s| s.labels.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|l| (l.name.clone(), Value::from(l.value.as_str())))
            .collect(),
    )
}

/// A number as Go's JSON encoder writes a float64: whole numbers without a fraction.
pub fn go_number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

/// A timestamp as Go's `time.Time` marshals to JSON in UTC: RFC 3339 with the fraction's
/// trailing zeros trimmed; absent is Go's zero time.
fn go_time(t: Option<&Timestamp>) -> String {
    let (secs, nanos) = t.map_or((GO_ZERO_UNIX_S, 0), |t| (t.seconds, t.nanos));
    format_go_time(secs, nanos)
}

/// Seconds and nanoseconds since the epoch as Go's `time.Time` marshals to JSON in UTC.
pub fn format_go_time(secs: i64, nanos: i32) -> String {
    if secs <= GO_ZERO_UNIX_S {
        return "0001-01-01T00:00:00Z".into();
    }
    let t = std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_secs(
            u64::try_from(secs).unwrap_or(0),
        ))
        .unwrap_or(std::time::UNIX_EPOCH);
    let base = humantime::format_rfc3339_seconds(t).to_string();
    if nanos <= 0 {
        return base;
    }
    let digits = format!("{nanos:09}");
    let digits = digits.trim_end_matches('0');
    format!("{}.{digits}Z", base.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(name: &str) -> Rule {
        Rule {
            result: Some(rule::Result::Recording(RecordingRule {
                name: name.into(),
                ..RecordingRule::default()
            })),
        }
    }

    fn alerting(name: &str) -> Rule {
        Rule {
            result: Some(rule::Result::Alert(thanos::Alert {
                name: name.into(),
                ..thanos::Alert::default()
            })),
        }
    }

    fn group(file: &str, name: &str, rules: Vec<Rule>) -> RuleGroup {
        RuleGroup {
            file: file.into(),
            name: name.into(),
            rules,
            ..RuleGroup::default()
        }
    }

    fn names(groups: &[RuleGroup]) -> Vec<(String, Vec<String>)> {
        groups
            .iter()
            .map(|g| {
                let rules = g.rules.iter().map(|r| rule_name(r).to_string()).collect();
                (g.name.clone(), rules)
            })
            .collect()
    }

    fn sample() -> Vec<RuleGroup> {
        vec![
            group("a.yaml", "g1", vec![alerting("Up"), recording("job:up")]),
            group("a.yaml", "g2", vec![recording("job:down")]),
            group("b.yaml", "g3", vec![alerting("Down")]),
        ]
    }

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_kind_empties_groups_but_keeps_them() {
        let sel = RuleSelection {
            kind: rules_request::Type::Alert,
            ..RuleSelection::default()
        };
        let got = names(&sel.apply(sample()));
        assert_eq!(
            got,
            vec![
                ("g1".into(), owned(&["Up"])),
                ("g2".into(), vec![]),
                ("g3".into(), owned(&["Down"])),
            ]
        );
    }

    #[test]
    fn names_groups_and_files_drop_the_groups_they_empty() {
        let sel = RuleSelection {
            kind: rules_request::Type::Record,
            names: owned(&["job:up", "Down"]),
            ..RuleSelection::default()
        };
        assert_eq!(
            names(&sel.apply(sample())),
            vec![("g1".into(), owned(&["job:up"]))]
        );
        let sel = RuleSelection {
            files: owned(&["b.yaml"]),
            ..RuleSelection::default()
        };
        assert_eq!(
            names(&sel.apply(sample())),
            vec![("g3".into(), owned(&["Down"]))]
        );
        let sel = RuleSelection {
            groups: owned(&["g2", "g3"]),
            files: owned(&["a.yaml"]),
            ..RuleSelection::default()
        };
        assert_eq!(
            names(&sel.apply(sample())),
            vec![("g2".into(), owned(&["job:down"]))]
        );
    }

    #[test]
    fn a_selection_survives_the_trip_through_a_request() {
        let sel = RuleSelection {
            kind: rules_request::Type::Record,
            names: owned(&["a"]),
            groups: owned(&["b"]),
            files: owned(&["c"]),
            matchers: owned(&["{job=\"x\"}"]),
        };
        let req = sel.request(PartialResponseStrategy::Warn);
        assert_eq!(RuleSelection::from_request(&req), sel);
        assert_eq!(
            req.partial_response_strategy(),
            PartialResponseStrategy::Warn
        );
    }

    #[test]
    fn times_print_as_go_prints_them() {
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
        assert_eq!(go_time(Some(&timestamp(0))), "0001-01-01T00:00:00Z");
        let t = |ms| go_time(Some(&timestamp(ms)));
        assert_eq!(t(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(t(1_700_000_000_500), "2023-11-14T22:13:20.5Z");
        assert_eq!(
            format_go_time(1_700_000_000, 123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn no_alerts_is_null_as_thanos_writes_it() {
        assert_eq!(alerts_json(&sample()), json!({"alerts": null}));
        assert_eq!(groups_json(&[], false), json!({"groups": []}));
    }
}
