//! The metrics a process serves on `/metrics`: one [`Registry`] per process, into which each
//! role the process runs registers its own families and collectors, and [`register_common`]
//! those every role has: the process (`process_*`, from `/proc`), the build
//! (`gauntlet_build_info`), the memory budget's, and the HTTP and gRPC servers' requests and
//! connections ([`ServerMetrics`], handed to the request middleware). Names are those Thanos
//! and Prometheus export, so that existing dashboards and alerts read them.
//!
//! [`encode`] renders the registry with prometheus-client, which writes OpenMetrics text; a
//! scrape that does not ask for OpenMetrics gets the Prometheus text format 0.0.4, derived
//! from it line by line ([`Format::negotiate`]).

use std::fmt::Write as _;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use gauntlet_engine::budget::MemoryBudget;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
    MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;

pub use prometheus_client::registry::Registry;

/// Request latency buckets, seconds (Thanos's for HTTP and gRPC servers).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

/// A histogram family over [`LATENCY_BUCKETS`].
type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    code: String,
    handler: String,
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    grpc_method: String,
    grpc_service: String,
    grpc_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcHandledLabels {
    grpc_code: &'static str,
    grpc_method: String,
    grpc_service: String,
    grpc_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The HTTP and gRPC servers' metrics of a process: requests by handler, method and code,
/// their latency, and the HTTP listeners' connections. One per process, registered by
/// [`register_common`] and handed (as an `Arc`) to [`track_http`], [`GrpcMetricsLayer`] and
/// the HTTP servers ([`crate::http::serve_on`]).
#[derive(Debug)]
pub struct ServerMetrics {
    http_requests: Family<HttpLabels, Counter>,
    http_duration: LatencyFamily<HttpLabels>,
    grpc_started: Family<GrpcLabels, Counter>,
    grpc_handled: Family<GrpcHandledLabels, Counter>,
    grpc_duration: LatencyFamily<GrpcLabels>,
    connections_open: Gauge,
    connections_accepted: Counter,
    connections_limited: Counter,
    connections_closed: Family<ReasonLabels, Counter>,
    body_timeouts: Counter,
}

impl ServerMetrics {
    /// New metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<ServerMetrics> {
        let m = ServerMetrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            grpc_started: Family::default(),
            grpc_handled: Family::default(),
            grpc_duration: Family::new_with_constructor(latency_histogram),
            connections_open: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_limited: Counter::default(),
            connections_closed: Family::default(),
            body_timeouts: Counter::default(),
        };
        declare(
            registry,
            "http_requests_total",
            "Tracks the number of HTTP requests.",
            m.http_requests.clone(),
        );
        declare(
            registry,
            "http_request_duration_seconds",
            "Tracks the latencies for HTTP requests.",
            m.http_duration.clone(),
        );
        declare(
            registry,
            "gauntlet_http_connections_open",
            "HTTP connections open on every HTTP listener, TLS handshakes included.",
            m.connections_open.clone(),
        );
        declare(
            registry,
            "gauntlet_http_connections_accepted_total",
            "HTTP connections accepted.",
            m.connections_accepted.clone(),
        );
        declare(
            registry,
            "gauntlet_http_connections_limited_total",
            "Times an HTTP listener had --web.max-connections connections open and stopped accepting; new connections waited in the kernel's backlog.",
            m.connections_limited.clone(),
        );
        declare(
            registry,
            "gauntlet_http_request_body_timeouts_total",
            "HTTP request bodies not received within --web.read-timeout.",
            m.body_timeouts.clone(),
        );
        declare(
            registry,
            "gauntlet_http_connections_closed_total",
            "HTTP connections the server closed on its own: a TLS handshake or request headers not finished in time, idle past --web.read-timeout, idle while the listener was at --web.max-connections, or a request still arriving when the server stopped.",
            m.connections_closed.clone(),
        );
        declare(
            registry,
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            m.grpc_started.clone(),
        );
        declare(
            registry,
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            m.grpc_handled.clone(),
        );
        declare(
            registry,
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            m.grpc_duration.clone(),
        );
        Arc::new(m)
    }

    /// Counts and times one answered HTTP request (`http_requests_total`,
    /// `http_request_duration_seconds`): `route` is the matched route, `None` for none.
    pub fn observe_http(
        &self,
        route: Option<&str>,
        method: &http::Method,
        status: http::StatusCode,
        started: Instant,
    ) {
        let labels = HttpLabels {
            code: status.as_u16().to_string(),
            handler: handler_name(route.unwrap_or("other")).to_string(),
            method: method.as_str().to_ascii_lowercase(),
        };
        self.http_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }

    /// An HTTP connection was accepted (`gauntlet_http_connections_accepted_total`) and is open
    /// until [`ServerMetrics::connection_ended`].
    pub fn connection_opened(&self) {
        self.connections_open.inc();
        self.connections_accepted.inc();
    }

    /// An HTTP connection counted by [`ServerMetrics::connection_opened`] is closed.
    pub fn connection_ended(&self) {
        self.connections_open.dec();
    }

    /// An HTTP listener is at `--web.max-connections` and stopped accepting.
    pub fn connections_limited(&self) {
        self.connections_limited.inc();
    }

    /// The server closed an HTTP connection on its own, for `reason`
    /// (`gauntlet_http_connections_closed_total{reason}`).
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// A request body was not received within `--web.read-timeout`.
    pub fn body_timed_out(&self) {
        self.body_timeouts.inc();
    }
}

