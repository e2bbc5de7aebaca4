//! The Thanos gRPC Query API (`thanos.Query`) on the querier's gRPC port: PromQL evaluated for
//! a remote client — a Thanos or Gauntlet ruler's `--grpc-query-endpoint` — exactly as
//! `/api/v1/query` and `/api/v1/query_range` evaluate it (same engine, limits, admission gate
//! and active query log), the answer streamed as Thanos's querier streams it: warnings first,
//! then the series (one a message, or in batches of `response_batch_size`), then the
//! statistics.
//!
//! A failed evaluation with `enablePartialResponse` is a warning and an empty answer, as in
//! Thanos; without it, the call fails: a bad query with `InvalidArgument`, a full admission
//! queue or an unreachable store with `Unavailable`, a timeout with `DeadlineExceeded`,
//! anything else with `Aborted`.

use std::sync::Arc;

use gauntlet_engine::ErrorClass;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::remote_write::{HistogramSample, HistogramValue};
use gauntlet_promql::Value;
use gauntlet_proto::prometheus::{Label, Sample, TimeSeries};
use gauntlet_proto::thanos::query_server::{Query, QueryServer};
use gauntlet_proto::thanos::{
    QueryRangeRequest, QueryRangeResponse, QueryRequest, QueryResponse, QueryStats, ShardInfo,
    TimeSeriesBatch, query_range_response, query_response,
};
use tonic::{Request, Response, Status};

use crate::http::api::{ApiState, ShardParam, run_query};
use crate::http::params::{ApiError, Form};
use crate::http::promql::Evaluated;

/// The Query API over the querier's HTTP API state.
#[derive(Debug, Clone)]
pub struct QueryApi {
    state: Arc<ApiState>,
}

impl QueryApi {
    /// The service, ready to add to a gRPC server.
    pub fn server(state: Arc<ApiState>) -> QueryServer<QueryApi> {
        QueryServer::new(QueryApi { state })
    }

    /// Evaluates `form` with `eval` as the HTTP API would, the tenant taken from the call's
    /// metadata when tenancy is enforced.
    async fn evaluate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        mut form: Form,
        eval: fn(&ApiState, &Form) -> Result<Evaluated, ApiError>,
    ) -> Result<Evaluated, ApiError> {
        if let Some(t) = &self.state.config.tenancy {
            let tenant = metadata
                .get(t.header.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            form.set_tenant_header(tenant);
        }
        run_query(self.state.clone(), form, eval).await
    }
}

/// The messages of one answer, in order, as one arm of the response's oneof each.
#[derive(Debug, PartialEq)]
enum Part {
    Warning(String),
    Series(TimeSeries),
    Batch(Vec<TimeSeries>),
    Stats(QueryStats),
}

/// The form the HTTP API would get for the same query: Thanos's read parameters as the
/// request sets them, and the server's own defaults where it leaves them at zero.
fn common_pairs(
    query: &str,
    timeout_s: i64,
    max_resolution_s: i64,
    replica_labels: &[String],
    dedup: bool,
    partial: bool,
    lookback_s: i64,
) -> Vec<(String, String)> {
    let mut pairs = vec![
        ("query".to_string(), query.to_string()),
        ("dedup".into(), dedup.to_string()),
        ("partial_response".into(), partial.to_string()),
    ];
    if timeout_s > 0 {
        pairs.push(("timeout".into(), format!("{timeout_s}s")));
    }
    if max_resolution_s > 0 {
        pairs.push((
            "max_source_resolution".into(),
            format!("{max_resolution_s}s"),
        ));
    }
    if lookback_s > 0 {
        pairs.push(("lookback_delta".into(), format!("{lookback_s}s")));
    }
    pairs.extend(
        replica_labels
            .iter()
            .map(|l| ("replicaLabels[]".to_string(), l.clone())),
    );
    pairs
}

/// A request's shard as the `shard_info` parameter the HTTP API reads (Thanos's querier hands
/// the shard to its stores the same way); none without a total.
fn shard_pair(shard: Option<&ShardInfo>) -> Option<(String, String)> {
    let s = shard.filter(|s| s.total_shards > 0)?;
    let param = ShardParam {
        shard_index: s.shard_index,
        total_shards: s.total_shards,
        by: s.by,
        labels: s.labels.clone(),
    };
    let json = serde_json::to_string(&param).ok()?;
    Some(("shard_info".into(), json))
}

