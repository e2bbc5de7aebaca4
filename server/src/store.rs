//! `gauntlet store`: the store gateway. Serves the blocks of an object-storage bucket over the
//! Thanos StoreAPI, so an existing Thanos Querier can list it as an endpoint.

use crate::now_ms;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::relabel;
use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
use gauntlet_engine::store::{BlockSelection, BucketStore, Limits, StoreOptions, TimeBound};
use gauntlet_proto::thanos;

use crate::grpc::StoreService;
use crate::http::ops;
use crate::metrics::{self, Registry};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// Flags of `gauntlet store`, named as Thanos names them where the meaning is the same.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Where the bucket is.
    #[command(flatten)]
    objstore: ObjstoreArgs,
    /// Address the gRPC StoreAPI listens on.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: SocketAddr,
    /// Address /metrics, /-/ready and /-/healthy listen on.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// Local directory for index-headers.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    /// How often the bucket is listed for new and deleted blocks (e.g. 15m, 30s).
    #[arg(long = "sync-block-duration", default_value = "15m", value_parser = humantime::parse_duration)]
    sync_block_duration: Duration,
    /// Blocks whose deletion mark is older than this are no longer served.
    #[arg(long = "ignore-deletion-marks-delay", default_value = "24h", value_parser = humantime::parse_duration)]
    ignore_deletion_marks_delay: Duration,
    /// Blocks a bucket sync reads and loads at once (each new one holds its index's symbol
    /// and postings offset tables while its index-header is built).
    #[arg(long = "block-sync-concurrency", default_value_t = gauntlet_engine::store::DEFAULT_BLOCK_SYNC_CONCURRENCY as u64, value_parser = clap::value_parser!(u64).range(1..))]
    block_sync_concurrency: u64,
    /// Which blocks are served from their Parquet shards (`N.labels.parquet` and
    /// `N.chunks.parquet` in the block's directory): auto (blocks without a TSDB index),
    /// prefer (every block that has shards), off.
    #[arg(long = "store.parquet", default_value = "auto")]
    parquet: gauntlet_engine::store::ParquetMode,
    /// Byte budget of the postings and series cache (e.g. 250MB; units are powers of 1024).
    #[arg(long = "index-cache-size", default_value = "250MB", value_parser = parse_bytes)]
    index_cache_size: u64,
    /// Byte budget of the in-memory cache of chunk pages read for selections of up to 64k
    /// series per block (0 = no cache).
    #[arg(long = "store.chunk-cache-size", default_value = "128MB", value_parser = parse_bytes)]
    chunk_cache_size: u64,
    /// Most series one Series call may touch (0 = no limit).
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    limit_series: u64,
    /// Most samples one Series call may touch, counted as chunks × 120 (0 = no limit).
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    limit_samples: u64,
    /// Most chunk bytes one Series call may fetch (0 = no limit).
    #[arg(long = "store.limits.request-bytes", default_value = "0", value_parser = parse_bytes)]
    limit_bytes: u64,
    /// Most Series calls served at once; more are refused with ResourceExhausted (0 = no
    /// limit).
    #[arg(long = "store.grpc.series-max-concurrency", default_value_t = 20)]
    series_max_concurrency: usize,
    /// How the engine cores read local files: `auto` (io_uring where a ring can be created,
    /// else pread), `io-uring` (fail if unavailable) or `pread`.
    #[arg(long = "io-backend", default_value = "auto")]
    io_backend: IoChoice,
    /// Engine cores (threads pinned one per CPU); 0 = one per CPU this process may use.
    #[arg(long = "engine.cores", default_value_t = 0)]
    engine_cores: usize,
    /// TLS of the gRPC server, and the HTTP server's web configuration file.
    #[command(flatten)]
    security: crate::tls::ServerSecurityArgs,
    /// Which blocks this store serves, to shard a bucket across stores.
    #[command(flatten)]
    selection: SelectionArgs,
    /// Tenancy (`--query.enforce-tenancy` and its header, default and label): every StoreAPI
    /// read and `/api/v1/blocks` held to the caller's tenant, by the blocks' external labels.
    #[command(flatten)]
    tenancy: crate::query::tenancy::TenancyFlags,
}

