//! The memory budget (`--memory.limit`, every role) at the servers' doors: the budget itself,
//! its reservations and its sampler are the engine's ([`gauntlet_engine::budget`]); the
//! binary makes the process's budget ([`start`]) and each role is handed its own (the whole
//! of it, or a part under `gauntlet all`), which its servers admit work from. Every request that starts work takes a reservation for its
//! start before anything is read, and holds it until it is answered: queries and remote
//! writes over HTTP are refused with 503 when the budget has no room for it (clients retry;
//! Prometheus's remote write does), the StoreAPI's Series, LabelNames and LabelValues and
//! the writes receivers forward to each other with `ResourceExhausted` ([`GrpcGuardLayer`]).
//! The work then reserves what it holds as it grows (samples a query holds, a Series answer's
//! batches waiting to be sent, a write's body and what it decodes to); a reservation that
//! cannot grow ends the request with the same answers. `/metrics`, `/-/ready`, `/-/healthy`
//! and the gRPC Info services always answer. Per-request limits (`--query.max-samples`, the
//! store's `--store.limits.*`, receive's `--receive.limits.*`) bound what one request may
//! take; the budget bounds them all together.

use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gauntlet_engine::budget::{self, MemoryBudget, Need, OverBudget, Reservation};

/// What a request reserves for its start, bytes: its buffers and first allocations. Each
/// request admitted counts this at once, so a burst of requests arriving together does not
/// all fit in one dip under the limit.
pub const START_BYTES: u64 = 1 << 20;

/// The process's budget (`--memory.limit`, bytes; 0 for none), its sampler started: made
/// once by the binary and handed to the role it runs (or split among the roles of
/// `gauntlet all`).
pub fn start(limit: u64) -> Arc<MemoryBudget> {
    let b = Arc::new(MemoryBudget::new(limit));
    if let Err(e) = budget::start(&b) {
        tracing::warn!(error = %e, "the memory sampler did not start; --memory.limit counts reservations only");
    }
    b
}

/// A reservation from `budget` for new work of kind `what` (its start, or `bytes` when
/// known), or why the budget has no room for it.
pub fn admit(
    budget: &Arc<MemoryBudget>,
    what: &'static str,
    bytes: u64,
    need: Need,
) -> Result<Reservation, OverBudget> {
    budget.reserve(what, bytes.max(START_BYTES), need)
}

/// Registers the metrics of `budget` in `registry`, read at each scrape:
/// `gauntlet_memory_limit_bytes`, `gauntlet_memory_resident_bytes` (as the budget last saw
/// it), `gauntlet_memory_reserved_bytes` and `gauntlet_memory_refusals_total`.
pub fn register_metrics<B>(registry: &mut crate::metrics::Registry, budget: B)
where
    B: std::ops::Deref<Target = budget::MemoryBudget> + std::fmt::Debug + Send + Sync + 'static,
{
    registry.register_collector(Box::new(BudgetCollector(budget)));
}

/// See [`register_metrics`].
#[derive(Debug)]
struct BudgetCollector<B>(B);

impl<B> prometheus_client::collector::Collector for BudgetCollector<B>
where
    B: std::ops::Deref<Target = budget::MemoryBudget> + std::fmt::Debug + Send + Sync + 'static,
{
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use crate::metrics::{counter, gauge};
        let b = &*self.0;
        gauge(
            &mut enc,
            "gauntlet_memory_limit_bytes",
            "The process's memory budget (--memory.limit), 0 when unlimited.",
            b.limit(),
        )?;
        gauge(
            &mut enc,
            "gauntlet_memory_resident_bytes",
            "Resident memory as the budget last sampled it.",
            b.resident(),
        )?;
        gauge(
            &mut enc,
            "gauntlet_memory_reserved_bytes",
            "Memory reserved by work in flight, counted by the budget on top of the resident size.",
            b.reserved(),
        )?;
        counter(
            &mut enc,
            "gauntlet_memory_refusals_total",
            "Requests refused, or ended in flight, because the memory budget had no room for them.",
            b.refused(),
        )
    }
}

/// The resident set size, bytes, 0 when unknown.
pub(crate) fn resident_bytes() -> u64 {
    budget::resident_bytes()
}

/// A bounded channel of an answer's frames, each holding the reservation of its bytes until
/// the transport takes it from the receiving stream: what a streamed answer has made and not
/// yet sent stays counted in the budget, and the channel's bound makes the producer wait for
/// a slow client rather than pile frames up.
pub fn frame_channel<T: Send + 'static>(
    budget: &Arc<MemoryBudget>,
    what: &'static str,
    depth: usize,
) -> (
    FrameSender<T>,
    impl futures::Stream<Item = T> + Send + 'static,
) {
    use futures::StreamExt as _;
    let (tx, rx) = tokio::sync::mpsc::channel::<(T, Option<Reservation>)>(depth);
    let frames = tokio_stream::wrappers::ReceiverStream::new(rx).map(|(item, _held)| item);
    (
        FrameSender {
            tx,
            what,
            budget: Arc::clone(budget),
        },
        frames,
    )
}