/// The form of an instant query request.
fn instant_form(r: &QueryRequest) -> Form {
    let mut pairs = common_pairs(
        &r.query,
        r.timeout_seconds,
        r.max_resolution_seconds,
        &r.replica_labels,
        r.enable_dedup,
        r.enable_partial_response,
        r.lookback_delta_seconds,
    );
    pairs.extend(shard_pair(r.shard_info.as_ref()));
    // Zero is "now", as in Thanos.
    if r.time_seconds != 0 {
        pairs.push(("time".into(), r.time_seconds.to_string()));
    }
    Form::from_pairs(pairs)
}

/// The form of a range query request.
fn range_form(r: &QueryRangeRequest) -> Form {
    let mut pairs = common_pairs(
        &r.query,
        r.timeout_seconds,
        r.max_resolution_seconds,
        &r.replica_labels,
        r.enable_dedup,
        r.enable_partial_response,
        r.lookback_delta_seconds,
    );
    pairs.extend(shard_pair(r.shard_info.as_ref()));
    pairs.push(("start".into(), r.start_time_seconds.to_string()));
    pairs.push(("end".into(), r.end_time_seconds.to_string()));
    pairs.push(("step".into(), r.interval_seconds.to_string()));
    Form::from_pairs(pairs)
}

/// The answer to a query as its messages, or the status the call fails with.
fn answer(
    result: Result<Evaluated, ApiError>,
    partial: bool,
    batch_size: i64,
) -> Result<Vec<Part>, Status> {
    let (res, mut warnings) = match result {
        Ok(r) => r,
        Err(e) if e.class == ErrorClass::BadData => {
            return Err(Status::invalid_argument(e.message));
        }
        Err(e) if partial => return Ok(vec![Part::Warning(e.message)]),
        Err(e) => {
            return Err(match e.class {
                ErrorClass::Unavailable => Status::unavailable(e.message),
                ErrorClass::Timeout => Status::deadline_exceeded(e.message),
                ErrorClass::Canceled => Status::cancelled(e.message),
                _ => Status::aborted(e.message),
            });
        }
    };
    warnings.extend(res.warnings);
    let mut parts: Vec<Part> = warnings.into_iter().map(Part::Warning).collect();
    let series = result_series(res.value);
    if batch_size <= 1 {
        parts.extend(series.into_iter().map(Part::Series));
    } else {
        let size = usize::try_from(batch_size).unwrap_or(usize::MAX);
        let mut rest = series.into_iter().peekable();
        while rest.peek().is_some() {
            parts.push(Part::Batch(rest.by_ref().take(size).collect()));
        }
    }
    parts.push(Part::Stats(QueryStats {
        samples_total: i64::try_from(res.stats.total_samples).unwrap_or(i64::MAX),
        peak_samples: i64::try_from(res.peak_samples).unwrap_or(i64::MAX),
    }));
    Ok(parts)
}

/// A result's series as Thanos's querier sends them: a vector's samples one series each, a
/// matrix's series with all their points, a scalar as one series without labels; a string
/// gives none.
fn result_series(value: Value) -> Vec<TimeSeries> {
    match value {
        Value::Scalar { t_ms, v } => vec![TimeSeries {
            samples: vec![Sample {
                value: v,
                timestamp: t_ms,
            }],
            ..Default::default()
        }],
        Value::String { .. } => Vec::new(),
        Value::Vector(samples) => samples
            .into_iter()
            .map(|s| {
                let mut ts = TimeSeries {
                    labels: proto_labels(&s.labels),
                    ..Default::default()
                };
                match s.h {
                    Some(h) => ts.histograms.push(proto_histogram(s.t_ms, *h)),
                    None => ts.samples.push(Sample {
                        value: s.v,
                        timestamp: s.t_ms,
                    }),
                }
                ts
            })
            .collect(),
        Value::Matrix(series) => series
            .into_iter()
            .map(|s| TimeSeries {
                labels: proto_labels(&s.labels),
                samples: s
                    .samples
                    .ts
                    .iter()
                    .zip(&s.samples.val)
                    .map(|(&timestamp, &value)| Sample { value, timestamp })
                    .collect(),
                histograms: s
                    .histograms
                    .ts
                    .into_iter()
                    .zip(s.histograms.h)
                    .map(|(t, h)| proto_histogram(t, h))
                    .collect(),
                ..Default::default()
            })
            .collect(),
    }
}

