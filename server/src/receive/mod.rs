//! `gauntlet receive`: takes Prometheus remote write into per-tenant heads with a
//! Prometheus-format WAL, serves them over the StoreAPI, cuts standard blocks every block
//! range and ships them to the bucket, as Thanos Receive does, with its flags and its data
//! directory layout (`<tsdb.path>/<tenant>/` with `wal/`, blocks and `thanos.shipper.json`).
//! With a hashring (`--receive.hashrings-file`), receivers share and replicate series as
//! Thanos receivers do ([`forward`], [`replicate`]).

pub mod exemplars;
pub mod forward;
pub mod hashring;
pub mod histogram;
pub mod replicate;
pub mod ship;
pub mod store;
pub mod tenants;
pub mod write;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::post;
use clap::Args;
use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::head::{HeadOptions, HeadRuntime};
use gauntlet_engine::labels::{Label, Labels};
use gauntlet_engine::remote_write::LabelLimits;
use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
use gauntlet_engine::wal::WalOptions;
use gauntlet_proto::thanos;

use self::forward::{ForwardOptions, Forwarder, WriteableStoreService};
use self::hashring::Algorithm;
use self::ship::ShipStats;
use self::store::ReceiveStore;
use self::tenants::Tenants;
use self::write::{RequestLimits, WriteState, WriteStats};
use crate::http::ops;
use crate::query::cmd::duration;
use crate::query::tenancy::{StatusView, Tenancy, TenancyFlags};
use crate::store::parse_bytes;