/// Flags choosing the blocks a store serves, as Thanos's store names them: a time window and
/// relabel rules over each block's external labels plus `__block_id`.
#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// Start of the time range served: RFC3339 or a duration relative to now (`-2w`, `-36h`;
    /// negative is the past). Blocks ending before it are not loaded and requests are cut to it.
    #[arg(long = "min-time", default_value = "0000-01-01T00:00:00Z", value_parser = parse_time_bound)]
    min_time: TimeBound,
    /// End of the time range served: RFC3339 or a duration relative to now. Blocks starting
    /// after it are not loaded and requests are cut to it.
    #[arg(long = "max-time", default_value = "9999-12-31T23:59:59Z", value_parser = parse_time_bound)]
    max_time: TimeBound,
    /// Prometheus relabel rules (YAML list) run over each block's external labels plus
    /// `__block_id`; blocks left with no labels are not served (`hashmod` shards evenly).
    #[arg(long = "selector.relabel-config")]
    relabel_config: Option<String>,
    /// As --selector.relabel-config, from a file.
    #[arg(long = "selector.relabel-config-file")]
    relabel_config_file: Option<PathBuf>,
}

impl SelectionArgs {
    /// The selection the flags give; errors name the flag and, for YAML, the line.
    pub fn selection(&self) -> anyhow::Result<BlockSelection> {
        let rules = match (&self.relabel_config, &self.relabel_config_file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "--selector.relabel-config and --selector.relabel-config-file are both given; use one"
            ),
            (Some(yaml), None) => relabel::parse_rules(yaml)
                .map_err(|e| anyhow::anyhow!("--selector.relabel-config: {e}"))?,
            (None, Some(path)) => {
                let yaml = std::fs::read_to_string(path).with_context(|| {
                    format!("reading --selector.relabel-config-file {}", path.display())
                })?;
                relabel::parse_rules(&yaml).map_err(|e| {
                    anyhow::anyhow!("--selector.relabel-config-file {}: {e}", path.display())
                })?
            }
            (None, None) => Vec::new(),
        };
        let selection = BlockSelection {
            min_time: self.min_time,
            max_time: self.max_time,
            relabel: Arc::new(rules),
        };
        let (min, max) = selection.window(now_ms());
        if min > max {
            anyhow::bail!(
                "--min-time ({}) is after --max-time ({})",
                ms_text(min),
                ms_text(max)
            );
        }
        Ok(selection)
    }
}

/// An instant for messages: RFC3339 where it fits the calendar humantime prints, else ms.
fn ms_text(ms: i64) -> String {
    u64::try_from(ms)
        .ok()
        .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms))
        .map_or_else(
            || format!("{ms} ms"),
            |t| humantime::format_rfc3339_millis(t).to_string(),
        )
}

/// Parses `--min-time` / `--max-time`: RFC3339 (`2025-01-01T00:00:00Z`) or a Prometheus
/// duration relative to now, negative for the past (`-2w`, `-36h`, `1h30m`).
pub fn parse_time_bound(s: &str) -> Result<TimeBound, String> {
    if let Some(ms) = crate::http::params::parse_rfc3339(s) {
        return Ok(TimeBound::At(ms));
    }
    let (neg, d) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    match gauntlet_promql::parse_duration_ms(d) {
        Some(ms) => Ok(TimeBound::FromNow(if neg { -ms } else { ms })),
        None => Err(format!(
            "{s:?} is neither an RFC3339 time (2006-01-02T15:04:05Z) nor a duration (-2w, -36h)"
        )),
    }
}

/// The store options the engine-core flags give.
pub(crate) fn runtime_config(io: IoChoice, cores: usize) -> RuntimeConfig {
    RuntimeConfig {
        cores,
        io,
        pin: true,
        ..RuntimeConfig::default()
    }
}

