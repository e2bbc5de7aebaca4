//! `gauntlet all`: receive, store and query in one process over a filesystem bucket, the HTTP
//! API reading blocks and the receiver's heads in-process without a gRPC hop. Remote write is
//! taken on `--remote-write.address` (and on the HTTP address); the receiver keeps its tenants
//! under `<data-dir>/.gauntlet/receive/` and ships the blocks it cuts into the bucket itself.
//! `--demo` first fills an empty bucket with a day of generated data.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use gauntlet_datagen::{Families, GenConfig, write_blocks_dir};
use gauntlet_engine::block::block_dirs;
use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::shard::IoChoice;
use gauntlet_engine::store::{BucketStore, StoreOptions};
use gauntlet_proto::thanos;

use crate::grpc::StoreService;
use crate::http::api::{ApiState, router};
use crate::http::ops;
use crate::query::store::StoreSource;
use crate::query::{ReadOptions, ReadView, Source};
use crate::receive::store as receive_store;
use crate::receive::tenants::Tenants;
use crate::receive::{ReceiveArgs, Receiver};
use gauntlet_engine::labels::Matcher;
use gauntlet_engine::query::{
    Queryable, SelectHints, Series, SeriesStream, VecStream, merge_series,
};

/// Flags of `gauntlet all`.
#[derive(Debug, Args)]
pub struct AllArgs {
    /// The filesystem bucket: a directory of blocks (created if missing). Index-headers are
    /// kept in its `.gauntlet/` subdirectory.
    #[arg(long = "data-dir", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address of the HTTP API, /metrics, /-/ready and /-/healthy.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: String,
    /// Address of the StoreAPI.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: std::net::SocketAddr,
    /// Address remote write (`/api/v1/receive`, `/api/v1/write`) listens on; the HTTP
    /// address takes it too.
    #[arg(long = "remote-write.address", default_value = "0.0.0.0:19291")]
    pub remote_write_address: std::net::SocketAddr,
    /// Fill an empty bucket with a day of generated data (10 hosts, 15 s scrapes) first.
    #[arg(long)]
    pub demo: bool,
    /// How often the bucket is listed for new and deleted blocks.
    #[arg(long = "sync-block-duration", default_value = "1m", value_parser = crate::query::cmd::duration)]
    pub sync_every: Duration,
    #[command(flatten)]
    pub promql: crate::query::cmd::PromqlFlags,
    /// How the engine cores read local files: `auto`, `io-uring` or `pread`.
    #[arg(long = "io-backend", default_value = "auto")]
    pub io_backend: IoChoice,
    /// Engine cores (threads pinned one per CPU); 0 = one per CPU this process may use.
    #[arg(long = "engine.cores", default_value_t = 0)]
    pub engine_cores: usize,
    /// Byte budget of the in-memory cache of chunk pages read for selections of up to 64k
    /// series per block (0 = no cache).
    #[arg(long = "store.chunk-cache-size", default_value = "128MB", value_parser = crate::store::parse_bytes)]
    pub chunk_cache_size: u64,
    /// The receiver's WAL: `off` answers a write once its records are in the file (a process
    /// kill loses nothing), `batch` also fsyncs them (a power loss loses nothing).
    #[arg(long = "tsdb.wal-fsync", default_value = "off", value_parser = ["off", "batch"])]
    pub wal_fsync: String,
    /// Out-of-order samples this far behind a tenant's newest are kept (0s: none).
    #[arg(long = "tsdb.out-of-order.time-window", default_value = "0s", value_parser = crate::query::cmd::duration)]
    pub ooo_window: Duration,
    /// How often the bucket is compacted, downsampled and cleaned in the background, as
    /// `gauntlet compact` does it (0s: never).
    #[arg(long = "compact.interval", default_value = "5m", value_parser = crate::query::cmd::duration)]
    pub compact_every: Duration,
    /// Blocks younger than this are left out of background compaction.
    #[arg(long = "compact.consistency-delay", default_value = "30m", value_parser = crate::query::cmd::duration)]
    pub compact_consistency_delay: Duration,
    /// Share of one CPU a background merge may use; the rest stays with queries and writes.
    #[arg(long = "compact.cpu-share", default_value_t = 0.25)]
    pub compact_cpu_share: f64,
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: AllArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    if args.demo {
        fill_demo(&args.data_dir)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-net")
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: AllArgs) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&args.data_dir)?;
    let bucket_config = BucketConfig::filesystem(&dir)?;
    let bucket = Bucket::open(&bucket_config)?;
    let store = Arc::new(BucketStore::open(
        bucket,
        &dir.join(".gauntlet"),
        StoreOptions {
            runtime: crate::store::runtime_config(args.io_backend, args.engine_cores),
            chunk_cache_bytes: args.chunk_cache_size,
            ..StoreOptions::default()
        },
    )?);
    // Serve only after the first sync, so the first query already sees every block.
    let report = store.sync().await.context("first bucket sync")?;
    tracing::info!(dir = %dir.display(), blocks = store.blocks().len(), ?report, "bucket synced");
    let syncer = store.clone();
    let every = args.sync_every.max(Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = syncer.sync().await {
                tracing::warn!(error = %e, "bucket sync failed; serving the blocks loaded before");
            }
        }
    });

    // The receiver ships the blocks it cuts into the bucket this process serves.
    let receiver =
        Arc::new(Receiver::start(&receive_args(&args, &dir)?, Some(bucket_config.clone())).await?);

    // Reads from the local bucket cannot fail partially.
    let config = args.promql.api_config(true)?;
    let state = Arc::new(ApiState {
        source: Arc::new(AllSource {
            store: StoreSource(store.clone()),
            tenants: receiver.tenants.clone(),
        }),
        config,
    });
    let compact_metrics = Arc::new(crate::compact::CompactMetrics::default());
    if !args.compact_every.is_zero() {
        spawn_compaction(&args, &dir, &bucket_config, compact_metrics.clone())?;
    }
    let ready = store.clone();
    let metrics = store.clone();
    let recv_metrics = receiver.clone();
    let comp_metrics = compact_metrics.clone();
    let app = router(state)
        .merge(crate::http::ui::router())
        .merge(crate::http::status::router(
            Some(crate::http::status::in_process_stores(
                StoreService::new(store.clone(), 0),
                receiver.store(),
                format!("bucket {}", dir.display()),
            )),
            Some(crate::http::status::bucket_blocks(store.clone())),
        ))
        .merge(receiver.write_router())
        .merge(ops::router(
            Arc::new(move || ready.is_ready()),
            Arc::new(move || {
                let mut m = crate::store::render_metrics(&metrics);
                m.push_str(&recv_metrics.render_metrics());
                m.push_str(&crate::compact::render_metrics(&comp_metrics));
                m
            }),
        ));
    let rw_listener = tokio::net::TcpListener::bind(args.remote_write_address)
        .await
        .with_context(|| {
            format!(
                "binding --remote-write.address {}",
                args.remote_write_address
            )
        })?;
    let embedded =
        tokio::spawn(receiver.serve_embedded(rw_listener, crate::http::shutdown_signal()));
    let svc = StoreService::new(store, 20);
    tracing::info!(address = %args.grpc_address, "StoreAPI listening");
    let grpc = tonic::transport::Server::builder()
        .add_service(crate::grpc::StoreApi::new(svc.clone()))
        .add_service(thanos::info::info_server::InfoServer::new(svc))
        .serve_with_shutdown(args.grpc_address, crate::http::shutdown_signal());
    let http = crate::http::serve(&args.http_address, app, crate::http::shutdown_signal());
    let (g, h) = tokio::join!(grpc, http);
    match embedded.await {
        Ok(r) => r.context("receiver")?,
        Err(e) => anyhow::bail!("receiver: {e}"),
    }
    g.context("gRPC server")?;
    h
}

