//! The `thanos.Exemplars` service a querier serves itself, as Thanos's querier does, so that a
//! querier stacked above it answers `/api/v1/query_exemplars` over the endpoints below: each
//! call is checked as the HTTP API checks its query (the same limits), then is the querier's
//! own exemplars fan-out ([`ExemplarEndpoints::gather`]) with the request's query, range and
//! partial-response strategy; the series, merged along this querier's replica labels, go one a
//! frame, then the warnings. With tenancy enforced only the series of the tenant the call's
//! metadata names are sent, as on the HTTP API.

use std::sync::Arc;

use gauntlet_engine::head::SeriesExemplars;
use gauntlet_proto::thanos::exemplars_server::{Exemplars, ExemplarsServer};
use gauntlet_proto::thanos::{
    ExemplarsRequest, ExemplarsResponse, PartialResponseStrategy, exemplars_response,
};
use tonic::{Request, Response, Status};

use super::exemplars::ExemplarEndpoints;
use crate::grpc::convert;
use crate::http::api::ApiState;
use crate::receive::exemplars::to_proto;

/// `thanos.Exemplars` over a querier's exemplar endpoints.
#[derive(Debug, Clone)]
pub struct ExemplarsProxy {
    exemplars: Arc<ExemplarEndpoints>,
    /// The HTTP API's settings: its query limits and tenancy.
    api: Arc<ApiState>,
}

impl ExemplarsProxy {
    /// The service over `exemplars`, queries checked and tenants held as `api`'s are.
    pub fn new(exemplars: Arc<ExemplarEndpoints>, api: Arc<ApiState>) -> Self {
        ExemplarsProxy { exemplars, api }
    }

    /// [`ExemplarsProxy::new`] as a tonic server.
    pub fn server(exemplars: Arc<ExemplarEndpoints>, api: Arc<ApiState>) -> ExemplarsServer<Self> {
        ExemplarsServer::new(Self::new(exemplars, api))
    }
}

/// The frames of one answer: every series, then every warning.
fn frames(
    series: &[SeriesExemplars],
    warnings: Vec<String>,
) -> Vec<Result<ExemplarsResponse, Status>> {
    let series = series
        .iter()
        .map(|s| exemplars_response::Result::Data(to_proto(s)));
    let warnings = warnings
        .into_iter()
        .map(exemplars_response::Result::Warning);
    series
        .chain(warnings)
        .map(|r| Ok(ExemplarsResponse { result: Some(r) }))
        .collect()
}

#[tonic::async_trait]
impl Exemplars for ExemplarsProxy {
    type ExemplarsStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<ExemplarsResponse, Status>>>;

    async fn exemplars(
        &self,
        req: Request<ExemplarsRequest>,
    ) -> Result<Response<Self::ExemplarsStream>, Status> {
        let (metadata, _, req) = req.into_parts();
        let tenant = match &self.api.config.tenancy {
            Some(t) => Some(
                t.tenant_of(metadata.as_ref())
                    .map(|name| t.matcher(&name))
                    .map_err(convert::invalid_argument)?,
            ),
            None => None,
        };
        // Parsing a query may want a deep stack: off the runtime's threads, as the HTTP API
        // parses it.
        let (api, query) = (self.api.clone(), req.query.clone());
        tokio::task::spawn_blocking(move || crate::http::promql::check_query(&api, &query))
            .await
            .map_err(|e| Status::internal(format!("checking the query: {e}")))?
            .map_err(|e| convert::invalid_argument(e.message))?;
        // As Thanos's proxy: an endpoint's failure fails the call only when asked to abort.
        let partial = req.partial_response_strategy() != PartialResponseStrategy::Abort;
        let (mut series, warnings) = self
            .exemplars
            .gather(&req.query, req.start, req.end, partial)
            .await
            .map_err(|e| convert::clipped(tonic::Code::Aborted, &e))?;
        if let Some(m) = &tenant {
            series.retain(|s| m.matches(s.series.get(&m.name).unwrap_or("")));
        }
        Ok(Response::new(tokio_stream::iter(frames(&series, warnings))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_engine::head::Exemplar;
    use gauntlet_engine::labels::Labels;

    #[test]
    fn the_series_go_one_a_frame_then_the_warnings() {
        let s = |name: &str| SeriesExemplars {
            series: Labels::from_pairs([("__name__", name)]),
            exemplars: vec![Exemplar {
                labels: Labels::from_pairs([("trace_id", "t")]),
                value: 0.5,
                ts: 1_000,
            }],
        };
        let got: Vec<_> = frames(&[s("a"), s("b")], vec!["w".into()])
            .into_iter()
            .map(|f| f.unwrap().result.unwrap())
            .collect();
        assert_eq!(got.len(), 3);
        for (frame, name) in got.iter().zip(["a", "b"]) {
            let exemplars_response::Result::Data(d) = frame else {
                panic!("{frame:?}")
            };
            let labels = &d.series_labels.as_ref().unwrap().labels;
            assert_eq!(labels[0].value, name);
            assert_eq!(d.exemplars[0].ts, 1_000);
        }
        assert_eq!(got[2], exemplars_response::Result::Warning("w".into()));
    }
}
