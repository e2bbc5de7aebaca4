//! `gauntlet all`: receive, store, query and compact in one process over a filesystem bucket,
//! the HTTP API reading blocks and the receiver's heads in-process without a gRPC hop. Remote
//! write is taken on `--remote-write.address` (and on the HTTP address); the receiver keeps its
//! tenants under `<data-dir>/.gauntlet/receive/` and ships the blocks it cuts into the bucket
//! itself, where background passes compact and downsample them every `--compact.interval`.
//! `--demo` first fills an empty bucket with a day of generated data.

use crate::now_ms;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use gauntlet_datagen::{
    Families, GenConfig, Generator, Sample, encode_write_request, write_blocks_dir_with,
};
use gauntlet_engine::block::block_dirs;
use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::budget::{MemoryBudget, Part, WHOLE};
use gauntlet_engine::shard::IoChoice;
use gauntlet_engine::store::{BucketStore, StoreOptions};
use gauntlet_proto::thanos;
use prometheus_client::metrics::counter::Counter;
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::grpc::StoreService;
use crate::http::api::{ApiState, router};
use crate::http::ops;
use crate::memory::{FrameSender, SendError};
use crate::query::store::StoreSource;
use crate::query::{ReadOptions, ReadView, Source};
use crate::receive::store::{self as receive_store, ReceiveStore};
use crate::receive::tenants::Tenants;
use crate::receive::{ReceiveArgs, Receiver};
use gauntlet_engine::head::HeadRead;
use gauntlet_engine::labels::Matcher;
use gauntlet_engine::query::{
    Queryable, Resumed, SelectHints, Selection, Series, SeriesStream, merge_series, merge_streams,
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
    /// Fill an empty bucket with a day of generated data (10 hosts, 15 s scrapes) first, then
    /// keep the same hosts' scrapes flowing live through this process's remote write.
    #[arg(long)]
    pub demo: bool,
    /// How much generated history `--demo` writes into an empty bucket.
    #[arg(long = "demo.history", default_value = "1d", value_parser = crate::query::cmd::duration, hide = true)]
    pub demo_history: Duration,
    /// Scrape interval of `--demo`'s generated hosts, history and live feed.
    #[arg(long = "demo.scrape-interval", default_value = "15s", value_parser = crate::query::cmd::duration, hide = true)]
    pub demo_scrape_interval: Duration,
    /// How often the bucket is listed for new and deleted blocks.
    #[arg(long = "sync-block-duration", default_value = "1m", value_parser = crate::query::cmd::duration)]
    pub sync_every: Duration,
    /// The PromQL engine's limits and features, the flags `gauntlet query` takes.
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
    /// Exemplars each tenant's head keeps (0: exemplar storage off), as `receive`'s flag.
    #[arg(long = "tsdb.max-exemplars", default_value_t = 0)]
    pub max_exemplars: u64,
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
    /// TLS of the gRPC server, and the web configuration file of the HTTP and remote-write
    /// servers.
    #[command(flatten)]
    pub security: crate::tls::ServerSecurityArgs,
    /// TLS of the remote-write listener, when it differs from `--http.config`'s.
    #[command(flatten)]
    pub remote_write_tls: crate::tls::RemoteWriteServerTlsArgs,
    /// Rule files evaluated in-process (repeatable; glob patterns), as `gauntlet rule`
    /// evaluates them: recorded series and ALERTS go into the receiver's head, alerts to the
    /// Alertmanagers; `/api/v1/rules` and `/api/v1/alerts` list them.
    #[arg(long = "rule-file")]
    pub rule_files: Vec<String>,
    /// How rules are evaluated and their alerts sent.
    #[command(flatten)]
    pub rules: crate::rule::cmd::RuleEvalArgs,
    /// Run the query frontend on this address, in front of this process's own query API
    /// (not run when not given). The `--query-range.*`, `--labels.*` and `--query-frontend.*`
    /// flags of `gauntlet query-frontend` configure it.
    #[arg(long = "query-frontend.http-address")]
    pub frontend_address: Option<String>,
    /// The query frontend's splitting, caches and retries.
    #[command(flatten)]
    pub frontend: crate::frontend::FrontendSettings,
}

/// The parts of the process's memory budget (`--memory.limit`), in sixteenths, each role
/// admits its own work from ([`MemoryBudget::part_of`]): queries take the most room, then
/// the receiver's heads and writes, then the StoreAPI. Background compaction reserves
/// nothing, so it has no part.
const QUERY_PART: Part = 8;
/// See [`QUERY_PART`].
const RECEIVE_PART: Part = 5;
/// See [`QUERY_PART`].
const STORE_PART: Part = WHOLE - QUERY_PART - RECEIVE_PART;

