//! `/api/v1/query_exemplars` across the querier's endpoints, as Thanos's querier answers it:
//! every endpoint whose Info advertises `exemplars` is asked through `thanos.Exemplars` for the
//! query's selectors and range; the series are merged by their labels with the replica labels
//! dropped, and each series' exemplars sorted (timestamp, labels, value) and deduplicated.
//! `gauntlet all` answers from its own heads through the same trait.

use std::sync::Arc;
use std::time::Duration;

use gauntlet_engine::head::{Exemplar, SeriesExemplars};
use gauntlet_engine::labels::{Labels, Matcher};
use gauntlet_proto::thanos::exemplars_client::ExemplarsClient;
use gauntlet_proto::thanos::{self, PartialResponseStrategy, exemplars_response};

use super::endpoints::{Endpoint, EndpointSet, Frame, fan_out, read_frames};

/// Where `/api/v1/query_exemplars` reads exemplars from.
pub trait ExemplarSource: Send + Sync + std::fmt::Debug {
    /// The exemplars from `start` to `end` (ms) of the series `query`'s selectors pick, sorted
    /// by series, with the warnings met; `Err` when the answer cannot be given. Blocking.
    fn exemplars(
        &self,
        query: &str,
        start: i64,
        end: i64,
    ) -> Result<(Vec<SeriesExemplars>, Vec<String>), String>;
}

/// The exemplar endpoints of a querier.
#[derive(Debug)]
pub struct ExemplarEndpoints {
    endpoints: Arc<EndpointSet>,
    runtime: tokio::runtime::Handle,
    replica_labels: Vec<String>,
    partial_response: bool,
    timeout: Duration,
}

impl ExemplarEndpoints {
    /// Exemplars from `endpoints` (those advertising them), calls run on `runtime` and each
    /// given at most `timeout`; series merged along `replica_labels`; `partial_response`
    /// turns an endpoint's failure into a warning instead of failing the request.
    pub fn new(
        endpoints: Arc<EndpointSet>,
        runtime: tokio::runtime::Handle,
        replica_labels: Vec<String>,
        partial_response: bool,
        timeout: Duration,
    ) -> Self {
        ExemplarEndpoints {
            endpoints,
            runtime,
            replica_labels,
            partial_response,
            timeout,
        }
    }

    /// The merged exemplars from `start` to `end` (ms) of the series `query`'s selectors pick,
    /// with the warnings met; `partial` (an endpoint's failure is a warning) is given by the
    /// caller: `--query.partial-response` for the HTTP API, the `thanos.Exemplars`
    /// request's own strategy when the querier serves exemplars itself.
    pub async fn gather(
        &self,
        query: &str,
        start: i64,
        end: i64,
        partial: bool,
    ) -> Result<(Vec<SeriesExemplars>, Vec<String>), String> {
        let strategy = if partial {
            PartialResponseStrategy::Warn
        } else {
            PartialResponseStrategy::Abort
        };
        let selectors = gauntlet_promql::query_selectors(query).map_err(|e| e.to_string())?;
        let (series, warnings) = fan_out(
            &self.endpoints,
            |i| i.exemplars,
            self.timeout,
            partial,
            "exemplars",
            |e| {
                let query = e
                    .info()
                    .and_then(|info| endpoint_query(&selectors, &info.label_sets, &info.component));
                async move {
                    let Some(query) = query else {
                        return Ok((Vec::new(), Vec::new()));
                    };
                    let req = thanos::ExemplarsRequest {
                        query,
                        start,
                        end,
                        partial_response_strategy: strategy as i32,
                    };
                    fetch(&e, req).await
                }
            },
        )
        .await?;
        Ok((merge(series, &self.replica_labels), warnings))
    }
}

impl ExemplarSource for ExemplarEndpoints {
    fn exemplars(
        &self,
        query: &str,
        start: i64,
        end: i64,
    ) -> Result<(Vec<SeriesExemplars>, Vec<String>), String> {
        self.runtime
            .block_on(self.gather(query, start, end, self.partial_response))
    }
}

/// The query an endpoint serving the external label sets `label_sets` is asked, as Thanos's
/// querier writes it: the query's selectors the label sets do not rule out, each without its
/// matchers on an external label (the endpoint's exemplars API reads its own series, which do
/// not carry them) unless the endpoint is itself a querier (`component` `query`), joined with
/// `+`; `None` when every selector is ruled out, and the endpoint is not asked.
fn endpoint_query(
    selectors: &[Vec<Matcher>],
    label_sets: &[Labels],
    component: &str,
) -> Option<String> {
    let set_matches = |set: &Labels, ms: &[Matcher]| {
        ms.iter()
            .all(|m| set.get(&m.name).is_none_or(|v| m.matches(v)))
    };
    let parts: Vec<String> = selectors
        .iter()
        .filter(|ms| label_sets.is_empty() || label_sets.iter().any(|set| set_matches(set, ms)))
        .map(|ms| {
            let kept: Vec<String> = ms
                .iter()
                .filter(|m| {
                    component == "query" || !label_sets.iter().any(|set| set.get(&m.name).is_some())
                })
                .map(Matcher::to_string)
                .collect();
            format!("{{{}}}", kept.join(", "))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" + "))
}

