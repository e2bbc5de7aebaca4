//! The querier's `/api/v1/rules` and `/api/v1/alerts`: `thanos.Rules` called on every
//! endpoint whose Info advertises rules, the groups merged and the rules of replicas
//! deduplicated as Thanos's querier does it.
//!
//! Groups with the same file and name are one group whatever endpoint sent them. Within a
//! group, the replica labels are dropped from each rule's labels; rules that are then the same
//! (kind, name, labels, expression, and for alerting rules `for`) are one rule, the one kept
//! being the alerting rule in the most severe state, else the one evaluated last. The kept
//! rule's alerts are shown as its endpoint sent them.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gauntlet_engine::labels::{Labels, Matcher};
use gauntlet_proto::thanos::{
    PartialResponseStrategy, Rule, RuleGroup, RulesResponse, rule, rules_response,
};
use tokio::runtime::Handle;

use super::endpoints::{Endpoint, EndpointSet, Frame, fan_out, read_frames};
use crate::rule::groups::{RuleSelection, rule_labels, rule_name};

/// The rule endpoints of a querier and how their answers are combined.
#[derive(Debug)]
pub struct RuleEndpoints {
    endpoints: Arc<EndpointSet>,
    runtime: Handle,
    replica_labels: Vec<String>,
    partial_response: bool,
    timeout: Duration,
}

/// Groups gathered from the endpoints, with the warnings met.
pub type Gathered = (Vec<RuleGroup>, Vec<String>);

impl RuleEndpoints {
    /// Rules from `endpoints` (those advertising rules), calls run on `runtime` and each
    /// given at most `timeout`; rules deduplicated along `replica_labels`;
    /// `partial_response` (`--rule.partial-response`) turns an endpoint's failure into a
    /// warning instead of failing the request.
    pub fn new(
        endpoints: Arc<EndpointSet>,
        runtime: Handle,
        replica_labels: Vec<String>,
        partial_response: bool,
        timeout: Duration,
    ) -> Self {
        RuleEndpoints {
            endpoints,
            runtime,
            replica_labels,
            partial_response,
            timeout,
        }
    }

    /// The groups `selection` asks for whose rules' labels match every matcher of
    /// `match_sets` (the selection's `match[]`, parsed), merged and deduplicated; `Err` is an
    /// endpoint's failure when partial responses are off. Blocks: call it off the runtime's
    /// threads.
    pub fn groups(
        &self,
        selection: &RuleSelection,
        match_sets: &[Vec<Matcher>],
    ) -> Result<Gathered, String> {
        self.runtime
            .block_on(self.gather(selection, match_sets, self.partial_response))
    }

    /// As [`groups`](Self::groups), from async code, with `partial` (an endpoint's failure is a
    /// warning) given by the caller: the `thanos.Rules` request's own strategy when the
    /// querier serves rules itself.
    pub async fn gather(
        &self,
        selection: &RuleSelection,
        match_sets: &[Vec<Matcher>],
        partial: bool,
    ) -> Result<Gathered, String> {
        let strategy = if partial {
            PartialResponseStrategy::Warn
        } else {
            PartialResponseStrategy::Abort
        };
        let req = selection.request(strategy);
        let (groups, warnings) = fan_out(
            &self.endpoints,
            |i| i.rules,
            self.timeout,
            partial,
            "rules",
            |e| {
                let req = req.clone();
                async move { fetch(&e, req).await }
            },
        )
        .await?;
        let groups = selection.apply(keep_matching(groups, match_sets));
        Ok((merge(groups, &self.replica_labels), warnings))
    }
}

/// `groups` with only the rules whose labels match every matcher of every set, as Thanos's
/// querier filters them: a label whose value is a template (holds `{{`) counts as absent.
/// Groups left without rules are dropped.
pub fn keep_matching(mut groups: Vec<RuleGroup>, sets: &[Vec<Matcher>]) -> Vec<RuleGroup> {
    if sets.is_empty() {
        return groups;
    }
    for g in &mut groups {
        g.rules.retain(|r| {
            let labels = rule_labels(r);
            sets.iter().flatten().all(|m| {
                let v = labels.get(&m.name).filter(|v| !v.contains("{{"));
                m.matches(v.unwrap_or(""))
            })
        });
    }
    groups.retain(|g| !g.rules.is_empty());
    groups
}