/// Runs until Ctrl-C or SIGTERM, the roles admitting their work from their parts of
/// `budget`, the process's.
pub fn run(args: AllArgs, budget: Arc<MemoryBudget>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let demo = if args.demo {
        let r = receive_args(&args, &args.data_dir)?;
        let tenant = (r.tenant_label, r.default_tenant);
        Some(fill_demo(
            &args.data_dir,
            args.demo_history,
            args.demo_scrape_interval,
            &tenant,
        )?)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-net")
        .thread_keep_alive(crate::memory::IDLE_THREAD_KEEP_ALIVE)
        .build()?;
    rt.block_on(serve(args, demo, budget))
}

async fn serve(
    args: AllArgs,
    demo: Option<DemoPlan>,
    budget: Arc<MemoryBudget>,
) -> anyhow::Result<()> {
    let query_budget = MemoryBudget::part_of(&budget, QUERY_PART);
    let receive_budget = MemoryBudget::part_of(&budget, RECEIVE_PART);
    let store_budget = MemoryBudget::part_of(&budget, STORE_PART);
    let security = args.security.load()?;
    let remote_write_web =
        crate::receive::remote_write_web(&security.http, &args.remote_write_tls)?;
    let frontend_downstream = args
        .frontend_address
        .as_ref()
        .map(|_| own_api_url(&args.http_address, &security.http))
        .transpose()?;
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
    store.set_idle_hook(crate::memory::idle_hook());
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
    let receiver = Arc::new(
        Receiver::start(
            &receive_args(&args, &dir)?,
            Some(bucket_config.clone()),
            receive_budget.clone(),
        )
        .await?,
    );

    // Reads from the local bucket cannot fail partially.
    let mut config = args.promql.api_config(true)?;
    config.active = args
        .promql
        .active_queries(Some(&args.data_dir.join(".gauntlet")))?;
    config.budget = query_budget.clone();
    let tenancy = config.tenancy.clone();
    let admission = config.admission.clone();
    if args.max_exemplars > 0 {
        config.exemplars = Some(Arc::new(crate::receive::exemplars::LocalExemplars::new(
            receiver.tenants.clone(),
        )));
    }
    let state = Arc::new(ApiState {
        source: Arc::new(AllSource {
            store: StoreSource(store.clone()),
            tenants: receiver.tenants.clone(),
            reads: query_budget.clone(),
        }),
        config,
    });
    let compact_metrics = Arc::new(crate::compact::CompactMetrics::default());
    if !args.compact_every.is_zero() {
        spawn_compaction(&args, &dir, &bucket_config, compact_metrics.clone())?;
    }
    // One registry for every role this process runs.
    let mut registry = crate::metrics::Registry::default();
    // The whole budget counts what its parts reserve and refuse.
    let server_metrics = crate::metrics::register_common(&mut registry, budget.clone());
    crate::store::register_metrics(&mut registry, store.clone());
    receiver.register_metrics(&mut registry);
    let ruler = if args.rule_files.is_empty() {
        None
    } else {
        // Rules read this process's PromQL and record under the default tenant, whose
        // series every read sees.
        let (manager, sender) = crate::rule::cmd::start_manager(
            args.rules.manager_options(&args.rule_files, &[]),
            &args.rules.alertmanagers,
            receiver.clone(),
            &args.promql.tenancy.default_tenant,
            crate::rule::cmd::Queries::Local(state.clone(), Default::default()),
            &mut registry,
        )
        .await?;
        let _ = state.config.rules.set(manager.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        crate::rule::cmd::spawn_sighup_reload(manager.clone(), stop_rx);
        Some((manager, sender, stop_tx))
    };
    crate::compact::register_metrics(&mut registry, compact_metrics.clone(), false);
    registry.register_collector(Box::new(admission));
    let feed_metrics = FeedMetrics::default();
    if demo.is_some() {
        feed_metrics.register(&mut registry);
    }
    let ready = store.clone();
    let heads = receiver.store();
    let exemplars = receiver.exemplars();
    let rules_cell = state.config.rules.clone();
    let query_api = crate::query::query_api::QueryApi::server(state.clone());
    let app = router(state)
        .merge(crate::http::ui::router())
        .merge(crate::http::status::router(
            Some(crate::http::status::in_process_stores(
                StoreService::new(store.clone(), 0),
                receiver.store(),
                format!("bucket {}", dir.display()),
            )),
            Some(crate::http::status::bucket_blocks(
                store.clone(),
                (!args.compact_every.is_zero()).then(|| compact_metrics.clone()),
                false,
            )),
            tenancy.clone(),
        ))
        .merge(crate::http::status::operator_only(
            crate::http::status::compactor_router(compact_metrics.clone()),
            tenancy.clone(),
        ))
        .merge(receiver.status_router())
        .merge(receiver.write_router())
        .merge(match &ruler {
            Some((manager, _, _)) => crate::rule::api::reload_router(manager.clone()),
            None => axum::Router::new(),
        })
        .merge(ops::router(
            Arc::new(move || ready.is_ready()),
            Arc::new(registry),
        ));
    let rw_listener = tokio::net::TcpListener::bind(args.remote_write_address)
        .await
        .with_context(|| {
            format!(
                "binding --remote-write.address {}",
                args.remote_write_address
            )
        })?;
    let embedded = tokio::spawn(receiver.serve_embedded(
        rw_listener,
        remote_write_web,
        server_metrics.clone(),
        crate::http::shutdown_signal(),
    ));
    if let Some(plan) = demo {
        tokio::spawn(demo_feed(
            plan,
            loopback(args.remote_write_address),
            feed_metrics,
        ));
    }
    // Each side holds a call to the tenant its metadata names; `AllStore` hands both the
    // call's metadata.
    let svc = AllStore {
        bucket: StoreService::new(store, 20)
            .with_tenancy(tenancy)
            .with_budget(&store_budget),
        heads,
    };
    let grpc_listener = tokio::net::TcpListener::bind(args.grpc_address)
        .await
        .with_context(|| format!("binding --grpc-address {}", args.grpc_address))?;
    tracing::info!(address = %args.grpc_address, tls = security.grpc.is_some(), "StoreAPI (the bucket and the receiver's heads) and Query API listening");
    let grpc = tonic::transport::Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer::new(&server_metrics))
        .layer(crate::memory::GrpcGuardLayer::new(&store_budget))
        .layer(crate::grpc::RequestLimitsLayer)
        .add_service(
            thanos::store_server::StoreServer::new(svc.clone())
                .max_decoding_message_size(crate::grpc::MAX_STORE_REQUEST_BYTES)
                .max_encoding_message_size(i32::MAX as usize),
        )
        .add_service(thanos::info::info_server::InfoServer::new(
            crate::rule::service::WithRulesInfo::new(svc, None, ruler.is_some()).with_query_api(),
        ))
        .add_service(query_api)
        .add_optional_service(
            ruler
                .is_some()
                .then(|| crate::rule::service::RulesService::server(rules_cell)),
        )
        .add_optional_service(exemplars.map(thanos::exemplars_server::ExemplarsServer::new))
        .serve_with_incoming_shutdown(
            crate::tls::Incoming::new(grpc_listener, security.grpc)?,
            crate::http::shutdown_signal(),
        );
    // Queries are admitted from the query role's part, writes from the receiver's.
    let frontend_budget = query_budget.clone();
    let app = crate::memory::guard_http(
        app,
        crate::memory::HttpBudgets {
            reads: query_budget,
            writes: receive_budget,
        },
    );
    let http = crate::http::serve(
        &args.http_address,
        app,
        &security.http,
        &server_metrics,
        crate::http::shutdown_signal(),
    );
    let frontend = async {
        match (&args.frontend_address, &frontend_downstream) {
            (Some(address), Some(downstream)) => {
                crate::frontend::serve_settings(
                    &args.frontend,
                    downstream,
                    address,
                    &security.http,
                    frontend_budget,
                    crate::http::shutdown_signal(),
                )
                .await
            }
            _ => Ok(()),
        }
    };
    let (g, h, f) = tokio::join!(grpc, http, frontend);
    if let Some((manager, sender, stop)) = ruler {
        manager.stop();
        let _ = stop.send(true);
        sender.close().await;
    }
    match embedded.await {
        Ok(r) => r.context("receiver")?,
        Err(e) => anyhow::bail!("receiver: {e}"),
    }
    g.context("gRPC server")?;
    f.context("query frontend")?;
    h
}

/// The URL the in-process query frontend asks this process's own query API at: its HTTP
/// address, on loopback when it listens on every interface. Refused with TLS or basic auth on
/// that API, which the frontend's requests to it would not pass.
fn own_api_url(
    http_address: &str,
    web: &crate::http::webconfig::WebConfig,
) -> anyhow::Result<String> {
    if web.tls().is_some() || web.has_basic_auth() {
        anyhow::bail!(
            "--query-frontend.http-address: the frontend inside `all` asks the query API over plain loopback HTTP; with TLS or basic auth in --http.config run `gauntlet query-frontend` in front of it instead"
        );
    }
    let (host, port) = http_address
        .rsplit_once(':')
        .with_context(|| format!("--http-address {http_address:?}: want host:port"))?;
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        h => h,
    };
    Ok(format!("http://{host}:{port}"))
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
        parquet: None,
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
    r.max_exemplars = args.max_exemplars;
    // One process, one notion of tenant: writes are labelled with the label, named by the
    // header and defaulted to the tenant that reads are held to.
    let t = &args.promql.tenancy;
    r.tenant_header = t.tenant_header.clone();
    r.default_tenant = t.default_tenant.clone();
    r.tenant_label = t.tenant_label.clone();
    r.tenancy = t.clone();
    Ok(r)
}

