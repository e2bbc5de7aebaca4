//! `gauntlet query-frontend`: `thanos query-frontend`'s counterpart, in front of any
//! Prometheus-compatible querier (`--query-frontend.downstream-url`). Range queries are split
//! by interval ([`split`]), their parts run in parallel and answered from a results cache
//! where it can ([`cache`]), failing parts tried again ([`retry`]), and the parts merged
//! ([`merge`]); label and series calls are split and cached alike ([`labels`]); with vertical
//! shards, shardable instant queries run as shards too ([`instant`]); everything else (other
//! instant queries, the rest of the API) is passed through, instant queries tried again on a
//! 5xx.

pub mod args;
pub mod cache;
mod downsampled;
mod instant;
mod labels;
pub mod merge;
mod range;
pub mod remote_cache;
pub mod retry;
mod shard;
pub mod split;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gauntlet_engine::budget::MemoryBudget;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};

use self::args::{CacheConfig, cache_config};
pub use self::args::{FrontendArgs, FrontendSettings};
use self::cache::{CacheCounts, MemoryCache, ResultsCache};
use self::remote_cache::RemoteCache;
use self::retry::{Ask, Downstream};

/// The most bytes of a request body the frontend reads (a long query in a form).
const MAX_BODY_BYTES: usize = 16 << 20;

/// The operations counted in `thanos_query_frontend_queries_total`, as Thanos names them.
const OPS: &[&str] = &[
    "query",
    "query_range",
    "label_names",
    "label_values",
    "series",
];

/// The frontend's state, shared by its handlers.
#[derive(Debug)]
pub struct Frontend {
    downstream: Downstream,
    cache: Option<ResultsCache>,
    split_interval_ms: i64,
    max_parallelism: usize,
    /// `--query-frontend.vertical-shards`; below 2, no sharding.
    vertical_shards: usize,
    request_downsampled: bool,
    max_retries: usize,
    instant_max_retries: usize,
    labels_max_retries: usize,
    max_query_length_ms: i64,
    max_freshness_ms: i64,
    align: bool,
    partial_response: bool,
    forward_headers: Vec<String>,
    tenant_header: String,
    default_tenant: String,
    log_slower_than_ms: i64,
    labels: LabelsSettings,
    metrics: Metrics,
}

/// How label and series calls are split and cached (`--labels.*`).
#[derive(Debug)]
struct LabelsSettings {
    cache: Option<ResultsCache>,
    split_interval_ms: i64,
    max_parallelism: usize,
    max_freshness_ms: i64,
    partial_response: bool,
    /// `--labels.default-time-range`, ms (0: all time).
    default_range_ms: i64,
}

/// The frontend's counters.
#[derive(Debug, Default)]
struct Metrics {
    /// Requests by operation, in the order of [`OPS`].
    queries: [AtomicU64; 5],
    /// Range-query parts sent on.
    split_queries: AtomicU64,
    /// Range queries the sharding step looked at: shardable (0) and not (1).
    sharding: [AtomicU64; 2],
    /// Instant queries the sharding step looked at: shardable (0) and not (1).
    sharding_instant: [AtomicU64; 2],
    /// Range queries asked again at a coarser resolution (`--query-range.request-downsampled`).
    downsampled_extra: AtomicU64,
}

impl Metrics {
    fn count(&self, op: &str) {
        if let Some(i) = OPS.iter().position(|o| *o == op) {
            self.queries[i].fetch_add(1, Relaxed);
        }
    }
}

