//! `gauntlet query`: a querier over StoreAPI endpoints serving Prometheus's HTTP API, like
//! Thanos Query.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_promql::QueryLimits;

use super::endpoints::EndpointSet;
use super::fanout::Querier;
use super::rules::RuleEndpoints;
use crate::http::api::{ApiConfig, ApiState, apply_features, router};
use crate::http::ops;
use crate::http::params::parse_duration;

/// Flags of `gauntlet query`, named like Thanos Query's.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// A StoreAPI endpoint `host:port`, or a name looked up in DNS on every refresh:
    /// `dns+host:port` (A/AAAA records), `dnssrv+name` (SRV records, then their targets'
    /// A/AAAA records), `dnssrvnoa+name` (SRV records' targets as they are); repeatable.
    #[arg(long = "endpoint")]
    pub endpoints: Vec<String>,
    /// A file of endpoints (file-SD JSON or YAML, or one `host:port` per line), re-read when it
    /// changes; repeatable.
    #[arg(long = "endpoint.sd-files")]
    pub sd_files: Vec<PathBuf>,
    /// Address of the HTTP API.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: String,
    /// Address of the gRPC services this querier serves: the StoreAPI, `thanos.Rules`,
    /// `thanos.Metadata`, `thanos.Targets` and `thanos.Exemplars` (for stacking queriers) and
    /// the `thanos.Query` API (for rulers).
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: String,
    /// External label naming the replica of an HA pair; repeatable. Dedup drops these.
    #[arg(long = "query.replica-label")]
    pub replica_labels: Vec<String>,
    /// The PromQL engine's limits and features, shared with `gauntlet all`.
    #[command(flatten)]
    pub promql: PromqlFlags,
    /// Whether a failing endpoint gives a warning (true) or fails the query (false), unless
    /// the request's `partial_response` says otherwise.
    #[arg(long = "query.partial-response", default_value_t = true, action = clap::ArgAction::Set)]
    pub partial_response: bool,
    /// Whether an endpoint failing a rules or alerts request gives a warning (true) or fails
    /// the request (false).
    #[arg(long = "rule.partial-response", default_value_t = true, action = clap::ArgAction::Set)]
    pub rule_partial_response: bool,
    /// Whether an endpoint failing a `/api/v1/targets` request gives a warning (true) or
    /// fails the request (false).
    #[arg(long = "target.partial-response", default_value_t = true, action = clap::ArgAction::Set)]
    pub target_partial_response: bool,
    /// Whether an endpoint failing a `/api/v1/metadata` request gives a warning (true) or
    /// fails the request (false).
    #[arg(long = "metric-metadata.partial-response", default_value_t = true, action = clap::ArgAction::Set)]
    pub metadata_partial_response: bool,
    /// Longest one endpoint may take to answer a label call, or to send each message of a
    /// Series answer.
    #[arg(long = "store.response-timeout", default_value = "2m", value_parser = duration)]
    pub response_timeout: Duration,
    /// How often endpoints are asked for their Info, and how long an answer may take.
    #[arg(long = "endpoint.info-timeout", default_value = "5s", value_parser = duration)]
    pub info_timeout: Duration,
    /// TLS of the gRPC server, and the HTTP server's web configuration file.
    #[command(flatten)]
    pub security: crate::tls::ServerSecurityArgs,
    /// TLS of the connections to the StoreAPI endpoints.
    #[command(flatten)]
    pub client_tls: crate::tls::client::GrpcClientTlsArgs,
}

/// The PromQL flags of every role that evaluates queries (`query`, `all`).
#[derive(Debug, Args)]
pub struct PromqlFlags {
    /// Longest a query may run.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = duration)]
    pub timeout: Duration,
    /// Lookback of instant selectors.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = duration)]
    pub lookback_delta: Duration,
    /// Most samples a query may hold in memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub max_samples: usize,
    /// Deepest a query's expression may nest (operators, parentheses, calls, aggregations and
    /// subqueries each add a level); deeper queries are refused before they are parsed.
    #[arg(long = "query.max-depth", default_value_t = gauntlet_promql::DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
    /// Longest query text accepted, a byte size (`1MiB`, `65536`) as the other size flags
    /// take; longer queries are refused before they are parsed.
    #[arg(long = "query.max-length", default_value = "1MiB", value_parser = crate::store::parse_bytes)]
    pub max_length: u64,
    /// Most label matchers all of a query's selectors may hold together; a query with more is
    /// refused before it is parsed.
    #[arg(long = "query.max-matchers", default_value_t = gauntlet_promql::DEFAULT_MAX_MATCHERS)]
    pub max_matchers: usize,
    /// PromQL features to enable, as Prometheus names them: `promql-delayed-name-removal`,
    /// `promql-extended-range-selectors`, `promql-binop-fill-modifiers`
    /// (`promql-experimental-functions` and `promql-duration-expr` are always on).
    #[arg(long = "enable-feature")]
    pub features: Vec<String>,
    /// Which Prometheus release PromQL answers as where releases answer the same query
    /// differently: `3.5` or `3.14`.
    #[arg(long = "query.promql-compat", default_value = "3.5", value_parser = gauntlet_promql::Compat::parse)]
    pub compat: gauntlet_promql::Compat,
    /// Tenancy (`--query.enforce-tenancy` and its header, default and label).
    #[command(flatten)]
    pub tenancy: crate::query::tenancy::TenancyFlags,
    /// Most queries and metadata reads (series, labels, label values) run at once; the next
    /// ones wait in a queue.
    #[arg(long = "query.max-concurrent", default_value_t = crate::http::api::DEFAULT_MAX_CONCURRENT)]
    pub max_concurrent: usize,
    /// Most requests waiting for a slot; past it a request is refused with 503 at once.
    #[arg(long = "query.max-queued", default_value_t = crate::http::api::DEFAULT_MAX_QUEUED)]
    pub max_queued: usize,
    /// Most `match[]` selectors one series, labels or label values request may carry.
    #[arg(long = "query.max-match-selectors", default_value_t = crate::http::api::DEFAULT_MAX_MATCH_SETS)]
    pub max_match_sets: usize,
    /// Directory of the active query log (`queries.active`): the queries running now, read
    /// back and logged at the next start after a crash. `all` keeps it in its data directory
    /// when this is not given; `query` keeps none.
    #[arg(long = "query.active-query-path")]
    pub active_query_path: Option<std::path::PathBuf>,
}

