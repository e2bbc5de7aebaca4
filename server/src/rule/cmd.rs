//! `gauntlet rule`: Thanos Rule's counterpart. Rules are evaluated through the `--query`
//! endpoints; recorded series and alert series go into the ruler's own head and WAL (a
//! receiver's, under `--data-dir`), served over the StoreAPI with the ruler's `--label`s and
//! cut into blocks shipped with `source: ruler`; alerts go to Alertmanager.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use clap::Args;
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::labels::{Label, Labels, MatchType, Matcher};
use gauntlet_engine::query::{Queryable, SelectHints};
use gauntlet_promql::InstantSample;
use gauntlet_promql::rules::alerting::Alert;
use gauntlet_promql::rules::group::RuleQuerier;
use gauntlet_proto::prometheus as pb;
use gauntlet_proto::thanos;

use super::alertmanager_config::AlertmanagerArgs;
use super::manager::{Backend, Manager, ManagerOptions};
use super::notifier::{self, Sender};
use super::query::{QueryMethod, RemoteQuerier, StrategyQuerier};
use super::query_config::query_endpoints;
use crate::query::cmd::duration;
use crate::receive::{ReceiveArgs, Receiver};

/// The tenant the ruler's results are kept under (its head's directory name).
const TENANT: &str = "ruler";

/// How rules are evaluated and their alerts sent: the flags `gauntlet rule` and `gauntlet all`
/// share, named as Thanos Rule names them.
#[derive(Debug, Args, Clone)]
pub struct RuleEvalArgs {
    /// Interval of rule groups that name none of their own.
    #[arg(long = "eval-interval", default_value = "1m", value_parser = duration)]
    pub eval_interval: Duration,
    /// How far behind the evaluation time rule queries look, for groups that name none.
    #[arg(long = "rule-query-offset", default_value = "0s", value_parser = duration)]
    pub query_offset: Duration,
    /// How long to wait before sending a firing alert again.
    #[arg(long = "resend-delay", default_value = "1m", value_parser = duration)]
    pub resend_delay: Duration,
    /// The least time an alert with `for` stays pending after a restart.
    #[arg(long = "for-grace-period", default_value = "10m", value_parser = duration)]
    pub for_grace_period: Duration,
    /// How long the ruler may be down and still restore its alerts' `for` state.
    #[arg(long = "for-outage-tolerance", default_value = "1h", value_parser = duration)]
    pub for_outage_tolerance: Duration,
    /// The URL alerts link back to (their generator URL) and templates see as
    /// `$externalURL`.
    #[arg(long = "alert.query-url", default_value = "")]
    pub alert_query_url: String,
    /// Alertmanagers and what is done to alerts before they are sent.
    #[command(flatten)]
    pub alertmanagers: AlertmanagerArgs,
}

impl RuleEvalArgs {
    /// The manager's settings for `rule_files`, with the external labels `labels`.
    pub fn manager_options(&self, rule_files: &[String], labels: &[Label]) -> ManagerOptions {
        let ms = |d: Duration| d.as_millis() as i64;
        ManagerOptions {
            rule_files: rule_files.to_vec(),
            eval_interval_ms: ms(self.eval_interval),
            query_offset_ms: ms(self.query_offset),
            resend_delay_ms: ms(self.resend_delay),
            for_grace_ms: ms(self.for_grace_period),
            outage_tolerance_ms: ms(self.for_outage_tolerance),
            external_labels: labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect(),
            external_url: self.alert_query_url.trim_end_matches('/').to_string(),
            thanos_api: false,
        }
    }
}