/// One endpoint's series and warnings, or why the call failed.
async fn fetch(
    e: &Endpoint,
    req: thanos::ExemplarsRequest,
) -> Result<(Vec<SeriesExemplars>, Vec<String>), String> {
    let mut client = ExemplarsClient::new(e.channel()).max_decoding_message_size(usize::MAX);
    let call = client.exemplars(req).await;
    read_frames(
        call,
        |m: thanos::ExemplarsResponse| match m.result? {
            exemplars_response::Result::Data(d) => Some(Frame::Item(from_proto(d))),
            exemplars_response::Result::Warning(w) => Some(Frame::Warning(w)),
        },
        "empty exemplars frame",
    )
    .await
}

/// A wire series' exemplars as the engine's.
fn from_proto(d: thanos::ExemplarData) -> SeriesExemplars {
    SeriesExemplars {
        series: labels(d.series_labels),
        exemplars: d
            .exemplars
            .into_iter()
            .map(|e| Exemplar {
                labels: labels(e.labels),
                value: e.value,
                ts: e.ts,
            })
            .collect(),
    }
}

fn labels(z: Option<thanos::ZLabelSet>) -> Labels {
    Labels::from_pairs(
        z.map(|z| z.labels)
            .unwrap_or_default()
            .into_iter()
            .map(|l| (l.name, l.value)),
    )
}

/// Series from every endpoint as one list, as Thanos's querier merges them: replica labels
/// dropped, series of equal labels made one, each one's exemplars sorted by timestamp, labels
/// and value with equal ones kept once; series without exemplars left out; sorted by labels.
pub fn merge(series: Vec<SeriesExemplars>, replica_labels: &[String]) -> Vec<SeriesExemplars> {
    let mut by_labels: std::collections::BTreeMap<Labels, Vec<Exemplar>> = Default::default();
    for s in series {
        if s.exemplars.is_empty() {
            continue;
        }
        let key = Labels::from_sorted(
            s.series
                .iter()
                .filter(|l| !replica_labels.iter().any(|r| *r == l.name))
                .cloned()
                .collect(),
        );
        by_labels.entry(key).or_default().extend(s.exemplars);
    }
    by_labels
        .into_iter()
        .map(|(series, mut exemplars)| {
            exemplars.sort_by(|a, b| {
                a.ts.cmp(&b.ts)
                    .then_with(|| a.labels.cmp(&b.labels))
                    .then_with(|| a.value.total_cmp(&b.value))
            });
            exemplars.dedup_by(|a, b| a.ts == b.ts && a.labels == b.labels && a.value == b.value);
            SeriesExemplars { series, exemplars }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(trace: &str, ts: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value: 1.0,
            ts,
        }
    }

    #[test]
    fn each_endpoint_is_asked_for_what_its_external_labels_leave() {
        let selectors = gauntlet_promql::query_selectors(
            r#"rate(a{cluster="eu1", job="x"}[5m]) + b{cluster=~"us.*"} + c{job!=""}"#,
        )
        .unwrap();
        let eu = [Labels::from_pairs([("cluster", "eu1"), ("replica", "0")])];
        assert_eq!(
            endpoint_query(&selectors, &eu, "sidecar").as_deref(),
            Some(r#"{__name__="a", job="x"} + {__name__="c", job!=""}"#),
            "the external label's matchers are decided here, and the us selector is not sent"
        );
        assert_eq!(
            endpoint_query(&selectors, &eu, "query").as_deref(),
            Some(r#"{__name__="a", cluster="eu1", job="x"} + {__name__="c", job!=""}"#),
            "a querier below routes on them itself"
        );
        let us = [Labels::from_pairs([("cluster", "us2")])];
        assert_eq!(
            endpoint_query(&selectors, &us, "sidecar").as_deref(),
            Some(r#"{__name__="b"} + {__name__="c", job!=""}"#)
        );
        assert_eq!(
            endpoint_query(&selectors, &[], "receive").as_deref(),
            Some(
                r#"{__name__="a", cluster="eu1", job="x"} + {__name__="b", cluster=~"us.*"} + {__name__="c", job!=""}"#
            ),
            "no label sets: any data, every selector as written"
        );
        let only_eu = gauntlet_promql::query_selectors(r#"a{cluster="eu1"}"#).unwrap();
        assert_eq!(
            endpoint_query(&only_eu, &us, "sidecar"),
            None,
            "not asked at all"
        );
    }

    #[test]
    fn replicas_are_merged_and_their_exemplars_deduplicated() {
        let s = |replica: &str, exemplars| SeriesExemplars {
            series: Labels::from_pairs([("__name__", "m"), ("replica", replica)]),
            exemplars,
        };
        let got = merge(
            vec![
                s("b", vec![ex("2", 20), ex("1", 10)]),
                s("a", vec![ex("1", 10), ex("3", 30)]),
                s("c", vec![]),
            ],
            &["replica".to_string()],
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].series, Labels::from_pairs([("__name__", "m")]));
        let ts: Vec<i64> = got[0].exemplars.iter().map(|e| e.ts).collect();
        assert_eq!(ts, vec![10, 20, 30]);
    }
}
