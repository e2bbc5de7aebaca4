//! The data the interop tests share, and how answers are compared.

use std::path::{Path, PathBuf};

use gauntlet_bench::datagen::{self, GenConfig};
use gauntlet_engine::block::ThanosMeta;
use serde_json::Value;

use crate::common::peers::PeerProcess;
use crate::common::*;

/// A filesystem bucket and the objstore file that names it.
pub struct Bucket {
    /// The bucket's directory.
    pub dir: PathBuf,
    /// Its objstore YAML (`type: FILESYSTEM`).
    pub objstore: PathBuf,
    /// First and last sample time of the generated data, ms.
    pub start_ms: i64,
    /// Last sample time, ms.
    pub end_ms: i64,
}

/// The generator's settings for the interop data: 6 hours of 4 targets at 30 s, churning pods
/// (about 600 series at a time, 3 blocks per replica).
pub fn gen_config() -> GenConfig {
    GenConfig {
        targets: 4,
        scrape_interval_ms: 30_000,
        duration_ms: 6 * 3_600_000,
        ..GenConfig::default()
    }
}

/// Writes `cfg`'s data as 2 h blocks into `bucket`, once per replica in `replicas`, each with
/// the external labels `cluster="eu1"` and `replica=<r>`, floats and native histograms alike,
/// as sidecars of an HA pair upload them.
pub fn write_replicas(cfg: &GenConfig, bucket: &Path, replicas: &[&str]) {
    for r in replicas {
        let thanos = ThanosMeta {
            version: 1,
            labels: [
                ("cluster".to_string(), "eu1".to_string()),
                ("replica".to_string(), r.to_string()),
            ]
            .into_iter()
            .collect(),
            source: "sidecar".into(),
            ..ThanosMeta::default()
        };
        datagen::write_blocks_dir_with(cfg, bucket, Some(thanos.clone())).unwrap();
        let metas = datagen::write_native_blocks(cfg, bucket, 2 * 3_600_000).unwrap();
        for m in metas {
            let dir = bucket.join(m.ulid.to_string());
            let mut meta = gauntlet_engine::block::BlockMeta::read(&dir).unwrap();
            meta.thanos = Some(thanos.clone());
            meta.write(&dir).unwrap();
        }
    }
}

/// A bucket under `tmp` holding the interop data of an HA pair (`replica="a"` and `"b"`).
pub fn ha_bucket(tmp: &Path) -> Bucket {
    let dir = tmp.join("bucket");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = gen_config();
    write_replicas(&cfg, &dir, &["a", "b"]);
    let objstore = crate::common::peers::objstore_file(tmp, &dir);
    Bucket {
        dir,
        objstore,
        start_ms: cfg.start_ms,
        end_ms: cfg.start_ms + cfg.duration_ms - cfg.scrape_interval_ms,
    }
}

/// The query set: instant and range queries over floats and native histograms, and the
/// series, label names and label values calls, placed in `[start_ms, end_ms]` (ms).
pub fn query_paths(start_ms: i64, end_ms: i64) -> Vec<String> {
    let (start, end) = (start_ms / 1000, end_ms / 1000);
    let at = |t: i64| t.to_string();
    let mut paths = Vec::new();
    let instant = [
        "sum by (job) (rate(node_cpu_seconds_total[5m]))",
        "avg by (mode) (rate(node_cpu_seconds_total[5m]))",
        "topk(3, rate(node_network_receive_bytes_total[5m]))",
        "node_memory_MemAvailable_bytes / 1024 / 1024",
        "count by (phase) (kube_pod_status_phase == 1)",
        "max_over_time(http_requests_in_flight[1h])",
        "histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
        "histogram_quantile(0.9, sum by (handler) (rate(http_request_duration_seconds[5m])))",
        "histogram_count(sum(rate(http_request_duration_seconds[5m])))",
        "http_request_duration_seconds{handler=\"/api/v1/query\"}",
        "sum(increase(http_request_duration_seconds[10m]))",
        "count(up)",
        "absent(nonexistent_metric)",
    ];
    for q in instant {
        for t in [end, end - 3 * 3600 + 17] {
            paths.push(api_path("/api/v1/query", &[("query", q), ("time", &at(t))]));
        }
    }
    let range = [
        "sum by (job) (rate(node_cpu_seconds_total[5m]))",
        "sum by (handler) (rate(http_requests_total{code=~\"5..\"}[5m]))",
        "histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        "histogram_quantile(0.99, sum by (handler) (rate(http_request_duration_seconds[5m])))",
        "avg by (instance) (node_memory_MemAvailable_bytes)",
        "sum(rate(http_request_duration_seconds[5m]))",
    ];
    for q in range {
        paths.push(api_path(
            "/api/v1/query_range",
            &[
                ("query", q),
                ("start", &at(start)),
                ("end", &at(end)),
                ("step", "300"),
            ],
        ));
    }
    paths.push(api_path(
        "/api/v1/series",
        &[
            ("match[]", "kube_pod_status_phase{phase=\"Running\"}"),
            ("start", &at(end - 3600)),
            ("end", &at(end)),
        ],
    ));
    paths.push(api_path(
        "/api/v1/labels",
        &[("start", &at(start)), ("end", &at(end))],
    ));
    paths.push(api_path(
        "/api/v1/label/pod/values",
        &[
            ("match[]", "kube_pod_status_phase"),
            ("start", &at(end - 3600)),
            ("end", &at(end)),
        ],
    ));
    paths.push(api_path(
        "/api/v1/label/__name__/values",
        &[("start", &at(start)), ("end", &at(end))],
    ));
    paths
}