/// Flags of `gauntlet receive`, named as Thanos Receive names them.
#[derive(Debug, Args, Clone)]
pub struct ReceiveArgs {
    /// Set when another role keeps its results in this receiver's head (the ruler): the
    /// `source` its blocks name. Not a flag.
    #[arg(skip)]
    pub role_source: Option<&'static str>,
    /// Directory of the tenants' TSDBs (`<path>/<tenant>/`).
    #[arg(long = "tsdb.path", default_value = "./data/receive")]
    pub tsdb_path: PathBuf,
    /// Address remote write (`/api/v1/receive`, `/api/v1/write`) listens on.
    #[arg(long = "remote-write.address", default_value = "0.0.0.0:19291")]
    pub remote_write_address: SocketAddr,
    /// Address of the StoreAPI.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: SocketAddr,
    /// Address of /metrics, /-/ready and /-/healthy (remote write is served here too).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: SocketAddr,
    /// External label of every series served and every block shipped, `name="value"`
    /// (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<Label>,
    /// Objstore configuration file; without one, blocks stay local.
    #[arg(long = "objstore.config-file")]
    pub objstore_config_file: Option<PathBuf>,
    /// Objstore configuration as YAML text, instead of a file.
    #[arg(long = "objstore.config")]
    pub objstore_config: Option<String>,
    /// HTTP header naming the tenant of a write.
    #[arg(long = "receive.tenant-header", default_value = "THANOS-TENANT")]
    pub tenant_header: String,
    /// Tenant of writes without the tenant header.
    #[arg(long = "receive.default-tenant-id", default_value = "default-tenant")]
    pub default_tenant: String,
    /// External label naming the tenant.
    #[arg(long = "receive.tenant-label-name", default_value = "tenant_id")]
    pub tenant_label: String,
    /// How long local blocks are kept (they are deleted once shipped and this old).
    #[arg(long = "tsdb.retention", default_value = "15d", value_parser = duration)]
    pub retention: Duration,
    /// Out-of-order samples this far behind a tenant's newest are kept (0s: none).
    #[arg(long = "tsdb.out-of-order.time-window", default_value = "0s", value_parser = duration)]
    pub ooo_window: Duration,
    /// Samples further ahead of the wall clock are refused (0s: no limit).
    #[arg(long = "tsdb.too-far-in-future.time-window", default_value = "0s", value_parser = duration)]
    pub too_far_in_future: Duration,
    /// Block range: the head is cut into blocks of this length.
    #[arg(long = "tsdb.min-block-duration", default_value = "2h", value_parser = duration)]
    pub min_block_duration: Duration,
    /// Accepted for Thanos compatibility; must equal `--tsdb.min-block-duration`.
    #[arg(long = "tsdb.max-block-duration", default_value = "2h", value_parser = duration)]
    pub max_block_duration: Duration,
    /// `off`: a write is answered once its WAL records are written to the file (a process
    /// kill loses nothing); `batch`: also fsynced (a power loss loses nothing), one fsync
    /// shared by the writes that wait for it.
    #[arg(long = "tsdb.wal-fsync", default_value = "off", value_parser = ["off", "batch"])]
    pub wal_fsync: String,
    /// Compress WAL records with snappy.
    #[arg(long = "tsdb.wal-compression", default_value_t = true, action = clap::ArgAction::Set)]
    pub wal_compression: bool,
    /// Active series one tenant may hold; new series past it are refused with 429 (0 = no
    /// limit).
    #[arg(long = "receive.limits.max-series", default_value_t = 0)]
    pub max_series: u64,
    /// Exemplars each tenant's head keeps in its circular buffer, the oldest overwritten
    /// first; 0 turns exemplar storage off (exemplars written are dropped, and the Exemplars
    /// gRPC service is not advertised).
    #[arg(long = "tsdb.max-exemplars", default_value_t = 0)]
    pub max_exemplars: u64,
    /// Series one request may carry; more is refused with 413 (0 = no limit).
    #[arg(long = "receive.limits.request-series", default_value_t = 0)]
    pub request_series: usize,
    /// Samples one request may carry; more is refused with 413 (0 = no limit).
    #[arg(long = "receive.limits.request-samples", default_value_t = 0)]
    pub request_samples: usize,
    /// Bytes of one (compressed) request body; more is refused with 413.
    #[arg(long = "receive.limits.request-size", default_value = "32MiB", value_parser = parse_bytes)]
    pub request_size: u64,
    /// Labels one series may have, `__name__` included; a series with more is refused with
    /// 400 (0 = no limit). See docs/security.md for the defaults.
    #[arg(long = "receive.limits.label-count", default_value_t = 128)]
    pub label_count: usize,
    /// Bytes of one label name; a series with a longer one is refused with 400 (0 = no limit).
    #[arg(long = "receive.limits.label-name-length", default_value_t = 1024)]
    pub label_name_length: usize,
    /// Bytes of one label value; a series with a longer one is refused with 400 (0 = no
    /// limit).
    #[arg(long = "receive.limits.label-value-length", default_value_t = 4096)]
    pub label_value_length: usize,
    /// Engine cores for the heads (threads pinned one per CPU); 0 = one per CPU.
    #[arg(long = "engine.cores", default_value_t = 0)]
    pub engine_cores: usize,
    /// How often each tenant's head is checked for a block to cut and blocks to ship.
    #[arg(long = "receive.cut-check-interval", default_value = "15s", value_parser = duration, hide = true)]
    pub cut_check_interval: Duration,
    /// File of Thanos hashrings (JSON): series are spread over the receivers it lists.
    /// Without one (or `--receive.hashrings`), every series stays here.
    #[arg(long = "receive.hashrings-file")]
    pub hashrings_file: Option<PathBuf>,
    /// The hashrings as JSON text, instead of a file.
    #[arg(long = "receive.hashrings", conflicts_with = "hashrings_file")]
    pub hashrings: Option<String>,
    /// Algorithm of hashrings that do not name one.
    #[arg(long = "receive.hashrings-algorithm", default_value = "hashmod", value_parser = ["hashmod", "ketama"])]
    pub hashrings_algorithm: String,
    /// How often the hashrings file is read again in full; a change of its size, time or
    /// inode is noticed within a second.
    #[arg(long = "receive.hashrings-file-refresh-interval", default_value = "5m", value_parser = duration)]
    pub hashrings_refresh: Duration,
    /// This receiver's endpoint as the hashrings list it (`host:port` of its gRPC server);
    /// without it, a receiver with hashrings only routes.
    #[arg(long = "receive.local-endpoint")]
    pub local_endpoint: Option<String>,
    /// Copies of each series, on distinct receivers; a write succeeds once a quorum (a
    /// majority; 1 of 2) of them took it.
    #[arg(long = "receive.replication-factor", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub replication_factor: u64,
    /// How long a write forwarded to another receiver may take.
    #[arg(long = "receive-forward-timeout", default_value = "5s", value_parser = duration)]
    pub forward_timeout: Duration,
    /// HTTP header with the replica number (from 1) of a write another receiver replicated.
    #[arg(long = "receive.replica-header", default_value = "THANOS-REPLICA")]
    pub replica_header: String,
    /// TLS of the gRPC server, and the web configuration file of the HTTP and remote-write
    /// servers.
    #[command(flatten)]
    pub security: crate::tls::ServerSecurityArgs,
    /// TLS of the remote-write listener, when it differs from `--http.config`'s.
    #[command(flatten)]
    pub remote_write_tls: crate::tls::RemoteWriteServerTlsArgs,
    /// TLS of the connections forwarding writes to the other receivers of the hashring.
    #[command(flatten)]
    pub forward_tls: crate::tls::client::ForwardClientTlsArgs,
    /// Tenancy of reads (`--query.enforce-tenancy` and its header, default and label): the
    /// StoreAPI and `/api/v1/status/tenants` held to the caller's tenant.
    #[command(flatten)]
    pub tenancy: TenancyFlags,
}