/// What `all`'s PromQL reads: the bucket, and the receiver's tenants (heads and blocks not
/// yet in the bucket's last sync), series of equal labels merged.
#[derive(Debug, Clone)]
struct AllSource {
    store: StoreSource,
    tenants: Arc<Tenants>,
    /// The query role's part of the memory budget: the heads' streams PromQL opens hold what
    /// they read in it, not in the receiver's part that ingestion needs.
    reads: Arc<MemoryBudget>,
}

impl Source for AllSource {
    fn view(&self, opts: &ReadOptions) -> gauntlet_engine::Result<Arc<dyn ReadView>> {
        // The shard is kept once the bucket's and the heads' series are merged.
        let whole = ReadOptions {
            shard: None,
            ..opts.clone()
        };
        let view: Arc<dyn ReadView> = Arc::new(AllView {
            store: self.store.view(&whole)?,
            tenants: self.tenants.clone(),
            reads: self.reads.clone(),
            prefetched: receive_store::Prefetched::default(),
        });
        Ok(crate::query::shard::ShardView::wrap(
            view,
            opts.shard.as_ref(),
        ))
    }
}

struct AllView {
    store: Arc<dyn ReadView>,
    tenants: Arc<Tenants>,
    reads: Arc<MemoryBudget>,
    /// The heads' parts of selections announced ahead ([`Queryable::prefetch`]).
    prefetched: receive_store::Prefetched,
}

