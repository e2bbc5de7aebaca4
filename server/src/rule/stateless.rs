//! `gauntlet rule` in stateless mode (`--remote-write.config[-file]` given), as Thanos Rule
//! runs it: no TSDB of its own and no StoreAPI. What the rules record is remote-written
//! through a WAL under `--data-dir` ([`super::remote_write`]); the alerts' `for` state is
//! restored at start from the `ALERTS_FOR_STATE` series read back through the `--query`
//! endpoints, with range queries whose step is `--query.default-step`. The rules API, the
//! `thanos.Rules` gRPC service and the alerts sent to Alertmanager are as in the stateful
//! mode.

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::labels::Labels;
use gauntlet_promql::InstantSample;
use gauntlet_promql::rules::alerting::Alert;
use gauntlet_promql::rules::group::RuleQuerier;
use gauntlet_proto::thanos;
use tonic::{Request, Response, Status};

use super::cmd::{RuleArgs, send_alerts, spawn_sighup_reload, stop_on};
use super::manager::{Backend, Manager};
use super::notifier::Sender;
use super::query::{RemoteQuerier, StrategyQuerier};
use super::query_config::QueryEndpoints;
use super::remote_write::RemoteWriter;
use super::remote_write::config::RemoteWriteConfig;

/// Where a stateless ruler's rules read and its results go.
#[derive(Debug)]
pub struct StatelessBackend {
    querier: Arc<RemoteQuerier>,
    writer: Arc<RemoteWriter>,
    sender: Arc<Sender>,
    external: Labels,
    external_url: String,
    /// `--query.default-step` in whole seconds (at least 1), as Thanos sends it.
    step_s: i64,
    /// `--restore-ignored-label`: names left out when the read-back series are matched to
    /// alerts.
    ignored: Vec<String>,
}

impl Backend for StatelessBackend {
    fn querier(&self, partial_response: bool) -> Box<dyn RuleQuerier + '_> {
        Box::new(StrategyQuerier {
            inner: &self.querier,
            partial_response,
        })
    }

    fn record(&self, samples: Vec<InstantSample>) -> Result<(), String> {
        self.writer.append(samples)
    }

    fn send(&self, alerts: Vec<(String, Alert)>) {
        send_alerts(&self.sender, &self.external, &self.external_url, alerts);
    }

    fn last_for_state(&self, labels: &Labels, t_ms: i64, lookback_ms: i64) -> Option<(i64, f64)> {
        let expr = selector(labels);
        let series = match self
            .querier
            .range_query(&expr, t_ms - lookback_ms, t_ms, self.step_s)
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(query = %expr, error = %e, "reading ALERTS_FOR_STATE to restore an alert's for state failed");
                return None;
            }
        };
        last_matching(series, labels, &self.ignored)
    }
}

/// The selector of exactly the series `labels`: `{name="value",…}`, values escaped as PromQL
/// strings.
fn selector(labels: &Labels) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|l| {
            let v = l
                .value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{}=\"{v}\"", l.name)
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// The last point of the series whose labels, less the `ignored` names, are `want`
/// (Prometheus keys the read-back series by their labels; the last of equal ones counts).
/// A stale marker restores nothing.
fn last_matching(
    series: super::query::RangeSeries,
    want: &Labels,
    ignored: &[String],
) -> Option<(i64, f64)> {
    let mut found = None;
    for (labels, points) in series {
        let kept = Labels::from_pairs(
            labels
                .iter()
                .filter(|l| !ignored.iter().any(|i| *i == l.name.as_str()))
                .map(|l| (l.name.clone(), l.value.clone())),
        );
        if kept == *want {
            found = points.last().copied();
        }
    }
    found.filter(|(_, v)| !gauntlet_engine::chunk::is_stale_nan(*v))
}

/// The Info answer of a stateless ruler: its external labels and the Rules API, no store.
#[derive(Debug, Clone)]
struct RulesOnlyInfo {
    labels: Labels,
}

#[tonic::async_trait]
impl thanos::info::info_server::Info for RulesOnlyInfo {
    async fn info(
        &self,
        _req: Request<thanos::info::InfoRequest>,
    ) -> Result<Response<thanos::info::InfoResponse>, Status> {
        let set = thanos::ZLabelSet {
            labels: self
                .labels
                .iter()
                .map(|l| thanos::Label {
                    name: l.name.to_string(),
                    value: l.value.to_string(),
                })
                .collect(),
        };
        Ok(Response::new(thanos::info::InfoResponse {
            label_sets: vec![set],
            component_type: "rule".into(),
            rules: Some(thanos::info::RulesInfo {}),
            ..Default::default()
        }))
    }
}

