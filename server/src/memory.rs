//! The process's memory budget (`--memory.limit`, every role): a sampler reads the resident
//! set size every 100 ms, and while it is over the limit new work is refused rather than taken
//! on: queries and remote writes get 503 (clients retry; Prometheus's remote write does), the
//! StoreAPI's Series, LabelNames and LabelValues and the writes receivers forward to each other
//! `ResourceExhausted` ([`GrpcGuardLayer`]). Work under way finishes, and `/metrics`,
//! `/-/ready`, `/-/healthy` and the gRPC Info services always answer. Per-request limits
//! (`--query.max-samples`, the store's `--store.limits.*`, receive's `--receive.limits.*`)
//! bound what one request may take; the budget bounds them all together.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The budget and what it has refused.
#[derive(Debug, Default)]
struct Budget {
    /// Bytes; 0: no limit.
    limit: u64,
    /// Resident bytes as last sampled.
    rss: AtomicU64,
    /// Requests refused.
    refused: AtomicU64,
}

static BUDGET: OnceLock<Budget> = OnceLock::new();

/// How often the resident set size is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Sets the budget (`--memory.limit`, bytes; 0 for none) and starts the sampler. Called once,
/// at start.
pub fn init(limit: u64) {
    let _ = BUDGET.set(Budget {
        limit,
        rss: AtomicU64::new(resident_bytes()),
        refused: AtomicU64::new(0),
    });
    if limit > 0 {
        let spawned = std::thread::Builder::new()
            .name("gauntlet-memory".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(SAMPLE_EVERY);
                    if let Some(b) = BUDGET.get() {
                        b.rss.store(resident_bytes(), Relaxed);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "the memory sampler did not start; --memory.limit is not enforced");
        }
    }
}

/// `Err` with why when the process is over its budget: new work of kind `what` must be
/// refused.
pub fn admit(what: &str) -> Result<(), String> {
    let Some(b) = BUDGET.get() else {
        return Ok(());
    };
    if b.limit == 0 {
        return Ok(());
    }
    let rss = b.rss.load(Relaxed);
    if rss <= b.limit {
        return Ok(());
    }
    b.refused.fetch_add(1, Relaxed);
    Err(format!(
        "{what} refused: the process holds {} MiB, over its --memory.limit of {} MiB; try again later",
        rss >> 20,
        b.limit >> 20
    ))
}

/// The budget's metrics: `gauntlet_memory_limit_bytes`, `gauntlet_memory_resident_bytes` (as
/// the budget last saw it) and `gauntlet_memory_refusals_total`.
pub fn render(out: &mut String) {
    let (limit, rss, refused) = BUDGET.get().map_or((0, 0, 0), |b| {
        (b.limit, b.rss.load(Relaxed), b.refused.load(Relaxed))
    });
    for (name, typ, help, v) in [
        (
            "gauntlet_memory_limit_bytes",
            "gauge",
            "The process's memory budget (--memory.limit), 0 when unlimited.",
            limit,
        ),
        (
            "gauntlet_memory_resident_bytes",
            "gauge",
            "Resident memory as the budget last sampled it.",
            rss,
        ),
        (
            "gauntlet_memory_refusals_total",
            "counter",
            "Requests refused because the process was over its memory budget.",
            refused,
        ),
    ] {
        crate::http::ops::metric(out, name, typ, help, v as f64);
    }
}

/// The resident set size, bytes (`/proc/self/statm`), 0 when unknown.
pub(crate) fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Paths whose requests start new work the budget may refuse: PromQL and metadata reads and
/// remote writes. Operational endpoints and the UI always answer.
fn is_work(path: &str) -> bool {
    path.starts_with("/api/v1/query")
        || path == "/api/v1/series"
        || path == "/api/v1/labels"
        || path.starts_with("/api/v1/label/")
        || path == "/api/v1/receive"
        || path == "/api/v1/write"
}

/// Refuses new work with 503 while the process is over its budget (the API's error envelope
/// for the API, plain text for remote write). Apply to the whole router.
pub fn guard_http(app: Router) -> Router {
    app.layer(axum::middleware::from_fn(guard_request))
}

async fn guard_request(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let write = matches!(path, "/api/v1/receive" | "/api/v1/write");
    if is_work(path)
        && let Err(why) = admit(if write { "remote write" } else { "query" })
    {
        return if write {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                crate::http::json::error("unavailable", &why, &[]),
            )
                .into_response()
        };
    }
    next.run(req).await
}