/// Parses a byte size like `250MB`, `1GiB`, `512KB` or `1048576` (units are powers of 1024, as
/// in Thanos).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte size"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" | "K" => 1 << 10,
        "MB" | "MIB" | "M" => 1 << 20,
        "GB" | "GIB" | "G" => 1 << 30,
        "TB" | "TIB" | "T" => 1 << 40,
        u => return Err(format!("{s:?}: unknown unit {u:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The bucket `--objstore.config` (YAML text) or `--objstore.config-file` names, if either
/// is given (the text wins).
pub fn objstore_config(
    yaml: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<BucketConfig>> {
    let (yaml, flag) = match (yaml, file) {
        (Some(y), _) => (y.to_string(), "--objstore.config".to_string()),
        (None, Some(p)) => (
            std::fs::read_to_string(p)
                .with_context(|| format!("reading --objstore.config-file {}", p.display()))?,
            format!("--objstore.config-file {}", p.display()),
        ),
        (None, None) => return Ok(None),
    };
    // The parser's message says the line and column.
    let cfg = BucketConfig::parse(&yaml).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(Some(cfg))
}

/// Where the bucket is, for a role that cannot run without one (Thanos's flags).
#[derive(Debug, Clone, Args)]
pub struct ObjstoreArgs {
    /// Objstore configuration file (Thanos YAML: `type:` FILESYSTEM, S3, GCS or AZURE, and
    /// `config:`).
    #[arg(
        long = "objstore.config-file",
        required_unless_present = "objstore_config"
    )]
    pub objstore_config_file: Option<PathBuf>,
    /// Objstore configuration as YAML text, instead of a file.
    #[arg(long = "objstore.config")]
    pub objstore_config: Option<String>,
}

impl ObjstoreArgs {
    /// The bucket the flags name ([`objstore_config`]); an error when neither is given.
    pub fn bucket_config(&self) -> anyhow::Result<BucketConfig> {
        objstore_config(
            self.objstore_config.as_deref(),
            self.objstore_config_file.as_deref(),
        )?
        .context("--objstore.config-file is required")
    }
}

/// Runs the store gateway until SIGINT or SIGTERM.
pub fn run(args: StoreArgs, budget: Arc<MemoryBudget>) -> anyhow::Result<()> {
    let cfg = args.objstore.bucket_config()?;
    let selection = args.selection.selection()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-net")
        .thread_keep_alive(crate::memory::IDLE_THREAD_KEEP_ALIVE)
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(args, cfg, selection, budget))
}

async fn serve(
    args: StoreArgs,
    cfg: BucketConfig,
    selection: BlockSelection,
    budget: Arc<MemoryBudget>,
) -> anyhow::Result<()> {
    let security = args.security.load()?;
    let tenancy = args.tenancy.tenancy()?;
    let bucket = Bucket::open(&cfg)?;
    let opts = StoreOptions {
        index_cache_bytes: args.index_cache_size,
        chunk_cache_bytes: args.chunk_cache_size,
        ignore_deletion_marks_delay: args.ignore_deletion_marks_delay,
        block_sync_concurrency: args.block_sync_concurrency as usize,
        parquet: args.parquet,
        limits: Limits {
            series: args.limit_series,
            samples: args.limit_samples,
            bytes: args.limit_bytes,
        },
        runtime: runtime_config(args.io_backend, args.engine_cores),
        selection,
        ..StoreOptions::default()
    };
    let store = Arc::new(BucketStore::open(bucket, &args.data_dir, opts)?);
    store.set_idle_hook(crate::memory::idle_hook());
    tracing::info!(bucket = %cfg.describe(), data_dir = %args.data_dir.display(), "store starting");

    // Sync in the background: Info answers with an error until the first sync is done, which
    // is how a Querier learns this endpoint is not ready yet.
    let syncer = store.clone();
    let every = args.sync_block_duration.max(Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            if let Err(e) = syncer.sync().await {
                tracing::warn!(error = %e, "bucket sync failed; serving the blocks loaded before");
            }
            tokio::time::sleep(every).await;
        }
    });

    let grpc_listener = tokio::net::TcpListener::bind(args.grpc_address)
        .await
        .with_context(|| format!("binding --grpc-address {}", args.grpc_address))?;
    let http_listener = tokio::net::TcpListener::bind(args.http_address)
        .await
        .with_context(|| format!("binding --http-address {}", args.http_address))?;
    tracing::info!(grpc = %grpc_listener.local_addr()?, http = %http_listener.local_addr()?, "listening");

    let mut registry = Registry::default();
    let server_metrics = crate::metrics::register_common(&mut registry, budget.clone());
    register_metrics(&mut registry, store.clone());
    let svc = StoreService::new(store.clone(), args.series_max_concurrency)
        .with_tenancy(tenancy.clone())
        .with_budget(&budget);
    let grpc = tonic::transport::Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer::new(&server_metrics))
        .layer(crate::memory::GrpcGuardLayer::new(&budget))
        .layer(crate::grpc::RequestLimitsLayer)
        .add_service(crate::grpc::StoreApi::new(svc.clone()))
        .add_service(thanos::info::info_server::InfoServer::new(svc))
        .serve_with_incoming_shutdown(
            crate::tls::Incoming::new(grpc_listener, security.grpc)?,
            shutdown(),
        );
    let ready = store.clone();
    let app = ops::router(Arc::new(move || ready.is_ready()), Arc::new(registry)).merge(
        crate::http::status::router(
            None,
            Some(crate::http::status::bucket_blocks(
                store.clone(),
                None,
                true,
            )),
            tenancy,
        ),
    );
    let http = crate::http::serve_on(
        http_listener,
        app,
        &security.http,
        &server_metrics,
        shutdown(),
    );
    let (g, h) = tokio::join!(grpc, http);
    g.context("gRPC server")?;
    h.context("HTTP server")?;
    tracing::info!("store stopped");
    Ok(())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Registers the store's metrics in `registry`, read from `store` at each scrape.