impl Frontend {
    /// The frontend `args` configure, in front of the querier at `downstream_url`.
    pub fn new(args: &FrontendSettings, downstream_url: &str) -> anyhow::Result<Frontend> {
        let cache = cache_config(
            "--query-range.response-cache-config",
            args.response_cache_config.as_deref(),
            args.response_cache_config_file.as_deref(),
        )?;
        let labels_cache = cache_config(
            "--labels.response-cache-config",
            args.labels_response_cache_config.as_deref(),
            args.labels_response_cache_config_file.as_deref(),
        )?;
        if cache.is_some() && args.split_interval.is_zero() {
            anyhow::bail!(
                "--query-range.split-interval must be greater than 0 when --query-range.response-cache-config is given"
            );
        }
        if labels_cache.is_some() && args.labels_split_interval.is_zero() {
            anyhow::bail!(
                "--labels.split-interval must be greater than 0 when --labels.response-cache-config is given"
            );
        }
        let ms = |d: std::time::Duration| d.as_millis() as i64;
        Ok(Frontend {
            downstream: Downstream::new(downstream_url)?,
            cache: cache
                .map(open_cache)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--query-range.response-cache-config: {e}"))?,
            labels: LabelsSettings {
                cache: labels_cache
                    .map(open_cache)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--labels.response-cache-config: {e}"))?,
                split_interval_ms: ms(args.labels_split_interval),
                max_parallelism: args.labels_max_query_parallelism,
                max_freshness_ms: ms(args.labels_max_freshness),
                partial_response: args.labels_partial_response(),
                default_range_ms: ms(args.labels_default_time_range),
            },
            split_interval_ms: ms(args.split_interval),
            max_parallelism: args.max_query_parallelism,
            vertical_shards: args.vertical_shards,
            request_downsampled: args.request_downsampled(),
            max_retries: args.max_retries,
            instant_max_retries: args.instant_max_retries,
            labels_max_retries: args.labels_max_retries,
            max_query_length_ms: ms(args.max_query_length),
            max_freshness_ms: ms(args.max_freshness),
            align: args.align(),
            partial_response: args.partial_response(),
            forward_headers: args.forward_headers.clone(),
            tenant_header: args.tenant_header.to_ascii_lowercase(),
            default_tenant: args.default_tenant.clone(),
            log_slower_than_ms: args.log_queries_longer_than_ms,
            metrics: Metrics::default(),
        })
    }

    /// The tenant a request is for: its tenant header, else the default tenant.
    fn tenant_of<'a>(&'a self, headers: &'a axum::http::HeaderMap) -> &'a str {
        headers
            .get(self.tenant_header.as_str())
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or(&self.default_tenant)
    }

    /// The headers `--query-frontend.forward-header` names, as the request carries them: what
    /// the parts of a split request carry to the querier.
    fn forwarded(&self, headers: &axum::http::HeaderMap) -> axum::http::HeaderMap {
        let mut passed = axum::http::HeaderMap::new();
        for name in &self.forward_headers {
            for v in headers.get_all(name.as_str()) {
                if let Ok(n) = axum::http::HeaderName::from_bytes(name.as_bytes()) {
                    passed.append(n, v.clone());
                }
            }
        }
        passed
    }

    /// Logs a query that took longer than `--query-frontend.log-queries-longer-than`.
    fn log_if_slow(&self, began: Instant, query: &str, start: i64, end: i64, step: i64) {
        let took = began.elapsed();
        let ms = took.as_millis() as i64;
        if self.log_slower_than_ms < 0
            || (self.log_slower_than_ms > 0 && ms > self.log_slower_than_ms)
        {
            tracing::info!(query, start, end, step, time_taken = ?took, "slow query detected");
        }
    }
}

/// Whether `headers` say `Cache-Control: no-store`.
fn no_store(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("no-store"))
}

/// The cache `config` describes, opened.
fn open_cache(config: CacheConfig) -> Result<ResultsCache, String> {
    match config {
        CacheConfig::InMemory {
            max_bytes,
            max_items,
            validity,
        } => Ok(ResultsCache::Memory(MemoryCache::new(
            max_bytes, max_items, validity,
        ))),
        CacheConfig::Memcached(m) => {
            RemoteCache::memcached(m).map(|r| ResultsCache::Remote(Arc::new(r)))
        }
        CacheConfig::Redis(r) => RemoteCache::redis(*r).map(|r| ResultsCache::Remote(Arc::new(r))),
    }
}

/// The frontend's HTTP routes: range queries, the operational endpoints, everything else
/// passed through.
pub fn router(fe: Arc<Frontend>, registry: Arc<crate::metrics::Registry>) -> Router {
    let ops = crate::http::ops::router(Arc::new(|| true), registry);
    Router::new().fallback(forward).with_state(fe).merge(ops)
}

