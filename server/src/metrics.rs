//! Metrics every role exports besides its own, named as Thanos and Prometheus export them so
//! that existing dashboards and alerts read them: the process (`process_*`, from `/proc`),
//! the build (`gauntlet_build_info`), HTTP requests (`http_requests_total`,
//! `http_request_duration_seconds`, by Thanos's handler names) and gRPC requests
//! (`grpc_server_started_total`, `grpc_server_handled_total`, `grpc_server_handling_seconds`).
//! Request metrics are process-wide: a process runs one role.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use gauntlet_engine::go_format::{FloatFormat, push_float};

/// Request latency buckets, seconds (Thanos's for HTTP and gRPC servers).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0,
];

/// A family of counters or histograms over a fixed list of label names.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    /// `None` for a counter.
    buckets: Option<&'static [f64]>,
    series: Mutex<BTreeMap<Vec<String>, Cell>>,
}

#[derive(Debug, Default, Clone)]
struct Cell {
    count: u64,
    sum: f64,
    /// Observations at or under each bucket's bound (not cumulative: summed when rendered).
    in_bucket: Vec<u64>,
}

impl Family {
    /// A counter family.
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Family {
        Family {
            name,
            help,
            labels,
            buckets: None,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// A histogram family over `buckets` (upper bounds, ascending).
    pub const fn histogram(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Family {
        Family {
            name,
            help,
            labels,
            buckets: Some(buckets),
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds one to the counter of `values` (one per label name).
    pub fn inc(&self, values: &[&str]) {
        self.observe(values, 0.0);
    }

    /// Records `v` in the series of `values`; a counter counts it once.
    pub fn observe(&self, values: &[&str], v: f64) {
        debug_assert_eq!(values.len(), self.labels.len());
        let key: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let cell = series.entry(key).or_default();
        cell.count += 1;
        cell.sum += v;
        if let Some(bounds) = self.buckets {
            cell.in_bucket.resize(bounds.len(), 0);
            if let Some(i) = bounds.iter().position(|b| v <= *b) {
                cell.in_bucket[i] += 1;
            }
        }
    }

    /// Appends the family in the text exposition format.
    pub fn render(&self, out: &mut String) {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let typ = if self.buckets.is_some() {
            "histogram"
        } else {
            "counter"
        };
        let _ = write!(
            out,
            "# HELP {} {}\n# TYPE {} {typ}\n",
            self.name, self.help, self.name
        );
        for (values, cell) in &series {
            let labels = |out: &mut String, extra: Option<&str>| {
                out.push('{');
                for (i, (n, v)) in self.labels.iter().zip(values).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{n}=\"");
                    push_label_value(out, v);
                    out.push('"');
                }
                if let Some(le) = extra {
                    if !self.labels.is_empty() {
                        out.push(',');
                    }
                    let _ = write!(out, "le=\"{le}\"");
                }
                out.push('}');
            };
            match self.buckets {
                None => {
                    out.push_str(self.name);
                    labels(out, None);
                    let _ = writeln!(out, " {}", cell.count);
                }
                Some(bounds) => {
                    let mut cumulative = 0;
                    for (i, b) in bounds.iter().enumerate() {
                        cumulative += cell.in_bucket.get(i).copied().unwrap_or(0);
                        let mut le = String::new();
                        push_float(&mut le, *b, FloatFormat::G);
                        let _ = write!(out, "{}_bucket", self.name);
                        labels(out, Some(&le));
                        let _ = writeln!(out, " {cumulative}");
                    }
                    let _ = write!(out, "{}_bucket", self.name);
                    labels(out, Some("+Inf"));
                    let _ = writeln!(out, " {}", cell.count);
                    let _ = write!(out, "{}_sum", self.name);
                    labels(out, None);
                    out.push(' ');
                    push_float(out, cell.sum, FloatFormat::G);
                    out.push('\n');
                    let _ = write!(out, "{}_count", self.name);
                    labels(out, None);
                    let _ = writeln!(out, " {}", cell.count);
                }
            }
        }
    }
}

/// Appends `v` escaped as a label value of the text exposition format.
pub fn push_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HTTP requests answered, by status code, handler and method.
pub static HTTP_REQUESTS: Family = Family::counter(
    "http_requests_total",
    "Tracks the number of HTTP requests.",
    &["code", "handler", "method"],
);
/// HTTP request latency, to the response's head.
pub static HTTP_DURATION: Family = Family::histogram(
    "http_request_duration_seconds",
    "Tracks the latencies for HTTP requests.",
    &["code", "handler", "method"],
    LATENCY_BUCKETS,
);
/// gRPC calls started.
pub static GRPC_STARTED: Family = Family::counter(
    "grpc_server_started_total",
    "Total number of RPCs started on the server.",
    &["grpc_method", "grpc_service", "grpc_type"],
);
/// gRPC calls finished, by status code.
pub static GRPC_HANDLED: Family = Family::counter(
    "grpc_server_handled_total",
    "Total number of RPCs completed on the server, regardless of success or failure.",
    &["grpc_code", "grpc_method", "grpc_service", "grpc_type"],
);
/// gRPC call latency, to the end of the response stream.
pub static GRPC_DURATION: Family = Family::histogram(
    "grpc_server_handling_seconds",
    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
    &["grpc_method", "grpc_service", "grpc_type"],
    LATENCY_BUCKETS,
);

/// HTTP connections open now on every HTTP listener of the process, TLS handshakes included.
pub static HTTP_CONNECTIONS_OPEN: AtomicU64 = AtomicU64::new(0);
/// HTTP connections accepted.
pub static HTTP_CONNECTIONS_ACCEPTED: AtomicU64 = AtomicU64::new(0);
/// Times an HTTP listener had `--web.max-connections` connections open and stopped accepting.
pub static HTTP_CONNECTIONS_LIMITED: AtomicU64 = AtomicU64::new(0);
/// HTTP connections the server closed before the client did, by why.
pub static HTTP_CONNECTIONS_CLOSED: Family = Family::counter(
    "gauntlet_http_connections_closed_total",
    "HTTP connections the server closed on its own: a TLS handshake or request headers not finished in time, idle past --web.read-timeout, idle while the listener was at --web.max-connections, or a request still arriving when the server stopped.",
    &["reason"],
);
/// HTTP request bodies not received within `--web.read-timeout`.
pub static HTTP_BODY_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// When the process started, for `process_start_time_seconds` when `/proc` has no answer.
static STARTED: LazyLock<f64> = LazyLock::new(|| {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
});

/// Everything this module exports, in the text exposition format.
pub fn render_common() -> String {
    let mut out = String::new();
    LazyLock::force(&STARTED);
    process(&mut out);
    crate::memory::render(&mut out);
    out.push_str(
        "# HELP gauntlet_build_info A metric with a constant '1' value labeled by version, revision, branch and the Rust version it was built with.\n# TYPE gauntlet_build_info gauge\ngauntlet_build_info{",
    );
    for (i, (name, value)) in [
        ("version", env!("CARGO_PKG_VERSION")),
        ("revision", env!("GAUNTLET_REVISION")),
        ("branch", env!("GAUNTLET_BRANCH")),
        ("rustversion", env!("GAUNTLET_RUST_VERSION")),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        push_label_value(&mut out, value);
        out.push('"');
    }
    out.push_str("} 1\n");
    http_connections(&mut out);
    for f in [
        &HTTP_REQUESTS,
        &HTTP_DURATION,
        &HTTP_CONNECTIONS_CLOSED,
        &GRPC_STARTED,
        &GRPC_HANDLED,
        &GRPC_DURATION,
    ] {
        f.render(&mut out);
    }
    out
}

/// The HTTP listeners' connection counts.
fn http_connections(out: &mut String) {
    let load = |c: &AtomicU64| c.load(Relaxed) as f64;
    for (name, typ, help, v) in [
        (
            "gauntlet_http_connections_open",
            "gauge",
            "HTTP connections open on every HTTP listener, TLS handshakes included.",
            load(&HTTP_CONNECTIONS_OPEN),
        ),
        (
            "gauntlet_http_connections_accepted_total",
            "counter",
            "HTTP connections accepted.",
            load(&HTTP_CONNECTIONS_ACCEPTED),
        ),
        (
            "gauntlet_http_connections_limited_total",
            "counter",
            "Times an HTTP listener had --web.max-connections connections open and stopped accepting; new connections waited in the kernel's backlog.",
            load(&HTTP_CONNECTIONS_LIMITED),
        ),
        (
            "gauntlet_http_request_body_timeouts_total",
            "counter",
            "HTTP request bodies not received within --web.read-timeout.",
            load(&HTTP_BODY_TIMEOUTS),
        ),
    ] {
        crate::http::ops::metric(out, name, typ, help, v);
    }
}

/// Counts and times one answered HTTP request (`http_requests_total`,
/// `http_request_duration_seconds`): `route` is the matched route, `None` for none.
pub fn observe_http(
    route: Option<&str>,
    method: &http::Method,
    status: http::StatusCode,
    started: Instant,
) {
    let method = method.as_str().to_ascii_lowercase();
    let code = status.as_u16().to_string();
    let values = [
        code.as_str(),
        handler_name(route.unwrap_or("other")),
        method.as_str(),
    ];
    HTTP_REQUESTS.inc(&values);
    HTTP_DURATION.observe(&values, started.elapsed().as_secs_f64());
}

/// The process collector's metrics, from `/proc/self`.
fn process(out: &mut String) {
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
    let cpu = (field(14) + field(15)) / ticks;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    let start = match boot {
        Some(b) if !fields.is_empty() => b + field(22) / ticks,
        _ => *STARTED,
    };
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    for (name, typ, help, v) in [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            cpu,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            field(24) * page,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            field(23),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            start,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            open_fds as f64,
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max_fds,
        ),
    ] {
        crate::http::ops::metric(out, name, typ, help, v);
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

/// Counts and times every request `app` answers (`http_requests_total`,
/// `http_request_duration_seconds`), refusals of the memory budget included
/// ([`crate::memory::guard_http`], applied here too). Apply to the whole router, after every
/// merge.
pub fn track_http(app: Router) -> Router {
    crate::memory::guard_http(app).layer(axum::middleware::from_fn(track_request))
}

async fn track_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = req.method().clone();
    let res = next.run(req).await;
    observe_http(route.as_deref(), &method, res.status(), started);
    res
}

/// A tower layer that counts and times the gRPC calls of a tonic server
/// (`Server::builder().layer(GrpcMetricsLayer)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// What a call is, for its labels.
#[derive(Debug, Clone)]
struct Call {
    service: String,
    method: String,
    kind: &'static str,
    started: Instant,
}

impl Call {
    fn from_path(path: &str) -> Call {
        let path = path.trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        // The StoreAPI's Series streams its answer; every other Gauntlet method is unary.
        let kind = if method == "Series" {
            "server_stream"
        } else {
            "unary"
        };
        Call {
            service: service.to_string(),
            method: method.to_string(),
            kind,
            started: Instant::now(),
        }
    }

    fn finish(&self, code: &str) {
        GRPC_HANDLED.inc(&[code, &self.method, &self.service, self.kind]);
        GRPC_DURATION.observe(
            &[&self.method, &self.service, self.kind],
            self.started.elapsed().as_secs_f64(),
        );
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
        let call = Call::from_path(req.uri().path());
        GRPC_STARTED.inc(&[&call.method, &call.service, call.kind]);
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

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        static F: Family = Family::histogram("t_seconds", "Test.", &["a"], &[0.1, 1.0]);
        F.observe(&["x\"y"], 0.05);
        F.observe(&["x\"y"], 0.5);
        F.observe(&["x\"y"], 5.0);
        let mut out = String::new();
        F.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_seconds Test.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{a=\"x\\\"y\",le=\"0.1\"} 1\n\
             t_seconds_bucket{a=\"x\\\"y\",le=\"1\"} 2\n\
             t_seconds_bucket{a=\"x\\\"y\",le=\"+Inf\"} 3\n\
             t_seconds_sum{a=\"x\\\"y\"} 5.55\n\
             t_seconds_count{a=\"x\\\"y\"} 3\n"
        );
    }

    #[test]
    fn process_metrics_read_this_process() {
        let out = render_common();
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
                .parse()
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(start <= now + 1.0 && start > now - 86_400.0, "{start}");
        assert!(out.contains("gauntlet_build_info{version=\""));
    }

    #[test]
    fn grpc_calls_are_named_by_service_method_and_kind() {
        let c = Call::from_path("/thanos.Store/Series");
        assert_eq!(
            (c.service.as_str(), c.method.as_str(), c.kind),
            ("thanos.Store", "Series", "server_stream")
        );
        let c = Call::from_path("/thanos.info.Info/Info");
        assert_eq!(c.kind, "unary");
        assert_eq!(code_name("8"), "ResourceExhausted");
    }
}
