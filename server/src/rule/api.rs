//! The ruler's HTTP API: `/api/v1/rules` and `/api/v1/alerts` in Prometheus's JSON (with
//! Thanos's `partialResponseStrategy` on groups), and `POST /-/reload`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gauntlet_engine::go_format::{FloatFormat, format_float};
use gauntlet_engine::labels::Labels;
use gauntlet_promql::rules::alerting::{Alert, AlertState};
use gauntlet_promql::rules::group::{RuleKind, RuleState};
use gauntlet_proto::thanos::rules_request;
use serde_json::{Map, Value, json};

use super::groups::{self, RuleSelection, go_number};
use super::manager::Manager;
use crate::http::params::{Form, parse_match_sets};

/// The routes, over `manager`.
pub fn router(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules).post(rules))
        .route("/api/v1/alerts", get(alerts).post(alerts))
        .merge(reload_router(manager.clone()))
        .with_state(manager)
}

/// `POST /-/reload` alone, for a process whose query API lists the rules (`gauntlet all`).
pub fn reload_router<S>(manager: Arc<Manager>) -> Router<S> {
    Router::new()
        .route("/-/reload", post(reload))
        .with_state(manager)
}

fn answer(code: StatusCode, body: Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn bad_data(msg: String) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        json!({"status": "error", "errorType": "bad_data", "error": msg}),
    )
}

