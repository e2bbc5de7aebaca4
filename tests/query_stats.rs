//! Query statistics (`stats=all` on `/api/v1/query` and `/api/v1/query_range`) against a live
//! Prometheus 3 (run with `promql-per-step-stats`, which `stats=all` needs there for the
//! per-step list): both serve the same blocks (a promtool-made one and one written by
//! Gauntlet with stale markers inside windows) and the same native histograms sent to both
//! over remote write. For every query of the list, as instant queries and as range queries at
//! two steps, `data.stats` must have the same shape, key for key, and the same
//! `totalQueryableSamples` and `totalQueryableSamplesPerStep`. Timings and `peakSamples`
//! (Gauntlet's own peak: lower than Prometheus's where it streams, higher in subqueries) are
//! only checked to be there. Without `stats`, neither answer carries any.

use crate::common::native_histograms;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::receive::{now_ms, post};
use crate::common::*;

/// Start of the block data, Unix seconds.
const T0: i64 = 1_735_689_600;
/// Scrape interval of the block data, seconds.
const STEP: i64 = 15;
/// Span of the block data, seconds.
const SPAN: i64 = 2 * 3600;

/// Queries over the block data, one per line.
const QUERIES: &str = r#"
http_requests_total{instance="host-00",code="200"}
temperature_celsius
rate(http_requests_total{instance="host-01"}[5m])
increase(http_requests_total{code="500"}[10m])
avg_over_time(temperature_celsius[7m])
quantile_over_time(0.5, temperature_celsius{instance="host-00"}[10m])
sum by (code) (rate(http_requests_total[5m]))
sum(temperature_celsius)
count({__name__=~"temperature_celsius|process_resident_memory_bytes"})
topk(3, temperature_celsius)
temperature_celsius - 20
process_resident_memory_bytes / on (instance) group_left sum by (instance) (process_resident_memory_bytes)
temperature_celsius and temperature_celsius > 50
abs(temperature_celsius offset 10m)
temperature_celsius @ 1735693200
rate(http_requests_total{code="200"}[5m] @ 1735693200)
sum(rate(node_cpu_seconds_total{mode="idle"}[5m] offset 5m))
max_over_time(rate(http_requests_total{instance="host-00"}[5m])[30m:1m])
avg_over_time(sum(temperature_celsius)[20m:])
rate(http_requests_total{instance="host-00",code="500"}[5m:30s])
timestamp(temperature_celsius)
histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))
label_replace(temperature_celsius, "x", "$1", "instance", "(.*)")
absent_over_time(nonexistent[5m])
absent(nonexistent)
edge_stale
rate(edge_stale[5m])
count_over_time(edge_stale[10m])
vector(1) + time()
"#;

/// Queries only an instant query takes: their results are range vectors.
const INSTANT_ONLY: &str = r#"
temperature_celsius{instance="host-00"}[5m]
edge_stale[10m]
http_requests_total{instance="host-00",code="200"}[10m:1m]
rate(http_requests_total{instance="host-01",code="404"}[5m])[10m:2m]
"#;

/// Queries over the native histograms sent over remote write.
const HISTOGRAM_QUERIES: &str = r#"
stats_hist
rate(stats_hist[1m])
increase(stats_hist[2m])
sum(stats_hist)
histogram_count(stats_hist)
histogram_quantile(0.9, stats_hist)
timestamp(stats_hist)
max_over_time(histogram_count(stats_hist)[1m:10s])
"#;

/// Instant queries over the native histograms only.
const HISTOGRAM_INSTANT_ONLY: &str = r#"
stats_hist[30s]
"#;

/// Instant evaluation times of the block data: on the scrape grid, between scrapes.
const INSTANT_TIMES: [&str; 2] = ["1735693200", "1735694007.5"];

/// Queries whose counts are known to differ from Prometheus's, and why. None so far.
const KNOWN_DIFFERENT: &[(&str, &str)] = &[];

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// The promtool-made block of the test generator's families for two hosts.
fn make_blocks(dir: &Path) -> PathBuf {
    let om = gen_openmetrics(dir, T0, SPAN as u32, STEP as u32, 2);
    let blocks = dir.join("blocks");
    run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&blocks),
    );
    write_stale_block(&blocks);
    blocks
}

