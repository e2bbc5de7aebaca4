//! The remote-write load generator: replays a pre-encoded [`RemoteWriteStream`] over one
//! keep-alive connection per shard, flat out or at a target rate, for a bounded time.
//!
//! Everything is encoded before the clock starts. Each connection owns its shard's requests
//! and sends them in order, one at a time, so a series' samples arrive in time order (as from
//! Prometheus's shards). When a connection has sent all of its requests it shifts their
//! timestamps by the data's span in place (only the timestamp varints change, see
//! [`crate::remote_write::snappy`]) and starts over, so the replay continues the data in time
//! for as long as the run lasts; values repeat, which reads like a counter reset at the wrap.
//! Memory stays at one copy of the data set instead of one per round, and bodies are handed to
//! hyper by reference count, not copied.
//!
//! A request answered 429 or 5xx is sent again after a pause, as Prometheus's remote write
//! retries it: the pause starts at [`MIN_BACKOFF`] and doubles up to [`MAX_BACKOFF`] while the
//! answers stay so (Prometheus's `min_backoff` and `max_backoff`), and the request's samples
//! count as acknowledged only once it is taken. A receiver refusing work under load is then
//! met as Prometheus meets it, not by a loop resending as fast as it is refused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::LoadError;
use super::http::{Conn, Endpoint};
use super::stats::{ProcStats, p50_p99};
use crate::remote_write::{EncodedRequest, RemoteWriteStream, shift_timestamps};

/// Headers Prometheus sends with a remote-write 1.0 request.
pub const HEADERS: &[(&str, &str)] = &[
    ("content-encoding", "snappy"),
    ("content-type", "application/x-protobuf"),
    ("x-prometheus-remote-write-version", "0.1.0"),
    ("user-agent", "gauntlet-bench"),
];

/// First pause before a refused request is sent again (Prometheus's `min_backoff`).
pub const MIN_BACKOFF: Duration = Duration::from_millis(30);

/// Longest pause before a refused request is sent again (Prometheus's `max_backoff`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Options of a remote-write run.
#[derive(Clone, Debug)]
pub struct RemoteWriteOptions {
    /// Receiver URL, e.g. `http://127.0.0.1:9090/api/v1/write`.
    pub url: String,
    /// Samples per second over all connections; `None` sends flat out.
    pub rate: Option<f64>,
    /// How long to send; in-flight requests are awaited after it.
    pub duration: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Added to every timestamp before the clock starts, ms (to move the data near now).
    pub time_shift_ms: i64,
}

/// What a run achieved.
#[derive(Clone, Debug, Default)]
pub struct RemoteWriteReport {
    /// Requests sent (answered or not).
    pub requests: u64,
    /// Requests answered 2xx.
    pub acked_requests: u64,
    /// Samples in requests answered 2xx.
    pub acked_samples: u64,
    /// Non-2xx answers by status code.
    pub non_2xx: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection errors, timeouts).
    pub transport_errors: u64,
    /// First transport error seen, for the report.
    pub first_error: Option<String>,
    /// Time from the first send to the last answer, s.
    pub elapsed_s: f64,
    /// Request latency percentiles, ms.
    pub latency_p50_ms: f64,
    /// 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// This process's CPU time during the run (user + system), s.
    pub self_cpu_s: f64,
    /// Times the busiest connection wrapped around the data (each wrap shifts it by the data's
    /// span); the data written lies within `(cycles + 1) × span` of its (shifted) start.
    pub cycles: u64,
}

impl RemoteWriteReport {
    /// Acknowledged samples per second.
    pub fn acked_samples_per_s(&self) -> f64 {
        self.acked_samples as f64 / self.elapsed_s.max(1e-9)
    }

    /// This process's CPU as a share of one core over the run.
    pub fn self_cpu_share(&self) -> f64 {
        self.self_cpu_s / self.elapsed_s.max(1e-9)
    }

    /// A few lines for people.
    pub fn render(&self) -> String {
        let mut s = format!(
            "requests {} (2xx {}), acknowledged samples {} in {:.2} s = {:.0} samples/s\n\
             latency p50 {:.2} ms, p99 {:.2} ms\n\
             generator CPU {:.2} s = {:.1}% of one core\n",
            self.requests,
            self.acked_requests,
            self.acked_samples,
            self.elapsed_s,
            self.acked_samples_per_s(),
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.self_cpu_s,
            100.0 * self.self_cpu_share()
        );
        for (code, n) in &self.non_2xx {
            s.push_str(&format!("non-2xx: {n} answers with status {code}\n"));
        }
        if self.transport_errors > 0 {
            s.push_str(&format!(
                "transport errors: {} (first: {})\n",
                self.transport_errors,
                self.first_error.as_deref().unwrap_or("")
            ));
        }
        s
    }
}

/// A request as a connection holds it: the body is shared with hyper while in flight and
/// taken back (without a copy) to shift it for the next round.
struct Held {
    body: Bytes,
    ts_pos: Vec<u32>,
    samples: u32,
}

impl Held {
    fn shift(&mut self, delta_ms: i64) -> Result<(), crate::remote_write::ShiftError> {
        let body = std::mem::take(&mut self.body);
        // hyper has dropped its handle once the answer is in, so this is normally unique; a
        // copy covers the rare case it is not.
        let mut m = body
            .try_into_mut()
            .unwrap_or_else(|shared| bytes::BytesMut::from(&shared[..]));
        shift_timestamps(&mut m, &self.ts_pos, delta_ms)?;
        self.body = m.freeze();
        Ok(())
    }
}