/// The remote-write listener's TLS and authentication: `--remote-write.server-tls-*` when
/// given, else the HTTP servers' (`--http.config`); basic auth and headers come from
/// `--http.config` either way.
pub fn remote_write_web(
    http: &crate::http::webconfig::WebConfig,
    tls: &crate::tls::RemoteWriteServerTlsArgs,
) -> anyhow::Result<crate::http::webconfig::WebConfig> {
    Ok(match tls.load()? {
        Some(t) => http.clone().with_tls(t),
        None => http.clone(),
    })
}

/// Parses `name="value"` (the value quoted as a Go string literal, as Thanos takes it).
pub fn parse_label(s: &str) -> Result<Label, String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: want name=\"value\""))?;
    let value = value.trim();
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(|| format!("{s:?}: the value must be double-quoted"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c @ ('\\' | '"')) => out.push(c),
                other => return Err(format!("{s:?}: unknown escape \\{}", other.unwrap_or(' '))),
            }
        } else {
            out.push(c);
        }
    }
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("{s:?}: empty label name"));
    }
    Ok(Label::new(name, out))
}

impl ReceiveArgs {
    /// The heads' settings, their selections reserving from `budget`.
    fn head_options(&self, budget: Arc<MemoryBudget>) -> anyhow::Result<HeadOptions> {
        let block = self.min_block_duration.as_millis() as i64;
        if block <= 0 {
            anyhow::bail!("--tsdb.min-block-duration must be positive");
        }
        if self.max_block_duration != self.min_block_duration {
            anyhow::bail!(
                "--tsdb.max-block-duration must equal --tsdb.min-block-duration (the receiver cuts blocks of one range; the compactor makes longer ones)"
            );
        }
        Ok(HeadOptions {
            block_duration_ms: block,
            ooo_window_ms: self.ooo_window.as_millis() as i64,
            too_far_in_future_ms: self.too_far_in_future.as_millis() as i64,
            max_series: self.max_series,
            max_exemplars: self.max_exemplars,
            wal: WalOptions {
                compress: self.wal_compression,
                ..WalOptions::default()
            },
            budget,
        })
    }

    fn limits(&self) -> RequestLimits {
        RequestLimits {
            body_bytes: self.request_size as usize,
            series: self.request_series,
            samples: self.request_samples,
            labels: LabelLimits {
                max_labels: self.label_count,
                max_name_bytes: self.label_name_length,
                max_value_bytes: self.label_value_length,
                // A series without a name cannot be selected by name and is refused, as
                // Prometheus's own receiver refuses it.
                require_metric_name: true,
            },
        }
    }

    /// The tenancy reads are held to; the tenant label must be the one writes are labelled
    /// with, or every read would find nothing.
    fn read_tenancy(&self) -> anyhow::Result<Option<Tenancy>> {
        let tenancy = self.tenancy.tenancy()?;
        if let Some(t) = &tenancy
            && t.label != self.tenant_label
        {
            anyhow::bail!(
                "--query.tenant-label-name={:?} differs from --receive.tenant-label-name={:?}: \
                 the tenancy enforced on reads must use the label writes are labelled with",
                t.label,
                self.tenant_label
            );
        }
        Ok(tenancy)
    }

    fn forwarder(&self) -> anyhow::Result<Option<Forwarder>> {
        let opts = ForwardOptions {
            local_endpoint: self.local_endpoint.clone(),
            replication_factor: self.replication_factor,
            timeout: self.forward_timeout,
            algorithm: Algorithm::parse(&self.hashrings_algorithm).unwrap_or_default(),
            tls: self.forward_tls.load()?,
        };
        Ok(match (&self.hashrings_file, &self.hashrings) {
            (Some(path), _) => Some(Forwarder::from_file(path, self.hashrings_refresh, opts)?),
            (None, Some(json)) => Some(Forwarder::from_json(json, opts)?),
            (None, None) => None,
        })
    }

    /// The bucket `--objstore.config` or `--objstore.config-file` names, if either is given.
    pub fn bucket_config(&self) -> anyhow::Result<Option<BucketConfig>> {
        crate::store::objstore_config(
            self.objstore_config.as_deref(),
            self.objstore_config_file.as_deref(),
        )
    }
}

