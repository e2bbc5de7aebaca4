//! The ruler's alert sender, as Thanos Rule sends alerts: the rule evaluation hands batches of
//! [`Alert`]s to [`Sender::send`], which drops the `--alert.label-drop` labels, relabels them
//! (`--alert.relabel-config`) and queues them; one task takes up to 100 queued alerts at a
//! time and POSTs them as Alertmanager's v2 `postableAlerts` JSON to every Alertmanager at
//! once. A batch is sent when any Alertmanager accepts it; when none does, its alerts are
//! counted as dropped (the next evaluation sends them again, as alerts are re-sent until they
//! resolve). The queue holds 10000 alerts and drops the oldest when full.
//!
//! External labels are not added here: the ruler adds them before handing alerts over.
//!
//! Metrics, Thanos's names: `thanos_alert_sender_alerts_sent_total{alertmanager}`,
//! `thanos_alert_sender_errors_total{alertmanager}`, `thanos_alert_sender_alerts_dropped_total`,
//! `thanos_alert_sender_latency_seconds{alertmanager}`, `thanos_alert_queue_alerts_pushed_total`,
//! `…_popped_total`, `…_dropped_total`, `thanos_alert_queue_capacity` and `…_length`. The
//! `alertmanager` label is the address POSTed to (`host:port`).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::relabel::{self, Rule};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::alertmanager_config::{
    AlertmanagerArgs, AlertmanagerConfig, Auth, ConfigError, NotifierConfig,
};
use crate::metrics::{Registry, declare};
use crate::query::dns::{self, Dns};

/// An alert as the ruler hands it over: its labels (external labels included), annotations,
/// when it started and, once resolved or until when it is valid, when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The alert's identity.
    pub labels: Labels,
    /// Descriptive text (`summary`, `description`, …).
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing, ms since the epoch.
    pub starts_at_ms: i64,
    /// When it resolved, or until when it holds without news (Prometheus sends
    /// `ValidUntil`), ms since the epoch; `None` leaves it to the Alertmanager.
    pub ends_at_ms: Option<i64>,
    /// The link back to the expression that fired (`--alert.query-url` plus the query).
    pub generator_url: String,
}

/// One element of Alertmanager's v2 `postableAlerts`.
#[derive(Serialize)]
struct Postable<'a> {
    labels: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
}

/// `ms` since the epoch as Go marshals a `strfmt.DateTime`: RFC3339 in UTC with milliseconds.
fn rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// `alerts` as the body of `POST /api/v2/alerts`.
pub fn encode_v2(alerts: &[Alert]) -> Vec<u8> {
    let body: Vec<Postable<'_>> = alerts
        .iter()
        .map(|a| Postable {
            labels: a
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect(),
            annotations: &a.annotations,
            starts_at: rfc3339_ms(a.starts_at_ms),
            ends_at: a.ends_at_ms.map(rfc3339_ms),
            generator_url: &a.generator_url,
        })
        .collect();
    // Strings and maps of strings only: encoding cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Why one POST to one Alertmanager failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// No TCP connection (refused, unreachable, name not found).
    #[error("connecting: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed (certificate not trusted, wrong name, no common protocol).
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    /// The HTTP exchange broke off.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The Alertmanager answered with a status other than 2xx; `body` is the start of its
    /// answer, which usually says why (a bad alert, an unknown path).
    #[error("status {status}: {body}")]
    Status {
        /// The answer's status.
        status: http::StatusCode,
        /// The start of the answer's body.
        body: String,
    },
    /// No complete answer within the Alertmanager's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A credentials file could not be read, or the request could not be formed from the
    /// address and credentials.
    #[error("{0}")]
    Request(String),
}

/// Why the sender could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifierError {
    /// The flags or alerting configuration are invalid; fix them.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AmLabel {
    alertmanager: String,
}

/// Prometheus client_golang's default histogram buckets, seconds, which Thanos's latency
/// histogram uses.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

/// The sender's and the queue's metrics.
#[derive(Debug)]
struct Metrics {
    sent: Family<AmLabel, Counter>,
    errors: Family<AmLabel, Counter>,
    dropped: Counter,
    latency: Family<AmLabel, Histogram, fn() -> Histogram>,
    pushed: Counter,
    popped: Counter,
    queue_dropped: Counter,
    queue_length: Gauge,
}

