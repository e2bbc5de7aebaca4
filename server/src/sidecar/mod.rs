//! `gauntlet sidecar`: beside a running Prometheus, as `thanos sidecar`. It waits for
//! Prometheus (its external labels, and with uploads on its block duration flags), serves
//! its data over the StoreAPI and Info (the persisted blocks read from `--tsdb.path`, the head
//! through remote read), proxies Prometheus's exemplars, metadata, targets and rules over
//! gRPC, and with a bucket uploads the blocks Prometheus cuts.

pub mod apis;
pub mod prometheus;
pub mod reloader;
pub mod rules;
pub mod shipper;
pub mod status;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use gauntlet_engine::bucket::Bucket;
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_proto::thanos;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use self::prometheus::{PromClient, TsdbFlags};
use self::shipper::Shipper;
use self::store::{PromState, SidecarStore};
use crate::http::ops;
use crate::metrics::{self, Registry};

/// Flags of `gauntlet sidecar`, named as Thanos's sidecar names them.
#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// URL of Prometheus's API.
    #[arg(long = "prometheus.url", default_value = "http://localhost:9090")]
    prometheus_url: String,
    /// How often Prometheus's external labels and lowest timestamp are read (the heartbeat),
    /// and how long apart the attempts are while waiting for it at start.
    #[arg(long = "prometheus.get_config_interval", default_value = "30s", value_parser = humantime::parse_duration)]
    get_config_interval: Duration,
    /// Bound on each call to Prometheus's HTTP API (remote read is bounded by 10 times it).
    #[arg(long = "prometheus.get_config_timeout", default_value = "30s", value_parser = humantime::parse_duration)]
    get_config_timeout: Duration,
    /// Prometheus's TSDB directory (its `--storage.tsdb.path`).
    #[arg(long = "tsdb.path", default_value = "./data")]
    tsdb_path: PathBuf,
    /// Objstore configuration file (Thanos YAML); without it (or --objstore.config) no block
    /// is uploaded.
    #[arg(long = "objstore.config-file")]
    objstore_config_file: Option<PathBuf>,
    /// Objstore configuration as YAML text, instead of a file.
    #[arg(long = "objstore.config")]
    objstore_config: Option<String>,
    /// Upload compacted blocks (level > 1) too, not only those Prometheus cuts from its head.
    #[arg(long = "shipper.upload-compacted")]
    upload_compacted: bool,
    /// How often the TSDB directory is scanned for blocks to upload (Thanos's sidecar: 30s,
    /// not configurable).
    #[arg(long = "shipper.sync-interval", default_value = "30s", value_parser = humantime::parse_duration)]
    ship_interval: Duration,
    /// Address the gRPC StoreAPI, Info, Exemplars, Metadata, Targets and Rules listen on.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: SocketAddr,
    /// Address the status page, /metrics, /-/ready and /-/healthy listen on.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// Prometheus's configuration file, watched: a change makes Prometheus reload (`POST
    /// /-/reload`, which needs its `--web.enable-lifecycle`).
    #[arg(long = "reloader.config-file")]
    reloader_config_file: Option<PathBuf>,
    /// Where the configuration file is written with every `$(VAR)` replaced by the
    /// environment variable's value (Prometheus then reads this file).
    #[arg(long = "reloader.config-envsubst-file")]
    reloader_envsubst_file: Option<PathBuf>,
    /// A rule directory whose files are watched (repeatable): a change makes Prometheus
    /// reload.
    #[arg(long = "reloader.rule-dir")]
    reloader_rule_dirs: Vec<PathBuf>,
    /// How often the watched files are read for changes.
    #[arg(long = "reloader.watch-interval", default_value = "3m", value_parser = humantime::parse_duration)]
    reloader_watch_interval: Duration,
    /// How long apart a failed reload is tried again.
    #[arg(long = "reloader.retry-interval", default_value = "5s", value_parser = humantime::parse_duration)]
    reloader_retry_interval: Duration,
    /// How Prometheus is told to reload: `http` (`POST /-/reload`, which needs its
    /// `--web.enable-lifecycle`) or `signal` (SIGHUP to the process named
    /// --reloader.process-name, which must share the sidecar's process namespace).
    #[arg(long = "reloader.method", default_value = "http", value_parser = ["http", "signal"])]
    reloader_method: String,
    /// The executable name of the process the signal method reloads.
    #[arg(long = "reloader.process-name", default_value = "prometheus")]
    reloader_process_name: String,
    /// TLS of the gRPC server, and the HTTP server's web configuration file.
    #[command(flatten)]
    security: crate::tls::ServerSecurityArgs,
}