/// A metric whose family is declared (`# HELP`, `# TYPE`) even before it has a sample, as
/// Gauntlet has always exported them: dashboards and tests find every family on the first
/// scrape.
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// Registers `metric` as the family `name`, spelled as its samples are (a counter's with its
/// `_total`, which the registry adds itself) and `help` as it is shown.
pub(crate) fn declare<M>(registry: &mut Registry, name: &str, help: &str, metric: M)
where
    M: EncodeMetric + Send + Sync + std::fmt::Debug + 'static,
{
    let name = family_name(name, &metric.metric_type());
    // The registry ends every help with a full stop.
    let help = help.strip_suffix('.').unwrap_or(help);
    registry.register(name, help, Declared(metric));
}

/// The OpenMetrics family name of samples named `name`: a counter's without `_total`.
fn family_name<'a>(name: &'a str, typ: &MetricType) -> &'a str {
    match typ {
        MetricType::Counter => {
            debug_assert!(name.ends_with("_total"), "counter {name} without _total");
            name.strip_suffix("_total").unwrap_or(name)
        }
        _ => name,
    }
}

/// Writes a gauge family of one sample without labels, for a [`Collector`].
pub fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> std::fmt::Result {
    let m = ConstGauge::new(value);
    m.encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// Writes a counter family of one sample without labels, for a [`Collector`]: `name` with
/// its `_total`.
pub fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> std::fmt::Result {
    let m = ConstCounter::new(value);
    let family = family_name(name, &MetricType::Counter);
    m.encode(enc.encode_descriptor(family, help, None, MetricType::Counter)?)
}

/// Writes a gauge family with one sample per label set, for a [`Collector`]; declared even
/// without samples.
pub fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes a counter family with one sample per label set, for a [`Collector`]: `name` with
/// its `_total`.
pub fn counters<L: EncodeLabelSet, V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> std::fmt::Result {
    let name = family_name(name, &MetricType::Counter);
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Registers what every role exports in `registry`: the process collector, the build info,
/// the metrics of the memory budget `budget`, and the servers' request metrics, which are
/// returned for the role's middleware.
pub fn register_common<B>(registry: &mut Registry, budget: B) -> Arc<ServerMetrics>
where
    B: Deref<Target = MemoryBudget> + std::fmt::Debug + Send + Sync + 'static,
{
    registry.register_collector(Box::new(ProcessCollector::new()));
    crate::memory::register_metrics(registry, budget);
    // An info metric: `gauntlet_build_info` in both formats, a gauge in the 0.0.4 one.
    registry.register(
        "gauntlet_build",
        "A metric with a constant '1' value labeled by version, revision, branch and the Rust version it was built with",
        Info::new([
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", env!("GAUNTLET_REVISION")),
            ("branch", env!("GAUNTLET_BRANCH")),
            ("rustversion", env!("GAUNTLET_RUST_VERSION")),
        ]),
    );
    ServerMetrics::register(registry)
}

/// The exposition formats `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics text 1.0.0, ending in `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The format a scrape asks for with its `Accept` header: OpenMetrics when
    /// `application/openmetrics-text` (version 1.0.0, 0.0.1 or none) is accepted at least as
    /// much as any other type, else the text format 0.0.4, as Prometheus's own client
    /// negotiates.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f64, Format)> = None;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let (mut q, mut version) = (1.0, None);
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(v.trim().trim_matches('"').to_string()),
                    _ => {}
                }
            }
            let format = match (media.as_str(), version.as_deref()) {
                ("application/openmetrics-text", None | Some("1.0.0" | "0.0.1")) => {
                    Format::OpenMetrics
                }
                ("text/plain" | "text/*" | "*/*", _) => Format::Text,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Renders `registry` in `format`.
pub fn encode(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut om = String::new();
    prometheus_client::encoding::text::encode(&mut om, registry)?;
    Ok(match format {
        Format::OpenMetrics => om,
        Format::Text => openmetrics_to_text(&om),
    })
}

/// The Prometheus text format 0.0.4 of the OpenMetrics text prometheus-client writes: the
/// samples as they are (both formats spell them alike), a family's `# HELP` and `# TYPE`
/// under its samples' name where the formats differ (a counter's with `_total`, an info's
/// with `_info` and typed `gauge`; `unknown` is `untyped`), `# UNIT` and `# EOF` left out.
fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // A `# HELP` line waits for its family's `# TYPE`, which says the name to give it.
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some(h) = help.replace(rest) {
                let _ = writeln!(out, "# HELP {h}");
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, typ) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (suffix, typ) = match typ {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "unknown" => ("", "untyped"),
                other => ("", other),
            };
            if let Some(h) = help.take() {
                match h.split_once(' ') {
                    Some((name, text)) if name == family => {
                        let _ = writeln!(out, "# HELP {family}{suffix} {text}");
                    }
                    _ => {
                        let _ = writeln!(out, "# HELP {h}");
                    }
                }
            }
            let _ = writeln!(out, "# TYPE {family}{suffix} {typ}");
            continue;
        }
        if let Some(h) = help.take() {
            let _ = writeln!(out, "# HELP {h}");
        }
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = help {
        let _ = writeln!(out, "# HELP {h}");
    }
    out
}