/// One endpoint's groups and warnings, or why the call failed.
async fn fetch(
    e: &Endpoint,
    req: gauntlet_proto::thanos::RulesRequest,
) -> Result<Gathered, String> {
    let call = e.rules().rules(req).await;
    read_frames(
        call,
        |m: RulesResponse| match m.result? {
            rules_response::Result::Group(g) => Some(Frame::Item(g)),
            rules_response::Result::Warning(w) => Some(Frame::Warning(w)),
        },
        "no group",
    )
    .await
}

/// `groups` from every endpoint as one list: ordered by file and name, groups of the same file
/// and name made one, and each group's rules deduplicated along `replica_labels`.
pub fn merge(mut groups: Vec<RuleGroup>, replica_labels: &[String]) -> Vec<RuleGroup> {
    groups.sort_by_cached_key(group_key);
    let mut out: Vec<RuleGroup> = Vec::with_capacity(groups.len());
    for g in groups {
        match out.last_mut() {
            Some(last) if group_key(last) == group_key(&g) => last.rules.extend(g.rules),
            _ => out.push(g),
        }
    }
    for g in &mut out {
        g.rules = dedup_rules(std::mem::take(&mut g.rules), replica_labels);
    }
    out
}

/// What makes two groups one: Prometheus's group key, file then name.
fn group_key(g: &RuleGroup) -> String {
    format!("{};{}", g.file, g.name)
}

