//! Exemplars end to end: Prometheus 3 with exemplar storage on scrapes a target this test
//! serves (OpenMetrics text with exemplars on a counter and on histogram buckets) and
//! remote-writes to `gauntlet receive --tsdb.max-exemplars` with `send_exemplars: true`. Then
//! `/api/v1/query_exemplars` through `gauntlet query`, and through Thanos's querier, both with
//! the receiver as their endpoint, answer what Prometheus answers; after the receiver is
//! killed with SIGKILL and restarted, the exemplars replayed from its WAL answer the same.
//! Prometheus 3 replays the receiver's tenant directory (its WAL's exemplar records) into the
//! same answer, and the receiver's head replays Prometheus's own WAL into it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::peers::{PeerProcess, thanos_query};
use crate::common::receive::{Receiver, now_ms};
use crate::common::*;
use gauntlet_engine::head::{Head, HeadOptions, HeadRuntime};
use gauntlet_engine::labels::{MatchType, Matcher};
use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
use serde_json::Value;

/// The selector every answer is asked for.
pub(crate) const QUERY: &str = "{__name__=~\"demo_.+\"}";

/// Labels as sorted (name, value) pairs.
pub(crate) type LabelPairs = Vec<(String, String)>;

/// An answer reduced to what both sides must agree on: series labels (without the labels the
/// receiver adds) → (exemplar labels, value text, timestamp ms).
pub(crate) type Exemplars = BTreeMap<LabelPairs, Vec<(LabelPairs, String, i64)>>;

/// Labels the receiver adds as external labels, not part of what Prometheus scraped.
const ADDED: [&str; 2] = ["replica", "tenant_id"];