/// Runs the receiver until SIGINT or SIGTERM.
pub fn run(args: ReceiveArgs, budget: Arc<MemoryBudget>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-net")
        .thread_keep_alive(crate::memory::IDLE_THREAD_KEEP_ALIVE)
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let bucket = args.bucket_config()?;
        let r = Receiver::start(&args, bucket, budget).await?;
        r.serve(crate::http::shutdown_signal()).await
    })
}

/// A running receiver: its tenants, their write endpoint, StoreAPI and background loop.
#[derive(Debug)]
pub struct Receiver {
    args: ReceiveArgs,
    /// The listeners' TLS and authentication, read from the files the flags name.
    security: crate::tls::ServerSecurity,
    /// TLS and authentication of the remote-write listener.
    remote_write_web: crate::http::webconfig::WebConfig,
    /// Every tenant.
    pub tenants: Arc<Tenants>,
    write: Arc<WriteState>,
    bucket: Option<Arc<Bucket>>,
    ship_stats: Arc<ShipStats>,
    cuts: Arc<std::sync::atomic::AtomicU64>,
    cut_failures: Arc<std::sync::atomic::AtomicU64>,
    /// The tenancy the StoreAPI and the tenants page are held to (`--query.enforce-tenancy`).
    tenancy: Option<Tenancy>,
}

impl Receiver {
    /// Opens every tenant found under `--tsdb.path` (replaying their WALs); cut blocks are
    /// shipped to `bucket` when there is one (the objstore flags' [`ReceiveArgs::bucket_config`]
    /// for `gauntlet receive`, the bucket itself inside `gauntlet all`). Its heads, writes and
    /// reads reserve from `budget`, the receive role's.
    pub async fn start(
        args: &ReceiveArgs,
        bucket: Option<BucketConfig>,
        budget: Arc<MemoryBudget>,
    ) -> anyhow::Result<Receiver> {
        // Certificate and web configuration errors end the start before any WAL is read.
        let security = args.security.load()?;
        let remote_write_web = remote_write_web(&security.http, &args.remote_write_tls)?;
        let tenancy = args.read_tenancy()?;
        let opts = args.head_options(budget)?;
        let bucket = match bucket {
            Some(cfg) => {
                tracing::info!(bucket = %cfg.describe(), "blocks will be shipped to the bucket");
                Some(Arc::new(Bucket::open(&cfg)?))
            }
            None => None,
        };
        let rt = HeadRuntime::start(&RuntimeConfig {
            cores: args.engine_cores,
            io: IoChoice::Pread,
            pin: true,
            name: "gauntlet-head".into(),
        })?;
        rt.set_idle_hook(crate::memory::idle_hook());
        let mut labels = args.labels.clone();
        labels.sort();
        labels.dedup_by(|a, b| a.name == b.name);
        let tenants = Tenants::new(
            &args.tsdb_path,
            rt,
            opts,
            Labels::from_sorted(labels),
            args.tenant_label.clone(),
        );
        let tenants = Arc::new(match args.role_source {
            Some(source) => tenants.for_role(source),
            None => tenants,
        });
        let opener = tenants.clone();
        let opened = tokio::task::spawn_blocking(move || opener.open_existing()).await??;
        tracing::info!(path = %args.tsdb_path.display(), tenants = opened.len(), "receiver's tenants opened");
        let write = Arc::new(WriteState {
            tenants: tenants.clone(),
            tenant_header: args.tenant_header.to_ascii_lowercase(),
            default_tenant: args.default_tenant.clone(),
            limits: args.limits(),
            fsync: args.wal_fsync == "batch",
            stats: WriteStats::default(),
            replica_header: args.replica_header.to_ascii_lowercase(),
            forward: args.forwarder()?.map(Arc::new),
        });
        Ok(Receiver {
            args: args.clone(),
            security,
            remote_write_web,
            tenants,
            write,
            bucket,
            ship_stats: Arc::new(ShipStats::default()),
            cuts: Arc::default(),
            cut_failures: Arc::default(),
            tenancy,
        })
    }

    /// The remote-write routes (`/api/v1/receive`, `/api/v1/write`).
    pub fn write_router(&self) -> Router {
        Router::new()
            .route("/api/v1/receive", post(write::receive))
            .route("/api/v1/write", post(write::receive))
            .with_state(self.write.clone())
    }