impl Queryable for AllView {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> gauntlet_engine::Result<Vec<Series>> {
        // Series are merged by their whole label sets, so when there is something to merge
        // neither side may leave labels out for an aggregation's grouping.
        let whole = whole_labels(hints);
        let received = receive_store::select(&self.tenants, matchers, mint, maxt, &whole)?;
        if received.is_empty() {
            return self.store.select(matchers, mint, maxt, hints);
        }
        let stored = self.store.select(matchers, mint, maxt, &whole)?;
        Ok(merge_series(vec![stored, received]))
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> gauntlet_engine::Result<Box<dyn SeriesStream + 'a>> {
        let mut received = receive_store::stream(
            &self.tenants,
            matchers,
            mint,
            maxt,
            HeadRead::Samples,
            &hints.cancel,
            &self.reads,
            &self.prefetched,
        )?;
        // Without received series the bucket's own stream serves, with the hints as given;
        // with them the two are merged a batch at a time, by whole label sets.
        let Some(first) = received.next_batch()? else {
            return self.store.select_stream(matchers, mint, maxt, hints);
        };
        let received = Box::new(Resumed::new(first, received));
        let mut stored = self
            .store
            .select_stream(matchers, mint, maxt, &whole_labels(hints))?;
        // Nothing stored in the range (the usual case for recent data): the heads' stream is
        // the answer as it is, without comparing every series to an empty side.
        let Some(first_stored) = stored.next_batch()? else {
            return Ok(received);
        };
        Ok(merge_streams(
            vec![Box::new(Resumed::new(first_stored, stored)), received],
            mint,
            maxt,
        ))
    }

    /// The heads' parts are opened now, each head's in one visit to its cores; the bucket's
    /// are read when asked for.
    fn prefetch(&self, selections: &[Selection]) {
        self.prefetched
            .open(&self.tenants, selections, HeadRead::Samples, &self.reads);
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

/// `hints` without the aggregation grouping: a source that merges after selecting needs
/// every label of every series.
fn whole_labels(hints: &SelectHints) -> SelectHints {
    SelectHints {
        grouping: None,
        ..hints.clone()
    }
}

impl ReadView for AllView {
    fn warnings(&self) -> Vec<String> {
        self.store.warnings()
    }
}

/// What `--demo`'s live feed continues: the generator config the history was written from
/// (running on for a century) and the first sample time to send.
#[derive(Debug)]
struct DemoPlan {
    cfg: GenConfig,
    send_from_ms: i64,
}

/// The demo's hosts: 10 of them with every family, churning a quarter of their pods every
/// 30 min, scraped every `step_ms` from `start_ms` on.
fn demo_config(start_ms: i64, duration_ms: i64, step_ms: i64) -> GenConfig {
    GenConfig {
        targets: 10,
        scrape_interval_ms: step_ms,
        start_ms,
        duration_ms,
        churn_every_ms: 30 * 60_000,
        churn_fraction: 0.25,
        seed: 1,
        families: Families::default(),
        ..GenConfig::default()
    }
}

/// Writes `history` of demo data ending now, unless the bucket holds blocks, and plans the
/// live feed that continues it. The history's blocks carry the receiver's default tenant
/// label (`tenant`), so the live series, which the receiver labels so, continue them. The
/// history's start is kept in `.gauntlet/demo-start`, so that after a restart the feed
/// continues the same counters; a missing or week-old start begins a fresh history time.
fn fill_demo(
    dir: &Path,
    history: Duration,
    interval: Duration,
    tenant: &(String, String),
) -> anyhow::Result<DemoPlan> {
    let step = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    if step < 10 {
        anyhow::bail!("--demo.scrape-interval={interval:?}: want at least 10ms");
    }
    let history_ms = i64::try_from(history.as_millis()).unwrap_or(i64::MAX);
    if !(0..=30 * 24 * 3_600_000).contains(&history_ms) {
        anyhow::bail!("--demo.history={history:?}: want at most 30 days");
    }
    // A century of scrapes: the feed never runs out.
    let forever = 100 * 365 * 24 * 3_600_000_i64;
    let anchor = dir.join(".gauntlet/demo-start");
    let now = now_ms();
    // Ending now, so instant queries at the current time find the newest samples.
    let end = now / step * step;
    if !block_dirs(dir)?.is_empty() {
        let kept = std::fs::read_to_string(&anchor)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|&t| t <= now && now - t <= 7 * 24 * 3_600_000);
        let start = match kept {
            Some(t) => t,
            None => {
                let t = end - history_ms;
                write_anchor(&anchor, t)?;
                t
            }
        };
        tracing::info!(
            continued = kept.is_some(),
            "bucket already holds blocks; --demo leaves them as they are and feeds live data from now"
        );
        return Ok(DemoPlan {
            cfg: demo_config(start, forever, step),
            send_from_ms: now,
        });
    }
    let start = end - history_ms;
    let cfg = demo_config(start, history_ms, step);
    let started = Instant::now();
    tracing::info!(history = ?history, "generating demo history");
    let thanos = gauntlet_engine::block::ThanosMeta {
        labels: [(tenant.0.clone(), tenant.1.clone())].into_iter().collect(),
        source: "demo".to_string(),
        ..Default::default()
    };
    let metas = write_blocks_dir_with(&cfg, dir, Some(thanos)).context("writing demo blocks")?;
    write_anchor(&anchor, start)?;
    tracing::info!(
        blocks = metas.len(),
        seconds = started.elapsed().as_secs_f64(),
        "demo data written"
    );
    Ok(DemoPlan {
        cfg: demo_config(start, forever, step),
        send_from_ms: start + history_ms,
    })
}

fn write_anchor(path: &Path, start_ms: i64) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, format!("{start_ms}\n"))
        .with_context(|| format!("writing {}", path.display()))
}

