//! One remote-write endpoint's queue and sender: the batches it has not sent yet, taken
//! from the front in requests of at most `max_samples_per_send` samples (Prometheus
//! remote-write 1.0: a snappy-compressed `prometheus.WriteRequest`), each retried with
//! backoff until the endpoint takes it or refuses it for good. One sender per endpoint sends
//! in log order, so every series reaches the endpoint in time order.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use gauntlet_engine::labels::{Label, Labels};
use gauntlet_engine::relabel;
use gauntlet_proto::prometheus as pb;
use prost::Message as _;

use super::config::RemoteWriteConfig;
use super::log::{Batch, Position, Sample, write_progress};
use crate::rule::alertmanager_config::Auth;

/// A batch waiting in an endpoint's queue.
#[derive(Debug)]
struct Queued {
    batch: Batch,
    /// When it was queued: a partial request waits `batch_send_deadline` from the oldest.
    at: Instant,
}

/// What an endpoint has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Samples the endpoint took.
    pub sent: AtomicU64,
    /// Samples it refused for good (a 4xx answer).
    pub failed: AtomicU64,
    /// Samples sent again after a failed attempt.
    pub retried: AtomicU64,
    /// Samples write relabelling dropped.
    pub dropped: AtomicU64,
    /// The newest timestamp the endpoint took, ms (0 before the first).
    pub highest_sent_ms: AtomicI64,
}

/// How a request ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Taken.
    Sent,
    /// Refused for good: the samples are dropped and counted as failed.
    Refused(String),
    /// Worth trying again (no answer, 5xx, a 429 when retried).
    Retry(String),
}

/// One endpoint: its configuration, client, queue and counters.
#[derive(Debug)]
pub struct EndpointQueue {
    /// The checked configuration.
    pub config: RemoteWriteConfig,
    client: reqwest::Client,
    external: Labels,
    pending: Mutex<VecDeque<Queued>>,
    /// Samples of the front batch already sent.
    front_sent: Mutex<usize>,
    wake: tokio::sync::Notify,
    /// Where its progress file lives.
    progress_dir: PathBuf,
    /// Its counters.
    pub stats: QueueStats,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EndpointQueue {
    /// A queue for `config`; `external` labels are added to every series that lacks them, as
    /// Prometheus adds its external labels before write relabelling.
    pub fn new(
        config: RemoteWriteConfig,
        external: Labels,
        progress_dir: PathBuf,
    ) -> Result<EndpointQueue, String> {
        let mut b = reqwest::Client::builder()
            .timeout(config.remote_timeout)
            .user_agent(concat!("Gauntlet/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(tls) = &config.tls {
            b = b.tls_backend_preconfigured((*tls.config).clone());
        }
        if let Some(p) = &config.proxy_url {
            b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy_url {p:?}: {e}"))?);
        }
        let client = b
            .build()
            .map_err(|e| format!("remote_write {}: building the client: {e}", config.name))?;
        Ok(EndpointQueue {
            config,
            client,
            external,
            pending: Mutex::new(VecDeque::new()),
            front_sent: Mutex::new(0),
            wake: tokio::sync::Notify::new(),
            progress_dir,
            stats: QueueStats::default(),
            stopping: AtomicBool::new(false),
        })
    }

    /// Queues a logged batch and wakes the sender.
    pub fn push(&self, batch: Batch) {
        lock(&self.pending).push_back(Queued {
            batch,
            at: Instant::now(),
        });
        self.wake.notify_one();
    }

    /// Samples not sent yet.
    pub fn pending_samples(&self) -> usize {
        let sent = *lock(&self.front_sent);
        let total: usize = lock(&self.pending)
            .iter()
            .map(|q| q.batch.samples.len())
            .sum();
        total.saturating_sub(sent)
    }

    /// The oldest segment this endpoint still needs, or `None` when it needs none.
    pub fn oldest_segment(&self) -> Option<u32> {
        lock(&self.pending).front().map(|q| q.batch.pos.segment)
    }

    /// Asks the sender to send what it has without waiting for fuller requests, give up at
    /// the first failure and end.
    pub fn stop(&self) {
        self.stopping.store(true, Relaxed);
        self.wake.notify_one();
    }

    /// Sends until [`EndpointQueue::stop`]; `sent` is called after each batch the endpoint
    /// has wholly taken or refused (the log may then delete segments).
    pub async fn run(self: Arc<Self>, sent: impl Fn() + Send + Sync) {
        let mut failing_since: Option<Instant> = None;
        loop {
            if !self.wait_for_request().await {
                return;
            }
            let request = self.take_request();
            if request.samples.is_empty() && request.ends.is_empty() {
                continue;
            }
            let (req, kept, highest) = self.build_request(&request.samples);
            let dropped = request.samples.len() - kept;
            self.stats.dropped.fetch_add(dropped as u64, Relaxed);
            if kept > 0 {
                let body = match snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(endpoint = %self.config.name, error = %e, "compressing a remote-write request failed; its samples are dropped");
                        self.stats.failed.fetch_add(kept as u64, Relaxed);
                        self.done(&request);
                        sent();
                        continue;
                    }
                };
                if !self
                    .send_until_done(&body, kept, highest, &mut failing_since)
                    .await
                {
                    // Stopping while the endpoint fails: the samples stay in the WAL.
                    return;
                }
            }
            self.done(&request);
            sent();
        }
    }