/// Runs the sidecar until SIGINT or SIGTERM.
pub fn run(args: SidecarArgs, budget: Arc<MemoryBudget>) -> anyhow::Result<()> {
    let bucket_cfg = crate::store::objstore_config(
        args.objstore_config.as_deref(),
        args.objstore_config_file.as_deref(),
    )?;
    if args.reloader_envsubst_file.is_some() && args.reloader_config_file.is_none() {
        anyhow::bail!("--reloader.config-envsubst-file needs --reloader.config-file");
    }
    if !args.tsdb_path.is_dir() {
        anyhow::bail!(
            "--tsdb.path {} is not a directory (it must be Prometheus's --storage.tsdb.path)",
            args.tsdb_path.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-net")
        .thread_keep_alive(crate::memory::IDLE_THREAD_KEEP_ALIVE)
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(args, bucket_cfg, budget))
}

/// Whether a block duration pair lets the sidecar upload: Prometheus must not compact (min
/// equal to max), or a block might be merged away before it is shipped.
fn check_block_durations(f: &TsdbFlags) -> anyhow::Result<()> {
    if f.min_block_duration != f.max_block_duration {
        anyhow::bail!(
            "Prometheus's storage.tsdb.min-block-duration is {} and storage.tsdb.max-block-duration is {}: \
             with uploads on, compaction must be off (set both to the same value, e.g. 2h), \
             or a block may be compacted away before it is uploaded",
            f.min_block_duration,
            f.max_block_duration
        );
    }
    if f.min_block_duration != "2h" {
        tracing::warn!(block_duration = %f.min_block_duration, "Prometheus's block duration is not 2h; 2h is recommended");
    }
    Ok(())
}

async fn serve(
    args: SidecarArgs,
    bucket_cfg: Option<gauntlet_engine::bucket::BucketConfig>,
    budget: Arc<MemoryBudget>,
) -> anyhow::Result<()> {
    let security = args.security.load()?;
    let client = PromClient::new(&args.prometheus_url, args.get_config_timeout)?;
    let state = Arc::new(PromState::new(
        client,
        args.tsdb_path.clone(),
        args.get_config_timeout,
        args.get_config_timeout * 10,
    ));
    let shipper = match &bucket_cfg {
        Some(cfg) => {
            tracing::info!(bucket = %cfg.describe(), "blocks will be uploaded to the bucket");
            Some(Arc::new(Shipper {
                dir: args.tsdb_path.clone(),
                bucket: Bucket::open(cfg)?,
                upload_compacted: args.upload_compacted,
                stats: shipper::ShipperStats::default(),
            }))
        }
        None => {
            tracing::info!("no bucket configured (--objstore.config-file); uploads are off");
            None
        }
    };

    let reloader_config = reloader::ReloaderConfig {
        config_file: args.reloader_config_file.clone(),
        envsubst_file: args.reloader_envsubst_file.clone(),
        rule_dirs: args.reloader_rule_dirs.clone(),
        watch_interval: args.reloader_watch_interval,
        retry_interval: args.reloader_retry_interval,
        method: if args.reloader_method == "signal" {
            reloader::ReloadMethod::Signal {
                process_name: args.reloader_process_name.clone(),
            }
        } else {
            reloader::ReloadMethod::Http
        },
    };
    let reloader = reloader_config.is_on().then(|| {
        Arc::new(reloader::Reloader::new(
            reloader_config,
            state.client.clone(),
            args.get_config_timeout,
        ))
    });

    // The HTTP server answers from the start (healthy, not ready) while Prometheus is waited
    // for.
    let http_listener = tokio::net::TcpListener::bind(args.http_address)
        .await
        .with_context(|| format!("binding --http-address {}", args.http_address))?;
    let mut registry = Registry::default();
    let server_metrics = crate::metrics::register_common(&mut registry, budget.clone());
    registry.register_collector(Box::new(SidecarCollector {
        state: state.clone(),
        shipper: shipper.clone(),
        reloader: reloader.as_ref().map(|r| r.stats.clone()),
    }));
    let ready = state.clone();
    let app = ops::router(Arc::new(move || ready.is_up()), Arc::new(registry)).merge(
        status::router(status::StatusSources {
            state: state.clone(),
            shipper: shipper.clone(),
            reloader: reloader.as_ref().map(|r| r.stats.clone()),
        }),
    );
    // The HTTP server stops on SIGTERM, or when the rest stops first (an error at start).
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let http = crate::http::serve_on(
        http_listener,
        app,
        &security.http,
        &server_metrics,
        async move {
            tokio::select! {
                () = shutdown() => {}
                _ = stop_rx.changed() => {}
            }
        },
    );
    // The reloader runs from the start, as Thanos's: Prometheus may be waiting for a
    // configuration the sidecar writes (--reloader.config-envsubst-file).
    let reloading = reloader.map(|r| {
        let stop = stop_tx.subscribe();
        tokio::spawn(r.run(stop))
    });
    let rest = async {
        let res = serve_store(&args, &state, shipper, &budget, &server_metrics, &security).await;
        let _ = stop_tx.send(true);
        res
    };
    let (h, r) = tokio::join!(http, rest);
    if let Some(task) = reloading {
        // Stopped by the same signal as the HTTP server.
        let _ = task.await;
    }
    r?;
    h.context("HTTP server")?;
    // The index-headers are rebuilt at the next start: nothing is left in the temporary
    // directory.
    let dir = state.index_dir();
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "removing the index-headers");
    }
    tracing::info!("sidecar stopped");
    Ok(())
}