/// The `--demo` feed's counters; clones count in the same counters.
#[derive(Debug, Clone, Default)]
struct FeedMetrics {
    samples: Counter,
    requests: Counter,
    errors: Counter,
}

impl FeedMetrics {
    fn register(&self, registry: &mut crate::metrics::Registry) {
        // The registry adds each counter's `_total` and the help's full stop.
        for (name, help, c) in [
            (
                "gauntlet_demo_feed_samples",
                "Samples the --demo feed has written through remote write",
                &self.samples,
            ),
            (
                "gauntlet_demo_feed_requests",
                "Remote-write requests the --demo feed has had accepted",
                &self.requests,
            ),
            (
                "gauntlet_demo_feed_errors",
                "Remote-write requests of the --demo feed that failed",
                &self.errors,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
    }
}

/// The address to reach a listener bound to `addr` from this process: loopback in place of
/// an unspecified address.
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// Samples the feed keeps for a retry at most; older ones are dropped first.
const MAX_UNSENT: usize = 200_000;

/// How often the feed sends what is due: the generated targets are scraped at offsets spread
/// over the scrape interval, and like Prometheus's remote write (which sends a shard's batch
/// within `batch_send_deadline`) the feed writes them as they come, not as one burst an
/// interval that would stall everything else the process serves at that moment.
const FEED_TICK_MS: i64 = 1_000;

/// The live demo feed: every second (or scrape interval, when shorter), the scrapes of
/// `plan`'s generator that are due by now are posted as one remote-write 1.0 request to
/// `target`, until SIGINT/SIGTERM. A failed request is logged, counted and retried with the
/// next tick's samples; a request the receiver refuses as bad (4xx other than 429) is
/// dropped.
async fn demo_feed(plan: DemoPlan, target: SocketAddr, metrics: FeedMetrics) {
    let step = plan.cfg.scrape_interval_ms;
    let from = plan.send_from_ms;
    // Catching up with the history's end replays its scrapes: CPU work, off the network threads.
    let caught_up = tokio::task::spawn_blocking(move || -> anyhow::Result<Feed> {
        let mut feed = Feed {
            generator: Generator::new(&plan.cfg)?,
            pending: Vec::new(),
        };
        loop {
            feed.pending.clear();
            if !feed.generator.next_scrape(&mut feed.pending) {
                anyhow::bail!("the demo generator ran out of scrapes");
            }
            if feed.pending.first().is_some_and(|s| s.ts_ms >= from) {
                return Ok(feed);
            }
        }
    })
    .await;
    let mut feed = match caught_up {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "demo feed not started");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "demo feed not started");
            return;
        }
    };
    tracing::info!(
        target = %target,
        interval_ms = step,
        series = feed.generator.series().len(),
        "demo feed writing generated scrapes through remote write"
    );
    let stop = crate::http::shutdown_signal();
    tokio::pin!(stop);
    let tick = step.clamp(1, FEED_TICK_MS);
    let mut ticker = tokio::time::interval(Duration::from_millis(tick as u64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unsent: Vec<Sample> = Vec::new();
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticker.tick() => {}
        }
        // Generating and encoding is CPU work: off the threads that answer requests.
        let (back, pending, body) =
            match tokio::task::spawn_blocking(move || feed.next_request(unsent)).await {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "demo feed stopped: encoding failed");
                    break;
                }
            };
        (feed, unsent) = (back, pending);
        let Some(body) = body else {
            continue;
        };
        let sent = tokio::select! {
            () = &mut stop => break,
            r = tokio::time::timeout(Duration::from_secs(10), post_remote_write(target, body)) => {
                r.unwrap_or_else(|_| Err(PostError::Retry("no answer within 10s".into())))
            }
        };
        match sent {
            Ok(()) => {
                metrics.samples.inc_by(unsent.len() as u64);
                metrics.requests.inc();
                tracing::debug!(samples = unsent.len(), "demo feed request written");
                unsent.clear();
            }
            Err(PostError::Refused(why)) => {
                metrics.errors.inc();
                tracing::warn!(samples = unsent.len(), error = %why, "demo feed request refused; dropping its samples");
                unsent.clear();
            }
            Err(PostError::Retry(why)) => {
                metrics.errors.inc();
                tracing::warn!(samples = unsent.len(), error = %why, "demo feed request failed; its samples go with the next request");
            }
        }
    }
    tracing::info!("demo feed stopped");
}