/// The gRPC metadata key a refusal by the budget carries (value [`REFUSAL_VALUE`]), so a
/// Gauntlet client tells it from a per-request limit: both are `ResourceExhausted`, but only
/// the budget's passes with time, and a forwarding receiver answers it with a retried 503.
pub const REFUSAL_KEY: &str = "gauntlet-refused";

/// See [`REFUSAL_KEY`].
pub const REFUSAL_VALUE: &str = "memory-budget";

/// Whether a peer's status is a refusal by its memory budget ([`GrpcGuardLayer`]).
pub fn refused_by_budget(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::ResourceExhausted
        && status
            .metadata()
            .get(REFUSAL_KEY)
            .is_some_and(|v| v == REFUSAL_VALUE)
}

/// What a gRPC method starts that the budget may refuse, `None` for calls that always answer
/// (Info).
fn grpc_work(path: &str) -> Option<&'static str> {
    match path {
        "/thanos.Store/Series" => Some("Series"),
        "/thanos.Store/LabelNames" => Some("LabelNames"),
        "/thanos.Store/LabelValues" => Some("LabelValues"),
        "/thanos.WriteableStore/RemoteWrite" => Some("forwarded write"),
        _ => None,
    }
}

/// The status a call refused by the budget answers with.
fn refusal(why: String) -> tonic::Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        REFUSAL_KEY,
        tonic::metadata::MetadataValue::from_static(REFUSAL_VALUE),
    );
    tonic::Status::with_metadata(tonic::Code::ResourceExhausted, why, metadata)
}

/// A tower layer for a tonic server (`Server::builder().layer(GrpcGuardLayer)`, inside the
/// metrics layer so refusals are counted): while the process is over its budget, the
/// StoreAPI's Series, LabelNames and LabelValues and forwarded remote writes are answered
/// `ResourceExhausted` before their request is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcGuardLayer;

impl<S> tower::Layer<S> for GrpcGuardLayer {
    type Service = GrpcGuard<S>;

    fn layer(&self, inner: S) -> GrpcGuard<S> {
        GrpcGuard { inner }
    }
}

/// See [`GrpcGuardLayer`].
#[derive(Debug, Clone)]
pub struct GrpcGuard<S> {
    inner: S,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for GrpcGuard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = futures::future::Either<
        std::future::Ready<Result<http::Response<ResBody>, S::Error>>,
        S::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(what) = grpc_work(req.uri().path())
            && let Err(why) = admit(what)
        {
            return futures::future::Either::Left(std::future::ready(Ok(refusal(why).into_http())));
        }
        futures::future::Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_paths_are_the_api_reads_and_writes() {
        for p in [
            "/api/v1/query",
            "/api/v1/query_range",
            "/api/v1/series",
            "/api/v1/labels",
            "/api/v1/label/job/values",
            "/api/v1/receive",
        ] {
            assert!(is_work(p), "{p}");
        }
        for p in [
            "/metrics",
            "/-/ready",
            "/-/healthy",
            "/",
            "/api/v1/status/flags",
        ] {
            assert!(!is_work(p), "{p}");
        }
        assert!(resident_bytes() > 1 << 20);
    }

    #[test]
    fn store_reads_and_forwarded_writes_are_grpc_work_info_is_not() {
        for p in [
            "/thanos.Store/Series",
            "/thanos.Store/LabelNames",
            "/thanos.Store/LabelValues",
            "/thanos.WriteableStore/RemoteWrite",
        ] {
            assert!(grpc_work(p).is_some(), "{p}");
        }
        for p in ["/thanos.Store/Info", "/thanos.info.Info/Info"] {
            assert!(grpc_work(p).is_none(), "{p}");
        }
    }

    #[test]
    fn a_refusal_is_told_from_a_limit_across_the_wire() {
        let refused = refusal("Series refused".into());
        let mut head = http::HeaderMap::new();
        refused.add_header(&mut head).unwrap();
        let seen = tonic::Status::from_header_map(&head).unwrap();
        assert!(refused_by_budget(&seen));
        assert_eq!(seen.message(), "Series refused");
        assert!(!refused_by_budget(&tonic::Status::resource_exhausted(
            "exceeded concurrent Series calls limit"
        )));
    }
}