impl PromqlFlags {
    /// Opens the active query log in `--query.active-query-path`, or in `default_dir` when
    /// the flag is not given (none when neither is).
    pub fn active_queries(
        &self,
        default_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Option<std::sync::Arc<crate::http::active::ActiveQueries>>> {
        let dir = match (&self.active_query_path, default_dir) {
            (Some(d), _) if !d.as_os_str().is_empty() => d.clone(),
            (_, Some(d)) => d.to_path_buf(),
            _ => return Ok(None),
        };
        let log = crate::http::active::ActiveQueries::open(&dir, self.max_concurrent)?;
        Ok(Some(std::sync::Arc::new(log)))
    }

    /// The API settings these flags give; `partial_response` is the role's own default.
    pub fn api_config(&self, partial_response: bool) -> anyhow::Result<ApiConfig> {
        let mut config = ApiConfig {
            lookback_delta_ms: self.lookback_delta.as_millis() as i64,
            max_samples: self.max_samples,
            timeout: self.timeout,
            partial_response,
            delayed_name_removal: false,
            features: Default::default(),
            compat: self.compat,
            limits: QueryLimits {
                max_depth: self.max_depth,
                max_bytes: usize::try_from(self.max_length).unwrap_or(usize::MAX),
                max_matchers: self.max_matchers,
            },
            tenancy: self.tenancy.tenancy()?,
            max_match_sets: self.max_match_sets,
            admission: std::sync::Arc::new(crate::http::admission::Admission::new(
                self.max_concurrent,
                self.max_queued,
            )),
            active: None,
            // One pool per process, sized to the CPUs it may run on.
            pool: {
                let pool = gauntlet_engine::query::WorkPool::new(0);
                pool.set_idle_hook(crate::memory::idle_hook());
                pool
            },
            // The role sets its own.
            budget: MemoryBudget::unlimited(),
            parse_cache: gauntlet_promql::ParseCache::default(),
            rules: Default::default(),
            remote_rules: None,
            exemplars: None,
            remote_metadata: None,
            remote_targets: None,
        };
        apply_features(&mut config, &self.features)
            .map_err(|e| anyhow::anyhow!("--enable-feature: {e}"))?;
        Ok(config)
    }
}

/// Parses a Prometheus duration (`5m`, `1h30m`) or seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let ms = parse_duration(s)?;
    u64::try_from(ms)
        .map(Duration::from_millis)
        .map_err(|_| format!("negative duration {s:?}"))
}

