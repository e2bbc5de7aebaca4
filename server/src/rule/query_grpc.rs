//! The ruler's queries over Thanos's gRPC Query API (`thanos.Query`), to the addresses of
//! `--grpc-query-endpoint` or `grpc_config.endpoint_addresses`: what Thanos Rule's remote
//! engine sends, and its answers read back into the samples the HTTP path gives.
//!
//! A query carries the expression, the evaluation time in whole seconds (the wire has no
//! finer field; the samples are stamped with the exact evaluation time, as Thanos stamps
//! them), `--query.timeout` in whole seconds, dedup on and the group's partial-response
//! strategy. Connections are plaintext, as Thanos Rule dials them, and made on first use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use gauntlet_engine::histogram::FloatHistogram;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::remote_write::HistogramValue;
use gauntlet_promql::InstantSample;
use gauntlet_proto::prometheus::TimeSeries;
use gauntlet_proto::thanos::query_client::QueryClient;
use gauntlet_proto::thanos::{
    QueryRangeRequest, QueryRequest, query_range_response, query_response,
};
use tonic::transport::{Channel, Endpoint};

use super::query::RangeSeries;

/// Most bytes of one answer message read from a query API: a batch of large series.
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// The gRPC Query API endpoints and a connection to each.
#[derive(Debug)]
pub struct GrpcEndpoints {
    /// The addresses as given, possibly `dns+` names.
    pub addresses: Vec<String>,
    /// `host:port` of each endpoint now, after DNS.
    resolved: RwLock<Vec<String>>,
    /// A connection per address, made on first use and kept.
    channels: Mutex<HashMap<String, Channel>>,
    /// How long one query may take (`--query.timeout`).
    timeout: Duration,
    /// Answers with warnings, shared with the HTTP endpoints' querier.
    pub warned: Arc<WarnedAnswers>,
}

/// What one endpoint did with a query: `Ok(Ok)` answered, `Ok(Err)` refused the query (another
/// endpoint would refuse it too), `Err` did not answer (another may).
pub type Outcome<T> = Result<Result<T, String>, String>;

impl GrpcEndpoints {
    /// Endpoints at `addresses`; those that need no lookup are usable at once.
    pub fn new(addresses: Vec<String>, timeout: Duration) -> GrpcEndpoints {
        let now = addresses
            .iter()
            .filter(|a| crate::query::dns::split(a).is_none())
            .cloned()
            .collect();
        GrpcEndpoints {
            addresses,
            resolved: RwLock::new(now),
            channels: Mutex::new(HashMap::new()),
            timeout,
            warned: Arc::new(WarnedAnswers::default()),
        }
    }

    /// `host:port` of every endpoint now.
    pub fn resolved(&self) -> Vec<String> {
        self.resolved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the addresses DNS gives now (duplicates dropped); connections to addresses no
    /// longer listed are closed.
    pub fn set_resolved(&self, mut addrs: Vec<String>) {
        let mut seen = Vec::with_capacity(addrs.len());
        addrs.retain(|a| {
            let fresh = !seen.contains(a);
            seen.push(a.clone());
            fresh
        });
        let mut now = self.resolved.write().unwrap_or_else(|p| p.into_inner());
        if *now != addrs {
            tracing::info!(endpoints = ?addrs, "gRPC query endpoints");
            self.channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|a, _| addrs.contains(a));
            *now = addrs;
        }
    }