/// Runs compaction passes over the local bucket every `--compact.interval` in the
/// background, each merge held to `--compact.cpu-share` of a CPU, until SIGTERM.
fn spawn_compaction(
    args: &AllArgs,
    dir: &Path,
    bucket_config: &BucketConfig,
    metrics: Arc<crate::compact::CompactMetrics>,
) -> anyhow::Result<()> {
    let share = args.compact_cpu_share;
    if !(share > 0.0 && share <= 1.0) {
        anyhow::bail!("--compact.cpu-share={share}: want more than 0 and at most 1");
    }
    let cfg = crate::compact::CompactConfig {
        data_dir: dir.join(".gauntlet/compact"),
        replica_labels: Vec::new(),
        dedup: gauntlet_engine::compact::Dedup::Chain,
        vertical: false,
        retention: [Duration::ZERO; 3],
        delete_delay: Duration::from_secs(48 * 3600),
        downsampling: true,
        consistency_delay: args.compact_consistency_delay,
        ranges: gauntlet_engine::compact::plan::THANOS_RANGES_MS.to_vec(),
        cpu_share: (share < 1.0).then_some(share),
        concurrency: 1,
        max_index_bytes: gauntlet_engine::index::writer::MAX_INDEX_SIZE,
    };
    let bucket = Bucket::open(bucket_config)?;
    let every = args.compact_every;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on_signal = stop.clone();
    tokio::spawn(async move {
        crate::http::shutdown_signal().await;
        on_signal.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            if let Err(e) = crate::compact::run_pass(&bucket, &cfg, &metrics, &stop).await {
                tracing::warn!(error = %format!("{e:#}"), "background compaction pass failed; retrying next interval");
            }
        }
    });
    Ok(())
}

