//! The stateless ruler's output: what the rules record (recorded series, `ALERTS`,
//! `ALERTS_FOR_STATE`) is logged in a WAL under `--data-dir` ([`log`]) and remote-written to
//! every endpoint of `--remote-write.config[-file]` ([`config`]), each with its own queue and
//! sender ([`queue`]). An endpoint that is down gets its samples later, from the WAL, after
//! its outage or a restart of the ruler; segments every endpoint has sent are deleted.

pub mod config;
pub mod log;
pub mod queue;

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use gauntlet_engine::labels::Labels;

use config::RemoteWriteConfig;
use log::{Sample, SampleLog, read_progress, write_progress};
use queue::EndpointQueue;

/// A segment is closed once it holds this many bytes, so that sent ones can be deleted.
const SEGMENT_CUT_BYTES: u64 = 8 << 20;

/// The WAL and the endpoints' queues.
#[derive(Debug)]
pub struct RemoteWriter {
    log: Mutex<Option<SampleLog>>,
    endpoints: Vec<Arc<EndpointQueue>>,
    /// The newest timestamp appended, ms.
    highest_ms: AtomicI64,
    /// Histogram samples the rules gave, which are not remote-written.
    histograms_dropped: AtomicU64,
    /// The oldest segment some endpoint still needed when last looked at.
    kept_from: Mutex<u32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RemoteWriter {
    /// Opens the WAL under `data_dir` and the endpoints' queues, each given the batches it had
    /// not sent before the last stop (a new endpoint starts with what comes next). Senders
    /// start with [`RemoteWriter::spawn`].
    pub fn open(
        data_dir: &Path,
        configs: Vec<RemoteWriteConfig>,
        external: Labels,
    ) -> anyhow::Result<Arc<RemoteWriter>> {
        use anyhow::Context as _;
        let wal_dir = data_dir.join("wal");
        let progress_dir = data_dir.join("remote_write");
        let (log, batches) = SampleLog::open(&wal_dir, SEGMENT_CUT_BYTES)
            .with_context(|| format!("opening the remote-write WAL {}", wal_dir.display()))?;
        let next = log.next_position();
        let mut endpoints = Vec::with_capacity(configs.len());
        for c in configs {
            let name = c.name.clone();
            let from = match read_progress(&progress_dir, &name)
                .with_context(|| format!("reading remote_write {name}'s progress"))?
            {
                Some(p) => p,
                None => {
                    // Kept at once, so a crash before its first send still finds it.
                    write_progress(&progress_dir, &name, next)
                        .with_context(|| format!("keeping remote_write {name}'s progress"))?;
                    next
                }
            };
            let q = EndpointQueue::new(c, external.clone(), progress_dir.clone())
                .map_err(anyhow::Error::msg)?;
            let mut resent = 0;
            for b in batches.iter().filter(|b| b.pos >= from) {
                resent += b.samples.len();
                q.push(b.clone());
            }
            if resent > 0 {
                tracing::info!(endpoint = %name, samples = resent, "remote-write samples left unsent before the restart are sent from the WAL");
            }
            endpoints.push(Arc::new(q));
        }
        let highest = batches
            .iter()
            .flat_map(|b| b.samples.iter().map(|s| s.t))
            .max()
            .unwrap_or(0);
        let w = Arc::new(RemoteWriter {
            log: Mutex::new(Some(log)),
            endpoints,
            highest_ms: AtomicI64::new(highest),
            histograms_dropped: AtomicU64::new(0),
            kept_from: Mutex::new(0),
        });
        w.delete_sent_segments();
        Ok(w)
    }

    /// Starts each endpoint's sender on the current runtime; they run until
    /// [`RemoteWriter::close`].
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        self.endpoints
            .iter()
            .map(|q| {
                let me = Arc::downgrade(self);
                tokio::spawn(q.clone().run(move || {
                    if let Some(w) = me.upgrade() {
                        w.delete_sent_segments();
                    }
                }))
            })
            .collect()
    }

    /// Logs a rule's samples (fsynced) and queues them for every endpoint. Histogram samples
    /// are counted and left out. Blocking: call it off the network threads.
    pub fn append(&self, samples: Vec<gauntlet_promql::InstantSample>) -> Result<(), String> {
        let mut floats = Vec::with_capacity(samples.len());
        for s in samples {
            if s.h.is_some() {
                if self.histograms_dropped.fetch_add(1, Relaxed) == 0 {
                    tracing::warn!(series = %s.labels, "native histogram results are not remote-written by the stateless ruler yet; they are dropped");
                }
                continue;
            }
            floats.push(Sample {
                labels: s.labels,
                t: s.t_ms,
                v: s.v,
            });
        }
        if floats.is_empty() {
            return Ok(());
        }
        let highest = floats.iter().map(|s| s.t).max().unwrap_or(0);
        let batch = {
            let mut log = lock(&self.log);
            let Some(log) = log.as_mut() else {
                return Err("the remote-write WAL is closed".into());
            };
            log.append(floats)
                .map_err(|e| format!("writing the remote-write WAL: {e}"))?
        };
        self.highest_ms.fetch_max(highest, Relaxed);
        for q in &self.endpoints {
            q.push(batch.clone());
        }
        Ok(())
    }