/// The JSON of an answer with what may differ between two equal answers put in one order:
/// result series sorted by their labels (unless the query sorts), annotation lists sorted,
/// `stats` and an empty `analysis` dropped.
pub fn normalized(path: &str, body: &str) -> Value {
    let mut v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    if let Some(o) = v.as_object_mut() {
        o.remove("stats");
        // Thanos's querier adds its query analysis, empty unless asked for; Prometheus's API
        // and Gauntlet's have none (README, "Known differences from Thanos").
        // Thanos's query frontend writes that empty analysis out as a node without a name.
        let empty_node = serde_json::json!({"name": "", "executionTime": "0s", "children": null});
        if let Some(Value::Object(data)) = o.get_mut("data")
            && data
                .get("analysis")
                .is_some_and(|a| a == &Value::Object(Default::default()) || a == &empty_node)
        {
            data.remove("analysis");
        }
        for k in ["warnings", "infos"] {
            if let Some(Value::Array(a)) = o.get_mut(k) {
                a.sort_by_key(|x| x.to_string());
            }
        }
    }
    let sorts = path.contains("sort") || path.contains("topk") || path.contains("bottomk");
    if let Some(result) = v.pointer_mut("/data/result").and_then(Value::as_array_mut)
        && !sorts
    {
        result.sort_by_key(|s| s["metric"].to_string());
    }
    if let Some(data) = v.pointer_mut("/data").and_then(Value::as_array_mut) {
        // Series answers: label sets, in Prometheus's order already; label lists sorted.
        data.sort_by_key(|x| x.to_string());
    }
    v
}

/// Asks `want` and `got` every path and fails listing each answer that differs (status or
/// normalized JSON). Returns how many answers held any result.
pub fn assert_same(what: &str, want: &PeerProcess, got: &PeerProcess, paths: &[String]) -> usize {
    assert_same_ports(what, want.http, got.http, paths)
}

/// As [`assert_same`], for any two HTTP APIs on loopback: `want_port` and `got_port` (a
/// Thanos process's, a [`GauntletServer`]'s `http_port`).
pub fn assert_same_ports(what: &str, want_port: u16, got_port: u16, paths: &[String]) -> usize {
    let get = |port: u16, p: &str| {
        let (status, body) =
            http_get(port, p).unwrap_or_else(|e| panic!("{what}: :{port}{p}: {e}"));
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let mut failures = Vec::new();
    let mut nonempty = 0;
    for p in paths {
        let (ws, wb) = get(want_port, p);
        let (gs, gb) = get(got_port, p);
        let (wv, gv) = (normalized(p, &wb), normalized(p, &gb));
        if wv
            .pointer("/data/result")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
            || wv
                .pointer("/data")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        {
            nonempty += 1;
        }
        if ws != gs || wv != gv {
            failures.push(format!(
                "{p}\n  want {ws} {}\n  got  {gs} {}",
                clip(&wb),
                clip(&gb)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} answers differ:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
    nonempty
}

fn clip(s: &str) -> String {
    if s.len() > 600 {
        let cut = (0..=600)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…({} bytes)", &s[..cut], s.len())
    } else {
        s.to_string()
    }
}

/// Waits (at most 30 s) until the querier whose HTTP API is on `port` (Thanos's or Gauntlet's)
/// lists at least `n` healthy stores that advertise label sets on `/api/v1/stores`, so that
/// what it answers next reads every endpoint it was given.
pub fn wait_for_stores_on(port: u16, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v: Value = http_get(port, "/api/v1/stores")
            .ok()
            .filter(|(status, _)| *status == 200)
            .and_then(|(_, body)| serde_json::from_slice(&body).ok())
            .unwrap_or(Value::Null);
        let ready = v["data"]
            .as_object()
            .map(|o| {
                o.values()
                    .flat_map(|l| l.as_array().cloned().unwrap_or_default())
                    .filter(|s| {
                        s["lastError"].is_null()
                            && s["labelSets"].as_array().is_some_and(|l| !l.is_empty())
                    })
                    .count()
            })
            .unwrap_or(0);
        if ready >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the querier on :{port} lists fewer than {n} healthy stores: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