    /// `/api/v1/status/tenants`: every tenant with its active series, time range, ingest rate
    /// (samples a second over the last two minutes), head memory and blocks. Under
    /// `--query.enforce-tenancy` a request sees its own tenant's row only, and the default
    /// tenant's (a request without a tenant header) every row.
    pub fn status_router(&self) -> Router {
        let tenants = self.tenants.clone();
        let tenancy = self.tenancy.clone();
        Router::new().route(
            "/api/v1/status/tenants",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let tenants = tenants.clone();
                let view = StatusView::of(tenancy.as_ref(), &headers);
                async move {
                    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
                    let view = match view {
                        Ok(v) => v,
                        Err(why) => {
                            return (
                                axum::http::StatusCode::BAD_REQUEST,
                                json,
                                crate::http::json::error("bad_data", &why, &[]),
                            );
                        }
                    };
                    let list: Vec<serde_json::Value> = tenants
                        .all()
                        .iter()
                        .filter(|t| view.shows_tenant(&t.name))
                        .map(|t| tenant_json(t))
                        .collect();
                    (
                        axum::http::StatusCode::OK,
                        json,
                        serde_json::json!({"status": "success", "data": {"tenants": list}})
                            .to_string(),
                    )
                }
            }),
        )
    }

    /// The StoreAPI service over the tenants, held to the caller's tenant under
    /// `--query.enforce-tenancy`.
    pub fn store(&self) -> ReceiveStore {
        ReceiveStore::new(self.tenants.clone(), self.tenancy.clone())
            .with_exemplars(self.args.max_exemplars > 0)
    }

    /// The Exemplars service over the tenants, when exemplar storage is on.
    pub fn exemplars(&self) -> Option<exemplars::ReceiveExemplars> {
        (self.args.max_exemplars > 0)
            .then(|| exemplars::ReceiveExemplars::new(self.tenants.clone(), self.tenancy.clone()))
    }

    /// The tenancy reads are held to (`--query.enforce-tenancy`), if enforced.
    pub fn tenancy(&self) -> Option<&Tenancy> {
        self.tenancy.as_ref()
    }

    /// One pass of the background work for every tenant: cut a block if one is due, ship
    /// what is not shipped, apply retention.
    pub async fn maintain(&self) {
        for t in self.tenants.all() {
            // A note of the samples appended so far, for the ingest rate.
            t.ingest_rate();
            // Taken here, off the network threads, for /metrics to read.
            let head = t.head.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || head.memory()).await {
                tracing::warn!(tenant = %t.name, error = %e, "measuring the head's memory failed");
            }
            while let Some((start, end)) = t.head.due_block() {
                let tt = t.clone();
                let thanos = t.thanos_meta();
                let res = tokio::task::spawn_blocking(move || {
                    tt.head.cut_block(start, end, Some(thanos), |_| {
                        // Queries must find the block before the head drops its samples.
                        if let Err(e) = tt.reload_blocks() {
                            tracing::warn!(tenant = %tt.name, error = %e, "reopening blocks after a cut failed");
                        }
                    })
                })
                .await;
                match res {
                    Ok(Ok(_)) => {
                        self.cuts.fetch_add(1, Relaxed);
                    }
                    Ok(Err(e)) => {
                        self.cut_failures.fetch_add(1, Relaxed);
                        tracing::error!(tenant = %t.name, error = %e, "cutting a block failed; retrying on the next pass");
                        break;
                    }
                    Err(e) => {
                        self.cut_failures.fetch_add(1, Relaxed);
                        tracing::error!(tenant = %t.name, error = %e, "cutting a block failed");
                        break;
                    }
                }
            }
            if let Some(b) = &self.bucket {
                ship::ship(&t, b, &self.ship_stats).await;
            }
            let retention = self.args.retention.as_millis() as i64;
            if ship::apply_retention(&t, retention, self.bucket.is_some()) > 0
                && let Err(e) = t.reload_blocks()
            {
                tracing::warn!(tenant = %t.name, error = %e, "reopening blocks after retention failed");
            }
        }
    }

    /// Serves remote write, the StoreAPI and the operational endpoints until `shutdown`
    /// resolves, then syncs every WAL.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let me = Arc::new(self);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let rw_listener = tokio::net::TcpListener::bind(me.args.remote_write_address)
            .await
            .with_context(|| {
                format!(
                    "binding --remote-write.address {}",
                    me.args.remote_write_address
                )
            })?;
        let http_listener = tokio::net::TcpListener::bind(me.args.http_address)
            .await
            .with_context(|| format!("binding --http-address {}", me.args.http_address))?;
        let grpc_listener = tokio::net::TcpListener::bind(me.args.grpc_address)
            .await
            .with_context(|| format!("binding --grpc-address {}", me.args.grpc_address))?;
        tracing::info!(
            remote_write = %rw_listener.local_addr()?,
            http = %http_listener.local_addr()?,
            grpc = %grpc_listener.local_addr()?,
            "receive listening"
        );
        let background = me.spawn_maintenance(stop_rx.clone());
        let mut registry = crate::metrics::Registry::default();
        let server_metrics = crate::metrics::register_common(&mut registry, me.budget().clone());
        me.register_metrics(&mut registry);
        let svc = me.store();
        let grpc = tonic::transport::Server::builder()
            .layer(crate::metrics::GrpcMetricsLayer::new(&server_metrics))
            .layer(crate::memory::GrpcGuardLayer::new(me.budget()))
            .layer(forward::SnappyRequestsLayer)
            .layer(crate::grpc::RequestLimitsLayer)
            .add_service(
                thanos::store_server::StoreServer::new(svc.clone())
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(thanos::info::info_server::InfoServer::new(svc))
            .add_optional_service(
                me.exemplars()
                    .map(thanos::exemplars_server::ExemplarsServer::new),
            )
            .add_service(
                thanos::writeable_store_server::WriteableStoreServer::new(
                    WriteableStoreService::new(me.write.clone()),
                )
                .max_decoding_message_size(write::MAX_FORWARD_BYTES),
            )
            .serve_with_incoming_shutdown(
                crate::tls::Incoming::new(grpc_listener, me.security.grpc.clone())?,
                stopped(stop_rx.clone()),
            );
        let ops = ops::router(Arc::new(|| true), Arc::new(registry));
        let web = &me.security.http;
        let doors = crate::memory::HttpBudgets::one(me.budget());
        let http = crate::http::serve_on(
            http_listener,
            crate::memory::guard_http(
                me.write_router().merge(me.status_router()).merge(ops),
                doors.clone(),
            ),
            web,
            &server_metrics,
            stopped(stop_rx.clone()),
        );
        let rw = crate::http::serve_on(
            rw_listener,
            crate::memory::guard_http(me.write_router(), doors),
            &me.remote_write_web,
            &server_metrics,
            stopped(stop_rx.clone()),
        );
        let ring_watch = me
            .write
            .forward
            .clone()
            .map(|f| tokio::spawn(f.watch(stop_rx.clone())));
        let (g, h, w) = tokio::join!(grpc, http, rw);
        if let Some(t) = ring_watch {
            let _ = t.await;
        }
        let _ = background.await;
        me.sync_wals().await;
        g.context("gRPC server")?;
        h.context("HTTP server")?;
        w.context("remote-write server")?;
        tracing::info!("receive stopped");
        Ok(())
    }

    /// Runs [`Receiver::maintain`] every `--receive.cut-check-interval` until `stop` turns
    /// true.
    pub(crate) fn spawn_maintenance(
        self: &Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let every = me.args.cut_check_interval.max(Duration::from_millis(50));
        tokio::spawn(async move {
            loop {
                me.maintain().await;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    }

    /// fsyncs every tenant's WAL (at shutdown).
    pub(crate) async fn sync_wals(&self) {
        for t in self.tenants.all() {
            let head = t.head.clone();
            match tokio::task::spawn_blocking(move || head.sync_wal()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(tenant = %t.name, error = %e, "syncing the WAL at shutdown failed")
                }
                Err(e) => {
                    tracing::error!(tenant = %t.name, error = %e, "syncing the WAL at shutdown failed")
                }
            }
        }
    }

    /// Runs inside another role (`gauntlet all`): serves remote write on `listener` (bound by
    /// the caller to `--remote-write.address`, so a taken port fails the start) under the
    /// caller's web configuration `web`, and does the background work until `shutdown`
    /// resolves, then syncs every WAL. The caller serves [`Receiver::write_router`] on its own
    /// HTTP address too, and reads the tenants itself; requests are counted in the caller's
    /// `metrics`.
    pub async fn serve_embedded(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        web: crate::http::webconfig::WebConfig,
        metrics: Arc<crate::metrics::ServerMetrics>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tracing::info!(address = %listener.local_addr()?, "remote write listening");
        let background = self.spawn_maintenance(stop_rx.clone());
        let mut rx = stop_rx;
        let router = crate::memory::guard_http(
            self.write_router(),
            crate::memory::HttpBudgets::one(self.budget()),
        );
        let served = crate::http::serve_on(listener, router, &web, &metrics, async move {
            let _ = rx.wait_for(|s| *s).await;
        });
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let r = served.await;
        let _ = background.await;
        self.sync_wals().await;
        r.context("remote-write server")
    }

    /// Appends `series` to `tenant`'s head, as a write that came over the network would be:
    /// for roles that keep their own results here (the ruler).
    pub async fn append(
        &self,
        tenant: &str,
        series: Vec<gauntlet_proto::prometheus::TimeSeries>,
    ) -> write::Answer {
        write::write(&self.write, tenant, 0, write::Input::Forwarded(series)).await
    }

    /// The listeners' TLS and authentication, read from the files the flags name.
    pub fn security(&self) -> &crate::tls::ServerSecurity {
        &self.security
    }

    /// The receive role's memory budget, which its heads, writes and reads reserve from.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        self.write.tenants.budget()
    }

    /// Registers the receiver's metrics in `registry`, read from it at each scrape.
    pub fn register_metrics(self: &Arc<Self>, registry: &mut crate::metrics::Registry) {
        registry.register_collector(Box::new(ReceiveCollector(self.clone())));
    }
}