/// Flags of `gauntlet rule`, named as Thanos Rule names them.
#[derive(Debug, Args, Clone)]
pub struct RuleArgs {
    /// Rule files to read (repeatable; glob patterns).
    #[arg(long = "rule-file", default_value = "rules/*.yml")]
    pub rule_files: Vec<String>,
    /// How rules are evaluated and their alerts sent.
    #[command(flatten)]
    pub eval: RuleEvalArgs,
    /// Query API addresses rules are evaluated through (repeatable): `host:port`, a URL
    /// (`http(s)://host:port/prefix`), or `dns+`/`dnssrv+` names; tried round robin, the next
    /// one when one fails. Not together with --query.config(-file).
    #[arg(long = "query")]
    pub query: Vec<String>,
    /// Thanos gRPC Query API addresses rules are evaluated through (repeatable): `host:port`
    /// or `dns+`/`dnssrv+` names of queriers serving `thanos.Query` (Thanos's or Gauntlet's
    /// `--grpc-address`), dialled in plaintext; in the same rotation as --query. Not together
    /// with --query.config(-file).
    #[arg(long = "grpc-query-endpoint", value_name = "ENDPOINT")]
    pub grpc_query_endpoints: Vec<String>,
    /// Query endpoint configuration (Thanos's YAML: a list of entries with `static_configs`,
    /// `file_sd_configs`, `http_config`, `scheme`, `path_prefix`, `grpc_config`), instead of
    /// --query and --grpc-query-endpoint;
    /// `$(NAME)` is replaced by the environment variable NAME.
    #[arg(long = "query.config", value_name = "YAML")]
    pub query_config: Option<String>,
    /// As --query.config, from a file.
    #[arg(long = "query.config-file", value_name = "FILE")]
    pub query_config_file: Option<PathBuf>,
    /// How often `dns+`/`dnssrv+` query addresses are looked up again and `file_sd_configs`
    /// files read again (a file that changes is read again within a second).
    #[arg(long = "query.sd-dns-interval", default_value = "30s", value_parser = duration)]
    pub query_sd_dns_interval: Duration,
    /// Files listing more query API addresses (repeatable; glob patterns), Prometheus's file
    /// SD format (JSON or YAML `targets`); one group of plain-HTTP endpoints beside --query.
    #[arg(long = "query.sd-files", value_name = "PATH")]
    pub query_sd_files: Vec<String>,
    /// How often the --query.sd-files are read again (also every --query.sd-dns-interval,
    /// whichever is shorter).
    #[arg(long = "query.sd-interval", default_value = "5m", value_parser = duration)]
    pub query_sd_interval: Duration,
    /// HTTP method of rule queries: `GET` (the query in the URL) or `POST` (in a form body).
    #[arg(long = "query.http-method", default_value = "POST", value_parser = QueryMethod::parse)]
    pub query_http_method: QueryMethod,
    /// Step of the range queries that restore alerts' `for` state from `ALERTS_FOR_STATE`
    /// through the query endpoints in stateless mode (--remote-write.config), in whole
    /// seconds. The stateful ruler restores from its own TSDB, and rule queries are instant
    /// queries that carry no step, so there it changes nothing.
    #[arg(long = "query.default-step", default_value = "1s", value_parser = duration)]
    pub query_default_step: Duration,
    /// How long one rule query may take.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = duration)]
    pub query_timeout: Duration,
    /// Directory of the ruler's TSDB (head, WAL and blocks).
    #[arg(long = "data-dir", default_value = "./data/rule")]
    pub data_dir: PathBuf,
    /// External label of every series served, block shipped and alert sent, `name="value"`
    /// (repeatable); a replica label tells an HA pair apart.
    #[arg(long = "label", value_parser = crate::receive::parse_label)]
    pub labels: Vec<Label>,
    /// Address of the StoreAPI.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: SocketAddr,
    /// Address of the rules and alerts API, /metrics, /-/reload, /-/ready and /-/healthy.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: SocketAddr,
    /// Block duration of the ruler's TSDB: its head is cut into blocks this long.
    #[arg(long = "tsdb.block-duration", default_value = "2h", value_parser = duration)]
    pub block_duration: Duration,
    /// How long local blocks are kept.
    #[arg(long = "tsdb.retention", default_value = "48h", value_parser = duration)]
    pub retention: Duration,
    /// Objstore configuration file; without one, blocks stay local.
    #[arg(long = "objstore.config-file")]
    pub objstore_config_file: Option<PathBuf>,
    /// Objstore configuration as YAML text, instead of a file.
    #[arg(long = "objstore.config")]
    pub objstore_config: Option<String>,
    /// TLS and authentication of the listeners.
    #[command(flatten)]
    pub security: crate::tls::ServerSecurityArgs,
    /// Remote-write configuration (the `remote_write:` section of a Prometheus configuration)
    /// naming where recorded series and alert series are sent. Turns on stateless mode: the
    /// ruler keeps no TSDB and serves no StoreAPI; samples go through a WAL under --data-dir
    /// and are retried while an endpoint is down. An empty configuration is ignored;
    /// `$(NAME)` is replaced by the environment variable NAME.
    #[arg(long = "remote-write.config", value_name = "YAML")]
    pub remote_write_config: Option<String>,
    /// As --remote-write.config, from a file.
    #[arg(long = "remote-write.config-file", value_name = "FILE")]
    pub remote_write_config_file: Option<PathBuf>,
    /// Label name left out when the `ALERTS_FOR_STATE` series read back in stateless mode are
    /// matched to alerts (repeatable): labels the receiver or querier adds, such as a tenant
    /// or replica label, and the ruler's own --label names.
    #[arg(long = "restore-ignored-label", value_name = "NAME")]
    pub restore_ignored_labels: Vec<String>,
}