/// The process collector's metrics, from `/proc/self`, read at each scrape.
#[derive(Debug)]
struct ProcessCollector {
    /// Unix seconds when the collector was made, for `process_start_time_seconds` when
    /// `/proc` has no answer.
    made: f64,
}

impl ProcessCollector {
    fn new() -> ProcessCollector {
        let made = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        ProcessCollector { made }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let page = 4096.0;
        let ticks = 100.0;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        // `fields[0]` is field 3 (state); field N is `fields[N - 3]`.
        let field = |n: usize| -> f64 {
            fields
                .get(n - 3)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        let start = match boot {
            Some(b) if !fields.is_empty() => b + field(22) / ticks,
            _ => self.made,
        };
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0);
        let e = &mut enc;
        counter(
            e,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            (field(14) + field(15)) / ticks,
        )?;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            (field(24) * page) as u64,
        )?;
        gauge(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            field(23) as u64,
        )?;
        gauge(
            e,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            start,
        )?;
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors.",
            open_fds as u64,
        )?;
        gauge(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            max_fds,
        )
    }
}

/// The handler name Thanos's HTTP instrumentation gives a route, so that dashboards built on
/// `http_requests_total{handler="query"}` read Gauntlet's too; other routes by their path.
fn handler_name(route: &str) -> &str {
    match route {
        "/api/v1/query" => "query",
        "/api/v1/query_range" => "query_range",
        "/api/v1/query_exemplars" => "query_exemplars",
        "/api/v1/labels" => "label_names",
        "/api/v1/label/{name}/values" => "label_values",
        "/api/v1/series" => "series",
        "/api/v1/metadata" => "metadata",
        "/api/v1/receive" | "/api/v1/write" => "receive",
        "/metrics" => "metrics",
        other => other,
    }
}

/// Counts and times every request `app` answers in `metrics` (`http_requests_total`,
/// `http_request_duration_seconds`), refusals of the memory budget included (the role
/// applies [`crate::memory::guard_http`] with its budget before the router is served). Apply
/// to the whole router, after every merge.
pub fn track_http(app: Router, metrics: &Arc<ServerMetrics>) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        metrics.clone(),
        track_request,
    ))
}

async fn track_request(
    State(metrics): State<Arc<ServerMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = req.method().clone();
    let res = next.run(req).await;
    metrics.observe_http(route.as_deref(), &method, res.status(), started);
    res
}

/// A tower layer that counts and times the gRPC calls of a tonic server in its
/// [`ServerMetrics`] (`Server::builder().layer(GrpcMetricsLayer::new(metrics))`).
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<ServerMetrics>,
}

impl GrpcMetricsLayer {
    /// A layer counting in `metrics`.
    pub fn new(metrics: &Arc<ServerMetrics>) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: metrics.clone(),
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<ServerMetrics>,
}

/// What a call is, for its labels.
#[derive(Debug, Clone)]
struct Call {
    labels: GrpcLabels,
    started: Instant,
    metrics: Arc<ServerMetrics>,
}

