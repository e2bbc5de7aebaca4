//! Native histograms on the HTTP API, byte for byte against a live Prometheus 3: Prometheus 3
//! scrapes itself with native histograms on and remote-writes everything into `gauntlet all`;
//! once every sample up to a cut-off time has been sent, instant and range queries at and
//! before the cut-off must give the same status and the same body from both.

use std::time::{Duration, Instant};

use crate::common::receive::now_ms;
use crate::common::*;

/// Instant queries over Prometheus's own native histograms (and a few that mix them with
/// floats, to see the same annotations).
const INSTANT: &[&str] = &[
    "prometheus_http_request_duration_seconds",
    r#"prometheus_http_request_duration_seconds{handler="/metrics"}[20s]"#,
    "rate(prometheus_http_request_duration_seconds[30s])",
    "increase(prometheus_http_request_duration_seconds[1m])",
    "irate(prometheus_http_request_duration_seconds[30s])",
    "delta(prometheus_http_request_duration_seconds[30s])",
    "sum by (handler) (rate(prometheus_http_request_duration_seconds[30s]))",
    "sum(prometheus_http_request_duration_seconds)",
    "avg(prometheus_http_request_duration_seconds)",
    "count by (handler) (prometheus_http_request_duration_seconds)",
    "max(prometheus_http_request_duration_seconds)",
    "histogram_quantile(0.9, sum(rate(prometheus_http_request_duration_seconds[30s])))",
    "histogram_quantile(0.5, prometheus_http_request_duration_seconds)",
    "histogram_quantile(1.5, prometheus_http_request_duration_seconds)",
    "histogram_count(rate(prometheus_http_request_duration_seconds[1m]))",
    "histogram_sum(prometheus_http_request_duration_seconds)",
    "histogram_avg(prometheus_http_request_duration_seconds)",
    "histogram_fraction(0, 0.01, prometheus_http_request_duration_seconds)",
    "histogram_stddev(prometheus_http_request_duration_seconds)",
    "histogram_stdvar(rate(prometheus_http_request_duration_seconds[1m]))",
    "prometheus_http_request_duration_seconds * 2",
    "prometheus_http_request_duration_seconds / 4",
    "-prometheus_http_request_duration_seconds",
    "prometheus_http_request_duration_seconds + 1",
    "prometheus_http_request_duration_seconds - prometheus_http_request_duration_seconds offset 10s",
    "sum_over_time(prometheus_http_request_duration_seconds[10s])",
    "avg_over_time(prometheus_http_request_duration_seconds[10s])",
    "count_over_time(prometheus_http_request_duration_seconds[10s])",
    "last_over_time(prometheus_http_request_duration_seconds[10s])",
    r#"sum by (handler) ({__name__=~"prometheus_http_request_duration_seconds|prometheus_http_requests_total"})"#,
    "histogram_quantile(0.9, sum by (handler) (rate(prometheus_http_request_duration_seconds[30s]))) > 0",
    "sum(rate(prometheus_http_request_duration_seconds[30s]))[30s:5s]",
];

/// Range queries over the minute up to the cut-off. (Selections of several metric names are
/// asked here only: an instant query lists its series in the order its storage holds them,
/// which in Prometheus's head is the order they were first scraped; a range query's are
/// sorted.)
const RANGE: &[&str] = &[
    r#"{__name__=~"prometheus_http_request_duration_seconds|prometheus_http_requests_total"}"#,
    r#"rate({__name__=~"prometheus_http_request_duration_seconds|prometheus_http_requests_total"}[30s])"#,
    "prometheus_http_request_duration_seconds",
    "rate(prometheus_http_request_duration_seconds[20s])",
    "sum by (handler) (increase(prometheus_http_request_duration_seconds[30s]))",
    "histogram_quantile(0.99, sum(rate(prometheus_http_request_duration_seconds[30s])))",
    "histogram_count(prometheus_http_request_duration_seconds)",
    "histogram_fraction(0, 0.001, sum(prometheus_http_request_duration_seconds))",
    "avg(prometheus_http_request_duration_seconds) * 3",
];

/// The label `gauntlet all`'s receiver adds to every series it stores, as it appears in a
/// JSON label set (never first: `tenant_id` sorts after every label these series have).
const TENANT_LABEL: &str = r#","tenant_id":"default-tenant""#;

/// The highest sample timestamp (seconds) Prometheus has sent over remote write, from its own
/// `/metrics`.
fn highest_sent(port: u16) -> f64 {
    let (_, body) = http_get(port, "/metrics").unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("prometheus_remote_storage_queue_highest_sent_timestamp_seconds"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

#[test]
fn native_histogram_answers_match_prometheus_3_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let [rw_port] = free_ports();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let rw = format!("--remote-write.address=127.0.0.1:{rw_port}");
    let ours = GauntletServer::start(&["all", &data, &rw], "/-/ready");
    // One shard: samples are sent in the order they were scraped, so once a sample of time T
    // has been sent every earlier one has been.
    let prom = Prometheus::start_with_config(
        &prometheus3(),
        |port| {
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\nremote_write:\n  - url: http://127.0.0.1:{rw_port}/api/v1/receive\n    send_native_histograms: true\n    queue_config:\n      min_shards: 1\n      max_shards: 1\n      batch_send_deadline: 200ms\n"
            )
        },
        &["--enable-feature=native-histograms"],
    );

    // Enough history for the ranges above: 75 s of scrapes.
    let started = now_ms();
    std::thread::sleep(Duration::from_secs(75));
    let cutoff = now_ms() - 3000;
    let deadline = Instant::now() + Duration::from_secs(60);
    while highest_sent(prom.port) * 1000.0 < (cutoff + 1500) as f64 {
        assert!(
            Instant::now() < deadline,
            "Prometheus has not sent past the cut-off in 60 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let at = format!("{:.3}", cutoff as f64 / 1000.0);
    let from = format!("{:.3}", (cutoff - 60_000).max(started) as f64 / 1000.0);

    let mut paths: Vec<String> = INSTANT
        .iter()
        .map(|q| api_path("/api/v1/query", &[("query", q), ("time", &at)]))
        .collect();
    for q in RANGE {
        for step in ["1", "7"] {
            paths.push(api_path(
                "/api/v1/query_range",
                &[("query", q), ("start", &from), ("end", &at), ("step", step)],
            ));
        }
    }
    // The receiver labels what it stores with its tenant, as Thanos Receive does.
    let with_histograms = assert_same_answers(prom.port, &ours, &paths, |body| {
        body.replace(TENANT_LABEL, "")
    });
    // The comparison is about histograms: most answers must carry some.
    assert!(
        with_histograms >= 20,
        "only {with_histograms} of {} answers hold native histograms",
        paths.len()
    );
}