async fn reload(State(m): State<Arc<Manager>>) -> Response {
    let m2 = m.clone();
    let res = tokio::task::spawn_blocking(move || m2.reload()).await;
    match res {
        Ok(Ok(_)) => (StatusCode::OK, "").into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn rules(State(m): State<Arc<Manager>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let form = match Form::parse(q.as_deref(), (!body.is_empty()).then_some(&body[..])) {
        Ok(f) => f,
        Err(e) => return bad_data(e.message),
    };
    match rules_data(&m, &form) {
        Ok(data) => answer(StatusCode::OK, json!({"status": "success", "data": data})),
        Err(e) => bad_data(e),
    }
}

/// A rule's labels as its file gives them (its group's included).
fn configured_labels(r: &RuleState) -> Labels {
    let labels = match &r.kind {
        RuleKind::Recording(x) => &x.labels,
        RuleKind::Alerting(x) => &x.labels,
    };
    Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// `/api/v1/rules`'s `data` for the request `form` (`type`, `rule_name[]`, `rule_group[]` or
/// `group_name[]`, `file[]`, `match[]`, `exclude_alerts`); `Err` is a bad parameter's
/// message. A Thanos ruler's answer is its `thanos.Rules` groups ([`groups`]); a Prometheus
/// one lists groups in file order, without strategies and without the groups a filter
/// empties.
pub fn rules_data(m: &Manager, form: &Form) -> Result<Value, String> {
    let selection = RuleSelection::from_form(form)?;
    let sets = parse_match_sets(
        &form.all("match[]"),
        false,
        &gauntlet_engine::budget::MemoryBudget::unlimited(),
    )
    .map_err(|e| e.message)?;
    // Prometheus keeps a rule whose labels (as configured, templates unexpanded) satisfy any
    // one of the selectors; a label it lacks is empty.
    let wanted = |labels: &Labels| {
        sets.is_empty()
            || sets.iter().any(|set| {
                set.iter()
                    .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
            })
    };
    let exclude_alerts = match form.value("exclude_alerts") {
        "" | "false" => false,
        "true" => true,
        other => {
            return Err(format!(
                "invalid parameter \"exclude_alerts\": strconv.ParseBool: parsing {other:?}: invalid syntax"
            ));
        }
    };
    if m.thanos_api() {
        let mut groups = selection.apply(groups::manager_groups(m));
        if !sets.is_empty() {
            for g in &mut groups {
                g.rules.retain(|r| wanted(&groups::rule_labels(r)));
            }
            groups.retain(|g| !g.rules.is_empty());
        }
        return Ok(groups::groups_json(&groups, exclude_alerts));
    }
    let listed = |set: &[String], v: &str| set.is_empty() || set.iter().any(|s| s == v);
    let mut out = Vec::new();
    for view in m.groups() {
        let g = &view.group;
        if !listed(&selection.groups, &g.name) || !listed(&selection.files, &g.file) {
            continue;
        }
        let mut rules = Vec::new();
        for r in &g.rules {
            if !listed(&selection.names, r.name()) || !wanted(&configured_labels(r)) {
                continue;
            }
            let v = match (&r.kind, selection.kind) {
                (RuleKind::Alerting(_), rules_request::Type::Record) => continue,
                (RuleKind::Recording(_), rules_request::Type::Alert) => continue,
                _ => rule_json(r, exclude_alerts),
            };
            rules.push(v);
        }
        if rules.is_empty() {
            continue;
        }
        out.push(json!({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": go_number(g.interval_ms as f64 / 1000.0),
            "limit": g.limit,
            "evaluationTime": go_number(g.eval_duration.as_secs_f64()),
            "lastEvaluation": go_time(g.last_eval_ms),
        }));
    }
    Ok(json!({"groups": out}))
}

async fn alerts(State(m): State<Arc<Manager>>) -> Response {
    answer(
        StatusCode::OK,
        json!({"status": "success", "data": alerts_data(&m)}),
    )
}

/// `/api/v1/alerts`'s `data`: every pending and firing alert (with its group's
/// `partialResponseStrategy` on a Thanos ruler).
pub fn alerts_data(m: &Manager) -> Value {
    let mut list = Vec::new();
    for view in m.groups() {
        let strategy = m.thanos_api().then(|| strategy_of(&view.group));
        for r in &view.group.rules {
            if let RuleKind::Alerting(a) = &r.kind {
                list.extend(
                    a.active_alerts()
                        .into_iter()
                        .map(|al| alert_json(al, strategy.as_deref())),
                );
            }
        }
    }
    json!({ "alerts": list })
}

/// A group's partial-response strategy as Thanos's API spells it.
fn strategy_of(g: &gauntlet_promql::rules::group::Group) -> String {
    g.partial_response_strategy
        .as_deref()
        .unwrap_or("abort")
        .to_ascii_uppercase()
}

/// A rule as Prometheus's `/api/v1/rules` shows it.
fn rule_json(r: &RuleState, exclude_alerts: bool) -> Value {
    let mut o = Map::new();
    match &r.kind {
        RuleKind::Alerting(a) => {
            o.insert("state".into(), a.state().as_str().into());
            o.insert("name".into(), a.name.clone().into());
            o.insert("query".into(), a.expr.clone().into());
            o.insert("duration".into(), go_number(a.for_ms as f64 / 1000.0));
            o.insert(
                "keepFiringFor".into(),
                go_number(a.keep_firing_for_ms as f64 / 1000.0),
            );
            o.insert("labels".into(), map_json(a.labels.iter()));
            o.insert("annotations".into(), map_json(a.annotations.iter()));
            let alerts = if exclude_alerts {
                Value::Null
            } else {
                a.active_alerts()
                    .into_iter()
                    .map(|al| alert_json(al, None))
                    .collect::<Vec<_>>()
                    .into()
            };
            o.insert("alerts".into(), alerts);
        }
        RuleKind::Recording(rec) => {
            o.insert("name".into(), rec.name.clone().into());
            o.insert("query".into(), rec.expr.clone().into());
            if !rec.labels.is_empty() {
                o.insert("labels".into(), map_json(rec.labels.iter()));
            }
        }
    }
    o.insert("health".into(), r.health.as_str().into());
    if let Some(e) = &r.last_error {
        o.insert("lastError".into(), e.clone().into());
    }
    o.insert(
        "evaluationTime".into(),
        r.eval_duration.as_secs_f64().into(),
    );
    o.insert("lastEvaluation".into(), go_time(r.last_eval_ms).into());
    o.insert(
        "type".into(),
        match r.kind {
            RuleKind::Alerting(_) => "alerting",
            RuleKind::Recording(_) => "recording",
        }
        .into(),
    );
    Value::Object(o)
}

fn alert_json(a: &Alert, strategy: Option<&str>) -> Value {
    let mut o = Map::new();
    if let Some(s) = strategy {
        o.insert("partialResponseStrategy".into(), s.into());
    }
    o.insert("labels".into(), labels_json(&a.labels));
    o.insert("annotations".into(), map_json(a.annotations.iter()));
    o.insert(
        "state".into(),
        match a.state {
            AlertState::Firing => "firing",
            AlertState::Pending => "pending",
            AlertState::Inactive => "inactive",
        }
        .into(),
    );
    o.insert("activeAt".into(), go_time(a.active_at_ms).into());
    if let Some(k) = a.keep_firing_since_ms {
        o.insert("keepFiringSince".into(), go_time(k).into());
    }
    o.insert("value".into(), format_float(a.value, FloatFormat::E).into());
    Value::Object(o)
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|x| (x.name.to_string(), Value::from(x.value.as_str())))
            .collect(),
    )
}

fn map_json<'a>(it: impl Iterator<Item = (&'a String, &'a String)>) -> Value {
    Value::Object(
        it.map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

/// A time in ms as Go's `time.Time` marshals to JSON in UTC: RFC 3339 with the fraction's
/// trailing zeros trimmed; ms 0 is Go's zero time (never evaluated).
pub fn go_time(ms: i64) -> String {
    let t = groups::timestamp(ms);
    groups::format_go_time(t.seconds, t.nanos)
}

#[cfg(test)]
mod tests {
    use super::go_time;

    #[test]
    fn times_print_as_go_prints_them() {
        assert_eq!(go_time(0), "0001-01-01T00:00:00Z");
        assert_eq!(go_time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(go_time(1_700_000_000_500), "2023-11-14T22:13:20.5Z");
        assert_eq!(go_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