impl Metrics {
    fn register(registry: &mut Registry, capacity: usize) -> Metrics {
        let m = Metrics {
            sent: Family::default(),
            errors: Family::default(),
            dropped: Counter::default(),
            latency: Family::new_with_constructor(latency_histogram),
            pushed: Counter::default(),
            popped: Counter::default(),
            queue_dropped: Counter::default(),
            queue_length: Gauge::default(),
        };
        declare(
            registry,
            "thanos_alert_sender_alerts_sent_total",
            "Total number of alerts sent by alertmanager.",
            m.sent.clone(),
        );
        declare(
            registry,
            "thanos_alert_sender_errors_total",
            "Total number of errors while sending alerts to alertmanager.",
            m.errors.clone(),
        );
        declare(
            registry,
            "thanos_alert_sender_alerts_dropped_total",
            "Total number of alerts dropped in case of all sends to alertmanagers failed.",
            m.dropped.clone(),
        );
        declare(
            registry,
            "thanos_alert_sender_latency_seconds",
            "Latency for sending alert notifications (not including dropped notifications).",
            m.latency.clone(),
        );
        declare(
            registry,
            "thanos_alert_queue_alerts_pushed_total",
            "Total number of alerts pushed to the queue.",
            m.pushed.clone(),
        );
        declare(
            registry,
            "thanos_alert_queue_alerts_popped_total",
            "Total number of alerts popped from the queue.",
            m.popped.clone(),
        );
        declare(
            registry,
            "thanos_alert_queue_alerts_dropped_total",
            "Total number of alerts that were dropped from the queue.",
            m.queue_dropped.clone(),
        );
        let cap = Gauge::<i64>::default();
        cap.set(i64::try_from(capacity).unwrap_or(i64::MAX));
        declare(
            registry,
            "thanos_alert_queue_capacity",
            "Capacity of the alert queue.",
            cap,
        );
        declare(
            registry,
            "thanos_alert_queue_length",
            "Length of the alert queue.",
            m.queue_length.clone(),
        );
        m
    }
}

/// The alerts waiting to be sent, oldest first, at most `capacity` of them.
#[derive(Debug)]
struct Queue {
    alerts: Mutex<VecDeque<Alert>>,
    capacity: usize,
    max_batch: usize,
    label_drop: Vec<String>,
    relabel: Vec<Rule>,
    /// Woken when alerts are pushed or the sender closes.
    more: Notify,
    closing: AtomicBool,
}

impl Queue {
    /// Drops the `--alert.label-drop` labels, relabels, and queues what is kept, dropping the
    /// oldest alerts (of the queue, then of the batch itself) beyond the capacity.
    fn push(&self, alerts: Vec<Alert>, m: &Metrics) {
        if alerts.is_empty() {
            return;
        }
        m.pushed.inc_by(alerts.len() as u64);
        let mut kept: Vec<Alert> = alerts
            .into_iter()
            .filter_map(|mut a| {
                let dropped = Labels::from_sorted(
                    a.labels
                        .iter()
                        .filter(|l| !self.label_drop.iter().any(|d| d == l.name.as_str()))
                        .cloned()
                        .collect(),
                );
                a.labels = relabel::process(&dropped, &self.relabel)?;
                Some(a)
            })
            .collect();
        if kept.is_empty() {
            return;
        }
        if kept.len() > self.capacity {
            let d = kept.len() - self.capacity;
            kept.drain(..d);
            tracing::warn!(
                dropped = d,
                "alert batch larger than the queue's capacity; its oldest alerts are dropped"
            );
            m.queue_dropped.inc_by(d as u64);
        }
        let mut q = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
        let over = (q.len() + kept.len()).saturating_sub(self.capacity);
        if over > 0 {
            q.drain(..over);
            tracing::warn!(
                dropped = over,
                "alert queue full; the oldest alerts are dropped"
            );
            m.queue_dropped.inc_by(over as u64);
        }
        q.extend(kept);
        m.queue_length.set(q.len() as i64);
        drop(q);
        self.more.notify_one();
    }

    /// Up to `max_batch` alerts, oldest first, waiting for some; empty once the sender is
    /// closing and the queue is empty.
    async fn pop(&self, m: &Metrics) -> Vec<Alert> {
        loop {
            {
                let mut q = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
                if !q.is_empty() {
                    let n = q.len().min(self.max_batch);
                    let batch: Vec<Alert> = q.drain(..n).collect();
                    m.popped.inc_by(n as u64);
                    m.queue_length.set(q.len() as i64);
                    return batch;
                }
                if self.closing.load(Ordering::Acquire) {
                    return Vec::new();
                }
            }
            // A push or close between the check and here stored a permit: no wake-up is lost.
            self.more.notified().await;
        }
    }