    /// A Query API client on `addr`'s connection.
    fn client(&self, addr: &str) -> Result<QueryClient<Channel>, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| format!("{addr}: {e}"))?
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true)
                    .connect_lazy();
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(QueryClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES))
    }

    /// An instant query of `expr` at `t_ms` on `addr`; `partial` accepts a partial answer.
    pub async fn query(
        &self,
        addr: &str,
        expr: &str,
        t_ms: i64,
        partial: bool,
    ) -> Outcome<Vec<InstantSample>> {
        let mut client = self.client(addr)?;
        let req = instant_request(expr, t_ms, partial, self.timeout);
        let call = async {
            let mut stream = client.query(req).await?.into_inner();
            let mut answer = Answer::default();
            while let Some(msg) = stream.message().await? {
                match msg.result {
                    Some(query_response::Result::Warnings(w)) => answer.warnings.push(w),
                    Some(query_response::Result::Timeseries(s)) => answer.series.push(s),
                    Some(query_response::Result::TimeseriesBatch(b)) => {
                        answer.series.extend(b.series)
                    }
                    Some(query_response::Result::Stats(_)) | None => {}
                }
            }
            Ok::<_, tonic::Status>(answer)
        };
        let answer = self.bounded(addr, call).await?;
        Ok(answer.map(|a| {
            if log_warnings(addr, expr, &a.warnings) {
                self.warned.count(partial);
            }
            a.series
                .into_iter()
                .map(|s| instant_sample(s, t_ms))
                .collect()
        }))
    }

    /// A range query of `expr` from `start_ms` to `end_ms` every `step_s` seconds on `addr`,
    /// deduplicated and without partial answers (as the HTTP path reads `ALERTS_FOR_STATE`).
    pub async fn query_range(
        &self,
        addr: &str,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_s: i64,
    ) -> Outcome<RangeSeries> {
        let mut client = self.client(addr)?;
        let req = QueryRangeRequest {
            query: expr.to_string(),
            start_time_seconds: start_ms.div_euclid(1000),
            end_time_seconds: end_ms.div_euclid(1000),
            interval_seconds: step_s.max(1),
            timeout_seconds: timeout_seconds(self.timeout),
            enable_dedup: true,
            enable_partial_response: false,
            ..Default::default()
        };
        let call = async {
            let mut stream = client.query_range(req).await?.into_inner();
            let mut answer = Answer::default();
            while let Some(msg) = stream.message().await? {
                match msg.result {
                    Some(query_range_response::Result::Warnings(w)) => answer.warnings.push(w),
                    Some(query_range_response::Result::Timeseries(s)) => answer.series.push(s),
                    Some(query_range_response::Result::TimeseriesBatch(b)) => {
                        answer.series.extend(b.series)
                    }
                    Some(query_range_response::Result::Stats(_)) | None => {}
                }
            }
            Ok::<_, tonic::Status>(answer)
        };
        let answer = self.bounded(addr, call).await?;
        Ok(answer.map(|a| {
            log_warnings(addr, expr, &a.warnings);
            a.series.into_iter().map(range_series).collect()
        }))
    }

    /// Runs `call` within the query timeout, sorting its failure into an endpoint that did
    /// not answer or an answer refusing the query.
    async fn bounded<F>(&self, addr: &str, call: F) -> Outcome<Answer>
    where
        F: std::future::Future<Output = Result<Answer, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(format!("{addr}: no answer within {:?}", self.timeout)),
            Ok(Ok(a)) => Ok(Ok(a)),
            Ok(Err(status)) => classify(addr, &status),
        }
    }
}

/// The series and warnings one query's stream carried.
#[derive(Debug, Default)]
struct Answer {
    series: Vec<TimeSeries>,
    warnings: Vec<String>,
}

/// The request Thanos Rule's remote engine sends for an instant query.
fn instant_request(expr: &str, t_ms: i64, partial: bool, timeout: Duration) -> QueryRequest {
    QueryRequest {
        query: expr.to_string(),
        time_seconds: t_ms.div_euclid(1000),
        timeout_seconds: timeout_seconds(timeout),
        enable_dedup: true,
        enable_partial_response: partial,
        ..Default::default()
    }
}

/// A timeout in whole seconds, at least 1 (0 on the wire means none).
fn timeout_seconds(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX).max(1)
}

/// A failed call's status as an [`Outcome`]: the query itself refused (bad expression, its
/// evaluation failed, an aborted partial answer) ends the query; anything else is an endpoint
/// that did not answer, and the next is tried.
fn classify<T>(addr: &str, status: &tonic::Status) -> Outcome<T> {
    use tonic::Code;
    let msg = format!("{addr}: {}", status.message());
    match status.code() {
        Code::InvalidArgument | Code::Aborted | Code::FailedPrecondition | Code::OutOfRange => {
            Ok(Err(msg))
        }
        code => Err(format!("{addr}: {code:?}: {}", status.message())),
    }
}