/// Waits for Prometheus, then serves the StoreAPI and Info and runs the heartbeat and the
/// shipper until SIGINT or SIGTERM.
async fn serve_store(
    args: &SidecarArgs,
    state: &Arc<PromState>,
    shipper: Option<Arc<Shipper>>,
    budget: &Arc<MemoryBudget>,
    server_metrics: &Arc<crate::metrics::ServerMetrics>,
    security: &crate::tls::ServerSecurity,
) -> anyhow::Result<()> {
    tracing::info!(prometheus = %args.prometheus_url, tsdb_path = %args.tsdb_path.display(), "sidecar starting; waiting for Prometheus");
    let waited = tokio::select! {
        r = wait_for_prometheus(state, shipper.is_some(), args.get_config_interval) => r,
        () = shutdown() => {
            tracing::info!("stopped while waiting for Prometheus");
            return Ok(());
        }
    };
    waited?;

    let grpc_listener = tokio::net::TcpListener::bind(args.grpc_address)
        .await
        .with_context(|| format!("binding --grpc-address {}", args.grpc_address))?;
    tracing::info!(grpc = %grpc_listener.local_addr()?, "serving the StoreAPI");
    let svc = SidecarStore::new(state.clone(), budget.clone());
    let apis = apis::SidecarApis::new(state.clone());
    let grpc = tonic::transport::Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer::new(server_metrics))
        .layer(crate::memory::GrpcGuardLayer::new(budget))
        .layer(crate::grpc::RequestLimitsLayer)
        .add_service(crate::grpc::StoreApi::new(svc.clone()))
        .add_service(thanos::info::info_server::InfoServer::new(svc))
        .add_service(thanos::exemplars_server::ExemplarsServer::new(apis.clone()))
        .add_service(thanos::metadata_server::MetadataServer::new(apis.clone()))
        .add_service(thanos::targets_server::TargetsServer::new(apis))
        .add_service(rules::SidecarRules::server(state.clone(), budget.clone()))
        .serve_with_incoming_shutdown(
            crate::tls::Incoming::new(grpc_listener, security.grpc.clone())?,
            shutdown(),
        );

    let heartbeat = tokio::spawn(heartbeat(state.clone(), args.get_config_interval));
    let shipping = shipper.map(|s| tokio::spawn(ship_loop(s, state.clone(), args.ship_interval)));
    let res = grpc.await;
    heartbeat.abort();
    if let Some(s) = shipping {
        s.abort();
    }
    res.context("gRPC server")
}