impl Call {
    fn from_path(path: &str, metrics: Arc<ServerMetrics>) -> Call {
        let path = path.trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        // The StoreAPI's Series streams its answer; every other Gauntlet method is unary.
        let kind = if method == "Series" {
            "server_stream"
        } else {
            "unary"
        };
        Call {
            labels: GrpcLabels {
                grpc_method: method.to_string(),
                grpc_service: service.to_string(),
                grpc_type: kind,
            },
            started: Instant::now(),
            metrics,
        }
    }

    fn start(&self) {
        self.metrics.grpc_started.get_or_create(&self.labels).inc();
    }

    fn finish(&self, code: &'static str) {
        let handled = GrpcHandledLabels {
            grpc_code: code,
            grpc_method: self.labels.grpc_method.clone(),
            grpc_service: self.labels.grpc_service.clone(),
            grpc_type: self.labels.grpc_type,
        };
        self.metrics.grpc_handled.get_or_create(&handled).inc();
        self.metrics
            .grpc_duration
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The name of a gRPC status code number, as `grpc_code` labels spell it.
fn code_name(code: &str) -> &'static str {
    match code.trim() {
        "0" => "OK",
        "1" => "Canceled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        _ => "Unknown",
    }
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
{
    type Response = http::Response<TrackedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = Call::from_path(req.uri().path(), self.metrics.clone());
        call.start();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            // A call refused before its answer starts carries its status in the head.
            let early = res
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(code_name);
            let call = match early {
                Some(code) => {
                    call.finish(code);
                    None
                }
                None => Some(call),
            };
            Ok(res.map(|inner| TrackedBody { inner, call }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call's status when its trailers go by (or
    /// `Canceled` when it is dropped before they do).
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }

    impl<B> PinnedDrop for TrackedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.finish("Canceled");
            }
        }
    }
}