/// A stop signal that turns true once `shutdown` resolves.
pub(super) fn stop_on(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::sync::watch::Receiver<bool> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    stop_rx
}

impl RuleArgs {
    /// The HTTP and gRPC listeners, bound to `--http-address` and `--grpc-address`.
    pub(super) async fn bind(
        &self,
    ) -> anyhow::Result<(tokio::net::TcpListener, tokio::net::TcpListener)> {
        let http = tokio::net::TcpListener::bind(self.http_address)
            .await
            .with_context(|| format!("binding --http-address {}", self.http_address))?;
        let grpc = tokio::net::TcpListener::bind(self.grpc_address)
            .await
            .with_context(|| format!("binding --grpc-address {}", self.grpc_address))?;
        Ok((http, grpc))
    }

    /// The receiver that keeps the ruler's results: one head under `--data-dir`, the
    /// ruler's labels, no tenant label.
    fn receive_args(&self) -> anyhow::Result<ReceiveArgs> {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            receive: ReceiveArgs,
        }
        let mut r = <Defaults as clap::Parser>::try_parse_from(["receive"])?.receive;
        r.role_source = Some("ruler");
        r.tsdb_path = self.data_dir.clone();
        r.labels = self.labels.clone();
        r.tenant_label = String::new();
        r.default_tenant = TENANT.into();
        r.min_block_duration = self.block_duration;
        r.max_block_duration = self.block_duration;
        r.retention = self.retention;
        r.objstore_config = self.objstore_config.clone();
        r.objstore_config_file = self.objstore_config_file.clone();
        r.security = self.security.clone();
        r.grpc_address = self.grpc_address;
        r.http_address = self.http_address;
        // Rule results come at most a group's interval apart; one core is plenty.
        r.engine_cores = 1;
        Ok(r)
    }
}

/// What the rules query.
#[derive(Debug)]
pub enum Queries {
    /// Remote query APIs, over HTTP and gRPC (`gauntlet rule`'s `--query`,
    /// `--grpc-query-endpoint`).
    Remote(Arc<RemoteQuerier>),
    /// The process's own PromQL (`gauntlet all`), with what the rules keep from round to
    /// round, sized to them ([`Backend::rules_loaded`]).
    Local(
        Arc<crate::http::api::ApiState>,
        crate::http::promql::RuleCaches,
    ),
}

/// The in-process querier of `gauntlet all`.
struct LocalQuerier<'a> {
    st: &'a crate::http::api::ApiState,
    caches: &'a crate::http::promql::RuleCaches,
    /// The view the last [`RuleQuerier::prepare`] opened, and its time: what the announced
    /// rules select of the heads is read in it already.
    prepared: std::sync::Mutex<Option<(i64, Arc<dyn crate::query::ReadView>)>>,
}

impl LocalQuerier<'_> {
    fn new<'a>(
        st: &'a crate::http::api::ApiState,
        caches: &'a crate::http::promql::RuleCaches,
    ) -> LocalQuerier<'a> {
        LocalQuerier {
            st,
            caches,
            prepared: std::sync::Mutex::new(None),
        }
    }
}

impl RuleQuerier for LocalQuerier<'_> {
    fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<InstantSample>, String> {
        let view = self
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(t, _)| *t == t_ms)
            .map(|(_, v)| v.clone());
        crate::http::promql::rule_query(self.st, self.caches, view, expr, t_ms)
    }

    fn prepare(&self, exprs: &[&str], t_ms: i64) {
        let view = if exprs.is_empty() {
            None
        } else {
            crate::http::promql::rule_prepare(self.st, self.caches, exprs, t_ms)
        };
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = view.map(|v| (t_ms, v));
    }
}