pub(crate) fn register_metrics(registry: &mut Registry, store: Arc<BucketStore>) {
    registry.register_collector(Box::new(StoreCollector(store)));
}

/// The store's metrics, named as Thanos's store gateway names them where the meaning is the
/// same.
#[derive(Debug)]
struct StoreCollector(Arc<BucketStore>);

impl Collector for StoreCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let e = &mut enc;
        let m = s.metrics();
        let b = s.bucket().stats();
        let blocks = s.blocks();
        let header_bytes: u64 = blocks.iter().map(|b| b.header.file_size()).sum();
        let filter_bytes: usize = blocks
            .iter()
            .filter_map(|b| b.label_filter())
            .map(|f| f.encoded_len())
            .sum();
        let f = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        metrics::gauge(
            e,
            "thanos_bucket_store_blocks_loaded",
            "Number of currently loaded blocks.",
            (blocks.len() + s.parquet_blocks().len()) as u64,
        )?;
        metrics::gauge(
            e,
            "gauntlet_store_parquet_blocks_loaded",
            "Number of currently loaded blocks served from their Parquet shards.",
            s.parquet_blocks().len() as u64,
        )?;
        for (name, help, v) in [
            (
                "thanos_bucket_store_block_loads_total",
                "Total number of remote block loads attempted.",
                f(&m.block_loads) + f(&m.block_load_failures),
            ),
            (
                "thanos_bucket_store_block_load_failures_total",
                "Total number of failed remote block loads (corrupt or unreadable blocks).",
                f(&m.block_load_failures),
            ),
            (
                "thanos_bucket_store_block_drops_total",
                "Total number of local blocks that were dropped.",
                f(&m.block_drops),
            ),
            (
                "thanos_blocks_meta_syncs_total",
                "Total blocks metadata synchronization attempts.",
                f(&m.syncs),
            ),
            (
                "thanos_blocks_meta_sync_failures_total",
                "Total blocks metadata synchronization failures.",
                f(&m.sync_failures),
            ),
            (
                "thanos_bucket_store_series_requests_total",
                "Series calls served.",
                f(&m.series_requests),
            ),
            (
                "thanos_bucket_store_series_returned_total",
                "Series returned by Series calls.",
                f(&m.series_returned),
            ),
            (
                "thanos_bucket_store_chunks_returned_total",
                "Chunks returned by Series calls.",
                f(&m.chunks_returned),
            ),
            (
                "thanos_bucket_store_series_limit_refusals_total",
                "Series calls refused by a request limit.",
                f(&m.limit_refusals),
            ),
            (
                "thanos_objstore_bucket_operations_total",
                "Total number of bucket operations.",
                f(&b.requests),
            ),
            (
                "thanos_objstore_bucket_operation_failures_total",
                "Total number of failed bucket operations.",
                f(&b.failures),
            ),
            (
                "gauntlet_objstore_bucket_read_bytes_total",
                "Bytes read from the bucket.",
                f(&b.bytes),
            ),
        ] {
            metrics::counter(e, name, help, v)?;
        }
        metrics::gauge(
            e,
            "gauntlet_engine_cores",
            "Engine cores (pinned threads) serving the store.",
            s.cores() as u64,
        )?;
        metrics::counter(
            e,
            "gauntlet_bucket_store_label_filter_excluded_blocks_total",
            "Blocks skipped by Series calls because their label filter ruled out every match.",
            f(&m.label_filter_excluded),
        )?;
        metrics::counter(
            e,
            "gauntlet_bucket_store_label_filter_builds_total",
            "Label filters built or rebuilt (missing or damaged files) at block load.",
            f(&m.label_filter_builds),
        )?;
        metrics::gauge(
            e,
            "gauntlet_bucket_store_label_filter_bytes",
            "Bytes of label filters of loaded blocks.",
            filter_bytes as u64,
        )?;
        metrics::gauge(
            e,
            "gauntlet_bucket_store_index_header_bytes",
            "Bytes of index-header files of loaded blocks.",
            header_bytes,
        )?;
        for (prefix, what, c) in [
            ("thanos_store_index_cache", "index cache", s.cache_stats()),
            (
                "gauntlet_store_chunk_cache",
                "chunk page cache",
                s.chunk_cache_stats(),
            ),
        ] {
            for (name, help, v) in [
                ("items", "Items in the", c.items),
                ("total_size_bytes", "Bytes in the", c.bytes),
                ("max_size_bytes", "Byte budget of the", c.budget),
            ] {
                let (name, help) = (format!("{prefix}_{name}"), format!("{help} {what}."));
                metrics::gauge(e, &name, &help, v)?;
            }
            for (name, help, v) in [
                ("hits_total", "Hits of the", c.hits),
                ("requests_total", "Lookups in the", c.hits + c.misses),
                ("items_evicted_total", "Evictions from the", c.evictions),
            ] {
                let (name, help) = (format!("{prefix}_{name}"), format!("{help} {what}."));
                metrics::counter(e, &name, &help, v)?;
            }
        }
        for (pool, what, p) in [
            ("read", "chunk and index reads", s.read_pool_stats()),
            ("wire", "written Series frames", s.wire_pool_stats()),
        ] {
            for (name, help, v) in [
                (
                    "idle_bytes",
                    "Bytes of idle buffers kept for reuse, for",
                    p.idle_bytes,
                ),
                (
                    "max_idle_bytes",
                    "Byte budget of the idle buffers kept for reuse, for",
                    p.budget_bytes,
                ),
            ] {
                let name = format!("gauntlet_store_{pool}_buffer_pool_{name}");
                metrics::gauge(e, &name, &format!("{help} {what}."), v)?;
            }
        }
        metrics::gauges(
            e,
            "thanos_blocks_meta_synced",
            "Blocks of the bucket by what the last sync did with them.",
            [
                ("loaded", blocks.len() as u64),
                ("time-excluded", m.time_excluded.load(Relaxed)),
                ("label-excluded", m.label_excluded.load(Relaxed)),
            ]
            .map(|(state, v)| ([("state", state)], v)),
        )?;
        // The I/O backend as an info-style gauge, so a dashboard shows which one was chosen.
        metrics::gauges(
            e,
            "gauntlet_engine_io_backend",
            "I/O backend of the engine cores (value 1).",
            [([("backend", s.io_backend().to_string())], 1u64)],
        )?;
        let depths = s.core_queue_depths();
        metrics::gauges(
            e,
            "gauntlet_engine_core_queue_depth",
            "Calls waiting in an engine core's queue.",
            depths
                .iter()
                .enumerate()
                .map(|(core, depth)| ([("core", core.to_string())], *depth as u64)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("250MB"), Ok(250 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert!(parse_bytes("x").is_err());
        assert!(parse_bytes("10XB").is_err());
    }
}
