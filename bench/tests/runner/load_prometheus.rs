//! The load generators against real Prometheus servers on loopback (Debian's `prometheus`):
//! remote write gets 2xx and every acknowledged sample is then queryable; the differential
//! query mode passes on identical data and flags different data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gauntlet_bench::datagen::{GenConfig, write_blocks_dir};
use gauntlet_bench::load::query::{QueryOptions, parse_queries, run as run_queries, run_diff};
use gauntlet_bench::load::remote_write::{RemoteWriteOptions, run as run_writes};
use gauntlet_bench::remote_write::{BatchConfig, encode_stream};
use gauntlet_bench::runner::count_samples;
use gauntlet_bench::runner::server::{Server, free_port, prometheus_cmd};

fn prometheus_bin() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .output()
        .unwrap();
    let p = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        !p.is_empty(),
        "prometheus is not installed (tests/run.sh installs it)"
    );
    PathBuf::from(p)
}

fn start(dir: &Path, data: &Path, extra: &[&str]) -> Server {
    let port = free_port().unwrap();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let cmd = prometheus_cmd(&prometheus_bin(), dir, data, port, &extra).unwrap();
    Server::start(
        "prometheus",
        cmd,
        format!("http://127.0.0.1:{port}"),
        &dir.join("log.txt"),
        Duration::from_secs(60),
    )
    .unwrap()
}

#[test]
fn remote_write_load_is_acknowledged_and_queryable() {
    let tmp = tempfile::tempdir().unwrap();
    let p = start(
        tmp.path(),
        &tmp.path().join("data"),
        &["--web.enable-remote-write-receiver"],
    );
    // No churn, so no stale markers: every acknowledged sample must be countable.
    let cfg = GenConfig {
        targets: 3,
        duration_ms: 10 * 60_000,
        churn_every_ms: 0,
        ..GenConfig::default()
    };
    let stream = encode_stream(
        &cfg,
        &BatchConfig {
            shards: 2,
            external_labels: vec![("replica".into(), "t".into())],
            ..BatchConfig::default()
        },
    )
    .unwrap();
    let span = stream.span_ms;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let data_start = (now - 3_600_000) / 15_000 * 15_000;
    let rep = run_writes(
        stream,
        &RemoteWriteOptions {
            url: format!("{}/api/v1/write", p.url),
            rate: None,
            duration: Duration::from_millis(1500),
            timeout: Duration::from_secs(30),
            time_shift_ms: data_start - cfg.start_ms,
        },
    )
    .unwrap();
    assert!(
        rep.non_2xx.is_empty() && rep.transport_errors == 0,
        "{}",
        rep.render()
    );
    assert!(
        rep.acked_samples > 0 && rep.acked_requests == rep.requests,
        "{}",
        rep.render()
    );
    assert!(rep.latency_p99_ms >= rep.latency_p50_ms && rep.latency_p50_ms > 0.0);
    let end = data_start + (rep.cycles as i64 + 1) * span;
    assert_eq!(
        count_samples(&p, data_start, end).unwrap(),
        rep.acked_samples as f64
    );
}
#[test]
fn query_load_and_differential_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = GenConfig {
        targets: 2,
        ..GenConfig::default()
    };
    let same_a = tmp.path().join("a");
    let same_b = tmp.path().join("b");
    let other = tmp.path().join("c");
    write_blocks_dir(&cfg, &same_a.join("data")).unwrap();
    write_blocks_dir(&cfg, &same_b.join("data")).unwrap();
    write_blocks_dir(
        &GenConfig {
            seed: 2,
            ..cfg.clone()
        },
        &other.join("data"),
    )
    .unwrap();
    let flags = [
        "--storage.tsdb.retention.time=100y",
        "--storage.tsdb.min-block-duration=2h",
        "--storage.tsdb.max-block-duration=2h",
    ];
    let a = start(&same_a, &same_a.join("data"), &flags);
    let b = start(&same_b, &same_b.join("data"), &flags);
    let c = start(&other, &other.join("data"), &flags);

    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../perf/queries/default.txt"),
    )
    .unwrap();
    let mut queries = parse_queries(&text).unwrap();
    let series = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../perf/queries/series.txt"),
    )
    .unwrap();
    queries.extend(parse_queries(&series).unwrap());
    let opts = QueryOptions {
        url: a.url.clone(),
        data_start_ms: cfg.start_ms,
        data_end_ms: cfg.start_ms + cfg.duration_ms,
        concurrency: 2,
        duration: None,
        count: Some(queries.len() as u64 * 2),
        timeout: Duration::from_secs(30),
    };
    let rep = run_queries(&queries, &opts).unwrap();
    assert_eq!(rep.ok, rep.queries, "{}", rep.render());
    assert!(rep.bytes > 0 && rep.per_query.iter().all(|(_, _, n)| *n == 2));

    let same = run_diff(&queries, &opts, &b.url, 1e-6).unwrap();
    assert!(same.is_empty(), "identical data differs: {same:?}");
    let diff = run_diff(&queries, &opts, &c.url, 1e-6).unwrap();
    // Other seed: same series names mostly, different values and pod names.
    assert!(
        diff.len() > queries.len() / 2,
        "{} differences: {diff:?}",
        diff.len()
    );
}