/// Waits until Prometheus answers: with uploads, its block durations are checked (an error
/// when they differ); then its external labels and lowest timestamp are read (an error when
/// it has no external labels, which a sidecar's blocks and series need to be told apart).
async fn wait_for_prometheus(
    state: &PromState,
    uploads: bool,
    every: Duration,
) -> anyhow::Result<()> {
    if uploads {
        let flags = loop {
            match state.client.tsdb_flags(state.timeout).await {
                Ok(f) => break f,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read Prometheus's flags; is it running? retrying");
                    tokio::time::sleep(every).await;
                }
            }
        };
        check_block_durations(&flags)?;
        tracing::info!(block_duration = %flags.min_block_duration, "Prometheus's flags checked");
    }
    while let Err(e) = state.refresh().await {
        tracing::warn!(error = %e, "could not read Prometheus's external labels and lowest timestamp; is it running? retrying");
        tokio::time::sleep(every).await;
    }
    if state.external().is_empty() {
        anyhow::bail!(
            "Prometheus at {} has no external labels (global.external_labels): a sidecar needs labels \
             that tell its Prometheus's series and blocks apart from others'",
            state.client.url()
        );
    }
    tracing::info!(external_labels = %state.external(), "Prometheus is ready");
    if let Err(e) = state.block_store().await {
        tracing::warn!(error = %e, "opening the persisted blocks");
    }
    Ok(())
}

/// Reads Prometheus's external labels and lowest timestamp every `every`; Prometheus is
/// marked down (not ready, Info and Series refused) while it does not answer.
async fn heartbeat(state: Arc<PromState>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // A failure is logged by `refresh` when the state changes.
        if state.refresh().await.is_ok() {
            // New blocks are loaded here rather than by the next Series call.
            if let Err(e) = state.block_store().await {
                tracing::warn!(error = %e, "opening the persisted blocks");
            }
        }
    }
}

/// Runs the shipper every `every`, while Prometheus's external labels are known.
async fn ship_loop(shipper: Arc<Shipper>, state: Arc<PromState>, every: Duration) {
    loop {
        let ext = state.external();
        match shipper.sync(&ext).await {
            Ok(n) if n > 0 => tracing::info!(uploaded = n, "shipper pass done"),
            Ok(_) => tracing::debug!("shipper pass done; nothing new"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "shipper pass failed; retrying on the next")
            }
        }
        tokio::time::sleep(every).await;
    }
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

/// The sidecar's metrics, named as Thanos's sidecar and shipper name them.
#[derive(Debug)]
struct SidecarCollector {
    state: Arc<PromState>,
    shipper: Option<Arc<Shipper>>,
    reloader: Option<Arc<reloader::ReloaderStats>>,
}

