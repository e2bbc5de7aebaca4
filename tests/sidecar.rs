//! `gauntlet sidecar` beside a real Prometheus 3.5: its TSDB holds blocks made by promtool
//! and a head fed by remote write, the same series in both. The sidecar's Series (the blocks
//! read from disk, the head through remote read) equals Prometheus's raw samples with the
//! external labels; `gauntlet query` and `thanos query` over it answer as Prometheus does;
//! its shipper uploads each block once, byte for byte, across a restart, and uploads
//! nothing after Thanos's own sidecar shipped the blocks; with Prometheus stopped Info and
//! Series fail with UNAVAILABLE, and they recover when it is back. With 2-minute blocks, the
//! blocks Prometheus cuts while the sidecar runs are shipped and served; its exemplars,
//! metadata and targets read through the queriers as Prometheus's own, and its rules and
//! alerts as through Thanos's sidecar. A Prometheus it cannot ship from (compaction on) or
//! serve (no external labels) stops it with an error.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::peers::{PeerProcess, run_bounded, thanos, thanos_query};
use crate::common::receive::{now_ms, post, series, write_body};
use crate::common::storeapi::{
    Dump, assert_same_series, decoded, matrix, python_calls, series_call,
};
use crate::common::*;
use crate::interop::rule::rules_shape;

const INSTANCES: [&str; 3] = ["i1", "i2", "i3"];
const STEP_S: i64 = 15;