/// Answers that came with warnings from the stores (a partial answer), by the partial-response
/// strategy of the query: Thanos Rule's `thanos_rule_evaluation_with_warnings_total`.
#[derive(Debug, Default)]
pub struct WarnedAnswers {
    /// Queries of groups with the `abort` strategy.
    pub abort: AtomicU64,
    /// Queries of groups with the `warn` strategy.
    pub warn: AtomicU64,
}

impl WarnedAnswers {
    /// Counts an answer that came with warnings from the stores.
    pub fn count(&self, partial_response: bool) {
        let counter = if partial_response {
            &self.warn
        } else {
            &self.abort
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Registers `thanos_rule_evaluation_with_warnings_total{strategy}`.
    pub fn register(self: &Arc<Self>, registry: &mut crate::metrics::Registry) {
        registry.register_collector(Box::new(WarnedCollector(self.clone())));
    }
}

/// Logs the warnings of a query's answer, as Thanos Rule does (the answer is still used);
/// whether any is not PromQL's own (an info or warning about the query itself, which says
/// nothing of missing data), so the answer may be partial.
pub fn log_warnings(endpoint: &str, expr: &str, warnings: &[String]) -> bool {
    let mut from_stores = false;
    for w in warnings {
        tracing::warn!(endpoint, query = expr, warning = %w, "rule query answered with a warning");
        from_stores |= !is_promql_annotation(w);
    }
    from_stores
}

/// Whether a warning is one of PromQL's annotations rather than a store's.
fn is_promql_annotation(w: &str) -> bool {
    w.starts_with("PromQL info") || w.starts_with("PromQL warning")
}

#[derive(Debug)]
struct WarnedCollector(Arc<WarnedAnswers>);

impl prometheus_client::collector::Collector for WarnedCollector {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        crate::metrics::counters(
            &mut enc,
            "thanos_rule_evaluation_with_warnings_total",
            "The total number of rule evaluation that were successful but had non PromQL warnings which can indicate partial error.",
            [
                ([("strategy", "abort")], self.0.abort.load(Relaxed)),
                ([("strategy", "warn")], self.0.warn.load(Relaxed)),
            ],
        )
    }
}

/// One series of an instant answer as the sample the rules see: its first sample (or
/// histogram), stamped with the evaluation time `t_ms` (the wire's time is whole seconds). A
/// series without labels is a scalar answer.
fn instant_sample(s: TimeSeries, t_ms: i64) -> InstantSample {
    let labels = labels(&s);
    if let Some(h) = s.histograms.first() {
        return InstantSample {
            labels,
            t_ms,
            v: 0.0,
            h: Some(Box::new(float_histogram(h))),
        };
    }
    InstantSample {
        labels,
        t_ms,
        v: s.samples.first().map_or(f64::NAN, |p| p.value),
        h: None,
    }
}

/// One series of a range answer: labels and `(ms, value)` points.
fn range_series(s: TimeSeries) -> (Labels, Vec<(i64, f64)>) {
    let points = s.samples.iter().map(|p| (p.timestamp, p.value)).collect();
    (labels(&s), points)
}

fn labels(s: &TimeSeries) -> Labels {
    Labels::from_pairs(s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// A histogram of an answer as the float histogram the rules record.
fn float_histogram(h: &gauntlet_proto::prometheus::Histogram) -> FloatHistogram {
    match crate::receive::histogram::from_proto(h).h {
        HistogramValue::Int(h) => h.to_float(),
        HistogramValue::Float(f) => f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_proto::prometheus::{Label, Sample};

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_warnings_from_the_stores_count_by_strategy() {
        let promql = [
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"x\"".to_string(),
            "PromQL warning: encountered a mix of histograms and floats for aggregation".to_string(),
        ];
        assert!(!log_warnings("q:1", "x", &promql));
        assert!(!log_warnings("q:1", "x", &[]));
        let store = ["receive 127.0.0.1:10901: rpc error: code = Unavailable".to_string()];
        assert!(log_warnings("q:1", "x", &store));
        let mixed: Vec<String> = promql.iter().chain(&store).cloned().collect();
        assert!(log_warnings("q:1", "x", &mixed));
        let w = WarnedAnswers::default();
        w.count(true);
        w.count(true);
        w.count(false);
        assert_eq!((w.abort.load(Relaxed), w.warn.load(Relaxed)), (1, 2));
    }

    #[test]
    fn the_request_carries_what_thanos_rule_sends() {
        let r = instant_request(
            "sum(up)",
            1_700_000_000_750,
            false,
            Duration::from_secs(120),
        );
        assert_eq!(r.query, "sum(up)");
        assert_eq!(r.time_seconds, 1_700_000_000, "whole seconds, rounded down");
        assert_eq!(r.timeout_seconds, 120);
        assert!(r.enable_dedup);
        assert!(!r.enable_partial_response);
        assert!(instant_request("x", -1, true, Duration::from_millis(10)).enable_partial_response);
        assert_eq!(
            instant_request("x", -1, true, Duration::from_millis(10)).time_seconds,
            -1
        );
        assert_eq!(timeout_seconds(Duration::from_millis(10)), 1);
    }

    #[test]
    fn answers_become_the_samples_the_http_path_gives() {
        let s = instant_sample(
            series(
                &[("__name__", "up"), ("job", "a")],
                &[(1_700_000_000_000, 1.5)],
            ),
            1_700_000_000_750,
        );
        assert_eq!(s.labels.get("job"), Some("a"));
        assert_eq!(
            (s.t_ms, s.v),
            (1_700_000_000_750, 1.5),
            "stamped at the eval time"
        );
        assert!(s.h.is_none());
        // A scalar: one series without labels.
        let scalar = instant_sample(series(&[], &[(10_000, f64::INFINITY)]), 10_250);
        assert!(scalar.labels.is_empty());
        assert_eq!((scalar.t_ms, scalar.v), (10_250, f64::INFINITY));
        // A histogram sample.
        let mut h = series(&[("le", "x")], &[]);
        h.histograms.push(gauntlet_proto::prometheus::Histogram {
            count: Some(gauntlet_proto::prometheus::histogram::Count::CountFloat(
                3.0,
            )),
            sum: 2.5,
            positive_spans: vec![gauntlet_proto::prometheus::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_counts: vec![1.0, 2.0],
            ..Default::default()
        });
        let hs = instant_sample(h, 5);
        let got = hs.h.expect("a histogram sample");
        assert_eq!((got.count, got.sum), (3.0, 2.5));
        assert_eq!(got.positive_buckets, [1.0, 2.0]);
        let (l, points) = range_series(series(&[("a", "b")], &[(1000, 1.0), (2000, 2.0)]));
        assert_eq!(l.get("a"), Some("b"));
        assert_eq!(points, [(1000, 1.0), (2000, 2.0)]);
    }

    #[test]
    fn refusals_end_the_query_and_failures_try_the_next_endpoint() {
        use tonic::{Code, Status};
        let refused = classify::<()>("q:1", &Status::new(Code::Aborted, "bad query"));
        assert_eq!(refused, Ok(Err("q:1: bad query".into())));
        assert!(matches!(
            classify::<()>("q:1", &Status::invalid_argument("parse error")),
            Ok(Err(_))
        ));
        for code in [
            Code::Unavailable,
            Code::Unimplemented,
            Code::DeadlineExceeded,
            Code::Internal,
        ] {
            let e = classify::<()>("q:1", &Status::new(code, "down")).unwrap_err();
            assert!(e.starts_with("q:1: "), "{e}");
        }
    }

    #[test]
    fn resolved_addresses_are_kept_once() {
        let g = GrpcEndpoints::new(
            vec!["q:1".into(), "dns+q.example:1".into()],
            Duration::from_secs(1),
        );
        assert_eq!(g.resolved(), ["q:1"], "a dns+ name waits for its lookup");
        g.set_resolved(vec!["q:1".into(), "10.0.0.1:1".into(), "q:1".into()]);
        assert_eq!(g.resolved(), ["q:1", "10.0.0.1:1"]);
    }
}
