//! The receiver's Exemplars service (`thanos.Exemplars`): the exemplars every tenant's head
//! keeps (`--tsdb.max-exemplars`), each series with its tenant's external labels, as Thanos
//! Receive serves them. A selector that names an external label is held to the tenants whose
//! label matches and stripped of it, as the StoreAPI's series selection is. With
//! `--query.enforce-tenancy` a call reads only the tenant its metadata names.

use std::sync::Arc;

use gauntlet_engine::head::SeriesExemplars;
use gauntlet_engine::labels::{Labels, Matcher, external_matchers};
use gauntlet_proto::thanos;
use tonic::{Request, Response, Status};

use super::tenants::Tenants;
use crate::grpc::convert;
use crate::query::tenancy::Tenancy;

/// The Exemplars service over the tenants.
#[derive(Debug, Clone)]
pub struct ReceiveExemplars {
    tenants: Arc<Tenants>,
    tenancy: Option<Tenancy>,
}

impl ReceiveExemplars {
    /// Serves `tenants`' exemplars, every call held to its tenant when `tenancy` is given.
    pub fn new(tenants: Arc<Tenants>, tenancy: Option<Tenancy>) -> Self {
        ReceiveExemplars { tenants, tenancy }
    }
}

/// The exemplars from `start` to `end` (ms) of the series `selectors` pick (a series is
/// picked by any one selector), every tenant's, with its external labels, sorted by series.
pub fn select(
    tenants: &Tenants,
    selectors: &[Vec<Matcher>],
    start: i64,
    end: i64,
) -> Vec<SeriesExemplars> {
    let mut out = Vec::new();
    for t in tenants.all() {
        let sets: Vec<Vec<Matcher>> = selectors
            .iter()
            .filter_map(|ms| external_matchers(&t.external, ms))
            .collect();
        if sets.is_empty() {
            continue;
        }
        for mut s in t.head.select_exemplars(start, end, &sets) {
            s.series = s.series.with_external(&t.external);
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.series.cmp(&b.series));
    out
}

/// The exemplars of the process's own tenants, for `gauntlet all`'s
/// `/api/v1/query_exemplars`.
#[derive(Debug)]
pub struct LocalExemplars {
    tenants: Arc<Tenants>,
}

impl LocalExemplars {
    /// Reads `tenants`' heads.
    pub fn new(tenants: Arc<Tenants>) -> Self {
        LocalExemplars { tenants }
    }
}

impl crate::query::exemplars::ExemplarSource for LocalExemplars {
    fn exemplars(
        &self,
        query: &str,
        start: i64,
        end: i64,
    ) -> Result<(Vec<SeriesExemplars>, Vec<String>), String> {
        let selectors = gauntlet_promql::query_selectors(query).map_err(|e| e.to_string())?;
        Ok((select(&self.tenants, &selectors, start, end), Vec::new()))
    }
}

/// One series' exemplars as the wire's message.
pub fn to_proto(s: &SeriesExemplars) -> thanos::ExemplarData {
    thanos::ExemplarData {
        series_labels: Some(zset(&s.series)),
        exemplars: s
            .exemplars
            .iter()
            .map(|e| thanos::Exemplar {
                labels: Some(zset(&e.labels)),
                value: e.value,
                ts: e.ts,
            })
            .collect(),
    }
}

fn zset(l: &Labels) -> thanos::ZLabelSet {
    thanos::ZLabelSet {
        labels: convert::labels(l),
    }
}

type ExemplarStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<thanos::ExemplarsResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl thanos::exemplars_server::Exemplars for ReceiveExemplars {
    type ExemplarsStream = ExemplarStream;

    async fn exemplars(
        &self,
        req: Request<thanos::ExemplarsRequest>,
    ) -> Result<Response<Self::ExemplarsStream>, Status> {
        let (metadata, _, r) = req.into_parts();
        let mut selectors = gauntlet_promql::query_selectors(&r.query)
            .map_err(|e| Status::invalid_argument(format!("query: {e}")))?;
        if let Some(t) = &self.tenancy {
            let tenant = t
                .tenant_of(metadata.as_ref())
                .map_err(Status::invalid_argument)?;
            for ms in &mut selectors {
                ms.push(t.matcher(&tenant));
            }
        }
        let tenants = self.tenants.clone();
        let found =
            tokio::task::spawn_blocking(move || select(&tenants, &selectors, r.start, r.end))
                .await
                .map_err(|e| Status::internal(format!("exemplars: {e}")))?;
        let frames: Vec<Result<thanos::ExemplarsResponse, Status>> = found
            .iter()
            .map(|s| {
                Ok(thanos::ExemplarsResponse {
                    result: Some(thanos::exemplars_response::Result::Data(to_proto(s))),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(frames))))
    }
}