/// `rules` without replica labels, sorted, each set of the same rule reduced to its best.
fn dedup_rules(mut rules: Vec<Rule>, replica_labels: &[String]) -> Vec<Rule> {
    for r in &mut rules {
        drop_labels(r, replica_labels);
    }
    let keys: Vec<RuleKey> = rules.iter().map(RuleKey::of).collect();
    let mut order: Vec<usize> = (0..rules.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    let mut slots: Vec<Option<Rule>> = rules.into_iter().map(Some).collect();
    let mut out: Vec<(usize, Rule)> = Vec::with_capacity(slots.len());
    for i in order {
        let Some(r) = slots[i].take() else { continue };
        match out.last_mut() {
            Some((k, kept)) if keys[*k] == keys[i] => {
                if better(&r, kept) {
                    *k = i;
                    *kept = r;
                }
            }
            _ => out.push((i, r)),
        }
    }
    out.into_iter().map(|(_, r)| r).collect()
}

fn drop_labels(r: &mut Rule, names: &[String]) {
    let set = match &mut r.result {
        Some(rule::Result::Alert(a)) => a.labels.as_mut(),
        Some(rule::Result::Recording(x)) => x.labels.as_mut(),
        None => None,
    };
    if let Some(set) = set {
        set.labels.retain(|l| !names.contains(&l.name));
    }
}

/// What makes two rules the same rule, in Thanos's order: alerting before recording, then
/// name, labels, expression, and `for`.
#[derive(Debug, PartialEq)]
struct RuleKey {
    recording: bool,
    name: String,
    labels: Labels,
    query: String,
    hold_s: f64,
}

impl RuleKey {
    fn of(r: &Rule) -> Self {
        let (recording, query, hold_s) = match &r.result {
            Some(rule::Result::Alert(a)) => (false, a.query.clone(), a.duration_seconds),
            Some(rule::Result::Recording(x)) => (true, x.query.clone(), 0.0),
            None => (true, String::new(), 0.0),
        };
        RuleKey {
            recording,
            name: rule_name(r).to_string(),
            labels: rule_labels(r),
            query,
            hold_s,
        }
    }

    fn cmp(&self, o: &Self) -> Ordering {
        self.recording
            .cmp(&o.recording)
            .then_with(|| self.name.cmp(&o.name))
            .then_with(|| self.labels.iter().cmp(o.labels.iter()))
            .then_with(|| self.query.cmp(&o.query))
            .then_with(|| self.hold_s.total_cmp(&o.hold_s))
    }
}

/// Whether `r` should replace `kept`, the same rule from another replica: an alerting rule in
/// a more severe state, else one evaluated later.
fn better(r: &Rule, kept: &Rule) -> bool {
    let last_eval = |r: &Rule| {
        let t = match &r.result {
            Some(rule::Result::Alert(a)) => a.last_evaluation,
            Some(rule::Result::Recording(x)) => x.last_evaluation,
            None => None,
        };
        t.map_or((i64::MIN, 0), |t| (t.seconds, t.nanos))
    };
    if let (Some(rule::Result::Alert(a)), Some(rule::Result::Alert(b))) = (&r.result, &kept.result)
    {
        match a.state.cmp(&b.state) {
            Ordering::Equal => {}
            o => return o == Ordering::Greater,
        }
    }
    last_eval(r) > last_eval(kept)
}

#[cfg(test)]
mod tests {
    use gauntlet_proto::thanos::{self, AlertState, RecordingRule};
    use prost_types::Timestamp;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Option<thanos::ZLabelSet> {
        Some(thanos::ZLabelSet {
            labels: pairs
                .iter()
                .map(|(n, v)| thanos::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        })
    }

    fn alert(name: &str, replica: &str, state: AlertState, eval_s: i64) -> Rule {
        let mut a = thanos::Alert {
            name: name.into(),
            query: "up == 0".into(),
            labels: labels(&[("replica", replica), ("severity", "page")]),
            last_evaluation: Some(Timestamp {
                seconds: eval_s,
                nanos: 0,
            }),
            ..thanos::Alert::default()
        };
        a.set_state(state);
        Rule {
            result: Some(rule::Result::Alert(a)),
        }
    }

    fn recording(name: &str, replica: &str, eval_s: i64) -> Rule {
        Rule {
            result: Some(rule::Result::Recording(RecordingRule {
                name: name.into(),
                query: "sum(up)".into(),
                labels: labels(&[("replica", replica)]),
                last_evaluation: Some(Timestamp {
                    seconds: eval_s,
                    nanos: 0,
                }),
                ..RecordingRule::default()
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

    fn replica() -> Vec<String> {
        vec!["replica".to_string()]
    }

    #[test]
    fn groups_of_replicas_become_one_and_their_rules_are_deduplicated() {
        let a = group(
            "r.yaml",
            "g",
            vec![
                recording("job:up", "a", 100),
                alert("Down", "a", AlertState::Pending, 100),
            ],
        );
        let b = group(
            "r.yaml",
            "g",
            vec![
                alert("Down", "b", AlertState::Firing, 90),
                recording("job:up", "b", 110),
            ],
        );
        let merged = merge(vec![a, b], &replica());
        assert_eq!(merged.len(), 1);
        let rules = &merged[0].rules;
        assert_eq!(rules.len(), 2);
        // Alerting rules first; the firing replica wins over the later pending one.
        let Some(rule::Result::Alert(a)) = &rules[0].result else {
            panic!("alerting rule first")
        };
        assert_eq!(a.state(), AlertState::Firing);
        assert_eq!(a.labels, labels(&[("severity", "page")]));
        // The recording rule evaluated last wins.
        let Some(rule::Result::Recording(r)) = &rules[1].result else {
            panic!("recording rule second")
        };
        assert_eq!(r.last_evaluation.map(|t| t.seconds), Some(110));
        assert_eq!(r.labels, labels(&[]));
    }

    #[test]
    fn without_replica_labels_nothing_is_merged_away() {
        let a = group("r.yaml", "g", vec![recording("job:up", "a", 1)]);
        let b = group("r.yaml", "g", vec![recording("job:up", "b", 1)]);
        let merged = merge(vec![a, b], &[]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].rules.len(), 2);
    }

    #[test]
    fn groups_differing_in_file_or_name_stay_apart_in_key_order() {
        let groups = vec![
            group("b.yaml", "g", vec![recording("x", "a", 1)]),
            group("a.yaml", "h", vec![recording("x", "a", 1)]),
            group("a.yaml", "g", vec![recording("x", "a", 1)]),
        ];
        let keys: Vec<String> = merge(groups, &replica()).iter().map(group_key).collect();
        assert_eq!(keys, ["a.yaml;g", "a.yaml;h", "b.yaml;g"]);
    }

    #[test]
    fn rules_differing_beyond_the_replica_label_are_kept() {
        let mut other = alert("Down", "b", AlertState::Firing, 1);
        if let Some(rule::Result::Alert(a)) = &mut other.result {
            a.duration_seconds = 60.0;
        }
        let g = group(
            "r.yaml",
            "g",
            vec![alert("Down", "a", AlertState::Firing, 1), other],
        );
        assert_eq!(merge(vec![g], &replica())[0].rules.len(), 2);
    }

    #[test]
    fn matchers_see_only_labels_that_are_not_templates() {
        use gauntlet_engine::labels::MatchType;
        let mut templated = recording("templated", "a", 1);
        if let Some(rule::Result::Recording(x)) = &mut templated.result {
            x.labels = labels(&[("replica", "{{ $labels.replica }}")]);
        }
        let g = group(
            "r.yaml",
            "g",
            vec![
                recording("plain", "a", 1),
                templated,
                recording("other", "b", 1),
            ],
        );
        let only_a = vec![vec![
            Matcher::new(MatchType::Equal, "replica", "a").unwrap(),
        ]];
        let kept = keep_matching(vec![g.clone()], &only_a);
        let names: Vec<&str> = kept[0].rules.iter().map(rule_name).collect();
        assert_eq!(names, ["plain"]);
        // Every set must match, not any one of them.
        let both = vec![
            only_a[0].clone(),
            vec![Matcher::new(MatchType::Equal, "replica", "b").unwrap()],
        ];
        assert!(keep_matching(vec![g.clone()], &both).is_empty());
        let absent = vec![vec![Matcher::new(MatchType::Equal, "replica", "").unwrap()]];
        let kept = keep_matching(vec![g], &absent);
        let names: Vec<&str> = kept[0].rules.iter().map(rule_name).collect();
        assert_eq!(names, ["templated"]);
    }

    /// An endpoint that advertises rules and fails every Rules call.
    #[derive(Debug, Clone, Copy)]
    struct Broken;

    #[tonic::async_trait]
    impl gauntlet_proto::thanos::info::info_server::Info for Broken {
        async fn info(
            &self,
            _req: tonic::Request<thanos::info::InfoRequest>,
        ) -> Result<tonic::Response<thanos::info::InfoResponse>, tonic::Status> {
            Ok(tonic::Response::new(thanos::info::InfoResponse {
                component_type: "rule".into(),
                store: Some(thanos::info::StoreInfo::default()),
                rules: Some(thanos::info::RulesInfo {}),
                ..Default::default()
            }))
        }
    }

    #[tonic::async_trait]
    impl gauntlet_proto::thanos::rules_server::Rules for Broken {
        type RulesStream = tokio_stream::Empty<Result<thanos::RulesResponse, tonic::Status>>;

        async fn rules(
            &self,
            _req: tonic::Request<thanos::RulesRequest>,
        ) -> Result<tonic::Response<Self::RulesStream>, tonic::Status> {
            Err(tonic::Status::unavailable("ruler down"))
        }
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_a_warning_or_an_error_as_configured() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(thanos::info::info_server::InfoServer::new(Broken))
                .add_service(thanos::rules_server::RulesServer::new(Broken))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let endpoints = Arc::new(EndpointSet::new(
            vec![addr.clone()],
            Vec::new(),
            Duration::from_secs(5),
        ));
        endpoints.refresh().await;
        assert!(endpoints.all()[0].info().is_some_and(|i| i.rules));
        let fanout = |partial| {
            RuleEndpoints::new(
                endpoints.clone(),
                Handle::current(),
                replica(),
                partial,
                Duration::from_secs(5),
            )
        };
        let selection = RuleSelection::default();
        let (groups, warnings) = fanout(true).gather(&selection, &[], true).await.unwrap();
        assert!(groups.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(&addr) && warnings[0].contains("ruler down"),
            "{warnings:?}"
        );
        let err = fanout(false)
            .gather(&selection, &[], false)
            .await
            .unwrap_err();
        assert!(err.contains("ruler down"), "{err}");

        // The querier's own thanos.Rules: the request's strategy decides, whatever the flag.
        use gauntlet_proto::thanos::rules_server::Rules;
        use tokio_stream::StreamExt;
        let served = crate::query::rules_proxy::RulesProxy::new(
            Arc::new(fanout(false)),
            gauntlet_engine::budget::MemoryBudget::unlimited(),
        );
        let call = |strategy: PartialResponseStrategy, matchers: Vec<String>| {
            let mut req = selection.request(strategy);
            req.matcher_string = matchers;
            served.rules(tonic::Request::new(req))
        };
        let frames: Vec<_> = call(PartialResponseStrategy::Warn, Vec::new())
            .await
            .unwrap()
            .into_inner()
            .collect()
            .await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        match &frames[0].as_ref().unwrap().result {
            Some(rules_response::Result::Warning(w)) => assert!(w.contains("ruler down"), "{w}"),
            other => panic!("a warning frame, not {other:?}"),
        }
        let err = call(PartialResponseStrategy::Abort, Vec::new())
            .await
            .unwrap_err();
        assert!(err.message().contains("ruler down"), "{err:?}");
        let err = call(PartialResponseStrategy::Warn, vec!["{".into()])
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }
}