/// Any request but the operational ones: range queries through the frontend, the rest
/// passed through to the querier.
async fn forward(State(fe): State<Arc<Frontend>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return range::error_body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_data",
                &format!("reading the request body: {e}"),
            );
        }
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    if path == "/api/v1/query_range" && matches!(parts.method, Method::GET | Method::POST) {
        return range::serve(fe, parts.method, query, parts.headers, body).await;
    }
    let (op, tries) = match path.as_str() {
        "/api/v1/query" => ("query", fe.instant_max_retries),
        "/api/v1/labels" => ("label_names", fe.labels_max_retries),
        "/api/v1/series" => ("series", fe.labels_max_retries),
        p if p.starts_with("/api/v1/label/") && p.ends_with("/values") => {
            ("label_values", fe.labels_max_retries)
        }
        _ => ("", 1),
    };
    fe.metrics.count(op);
    if op == "query"
        && let Some(resp) =
            instant::serve(&fe, &parts.method, query.as_deref(), &parts.headers, &body).await
    {
        return resp;
    }
    let label_call = matches!(op, "label_names" | "label_values" | "series");
    if label_call
        && matches!(parts.method, Method::GET | Method::POST)
        && labels::splits(&fe)
        && let Some(resp) = labels::serve(
            fe.clone(),
            parts.method.clone(),
            path.clone(),
            query.clone(),
            parts.headers.clone(),
            body.clone(),
        )
        .await
    {
        return resp;
    }
    let began = Instant::now();
    let ask = Ask {
        method: parts.method,
        path,
        query: query.unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    match fe.downstream.send(&ask, tries).await {
        Ok(a) => {
            if op == "query" {
                fe.log_if_slow(began, &ask.query, 0, 0, 0);
            }
            range::pass_back(a)
        }
        Err(e) => range::error_body(
            StatusCode::BAD_GATEWAY,
            "internal",
            &format!("the querier did not answer: {e}"),
        ),
    }
}