/// A block written by Gauntlet over the same two hours, of gauges with stale markers inside
/// windows (which OpenMetrics cannot carry): one that flaps stale every 7th scrape, one that
/// goes stale at 40 min and comes back at 50 min.
fn write_stale_block(blocks: &Path) {
    use gauntlet_engine::block::{BlockWriter, CutOptions};
    use gauntlet_engine::chunk::STALE_NAN_BITS;
    use gauntlet_engine::labels::Labels;
    let stale = f64::from_bits(STALE_NAN_BITS);
    let n = SPAN / STEP;
    let series = |f: &dyn Fn(i64) -> Option<f64>| {
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        for i in 0..n {
            if let Some(v) = f(i) {
                ts.push((T0 + i * STEP) * 1000);
                vals.push(v);
            }
        }
        (ts, vals)
    };
    let flap = series(&|i| Some(if i % 7 == 3 { stale } else { (i % 13) as f64 }));
    let mid = series(&|i| match i * STEP {
        t if t < 2400 => Some(i as f64 * 2.0),
        2400 => Some(stale),
        t if t < 3000 => None,
        _ => Some((i - 200) as f64),
    });
    let mut w = BlockWriter::create(blocks, CutOptions::default()).unwrap();
    for (case, (ts, vals)) in [("flap", flap), ("mid", mid)] {
        let labels = Labels::from_pairs([("__name__", "edge_stale"), ("case", case)]);
        w.add_series(&labels, &ts, &vals).unwrap();
    }
    w.finish(None).unwrap().unwrap();
}