    fn len(&self) -> usize {
        self.alerts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One group of Alertmanagers and the addresses it resolves to now.
#[derive(Debug)]
struct Group {
    config: AlertmanagerConfig,
    /// `host[:port]` of each Alertmanager, after DNS and file discovery.
    addresses: RwLock<Vec<String>>,
}

/// What the sending task and the refresh task share.
#[derive(Debug)]
struct Inner {
    queue: Queue,
    groups: Vec<Group>,
    metrics: Metrics,
    dns: OnceLock<Result<Dns, String>>,
}

/// Sends the ruler's alerts to Alertmanagers; see the module documentation.
#[derive(Debug)]
pub struct Sender {
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
    refresher: Option<JoinHandle<()>>,
    /// How long [`Sender::close`] waits for the queue to be flushed.
    flush_timeout: Duration,
}

impl Sender {
    /// A sender configured by the flags, its metrics in `registry`, its Alertmanagers'
    /// addresses resolved once before it returns. Runs on the current tokio runtime.
    pub async fn from_args(
        args: &AlertmanagerArgs,
        registry: &mut Registry,
    ) -> Result<Sender, NotifierError> {
        let config = args.config()?;
        Ok(Sender::start(config, registry).await)
    }

    /// A sender over a checked configuration; see [`Sender::from_args`].
    pub async fn start(config: NotifierConfig, registry: &mut Registry) -> Sender {
        let flush_timeout = config
            .alertmanagers
            .iter()
            .map(|a| a.timeout)
            .max()
            .unwrap_or(Duration::from_secs(10));
        if config.alertmanagers.is_empty() {
            tracing::warn!("no Alertmanager configured; alerts are evaluated but not sent");
        }
        let inner = Arc::new(Inner {
            queue: Queue {
                alerts: Mutex::new(VecDeque::new()),
                capacity: config.queue_capacity.max(1),
                max_batch: config.max_batch.max(1),
                label_drop: config.label_drop,
                relabel: config.relabel,
                more: Notify::new(),
                closing: AtomicBool::new(false),
            },
            groups: config
                .alertmanagers
                .into_iter()
                .map(|config| Group {
                    config,
                    addresses: RwLock::new(Vec::new()),
                })
                .collect(),
            metrics: Metrics::register(registry, config.queue_capacity.max(1)),
            dns: OnceLock::new(),
        });
        inner.refresh().await;
        let needs_refresh = inner.groups.iter().any(|g| {
            !g.config.sd_files.is_empty()
                || g.config
                    .static_addresses
                    .iter()
                    .any(|a| dns::split(a).is_some())
        });
        let refresher = needs_refresh.then(|| {
            let inner = inner.clone();
            let every = config.refresh_interval.max(Duration::from_millis(100));
            let files: Vec<std::path::PathBuf> = inner
                .groups
                .iter()
                .flat_map(|g| g.config.sd_files.iter().cloned())
                .collect();
            // A discovery file that changes is read again within a second, not at the next
            // interval.
            tokio::spawn(crate::query::file_watch::refresh_loop(
                every,
                move || files.clone(),
                move || {
                    let inner = inner.clone();
                    async move { inner.refresh().await }
                },
            ))
        });
        let worker = {
            let inner = inner.clone();
            tokio::spawn(async move {
                loop {
                    let batch = inner.queue.pop(&inner.metrics).await;
                    if batch.is_empty() {
                        return;
                    }
                    inner.send_batch(&batch).await;
                }
            })
        };
        Sender {
            inner,
            worker: Mutex::new(Some(worker)),
            refresher,
            flush_timeout,
        }
    }

    /// Queues `alerts` to be sent; never waits. After [`Sender::close`] they are not sent.
    pub fn send(&self, alerts: Vec<Alert>) {
        if self.inner.queue.closing.load(Ordering::Acquire) {
            tracing::warn!(
                alerts = alerts.len(),
                "alerts handed over after the sender closed are not sent"
            );
            return;
        }
        self.inner.queue.push(alerts, &self.inner.metrics);
    }

    /// Sends what is queued, then stops; gives up after the largest Alertmanager timeout,
    /// logging how many alerts were left unsent.
    pub async fn close(&self) {
        self.inner.queue.closing.store(true, Ordering::Release);
        self.inner.queue.more.notify_one();
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut worker) = worker
            && tokio::time::timeout(self.flush_timeout, &mut worker)
                .await
                .is_err()
        {
            worker.abort();
            let left = self.inner.queue.len();
            tracing::warn!(
                alerts = left,
                timeout = ?self.flush_timeout,
                "alert queue not flushed in time at shutdown; queued alerts were not sent"
            );
        }
        if let Some(r) = &self.refresher {
            r.abort();
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Some(r) = &self.refresher {
            r.abort();
        }
        if let Some(w) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.abort();
        }
    }
}

impl Inner {
    /// Resolves every group's addresses again: discovery files re-read, DNS names looked up.
    async fn refresh(&self) {
        for g in &self.groups {
            let mut wanted = g.config.static_addresses.clone();
            for f in &g.config.sd_files {
                match read_sd_file(f) {
                    Ok(a) => wanted.extend(a),
                    Err(e) => {
                        // Keep what the file gave last time rather than lose Alertmanagers.
                        tracing::warn!(file = %f.display(), error = %e, "Alertmanager discovery file not read; its last addresses are kept");
                        let last = g.addresses.read().unwrap_or_else(|e| e.into_inner());
                        wanted.extend(
                            last.iter()
                                .filter(|a| !g.config.static_addresses.contains(a))
                                .cloned(),
                        );
                    }
                }
            }
            if wanted.iter().any(|a| dns::split(a).is_some()) {
                match self.dns.get_or_init(Dns::new) {
                    Ok(dns) => wanted = dns.resolve(&wanted).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "no DNS resolver; dns+ and dnssrv+ Alertmanagers are not looked up");
                        wanted.retain(|a| dns::split(a).is_none());
                    }
                }
            }
            wanted.sort();
            wanted.dedup();
            let mut addrs = g.addresses.write().unwrap_or_else(|e| e.into_inner());
            if *addrs != wanted {
                tracing::info!(alertmanagers = ?wanted, "Alertmanager addresses");
                *addrs = wanted;
            }
        }
    }

    /// POSTs `batch` to every Alertmanager at once; counts it dropped when none accepts it.
    async fn send_batch(&self, batch: &[Alert]) {
        if self.groups.is_empty() {
            // No Alertmanager is configured (said once at start): nothing to send to.
            self.metrics.dropped.inc_by(batch.len() as u64);
            return;
        }
        let body = Bytes::from(encode_v2(batch));
        let mut posts = Vec::new();
        for g in &self.groups {
            let addrs = g
                .addresses
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for addr in addrs {
                let body = body.clone();
                posts.push(async move {
                    let label = AmLabel {
                        alertmanager: addr.clone(),
                    };
                    let start = Instant::now();
                    let timeout = g.config.timeout;
                    let result =
                        match tokio::time::timeout(timeout, post(&g.config, &addr, body)).await {
                            Ok(r) => r,
                            Err(_) => Err(PostError::Timeout(timeout)),
                        };
                    match result {
                        Ok(()) => {
                            self.metrics
                                .latency
                                .get_or_create(&label)
                                .observe(start.elapsed().as_secs_f64());
                            self.metrics
                                .sent
                                .get_or_create(&label)
                                .inc_by(batch.len() as u64);
                            true
                        }
                        Err(e) => {
                            tracing::warn!(
                                alertmanager = %addr,
                                alerts = batch.len(),
                                error = %e,
                                "sending alerts failed"
                            );
                            self.metrics.errors.get_or_create(&label).inc();
                            false
                        }
                    }
                });
            }
        }
        let accepted = futures::future::join_all(posts)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
        if accepted == 0 {
            self.metrics.dropped.inc_by(batch.len() as u64);
            tracing::warn!(
                alerts = batch.len(),
                "no Alertmanager accepted the alerts; they are dropped"
            );
        }
    }
}