/// The receiver's metrics, named as Thanos Receive and Prometheus's TSDB name them where the
/// meaning is the same.
#[derive(Debug)]
struct ReceiveCollector(Arc<Receiver>);

impl prometheus_client::collector::Collector for ReceiveCollector {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use crate::metrics::{counter, counters, gauge, gauges};
        let (me, e) = (&self.0, &mut enc);
        let ws = &me.write.stats;
        counters(
            e,
            "thanos_receive_write_requests_total",
            "Remote-write requests answered, by status code.",
            WriteStats::CODES
                .iter()
                .zip(&ws.codes)
                .map(|(code, n)| ([("code", *code)], n.load(Relaxed))),
        )?;
        for (name, help, v) in [
            (
                "thanos_receive_write_timeseries_total",
                "Series received in remote-write requests.",
                ws.series.load(Relaxed),
            ),
            (
                "gauntlet_receive_write_v2_requests_total",
                "Remote-write requests taken as protocol 2.0.",
                ws.v2_requests.load(Relaxed),
            ),
            (
                "thanos_receive_write_samples_total",
                "Float samples received in remote-write requests.",
                ws.samples.load(Relaxed),
            ),
            (
                "gauntlet_receive_invalid_series_total",
                "Series refused for invalid labels.",
                ws.invalid_series.load(Relaxed),
            ),
            (
                "gauntlet_receive_write_histograms_total",
                "Native histogram samples received in remote-write requests and forwarded writes.",
                ws.histograms.load(Relaxed),
            ),
            (
                "gauntlet_receive_write_exemplars_total",
                "Exemplars received in remote-write requests and forwarded writes.",
                ws.exemplars.load(Relaxed),
            ),
            (
                "thanos_receive_head_series_limited_requests_total",
                "Requests that hit a tenant's active series limit.",
                me.tenants.series_limited_requests(),
            ),
            (
                "thanos_shipper_uploads_total",
                "Blocks uploaded to the bucket.",
                me.ship_stats.uploads.load(Relaxed),
            ),
            (
                "thanos_shipper_upload_failures_total",
                "Block uploads that failed.",
                me.ship_stats.failures.load(Relaxed),
            ),
            (
                "prometheus_tsdb_compactions_total",
                "Blocks cut from the heads.",
                me.cuts.load(Relaxed),
            ),
            (
                "prometheus_tsdb_compactions_failed_total",
                "Block cuts that failed.",
                me.cut_failures.load(Relaxed),
            ),
        ] {
            counter(e, name, help, v)?;
        }
        let tenants = me.tenants.all();
        gauge(
            e,
            "gauntlet_receive_tenants",
            "Tenants open.",
            tenants.len() as u64,
        )?;
        // Each tenant's head read once for all its families.
        let heads: Vec<TenantHead> = tenants
            .iter()
            .map(|t| TenantHead {
                name: t.name.clone(),
                stats: t.head.stats(),
                exemplars: t.head.exemplar_stats(),
                memory: t.head.last_memory(),
                blocks: t.block_metas().len() as u64,
            })
            .collect();
        let by_tenant = |h: &TenantHead| [("tenant", h.name.clone())];
        let tenant_gauges: [TenantGauge; 11] = [
            (
                "prometheus_tsdb_exemplar_max_exemplars",
                "Exemplars the head's circular buffer holds at most (--tsdb.max-exemplars).",
                |h| h.exemplars.max_exemplars as i64,
            ),
            (
                "prometheus_tsdb_exemplar_exemplars_in_storage",
                "Exemplars in the head's circular buffer.",
                |h| h.exemplars.exemplars as i64,
            ),
            (
                "prometheus_tsdb_exemplar_series_with_exemplars_in_storage",
                "Series with exemplars in the head's circular buffer.",
                |h| h.exemplars.series as i64,
            ),
            (
                "prometheus_tsdb_exemplar_last_exemplars_timestamp_seconds",
                "Timestamp of the newest exemplar stored, seconds.",
                |h| h.exemplars.last_ts / 1000,
            ),
            ("prometheus_tsdb_head_series", "Series in the head.", |h| {
                h.stats.series as i64
            }),
            (
                "prometheus_tsdb_head_min_time",
                "Oldest sample in the head, ms.",
                |h| match h.stats.min_time {
                    i64::MAX => 0,
                    m => m,
                },
            ),
            (
                "prometheus_tsdb_head_max_time",
                "Newest sample in the head, ms.",
                |h| match h.stats.max_time {
                    i64::MIN => 0,
                    m => m,
                },
            ),
            (
                "gauntlet_tsdb_head_chunk_bytes",
                "Bytes of chunk data (and out-of-order samples) the head holds, as last measured.",
                |h| h.memory.chunk_bytes as i64,
            ),
            (
                "gauntlet_tsdb_head_label_bytes",
                "Bytes of the head's series labels, as last measured.",
                |h| h.memory.label_bytes as i64,
            ),
            (
                "gauntlet_tsdb_head_index_bytes",
                "Bytes of the head's series records, hash index and postings, as last measured.",
                |h| h.memory.index_bytes as i64,
            ),
            (
                "prometheus_tsdb_blocks_loaded",
                "Local blocks of the tenant.",
                |h| h.blocks as i64,
            ),
        ];
        let tenant_counters: [TenantCounter; 5] = [
            (
                "prometheus_tsdb_exemplar_exemplars_appended_total",
                "Exemplars stored in the head's circular buffer.",
                |h| h.exemplars.appended,
            ),
            (
                "prometheus_tsdb_exemplar_out_of_order_exemplars_total",
                "Exemplars refused as out of order for their series.",
                |h| h.exemplars.out_of_order,
            ),
            (
                "prometheus_tsdb_head_samples_appended_total",
                "Samples appended to the head in order.",
                |h| h.stats.appended,
            ),
            (
                "prometheus_tsdb_head_out_of_order_samples_appended_total",
                "Samples appended to the head out of order.",
                |h| h.stats.appended_ooo,
            ),
            (
                "gauntlet_tsdb_head_samples_refused_total",
                "Samples refused by the head (conflicts and limits).",
                |h| h.stats.refused,
            ),
        ];
        for (name, help, f) in tenant_gauges {
            gauges(e, name, help, heads.iter().map(|h| (by_tenant(h), f(h))))?;
        }
        for (name, help, f) in tenant_counters {
            counters(e, name, help, heads.iter().map(|h| (by_tenant(h), f(h))))?;
        }
        if let Some(f) = &me.write.forward {
            f.encode_metrics(e)?;
        }
        Ok(())
    }
}

