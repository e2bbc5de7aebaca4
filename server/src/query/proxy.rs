//! The StoreAPI a querier serves itself, as Thanos Query does, so queriers can be stacked: every
//! call is proxied to the endpoints that may hold the data and the answers are merged, without
//! deduplication (the querier on top decides that).

use std::sync::Arc;

use gauntlet_engine::labels::{Labels, Matcher};
use gauntlet_engine::query::without_labels;
use gauntlet_proto::thanos::info::info_server::{Info, InfoServer};
use gauntlet_proto::thanos::info::{InfoRequest as InfoReq, InfoResponse as InfoResp, StoreInfo};
use gauntlet_proto::thanos::store_server::{Store, StoreServer};
use gauntlet_proto::thanos::{
    self, AggrChunk, InfoRequest, InfoResponse, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse, PartialResponseStrategy, SeriesRequest,
    SeriesResponse, ZLabelSet, series_response,
};
use tonic::{Request, Response, Status};

use super::endpoints::{Endpoint, EndpointInfo};
use super::fanout::{Querier, SeriesFromError, series_from};
use super::tenancy::Tenancy;
use crate::grpc::convert;

/// Serves the proxy StoreAPI and Info service on `addr` (over TLS with `tls`) until the
/// process ends.
pub async fn serve(
    querier: Arc<Querier>,
    addr: &str,
    tls: Option<Arc<rustls::ServerConfig>>,
    tenancy: Option<Tenancy>,
) -> anyhow::Result<()> {
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("bad --grpc-address {addr:?}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(sock)
        .await
        .map_err(|e| anyhow::anyhow!("binding --grpc-address {sock}: {e}"))?;
    let proxy = Proxy { querier, tenancy };
    tracing::info!(address = %sock, tls = tls.is_some(), "StoreAPI listening");
    tonic::transport::Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer)
        .layer(crate::memory::GrpcGuardLayer)
        .layer(crate::grpc::RequestLimitsLayer)
        .add_service(
            StoreServer::new(proxy.clone())
                .max_decoding_message_size(crate::grpc::MAX_STORE_REQUEST_BYTES)
                .max_encoding_message_size(usize::MAX),
        )
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
        let matchers = convert::matchers(req.matchers.clone()).await?;
        let abort = req.partial_response_disabled
            || req.partial_response_strategy == PartialResponseStrategy::Abort as i32;
        let strip = req.without_replica_labels.clone();
        let calls = self
            .targets(req.min_time, req.max_time, &matchers)
            .into_iter()
            .map(|(ep, info)| {
                let mut r = req.clone();
                if !info.supports_without_replica_labels {
                    r.without_replica_labels.clear();
                }
                async move { (ep.addr.clone(), series_from(&ep, r).await) }
            });
        let mut merged: Vec<(Labels, Vec<AggrChunk>)> = Vec::new();
        let mut frames: Vec<Result<SeriesResponse, Status>> = Vec::new();
        // What the endpoints' answers hold, until the merged answer is made.
        let mut reserved = gauntlet_engine::budget::global().empty("Series");
        for (addr, res) in futures::future::join_all(calls).await {
            let res = match res {
                Err(SeriesFromError::OverBudget(why)) => return Err(crate::memory::refusal(&why)),
                Err(SeriesFromError::Endpoint(status)) => Err(status),
                Ok(answer) => Ok(answer),
            };
            match res {
                Ok((series, warnings, held)) => {
                    reserved.absorb(held);
                    for w in warnings {
                        if abort {
                            return Err(convert::clipped(tonic::Code::Aborted, &w));
                        }
                        frames.push(Ok(warning(w)));
                    }
                    merged.extend(
                        series
                            .into_iter()
                            .map(|(l, c)| (without_labels(&l, &strip), c)),
                    );
                }
                Err(status) if abort => {
                    return Err(convert::clipped(
                        tonic::Code::Aborted,
                        &format!("{addr}: {}", status.message()),
                    ));
                }
                Err(status) => frames.push(Ok(warning(format!("{addr}: {}", status.message())))),
            }
        }
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Labels, Vec<AggrChunk>)> = Vec::with_capacity(merged.len());
        for (l, chunks) in merged {
            match out.last_mut() {
                Some((last, c)) if *last == l => c.extend(chunks),
                _ => out.push((l, chunks)),
            }
        }
        let series = out
            .into_iter()
            .map(|(l, mut chunks)| {
                chunks.sort_by_key(|c| (c.min_time, c.max_time));
                chunks.dedup();
                thanos::Series {
                    labels: to_proto_labels(&l),
                    chunks,
                }
            })
            .collect();
        frames.extend(
            crate::grpc::convert::series_responses(series, req.response_batch_size)
                .into_iter()
                .map(Ok),
        );
        Ok(Response::new(Box::pin(tokio_stream::iter(frames))))
    }

    async fn label_names(
        &self,
        req: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let (metadata, _, mut req) = req.into_parts();
        self.scope(&metadata, &mut req.matchers)?;
        let matchers = convert::matchers(req.matchers.clone()).await?;
        let abort = req.partial_response_disabled
            || req.partial_response_strategy == PartialResponseStrategy::Abort as i32;
        let calls = self
            .targets(req.start, req.end, &matchers)
            .into_iter()
            .map(|(ep, _)| {
                let r = req.clone();
                async move { (ep.addr.clone(), ep.store().label_names(r).await) }
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
        let matchers = convert::matchers(req.matchers.clone()).await?;
        let abort = req.partial_response_disabled
            || req.partial_response_strategy == PartialResponseStrategy::Abort as i32;
        let calls = self
            .targets(req.start, req.end, &matchers)
            .into_iter()
            .map(|(ep, _)| {
                let r = req.clone();
                async move { (ep.addr.clone(), ep.store().label_values(r).await) }
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
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: Vec::new(),
                supports_projections: false,
            }),
            ..InfoResp::default()
        }))
    }
}