/// Answers compressed with gzip for clients that take it
/// (`--query-frontend.compress-responses`).
async fn compress(req: Request, next: axum::middleware::Next) -> Response {
    let gzip = crate::http::ui::takes_gzip(req.headers());
    let resp = next.run(req).await;
    if !gzip || resp.headers().contains_key(header::CONTENT_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zipped = std::io::Write::write_all(&mut enc, &bytes).and_then(|()| enc.finish());
    match zipped {
        Ok(z) => {
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(z))
        }
        Err(_) => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardableLabels {
    shardable: &'static str,
    /// Thanos labels the metrics of its range-query path so.
    tripperware: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

/// The frontend's metrics, with Thanos's and Cortex's names.
#[derive(Debug)]
struct FrontendCollector(Arc<Frontend>);

impl Collector for FrontendCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        use crate::metrics::{counter, counters, gauges};
        let fe = &self.0;
        counters(
            &mut enc,
            "thanos_query_frontend_queries_total",
            "Total queries passing through query frontend",
            OPS.iter()
                .zip(&fe.metrics.queries)
                .map(|(op, n)| (OpLabels { op }, n.load(Relaxed))),
        )?;
        counter(
            &mut enc,
            "thanos_frontend_split_queries_total",
            "Total number of underlying query requests after the split by interval is applied",
            fe.metrics.split_queries.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "thanos_frontend_downsampled_extra_queries_total",
            "Total number of additional queries for downsampled data",
            fe.metrics.downsampled_extra.load(Relaxed),
        )?;
        if fe.vertical_shards > 1 {
            counters(
                &mut enc,
                "thanos_frontend_sharding_middleware_queries_total",
                "Total number of queries analyzed by the sharding middleware",
                [
                    ("query_range", &fe.metrics.sharding),
                    ("query_instant", &fe.metrics.sharding_instant),
                ]
                .into_iter()
                .flat_map(|(tripperware, counts)| {
                    ["true", "false"]
                        .into_iter()
                        .zip(counts)
                        .map(move |(shardable, n)| {
                            let labels = ShardableLabels {
                                shardable,
                                tripperware,
                            };
                            (labels, n.load(Relaxed))
                        })
                }),
            )?;
        }
        counter(
            &mut enc,
            "cortex_query_frontend_retries_total",
            "Requests to the downstream querier tried again after a failure",
            fe.downstream.retries.load(Relaxed),
        )?;
        let counts =
            |c: &Option<ResultsCache>| c.as_ref().map(ResultsCache::counts).unwrap_or_default();
        let caches = [
            ("frontend.query-range", counts(&fe.cache)),
            ("frontend.labels", counts(&fe.labels.cache)),
        ];
        let by_name =
            |f: fn(&CacheCounts) -> u64| caches.map(|(name, c)| (NameLabels { name }, f(&c)));
        let by_cache =
            |f: fn(&CacheCounts) -> u64| caches.map(|(cache, c)| (CacheLabels { cache }, f(&c)));
        counters(
            &mut enc,
            "cortex_cache_fetched_keys_total",
            "Total count of keys requested from cache.",
            by_name(|c| c.gets),
        )?;
        counters(
            &mut enc,
            "cortex_cache_hits_total",
            "Total count of keys found in cache.",
            by_name(|c| c.hits),
        )?;
        counters(
            &mut enc,
            "gauntlet_frontend_cache_failures_total",
            "Lookups and stores the results cache failed (down, slow or answering nonsense).",
            by_name(|c| c.failures),
        )?;
        counters(
            &mut enc,
            "gauntlet_frontend_cache_skipped_stores_total",
            "Stores skipped: larger than max_item_size, or max_async_concurrency reached.",
            by_name(|c| c.skipped),
        )?;
        counters(
            &mut enc,
            "querier_cache_added_total",
            "The total number of Put calls on the cache",
            by_cache(|c| c.added),
        )?;
        counters(
            &mut enc,
            "querier_cache_evicted_total",
            "The total number of evicted entries",
            by_cache(|c| c.evicted),
        )?;
        gauges(
            &mut enc,
            "querier_cache_entries",
            "The total number of entries",
            by_cache(|c| c.entries as u64).map(|(l, v)| (l, v as i64)),
        )?;
        gauges(
            &mut enc,
            "querier_cache_memory_bytes",
            "The current cache size in bytes",
            by_cache(|c| c.bytes).map(|(l, v)| (l, v as i64)),
        )?;
        Ok(())
    }
}

/// Runs the frontend until SIGINT or SIGTERM.
pub fn run(args: FrontendArgs, budget: Arc<MemoryBudget>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-net")
        .thread_keep_alive(crate::memory::IDLE_THREAD_KEEP_ALIVE)
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(args, budget, crate::http::shutdown_signal()))
}

/// Serves the frontend until `shutdown` resolves.
pub async fn serve(
    args: FrontendArgs,
    budget: Arc<MemoryBudget>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let web = args.http.load()?;
    serve_settings(
        &args.settings,
        &args.downstream_url,
        &args.http_address,
        &web,
        budget,
        shutdown,
    )
    .await
}

/// Serves the frontend `settings` describe on `address`, in front of the querier at
/// `downstream_url`, until `shutdown` resolves (`gauntlet all` runs one in front of its own
/// query API this way).
pub async fn serve_settings(
    settings: &FrontendSettings,
    downstream_url: &str,
    address: &str,
    web: &crate::http::webconfig::WebConfig,
    budget: Arc<MemoryBudget>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let fe = Arc::new(Frontend::new(settings, downstream_url)?);
    let mut registry = crate::metrics::Registry::default();
    let server_metrics = crate::metrics::register_common(&mut registry, budget);
    registry.register_collector(Box::new(FrontendCollector(fe.clone())));
    let mut app = router(fe.clone(), Arc::new(registry));
    if settings.compress_responses {
        app = app.layer(axum::middleware::from_fn(compress));
    }
    tracing::info!(
        downstream = %downstream_url,
        split_interval = ?settings.split_interval,
        cache = fe.cache.is_some(),
        labels_cache = fe.labels.cache.is_some(),
        "query frontend starting"
    );
    crate::http::serve(address, app, web, &server_metrics, shutdown).await?;
    tracing::info!("query frontend stopped");
    Ok(())
}
