//! The sidecar's `thanos.Rules`: each call asks Prometheus's `/api/v1/rules` (with the
//! request's `type`, as Thanos's sidecar passes it on) and answers with one frame per group,
//! as Thanos's sidecar does. Each rule's labels get Prometheus's external labels (an external
//! label replacing one of the same name), which Prometheus's API leaves out; its alerts'
//! labels are sent as Prometheus gives them. Groups carry the ABORT partial-response
//! strategy, Prometheus having none. The request's names, groups, files and `match[]`
//! selectors narrow the answer here, as a querier narrows it again.

use std::sync::Arc;

use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::labels::Labels;
use gauntlet_proto::thanos::rules_server::{Rules, RulesServer};
use gauntlet_proto::thanos::{
    self, AlertInstance, PartialResponseStrategy, RecordingRule, Rule, RuleGroup, RulesRequest,
    RulesResponse, rule, rules_request,
};
use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use super::apis::zlabels;
use super::prometheus::{PromAlert, PromRule, PromRuleCommon, PromRuleGroup};
use super::store::{PromState, prom_status};
use crate::http::params::{parse_match_sets, parse_rfc3339};
use crate::query::rules::keep_matching;
use crate::rule::groups::{RuleSelection, timestamp};

/// `thanos.Rules` over the rules of the sidecar's Prometheus.
#[derive(Debug, Clone)]
pub struct SidecarRules {
    state: Arc<PromState>,
    /// What parsing a request's selectors may reserve.
    budget: Arc<MemoryBudget>,
}

impl SidecarRules {
    /// The service answering from the Prometheus `state` talks to, as a tonic server;
    /// selectors are parsed within `budget`.
    pub fn server(state: Arc<PromState>, budget: Arc<MemoryBudget>) -> RulesServer<Self> {
        RulesServer::new(SidecarRules { state, budget })
    }
}

/// A map of Prometheus's answer as the wire's label set, with `ext` attached.
fn label_set(
    m: Option<std::collections::BTreeMap<String, String>>,
    ext: &Labels,
) -> thanos::ZLabelSet {
    zlabels(m.unwrap_or_default(), ext)
}

/// An RFC 3339 time of Prometheus's answer as the wire's (to the ms); Go's zero time stays
/// Go's zero time.
fn time(t: &str) -> Result<Timestamp, String> {
    parse_rfc3339(t)
        .map(timestamp)
        .ok_or_else(|| format!("time {t:?} is not RFC 3339"))
}

/// An alert state as Prometheus writes it (`firing`) as the wire's enum.
fn alert_state(s: &str) -> Result<thanos::AlertState, String> {
    thanos::AlertState::from_str_name(&s.to_ascii_uppercase())
        .ok_or_else(|| format!("unknown alert state {s:?}"))
}

/// Prometheus's active alert as the wire's (its labels as they are: Thanos's sidecar adds the
/// external labels to rules only).
fn alert_instance(a: PromAlert) -> Result<AlertInstance, String> {
    let none = Labels::empty();
    let mut out = AlertInstance {
        labels: Some(label_set(a.labels, &none)),
        annotations: Some(label_set(a.annotations, &none)),
        active_at: a.active_at.as_deref().map(time).transpose()?,
        value: a.value,
        ..AlertInstance::default()
    };
    out.set_state(alert_state(&a.state)?);
    Ok(out)
}

/// Prometheus's rule as the wire's, the external labels `ext` added to its labels.
fn rule_message(r: PromRule, ext: &Labels) -> Result<Rule, String> {
    let common = |c: PromRuleCommon| -> Result<_, String> {
        let last = time(&c.last_evaluation)?;
        Ok((c, last))
    };
    let result = match r {
        PromRule::Alerting(a) => {
            let (c, last_evaluation) = common(a.common)?;
            let none = Labels::empty();
            let mut alert = thanos::Alert {
                name: c.name,
                query: c.query,
                duration_seconds: a.duration,
                labels: Some(label_set(c.labels, ext)),
                annotations: Some(label_set(a.annotations, &none)),
                alerts: a
                    .alerts
                    .unwrap_or_default()
                    .into_iter()
                    .map(alert_instance)
                    .collect::<Result<_, _>>()?,
                health: c.health,
                last_error: c.last_error,
                evaluation_duration_seconds: c.evaluation_time,
                last_evaluation: Some(last_evaluation),
                keep_firing_for_seconds: a.keep_firing_for,
                ..thanos::Alert::default()
            };
            alert.set_state(alert_state(&a.state)?);
            rule::Result::Alert(alert)
        }
        PromRule::Recording(x) => {
            let (c, last_evaluation) = common(x.common)?;
            rule::Result::Recording(RecordingRule {
                name: c.name,
                query: c.query,
                labels: Some(label_set(c.labels, ext)),
                health: c.health,
                last_error: c.last_error,
                evaluation_duration_seconds: c.evaluation_time,
                last_evaluation: Some(last_evaluation),
            })
        }
    };
    Ok(Rule {
        result: Some(result),
    })
}