/// A Prometheus on a fixed port and data directory, so it can be stopped and started again
/// where the sidecar expects it.
struct Prom {
    binary: PathBuf,
    config: PathBuf,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Prom {
    /// Starts it with 2h blocks (min = max block duration).
    fn start(&mut self) {
        self.start_with(&[
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
        ]);
    }

    /// Starts it with `blocks`, its block duration flags.
    fn start_with(&mut self, blocks: &[&str]) {
        let child = Command::new(&self.binary)
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!("--storage.tsdb.path={}", self.data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .args([
                "--storage.tsdb.retention.time=100y",
                "--web.enable-remote-write-receiver",
            ])
            .args(blocks)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus");
        self.child = Some(child);
        wait_until("prometheus ready", Duration::from_secs(60), || {
            matches!(http_get(self.port, "/-/ready"), Ok((200, _)))
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `ok` every 100 ms until it holds; fails after `within`.
fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of series `id` at `t_s`.
fn value(id: usize, t_s: i64) -> f64 {
    ((t_s / STEP_S) % 1000) as f64 * (id as f64 + 1.0) + 0.25
}

/// An OpenMetrics file of `sc_gauge` for each instance every 15 s over `[from_s, to_s)`.
fn openmetrics(path: &Path, from_s: i64, to_s: i64) {
    let mut out = String::from("# TYPE sc_gauge gauge\n");
    for (i, inst) in INSTANCES.iter().enumerate() {
        let mut t = from_s;
        while t < to_s {
            out.push_str(&format!(
                "sc_gauge{{job=\"sc\",instance=\"{inst}\"}} {} {t}\n",
                value(i, t)
            ));
            t += STEP_S;
        }
    }
    out.push_str("# EOF\n");
    std::fs::write(path, out).unwrap();
}

/// Remote-writes `sc_gauge` (and a head-only `sc_head`) every 15 s over `[from_s, to_s)`.
fn write_head(port: u16, from_s: i64, to_s: i64) {
    let mut t = from_s;
    while t < to_s {
        let mut ts = Vec::new();
        for (i, inst) in INSTANCES.iter().enumerate() {
            ts.push(series(
                &[("__name__", "sc_gauge"), ("instance", inst), ("job", "sc")],
                &[(t * 1000, value(i, t))],
            ));
        }
        ts.push(series(
            &[("__name__", "sc_head"), ("job", "sc")],
            &[(t * 1000, t as f64)],
        ));
        let headers = [
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ];
        let (status, _, text) = post(port, "/api/v1/write", &headers, &write_body(ts)).unwrap();
        assert!(
            (200..300).contains(&status),
            "remote write: {status} {text}"
        );
        t += STEP_S;
    }
}

/// Prometheus's raw samples of `selector` in `(at - range, at]`, as a dump with `ext` added.
fn prometheus_raw(
    port: u16,
    selector: &str,
    range_s: i64,
    at_ms: i64,
    ext: &[(&str, &str)],
) -> Dump {
    let path = api_path(
        "/api/v1/query",
        &[
            ("query", &format!("{selector}[{range_s}s]")),
            ("time", &format!("{}.{:03}", at_ms / 1000, at_ms % 1000)),
        ],
    );
    let (status, body) = http_get(port, &path).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // A range selector's answer reads as a matrix.
    matrix(&body)
        .into_iter()
        .map(|(mut labels, samples)| {
            for (n, v) in ext {
                labels.insert(n.to_string(), v.to_string());
            }
            (labels, samples)
        })
        .collect()
}

/// `gauntlet sidecar` over `prom` with `extra` flags, ready once Prometheus answered.
fn sidecar(prom: &Prom, extra: &[String]) -> PeerProcess {
    sidecar_with_env(prom, extra, &[])
}

/// [`sidecar`] with `env` added to its environment.
fn sidecar_with_env(prom: &Prom, extra: &[String], env: &[(&str, &str)]) -> PeerProcess {
    let [http, grpc] = free_ports();
    let mut cmd = gauntlet();
    // The index-headers of the blocks it serves go to the test's directory, which goes with
    // the test (a killed sidecar does not remove them).
    if let Some(dir) = prom.data.parent() {
        cmd.env("TMPDIR", dir);
    }
    cmd.envs(env.iter().copied());
    cmd.arg("sidecar")
        .arg(format!("--prometheus.url=http://127.0.0.1:{}", prom.port))
        .arg(format!("--tsdb.path={}", prom.data.display()))
        .arg("--prometheus.get_config_interval=500ms")
        .arg("--shipper.sync-interval=500ms")
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .args(extra);
    PeerProcess::spawn(
        cmd,
        "gauntlet sidecar",
        http,
        grpc,
        "/-/ready",
        Duration::from_secs(30),
    )
}

/// The value of an unlabelled metric on a process's `/metrics` (0 when absent).
fn metric(p: &PeerProcess, name: &str) -> f64 {
    let (_, text) = p.get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Block directories (ULID names) in `dir`, sorted.
fn blocks_in(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 26 && Path::new(dir).join(n).join("meta.json").is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn shipper_file(dir: &Path) -> Vec<String> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join("thanos.shipper.json")).unwrap()).unwrap();
    assert_eq!(v["version"], 1);
    let mut ids: Vec<String> = v["uploaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn sidecar_serves_prometheus_and_ships_its_blocks_once() {
    let tmp = tempfile::tempdir().unwrap();
    let binary = prometheus3();
    let promtool = binary.parent().unwrap().join("promtool");
    let now_s = now_ms() / 1000;
    // Blocks: two 2h-aligned windows ending 3 hours ago; the head: the last 20 minutes.
    let blocks_end = (now_s - 3 * 3600) / 7200 * 7200;
    let blocks_start = blocks_end - 4 * 3600;
    let data = tmp.path().join("data");
    let om = tmp.path().join("in.om");
    openmetrics(&om, blocks_start, blocks_end);
    run_ok(
        Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&data),
    );
    let made = blocks_in(&data);
    assert!(made.len() >= 2, "promtool made {made:?}");

    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1h\n  external_labels:\n    cluster: eu1\n    replica: a\n",
    )
    .unwrap();
    let mut prom = Prom {
        binary,
        config,
        data: data.clone(),
        port: free_port(),
        child: None,
    };
    prom.start();
    let head_from = (now_s - 20 * 60) / STEP_S * STEP_S;
    write_head(prom.port, head_from, now_s - 30);
    let ext = [("cluster", "eu1"), ("replica", "a")];

    // Uploads on: the first sidecar ships every block, byte for byte, with Thanos's meta.
    let bucket_a = tmp.path().join("bucket-a");
    std::fs::create_dir_all(&bucket_a).unwrap();
    let objstore_a = filesystem_objstore(tmp.path().join("a.yml"), &bucket_a);
    let objstore_flag = format!("--objstore.config-file={}", objstore_a.display());
    let mut side = sidecar(&prom, std::slice::from_ref(&objstore_flag));
    wait_until("blocks uploaded", Duration::from_secs(20), || {
        metric(&side, "thanos_shipper_uploads_total") >= made.len() as f64
    });
    assert_eq!(blocks_in(&bucket_a), made);
    for id in &made {
        for rel in ["index", "chunks/000001"] {
            assert_eq!(
                std::fs::read(data.join(id).join(rel)).unwrap(),
                std::fs::read(bucket_a.join(id).join(rel)).unwrap(),
                "{id}/{rel} uploaded as it is on disk"
            );
        }
        let meta: Value =
            serde_json::from_slice(&std::fs::read(bucket_a.join(id).join("meta.json")).unwrap())
                .unwrap();
        assert_eq!(meta["thanos"]["source"], "sidecar");
        assert_eq!(
            meta["thanos"]["labels"],
            json!({"cluster": "eu1", "replica": "a"})
        );
        assert_eq!(meta["thanos"]["downsample"]["resolution"], 0);
        assert_eq!(meta["ulid"], id.as_str());
    }
    assert_eq!(shipper_file(&data), made);
    assert_eq!(metric(&side, "thanos_sidecar_prometheus_up"), 1.0);

    // Series over blocks and head equals Prometheus's raw samples, external labels added.
    let at = now_ms();
    let range_s = at / 1000 - blocks_start + 60;
    let want = prometheus_raw(prom.port, "{job=\"sc\"}", range_s, at, &ext);
    assert_eq!(want.len(), INSTANCES.len() + 1);
    let mint = at - range_s * 1000 + 1;
    let calls = json!([
        series_call(&json!([[0, "job", "sc"]]), mint, at),
        // Across the boundary only: the newest block's last hour and the head.
        series_call(&json!([[0, "__name__", "sc_gauge"], [0, "cluster", "eu1"]]), (blocks_end - 3600) * 1000, at),
        series_call(&json!([[0, "cluster", "us1"]]), mint, at),
        {"method": "Info"},
        {"method": "LabelValues", "label": "instance", "start": mint, "end": at, "matchers": []},
        {"method": "LabelNames", "start": mint, "end": at, "matchers": []},
    ]);
    let got = python_calls(side.grpc, &calls);
    assert_same_series(
        "Series, blocks and head",
        &decoded(&got[0], mint, at),
        &want,
    );
    assert_eq!(
        metric(&side, "gauntlet_sidecar_blocks_served"),
        blocks_in(&data).len() as f64,
        "every persisted block served"
    );
    let boundary = (blocks_end - 3600) * 1000;
    let want_boundary: Dump = want
        .iter()
        .filter(|(l, _)| l["__name__"] == "sc_gauge")
        .map(|(l, s)| {
            (
                l.clone(),
                s.iter().copied().filter(|(t, _)| *t >= boundary).collect(),
            )
        })
        .collect();
    assert_same_series(
        "Series across the boundary",
        &decoded(&got[1], boundary, at),
        &want_boundary,
    );
    assert_eq!(
        got[2]["series"],
        json!([]),
        "an external label ruling Prometheus out: {}",
        got[2]
    );
    assert_eq!(got[3]["ok"], true, "{}", got[3]);
    let info = got[3].to_string();
    assert!(info.contains("eu1") && info.contains("sidecar"), "{info}");
    assert_eq!(got[4]["values"], json!(["i1", "i2", "i3"]), "{}", got[4]);
    for n in ["__name__", "cluster", "instance", "job", "replica"] {
        assert!(got[5].to_string().contains(n), "label names {}", got[5]);
    }

    // Queriers over the sidecar answer as Prometheus itself.
    let q = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", side.grpc)],
        "/-/ready",
    );
    let tq = thanos_query(&[format!("127.0.0.1:{}", side.grpc)], &[]);
    let raw_path = api_path(
        "/api/v1/query",
        &[
            ("query", &format!("{{job=\"sc\"}}[{range_s}s]")),
            ("time", &format!("{}.{:03}", at / 1000, at % 1000)),
        ],
    );
    let dump_of = matrix;
    wait_until(
        "gauntlet query sees the sidecar",
        Duration::from_secs(20),
        || dump_of(&q.get(&raw_path).1).len() == want.len(),
    );
    assert_same_series("gauntlet query", &dump_of(&q.get(&raw_path).1), &want);
    wait_until(
        "thanos query sees the sidecar",
        Duration::from_secs(20),
        || dump_of(tq.get(&raw_path).1.as_bytes()).len() == want.len(),
    );
    assert_same_series(
        "thanos query",
        &dump_of(tq.get(&raw_path).1.as_bytes()),
        &want,
    );
    let sum = api_path(
        "/api/v1/query_range",
        &[
            ("query", "sum by (instance) (avg_over_time(sc_gauge[5m]))"),
            ("start", &(blocks_start + 1800).to_string()),
            ("end", &(at / 1000).to_string()),
            ("step", "600"),
        ],
    );
    let (ps, pb) = http_get(prom.port, &sum).unwrap();
    let (gs, gb) = q.get(&sum);
    assert_eq!((ps, gs), (200, 200));
    let strip = |b: &[u8]| -> Value {
        let v: Value = serde_json::from_slice(b).unwrap();
        v["data"]["result"].clone()
    };
    assert_eq!(strip(&gb), strip(&pb), "query_range through gauntlet query");

    // Restarted, the sidecar uploads nothing again.
    assert!(
        side.terminate().success(),
        "SIGTERM ends the sidecar cleanly"
    );
    let mut side = sidecar(&prom, std::slice::from_ref(&objstore_flag));
    wait_until("two shipper passes", Duration::from_secs(20), || {
        metric(&side, "thanos_shipper_dir_syncs_total") >= 2.0
    });
    assert_eq!(metric(&side, "thanos_shipper_uploads_total"), 0.0);
    assert_eq!(blocks_in(&bucket_a), made);

    // Prometheus stopped: Info and Series fail with UNAVAILABLE; back, they recover.
    prom.stop();
    wait_until(
        "sidecar sees Prometheus down",
        Duration::from_secs(20),
        || metric(&side, "thanos_sidecar_prometheus_up") == 0.0,
    );
    let down = python_calls(
        side.grpc,
        &json!([series_call(&json!([[0, "job", "sc"]]), mint, at), {"method": "Info"}]),
    );
    for r in &down {
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["code"], "UNAVAILABLE", "{r}");
    }
    prom.start();
    wait_until(
        "sidecar sees Prometheus back",
        Duration::from_secs(20),
        || metric(&side, "thanos_sidecar_prometheus_up") == 1.0,
    );
    let back = python_calls(
        side.grpc,
        &json!([series_call(&json!([[0, "job", "sc"]]), mint, at)]),
    );
    assert_same_series(
        "Series after Prometheus came back",
        &decoded(&back[0], mint, at),
        &want,
    );
    assert!(side.terminate().success());

    // Thanos's sidecar ships the blocks first; Gauntlet's, on the same directory with its
    // shipper file and an empty bucket, uploads nothing.
    std::fs::remove_file(data.join("thanos.shipper.json")).unwrap();
    let bucket_b = tmp.path().join("bucket-b");
    std::fs::create_dir_all(&bucket_b).unwrap();
    let objstore_b = filesystem_objstore(tmp.path().join("b.yml"), &bucket_b);
    let mut theirs = thanos(
        "sidecar",
        &[
            format!("--prometheus.url=http://127.0.0.1:{}", prom.port),
            format!("--tsdb.path={}", data.display()),
            format!("--objstore.config-file={}", objstore_b.display()),
        ],
    );
    wait_until("thanos sidecar uploads", Duration::from_secs(30), || {
        blocks_in(&bucket_b) == made
            && data.join("thanos.shipper.json").is_file()
            && shipper_file(&data) == made
    });
    let bucket_c = tmp.path().join("bucket-c");
    std::fs::create_dir_all(&bucket_c).unwrap();
    let objstore_c = filesystem_objstore(tmp.path().join("c.yml"), &bucket_c);
    let side = sidecar(
        &prom,
        &[format!("--objstore.config-file={}", objstore_c.display())],
    );
    wait_until("two shipper passes", Duration::from_secs(20), || {
        metric(&side, "thanos_shipper_dir_syncs_total") >= 2.0
    });
    assert_eq!(metric(&side, "thanos_shipper_uploads_total"), 0.0);
    assert!(blocks_in(&bucket_c).is_empty(), "nothing uploaded twice");
    assert_eq!(shipper_file(&data), made);

    // Vertical sharding: both sidecars say they shard, and each shard of a Series call holds
    // the series Thanos's sidecar puts in it (hashed with the external labels, without the
    // replica labels taken off), blocks and head alike.
    let mut calls = Vec::new();
    for total in 2..=5 {
        for index in 0..total {
            let shard = |by: bool, labels: &[&str]| {
                let mut c = series_call(&json!([[0, "job", "sc"]]), mint, at);
                c["shard"] = json!([index, total, by, labels]);
                c
            };
            calls.push(shard(false, &[]));
            calls.push(shard(true, &["instance"]));
            let mut strip = shard(false, &["instance"]);
            strip["without_replica_labels"] = json!(["replica"]);
            calls.push(strip);
        }
    }
    calls.push(json!({"method": "Info"}));
    let calls = Value::Array(calls);
    let ours = python_calls(side.grpc, &calls);
    let upstream = python_calls(theirs.grpc, &calls);
    let label_sets = |r: &Value| -> Vec<Value> {
        assert_eq!(r["ok"], true, "{r}");
        let mut sets: Vec<Value> = r["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["labels"].clone())
            .collect();
        sets.sort_by_key(|l| l.to_string());
        sets
    };
    let (info, shards) = ours.split_last().unwrap();
    assert_eq!(info["supports_sharding"], true, "{info}");
    let mut seen = std::collections::BTreeMap::new();
    for ((call, o), t) in calls.as_array().unwrap().iter().zip(shards).zip(&upstream) {
        let got = label_sets(o);
        assert_eq!(got, label_sets(t), "shard {}", call["shard"]);
        let key = (
            call["shard"][1].as_i64().unwrap(),
            call["shard"][2].clone().to_string(),
            call["without_replica_labels"].to_string(),
        );
        *seen.entry(key).or_insert(0) += got.len();
    }
    for (key, n) in seen {
        assert_eq!(n, want.len(), "the shards of {key:?} partition the series");
    }
    theirs.terminate();

    // A sidecar whose memory budget has no room for an answer refuses it, naming the limit,
    // and keeps serving what needs no room.
    let tight = sidecar(&prom, &["--memory.limit=1MiB".to_string()]);
    let r = python_calls(
        tight.grpc,
        &json!([series_call(&json!([[0, "job", "sc"]]), mint, at), {"method": "Info"}]),
    );
    assert_eq!(r[0]["code"], "RESOURCE_EXHAUSTED", "{}", r[0]);
    assert!(
        r[0]["details"]
            .as_str()
            .unwrap()
            .contains("--memory.limit of 1 MiB"),
        "{}",
        r[0]
    );
    assert_eq!(r[1]["ok"], true, "{}", r[1]);
}

/// `gauntlet sidecar` over `prom`'s port and data directory with `extra` flags, run to its
/// exit (at most 30 s): its exit status and standard error.
fn sidecar_exit(prom: &Prometheus, extra: &[String]) -> (bool, String) {
    let mut cmd = gauntlet();
    cmd.arg("sidecar")
        .arg(format!("--prometheus.url=http://127.0.0.1:{}", prom.port))
        .arg(format!("--tsdb.path={}", prom.data_dir().display()))
        .arg("--prometheus.get_config_interval=200ms")
        .arg("--http-address=127.0.0.1:0")
        .arg("--grpc-address=127.0.0.1:0")
        .args(extra);
    let out = run_bounded(cmd, Duration::from_secs(30));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sidecar_refuses_a_prometheus_it_cannot_serve_or_ship_from() {
    let binary = prometheus3();
    let tmp = tempfile::tempdir().unwrap();
    let objstore = filesystem_objstore(tmp.path().join("b.yml"), &tmp.path().join("bucket"));
    let bucket_flag = format!("--objstore.config-file={}", objstore.display());

    // Compaction on (min ≠ max block duration) with uploads on: a block could be compacted
    // away before it is shipped.
    let compacting = Prometheus::start_with_config(
        &binary,
        |_| "global:\n  external_labels:\n    cluster: eu1\n".into(),
        &[
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=1d",
        ],
    );
    let (ok, err) = sidecar_exit(&compacting, std::slice::from_ref(&bucket_flag));
    assert!(!ok, "started over a compacting Prometheus with uploads on");
    assert!(
        err.contains("min-block-duration is 2h") && err.contains("max-block-duration is 1d"),
        "{err}"
    );

    // No external labels: nothing tells this Prometheus's series apart.
    let unlabelled =
        Prometheus::start_with_config(&binary, |_| "global:\n  scrape_interval: 1h\n".into(), &[]);
    let (ok, err) = sidecar_exit(&unlabelled, &[]);
    assert!(!ok, "started over a Prometheus without external labels");
    assert!(err.contains("has no external labels"), "{err}");
}

/// A `/api/v1/targets` answer reduced to what Prometheus and a querier over the sidecar must
/// agree on (the fields Thanos's Targets API carries, without the scrape's time and duration,
/// which move on), `ext` added to Prometheus's label sets (none: two queriers compared), sorted.
pub(crate) fn reduce_targets(v: &Value, ext: &[(&str, &str)]) -> Value {
    assert_eq!(v["status"], "success", "{v}");
    let with_ext = |l: &Value| {
        let mut m = l.as_object().cloned().unwrap_or_default();
        for (n, val) in ext {
            m.insert(n.to_string(), json!(val));
        }
        Value::Object(m)
    };
    let mut active: Vec<Value> = v["data"]["activeTargets"]
        .as_array()
        .expect("activeTargets")
        .iter()
        .map(|t| {
            assert!(t["lastScrape"].is_string(), "{t}");
            assert!(t["lastScrapeDuration"].is_number(), "{t}");
            json!({
                "discoveredLabels": with_ext(&t["discoveredLabels"]),
                "labels": with_ext(&t["labels"]),
                "scrapePool": t["scrapePool"],
                "scrapeUrl": t["scrapeUrl"],
                "globalUrl": t["globalUrl"],
                "lastError": t["lastError"],
                "health": t["health"],
            })
        })
        .collect();
    active.sort_by_key(|t| t.to_string());
    let mut dropped: Vec<Value> = v["data"]["droppedTargets"]
        .as_array()
        .expect("droppedTargets")
        .iter()
        .map(|t| json!({"discoveredLabels": with_ext(&t["discoveredLabels"])}))
        .collect();
    dropped.sort_by_key(|t| t.to_string());
    json!({"active": active, "dropped": dropped})
}

/// Polls until `got()` equals `want()` (both read again each time), at most 30 s.
fn wait_same(what: &str, want: impl Fn() -> Value, got: impl Fn() -> Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (w, g) = (want(), got());
        if w == g {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: differs after 30 s\n  got  {g}\n  want {w}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A JSON answer of `port`'s `path`.
fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path).unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The names of the rule groups Prometheus has loaded.
fn rule_groups(port: u16) -> Vec<String> {
    get_json(port, "/api/v1/rules")["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

/// A rule file of one group `name`, evaluated every second: a recording rule, one whose
/// evaluation fails (its right side holds two series for one match), an alert that fires at
/// once, one pending for an hour and one that never fires.
fn rule_file(name: &str) -> String {
    format!(
        "groups:\n- name: {name}\n  interval: 1s\n  rules:\n\
         \x20 - record: {name}:sc_gauge\n    expr: sum(sc_gauge)\n\
         \x20 - record: {name}:broken\n    expr: 'vector(1) + on() group_left() \
         (label_replace(vector(1), \"a\", \"1\", \"\", \"\") or label_replace(vector(1), \"a\", \"2\", \"\", \"\"))'\n\
         \x20 - alert: {name}Always\n    expr: vector(1) > 0\n    for: 0s\n\
         \x20   labels:\n      severity: page\n\
         \x20   annotations:\n      summary: 'value {{{{ $value }}}}'\n\
         \x20 - alert: {name}Pending\n    expr: vector(2) > 0\n    for: 1h\n\
         \x20 - alert: {name}Never\n    expr: vector(0) > 1\n"
    )
}

/// `/api/v1/alerts`'s alerts without when each became active, in a fixed order.
fn alerts_shape(v: &Value) -> Value {
    assert_eq!(v["status"], "success", "{v}");
    let mut alerts: Vec<Value> = v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let mut a = a.clone();
            a.as_object_mut().unwrap().remove("activeAt");
            a
        })
        .collect();
    alerts.sort_by_key(|a| a.to_string());
    Value::Array(alerts)
}

#[test]
fn sidecar_ships_and_serves_blocks_prometheus_cuts_while_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let rules = tmp.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("a.yml"), rule_file("first")).unwrap();
    // A target serving OpenMetrics exemplars, scraped every second.
    let target = crate::exemplars::Target::start();
    // Prometheus reads the file the reloader writes from a template with `$(VAR)` references
    // (--reloader.config-envsubst-file), first written here as a deployment's init step would.
    let template = tmp.path().join("prometheus.yml.tmpl");
    let config = tmp.path().join("prometheus.yml");
    let target_port = target.port;
    let config_text = |extra_job: &str| {
        format!(
            "global:\n  scrape_interval: 1h\n  external_labels:\n    cluster: $(SIDECAR_TEST_CLUSTER)\n\
             rule_files:\n- {}/*.yml\n\
             scrape_configs:\n- job_name: demo\n  scrape_interval: 1s\n  static_configs:\n  - targets: ['127.0.0.1:{}', '127.0.0.1:1']\n\
             \x20 relabel_configs:\n  - source_labels: [__address__]\n    regex: '127.0.0.1:1'\n    action: drop\n{extra_job}",
            rules.display(),
            target_port
        )
    };
    std::fs::write(&template, config_text("")).unwrap();
    std::fs::write(
        &config,
        config_text("").replace("$(SIDECAR_TEST_CLUSTER)", "eu2"),
    )
    .unwrap();
    let mut prom = Prom {
        binary: prometheus3(),
        config: config.clone(),
        data: data.clone(),
        port: free_port(),
        child: None,
    };
    // Blocks of 2 minutes: the head is cut while the test writes, and the sidecar runs.
    prom.start_with(&[
        "--storage.tsdb.min-block-duration=2m",
        "--storage.tsdb.max-block-duration=2m",
        "--enable-feature=exemplar-storage",
        "--web.enable-lifecycle",
    ]);
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let objstore = filesystem_objstore(tmp.path().join("b.yml"), &bucket);
    let mut side = sidecar_with_env(
        &prom,
        &[
            format!("--objstore.config-file={}", objstore.display()),
            format!("--reloader.rule-dir={}", rules.display()),
            format!("--reloader.config-file={}", template.display()),
            format!("--reloader.config-envsubst-file={}", config.display()),
            "--reloader.watch-interval=300ms".into(),
            "--reloader.retry-interval=300ms".into(),
        ],
        &[("SIDECAR_TEST_CLUSTER", "eu2")],
    );
    let now_s = now_ms() / 1000;
    let from = (now_s - 15 * 60) / STEP_S * STEP_S;
    write_head(prom.port, from, now_s - 30);
    wait_until("Prometheus cuts blocks", Duration::from_secs(30), || {
        blocks_in(&data).len() >= 2
    });
    wait_until("the sidecar ships them", Duration::from_secs(30), || {
        let on_disk = blocks_in(&data);
        blocks_in(&bucket) == on_disk && shipper_file(&data) == on_disk
    });
    let at = now_ms();
    let range_s = at / 1000 - from + 60;
    let want = prometheus_raw(
        prom.port,
        "{job=\"sc\"}",
        range_s,
        at,
        &[("cluster", "eu2")],
    );
    assert_eq!(want.len(), INSTANCES.len() + 1);
    let mint = at - range_s * 1000 + 1;
    let got = python_calls(
        side.grpc,
        &json!([series_call(&json!([[0, "job", "sc"]]), mint, at)]),
    );
    assert_same_series(
        "Series over the blocks cut while running and the head",
        &decoded(&got[0], mint, at),
        &want,
    );

    // The status page: Prometheus up, its external labels, the last block shipped.
    let (status, page) = side.get("/");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"prometheus-health\">up<"), "{page}");
    assert!(page.contains("cluster=\"eu2\""), "{page}");
    let shipped = blocks_in(&bucket);
    assert!(
        shipped
            .iter()
            .any(|b| page.contains(&format!("id=\"last-upload-block\">{b}<"))),
        "the last upload is one of {shipped:?}: {page}"
    );

    // Exemplars, metadata and targets through `gauntlet query` and `thanos query` over the
    // sidecar equal Prometheus's own answers, with the external label Thanos adds.
    let q = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", side.grpc)],
        "/-/ready",
    );
    let tq = thanos_query(&[format!("127.0.0.1:{}", side.grpc)], &[]);
    wait_until("three scrapes", Duration::from_secs(30), || {
        target.scrapes.load(std::sync::atomic::Ordering::SeqCst) >= 3
    });
    // The target stops, so the exemplars stop moving; it is down from the next scrape on.
    target.stop();
    let end = now_ms() + 60_000;
    let ex_path = crate::exemplars::exemplars_path(end);
    let prom_exemplars = || {
        let mut want = crate::exemplars::reduce(&get_json(prom.port, &ex_path));
        want = want
            .into_iter()
            .map(|(mut k, v)| {
                k.push(("cluster".into(), "eu2".into()));
                k.sort();
                (k, v)
            })
            .collect();
        serde_json::to_value(want.into_iter().collect::<Vec<_>>()).unwrap()
    };
    let querier_exemplars = |port: u16| {
        let got = crate::exemplars::reduce(&get_json(port, &ex_path));
        serde_json::to_value(got.into_iter().collect::<Vec<_>>()).unwrap()
    };
    assert!(
        prom_exemplars().as_array().unwrap().len() >= 3,
        "Prometheus holds exemplars: {}",
        prom_exemplars()
    );
    let prom_metadata = || get_json(prom.port, "/api/v1/metadata")["data"].clone();
    assert!(
        prom_metadata()["demo_requests"].is_array(),
        "{}",
        prom_metadata()
    );
    let prom_targets = || {
        reduce_targets(
            &get_json(prom.port, "/api/v1/targets"),
            &[("cluster", "eu2")],
        )
    };
    assert_eq!(prom_targets()["active"].as_array().unwrap().len(), 1);
    for (who, port) in [("gauntlet query", q.http_port), ("thanos query", tq.http)] {
        wait_same(&format!("exemplars through {who}"), prom_exemplars, || {
            querier_exemplars(port)
        });
        wait_same(&format!("metadata through {who}"), prom_metadata, || {
            get_json(port, "/api/v1/metadata")["data"].clone()
        });
        wait_same(&format!("targets through {who}"), prom_targets, || {
            reduce_targets(&get_json(port, "/api/v1/targets"), &[])
        });
    }
    // A selector on the external label is decided by the querier against the sidecar's label
    // set and not sent on (Prometheus's own series do not carry it), as Thanos's querier does.
    let ext_path = |cluster: &str| {
        api_path(
            "/api/v1/query_exemplars",
            &[
                (
                    "query",
                    &format!("{{__name__=~\"demo_.+\", cluster=\"{cluster}\"}}"),
                ),
                ("start", &format!("{}", (end - 3_600_000) as f64 / 1000.0)),
                ("end", &format!("{}", end as f64 / 1000.0)),
            ],
        )
    };
    for (who, port) in [("gauntlet query", q.http_port), ("thanos query", tq.http)] {
        let reduced = |path: &str| {
            let got = crate::exemplars::reduce(&get_json(port, path));
            serde_json::to_value(got.into_iter().collect::<Vec<_>>()).unwrap()
        };
        assert_eq!(
            reduced(&ext_path("eu2")),
            prom_exemplars(),
            "exemplars of cluster=\"eu2\" through {who}"
        );
        assert_eq!(
            reduced(&ext_path("other")),
            json!([]),
            "exemplars of another cluster through {who}"
        );
    }
    let one = get_json(q.http_port, "/api/v1/metadata?metric=demo_requests");
    assert_eq!(
        one["data"],
        json!({"demo_requests": prom_metadata()["demo_requests"]})
    );
    let limited = get_json(q.http_port, "/api/v1/metadata?limit=1");
    assert_eq!(limited["data"].as_object().unwrap().len(), 1, "{limited}");
    let dropped = get_json(q.http_port, "/api/v1/targets?state=dropped");
    assert_eq!(dropped["data"]["activeTargets"], json!([]), "{dropped}");
    assert_eq!(
        dropped["data"]["droppedTargets"].as_array().unwrap().len(),
        1,
        "{dropped}"
    );
    let (status, _) = q.get("/api/v1/targets?state=some");
    assert_eq!(status, 400);