/// Where the ruler's rules read and its results go: a receiver's head (the ruler's own, or
/// `gauntlet all`'s, under `tenant`).
#[derive(Debug)]
pub struct RulerBackend {
    /// The receiver whose head keeps the results.
    pub receiver: Arc<Receiver>,
    /// The tenant the results are kept under.
    pub tenant: String,
    /// What the rules query.
    pub queries: Queries,
    /// Where alerts go.
    pub sender: Arc<Sender>,
    /// The runtime appends and HTTP queries run on (rules run on blocking threads).
    pub runtime: tokio::runtime::Handle,
    /// Labels added to every alert sent.
    pub external: Labels,
    /// Where alerts link back to.
    pub external_url: String,
}

impl Backend for RulerBackend {
    fn querier(&self, partial_response: bool) -> Box<dyn RuleQuerier + '_> {
        match &self.queries {
            Queries::Remote(q) => Box::new(StrategyQuerier {
                inner: q,
                partial_response,
            }),
            Queries::Local(st, caches) => Box::new(LocalQuerier::new(st, caches)),
        }
    }

    fn record(&self, samples: Vec<InstantSample>) -> Result<(), String> {
        let own = self.receiver.tenants.external_labels(&self.tenant);
        let series = samples.into_iter().map(|s| to_series(s, &own)).collect();
        let answer = self
            .runtime
            .block_on(self.receiver.append(&self.tenant, series));
        if answer.code.is_success() {
            Ok(())
        } else {
            Err(format!("{}: {}", answer.code, answer.message))
        }
    }

    fn send(&self, alerts: Vec<(String, Alert)>) {
        send_alerts(&self.sender, &self.external, &self.external_url, alerts);
    }

    fn rules_loaded(&self, rules: usize) {
        if let Queries::Local(_, caches) = &self.queries {
            caches.size_for(rules);
        }
    }

    fn last_for_state(&self, labels: &Labels, t_ms: i64, lookback_ms: i64) -> Option<(i64, f64)> {
        let tenant = self.receiver.tenants.get(&self.tenant)?;
        // The head holds the series as `record` wrote them: without the tenant's own labels.
        let labels = &without_own(labels, &tenant.external);
        let matchers: Vec<Matcher> = labels
            .iter()
            .filter_map(|l| Matcher::new(MatchType::Equal, l.name.as_str(), l.value.as_str()).ok())
            .collect();
        let source = tenant.source();
        let series = source
            .select(&matchers, t_ms - lookback_ms, t_ms, &SelectHints::default())
            .ok()?;
        series
            .iter()
            .filter(|s| s.labels == *labels)
            .filter_map(|s| {
                let n = s.samples.ts.len();
                (n > 0).then(|| (s.samples.ts[n - 1], s.samples.val[n - 1]))
            })
            .filter(|(_, v)| !gauntlet_engine::chunk::is_stale_nan(*v))
            .max_by_key(|(t, _)| *t)
    }
}

/// Hands `alerts` (each with the expression that raised it) to `sender`, with the
/// `external` labels and links back to `external_url`.
pub fn send_alerts(
    sender: &Sender,
    external: &Labels,
    external_url: &str,
    alerts: Vec<(String, Alert)>,
) {
    let out = alerts
        .into_iter()
        .map(|(expr, a)| notifier::Alert {
            labels: a.labels.with_external(external),
            annotations: a.annotations,
            starts_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
            ends_at_ms: Some(a.resolved_at_ms.unwrap_or(a.valid_until_ms)),
            generator_url: generator_url(external_url, &expr),
        })
        .collect();
    sender.send(out);
}

/// `labels` without those `own` holds with the same value. The tenant's external labels are
/// added to every series it serves, so a result that carries them (an expression that keeps
/// the labels of what it read) is kept without them and served the same. Series holding an
/// external label's name would make every read of the tenant sort its whole selection.
fn without_own(labels: &Labels, own: &Labels) -> Labels {
    if !labels
        .iter()
        .any(|l| own.get(&l.name) == Some(l.value.as_str()))
    {
        return labels.clone();
    }
    Labels::from_sorted(
        labels
            .iter()
            .filter(|l| own.get(&l.name) != Some(l.value.as_str()))
            .cloned()
            .collect(),
    )
}