impl Collector for SidecarCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut enc;
        metrics::gauge(
            e,
            "thanos_sidecar_prometheus_up",
            "Boolean indicator whether the sidecar can reach its Prometheus peer.",
            u64::from(self.state.is_up()),
        )?;
        metrics::counter(
            e,
            "gauntlet_sidecar_series_requests_total",
            "Series calls received.",
            self.state.series_requests.load(Relaxed),
        )?;
        metrics::counter(
            e,
            "gauntlet_sidecar_series_unavailable_total",
            "Series calls failed because Prometheus was not reachable.",
            self.state.series_unavailable.load(Relaxed),
        )?;
        metrics::gauge(
            e,
            "gauntlet_sidecar_blocks_served",
            "Persisted blocks of Prometheus's TSDB directory served, as of the last sync.",
            self.state.blocks_served.load(Relaxed),
        )?;
        if let Some(r) = &self.reloader {
            reloader_metrics(e, r)?;
        }
        let Some(s) = &self.shipper else {
            return Ok(());
        };
        let st = &s.stats;
        for (name, help, v) in [
            (
                "thanos_shipper_dir_syncs_total",
                "Total number of dir syncs",
                st.dir_syncs.load(Relaxed),
            ),
            (
                "thanos_shipper_dir_sync_failures_total",
                "Total number of failed dir syncs",
                st.dir_sync_failures.load(Relaxed),
            ),
            (
                "thanos_shipper_uploads_total",
                "Total number of uploaded blocks",
                st.uploads.load(Relaxed),
            ),
            (
                "thanos_shipper_upload_failures_total",
                "Total number of block upload failures",
                st.upload_failures.load(Relaxed),
            ),
        ] {
            metrics::counter(e, name, help, v)?;
        }
        metrics::gauge(
            e,
            "gauntlet_shipper_last_upload_timestamp_seconds",
            "When the last block was uploaded (0: none yet).",
            st.last_upload_ms.load(Relaxed) as f64 / 1000.0,
        )
    }
}

/// The reloader's metrics, named as Thanos's sidecar names them (its reloader's under the
/// `thanos_sidecar_` prefix).
fn reloader_metrics(e: &mut DescriptorEncoder, r: &reloader::ReloaderStats) -> std::fmt::Result {
    for (name, help, v) in [
        (
            "thanos_sidecar_reloader_reloads_total",
            "Total number of reload requests.",
            r.reloads.load(Relaxed),
        ),
        (
            "thanos_sidecar_reloader_reloads_failed_total",
            "Total number of reload requests that failed.",
            r.reloads_failed.load(Relaxed),
        ),
        (
            "thanos_sidecar_reloader_config_apply_operations_total",
            "Total number of config apply operations.",
            r.config_applies.load(Relaxed),
        ),
        (
            "thanos_sidecar_reloader_config_apply_operations_failed_total",
            "Total number of config apply operations that failed.",
            r.config_applies_failed.load(Relaxed),
        ),
        (
            "thanos_sidecar_reloader_watch_events_total",
            "Total number of events received by the reloader from the watcher.",
            r.watch_events.load(Relaxed),
        ),
        (
            "thanos_sidecar_reloader_watch_errors_total",
            "Total number of errors received by the reloader from the watcher.",
            r.watch_errors.load(Relaxed),
        ),
    ] {
        metrics::counter(e, name, help, v)?;
    }
    metrics::gauge(
        e,
        "thanos_sidecar_reloader_watches",
        "Number of resources watched by the reloader.",
        r.watches.load(Relaxed),
    )?;
    metrics::gauge(
        e,
        "thanos_sidecar_reloader_last_reload_successful",
        "Whether the last reload attempt was successful",
        r.last_reload_successful.load(Relaxed),
    )?;
    metrics::gauge(
        e,
        "thanos_sidecar_reloader_last_reload_success_timestamp_seconds",
        "Timestamp of the last successful reload",
        r.last_reload_success_ms.load(Relaxed) as f64 / 1000.0,
    )?;
    metrics::gauge(
        e,
        "thanos_sidecar_reloader_config_environment_variable_expansion_errors",
        "Number of environment variable expansions that failed during the last operation.",
        r.envsubst_errors.load(Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_need_equal_block_durations() {
        let f = |min: &str, max: &str| TsdbFlags {
            min_block_duration: min.into(),
            max_block_duration: max.into(),
        };
        assert!(check_block_durations(&f("2h", "2h")).is_ok());
        let err = check_block_durations(&f("2h", "1d12h"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("min-block-duration is 2h"), "{err}");
        assert!(err.contains("max-block-duration is 1d12h"), "{err}");
    }
}
