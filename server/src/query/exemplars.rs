//! `/api/v1/query_exemplars` across the querier's endpoints, as Thanos's querier answers it:
//! every endpoint whose Info advertises `exemplars` is asked through `thanos.Exemplars` for the
//! query's selectors and range; the series are merged by their labels with the replica labels
//! dropped, and each series' exemplars sorted (timestamp, labels, value) and deduplicated.
//! `gauntlet all` answers from its own heads through the same trait.

use std::sync::Arc;
use std::time::Duration;

use gauntlet_engine::head::{Exemplar, SeriesExemplars};
use gauntlet_engine::labels::Labels;
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

    async fn gather(
        &self,
        query: &str,
        start: i64,
        end: i64,
    ) -> Result<(Vec<SeriesExemplars>, Vec<String>), String> {
        let strategy = if self.partial_response {
            PartialResponseStrategy::Warn
        } else {
            PartialResponseStrategy::Abort
        };
        let req = thanos::ExemplarsRequest {
            query: query.to_string(),
            start,
            end,
            partial_response_strategy: strategy as i32,
        };
        let (series, warnings) = fan_out(
            &self.endpoints,
            |i| i.exemplars,
            self.timeout,
            self.partial_response,
            "exemplars",
            |e| {
                let req = req.clone();
                async move { fetch(&e, req).await }
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
        self.runtime.block_on(self.gather(query, start, end))
    }
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