/// The generator behind the feed and the first scrape not yet due.
struct Feed {
    generator: Generator,
    pending: Vec<Sample>,
}

impl Feed {
    /// `unsent` with the scrapes due by now added (the oldest dropped beyond
    /// [`MAX_UNSENT`]) and, when there is any, their remote-write request body.
    fn next_request(mut self, mut unsent: Vec<Sample>) -> (Self, Vec<Sample>, Option<Vec<u8>>) {
        self.due(now_ms(), &mut unsent);
        if unsent.len() > MAX_UNSENT {
            let drop = unsent.len() - MAX_UNSENT;
            unsent.drain(..drop);
        }
        let body =
            (!unsent.is_empty()).then(|| encode_write_request(self.generator.series(), &unsent));
        (self, unsent, body)
    }

    /// Moves every scrape with samples at or before `now` into `out`.
    fn due(&mut self, now: i64, out: &mut Vec<Sample>) {
        while self.pending.first().is_some_and(|s| s.ts_ms <= now) {
            out.append(&mut self.pending);
            if !self.generator.next_scrape(&mut self.pending) {
                break;
            }
        }
    }
}

/// Why a remote-write request did not land.
#[derive(Debug)]
enum PostError {
    /// Worth sending again: the connection failed, or the receiver answered 5xx or 429.
    Retry(String),
    /// The receiver refused the request as bad; sending it again gets the same answer.
    Refused(String),
}

/// Posts `body` (snappy-compressed `WriteRequest`) to `/api/v1/receive` on `target` over
/// one HTTP/1.1 connection.
async fn post_remote_write(target: SocketAddr, body: Vec<u8>) -> Result<(), PostError> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let retry = |e: std::io::Error| PostError::Retry(format!("{target}: {e}"));
    let mut conn = tokio::net::TcpStream::connect(target)
        .await
        .map_err(retry)?;
    let head = format!(
        "POST /api/v1/receive HTTP/1.1\r\nHost: {target}\r\nContent-Encoding: snappy\r\n\
         Content-Type: application/x-protobuf\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n\
         User-Agent: gauntlet-demo-feed\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.map_err(retry)?;
    conn.write_all(&body).await.map_err(retry)?;
    let mut answer = Vec::new();
    // The answer to a write is a status line and a short message; 64 KiB bounds it.
    (&mut conn)
        .take(64 << 10)
        .read_to_end(&mut answer)
        .await
        .map_err(retry)?;
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| PostError::Retry(format!("{target}: no HTTP status in the answer")))?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let message = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .chars()
        .take(300)
        .collect::<String>();
    let why = format!("{target}: HTTP {status}: {}", message.trim());
    if status == 429 || status >= 500 {
        Err(PostError::Retry(why))
    } else {
        Err(PostError::Refused(why))
    }
}

/// `all`'s StoreAPI and Info service: the bucket and the receiver's tenants (heads and blocks
/// not yet shipped), series of equal labels merged, as `all`'s own PromQL reads them. Under
/// `--query.enforce-tenancy` both sides hold each call to the tenant its metadata names.
#[derive(Debug, Clone)]
struct AllStore {
    bucket: StoreService,
    heads: ReceiveStore,
}

/// `msg` as a call carrying `metadata`, the tenant header among them, so each side of
/// [`AllStore`] holds it to the caller's tenant.
fn call<T>(metadata: &tonic::metadata::MetadataMap, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    *r.metadata_mut() = metadata.clone();
    r
}

/// Series per frame of a merged Series answer (before the request's own batching).
const MERGED_FRAME_SERIES: usize = 256;

/// One of the answers a merged Series answer is made of: its series read and not yet merged,
/// and whether it has ended.
struct Side<S> {
    frames: S,
    queued: VecDeque<thanos::Series>,
    done: bool,
}