/// A rule's sample as a remote-write series, without the labels the tenant `own`s.
fn to_series(s: InstantSample, own: &Labels) -> pb::TimeSeries {
    let labels = without_own(&s.labels, own)
        .iter()
        .map(|l| pb::Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect();
    match s.h {
        Some(h) => pb::TimeSeries {
            labels,
            histograms: vec![crate::receive::histogram::to_proto(
                &gauntlet_engine::remote_write::HistogramSample {
                    t: s.t_ms,
                    h: gauntlet_engine::remote_write::HistogramValue::Float(*h),
                },
            )],
            ..Default::default()
        },
        None => pb::TimeSeries {
            labels,
            samples: vec![pb::Sample {
                value: s.v,
                timestamp: s.t_ms,
            }],
            ..Default::default()
        },
    }
}

/// The link an alert carries back to its expression: Prometheus's table view of it.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    let q: String = percent_encoding::utf8_percent_encode(expr, QUERY_ESCAPE).to_string();
    format!("{external_url}/graph?g0.expr={q}&g0.tab=1")
}

/// What Go's `url.QueryEscape` escapes: everything but letters, digits and `-_.~` (a space
/// becomes `%20` here, where Go writes `+`; both read back the same).
const QUERY_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Starts the rules `opts` names, their alerts sent as `alertmanagers` says, their results
/// kept in `tenant`'s head of `receiver`, their queries going to `queries`, their metrics and
/// the Alertmanager sender's in `registry`; reloads on SIGHUP are the caller's ([`spawn_sighup_reload`]).
pub async fn start_manager(
    opts: ManagerOptions,
    alertmanagers: &AlertmanagerArgs,
    receiver: Arc<Receiver>,
    tenant: &str,
    queries: Queries,
    registry: &mut crate::metrics::Registry,
) -> anyhow::Result<(Arc<Manager>, Arc<Sender>)> {
    let sender = Arc::new(
        Sender::from_args(alertmanagers, registry)
            .await
            .context("configuring the Alertmanagers")?,
    );
    let backend = Arc::new(RulerBackend {
        receiver,
        tenant: tenant.to_string(),
        queries,
        sender: sender.clone(),
        runtime: tokio::runtime::Handle::current(),
        external: Labels::from_pairs(opts.external_labels.clone()),
        external_url: opts.external_url.clone(),
    });
    let manager = Manager::new(opts, backend);
    // Reloads run on a blocking thread: a removed group's stale markers wait for the head.
    let m = manager.clone();
    tokio::task::spawn_blocking(move || m.reload())
        .await?
        .map_err(|e| anyhow::anyhow!("loading the rule files: {e}"))?;
    manager.register_metrics(registry);
    Ok((manager, sender))
}

/// Runs the ruler until SIGINT or SIGTERM.
pub fn run(args: RuleArgs, budget: Arc<MemoryBudget>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-net")
        .thread_keep_alive(crate::memory::IDLE_THREAD_KEEP_ALIVE)
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(args, budget, crate::http::shutdown_signal()))
}