/// The `data.stats` text of an answer, as sent (keys in order), or `None` without one.
fn stats_text(body: &str) -> Option<&str> {
    let at = body.find(",\"stats\":")?;
    let rest = &body[at + 9..];
    // The object ends where its braces balance (it holds no strings with braces).
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// `stats` with every number after `key":` replaced by `0`, for each of `keys`.
fn zero_numbers(stats: &str, keys: &[&str]) -> String {
    let mut out = stats.to_string();
    for key in keys {
        let pat = format!("\"{key}\":");
        let mut from = 0;
        while let Some(i) = out[from..].find(&pat) {
            let start = from + i + pat.len();
            let end = out[start..]
                .find([',', '}'])
                .map_or(out.len(), |j| start + j);
            out.replace_range(start..end, "0");
            from = start + 1;
        }
    }
    out
}

const TIMINGS: [&str; 6] = [
    "evalTotalTime",
    "resultSortTime",
    "queryPreparationTime",
    "innerEvalTime",
    "execQueueTime",
    "execTotalTime",
];

/// Compares the stats of `path` from both servers: the shape always, the sample counts unless
/// `query` is known to differ. Returns a failure line, if any.
fn compare(prom: &Prometheus, ours: &GauntletServer, query: &str, path: &str) -> Option<String> {
    let (ps, pb) = http_get(prom.port, path).unwrap();
    let (gs, gb) = ours.get(path);
    let (pb, gb) = (String::from_utf8_lossy(&pb), String::from_utf8_lossy(&gb));
    if ps != 200 || gs != 200 {
        return Some(format!(
            "{path}\n  status {gs} {gb}\n  prometheus {ps} {pb}"
        ));
    }
    let (Some(want), Some(got)) = (stats_text(&pb), stats_text(&gb)) else {
        return Some(format!("{path}\n  no stats: {gb}\n  prometheus: {pb}"));
    };
    // Every timing is a number of seconds.
    let v: serde_json::Value = serde_json::from_str(got).unwrap();
    for t in TIMINGS {
        let secs = v["timings"][t].as_f64();
        assert!(
            secs.is_some_and(|s| (0.0..60.0).contains(&s)),
            "{path}: timing {t} is {:?} in {got}",
            v["timings"][t]
        );
    }
    let mut keys: Vec<&str> = TIMINGS.to_vec();
    keys.push("peakSamples");
    let (want, got) = (zero_numbers(want, &keys), zero_numbers(got, &keys));
    if let Some((_, why)) = KNOWN_DIFFERENT.iter().find(|(q, _)| *q == query) {
        keys.extend(["totalQueryableSamples"]);
        let shape = |s: &str| {
            let s = zero_numbers(s, &keys);
            s.find("\"totalQueryableSamplesPerStep\"")
                .map_or(s.clone(), |i| s[..i].to_string())
        };
        if shape(&want) != shape(&got) {
            return Some(format!("{path}\n  shape {got}\n  prometheus {want}"));
        }
        if want == got {
            return Some(format!(
                "{path}: listed as differing ({why}) but agrees; take it off the list"
            ));
        }
        return None;
    }
    (want != got).then(|| format!("{path}\n  gauntlet   {got}\n  prometheus {want}"))
}

/// Remote-writes `n` histogram series, 1 s apart from `t0` (ms), `samples` each, to `port`.
fn send_histograms(port: u16, path: &str, t0: i64, n: usize, samples: usize) {
    let ts = native_histograms::batch("stats_hist", n, t0, samples);
    let body = native_histograms::body_v1(&ts);
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    let (status, _, text) = post(port, path, &headers, &body).unwrap();
    assert!(
        (200..300).contains(&status),
        "remote write to {path}: {status} {text}"
    );
}

#[test]
fn query_stats_count_samples_as_prometheus_3_does() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = make_blocks(tmp.path());
    let prom = Prometheus::start_with_args(
        &prometheus3(),
        &blocks,
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms,promql-per-step-stats",
        ],
    );
    let data = tmp.path().join("bucket");
    copy_dir(&blocks, &data);
    let data_arg = format!("--data-dir={}", data.display());
    let [rw_port] = free_ports();
    let rw_arg = format!("--remote-write.address=127.0.0.1:{rw_port}");
    let ours = GauntletServer::start(&["all", &data_arg, &rw_arg], "/-/ready");

    // Histograms of three kinds (integer, float, custom buckets), recent enough for both
    // heads to take them.
    let h0 = (now_ms() / 1000 - 600) * 1000;
    const HIST_SAMPLES: usize = 300;
    send_histograms(prom.port, "/api/v1/write", h0, 6, HIST_SAMPLES);
    send_histograms(rw_port, "/api/v1/receive", h0, 6, HIST_SAMPLES);

    let mut paths: Vec<(&str, String)> = Vec::new();
    let (start, end) = ((T0 + 300).to_string(), (T0 + SPAN).to_string());
    for q in lines(QUERIES) {
        for t in INSTANT_TIMES {
            let p = [("query", q), ("time", t), ("stats", "all")];
            paths.push((q, api_path("/api/v1/query", &p)));
        }
        for step in ["60", "97"] {
            let p = [
                ("query", q),
                ("start", &start),
                ("end", &end),
                ("step", step),
                ("stats", "all"),
            ];
            paths.push((q, api_path("/api/v1/query_range", &p)));
        }
    }
    for q in lines(INSTANT_ONLY) {
        for t in INSTANT_TIMES {
            let p = [("query", q), ("time", t), ("stats", "all")];
            paths.push((q, api_path("/api/v1/query", &p)));
        }
    }
    let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let (h_at, h_from, h_to) = (
        secs(h0 + 250_000),
        secs(h0 + 60_000),
        secs(h0 + (HIST_SAMPLES as i64 - 10) * 1000),
    );
    for q in lines(HISTOGRAM_QUERIES) {
        let p = [("query", q), ("time", h_at.as_str()), ("stats", "all")];
        paths.push((q, api_path("/api/v1/query", &p)));
        for step in ["10", "7"] {
            let p = [
                ("query", q),
                ("start", &h_from),
                ("end", &h_to),
                ("step", step),
                ("stats", "all"),
            ];
            paths.push((q, api_path("/api/v1/query_range", &p)));
        }
    }
    for q in lines(HISTOGRAM_INSTANT_ONLY) {
        let p = [("query", q), ("time", h_at.as_str()), ("stats", "all")];
        paths.push((q, api_path("/api/v1/query", &p)));
    }

    let mut failures = Vec::new();
    let mut counted = 0;
    for (q, path) in &paths {
        if let Some(f) = compare(&prom, &ours, q, path) {
            failures.push(f);
        }
        let (_, body) = ours.get(path);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if v["data"]["stats"]["samples"]["totalQueryableSamples"]
            .as_u64()
            .is_some_and(|n| n > 0)
        {
            counted += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} answers' stats differ from Prometheus 3:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
    // The comparison is about counts: nearly every answer must have loaded samples.
    assert!(
        counted * 10 >= paths.len() * 8,
        "only {counted} of {} answers counted any sample",
        paths.len()
    );

    // `stats` with any other value gives the stats without the per-step list; without it,
    // no stats at all, from either server.
    let q = "rate(http_requests_total{instance=\"host-00\"}[5m])";
    for (stats, per_step) in [(Some("1"), false), (None, false)] {
        let mut p = vec![
            ("query", q),
            ("start", start.as_str()),
            ("end", end.as_str()),
            ("step", "60"),
        ];
        if let Some(s) = stats {
            p.push(("stats", s));
        }
        let path = api_path("/api/v1/query_range", &p);
        for (who, body) in [
            ("prometheus", http_get(prom.port, &path).unwrap().1),
            ("gauntlet", ours.get(&path).1),
        ] {
            let body = String::from_utf8_lossy(&body);
            let s = stats_text(&body);
            assert_eq!(s.is_some(), stats.is_some(), "{who} {path}: {body}");
            assert_eq!(
                s.is_some_and(|s| s.contains("PerStep")),
                per_step,
                "{who} {path}: {body}"
            );
        }
    }
}