impl<S> Side<S>
where
    S: futures::Stream<Item = Result<thanos::SeriesResponse, Status>> + Unpin,
{
    fn new(frames: S) -> Self {
        Side {
            frames,
            queued: VecDeque::new(),
            done: false,
        }
    }

    /// Reads frames until a series is queued or the answer has ended; its warnings and hints
    /// go to `rest`.
    async fn fill(&mut self, rest: &mut Vec<thanos::SeriesResponse>) -> Result<(), Status> {
        use futures::StreamExt as _;
        use thanos::series_response::Result as R;
        while self.queued.is_empty() && !self.done {
            match self.frames.next().await {
                None => self.done = true,
                Some(frame) => match frame?.result {
                    Some(R::Series(s)) => self.queued.push_back(s),
                    Some(R::Batch(b)) => self.queued.extend(b.series),
                    Some(other) => rest.push(thanos::SeriesResponse {
                        result: Some(other),
                    }),
                    None => {}
                },
            }
        }
        Ok(())
    }
}

fn cmp_labels(a: &[thanos::Label], b: &[thanos::Label]) -> std::cmp::Ordering {
    a.iter()
        .map(|l| (&l.name, &l.value))
        .cmp(b.iter().map(|l| (&l.name, &l.value)))
}

/// Sends `series` as frames of the request's batching (`batch_size`), each reserved.
async fn send_series(
    tx: &FrameSender<Result<thanos::SeriesResponse, Status>>,
    series: Vec<thanos::Series>,
    batch_size: i64,
) -> Result<bool, Status> {
    for frame in crate::grpc::convert::series_responses(series, batch_size) {
        let bytes = frame.encoded_len() as u64;
        match tx.send(Ok(frame), bytes).await {
            Ok(()) => {}
            Err(SendError::Closed) => return Ok(false),
            Err(SendError::OverBudget(why)) => return Err(crate::memory::refusal(&why)),
        }
    }
    Ok(true)
}

/// Two Series answers, each sorted by labels, merged into one sorted answer on `tx` a frame
/// at a time (a series in both gets the chunks of both, in time order), then the warnings
/// and hints of both. Holds a frame of each answer and the frame being made.
async fn merge_answers<A, B>(
    a: A,
    b: B,
    batch_size: i64,
    tx: FrameSender<Result<thanos::SeriesResponse, Status>>,
) where
    A: futures::Stream<Item = Result<thanos::SeriesResponse, Status>> + Unpin,
    B: futures::Stream<Item = Result<thanos::SeriesResponse, Status>> + Unpin,
{
    use std::cmp::Ordering;
    let merged = async {
        let (mut a, mut b) = (Side::new(a), Side::new(b));
        let mut rest = Vec::new();
        let mut out: Vec<thanos::Series> = Vec::new();
        loop {
            a.fill(&mut rest).await?;
            b.fill(&mut rest).await?;
            let order = match (a.queued.front(), b.queued.front()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => cmp_labels(&x.labels, &y.labels),
            };
            let next = match order {
                Ordering::Less => a.queued.pop_front(),
                Ordering::Greater => b.queued.pop_front(),
                Ordering::Equal => match (a.queued.pop_front(), b.queued.pop_front()) {
                    (Some(mut x), Some(y)) => {
                        x.chunks.extend(y.chunks);
                        x.chunks.sort_by_key(|c| (c.min_time, c.max_time));
                        Some(x)
                    }
                    (x, y) => x.or(y),
                },
            };
            out.extend(next);
            if out.len() >= MERGED_FRAME_SERIES
                && !send_series(&tx, std::mem::take(&mut out), batch_size).await?
            {
                return Ok(());
            }
        }
        if !send_series(&tx, out, batch_size).await? {
            return Ok(());
        }
        for frame in rest {
            if tx.send(Ok(frame), 0).await.is_err() {
                break;
            }
        }
        Ok::<(), Status>(())
    };
    if let Err(status) = merged.await {
        tx.finish(Err(status)).await;
    }
}

#[tonic::async_trait]
impl thanos::store_server::Store for AllStore {
    async fn info(
        &self,
        req: Request<thanos::InfoRequest>,
    ) -> Result<Response<thanos::InfoResponse>, Status> {
        let mut info =
            thanos::store_server::Store::info(&self.bucket, Request::new(*req.get_ref()))
                .await?
                .into_inner();
        let heads = thanos::store_server::Store::info(&self.heads, req)
            .await?
            .into_inner();
        info.label_sets.extend(heads.label_sets);
        info.min_time = info.min_time.min(heads.min_time);
        info.max_time = info.max_time.max(heads.max_time);
        Ok(Response::new(info))
    }

    type SeriesStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<thanos::SeriesResponse, Status>> + Send>,
    >;

    async fn series(
        &self,
        req: Request<thanos::SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let (metadata, _, r) = req.into_parts();
        let heads = thanos::store_server::Store::series(&self.heads, call(&metadata, r.clone()))
            .await?
            .into_inner();
        let stored = thanos::store_server::Store::series(&self.bucket, call(&metadata, r.clone()))
            .await?
            .into_inner();
        let (tx, frames) = crate::memory::frame_channel(self.bucket.budget(), "Series", 4);
        tokio::spawn(merge_answers(stored, heads, r.response_batch_size, tx));
        Ok(Response::new(Box::pin(frames)))
    }