fn proto_labels(l: &Labels) -> Vec<Label> {
    l.iter()
        .map(|l| Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect()
}

fn proto_histogram(
    t_ms: i64,
    h: gauntlet_engine::histogram::FloatHistogram,
) -> gauntlet_proto::prometheus::Histogram {
    crate::receive::histogram::to_proto(&HistogramSample {
        t: t_ms,
        h: HistogramValue::Float(h),
    })
}

type Stream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Query for QueryApi {
    type QueryStream = Stream<QueryResponse>;

    async fn query(
        &self,
        req: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let (metadata, _, req) = req.into_parts();
        let result = self
            .evaluate(
                &metadata,
                instant_form(&req),
                crate::http::promql::instant_result,
            )
            .await;
        let parts = answer(result, req.enable_partial_response, req.response_batch_size)?;
        let msgs = parts.into_iter().map(|p| {
            use query_response::Result as R;
            let result = Some(match p {
                Part::Warning(w) => R::Warnings(w),
                Part::Series(s) => R::Timeseries(s),
                Part::Batch(series) => R::TimeseriesBatch(TimeSeriesBatch { series }),
                Part::Stats(s) => R::Stats(s),
            });
            Ok(QueryResponse { result })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }

    type QueryRangeStream = Stream<QueryRangeResponse>;

    async fn query_range(
        &self,
        req: Request<QueryRangeRequest>,
    ) -> Result<Response<Self::QueryRangeStream>, Status> {
        let (metadata, _, req) = req.into_parts();
        let result = self
            .evaluate(
                &metadata,
                range_form(&req),
                crate::http::promql::range_result,
            )
            .await;
        // Thanos's querier fails a range query that fails, partial response or not.
        let parts = answer(result, false, req.response_batch_size)?;
        let msgs = parts.into_iter().map(|p| {
            use query_range_response::Result as R;
            let result = Some(match p {
                Part::Warning(w) => R::Warnings(w),
                Part::Series(s) => R::Timeseries(s),
                Part::Batch(series) => R::TimeseriesBatch(TimeSeriesBatch { series }),
                Part::Stats(s) => R::Stats(s),
            });
            Ok(QueryRangeResponse { result })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_promql::{InstantSample, QueryResult};

    fn result(value: Value) -> QueryResult {
        QueryResult {
            value,
            warnings: vec!["PromQL warning: w".into()],
            info: Vec::new(),
            peak_samples: 7,
            stats: Default::default(),
        }
    }

    fn sample(job: &str, v: f64) -> InstantSample {
        InstantSample {
            labels: Labels::from_pairs([("__name__", "up"), ("job", job)]),
            t_ms: 1_000,
            v,
            h: None,
        }
    }

    #[test]
    fn requests_read_as_the_http_api_reads_its_parameters() {
        let f = instant_form(&QueryRequest {
            query: "up".into(),
            time_seconds: 100,
            timeout_seconds: 30,
            replica_labels: vec!["replica".into(), "rule_replica".into()],
            enable_dedup: true,
            enable_partial_response: false,
            lookback_delta_seconds: 60,
            ..Default::default()
        });
        assert_eq!(f.value("query"), "up");
        assert_eq!(f.value("time"), "100");
        assert_eq!(f.value("timeout"), "30s");
        assert_eq!(f.value("lookback_delta"), "60s");
        assert_eq!(f.value("dedup"), "true");
        assert_eq!(f.value("partial_response"), "false");
        assert_eq!(f.all("replicaLabels[]"), ["replica", "rule_replica"]);
        assert_eq!(f.get("max_source_resolution"), None);
        let now = instant_form(&QueryRequest::default());
        assert_eq!(now.get("time"), None, "time 0 is now");
        assert_eq!(now.get("timeout"), None, "the server's own timeout");
        let r = range_form(&QueryRangeRequest {
            query: "up".into(),
            start_time_seconds: 10,
            end_time_seconds: 70,
            interval_seconds: 15,
            max_resolution_seconds: 300,
            ..Default::default()
        });
        assert_eq!(
            (r.value("start"), r.value("end"), r.value("step")),
            ("10", "70", "15")
        );
        assert_eq!(r.value("max_source_resolution"), "300s");
        assert_eq!(r.get("shard_info"), None, "no shard: every series");
        let shard = ShardInfo {
            shard_index: 1,
            total_shards: 3,
            by: true,
            labels: vec!["job".into()],
        };
        let sharded = range_form(&QueryRangeRequest {
            shard_info: Some(shard.clone()),
            ..Default::default()
        });
        let read = crate::http::api::shard_param(sharded.value("shard_info"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (read.index, read.total, read.by, read.labels),
            (1, 3, true, vec!["job".to_string()])
        );
        let instant = instant_form(&QueryRequest {
            shard_info: Some(shard),
            ..Default::default()
        });
        assert_eq!(instant.value("shard_info"), sharded.value("shard_info"));
        let unsharded = instant_form(&QueryRequest {
            shard_info: Some(ShardInfo::default()),
            ..Default::default()
        });
        assert_eq!(unsharded.get("shard_info"), None, "total 0 is no sharding");
    }

    #[test]
    fn answers_stream_warnings_series_then_stats() {
        let parts = answer(
            Ok((
                result(Value::Vector(vec![sample("a", 1.0), sample("b", 2.0)])),
                vec!["store down".into()],
            )),
            true,
            0,
        )
        .unwrap();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[0], Part::Warning("store down".into()));
        assert_eq!(parts[1], Part::Warning("PromQL warning: w".into()));
        let Part::Series(s) = &parts[2] else {
            panic!("{:?}", parts[2])
        };
        assert_eq!(s.labels[1].value, "a");
        assert_eq!((s.samples[0].value, s.samples[0].timestamp), (1.0, 1_000));
        assert!(matches!(&parts[4], Part::Stats(st) if st.peak_samples == 7));
        // Batched: three series in batches of two.
        let three = Value::Vector(vec![sample("a", 1.0), sample("b", 2.0), sample("c", 3.0)]);
        let batched = answer(Ok((result(three), Vec::new())), true, 2).unwrap();
        let sizes: Vec<usize> = batched
            .iter()
            .filter_map(|p| match p {
                Part::Batch(b) => Some(b.len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, [2, 1]);
        // A scalar: one series without labels.
        let scalar = answer(
            Ok((result(Value::Scalar { t_ms: 5, v: 0.5 }), Vec::new())),
            true,
            0,
        )
        .unwrap();
        let Part::Series(s) = &scalar[1] else {
            panic!("{:?}", scalar[1])
        };
        assert!(s.labels.is_empty());
        assert_eq!((s.samples[0].value, s.samples[0].timestamp), (0.5, 5));
    }

    #[test]
    fn failures_are_warnings_with_partial_response_and_statuses_without() {
        let exec = ApiError {
            class: ErrorClass::Execution,
            message: "too many samples".into(),
        };
        assert_eq!(
            answer(Err(exec.clone()), true, 0).unwrap(),
            [Part::Warning("too many samples".into())]
        );
        let status = answer(Err(exec), false, 0).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Aborted);
        let bad = answer(Err(ApiError::bad_data("parse error")), true, 0).unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        let busy = ApiError {
            class: ErrorClass::Unavailable,
            message: "queue full".into(),
        };
        assert_eq!(
            answer(Err(busy), false, 0).unwrap_err().code(),
            tonic::Code::Unavailable
        );
        let slow = ApiError::timeout("took too long");
        assert_eq!(
            answer(Err(slow), false, 0).unwrap_err().code(),
            tonic::Code::DeadlineExceeded
        );
    }
}