    /// Waits until a request is due: a full one is ready, the oldest sample has waited
    /// `batch_send_deadline`, or the queue is stopping with samples left. `false` when it is
    /// stopping with nothing left.
    async fn wait_for_request(&self) -> bool {
        loop {
            let stopping = self.stopping.load(Relaxed);
            let pending = self.pending_samples();
            let oldest = lock(&self.pending).front().map(|q| q.at);
            match oldest {
                None if stopping => return false,
                Some(_) if stopping => return true,
                Some(_) if pending >= self.config.queue.max_samples_per_send => return true,
                Some(at) => {
                    let due = at + self.config.queue.batch_send_deadline;
                    if Instant::now() >= due {
                        return true;
                    }
                    let _ = tokio::time::timeout_at(due.into(), self.wake.notified()).await;
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// The next request: its samples from the front of the queue, the positions of the
    /// batches it ends (sent whole once it is taken), and how many samples it takes from the
    /// batch after those (sent in part).
    fn take_request(&self) -> Request {
        let max = self.config.queue.max_samples_per_send;
        let pending = lock(&self.pending);
        let mut skip = *lock(&self.front_sent);
        let mut req = Request::default();
        for q in pending.iter() {
            let rest = &q.batch.samples[skip.min(q.batch.samples.len())..];
            skip = 0;
            let room = max - req.samples.len();
            if rest.len() <= room {
                req.samples.extend_from_slice(rest);
                req.ends.push(q.batch.pos);
            } else {
                req.samples.extend_from_slice(&rest[..room]);
                req.partial = room;
            }
            if req.samples.len() >= max {
                break;
            }
        }
        req
    }

    /// Marks a request as done (taken or refused): batches it ended leave the queue, and the
    /// endpoint's progress file moves past them; a batch it took part of keeps the count.
    fn done(&self, req: &Request) {
        let mut pending = lock(&self.pending);
        let mut front_sent = lock(&self.front_sent);
        let mut last = None;
        for pos in &req.ends {
            if pending.front().is_some_and(|q| q.batch.pos == *pos) {
                pending.pop_front();
                *front_sent = 0;
                last = Some(*pos);
            }
        }
        *front_sent += req.partial;
        drop(pending);
        drop(front_sent);
        if let Some(pos) = last
            && let Err(e) = write_progress(&self.progress_dir, &self.config.name, pos.next())
        {
            tracing::error!(endpoint = %self.config.name, error = %e, "keeping the remote-write progress failed; samples may be sent again after a restart");
        }
    }

    /// The request's series: external labels added where a series lacks them, write
    /// relabelling applied (a dropped series is left out), samples of one series together
    /// in time order. Also the samples kept and their newest timestamp (ms).
    fn build_request(&self, samples: &[Sample]) -> (pb::WriteRequest, usize, i64) {
        let mut index: HashMap<&Labels, Option<usize>> = HashMap::new();
        let mut series: Vec<pb::TimeSeries> = Vec::new();
        let mut kept = 0;
        let mut highest = i64::MIN;
        for s in samples {
            let slot = *index.entry(&s.labels).or_insert_with(|| {
                let labels = with_external(&s.labels, &self.external);
                let labels = if self.config.write_relabel.is_empty() {
                    Some(labels)
                } else {
                    relabel::process(&labels, &self.config.write_relabel)
                };
                labels.filter(|l| !l.is_empty()).map(|l| {
                    series.push(pb::TimeSeries {
                        labels: l
                            .iter()
                            .map(|l| pb::Label {
                                name: l.name.to_string(),
                                value: l.value.to_string(),
                            })
                            .collect(),
                        ..Default::default()
                    });
                    series.len() - 1
                })
            });
            if let Some(i) = slot {
                series[i].samples.push(pb::Sample {
                    value: s.v,
                    timestamp: s.t,
                });
                kept += 1;
                highest = highest.max(s.t);
            }
        }
        for ts in &mut series {
            ts.samples.sort_by_key(|s| s.timestamp);
        }
        (
            pb::WriteRequest {
                timeseries: series,
                metadata: Vec::new(),
            },
            kept,
            highest,
        )
    }

    /// Sends `body` (holding `n` samples, the newest at `highest` ms) until the endpoint
    /// takes or refuses it, waiting between tries from `min_backoff` doubling to
    /// `max_backoff`. `false` when the queue stopped while the endpoint was failing.
    async fn send_until_done(
        &self,
        body: &[u8],
        n: usize,
        highest: i64,
        failing_since: &mut Option<Instant>,
    ) -> bool {
        let q = &self.config.queue;
        let mut backoff = q.min_backoff;
        loop {
            match self.send_once(body).await {
                Outcome::Sent => {
                    self.stats.sent.fetch_add(n as u64, Relaxed);
                    self.stats.highest_sent_ms.fetch_max(highest, Relaxed);
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            endpoint = %self.config.name,
                            url = %self.config.url,
                            down_for_s = since.elapsed().as_secs_f64(),
                            "remote-write endpoint recovered; samples are flowing again"
                        );
                    }
                    return true;
                }
                Outcome::Refused(why) => {
                    self.stats.failed.fetch_add(n as u64, Relaxed);
                    tracing::error!(
                        endpoint = %self.config.name,
                        url = %self.config.url,
                        samples = n,
                        error = %why,
                        "remote-write endpoint refused samples; they are dropped"
                    );
                    return true;
                }
                Outcome::Retry(why) => {
                    if failing_since.is_none() {
                        *failing_since = Some(Instant::now());
                        tracing::warn!(
                            endpoint = %self.config.name,
                            url = %self.config.url,
                            error = %why,
                            "remote-write endpoint failing; samples wait in the WAL and are retried"
                        );
                    } else {
                        tracing::debug!(endpoint = %self.config.name, error = %why, "remote-write retry failed");
                    }
                    if self.stopping.load(Relaxed) {
                        return false;
                    }
                    self.stats.retried.fetch_add(n as u64, Relaxed);
                    let stopped = tokio::time::timeout(backoff, async {
                        while !self.stopping.load(Relaxed) {
                            self.wake.notified().await;
                        }
                    })
                    .await
                    .is_ok();
                    if stopped {
                        return false;
                    }
                    backoff = (backoff * 2).min(q.max_backoff);
                }
            }
        }
    }

    /// One POST of a compressed request.
    async fn send_once(&self, body: &[u8]) -> Outcome {
        let mut req = self
            .client
            .post(self.config.url.clone())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.to_vec());
        for (k, v) in &self.config.headers {
            req = req.header(k, v);
        }
        match &self.config.auth {
            None => {}
            Some(Auth::Basic { username, password }) => match password.read() {
                Ok(p) => req = req.basic_auth(username, Some(p)),
                Err(e) => return Outcome::Retry(format!("basic_auth.password_file: {e}")),
            },
            Some(Auth::Bearer(token)) => match token.read() {
                Ok(t) => req = req.bearer_auth(t),
                Err(e) => return Outcome::Retry(format!("bearer token file: {e}")),
            },
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(with_causes(&e)),
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Sent;
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.trim().chars().take(512).collect();
        classify(status, self.config.queue.retry_on_http_429, text)
    }
}

/// A request being sent: see [`EndpointQueue::take_request`].
#[derive(Debug, Default)]
struct Request {
    samples: Vec<Sample>,
    ends: Vec<Position>,
    partial: usize,
}

/// What an unsuccessful answer means, as Prometheus reads it: a 5xx (and a 429 when
/// `retry_429`) is tried again, any other refusal is final.
fn classify(status: reqwest::StatusCode, retry_429: bool, body: String) -> Outcome {
    let why = format!("{status}: {body}");
    if status.is_server_error() || (status == reqwest::StatusCode::TOO_MANY_REQUESTS && retry_429) {
        Outcome::Retry(why)
    } else {
        Outcome::Refused(why)
    }
}

/// An error and its causes, `: `-joined (reqwest's own message leaves out why, such as a
/// refused connection).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}

/// `labels` with each external label it lacks added (a series' own label wins, as in
/// Prometheus's remote write).
fn with_external(labels: &Labels, external: &Labels) -> Labels {
    if external.is_empty() {
        return labels.clone();
    }
    let mut v: Vec<Label> = labels.iter().cloned().collect();
    for e in external.iter() {
        if labels.get(&e.name).is_none() {
            v.push(e.clone());
        }
    }
    v.sort();
    Labels::from_sorted(v)
}

#[cfg(test)]
mod tests {
    use super::super::config::{QueueConfig, parse_remote_write};
    use super::*;

    fn queue(max: usize, relabel: &str) -> (tempfile::TempDir, EndpointQueue) {
        // As the binary's main does: reqwest's rustls needs a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "remote_write:\n- url: http://127.0.0.1:1/api/v1/receive\n  name: q\n  queue_config: {{max_samples_per_send: {max}}}\n{relabel}"
        );
        let c = parse_remote_write("--remote-write.config", &yaml)
            .unwrap()
            .remove(0);
        assert_eq!(c.queue.max_samples_per_send, max);
        let q = EndpointQueue::new(
            c,
            Labels::from_pairs([("ruler", "r1"), ("job", "ext")]),
            dir.path().to_path_buf(),
        )
        .unwrap();
        (dir, q)
    }

    fn batch(segment: u32, index: u32, n: usize) -> Batch {
        let samples: Vec<Sample> = (0..n)
            .map(|i| Sample {
                labels: Labels::from_pairs([("__name__", "m"), ("i", format!("{i}").as_str())]),
                t: 1000 * i64::from(index),
                v: i as f64,
            })
            .collect();
        Batch {
            pos: Position { segment, index },
            samples: samples.into(),
        }
    }

    #[test]
    fn requests_cut_batches_at_the_limit_and_progress_moves_past_whole_ones() {
        let (dir, q) = queue(3, "");
        q.push(batch(0, 0, 2));
        q.push(batch(0, 1, 4));
        q.push(batch(1, 0, 1));
        assert_eq!(q.pending_samples(), 7);
        // 2 of the first, 1 of the second.
        let r = q.take_request();
        assert_eq!(r.samples.len(), 3);
        assert_eq!(
            r.ends,
            [Position {
                segment: 0,
                index: 0
            }]
        );
        assert_eq!(r.partial, 1);
        q.done(&r);
        assert_eq!(q.pending_samples(), 4);
        assert_eq!(
            super::super::log::read_progress(dir.path(), "q").unwrap(),
            Some(Position {
                segment: 0,
                index: 1
            })
        );
        // The next 3 of the second: it ends there.
        let r = q.take_request();
        assert_eq!(r.samples.len(), 3);
        assert_eq!(r.samples[0].labels.get("i"), Some("1"));
        assert_eq!(
            r.ends,
            [Position {
                segment: 0,
                index: 1
            }]
        );
        assert_eq!(r.partial, 0);
        q.done(&r);
        assert_eq!(q.oldest_segment(), Some(1));
        let r = q.take_request();
        assert_eq!(r.samples.len(), 1);
        q.done(&r);
        assert_eq!(q.pending_samples(), 0);
        assert_eq!(q.oldest_segment(), None);
        assert_eq!(
            super::super::log::read_progress(dir.path(), "q").unwrap(),
            Some(Position {
                segment: 1,
                index: 1
            })
        );
    }

    #[test]
    fn series_get_external_labels_then_write_relabelling() {
        let (_dir, q) = queue(
            100,
            "  write_relabel_configs:\n  - source_labels: [i]\n    regex: '1'\n    action: drop\n",
        );
        let mut samples = batch(0, 0, 3).samples.to_vec();
        let mut later = samples[0].clone();
        later.t = -5;
        samples.push(later);
        let (req, kept, highest) = q.build_request(&samples);
        assert_eq!(kept, 3);
        assert_eq!(highest, 0);
        assert_eq!(req.timeseries.len(), 2);
        let names: Vec<(&str, &str)> = req.timeseries[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("__name__", "m"),
                ("i", "0"),
                ("job", "ext"),
                ("ruler", "r1")
            ]
        );
        // Samples of a series go in time order.
        let ts: Vec<i64> = req.timeseries[0]
            .samples
            .iter()
            .map(|s| s.timestamp)
            .collect();
        assert_eq!(ts, [-5, 0]);
        // A series' own label wins over an external one.
        let own = Sample {
            labels: Labels::from_pairs([("__name__", "m"), ("job", "mine")]),
            t: 1,
            v: 1.0,
        };
        let (req, _, _) = q.build_request(&[own]);
        assert!(
            req.timeseries[0]
                .labels
                .iter()
                .any(|l| l.name == "job" && l.value == "mine")
        );
    }

    #[test]
    fn answers_are_retried_or_dropped_as_prometheus_does() {
        use reqwest::StatusCode as S;
        let retry = |s, r429| matches!(classify(s, r429, String::new()), Outcome::Retry(_));
        assert!(retry(S::INTERNAL_SERVER_ERROR, false));
        assert!(retry(S::SERVICE_UNAVAILABLE, false));
        assert!(retry(S::TOO_MANY_REQUESTS, true));
        assert!(!retry(S::TOO_MANY_REQUESTS, false));
        assert!(!retry(S::BAD_REQUEST, true));
        assert!(!retry(S::CONFLICT, true));
        assert_eq!(QueueConfig::default().max_samples_per_send, 2000);
    }
}