/// What the per-tenant families read of one tenant, read once per scrape.
struct TenantHead {
    name: String,
    stats: gauntlet_engine::head::HeadStats,
    exemplars: gauntlet_engine::head::ExemplarStats,
    memory: gauntlet_engine::head::HeadMemory,
    blocks: u64,
}

/// A per-tenant gauge: name, help and how to read it.
type TenantGauge = (&'static str, &'static str, fn(&TenantHead) -> i64);

/// A per-tenant counter: name (with its `_total`), help and how to read it.
type TenantCounter = (&'static str, &'static str, fn(&TenantHead) -> u64);

/// One tenant as `/api/v1/status/tenants` shows it.
fn tenant_json(t: &tenants::Tenant) -> serde_json::Value {
    let stats = t.head.stats();
    let mem = t.head.last_memory();
    let shipped = t.shipped.lock().map_or(0, |s| s.len());
    serde_json::json!({
        "name": t.name,
        "externalLabels": t.external.iter().map(|l| (l.name.to_string(), serde_json::Value::String(l.value.to_string()))).collect::<serde_json::Map<_, _>>(),
        "series": stats.series,
        "minTime": (stats.min_time != i64::MAX).then_some(stats.min_time),
        "maxTime": (stats.max_time != i64::MIN).then_some(stats.max_time),
        "samplesAppended": stats.appended,
        "outOfOrderSamplesAppended": stats.appended_ooo,
        "samplesRefused": stats.refused,
        "ingestRate": t.ingest_rate(),
        "walBytes": stats.wal_bytes,
        "headBytes": mem.chunk_bytes + mem.label_bytes + mem.index_bytes,
        "localBlocks": t.block_metas().len(),
        "shippedBlocks": shipped,
        "seriesLimitedRequests": t.series_limited_requests.load(Relaxed),
    })
}