fn pairs(v: &Value) -> LabelPairs {
    let mut out: LabelPairs = v
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(n, _)| !ADDED.contains(&n.as_str()))
                .map(|(n, v)| (n.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A `/api/v1/query_exemplars` answer's data as [`Exemplars`]; panics on anything but success.
pub(crate) fn reduce(v: &Value) -> Exemplars {
    assert_eq!(v["status"], "success", "{v}");
    let mut out = Exemplars::new();
    for s in v["data"].as_array().expect("data is an array") {
        let ex = s["exemplars"]
            .as_array()
            .expect("exemplars is an array")
            .iter()
            .map(|e| {
                (
                    pairs(&e["labels"]),
                    e["value"].as_str().expect("value is a string").to_string(),
                    (e["timestamp"].as_f64().expect("timestamp is a number") * 1000.0).round()
                        as i64,
                )
            })
            .collect();
        out.insert(pairs(&s["seriesLabels"]), ex);
    }
    out
}

/// The path asking for [`QUERY`]'s exemplars up to `end` (ms).
pub(crate) fn exemplars_path(end: i64) -> String {
    api_path(
        "/api/v1/query_exemplars",
        &[
            ("query", QUERY),
            ("start", &format!("{}", (end - 3_600_000) as f64 / 1000.0)),
            ("end", &format!("{}", end as f64 / 1000.0)),
        ],
    )
}

/// Polls `get` for at most 60 s until its answer equals `want`; fails showing the last one.
fn wait_for_same(what: &str, want: &Exemplars, get: impl Fn() -> Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get();
        let got = (v["status"] == "success").then(|| reduce(&v));
        if got.as_ref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: after 60 s the answer differs\n  got  {v}\n  want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A scrape target on loopback serving OpenMetrics text with exemplars, the values and trace
/// ids moving on at each scrape; it stops answering once `stop` is set.
pub(crate) struct Target {
    pub(crate) port: u16,
    stop: Arc<AtomicBool>,
    pub(crate) scrapes: Arc<AtomicU64>,
}

impl Target {
    pub(crate) fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the target");
        let port = listener.local_addr().expect("target address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (st, sc) = (stop.clone(), scrapes.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut c) = conn else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let n = sc.fetch_add(1, Ordering::SeqCst) + 1;
                let body = format!(
                    "# TYPE demo_requests counter\n\
                     # HELP demo_requests Requests served.\n\
                     demo_requests_total{{path=\"/api\"}} {n} # {{trace_id=\"req-{n}\"}} {v}\n\
                     # TYPE demo_latency_seconds histogram\n\
                     demo_latency_seconds_bucket{{le=\"0.5\"}} {n} # {{trace_id=\"fast-{n}\",span_id=\"s{n}\"}} 0.25\n\
                     demo_latency_seconds_bucket{{le=\"+Inf\"}} {n2} # {{trace_id=\"slow-{n}\"}} 1.5\n\
                     demo_latency_seconds_sum {n2}\n\
                     demo_latency_seconds_count {n2}\n\
                     # EOF\n",
                    v = n as f64 / 10.0,
                    n2 = 2 * n,
                );
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Target {
            port,
            stop,
            scrapes,
        }
    }

    /// Stops answering: the next connection ends the thread.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The exemplars a head replayed from the TSDB directory `dir` holds up to `end` (ms), as
/// [`Exemplars`].
fn head_exemplars(dir: &Path, end: i64) -> Exemplars {
    let rt = HeadRuntime::start(&RuntimeConfig {
        cores: 2,
        io: IoChoice::Pread,
        pin: false,
        name: "exemplars-test".into(),
    })
    .expect("head runtime");
    let opts = HeadOptions {
        max_exemplars: 100_000,
        ..HeadOptions::default()
    };
    let (head, rep) = Head::open(rt, dir, opts).expect("opening the head");
    assert!(rep.exemplars > 0, "{rep:?}");
    let m = Matcher::new(MatchType::Regexp, "__name__", "demo_.+").expect("matcher");
    let mut out = Exemplars::new();
    for s in head.select_exemplars(end - 3_600_000, end, &[vec![m]]) {
        let series = pair_list(s.series.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        let ex = s
            .exemplars
            .iter()
            .map(|e| {
                let labels =
                    pair_list(e.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
                // Prometheus's text of a value, for the values this target writes.
                (labels, format!("{}", e.value), e.ts)
            })
            .collect();
        out.insert(series, ex);
    }
    out
}

fn pair_list<'a>(it: impl Iterator<Item = (&'a str, &'a str)>) -> LabelPairs {
    let mut v: LabelPairs = it
        .filter(|(n, _)| !ADDED.contains(n))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

fn thanos_get(q: &PeerProcess, path: &str) -> Value {
    let (status, body) = q.get(path);
    serde_json::from_str(&body)
        .unwrap_or_else(|_| serde_json::json!({"status": format!("HTTP {status}"), "body": body}))
}

fn gauntlet_get(q: &GauntletServer, path: &str) -> Value {
    let (status, body) = q.get(path);
    serde_json::from_slice(&body).unwrap_or_else(|_| {
        serde_json::json!({"status": format!("HTTP {status}"), "body": String::from_utf8_lossy(&body)})
    })
}

#[test]
fn prometheus3_exemplars_through_receive_answer_alike_and_survive_a_restart() {
    let binary = prometheus3();
    let tmp = tempfile::tempdir().unwrap();
    let target = Target::start();
    let recv_dir = tmp.path().join("receive");
    let extra = ["--tsdb.max-exemplars=10000"];
    let ports = free_ports();
    let mut recv = Receiver::start_on(&recv_dir, &extra, ports);
    let (rw, tport) = (recv.rw, target.port);
    let prom = Prometheus::start_with_config(
        &binary,
        |_| {
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['127.0.0.1:{tport}']\nremote_write:\n  - url: http://127.0.0.1:{rw}/api/v1/receive\n    send_exemplars: true\n    queue_config:\n      batch_send_deadline: 500ms\n"
            )
        },
        &["--enable-feature=exemplar-storage"],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while target.scrapes.load(Ordering::SeqCst) < 6 {
        assert!(
            Instant::now() < deadline,
            "Prometheus scraped the target {} times in 90 s",
            target.scrapes.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    target.stop();
    // The last scrape's samples reach Prometheus's WAL and the remote-write queue.
    std::thread::sleep(Duration::from_secs(3));
    let end = now_ms() + 1000;
    let path = exemplars_path(end);
    let want = reduce(&prom.get(&path));
    assert_eq!(want.len(), 3, "series with exemplars: {want:?}");
    assert!(
        want.values().all(|e| e.len() >= 5),
        "exemplars per series: {want:?}"
    );

    let ours = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", recv.grpc),
            "--query.replica-label=replica",
        ],
        "/-/ready",
    );
    wait_for_same("gauntlet query", &want, || gauntlet_get(&ours, &path));
    // The receiver's own count of what it holds agrees.
    let (_, metrics) = http_get(recv.http, "/metrics").expect("receive /metrics");
    let text = String::from_utf8_lossy(&metrics);
    let held: f64 = text
        .lines()
        .filter(|l| l.starts_with("prometheus_tsdb_exemplar_exemplars_in_storage{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        held as usize,
        want.values().map(Vec::len).sum::<usize>(),
        "{text}"
    );

    let thanos = thanos_query(
        &[format!("127.0.0.1:{}", recv.grpc)],
        &["--query.replica-label=replica"],
    );
    wait_for_same("thanos query", &want, || thanos_get(&thanos, &path));

    // Killed and restarted over the same directory: the exemplars come back from the WAL.
    recv.kill();
    let recv = Receiver::start_on(&recv_dir, &extra, ports);
    wait_for_same("gauntlet query after a restart", &want, || {
        gauntlet_get(&ours, &path)
    });
    wait_for_same("thanos query after a restart", &want, || {
        thanos_get(&thanos, &path)
    });
    drop(recv);

    // Prometheus 3 replays the receiver's WAL (exemplar records included) into the same answer.
    let replayed = Prometheus::start_over(
        &binary,
        &recv_dir.join("default-tenant"),
        |_| "global:\n  scrape_interval: 1h\n".into(),
        &["--enable-feature=exemplar-storage"],
    );
    wait_for_same("Prometheus over the receiver's WAL", &want, || {
        replayed.get(&path)
    });

    // And the receiver's head replays Prometheus's own WAL into it.
    let prom_data = prom.data_dir();
    let copy = tmp.path().join("prometheus-copy");
    copy_dir(&prom_data, &copy);
    assert_eq!(head_exemplars(&copy, end), want);
}