/// The addresses a file-SD file lists (JSON, YAML, or one per line), as the querier reads
/// its endpoint files.
fn read_sd_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    crate::query::endpoints::parse_endpoint_file(path, &text)
}

/// How much of a refusal's body is kept for the log, bytes.
const ERROR_BODY_BYTES: usize = 512;

/// The largest answer body read, bytes; Alertmanager's are a few bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// POSTs `body` to the Alertmanager at `addr` of group `am`: one connection, closed after.
async fn post(am: &AlertmanagerConfig, addr: &str, body: Bytes) -> Result<(), PostError> {
    let (host, port) = dns::host_port(addr).map_err(PostError::Request)?;
    let port = port.unwrap_or(am.default_port());
    let mut req = http::Request::post(format!("{}/api/v2/alerts", am.path_prefix))
        .header(http::header::HOST, addr)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("Gauntlet/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(auth) = &am.auth {
        let value = match auth {
            Auth::Basic { username, password } => {
                let password = password
                    .read()
                    .map_err(|e| PostError::Request(format!("basic_auth.password_file: {e}")))?;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                format!("Basic {token}")
            }
            Auth::Bearer(token) => {
                let token = token
                    .read()
                    .map_err(|e| PostError::Request(format!("bearer_token_file: {e}")))?;
                format!("Bearer {token}")
            }
        };
        req = req.header(http::header::AUTHORIZATION, value);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| PostError::Request(format!("forming the request: {e}")))?;
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(PostError::Connect)?;
    tcp.set_nodelay(true).map_err(PostError::Connect)?;
    match &am.tls {
        None => exchange(tcp, req).await,
        Some(tls) => {
            let name = match &tls.server_name {
                Some(n) => n.clone(),
                None => ServerName::try_from(host.to_string()).map_err(|e| {
                    PostError::Request(format!("{host:?} is not a TLS server name: {e}"))
                })?,
            };
            let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(name, tcp)
                .await
                .map_err(PostError::Tls)?;
            exchange(stream, req).await
        }
    }
}