struct Worker {
    reqs: Vec<Held>,
    latencies_ms: Vec<f64>,
    report: RemoteWriteReport,
}

/// Runs the load on a single-threaded runtime and returns the figures. `stream` must have been
/// encoded with one shard per wanted connection.
pub fn run(
    stream: RemoteWriteStream,
    opts: &RemoteWriteOptions,
) -> Result<RemoteWriteReport, LoadError> {
    let ep = Endpoint::parse(&opts.url)?;
    let shards = stream
        .requests
        .iter()
        .map(|r| r.shard + 1)
        .max()
        .unwrap_or(0) as usize;
    if shards == 0 {
        return Err(LoadError::Invalid("the stream holds no requests".into()));
    }
    if opts.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err(LoadError::Invalid("--rate must be positive".into()));
    }
    let mut per_shard: Vec<Vec<Held>> = (0..shards).map(|_| Vec::new()).collect();
    for r in stream.requests {
        let EncodedRequest {
            shard,
            mut body,
            ts_pos,
            samples,
        } = r;
        if opts.time_shift_ms != 0 {
            shift_timestamps(&mut body, &ts_pos, opts.time_shift_ms)?;
        }
        per_shard[shard as usize].push(Held {
            body: Bytes::from(body),
            ts_pos,
            samples,
        });
    }
    let span = stream.span_ms;
    let rt = super::http::runtime()?;
    let cpu0 = ProcStats::read("self")?.cpu_s;
    let start = Instant::now();
    let deadline = start + opts.duration;
    let rate_per_conn = opts.rate.map(|r| r / shards as f64);
    let workers = rt.block_on(async {
        let mut tasks = Vec::new();
        for reqs in per_shard {
            let ep = ep.clone();
            let timeout = opts.timeout;
            tasks.push(tokio::spawn(async move {
                let mut w = Worker {
                    latencies_ms: Vec::with_capacity(4096),
                    reqs,
                    report: RemoteWriteReport::default(),
                };
                drive(&mut w, &ep, timeout, span, start, deadline, rate_per_conn).await;
                w
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.map_err(std::io::Error::other)?);
        }
        Ok::<_, LoadError>(out)
    })?;
    let elapsed_s = start.elapsed().as_secs_f64();
    let self_cpu_s = ProcStats::read("self")?.cpu_s - cpu0;
    let mut total = RemoteWriteReport {
        elapsed_s,
        self_cpu_s,
        ..Default::default()
    };
    let mut lat = Vec::new();
    for w in workers {
        let r = w.report;
        total.requests += r.requests;
        total.acked_requests += r.acked_requests;
        total.acked_samples += r.acked_samples;
        total.transport_errors += r.transport_errors;
        total.cycles = total.cycles.max(r.cycles);
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
        for (c, n) in r.non_2xx {
            *total.non_2xx.entry(c).or_default() += n;
        }
        lat.extend(w.latencies_ms);
    }
    (total.latency_p50_ms, total.latency_p99_ms) = p50_p99(&mut lat);
    Ok(total)
}

async fn drive(
    w: &mut Worker,
    ep: &Endpoint,
    timeout: Duration,
    span_ms: i64,
    start: Instant,
    deadline: Instant,
    rate_per_conn: Option<f64>,
) {
    let mut conn = Conn::new(ep, timeout);
    let mut sent_samples = 0u64;
    let mut i = 0usize;
    // The pause before a refused request is sent again; `None` after a request was taken.
    let mut backoff: Option<Duration> = None;
    loop {
        if i == w.reqs.len() {
            i = 0;
            w.report.cycles += 1;
            for r in &mut w.reqs {
                if let Err(e) = r.shift(span_ms) {
                    w.report.first_error.get_or_insert(e.to_string());
                    return;
                }
            }
        }
        let retry = backoff.is_some();
        if let Some(rate) = rate_per_conn
            && !retry
        {
            let due = start + Duration::from_secs_f64(sent_samples as f64 / rate);
            if due >= deadline {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let req = &w.reqs[i];
        if !retry {
            sent_samples += u64::from(req.samples);
        }
        w.report.requests += 1;
        let body = req.body.clone();
        match conn.send(hyper::Method::POST, None, HEADERS, body).await {
            Ok(a) => {
                w.latencies_ms.push(now.elapsed().as_secs_f64() * 1e3);
                if (200..300).contains(&a.status) {
                    w.report.acked_requests += 1;
                    w.report.acked_samples += u64::from(req.samples);
                    backoff = None;
                    i += 1;
                } else {
                    *w.report.non_2xx.entry(a.status).or_default() += 1;
                    if w.report.first_error.is_none() {
                        w.report.first_error = Some(format!(
                            "status {}: {}",
                            a.status,
                            String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
                        ));
                    }
                    if a.status == 429 || a.status >= 500 {
                        let pause = backoff.map_or(MIN_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
                        backoff = Some(pause);
                        tokio::time::sleep_until((Instant::now() + pause).min(deadline).into())
                            .await;
                    } else {
                        backoff = None;
                        i += 1;
                    }
                }
            }
            Err(e) => {
                w.report.transport_errors += 1;
                w.report.first_error.get_or_insert(e.to_string());
                backoff = None;
                i += 1;
                // A refused connection would otherwise spin until the deadline.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