impl<B> http_body::Body for TrackedBody<B>
where
    B: http_body::Body<Data = bytes::Bytes>,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .map_or("OK", code_name);
                    if let Some(call) = this.call.take() {
                        call.finish(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.take() {
                    call.finish("Internal");
                }
            }
            Poll::Ready(None) => {
                if let Some(call) = this.call.take() {
                    call.finish("OK");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small registry: a labelled counter family, a histogram, an info, a collector's
    /// gauge and counter, and a family without samples.
    fn small_registry() -> (Registry, Arc<ServerMetrics>) {
        #[derive(Debug)]
        struct Fixed;
        impl Collector for Fixed {
            fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
                gauge(&mut enc, "t_items", "Items now.", 3u64)?;
                counters(
                    &mut enc,
                    "t_events_total",
                    "Events.",
                    [([("kind", "a\"b")], 2u64)],
                )
            }
        }
        let mut registry = Registry::default();
        let m = ServerMetrics::register(&mut registry);
        registry.register_collector(Box::new(Fixed));
        registry.register("t_build", "Build", Info::new([("version", "1.2.3")]));
        let started = Instant::now();
        m.observe_http(
            Some("/api/v1/query"),
            &http::Method::GET,
            http::StatusCode::OK,
            started,
        );
        m.observe_http(
            Some("/api/v1/query"),
            &http::Method::GET,
            http::StatusCode::OK,
            started,
        );
        (registry, m)
    }

    #[test]
    fn the_text_format_names_families_as_their_samples() {
        let (registry, _) = small_registry();
        let text = encode(&registry, Format::Text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# HELP http_requests_total Tracks the number of HTTP requests.",
            "# TYPE http_requests_total counter",
            "http_requests_total{code=\"200\",handler=\"query\",method=\"get\"} 2",
            "# TYPE http_request_duration_seconds histogram",
            "http_request_duration_seconds_bucket{le=\"0.001\",code=\"200\",handler=\"query\",method=\"get\"} 2",
            "http_request_duration_seconds_bucket{le=\"+Inf\",code=\"200\",handler=\"query\",method=\"get\"} 2",
            "http_request_duration_seconds_count{code=\"200\",handler=\"query\",method=\"get\"} 2",
            "# TYPE gauntlet_http_connections_open gauge",
            "gauntlet_http_connections_open 0",
            "# TYPE gauntlet_http_connections_accepted_total counter",
            "gauntlet_http_connections_accepted_total 0",
            // A family without samples yet is declared all the same.
            "# HELP grpc_server_started_total Total number of RPCs started on the server.",
            "# TYPE grpc_server_started_total counter",
            "# HELP t_items Items now.",
            "# TYPE t_items gauge",
            "t_items 3",
            "# HELP t_events_total Events.",
            "# TYPE t_events_total counter",
            "t_events_total{kind=\"a\\\"b\"} 2",
            "# HELP t_build_info Build.",
            "# TYPE t_build_info gauge",
            "t_build_info{version=\"1.2.3\"} 1",
        ] {
            assert!(lines.contains(&want), "{want:?} missing from:\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");
        // Every sample belongs to the family of the TYPE line above it.
        let mut family = "";
        for line in &lines {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| *b == family)
                    .unwrap_or(name);
                assert_eq!(base, family, "{line}");
            }
        }
    }

    #[test]
    fn openmetrics_ends_in_eof_and_counters_carry_total_on_samples() {
        let (registry, m) = small_registry();
        m.connection_opened();
        m.connection_closed("idle");
        let om = encode(&registry, Format::OpenMetrics).unwrap();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert_eq!(om.matches("# EOF").count(), 1);
        let lines: Vec<&str> = om.lines().collect();
        for want in [
            "# TYPE http_requests counter",
            "http_requests_total{code=\"200\",handler=\"query\",method=\"get\"} 2",
            "# TYPE gauntlet_http_connections_accepted counter",
            "gauntlet_http_connections_accepted_total 1",
            "gauntlet_http_connections_open 1",
            "gauntlet_http_connections_closed_total{reason=\"idle\"} 1",
            "# TYPE t_events counter",
            "# TYPE t_build info",
            "t_build_info{version=\"1.2.3\"} 1",
        ] {
            assert!(lines.contains(&want), "{want:?} missing from:\n{om}");
        }
        // The families of both formats are the same, named by their samples.
        let text = encode(&registry, Format::Text).unwrap();
        let samples = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
                .collect()
        };
        assert_eq!(samples(&om), samples(&text));
    }

    #[test]
    fn unit_lines_and_unknown_types_are_spelled_for_the_text_format() {
        let om = "# HELP a_seconds A.\n# TYPE a_seconds gauge\n# UNIT a_seconds seconds\na_seconds 1.5\n\
                  # HELP b B.\n# TYPE b unknown\nb 2\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1.5\n\
             # HELP b B.\n# TYPE b untyped\nb 2\n"
        );
    }

    #[test]
    fn openmetrics_is_answered_only_when_asked_for() {
        let prometheus3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let prometheus2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, want) in [
            (None, Format::Text),
            (Some(""), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain"), Format::Text),
            (Some("text/plain;version=0.0.4"), Format::Text),
            (
                Some("application/openmetrics-text;version=1.0.0"),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (Some(prometheus3), Format::OpenMetrics),
            (Some(prometheus2), Format::OpenMetrics),
            // Prometheus configured for the text format first.
            (
                Some(
                    "text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4",
                ),
                Format::Text,
            ),
            (
                Some("application/openmetrics-text;version=2.0.0"),
                Format::Text,
            ),
            (
                Some("application/openmetrics-text;version=1.0.0;q=0"),
                Format::Text,
            ),
            (Some("application/json"), Format::Text),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn process_metrics_read_this_process() {
        let mut registry = Registry::default();
        register_common(
            &mut registry,
            gauntlet_engine::budget::MemoryBudget::unlimited(),
        );
        let out = encode(&registry, Format::Text).unwrap();
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
                .parse()
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(start <= now + 1.0 && start > now - 86_400.0, "{start}");
        assert!(out.contains("gauntlet_build_info{version=\""), "{out}");
        assert!(
            out.contains("# TYPE gauntlet_memory_limit_bytes gauge"),
            "{out}"
        );
    }

    #[test]
    fn grpc_calls_are_named_by_service_method_and_kind() {
        let mut registry = Registry::default();
        let m = ServerMetrics::register(&mut registry);
        let c = Call::from_path("/thanos.Store/Series", m.clone());
        assert_eq!(
            (
                c.labels.grpc_service.as_str(),
                c.labels.grpc_method.as_str(),
                c.labels.grpc_type
            ),
            ("thanos.Store", "Series", "server_stream")
        );
        c.start();
        c.finish(code_name("8"));
        let c = Call::from_path("/thanos.info.Info/Info", m);
        assert_eq!(c.labels.grpc_type, "unary");
        let text = encode(&registry, Format::Text).unwrap();
        assert!(
            text.contains("grpc_server_handled_total{grpc_code=\"ResourceExhausted\",grpc_method=\"Series\",grpc_service=\"thanos.Store\",grpc_type=\"server_stream\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("grpc_server_started_total{grpc_method=\"Series\",grpc_service=\"thanos.Store\",grpc_type=\"server_stream\"} 1"),
            "{text}"
        );
    }
}