    /// Deletes the WAL segments every endpoint has sent.
    fn delete_sent_segments(&self) {
        let log = lock(&self.log);
        let Some(log) = log.as_ref() else {
            return;
        };
        let current = log.next_position().segment;
        let needed = self
            .endpoints
            .iter()
            .filter_map(|q| q.oldest_segment())
            .min()
            .unwrap_or(current);
        let mut kept = lock(&self.kept_from);
        if needed <= *kept {
            return;
        }
        match log.delete_before(needed) {
            Ok(()) => *kept = needed,
            Err(e) => tracing::warn!(error = %e, "deleting sent remote-write WAL segments failed"),
        }
    }

    /// Stops the senders (each sends what it has unless its endpoint fails), waits for
    /// them, and closes the WAL.
    pub async fn close(&self, senders: Vec<tokio::task::JoinHandle<()>>) {
        for q in &self.endpoints {
            q.stop();
        }
        for s in senders {
            let _ = s.await;
        }
        if let Some(log) = lock(&self.log).take()
            && let Err(e) = log.close()
        {
            tracing::warn!(error = %e, "closing the remote-write WAL failed");
        }
    }

    /// Registers the remote-write metrics, with Prometheus's names.
    pub fn register_metrics(self: &Arc<Self>, registry: &mut crate::metrics::Registry) {
        registry.register_collector(Box::new(RemoteWriteCollector(self.clone())));
    }
}

/// The remote-write metrics.
#[derive(Debug)]
struct RemoteWriteCollector(Arc<RemoteWriter>);

impl prometheus_client::collector::Collector for RemoteWriteCollector {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use crate::metrics::{counter, counters, gauge, gauges};
        let w = &self.0;
        let e = &mut enc;
        let each = |f: &dyn Fn(&EndpointQueue) -> u64| -> Vec<([(&'static str, String); 2], u64)> {
            w.endpoints
                .iter()
                .map(|q| {
                    (
                        [
                            ("remote_name", q.config.name.clone()),
                            ("url", q.config.url.to_string()),
                        ],
                        f(q),
                    )
                })
                .collect()
        };
        counters(
            e,
            "prometheus_remote_storage_samples_total",
            "Total number of samples sent to remote storage.",
            each(&|q| q.stats.sent.load(Relaxed)),
        )?;
        counters(
            e,
            "prometheus_remote_storage_samples_failed_total",
            "Total number of samples which failed on send to remote storage, non-recoverable errors.",
            each(&|q| q.stats.failed.load(Relaxed)),
        )?;
        counters(
            e,
            "prometheus_remote_storage_samples_retried_total",
            "Total number of samples which failed on send to remote storage but were retried because the send error was recoverable.",
            each(&|q| q.stats.retried.load(Relaxed)),
        )?;
        counters(
            e,
            "prometheus_remote_storage_samples_dropped_total",
            "Total number of samples which were dropped after being read from the WAL before being sent via remote write, either via relabelling, due to being too old or unintentionally because of an unknown reference ID.",
            each(&|q| q.stats.dropped.load(Relaxed)),
        )?;
        gauges(
            e,
            "prometheus_remote_storage_samples_pending",
            "The number of samples pending in the queues shards to be sent to the remote storage.",
            each(&|q| q.pending_samples() as u64)
                .into_iter()
                .map(|(l, v)| (l, v as i64)),
        )?;
        gauges(
            e,
            "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
            "Timestamp from a WAL sample, the highest timestamp successfully sent by this queue, in seconds since epoch.",
            each(&|q| q.stats.highest_sent_ms.load(Relaxed).max(0) as u64)
                .into_iter()
                .map(|(l, v)| (l, v as f64 / 1000.0)),
        )?;
        gauge(
            e,
            "prometheus_remote_storage_highest_timestamp_in_seconds",
            "Highest timestamp that has come into the remote storage via the Appender interface, in seconds since epoch.",
            w.highest_ms.load(Relaxed).max(0) as f64 / 1000.0,
        )?;
        counter(
            e,
            "gauntlet_rule_remote_write_histograms_dropped_total",
            "Native histogram samples the rules gave that the stateless ruler does not remote-write.",
            w.histograms_dropped.load(Relaxed),
        )?;
        Ok(())
    }
}
