//! The StoreAPI a querier serves itself, as Thanos Query does, so queriers can be stacked: every
//! call is proxied to the endpoints that may hold the data and the answers are merged, without
//! deduplication (the querier on top decides that).

use std::sync::Arc;

use gauntlet_engine::labels::{Labels, Matcher};
use gauntlet_proto::thanos::info::info_server::{Info, InfoServer};
use gauntlet_proto::thanos::info::{
    ExemplarsInfo, InfoRequest as InfoReq, InfoResponse as InfoResp, MetricMetadataInfo,
    QueryApiInfo, RulesInfo, StoreInfo, TargetsInfo,
};
use gauntlet_proto::thanos::store_server::{Store, StoreServer};
use gauntlet_proto::thanos::{
    self, AggrChunk, InfoRequest, InfoResponse, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse, PartialResponseStrategy, SeriesRequest,
    SeriesResponse, ZLabelSet, series_response,
};
use tonic::{Request, Response, Status};

use super::endpoints::{Endpoint, EndpointInfo};
use super::fanout::Querier;
use super::series_merge::{Call, MergeError, SeriesMerge};
use super::tenancy::Tenancy;
use crate::grpc::convert;

/// The fan-outs of a querier's APIs other than the StoreAPI, each served again on its gRPC
/// port so a querier stacked above reads through it.
#[derive(Debug, Clone)]
pub struct Fanouts {
    /// `thanos.Rules`.
    pub rules: Arc<super::rules::RuleEndpoints>,
    /// `thanos.Metadata`.
    pub metadata: Arc<super::metadata::MetadataEndpoints>,
    /// `thanos.Targets`.
    pub targets: Arc<super::targets::TargetEndpoints>,
    /// `thanos.Exemplars`.
    pub exemplars: Arc<super::exemplars::ExemplarEndpoints>,
}