/// Why a frame was not sent.
#[derive(Debug)]
pub enum SendError {
    /// The budget had no room for it: the answer must end with this.
    OverBudget(OverBudget),
    /// The receiving side is gone (the client went away): stop producing.
    Closed,
}

/// The sending side of [`frame_channel`].
#[derive(Debug)]
pub struct FrameSender<T> {
    tx: tokio::sync::mpsc::Sender<(T, Option<Reservation>)>,
    what: &'static str,
    budget: Arc<MemoryBudget>,
}

impl<T> Clone for FrameSender<T> {
    fn clone(&self) -> Self {
        FrameSender {
            tx: self.tx.clone(),
            what: self.what,
            budget: Arc::clone(&self.budget),
        }
    }
}

impl<T: Send + 'static> FrameSender<T> {
    fn reserve(&self, bytes: u64) -> Result<Reservation, SendError> {
        self.budget
            .reserve(self.what, bytes, Need::Grow)
            .map_err(SendError::OverBudget)
    }

    /// Sends `item`, about `bytes` in memory, once its bytes are reserved.
    pub async fn send(&self, item: T, bytes: u64) -> Result<(), SendError> {
        let held = self.reserve(bytes)?;
        self.tx
            .send((item, Some(held)))
            .await
            .map_err(|_| SendError::Closed)
    }

    /// [`FrameSender::send`] from a thread that may block.
    pub fn blocking_send(&self, item: T, bytes: u64) -> Result<(), SendError> {
        let held = self.reserve(bytes)?;
        self.tx
            .blocking_send((item, Some(held)))
            .map_err(|_| SendError::Closed)
    }

    /// Ends once the receiving side is gone (the client went away): a producer waiting on
    /// something else selects on this to stop at once rather than at its next send.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Sends the item that ends the answer (its status), without a reservation.
    pub async fn finish(&self, item: T) {
        let _ = self.tx.send((item, None)).await;
    }

    /// [`FrameSender::finish`] from a thread that may block.
    pub fn blocking_finish(&self, item: T) {
        let _ = self.tx.blocking_send((item, None));
    }
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

/// The budgets an HTTP router admits new work from: the role's for a role alone, the query
/// and the receive roles' under `gauntlet all`, whose router serves both.
#[derive(Debug, Clone)]
pub struct HttpBudgets {
    /// Queries and metadata reads.
    pub reads: Arc<MemoryBudget>,
    /// Remote writes.
    pub writes: Arc<MemoryBudget>,
}

impl HttpBudgets {
    /// Reads and writes from the one `budget`.
    pub fn one(budget: &Arc<MemoryBudget>) -> Self {
        HttpBudgets {
            reads: Arc::clone(budget),
            writes: Arc::clone(budget),
        }
    }
}

/// Refuses new work with 503 while its budget in `budgets` has no room for it (the API's
/// error envelope for the API, plain text for remote write). Apply to the whole router,
/// before it is served (inside the request metrics, so refusals are counted).
pub fn guard_http(app: Router, budgets: HttpBudgets) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        Arc::new(budgets),
        guard_request,
    ))
}

async fn guard_request(
    axum::extract::State(budgets): axum::extract::State<Arc<HttpBudgets>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if !is_work(path) {
        return next.run(req).await;
    }
    let write = matches!(path, "/api/v1/receive" | "/api/v1/write");
    // A write's body is counted from its declared length; the handler reserves what it
    // decodes to.
    let admitted = if write {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        admit(&budgets.writes, "remote write", declared, Need::Write)
    } else {
        admit(&budgets.reads, "query", START_BYTES, Need::Read)
    };
    match admitted {
        Ok(_held) => next.run(req).await,
        Err(why) if write => refused_write(&why),
        Err(why) => refused_query(&why),
    }
}

/// The answer to a remote write the budget has no room for: 503, plain text.
pub fn refused_write(why: &OverBudget) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

/// The answer to a query the budget has no room for: 503 with the API's error envelope,
/// `errorType` `unavailable`.
pub fn refused_query(why: &OverBudget) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        crate::http::json::error("unavailable", &why.to_string(), &[]),
    )
        .into_response()
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

/// What a gRPC method starts that the budget may refuse, and as what, `None` for calls that
/// always answer (Info).
fn grpc_work(path: &str) -> Option<(&'static str, Need)> {
    match path {
        "/thanos.Store/Series" => Some(("Series", Need::Read)),
        "/thanos.Store/LabelNames" => Some(("LabelNames", Need::Read)),
        "/thanos.Store/LabelValues" => Some(("LabelValues", Need::Read)),
        "/thanos.WriteableStore/RemoteWrite" => Some(("forwarded write", Need::Write)),
        _ => None,
    }
}