/// The receiver's flags inside `all`: tenants under `<data>/.gauntlet/receive/`, defaults
/// otherwise (the bucket its blocks are shipped to is given to [`Receiver::start`]).
fn receive_args(args: &AllArgs, dir: &Path) -> anyhow::Result<ReceiveArgs> {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        receive: ReceiveArgs,
    }
    let mut r = <Defaults as clap::Parser>::try_parse_from(["receive"])?.receive;
    r.tsdb_path = dir.join(".gauntlet/receive");
    r.remote_write_address = args.remote_write_address;
    r.engine_cores = args.engine_cores;
    r.wal_fsync = args.wal_fsync.clone();
    r.ooo_window = args.ooo_window;
    Ok(r)
}

/// What `all`'s PromQL reads: the bucket, and the receiver's tenants (heads and blocks not
/// yet in the bucket's last sync), series of equal labels merged.
#[derive(Debug, Clone)]
struct AllSource {
    store: StoreSource,
    tenants: Arc<Tenants>,
}

impl Source for AllSource {
    fn view(&self, opts: &ReadOptions) -> gauntlet_engine::Result<Arc<dyn ReadView>> {
        Ok(Arc::new(AllView {
            store: self.store.view(opts)?,
            tenants: self.tenants.clone(),
        }))
    }
}

struct AllView {
    store: Arc<dyn ReadView>,
    tenants: Arc<Tenants>,
}

impl Queryable for AllView {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> gauntlet_engine::Result<Vec<Series>> {
        let received = receive_store::select(&self.tenants, matchers, mint, maxt, hints)?;
        let stored = self.store.select(matchers, mint, maxt, hints)?;
        Ok(merge_series(vec![stored, received]))
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> gauntlet_engine::Result<Box<dyn SeriesStream + 'a>> {
        // Without received series the bucket's own stream serves, keeping its bounded memory;
        // with them the two are merged whole.
        let received = receive_store::select(&self.tenants, matchers, mint, maxt, hints)?;
        if received.is_empty() {
            return self.store.select_stream(matchers, mint, maxt, hints);
        }
        let stored = self.store.select(matchers, mint, maxt, hints)?;
        Ok(Box::new(VecStream::new(merge_series(vec![
            stored, received,
        ]))))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        let mut names = self.store.label_names(matchers, mint, maxt)?;
        names.extend(receive_store::label_names(
            &self.tenants,
            matchers,
            mint,
            maxt,
        )?);
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        let mut values = self.store.label_values(name, matchers, mint, maxt)?;
        values.extend(receive_store::label_values(
            &self.tenants,
            name,
            matchers,
            mint,
            maxt,
        )?);
        values.sort();
        values.dedup();
        Ok(values)
    }
}

impl ReadView for AllView {
    fn warnings(&self) -> Vec<String> {
        self.store.warnings()
    }
}

/// Writes a day of demo data ending now, unless the bucket holds blocks.
fn fill_demo(dir: &Path) -> anyhow::Result<()> {
    if !block_dirs(dir)?.is_empty() {
        tracing::info!("bucket already holds blocks; --demo leaves it as it is");
        return Ok(());
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let hour = 3_600_000;
    let step = 15_000;
    // Ending now, so instant queries at the current time find the newest samples.
    let end = now_ms / step * step;
    let cfg = GenConfig {
        targets: 10,
        scrape_interval_ms: step,
        start_ms: end - 24 * hour,
        duration_ms: 24 * hour,
        churn_every_ms: 30 * 60_000,
        churn_fraction: 0.25,
        seed: 1,
        families: Families::default(),
        ..GenConfig::default()
    };
    let started = Instant::now();
    tracing::info!("generating a day of demo data");
    let metas = write_blocks_dir(&cfg, dir).context("writing demo blocks")?;
    tracing::info!(
        blocks = metas.len(),
        seconds = started.elapsed().as_secs_f64(),
        "demo data written"
    );
    Ok(())
}