/// Serves the proxy StoreAPI, the `thanos.Rules`, `thanos.Metadata`, `thanos.Targets` and
/// `thanos.Exemplars` services over `fanouts`, the `thanos.Query` service over the HTTP API's
/// `api` and the Info service (advertising them all) on `addr` (over TLS with `tls`) until the
/// process ends, its calls counted in `metrics`.
pub async fn serve(
    querier: Arc<Querier>,
    fanouts: Fanouts,
    api: Arc<crate::http::api::ApiState>,
    addr: &str,
    tls: Option<Arc<rustls::ServerConfig>>,
    tenancy: Option<Tenancy>,
    metrics: &Arc<crate::metrics::ServerMetrics>,
) -> anyhow::Result<()> {
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("bad --grpc-address {addr:?}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(sock)
        .await
        .map_err(|e| anyhow::anyhow!("binding --grpc-address {sock}: {e}"))?;
    let guard = crate::memory::GrpcGuardLayer::new(querier.budget());
    let rules = super::rules_proxy::RulesProxy::server(fanouts.rules, querier.budget().clone());
    let metadata = super::metadata_proxy::MetadataProxy::server(fanouts.metadata)
        .max_encoding_message_size(usize::MAX);
    let targets = super::targets_proxy::TargetsProxy::server(fanouts.targets)
        .max_encoding_message_size(usize::MAX);
    let exemplars = super::exemplars_proxy::ExemplarsProxy::server(fanouts.exemplars, api.clone())
        .max_encoding_message_size(usize::MAX);
    let proxy = Proxy { querier, tenancy };
    tracing::info!(address = %sock, tls = tls.is_some(), "StoreAPI listening");
    tonic::transport::Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer::new(metrics))
        .layer(guard)
        .layer(crate::grpc::RequestLimitsLayer)
        .add_service(
            StoreServer::new(proxy.clone())
                .max_decoding_message_size(crate::grpc::MAX_STORE_REQUEST_BYTES)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(rules)
        .add_service(metadata)
        .add_service(targets)
        .add_service(exemplars)
        .add_service(super::query_api::QueryApi::server(api))
        .add_service(InfoServer::new(proxy))
        .serve_with_incoming_shutdown(
            crate::tls::Incoming::new(listener, tls)?,
            crate::http::shutdown_signal(),
        )
        .await?;
    Ok(())
}

#[derive(Debug, Clone)]
struct Proxy {
    querier: Arc<Querier>,
    /// The tenancy every call is held to (`--query.enforce-tenancy`).
    tenancy: Option<Tenancy>,
}

fn to_proto_labels(l: &Labels) -> Vec<thanos::Label> {
    l.iter()
        .map(|l| thanos::Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect()
}

impl Proxy {
    /// Adds the tenant's matcher (the tenant from the call's metadata, or the default) to a
    /// call's matchers when tenancy is enforced.
    fn scope(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        matchers: &mut Vec<thanos::LabelMatcher>,
    ) -> Result<(), Status> {
        super::tenancy::scope_call(self.tenancy.as_ref(), metadata.as_ref(), matchers)
    }

    fn targets(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Vec<(Arc<Endpoint>, EndpointInfo)> {
        self.querier.endpoints().select(mint, maxt, matchers)
    }

    fn info_summary(&self) -> (Vec<Labels>, i64, i64) {
        let mut sets: Vec<Labels> = Vec::new();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for e in self.querier.endpoints().all() {
            if let Some(i) = e.info() {
                sets.extend(i.label_sets);
                min = min.min(i.min_time);
                max = max.max(i.max_time);
            }
        }
        sets.sort();
        sets.dedup();
        (sets, min, max)
    }
}

type SeriesStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for Proxy {
    async fn info(&self, _req: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let (sets, min, max) = self.info_summary();
        Ok(Response::new(InfoResponse {
            labels: Vec::new(),
            min_time: min,
            max_time: max,
            store_type: thanos::StoreType::Query as i32,
            label_sets: sets
                .iter()
                .map(|s| thanos::LabelSet {
                    labels: to_proto_labels(s),
                })
                .collect(),
        }))
    }

    type SeriesStream = SeriesStream;

    async fn series(
        &self,
        req: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let (metadata, _, mut req) = req.into_parts();
        self.scope(&metadata, &mut req.matchers)?;
        if req.matchers.is_empty() {
            return Err(Status::invalid_argument(
                "no matchers specified (excluded external labels)",
            ));
        }
        let matchers = convert::matchers(req.matchers.clone(), self.querier.budget()).await?;
        let abort = req.partial_response_disabled
            || req.partial_response_strategy == PartialResponseStrategy::Abort as i32;
        let shard = convert::shard_info(req.shard_info.clone());
        let calls = self
            .targets(req.min_time, req.max_time, &matchers)
            .into_iter()
            .map(|(ep, info)| {
                let mut r = req.clone();
                if !info.supports_without_replica_labels {
                    r.without_replica_labels.clear();
                }
                Call {
                    ep,
                    req: r,
                    resort: !info.supports_without_replica_labels,
                    shard: shard.clone().filter(|_| !info.supports_sharding),
                }
            })
            .collect();
        let merge = SeriesMerge::start(
            &tokio::runtime::Handle::current(),
            calls,
            req.without_replica_labels.clone(),
            self.querier.endpoint_timeout(),
            !abort,
            self.querier.budget(),
        );
        let (tx, rx) = tokio::sync::mpsc::channel(SENT_AHEAD);
        tokio::spawn(forward(merge, abort, req.response_batch_size, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn label_names(
        &self,
        req: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let (metadata, _, mut req) = req.into_parts();
        self.scope(&metadata, &mut req.matchers)?;
        let matchers = convert::matchers(req.matchers.clone(), self.querier.budget()).await?;
        let abort = req.partial_response_disabled
            || req.partial_response_strategy == PartialResponseStrategy::Abort as i32;
        let timeout = self.querier.endpoint_timeout();
        let calls = self
            .targets(req.start, req.end, &matchers)
            .into_iter()
            .map(|(ep, _)| {
                let r = req.clone();
                async move {
                    let res = tokio::time::timeout(timeout, ep.store().label_names(r)).await;
                    (
                        ep.addr.clone(),
                        res.unwrap_or_else(|_| Err(silent(timeout))),
                    )
                }
            });
        let mut names = Vec::new();
        let mut warnings = Vec::new();
        for (addr, res) in futures::future::join_all(calls).await {
            match res {
                Ok(r) => {
                    let r = r.into_inner();
                    names.extend(r.names);
                    warnings.extend(r.warnings);
                }
                Err(s) if abort => {
                    return Err(convert::clipped(
                        tonic::Code::Aborted,
                        &format!("{addr}: {}", s.message()),
                    ));
                }
                Err(s) => warnings.push(format!("{addr}: {}", s.message())),
            }
        }
        names.retain(|n| !req.without_replica_labels.contains(n));
        names.sort();
        names.dedup();
        Ok(Response::new(LabelNamesResponse {
            names,
            warnings,
            hints: None,
        }))
    }

    async fn label_values(
        &self,
        req: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let (metadata, _, mut req) = req.into_parts();
        self.scope(&metadata, &mut req.matchers)?;
        let matchers = convert::matchers(req.matchers.clone(), self.querier.budget()).await?;
        let abort = req.partial_response_disabled
            || req.partial_response_strategy == PartialResponseStrategy::Abort as i32;
        let timeout = self.querier.endpoint_timeout();
        let calls = self
            .targets(req.start, req.end, &matchers)
            .into_iter()
            .map(|(ep, _)| {
                let r = req.clone();
                async move {
                    let res = tokio::time::timeout(timeout, ep.store().label_values(r)).await;
                    (
                        ep.addr.clone(),
                        res.unwrap_or_else(|_| Err(silent(timeout))),
                    )
                }
            });
        let mut values = Vec::new();
        let mut warnings = Vec::new();
        for (addr, res) in futures::future::join_all(calls).await {
            match res {
                Ok(r) => {
                    let r = r.into_inner();
                    values.extend(r.values);
                    warnings.extend(r.warnings);
                }
                Err(s) if abort => {
                    return Err(convert::clipped(
                        tonic::Code::Aborted,
                        &format!("{addr}: {}", s.message()),
                    ));
                }
                Err(s) => warnings.push(format!("{addr}: {}", s.message())),
            }
        }
        values.sort();
        values.dedup();
        Ok(Response::new(LabelValuesResponse {
            values,
            warnings,
            hints: None,
        }))
    }
}

/// Answer messages the proxy may have made ahead of what its client has read.
const SENT_AHEAD: usize = 4;

/// Sends the merged series to the client as they are merged, `batch` to a message (one when
/// below 2), with each series' chunks from every endpoint in time order, exact duplicates
/// (the same block served twice) sent once. Endpoints' warnings, and failures with partial
/// responses on, go as warnings; with `abort` either ends the answer with `Aborted`. Stops
/// when the client goes, which drops the merge and so the endpoints' calls.
async fn forward(
    mut merge: SeriesMerge,
    abort: bool,
    batch: i64,
    tx: tokio::sync::mpsc::Sender<Result<SeriesResponse, Status>>,
) {
    let per_message = usize::try_from(batch).unwrap_or(1).max(1);
    let mut series: Vec<thanos::Series> = Vec::with_capacity(per_message);
    loop {
        let next = merge.next_group().await;
        let mut notes: Vec<String> = merge.take_warnings();
        notes.extend(
            merge
                .take_failures()
                .into_iter()
                .map(|f| format!("{}: {}", f.addr, f.message)),
        );
        for w in notes {
            let frame = if abort {
                Err(convert::clipped(tonic::Code::Aborted, &w))
            } else {
                Ok(warning(w))
            };
            if tx.send(frame).await.is_err() || abort {
                return;
            }
        }
        let last = match next {
            Ok(Some((labels, members))) => {
                let mut chunks: Vec<AggrChunk> = members.into_iter().flat_map(|m| m.1).collect();
                chunks.sort_by_key(|c| (c.min_time, c.max_time));
                chunks.dedup();
                series.push(thanos::Series {
                    labels: to_proto_labels(&labels),
                    chunks,
                });
                if series.len() < per_message {
                    continue;
                }
                false
            }
            Ok(None) => true,
            Err(MergeError::Endpoint(f)) => {
                let status =
                    convert::clipped(tonic::Code::Aborted, &format!("{}: {}", f.addr, f.message));
                let _ = tx.send(Err(status)).await;
                return;
            }
            Err(MergeError::OverBudget(why)) => {
                let _ = tx.send(Err(crate::memory::refusal(&why))).await;
                return;
            }
        };
        for frame in convert::series_responses(std::mem::take(&mut series), batch) {
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
        }
        if last {
            return;
        }
    }
}

/// The status of an endpoint that gave no answer within `timeout`.
fn silent(timeout: std::time::Duration) -> Status {
    Status::deadline_exceeded(format!("no answer within {timeout:?}"))
}

fn warning(w: String) -> SeriesResponse {
    SeriesResponse {
        result: Some(series_response::Result::Warning(w)),
    }
}

#[tonic::async_trait]
impl Info for Proxy {
    async fn info(&self, _req: Request<InfoReq>) -> Result<Response<InfoResp>, Status> {
        let (sets, min, max) = self.info_summary();
        Ok(Response::new(InfoResp {
            label_sets: sets
                .iter()
                .map(|s| ZLabelSet {
                    labels: to_proto_labels(s),
                })
                .collect(),
            component_type: "query".to_string(),
            store: Some(StoreInfo {
                min_time: min,
                max_time: max,
                // Endpoints that do not shard have their series filtered here.
                supports_sharding: true,
                supports_without_replica_labels: true,
                tsdb_infos: Vec::new(),
                supports_projections: false,
            }),
            // As Thanos's querier: its rules fan-out is always there, whether or not an
            // endpoint has rules yet.
            rules: Some(RulesInfo {}),
            // Likewise its metadata, targets and exemplars fan-outs. The exemplars' time range
            // is left at zero, as Thanos's querier leaves it: queriers above do not read it.
            metric_metadata: Some(MetricMetadataInfo {}),
            targets: Some(TargetsInfo {}),
            exemplars: Some(ExemplarsInfo::default()),
            // The Query API: a ruler's --grpc-query-endpoint uses only endpoints saying so.
            query: Some(QueryApiInfo {}),
            ..InfoResp::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gauntlet_proto::thanos::exemplars_server::{Exemplars, ExemplarsServer};
    use gauntlet_proto::thanos::metadata_server::{Metadata, MetadataServer};
    use gauntlet_proto::thanos::targets_server::{Targets, TargetsServer};
    use gauntlet_proto::thanos::{
        ExemplarsRequest, ExemplarsResponse, MetricMetadataRequest, MetricMetadataResponse,
        TargetsRequest, TargetsResponse, exemplars_response, metric_metadata_response,
        targets_response,
    };
    use tokio::runtime::Handle;
    use tokio_stream::StreamExt;

    use super::*;
    use crate::query::endpoints::EndpointSet;

    /// An endpoint that advertises metadata, targets and exemplars and fails every call.
    #[derive(Debug, Clone, Copy)]
    struct Broken;

    type Nothing<T> = tokio_stream::Empty<Result<T, Status>>;

    #[tonic::async_trait]
    impl Info for Broken {
        async fn info(&self, _req: Request<InfoReq>) -> Result<Response<InfoResp>, Status> {
            Ok(Response::new(InfoResp {
                component_type: "sidecar".into(),
                store: Some(StoreInfo::default()),
                metric_metadata: Some(MetricMetadataInfo {}),
                targets: Some(TargetsInfo {}),
                exemplars: Some(ExemplarsInfo::default()),
                ..InfoResp::default()
            }))
        }
    }

    #[tonic::async_trait]
    impl Metadata for Broken {
        type MetricMetadataStream = Nothing<MetricMetadataResponse>;

        async fn metric_metadata(
            &self,
            _req: Request<MetricMetadataRequest>,
        ) -> Result<Response<Self::MetricMetadataStream>, Status> {
            Err(Status::unavailable("prometheus down"))
        }
    }

    #[tonic::async_trait]
    impl Targets for Broken {
        type TargetsStream = Nothing<TargetsResponse>;

        async fn targets(
            &self,
            _req: Request<TargetsRequest>,
        ) -> Result<Response<Self::TargetsStream>, Status> {
            Err(Status::unavailable("prometheus down"))
        }
    }

    #[tonic::async_trait]
    impl Exemplars for Broken {
        type ExemplarsStream = Nothing<ExemplarsResponse>;

        async fn exemplars(
            &self,
            _req: Request<ExemplarsRequest>,
        ) -> Result<Response<Self::ExemplarsStream>, Status> {
            Err(Status::unavailable("prometheus down"))
        }
    }

    /// The one warning frame a WARN call must give, as text.
    fn only_warning<T: std::fmt::Debug>(
        frames: Vec<Result<T, Status>>,
        warning: impl Fn(&T) -> Option<String>,
    ) -> String {
        assert_eq!(frames.len(), 1, "{frames:?}");
        let frame = frames[0].as_ref().unwrap();
        warning(frame).unwrap_or_else(|| panic!("a warning, not {frame:?}"))
    }

    /// The querier's own metadata, targets and exemplars services over an endpoint that fails:
    /// a WARN call (whatever the querier's flags say) answers a warning naming the endpoint, an
    /// ABORT call fails with `Aborted`; its Info advertises all three.
    #[tokio::test]
    async fn a_failing_endpoint_warns_or_aborts_as_the_call_asks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(InfoServer::new(Broken))
                .add_service(MetadataServer::new(Broken))
                .add_service(TargetsServer::new(Broken))
                .add_service(ExemplarsServer::new(Broken))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let endpoints = Arc::new(EndpointSet::new(
            vec![addr.clone()],
            Vec::new(),
            Duration::from_secs(5),
        ));
        endpoints.refresh().await;
        let timeout = Duration::from_secs(5);
        // Partial responses off in the flags: the requests' strategies decide.
        let metadata = super::super::metadata_proxy::MetadataProxy::new(Arc::new(
            super::super::metadata::MetadataEndpoints::new(
                endpoints.clone(),
                Handle::current(),
                false,
                timeout,
            ),
        ));
        let targets = super::super::targets_proxy::TargetsProxy::new(Arc::new(
            super::super::targets::TargetEndpoints::new(
                endpoints.clone(),
                Handle::current(),
                Vec::new(),
                false,
                timeout,
            ),
        ));
        let querier = Arc::new(Querier::new(
            endpoints.clone(),
            Handle::current(),
            Vec::new(),
            timeout,
        ));
        let api = Arc::new(crate::http::api::ApiState {
            source: Arc::new(querier.clone()),
            config: crate::http::api::ApiConfig::default(),
        });
        let exemplars = super::super::exemplars_proxy::ExemplarsProxy::new(
            Arc::new(super::super::exemplars::ExemplarEndpoints::new(
                endpoints.clone(),
                Handle::current(),
                Vec::new(),
                false,
                timeout,
            )),
            api,
        );
        let (warn, abort) = (
            PartialResponseStrategy::Warn as i32,
            PartialResponseStrategy::Abort as i32,
        );

        let call = |strategy| {
            metadata.metric_metadata(Request::new(MetricMetadataRequest {
                metric: String::new(),
                limit: -1,
                partial_response_strategy: strategy,
            }))
        };
        let frames: Vec<_> = call(warn).await.unwrap().into_inner().collect().await;
        // The (empty) metadata frame goes first, then the warning.
        assert_eq!(frames.len(), 2, "{frames:?}");
        let w = only_warning(frames.into_iter().skip(1).collect(), |f| match &f.result {
            Some(metric_metadata_response::Result::Warning(w)) => Some(w.clone()),
            _ => None,
        });
        assert!(w.contains(&addr) && w.contains("prometheus down"), "{w}");
        let err = call(abort).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");

        let call = |strategy| {
            targets.targets(Request::new(TargetsRequest {
                state: 0,
                partial_response_strategy: strategy,
            }))
        };
        let frames: Vec<_> = call(warn).await.unwrap().into_inner().collect().await;
        // The (empty) targets frame goes first, then the warning.
        assert_eq!(frames.len(), 2, "{frames:?}");
        let w = only_warning(frames.into_iter().skip(1).collect(), |f| match &f.result {
            Some(targets_response::Result::Warning(w)) => Some(w.clone()),
            _ => None,
        });
        assert!(w.contains("prometheus down"), "{w}");
        let err = call(abort).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");

        let call = |strategy, query: &str| {
            exemplars.exemplars(Request::new(ExemplarsRequest {
                query: query.into(),
                start: 0,
                end: 1_000,
                partial_response_strategy: strategy,
            }))
        };
        let frames: Vec<_> = call(warn, "up").await.unwrap().into_inner().collect().await;
        let w = only_warning(frames, |f| match &f.result {
            Some(exemplars_response::Result::Warning(w)) => Some(w.clone()),
            _ => None,
        });
        assert!(w.contains("prometheus down"), "{w}");
        let err = call(abort, "up").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
        let err = call(warn, "up{").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

        let proxy = Proxy {
            querier,
            tenancy: None,
        };
        let info = Info::info(&proxy, Request::new(InfoReq::default()))
            .await
            .unwrap()
            .into_inner();
        assert!(
            info.metric_metadata.is_some() && info.targets.is_some(),
            "{info:?}"
        );
        assert_eq!(info.exemplars, Some(ExemplarsInfo::default()));
    }
}