    // Rules and alerts through both queriers over the sidecar equal what `thanos query` over
    // Thanos's own sidecar beside the same Prometheus answers: the external label on each
    // rule, none on the alerts, the failing rule's error, the alerts in their states.
    let theirs = thanos(
        "sidecar",
        &[
            format!("--prometheus.url=http://127.0.0.1:{}", prom.port),
            format!("--tsdb.path={}", data.display()),
        ],
    );
    let ttq = thanos_query(&[format!("127.0.0.1:{}", theirs.grpc)], &[]);
    let rules_paths = [
        "/api/v1/rules",
        "/api/v1/rules?type=alert",
        "/api/v1/rules?type=record",
        "/api/v1/rules?rule_name[]=firstAlways&rule_name[]=first:broken",
        // match[]={severity="page"}, then {cluster="eu2"} (the external label).
        "/api/v1/rules?match[]=%7Bseverity%3D%22page%22%7D",
        "/api/v1/rules?match[]=%7Bcluster%3D%22eu2%22%7D",
    ];
    let upstream_alerts = || alerts_shape(&get_json(ttq.http, "/api/v1/alerts"));
    wait_until(
        "Thanos's sidecar shows the alerts",
        Duration::from_secs(30),
        || upstream_alerts().as_array().unwrap().len() == 2,
    );
    let upstream = rules_shape(&get_json(ttq.http, "/api/v1/rules"));
    let listed = &upstream[0]["rules"];
    assert_eq!(listed.as_array().unwrap().len(), 5, "{upstream}");
    let kept = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no rule {name}: {upstream}"))
    };
    assert_eq!(kept("firstAlways")["state"], "firing", "{upstream}");
    assert_eq!(
        kept("firstAlways")["labels"]["cluster"],
        "eu2",
        "{upstream}"
    );
    assert_eq!(kept("firstPending")["state"], "pending", "{upstream}");
    assert_eq!(kept("firstNever")["state"], "inactive", "{upstream}");
    assert_eq!(kept("first:broken")["health"], "err", "{upstream}");
    assert!(kept("first:broken")["lastError"].is_string(), "{upstream}");
    assert_eq!(
        kept("firstAlways")["alerts"][0]["labels"],
        json!({"alertname": "firstAlways", "severity": "page"}),
        "{upstream}"
    );
    for (who, port) in [("gauntlet query", q.http_port), ("thanos query", tq.http)] {
        for path in rules_paths {
            wait_same(
                &format!("{path} through {who}"),
                || rules_shape(&get_json(ttq.http, path)),
                || rules_shape(&get_json(port, path)),
            );
        }
        wait_same(&format!("alerts through {who}"), upstream_alerts, || {
            alerts_shape(&get_json(port, "/api/v1/alerts"))
        });
    }
    drop(ttq);
    drop(theirs);

    // The reloader: a rule file changed under --reloader.rule-dir reaches Prometheus.
    assert_eq!(rule_groups(prom.port), vec!["first".to_string()]);
    std::fs::write(rules.join("a.yml"), rule_file("second")).unwrap();
    wait_until(
        "Prometheus reloads the rules",
        Duration::from_secs(20),
        || rule_groups(prom.port) == vec!["second".to_string()],
    );
    // And a change to the config template: substituted from the sidecar's environment into
    // the file Prometheus reads, which it then loads.
    let loaded = || {
        get_json(prom.port, "/api/v1/status/config")["data"]["yaml"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(!loaded().contains("added-eu2"), "{}", loaded());
    std::fs::write(
        &template,
        config_text(
            "- job_name: added-$(SIDECAR_TEST_CLUSTER)\n  static_configs:\n  - targets: ['127.0.0.1:1']\n",
        ),
    )
    .unwrap();
    wait_until(
        "Prometheus loads the substituted config",
        Duration::from_secs(20),
        || loaded().contains("job_name: added-eu2"),
    );
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        written.contains("cluster: eu2") && written.contains("job_name: added-eu2"),
        "{written}"
    );
    assert!(!written.contains("$("), "{written}");
    assert!(metric(&side, "thanos_sidecar_reloader_reloads_total") >= 3.0);
    assert_eq!(
        metric(&side, "thanos_sidecar_reloader_last_reload_successful"),
        1.0
    );
    let stopping = Instant::now();
    assert!(
        side.terminate().success(),
        "SIGTERM ends the sidecar and its reloader cleanly"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
}

/// `--reloader.method=signal`: a Prometheus without `--web.enable-lifecycle` (its
/// `/-/reload` refused) reloads a changed rule file on the SIGHUP the sidecar sends to the
/// process of that name, the sidecar following the reload through its runtime info. The
/// watch interval is an hour: the change is seen by inotify.
#[test]
fn the_signal_method_reloads_prometheus_by_sighup_on_a_change_inotify_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rules = tmp.path().join("rules");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("a.yml"), rule_file("first")).unwrap();
    // A name no other test's Prometheus has: only this one gets the signal.
    let binary = tmp.path().join("prom-sighup");
    std::fs::copy(prometheus3(), &binary).unwrap();
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  external_labels:\n    cluster: sig\nrule_files:\n- {}/*.yml\n",
            rules.display()
        ),
    )
    .unwrap();
    let mut prom = Prom {
        binary,
        config,
        data,
        port: free_port(),
        child: None,
    };
    prom.start();
    assert_eq!(rule_groups(prom.port), vec!["first".to_string()]);
    let reload = post(prom.port, "/-/reload", &[], &[]).unwrap();
    assert_ne!(
        reload.0, 200,
        "Prometheus takes HTTP reloads: the test shows nothing"
    );

    let side = sidecar(
        &prom,
        &[
            format!("--reloader.rule-dir={}", rules.display()),
            "--reloader.method=signal".into(),
            "--reloader.process-name=prom-sighup".into(),
            "--reloader.watch-interval=1h".into(),
            "--reloader.retry-interval=300ms".into(),
        ],
    );
    // The reload at start, then one for the change.
    wait_until("the first reload", Duration::from_secs(20), || {
        metric(&side, "thanos_sidecar_reloader_last_reload_successful") == 1.0
    });
    std::fs::write(rules.join("a.yml"), rule_file("second")).unwrap();
    wait_until(
        "Prometheus reloads the rules on SIGHUP",
        Duration::from_secs(20),
        || rule_groups(prom.port) == vec!["second".to_string()],
    );
    wait_until(
        "the sidecar sees the reload done",
        Duration::from_secs(20),
        || {
            metric(&side, "thanos_sidecar_reloader_reloads_total") >= 2.0
                && metric(&side, "thanos_sidecar_reloader_last_reload_successful") == 1.0
        },
    );
    assert_eq!(
        metric(&side, "thanos_sidecar_reloader_reloads_failed_total"),
        0.0
    );
    assert_eq!(metric(&side, "thanos_sidecar_reloader_watches"), 1.0);
    assert!(metric(&side, "thanos_sidecar_reloader_watch_events_total") >= 1.0);
}