/// The status a call refused or ended by the budget answers with: `ResourceExhausted`, its
/// message naming the limit, with the metadata [`REFUSAL_KEY`].
pub fn refusal(why: &OverBudget) -> tonic::Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        REFUSAL_KEY,
        tonic::metadata::MetadataValue::from_static(REFUSAL_VALUE),
    );
    let message =
        gauntlet_engine::error::clip(&why.to_string(), gauntlet_engine::error::MESSAGE_BYTES)
            .into_owned();
    tonic::Status::with_metadata(tonic::Code::ResourceExhausted, message, metadata)
}

/// A tower layer for a tonic server (`Server::builder().layer(GrpcGuardLayer::new(budget))`,
/// inside the metrics layer so refusals are counted): the StoreAPI's Series, LabelNames and
/// LabelValues and forwarded remote writes reserve their start from the role's budget before
/// their request is read, and are answered `ResourceExhausted` when it has no room for it.
/// The reservation is held until the call's answer is made; a Series answer's batches
/// reserve their own.
#[derive(Debug, Clone)]
pub struct GrpcGuardLayer {
    budget: Arc<MemoryBudget>,
}

impl GrpcGuardLayer {
    /// Admits calls from `budget`.
    pub fn new(budget: &Arc<MemoryBudget>) -> Self {
        GrpcGuardLayer {
            budget: Arc::clone(budget),
        }
    }
}

impl<S> tower::Layer<S> for GrpcGuardLayer {
    type Service = GrpcGuard<S>;

    fn layer(&self, inner: S) -> GrpcGuard<S> {
        GrpcGuard {
            inner,
            budget: Arc::clone(&self.budget),
        }
    }
}

/// See [`GrpcGuardLayer`].
#[derive(Debug, Clone)]
pub struct GrpcGuard<S> {
    inner: S,
    budget: Arc<MemoryBudget>,
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
        Held<S::Future>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let held = match grpc_work(req.uri().path()) {
            None => None,
            Some((what, need)) => match admit(&self.budget, what, START_BYTES, need) {
                Ok(r) => Some(r),
                Err(why) => {
                    return futures::future::Either::Left(std::future::ready(Ok(
                        refusal(&why).into_http()
                    )));
                }
            },
        };
        futures::future::Either::Right(Held {
            inner: self.inner.call(req),
            _held: held,
        })
    }
}

pin_project_lite::pin_project! {
    /// A call's answer, holding the call's start reservation until it is made.
    pub struct Held<F> {
        #[pin]
        inner: F,
        _held: Option<Reservation>,
    }
}

impl<F: std::future::Future> std::future::Future for Held<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

/// How long an idle blocking thread (one that ran a request) lives. Each keeps its stack and
/// allocator state resident; after a burst of hundreds of queries, tokio's default of ten
/// seconds would keep them all for that long.
pub const IDLE_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(500);

/// Hands the memory this thread's allocator heap holds free back to the system at once, instead
/// of after the allocator's purge delay: a request thread that ran a large query may then sit
/// idle for seconds, and two hundred such threads would otherwise keep gigabytes resident.
pub fn return_thread_memory() {
    unsafe extern "C" {
        /// mimalloc's `mi_collect`: frees what this thread's heap holds unused; with `force`,
        /// at once.
        fn mi_collect(force: bool);
    }
    // SAFETY: `mi_collect` takes no pointers and only walks the calling thread's own heap; the
    // process's global allocator is mimalloc (see main.rs), so the symbol is linked.
    unsafe { mi_collect(true) }
}

/// [`return_thread_memory`] as the hook engine cores and query workers run when they fall idle.
pub fn idle_hook() -> gauntlet_engine::shard::IdleHook {
    std::sync::Arc::new(return_thread_memory)
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
        let why = OverBudget {
            what: "Series",
            started: false,
            wanted: 1 << 20,
            resident: 600 << 20,
            reserved: 0,
            limit: 512 << 20,
            process_limit: 512 << 20,
        };
        let refused = refusal(&why);
        let mut head = http::HeaderMap::new();
        refused.add_header(&mut head).unwrap();
        let seen = tonic::Status::from_header_map(&head).unwrap();
        assert!(refused_by_budget(&seen));
        assert_eq!(seen.message(), why.to_string());
        assert!(seen.message().contains("--memory.limit of 512 MiB"));
        assert!(!refused_by_budget(&tonic::Status::resource_exhausted(
            "exceeded concurrent Series calls limit"
        )));
    }
}