/// Runs the querier until Ctrl-C or SIGTERM.
pub fn run(args: QueryArgs, budget: Arc<MemoryBudget>) -> anyhow::Result<()> {
    if args.endpoints.is_empty() && args.sd_files.is_empty() {
        anyhow::bail!("no endpoints: give --endpoint HOST:PORT or --endpoint.sd-files FILE");
    }
    // Addresses and files are checked before anything starts: a typo stops the querier here
    // rather than leaving it without the endpoint. A file broken later keeps its last read.
    for e in &args.endpoints {
        crate::query::endpoints::check_address(e)
            .map_err(|why| anyhow::anyhow!("--endpoint: {why}"))?;
    }
    for f in &args.sd_files {
        crate::query::endpoints::read_endpoint_file(f).map_err(anyhow::Error::msg)?;
    }
    let mut config = args.promql.api_config(args.partial_response)?;
    config.active = args.promql.active_queries(None)?;
    config.budget = budget.clone();
    let config_tenancy = config.tenancy.clone();
    let admission = config.admission.clone();
    let security = args.security.load()?;
    let client_tls = args.client_tls.load()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-net")
        .thread_keep_alive(crate::memory::IDLE_THREAD_KEEP_ALIVE)
        .build()?;
    rt.block_on(async move {
        let endpoints = Arc::new(
            EndpointSet::new(
                args.endpoints.clone(),
                args.sd_files.clone(),
                args.info_timeout,
            )
            .with_tls(client_tls),
        );
        endpoints.refresh().await;
        for e in endpoints.all() {
            match (e.info(), e.last_error()) {
                (Some(info), _) => tracing::info!(
                    endpoint = %e.addr,
                    component = %info.component,
                    label_sets = info.label_sets.len(),
                    "endpoint ready"
                ),
                (None, err) => tracing::warn!(
                    endpoint = %e.addr,
                    error = err.as_deref().unwrap_or("unknown"),
                    "endpoint not ready"
                ),
            }
        }
        endpoints.clone().spawn_refresh_loop(args.info_timeout);
        let querier = Arc::new(
            Querier::new(
                endpoints.clone(),
                tokio::runtime::Handle::current(),
                args.replica_labels.clone(),
                args.response_timeout,
            )
            .with_budget(&budget),
        );
        let rules = Arc::new(RuleEndpoints::new(
            endpoints.clone(),
            tokio::runtime::Handle::current(),
            args.replica_labels.clone(),
            args.rule_partial_response,
            args.response_timeout,
        ));
        let fanouts = super::proxy::Fanouts {
            rules,
            exemplars: Arc::new(crate::query::exemplars::ExemplarEndpoints::new(
                endpoints.clone(),
                tokio::runtime::Handle::current(),
                args.replica_labels.clone(),
                args.partial_response,
                args.response_timeout,
            )),
            metadata: Arc::new(crate::query::metadata::MetadataEndpoints::new(
                endpoints.clone(),
                tokio::runtime::Handle::current(),
                args.metadata_partial_response,
                args.response_timeout,
            )),
            targets: Arc::new(crate::query::targets::TargetEndpoints::new(
                endpoints.clone(),
                tokio::runtime::Handle::current(),
                args.replica_labels.clone(),
                args.target_partial_response,
                args.response_timeout,
            )),
        };
        // The HTTP API and the gRPC services share each fan-out.
        config.remote_rules = Some(fanouts.rules.clone());
        config.exemplars = Some(fanouts.exemplars.clone());
        config.remote_metadata = Some(fanouts.metadata.clone());
        config.remote_targets = Some(fanouts.targets.clone());
        let state = Arc::new(ApiState {
            source: Arc::new(querier.clone()),
            config,
        });
        let mut registry = crate::metrics::Registry::default();
        let server_metrics = crate::metrics::register_common(&mut registry, budget.clone());
        registry.register_collector(Box::new(QuerierCollector(querier.clone())));
        registry.register_collector(Box::new(admission));
        let app = router(state.clone())
            .merge(crate::http::ui::router())
            .merge(crate::http::status::router(
                Some(crate::http::status::endpoint_stores(endpoints.clone())),
                None,
                config_tenancy.clone(),
            ))
            .merge(ops::router(Arc::new(|| true), Arc::new(registry)));
        let app = crate::memory::guard_http(app, crate::memory::HttpBudgets::one(&budget));
        let grpc = super::proxy::serve(
            querier,
            fanouts,
            state,
            &args.grpc_address,
            security.grpc,
            config_tenancy,
            &server_metrics,
        );
        let http = crate::http::serve(
            &args.http_address,
            app,
            &security.http,
            &server_metrics,
            crate::http::shutdown_signal(),
        );
        tokio::select! {
            r = http => r,
            r = grpc => r,
        }
    })
}

/// The querier's metrics: endpoints known and usable, as Thanos Query's endpoint-set gauges.
#[derive(Debug)]
struct QuerierCollector(Arc<Querier>);

impl prometheus_client::collector::Collector for QuerierCollector {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        let all = self.0.endpoints().all();
        let healthy = all.iter().filter(|e| e.info().is_some()).count();
        crate::metrics::gauge(
            &mut enc,
            "gauntlet_query_endpoints",
            "StoreAPI endpoints configured.",
            all.len() as u64,
        )?;
        crate::metrics::gauge(
            &mut enc,
            "gauntlet_query_endpoints_healthy",
            "StoreAPI endpoints whose last Info call succeeded.",
            healthy as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        promql: PromqlFlags,
    }

    fn limits(args: &[&str]) -> QueryLimits {
        let cli: Cli =
            clap::Parser::try_parse_from(std::iter::once("query").chain(args.iter().copied()))
                .unwrap();
        cli.promql.api_config(true).unwrap().limits
    }

    #[test]
    fn query_max_length_takes_byte_sizes() {
        assert_eq!(limits(&[]).max_bytes, gauntlet_promql::DEFAULT_MAX_BYTES);
        assert_eq!(limits(&["--query.max-length=64KiB"]).max_bytes, 64 << 10);
        assert_eq!(limits(&["--query.max-length=2MB"]).max_bytes, 2 << 20);
        assert_eq!(limits(&["--query.max-length=5000"]).max_bytes, 5000);
        let bad: Result<Cli, _> =
            clap::Parser::try_parse_from(["query", "--query.max-length=1 parsec"]);
        assert!(bad.is_err());
    }
}