/// Serves a stateless ruler until `shutdown` resolves: `endpoints` are the checked query
/// endpoints, `remote` the checked remote-write endpoints.
pub async fn serve(
    args: RuleArgs,
    endpoints: QueryEndpoints,
    remote: Vec<RemoteWriteConfig>,
    budget: Arc<MemoryBudget>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let security = args.security.load()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating --data-dir {}", args.data_dir.display()))?;
    let external = Labels::from_pairs(
        args.labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string())),
    );
    let names: Vec<String> = remote.iter().map(|r| r.name.clone()).collect();
    let writer = RemoteWriter::open(&args.data_dir, remote, external.clone())?;
    let senders = writer.spawn();
    let mut registry = crate::metrics::Registry::default();
    let server_metrics = crate::metrics::register_common(&mut registry, budget.clone());
    writer.register_metrics(&mut registry);
    let runtime = tokio::runtime::Handle::current();
    let querier = RemoteQuerier::new(
        endpoints,
        args.query_timeout,
        args.query_http_method,
        runtime.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    querier.register_metrics(&mut registry);
    querier.refresh().await;
    querier.spawn_refresh(args.query_sd_dns_interval.min(args.query_sd_interval));
    let sender = Arc::new(
        Sender::from_args(&args.eval.alertmanagers, &mut registry)
            .await
            .context("configuring the Alertmanagers")?,
    );
    let mut opts = args.eval.manager_options(&args.rule_files, &args.labels);
    opts.thanos_api = true;
    let backend = Arc::new(StatelessBackend {
        querier,
        writer: writer.clone(),
        sender: sender.clone(),
        external: external.clone(),
        external_url: opts.external_url.clone(),
        step_s: (args.query_default_step.as_secs() as i64).max(1),
        ignored: args.restore_ignored_labels.clone(),
    });
    let manager = Manager::new(opts, backend);
    let m = manager.clone();
    tokio::task::spawn_blocking(move || m.reload())
        .await?
        .map_err(|e| anyhow::anyhow!("loading the rule files: {e}"))?;
    manager.register_metrics(&mut registry);

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
        remote_write = ?names,
        "rule listening (stateless: results are remote-written)"
    );
    let grpc = tonic::transport::Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer::new(&server_metrics))
        .layer(crate::memory::GrpcGuardLayer::new(&budget))
        .layer(crate::grpc::RequestLimitsLayer)
        .add_service(thanos::info::info_server::InfoServer::new(RulesOnlyInfo {
            labels: external,
        }))
        .add_service(super::service::RulesService::server(Arc::new(
            manager.clone().into(),
        )))
        .serve_with_incoming_shutdown(
            crate::tls::Incoming::new(grpc_listener, security.grpc.clone())?,
            stopped(stop_rx.clone()),
        );
    let ops = crate::http::ops::router(Arc::new(|| true), Arc::new(registry));
    let app: Router = super::api::router(manager.clone()).merge(ops);
    let doors = crate::memory::HttpBudgets::one(&budget);
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
    writer.close(senders).await;
    g.context("gRPC server")?;
    h.context("HTTP server")?;
    tracing::info!("rule stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restore_selector_names_every_label_escaped() {
        let l = Labels::from_pairs([
            ("__name__", "ALERTS_FOR_STATE"),
            ("alertname", "A"),
            ("msg", "say \"hi\"\\\n"),
        ]);
        assert_eq!(
            selector(&l),
            r#"{__name__="ALERTS_FOR_STATE",alertname="A",msg="say \"hi\"\\\n"}"#
        );
    }

    #[test]
    fn read_back_series_match_alerts_less_the_ignored_labels() {
        let want = Labels::from_pairs([("__name__", "ALERTS_FOR_STATE"), ("alertname", "A")]);
        let with = |extra: &str| {
            Labels::from_pairs([
                ("__name__", "ALERTS_FOR_STATE"),
                ("alertname", "A"),
                ("tenant_id", extra),
            ])
        };
        let series = vec![(with("t"), vec![(1_000, 5.0), (2_000, 6.0)])];
        // The receiver's tenant label is in the way unless ignored, as in Thanos.
        assert_eq!(last_matching(series.clone(), &want, &[]), None);
        assert_eq!(
            last_matching(series, &want, &["tenant_id".into()]),
            Some((2_000, 6.0))
        );
        let stale = f64::from_bits(gauntlet_engine::chunk::STALE_NAN_BITS);
        let series = vec![(want.clone(), vec![(1_000, 5.0), (2_000, stale)])];
        assert_eq!(last_matching(series, &want, &[]), None);
    }
}