/// Aborts the connection task when the exchange ends or is given up (timeout).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/1.1 request and its answer on `io`.
async fn exchange<S>(io: S, req: http::Request<Full<Bytes>>) -> Result<(), PostError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        // Its error, if any, is the request's too, and is reported there.
        let _ = conn.await;
    }));
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)])
        .trim()
        .to_string();
    Err(PostError::Status { status, body: text })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::routing::post as route_post;
    use serde_json::Value;

    use super::super::alertmanager_config::{parse_alerting_config, parse_url};
    use super::*;

    fn alert(name: &str, extra: &[(&str, &str)]) -> Alert {
        let mut pairs = vec![("alertname", name)];
        pairs.extend_from_slice(extra);
        Alert {
            labels: Labels::from_pairs(pairs),
            annotations: BTreeMap::from([("summary".into(), format!("{name} fires"))]),
            starts_at_ms: 1_700_000_000_123,
            ends_at_ms: Some(1_700_000_180_000),
            generator_url: "http://query/graph?g0.expr=up".into(),
        }
    }

    fn config(ams: Vec<AlertmanagerConfig>) -> NotifierConfig {
        NotifierConfig {
            alertmanagers: ams,
            label_drop: Vec::new(),
            relabel: Vec::new(),
            refresh_interval: Duration::from_secs(30),
            queue_capacity: 10_000,
            max_batch: 100,
        }
    }

    #[test]
    fn alerts_encode_as_alertmanagers_v2_postable_alerts() {
        let mut resolved = alert("B", &[]);
        resolved.ends_at_ms = None;
        resolved.annotations.clear();
        resolved.generator_url.clear();
        let v: Value =
            serde_json::from_slice(&encode_v2(&[alert("A", &[("x", "1")]), resolved])).unwrap();
        let a = &v[0];
        // The fields of Alertmanager's v2 `postableAlert` and nothing else.
        let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "annotations",
                "endsAt",
                "generatorURL",
                "labels",
                "startsAt"
            ]
        );
        assert_eq!(a["labels"], serde_json::json!({"alertname": "A", "x": "1"}));
        assert_eq!(a["annotations"], serde_json::json!({"summary": "A fires"}));
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.123Z");
        assert_eq!(a["endsAt"], "2023-11-14T22:16:20.000Z");
        assert_eq!(a["generatorURL"], "http://query/graph?g0.expr=up");
        // Empty annotations, a missing end and an empty URL are left out (Go's omitempty).
        let b = v[1].as_object().unwrap();
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!(b["labels"], serde_json::json!({"alertname": "B"}));
    }

    #[test]
    fn urls_are_read_as_thanos_reads_them() {
        let t = Duration::from_secs(3);
        let am = parse_url("http://am-0:9093", t).unwrap();
        assert_eq!(am.static_addresses, ["am-0:9093"]);
        assert_eq!((am.scheme(), am.path_prefix.as_str()), ("http", ""));
        assert_eq!(am.timeout, t);
        assert!(am.auth.is_none());

        let am = parse_url("https://alice:p%40ss@am.example/team/am/", t).unwrap();
        assert_eq!(am.scheme(), "https");
        assert_eq!(am.default_port(), 443);
        assert_eq!(am.path_prefix, "/team/am");
        match am.auth {
            Some(Auth::Basic { username, password }) => {
                assert_eq!(username, "alice");
                assert_eq!(password.read().unwrap(), "p@ss");
            }
            other => panic!("{other:?}"),
        }
        let am = parse_url("dns+http://am.example", t).unwrap();
        assert_eq!(am.static_addresses, ["dns+am.example:9093"]);
        let am = parse_url("dnssrv+http://_web._tcp.am.example", t).unwrap();
        assert_eq!(am.static_addresses, ["dnssrv+_web._tcp.am.example"]);

        for (bad, why) in [
            ("am-0:9093", "no scheme"),
            ("://am", "empty scheme"),
            ("http://", "empty host"),
            ("ftp://am", "want http or https"),
            ("http://am:port", "not a port"),
            ("http://am/?x=1", "query"),
        ] {
            let e = parse_url(bad, t).unwrap_err().to_string();
            assert!(
                e.contains(why) && e.contains("--alertmanagers.url"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn alerting_configuration_is_read_strictly_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let yaml = format!(
            "alertmanagers:\n\
             - http_config:\n    bearer_token_file: {}\n\
             \x20 static_configs: [\"am-0:9093\", \"dns+am.example:9093\"]\n\
             \x20 path_prefix: /am/\n\
             \x20 timeout: 2s\n\
             \x20 api_version: v2\n\
             - static_configs: [am-1]\n\
             \x20 file_sd_configs: [{{files: [{}/t.json], refresh_interval: 1m}}]\n",
            token.display(),
            dir.path().display()
        );
        let ams = parse_alerting_config("--alertmanagers.config", &yaml).unwrap();
        assert_eq!(ams.len(), 2);
        assert_eq!(
            ams[0].static_addresses,
            ["am-0:9093", "dns+am.example:9093"]
        );
        assert_eq!(ams[0].path_prefix, "/am");
        assert_eq!(ams[0].timeout, Duration::from_secs(2));
        match &ams[0].auth {
            Some(Auth::Bearer(s)) => assert_eq!(s.read().unwrap(), "s3cret"),
            other => panic!("{other:?}"),
        }
        assert_eq!(ams[1].timeout, Duration::from_secs(10));
        assert_eq!(ams[1].sd_files, [dir.path().join("t.json")]);
        assert!(parse_alerting_config("x", "").unwrap().is_empty());

        for (bad, why) in [
            (
                "alertmanagers: [{static_configs: [a:1], timeot: 1s}]",
                "unknown field `timeot`",
            ),
            (
                "alertmanagers: [{api_version: v1}]",
                "alertmanagers[0].api_version: v1 is not supported",
            ),
            ("alertmanagers: [{scheme: ftp}]", "alertmanagers[0].scheme"),
            (
                "alertmanagers: [{timeout: soon}]",
                "alertmanagers[0].timeout",
            ),
            (
                "alertmanagers: [{static_configs: [http://a:1]}]",
                "static_configs",
            ),
            (
                "alertmanagers: [{static_configs: ['dns+a']}]",
                "missing port",
            ),
            (
                "alertmanagers: [{http_config: {bearer_token: t, basic_auth: {username: u}}}]",
                "cannot be given together",
            ),
            (
                "alertmanagers: [{http_config: {bearer_token_file: /nonexistent/t}}]",
                "bearer_token_file /nonexistent/t",
            ),
            (
                "alertmanagers: [{file_sd_configs: [{files: ['*.json']}]}]",
                "glob",
            ),
            (
                "alertmanagers: [{http_config: {proxy_url: 'http://p'}}]",
                "proxy",
            ),
            ("alertmanagers: {", "--alertmanagers.config"),
        ] {
            let e = parse_alerting_config("--alertmanagers.config", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }

        let both = AlertmanagerArgs {
            urls: vec!["http://am:9093".into()],
            config: Some("alertmanagers: []".into()),
            ..AlertmanagerArgs::default()
        };
        let e = both.config().unwrap_err().to_string();
        assert!(
            e.contains("--alertmanagers.url and --alertmanagers.config cannot be given together"),
            "{e}"
        );
        let bad_relabel = AlertmanagerArgs {
            relabel_config: Some("- action: nonsense".into()),
            ..AlertmanagerArgs::default()
        };
        let e = bad_relabel.config().unwrap_err().to_string();
        assert!(e.starts_with("--alert.relabel-config: "), "{e}");
        let https = AlertmanagerArgs {
            config: Some("alertmanagers: [{scheme: https, http_config: {tls_config: {ca_file: /nonexistent/ca.pem}}}]".into()),
            ..AlertmanagerArgs::default()
        };
        let e = https.config().unwrap_err().to_string();
        assert!(
            e.contains("alertmanager 0 http_config.tls_config: ca_file /nonexistent/ca.pem"),
            "{e}"
        );
    }

    fn queue(capacity: usize, label_drop: &[&str], relabel: &str) -> (Queue, Metrics) {
        let q = Queue {
            alerts: Mutex::new(VecDeque::new()),
            capacity,
            max_batch: 2,
            label_drop: label_drop.iter().map(|s| s.to_string()).collect(),
            relabel: relabel::parse_rules(relabel).unwrap(),
            more: Notify::new(),
            closing: AtomicBool::new(false),
        };
        (q, Metrics::register(&mut Registry::default(), capacity))
    }

    #[tokio::test]
    async fn labels_are_dropped_then_relabelled_before_queueing() {
        let (q, m) = queue(
            10,
            &["replica"],
            "- source_labels: [severity]\n  regex: debug\n  action: drop\n\
             - target_label: team\n  replacement: core\n",
        );
        q.push(
            vec![
                alert("A", &[("replica", "r1"), ("severity", "page")]),
                alert("B", &[("severity", "debug")]),
            ],
            &m,
        );
        let got = q.pop(&m).await;
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].labels,
            Labels::from_pairs([("alertname", "A"), ("severity", "page"), ("team", "core")])
        );
        assert_eq!((m.pushed.get(), m.popped.get()), (2, 1));
    }

    #[tokio::test]
    async fn a_full_queue_drops_its_oldest_alerts() {
        let (q, m) = queue(3, &[], "");
        q.push(vec![alert("1", &[]), alert("2", &[])], &m);
        q.push(vec![alert("3", &[]), alert("4", &[])], &m);
        assert_eq!(m.queue_dropped.get(), 1);
        // A batch larger than the queue keeps its newest alerts.
        q.push((5..10).map(|i| alert(&i.to_string(), &[])).collect(), &m);
        assert_eq!(m.queue_dropped.get(), 1 + 2 + 3);
        let names = |b: Vec<Alert>| -> Vec<String> {
            b.iter()
                .map(|a| a.labels.get("alertname").unwrap().to_string())
                .collect()
        };
        // Popped oldest first, `max_batch` at a time.
        assert_eq!(names(q.pop(&m).await), ["7", "8"]);
        assert_eq!(names(q.pop(&m).await), ["9"]);
        assert_eq!(m.queue_length.get(), 0);
        q.closing.store(true, Ordering::Release);
        assert!(q.pop(&m).await.is_empty());
    }

    #[derive(Clone, Copy)]
    enum Behaviour {
        Accept,
        Refuse,
        Hang,
    }

    /// An Alertmanager stand-in on loopback: its address and the bodies it was POSTed.
    async fn fake_alertmanager(b: Behaviour) -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        let app = Router::new().route(
            "/prefix/api/v2/alerts",
            route_post(move |headers: http::HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    assert_eq!(headers[http::header::CONTENT_TYPE], "application/json");
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    match b {
                        Behaviour::Accept => (http::StatusCode::OK, String::new()),
                        Behaviour::Refuse => (
                            http::StatusCode::INTERNAL_SERVER_ERROR,
                            "boom: store full".to_string(),
                        ),
                        Behaviour::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            (http::StatusCode::OK, String::new())
                        }
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        (addr, got)
    }

    /// Waits (at most 10 s) until `done` holds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn label(addr: SocketAddr) -> AmLabel {
        AmLabel {
            alertmanager: addr.to_string(),
        }
    }

    #[tokio::test]
    async fn a_batch_is_sent_when_any_alertmanager_accepts_it() {
        let (ok, ok_got) = fake_alertmanager(Behaviour::Accept).await;
        let (refuse, refuse_got) = fake_alertmanager(Behaviour::Refuse).await;
        let (hang, _) = fake_alertmanager(Behaviour::Hang).await;
        let t = Duration::from_millis(300);
        let ams = [ok, refuse, hang]
            .iter()
            .map(|a| parse_url(&format!("http://{a}/prefix"), t).unwrap())
            .collect();
        let s = Sender::start(config(ams), &mut Registry::default()).await;
        let started = Instant::now();
        s.send(vec![alert("A", &[]), alert("B", &[])]);
        let m = &s.inner.metrics;
        until("the batch's outcome", || {
            m.errors.get_or_create(&label(hang)).get() == 1
        })
        .await;
        // The hanging Alertmanager was cut at its timeout, not waited for.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(m.sent.get_or_create(&label(ok)).get(), 2);
        assert_eq!(m.errors.get_or_create(&label(ok)).get(), 0);
        assert_eq!(m.errors.get_or_create(&label(refuse)).get(), 1);
        assert_eq!(m.sent.get_or_create(&label(refuse)).get(), 0);
        assert_eq!(m.dropped.get(), 0);
        let body = ok_got.lock().unwrap()[0].clone();
        assert_eq!(body[1]["labels"]["alertname"], "B");
        assert_eq!(refuse_got.lock().unwrap().len(), 1);
        s.close().await;
    }

    #[tokio::test]
    async fn a_batch_no_alertmanager_accepts_is_dropped() {
        let (refuse, _) = fake_alertmanager(Behaviour::Refuse).await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let t = Duration::from_secs(2);
        let ams = vec![
            parse_url(&format!("http://{refuse}/prefix"), t).unwrap(),
            parse_url(&format!("http://{closed}"), t).unwrap(),
        ];
        let s = Sender::start(config(ams), &mut Registry::default()).await;
        s.send(vec![alert("A", &[]), alert("B", &[]), alert("C", &[])]);
        let m = &s.inner.metrics;
        until("the drop", || m.dropped.get() == 3).await;
        assert_eq!(m.errors.get_or_create(&label(refuse)).get(), 1);
        assert_eq!(m.errors.get_or_create(&label(closed)).get(), 1);
        s.close().await;
    }

    #[tokio::test]
    async fn close_flushes_the_queue_within_the_timeout() {
        let (ok, got) = fake_alertmanager(Behaviour::Accept).await;
        let t = Duration::from_secs(2);
        let mut cfg = config(vec![parse_url(&format!("http://{ok}/prefix"), t).unwrap()]);
        cfg.max_batch = 2;
        let s = Sender::start(cfg, &mut Registry::default()).await;
        s.send((0..5).map(|i| alert(&i.to_string(), &[])).collect());
        s.close().await;
        let sent: usize = got
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.as_array().unwrap().len())
            .sum();
        assert_eq!(sent, 5);
        // A hanging Alertmanager does not hold shutdown past the timeout.
        let (hang, _) = fake_alertmanager(Behaviour::Hang).await;
        let t = Duration::from_millis(200);
        let s = Sender::start(
            config(vec![
                parse_url(&format!("http://{hang}/prefix"), t).unwrap(),
            ]),
            &mut Registry::default(),
        )
        .await;
        s.send(vec![alert("A", &[])]);
        let started = Instant::now();
        s.close().await;
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn alertmanagers_are_found_in_dns_and_discovery_files() {
        let (by_dns, dns_got) = fake_alertmanager(Behaviour::Accept).await;
        let (by_file, file_got) = fake_alertmanager(Behaviour::Accept).await;
        let dir = tempfile::tempdir().unwrap();
        let targets = dir.path().join("targets.json");
        std::fs::write(&targets, format!(r#"[{{"targets": ["{by_file}"]}}]"#)).unwrap();
        let yaml = format!(
            "alertmanagers:\n\
             - static_configs: ['dns+localhost:{}']\n  path_prefix: /prefix\n\
             - file_sd_configs: [{{files: ['{}']}}]\n  path_prefix: /prefix\n",
            by_dns.port(),
            targets.display()
        );
        let args = AlertmanagerArgs {
            config: Some(yaml),
            ..AlertmanagerArgs::default()
        };
        let s = Sender::from_args(&args, &mut Registry::default())
            .await
            .unwrap();
        s.send(vec![alert("A", &[])]);
        until("both Alertmanagers", || {
            !dns_got.lock().unwrap().is_empty() && !file_got.lock().unwrap().is_empty()
        })
        .await;
        let m = &s.inner.metrics;
        until("the counts", || {
            m.sent.get_or_create(&label(by_file)).get() == 1
                && m.sent.get_or_create(&label(by_dns)).get() == 1
        })
        .await;
        s.close().await;
    }

    /// A real Alertmanager (Debian's `prometheus-alertmanager`, which `tests/run.sh` installs)
    /// on loopback, clustering off, grouping at once and notifying `webhook` with resolved
    /// alerts too. Killed when dropped.
    struct RealAlertmanager {
        child: std::process::Child,
        addr: SocketAddr,
        dir: tempfile::TempDir,
    }

    impl RealAlertmanager {
        fn start(webhook: SocketAddr) -> RealAlertmanager {
            let bin = ["prometheus-alertmanager", "alertmanager"]
                .into_iter()
                .find(|b| {
                    std::process::Command::new(b)
                        .arg("--version")
                        .output()
                        .is_ok_and(|o| o.status.success())
                })
                .expect(
                    "no Alertmanager on PATH: install Debian's prometheus-alertmanager \
                     (tests/run.sh does)",
                );
            let dir = tempfile::tempdir().unwrap();
            let cfg = dir.path().join("alertmanager.yml");
            std::fs::write(
                &cfg,
                format!(
                    "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  \
                     group_interval: 1s\n  repeat_interval: 1h\n\
                     receivers:\n- name: hook\n  webhook_configs:\n  \
                     - url: http://{webhook}/hook\n    send_resolved: true\n"
                ),
            )
            .unwrap();
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let log = std::fs::File::create(dir.path().join("log")).unwrap();
            let child = std::process::Command::new(bin)
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--cluster.listen-address=")
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let am = RealAlertmanager { child, addr, dir };
            let deadline = Instant::now() + Duration::from_secs(15);
            while !am.ready() {
                assert!(
                    Instant::now() < deadline,
                    "Alertmanager not ready in 15 s; its log:\n{}",
                    am.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            am
        }

        fn ready(&self) -> bool {
            use std::io::{Read as _, Write as _};
            let Ok(mut c) =
                std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(500))
            else {
                return false;
            };
            let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
            let mut answer = String::new();
            c.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n").is_ok()
                && c.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.0 200")
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        }

        fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for RealAlertmanager {
        fn drop(&mut self) {
            self.kill();
        }
    }

    /// Waits (at most 20 s) for a webhook notification with `status`, and returns it.
    async fn notification(
        got: &Arc<Mutex<Vec<Value>>>,
        status: &str,
        am: &RealAlertmanager,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(n) = got.lock().unwrap().iter().find(|n| n["status"] == status) {
                return n.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {status} notification in 20 s; got {:?}; Alertmanager's log:\n{}",
                got.lock().unwrap(),
                am.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_alertmanager_notifies_firing_then_resolved_while_its_peer_is_down() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        let hook = Router::new().route(
            "/hook",
            route_post(move |body: Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_slice::<Value>(&body).unwrap());
                    http::StatusCode::OK
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let webhook = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, hook).await });

        let live = RealAlertmanager::start(webhook);
        let mut down = RealAlertmanager::start(webhook);
        down.kill();
        let args = AlertmanagerArgs {
            urls: vec![
                format!("http://{}", live.addr),
                format!("http://{}", down.addr),
            ],
            send_timeout: Duration::from_secs(5),
            label_drop: vec!["replica".into()],
            ..AlertmanagerArgs::default()
        };
        let s = Sender::from_args(&args, &mut Registry::default())
            .await
            .unwrap();
        let now = crate::now_ms();
        let mut a = alert(
            "GauntletRealAlertmanager",
            &[("replica", "a"), ("severity", "page")],
        );
        a.starts_at_ms = now - 1_000;
        a.ends_at_ms = Some(now + 180_000);
        s.send(vec![a.clone()]);
        let firing = notification(&got, "firing", &live).await;
        let n = &firing["alerts"][0];
        assert_eq!(n["status"], "firing");
        assert_eq!(n["labels"]["alertname"], "GauntletRealAlertmanager");
        assert_eq!(n["labels"]["severity"], "page");
        assert!(n["labels"].get("replica").is_none(), "{n}");
        assert_eq!(
            n["annotations"]["summary"],
            "GauntletRealAlertmanager fires"
        );
        assert_eq!(n["generatorURL"], "http://query/graph?g0.expr=up");

        a.ends_at_ms = Some(crate::now_ms() - 1);
        s.send(vec![a]);
        let resolved = notification(&got, "resolved", &live).await;
        let n = &resolved["alerts"][0];
        assert_eq!(n["status"], "resolved");
        assert_eq!(
            n["annotations"]["summary"],
            "GauntletRealAlertmanager fires"
        );
        s.close().await;

        let m = &s.inner.metrics;
        let live_label = AmLabel {
            alertmanager: live.addr.to_string(),
        };
        let down_label = AmLabel {
            alertmanager: down.addr.to_string(),
        };
        assert_eq!(m.sent.get_or_create(&live_label).get(), 2);
        assert_eq!(m.errors.get_or_create(&down_label).get(), 2);
        assert_eq!(m.dropped.get(), 0);
    }
}