/// Prometheus's rule group as the wire's, the external labels `ext` added to each rule's
/// labels; `Err` says what in Prometheus's answer could not be read.
pub fn group_message(g: PromRuleGroup, ext: &Labels) -> Result<RuleGroup, String> {
    let mut out = RuleGroup {
        last_evaluation: Some(time(&g.last_evaluation)?),
        rules: g
            .rules
            .into_iter()
            .map(|r| rule_message(r, ext))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("group {:?}: {e}", g.name))?,
        name: g.name,
        file: g.file,
        interval: g.interval,
        evaluation_duration_seconds: g.evaluation_time,
        limit: g.limit,
        ..RuleGroup::default()
    };
    out.set_partial_response_strategy(PartialResponseStrategy::Abort);
    Ok(out)
}

#[tonic::async_trait]
impl Rules for SidecarRules {
    type RulesStream = tokio_stream::Iter<std::vec::IntoIter<Result<RulesResponse, Status>>>;

    async fn rules(
        &self,
        req: Request<RulesRequest>,
    ) -> Result<Response<Self::RulesStream>, Status> {
        let req = req.into_inner();
        let selectors: Vec<&str> = req.matcher_string.iter().map(String::as_str).collect();
        let sets = parse_match_sets(&selectors, false, &self.budget)
            .map_err(|e| Status::invalid_argument(e.message))?;
        let kind = match req.r#type() {
            rules_request::Type::All => "",
            rules_request::Type::Alert => "alert",
            rules_request::Type::Record => "record",
        };
        let st = &self.state;
        let groups = st
            .client
            .rules(kind, st.timeout)
            .await
            .map_err(prom_status)?;
        let ext = st.external();
        let groups = groups
            .into_iter()
            .map(|g| group_message(g, &ext))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                Status::internal(format!(
                    "Prometheus at {} answered badly: {e}",
                    st.client.url()
                ))
            })?;
        let groups = RuleSelection::from_request(&req).apply(keep_matching(groups, &sets));
        Ok(Response::new(tokio_stream::iter(
            crate::query::rules_proxy::frames(groups, Vec::new()),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Two groups as Prometheus 3 writes them: an alerting rule with a firing and a pending
    /// alert, a recording rule that failed, and a group never evaluated.
    const ANSWER: &str = r#"{"groups":[
      {"name":"g","file":"/rules/a.yml","interval":1,"limit":0,
       "evaluationTime":0.000512,"lastEvaluation":"2024-01-02T03:04:05.678901234Z",
       "rules":[
        {"state":"firing","name":"Always","query":"vector(1) > 0","duration":0,
         "keepFiringFor":30,"labels":{"severity":"page","cluster":"rule-own"},
         "annotations":{"summary":"always {{ $value }}"},
         "alerts":[
          {"labels":{"alertname":"Always","severity":"page"},"annotations":{"summary":"always 1"},
           "state":"firing","activeAt":"2024-01-02T03:04:00.5Z","value":"1e+00"},
          {"labels":{"alertname":"Always","severity":"page","x":"y"},"annotations":{},
           "state":"pending","activeAt":"2024-01-02T03:04:05Z","value":"2e+00"}],
         "health":"ok","evaluationTime":0.0001,"lastEvaluation":"2024-01-02T03:04:05.678Z",
         "type":"alerting"},
        {"name":"job:bad","query":"a / on() b","labels":{},
         "health":"err","lastError":"many-to-many matching not allowed",
         "evaluationTime":0.25,"lastEvaluation":"2024-01-02T03:04:05.001Z","type":"recording"}]},
      {"name":"idle","file":"/rules/b.yml","interval":60,"limit":10,"evaluationTime":0,
       "lastEvaluation":"0001-01-01T00:00:00Z",
       "rules":[{"name":"r","query":"up","health":"unknown","evaluationTime":0,
         "lastEvaluation":"0001-01-01T00:00:00Z","type":"recording"}]}]}"#;

    fn groups() -> Vec<PromRuleGroup> {
        #[derive(serde::Deserialize)]
        struct Groups {
            groups: Vec<PromRuleGroup>,
        }
        serde_json::from_str::<Groups>(ANSWER).unwrap().groups
    }

    fn pairs(set: &Option<thanos::ZLabelSet>) -> Vec<(&str, &str)> {
        set.as_ref()
            .unwrap()
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn alerting_rules_carry_their_state_alerts_and_the_external_labels() {
        let ext = Labels::from_pairs([("cluster", "eu"), ("replica", "a")]);
        let g = group_message(groups().remove(0), &ext).unwrap();
        assert_eq!((g.name.as_str(), g.file.as_str()), ("g", "/rules/a.yml"));
        assert_eq!(g.interval, 1.0);
        assert_eq!(g.evaluation_duration_seconds, 0.000512);
        assert_eq!(
            g.last_evaluation,
            Some(Timestamp {
                seconds: 1_704_164_645,
                nanos: 678_000_000
            })
        );
        assert_eq!(
            g.partial_response_strategy(),
            PartialResponseStrategy::Abort
        );
        let Some(rule::Result::Alert(a)) = &g.rules[0].result else {
            panic!("an alerting rule first: {:?}", g.rules[0])
        };
        assert_eq!(a.state(), thanos::AlertState::Firing);
        assert_eq!(
            (a.name.as_str(), a.query.as_str()),
            ("Always", "vector(1) > 0")
        );
        assert_eq!(a.keep_firing_for_seconds, 30.0);
        // The external label replaces the rule's own of the same name.
        assert_eq!(
            pairs(&a.labels),
            [("cluster", "eu"), ("replica", "a"), ("severity", "page")]
        );
        assert_eq!(pairs(&a.annotations), [("summary", "always {{ $value }}")]);
        assert_eq!((a.health.as_str(), a.last_error.as_str()), ("ok", ""));
        assert_eq!(a.evaluation_duration_seconds, 0.0001);
        assert_eq!(a.last_evaluation.unwrap().nanos, 678_000_000);
        assert_eq!(a.alerts.len(), 2);
        let (firing, pending) = (&a.alerts[0], &a.alerts[1]);
        assert_eq!(firing.state(), thanos::AlertState::Firing);
        assert_eq!(pending.state(), thanos::AlertState::Pending);
        // Alerts keep Prometheus's labels: no external labels on them.
        assert_eq!(
            pairs(&firing.labels),
            [("alertname", "Always"), ("severity", "page")]
        );
        assert_eq!(pairs(&firing.annotations), [("summary", "always 1")]);
        assert_eq!(
            firing.active_at,
            Some(Timestamp {
                seconds: 1_704_164_640,
                nanos: 500_000_000
            })
        );
        assert_eq!(firing.value, "1e+00");
        assert_eq!(pending.value, "2e+00");
    }

    #[test]
    fn recording_rules_carry_their_health_error_and_the_external_labels() {
        let ext = Labels::from_pairs([("cluster", "eu")]);
        let mut gs = groups();
        let g = group_message(gs.remove(0), &ext).unwrap();
        let Some(rule::Result::Recording(r)) = &g.rules[1].result else {
            panic!("a recording rule second: {:?}", g.rules[1])
        };
        assert_eq!(
            (r.name.as_str(), r.query.as_str()),
            ("job:bad", "a / on() b")
        );
        assert_eq!(pairs(&r.labels), [("cluster", "eu")]);
        assert_eq!(r.health, "err");
        assert_eq!(r.last_error, "many-to-many matching not allowed");
        assert_eq!(r.evaluation_duration_seconds, 0.25);
        assert_eq!(r.last_evaluation.unwrap().nanos, 1_000_000);

        // Never evaluated: Go's zero time, as Thanos's sidecar sends it.
        let idle = group_message(gs.remove(0), &Labels::empty()).unwrap();
        assert_eq!(idle.limit, 10);
        assert_eq!(idle.last_evaluation, Some(timestamp(0)));
        let Some(rule::Result::Recording(r)) = &idle.rules[0].result else {
            panic!("{:?}", idle.rules[0])
        };
        assert_eq!(r.health, "unknown");
        assert_eq!(r.last_evaluation, Some(timestamp(0)));
        assert!(pairs(&r.labels).is_empty());
    }

    #[test]
    fn an_unreadable_answer_is_an_error_naming_what_is_wrong() {
        let bad_type = r#"{"name":"x","query":"up","type":"other"}"#;
        assert!(serde_json::from_str::<PromRule>(bad_type).is_err());
        let mut g = groups().remove(0);
        if let PromRule::Alerting(a) = &mut g.rules[0] {
            a.state = "burning".into();
        }
        let e = group_message(g, &Labels::empty()).unwrap_err();
        assert!(e.contains("\"g\"") && e.contains("burning"), "{e}");
        let mut g = groups().remove(1);
        g.last_evaluation = "yesterday".into();
        let e = group_message(g, &Labels::empty()).unwrap_err();
        assert!(e.contains("yesterday"), "{e}");
    }

    #[tokio::test]
    async fn prometheus_unreachable_is_unavailable() {
        // The binary installs it at start; a test builds the client without main.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = super::super::prometheus::PromClient::new(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(2),
        )
        .unwrap();
        let state = Arc::new(PromState::new(
            client,
            std::env::temp_dir(),
            Duration::from_secs(2),
            Duration::from_secs(2),
        ));
        let svc = SidecarRules {
            state,
            budget: MemoryBudget::unlimited(),
        };
        let err = svc
            .rules(Request::new(RulesRequest::default()))
            .await
            .err()
            .map(|s| s.code());
        assert_eq!(err, Some(tonic::Code::Unavailable));
        let bad = RulesRequest {
            matcher_string: vec!["{".into()],
            ..RulesRequest::default()
        };
        let err = svc.rules(Request::new(bad)).await.err().map(|s| s.code());
        assert_eq!(err, Some(tonic::Code::InvalidArgument));
    }
}