/// Serves the ruler until `shutdown` resolves.
pub async fn serve(
    args: RuleArgs,
    budget: Arc<MemoryBudget>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Checked before anything starts: a bad query configuration stops the ruler at once.
    let endpoints = query_endpoints(
        &args.query,
        &args.query_sd_files,
        &args.grpc_query_endpoints,
        args.query_config.as_deref(),
        args.query_config_file.as_deref(),
    )?;
    // A remote-write configuration makes the ruler stateless, as in Thanos Rule.
    if let Some(remote) = super::remote_write::config::remote_write_endpoints(
        args.remote_write_config.as_deref(),
        args.remote_write_config_file.as_deref(),
    )? {
        return super::stateless::serve(args, endpoints, remote, budget, shutdown).await;
    }
    let rargs = args.receive_args()?;
    let bucket = rargs.bucket_config()?;
    let receiver = Arc::new(Receiver::start(&rargs, bucket, budget).await?);
    // The head is opened at once, so the StoreAPI serves it before the first round.
    let opener = receiver.tenants.clone();
    tokio::task::spawn_blocking(move || opener.get_or_open(TENANT)).await??;
    let mut registry = crate::metrics::Registry::default();
    let server_metrics = crate::metrics::register_common(&mut registry, receiver.budget().clone());
    receiver.register_metrics(&mut registry);
    let runtime = tokio::runtime::Handle::current();
    let querier = RemoteQuerier::new(
        endpoints,
        args.query_timeout,
        args.query_http_method,
        runtime.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    querier.register_metrics(&mut registry);
    // Discovery files and DNS names are read before the first rules run.
    querier.refresh().await;
    querier.spawn_refresh(args.query_sd_dns_interval.min(args.query_sd_interval));
    let mut opts = args.eval.manager_options(&args.rule_files, &args.labels);
    opts.thanos_api = true;
    let (manager, sender) = start_manager(
        opts,
        &args.eval.alertmanagers,
        receiver.clone(),
        TENANT,
        Queries::Remote(querier),
        &mut registry,
    )
    .await?;

    let stop_rx = stop_on(shutdown);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    spawn_sighup_reload(manager.clone(), stop_rx.clone());
    let (http_listener, grpc_listener) = args.bind().await?;
    tracing::info!(
        http = %http_listener.local_addr()?,
        grpc = %grpc_listener.local_addr()?,
        groups = manager.groups().len(),
        "rule listening"
    );
    let background = receiver.spawn_maintenance(stop_rx.clone());
    let svc = receiver.store();
    let security = receiver.security().clone();
    let grpc = tonic::transport::Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer::new(&server_metrics))
        .layer(crate::memory::GrpcGuardLayer::new(receiver.budget()))
        .layer(crate::grpc::RequestLimitsLayer)
        .add_service(
            thanos::store_server::StoreServer::new(svc.clone())
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(thanos::info::info_server::InfoServer::new(
            super::service::WithRulesInfo::new(svc, Some("rule"), true),
        ))
        .add_service(super::service::RulesService::server(Arc::new(
            manager.clone().into(),
        )))
        .serve_with_incoming_shutdown(
            crate::tls::Incoming::new(grpc_listener, security.grpc.clone())?,
            stopped(stop_rx.clone()),
        );
    let ops = crate::http::ops::router(Arc::new(|| true), Arc::new(registry));
    // The web UI's rules and alerts pages, as Thanos's ruler has them.
    let app: Router = super::api::router(manager.clone())
        .merge(crate::http::ui::router())
        .merge(ops);
    let doors = crate::memory::HttpBudgets::one(receiver.budget());
    let http = crate::http::serve_on(
        http_listener,
        crate::memory::guard_http(app, doors),
        &security.http,
        &server_metrics,
        stopped(stop_rx.clone()),
    );
    let (g, h) = tokio::join!(grpc, http);
    manager.stop();
    sender.close().await;
    let _ = background.await;
    receiver.sync_wals().await;
    g.context("gRPC server")?;
    h.context("HTTP server")?;
    tracing::info!("rule stopped");
    Ok(())
}

/// Reloads the rule files on SIGHUP, as Prometheus and Thanos do.
pub fn spawn_sighup_reload(manager: Arc<Manager>, mut stop: tokio::sync::watch::Receiver<bool>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("SIGHUP cannot be watched; reload with POST /-/reload");
            return;
        };
        loop {
            let hup_came = tokio::select! {
                _ = hup.recv() => true,
                _ = stop.wait_for(|s| *s) => false,
            };
            if !hup_came {
                return;
            }
            tracing::info!("SIGHUP: reloading the rule files");
            let m = manager.clone();
            let _ = tokio::task::spawn_blocking(move || m.reload()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_kept_without_the_labels_the_tenant_adds_with_the_same_value() {
        let own = Labels::from_pairs([("replica", "r0"), ("tenant_id", "default-tenant")]);
        let kept = without_own(
            &Labels::from_pairs([
                ("__name__", "x:avg"),
                ("instance", "a"),
                ("tenant_id", "default-tenant"),
            ]),
            &own,
        );
        assert_eq!(
            kept,
            Labels::from_pairs([("__name__", "x:avg"), ("instance", "a")])
        );
        // Another value is the result's own: reads replace it, but it is not dropped here.
        let other = Labels::from_pairs([("replica", "r1"), ("tenant_id", "team-b")]);
        assert_eq!(without_own(&other, &own), other);
        let s = to_series(
            InstantSample {
                labels: Labels::from_pairs([("__name__", "up"), ("replica", "r0")]),
                t_ms: 1,
                v: 2.0,
                h: None,
            },
            &own,
        );
        assert_eq!(s.labels.len(), 1);
        assert_eq!(s.labels[0].value, "up");
    }
}