    async fn label_names(
        &self,
        req: Request<thanos::LabelNamesRequest>,
    ) -> Result<Response<thanos::LabelNamesResponse>, Status> {
        let limit = req.get_ref().limit;
        let mut a = thanos::store_server::Store::label_names(
            &self.bucket,
            call(req.metadata(), req.get_ref().clone()),
        )
        .await?
        .into_inner();
        let b = thanos::store_server::Store::label_names(&self.heads, req)
            .await?
            .into_inner();
        a.names.extend(b.names);
        a.names.sort();
        a.names.dedup();
        if limit > 0 {
            a.names.truncate(limit as usize);
        }
        a.warnings.extend(b.warnings);
        Ok(Response::new(a))
    }

    async fn label_values(
        &self,
        req: Request<thanos::LabelValuesRequest>,
    ) -> Result<Response<thanos::LabelValuesResponse>, Status> {
        let limit = req.get_ref().limit;
        let mut a = thanos::store_server::Store::label_values(
            &self.bucket,
            call(req.metadata(), req.get_ref().clone()),
        )
        .await?
        .into_inner();
        let b = thanos::store_server::Store::label_values(&self.heads, req)
            .await?
            .into_inner();
        a.values.extend(b.values);
        a.values.sort();
        a.values.dedup();
        if limit > 0 {
            a.values.truncate(limit as usize);
        }
        a.warnings.extend(b.warnings);
        Ok(Response::new(a))
    }
}

#[tonic::async_trait]
impl thanos::info::info_server::Info for AllStore {
    async fn info(
        &self,
        req: Request<thanos::info::InfoRequest>,
    ) -> Result<Response<thanos::info::InfoResponse>, Status> {
        let mut info =
            thanos::info::info_server::Info::info(&self.bucket, Request::new(*req.get_ref()))
                .await?
                .into_inner();
        let heads = thanos::info::info_server::Info::info(&self.heads, req)
            .await?
            .into_inner();
        info.label_sets.extend(heads.label_sets);
        info.exemplars = heads.exemplars;
        if let (Some(s), Some(h)) = (info.store.as_mut(), heads.store) {
            s.min_time = s.min_time.min(h.min_time);
            s.max_time = s.max_time.max(h.max_time);
            s.tsdb_infos.extend(h.tsdb_infos);
            // A sharded request reaches the bucket and the heads; say so only when both shard.
            s.supports_sharding &= h.supports_sharding;
        }
        Ok(Response::new(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(labels: &[(&str, &str)], chunk_times: &[i64]) -> thanos::Series {
        thanos::Series {
            labels: labels
                .iter()
                .map(|(n, v)| thanos::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            chunks: chunk_times
                .iter()
                .map(|&t| thanos::AggrChunk {
                    min_time: t,
                    max_time: t + 10,
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn frames(
        series: Vec<thanos::Series>,
    ) -> impl futures::Stream<Item = Result<thanos::SeriesResponse, Status>> + Unpin {
        tokio_stream::iter(
            crate::grpc::convert::series_responses(series, 0)
                .into_iter()
                .map(Ok)
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn wire_series_of_equal_labels_merge_in_label_order() {
        use futures::StreamExt as _;
        let stored = vec![wire(&[("a", "1")], &[0, 100]), wire(&[("a", "3")], &[0])];
        let received = vec![wire(&[("a", "1")], &[50, 200]), wire(&[("a", "2")], &[7])];
        let (tx, out) = crate::memory::frame_channel(&MemoryBudget::unlimited(), "Series", 4);
        tokio::spawn(merge_answers(frames(stored), frames(received), 2, tx));
        let got: Vec<thanos::Series> = out
            .flat_map(|f| {
                let series = match f.unwrap().result {
                    Some(thanos::series_response::Result::Batch(b)) => b.series,
                    other => panic!("a batch expected, got {other:?}"),
                };
                tokio_stream::iter(series)
            })
            .collect()
            .await;
        let labels: Vec<&str> = got.iter().map(|s| s.labels[0].value.as_str()).collect();
        assert_eq!(labels, ["1", "2", "3"]);
        let times: Vec<i64> = got[0].chunks.iter().map(|c| c.min_time).collect();
        assert_eq!(times, [0, 50, 100, 200]);
    }

    #[test]
    fn an_unspecified_listener_is_reached_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:19291".parse().unwrap();
        assert_eq!(loopback(v4), "127.0.0.1:19291".parse().unwrap());
        let v6: SocketAddr = "[::]:19291".parse().unwrap();
        assert_eq!(loopback(v6), "[::1]:19291".parse().unwrap());
        let set: SocketAddr = "10.0.0.1:5".parse().unwrap();
        assert_eq!(loopback(set), set);
    }
}
