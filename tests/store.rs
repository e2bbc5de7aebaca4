//! `gauntlet store` against real peers: blocks made by promtool in a FILESYSTEM bucket, a
//! Python grpcio client built from our .proto files calling Info, Series, LabelNames and
//! LabelValues; the series and decoded samples must equal `promtool tsdb dump` of the blocks.
//! Bad input (malformed requests, bad regexes, corrupt blocks, a vanishing bucket) must give
//! clear errors and leave the server serving.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::storeapi::*;
use crate::common::*;
use gauntlet_engine::labels::Matcher;
use serde_json::{Value, json};

const START_MS: i64 = 1_735_689_600_000;
const EXT: [(&str, &str); 2] = [("cluster", "eu1"), ("replica", "a")];

struct Store {
    child: Child,
    grpc: u16,
    http: u16,
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Store {
    fn start(bucket: &Path, data: &Path, extra: &[&str]) -> Store {
        let cfg = filesystem_objstore(data.with_extension("yaml"), bucket);
        let [grpc, http] = free_ports();
        let child = gauntlet()
            .arg("store")
            .arg(format!("--objstore.config-file={}", cfg.display()))
            .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--data-dir={}", data.display()))
            .arg("--sync-block-duration=1s")
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Store { child, grpc, http };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(s.http, "/-/ready") {
                break;
            }
            assert!(Instant::now() < deadline, "store not ready in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn metrics(&self) -> String {
        let (code, body) = http_get(self.http, "/metrics").unwrap();
        assert_eq!(code, 200);
        String::from_utf8(body).unwrap()
    }

    fn calls(&self, calls: &Value) -> Vec<Value> {
        python_calls(self.grpc, calls)
    }

    fn call(&self, c: Value) -> Value {
        self.calls(&json!([c])).remove(0)
    }
}

/// Promtool blocks (2 instances × 200 series, 3 h at 30 s: two blocks) with a Thanos section
/// naming external labels, in `bucket/`.
fn make_bucket(dir: &Path) -> PathBuf {
    let om = dir.join("input.om");
    run_ok(
        Command::new(require("python3"))
            .arg(repo_root().join("tests/tools/gen_openmetrics.py"))
            .arg(&om)
            .args([&(START_MS / 1000).to_string(), "10800", "30", "2"]),
    );
    let bucket = dir.join("bucket");
    run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&bucket),
    );
    for e in std::fs::read_dir(&bucket).unwrap() {
        let meta = e.unwrap().path().join("meta.json");
        if !meta.is_file() {
            continue;
        }
        let mut m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        m["thanos"] = json!({
            "version": 1,
            "labels": {EXT[0].0: EXT[0].1, EXT[1].0: EXT[1].1},
            "downsample": {"resolution": 0},
            "source": "test",
        });
        std::fs::write(&meta, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
    bucket
}

#[test]
fn store_serves_promtool_blocks_like_promtool_dumps_them_io_uring() {
    serves_promtool_blocks_like_promtool_dumps_them("io-uring");
}

#[test]
fn store_serves_promtool_blocks_like_promtool_dumps_them_pread() {
    serves_promtool_blocks_like_promtool_dumps_them("pread");
}

/// The whole check on one I/O backend of the engine cores.
fn serves_promtool_blocks_like_promtool_dumps_them(io: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = make_bucket(tmp.path());
    let dump = parse_dump(&promtool_dump(&bucket, &[]), &EXT);
    assert_eq!(dump.len(), 400);
    let store = Store::start(
        &bucket,
        &tmp.path().join("data"),
        &[&format!("--io-backend={io}")],
    );
    let m = store.metrics();
    assert!(
        m.contains(&format!("gauntlet_engine_io_backend{{backend=\"{io}\"}} 1")),
        "{m}"
    );

    let end = START_MS + 3 * 3600 * 1000;
    // Cuts through chunks: 30 s samples, 120 per chunk = 1 h chunks; odd offsets.
    let (w0, w1) = (START_MS + 1_234_567, START_MS + 2 * 3600 * 1000 + 777_777);
    let cases: Vec<(Value, i64, i64)> = vec![
        (
            json!([[0, "__name__", "http_requests_total"], [0, "code", "500"]]),
            START_MS,
            end,
        ),
        (
            json!([
                [2, "__name__", "http_requests_total|node_cpu_seconds_total"],
                [1, "instance", "host-00"]
            ]),
            w0,
            w1,
        ),
        (
            json!([
                [0, "__name__", "http_requests_total"],
                [3, "method", "GET|POST"],
                [0, "cluster", "eu1"]
            ]),
            w0,
            end,
        ),
        (
            json!([
                [0, "job", "api"],
                [2, "handler", "/api/[ab]"],
                [1, "code", "200"]
            ]),
            START_MS - 5000,
            w1,
        ),
        (
            json!([
                [0, "__name__", "http_requests_total"],
                [0, "nonexistent", ""],
                [0, "method", "PUT"]
            ]),
            w0,
            w0 + 60_000,
        ),
        (
            json!([
                [2, "instance", "host-0.*"],
                [3, "__name__", "http.*|node.*"]
            ]),
            START_MS,
            end,
        ),
        (
            json!([
                [0, "cluster", "eu2"],
                [0, "__name__", "http_requests_total"]
            ]),
            START_MS,
            end,
        ),
        (
            json!([
                [0, "replica", "a"],
                [0, "method", "DELETE"],
                [0, "code", "404"]
            ]),
            end - 1,
            end + 100_000,
        ),
    ];
    let calls: Vec<Value> = cases
        .iter()
        .map(|(m, a, b)| series_call(m, *a, *b))
        .collect();
    let results = store.calls(&Value::Array(calls));
    let mut total = 0;
    for ((ms, mint, maxt), res) in cases.iter().zip(&results) {
        let matchers: Vec<Matcher> = ms.as_array().unwrap().iter().map(matcher).collect();
        let want = expected(&dump, &matchers, *mint, *maxt);
        let got = decoded(res, *mint, *maxt);
        assert_eq!(got.len(), want.len(), "{ms}: series count");
        for ((gl, gs), (wl, ws)) in got.iter().zip(&want) {
            assert_eq!(gl, wl, "{ms}");
            assert_eq!(gs.len(), ws.len(), "{ms} {gl:?}: sample count");
            for (g, w) in gs.iter().zip(ws) {
                assert!(
                    g.0 == w.0 && (g.1 == w.1 || (g.1.is_nan() && w.1.is_nan())),
                    "{ms} {gl:?}: {g:?} != {w:?}"
                );
            }
        }
        assert_eq!(res["hints"], 1);
        assert_eq!(
            res["frames"].as_u64(),
            Some(res["series"].as_array().unwrap().len() as u64),
            "{ms}: one series per message"
        );
        total += got.len();
    }
    assert!(total > 300, "cases select a fair share of series: {total}");

    // `response_batch_size`, as Thanos's querier sends it: the same series, in the same order,
    // packed that many to a message.
    let batched: Vec<Value> = cases
        .iter()
        .map(|(m, a, b)| {
            let mut c = series_call(m, *a, *b);
            c["response_batch_size"] = json!(7);
            c
        })
        .collect();
    for ((ms, _, _), (one, packed)) in cases
        .iter()
        .zip(results.iter().zip(store.calls(&Value::Array(batched))))
    {
        assert_eq!(packed["series"], one["series"], "{ms}: batched");
        assert_eq!(packed["hints"], 1);
        let n = one["series"].as_array().unwrap().len() as u64;
        let frames = packed["frames"].as_u64().unwrap();
        assert!(
            frames >= n.div_ceil(7) && (n <= 7 || frames < n),
            "{ms}: {frames} messages for {n} series"
        );
        assert!(packed["largest"].as_u64().unwrap() <= 7, "{ms}");
    }

    // The buffers kept for reuse after those answers are named on /metrics within budget.
    let m = store.metrics();
    for pool in ["read", "wire"] {
        let gauge = |name: &str| -> f64 {
            let name = format!("gauntlet_store_{pool}_buffer_pool_{name} ");
            m.lines()
                .find_map(|l| l.strip_prefix(name.as_str()))
                .unwrap_or_else(|| panic!("{name}missing: {m}"))
                .parse()
                .unwrap()
        };
        let (idle, max) = (gauge("idle_bytes"), gauge("max_idle_bytes"));
        assert!(max > 0.0 && idle <= max, "{pool}: {idle} of {max}");
    }

    // skip_chunks, without_replica_labels, limit, shards.
    let ms = json!([
        [0, "__name__", "http_requests_total"],
        [0, "instance", "host-01"]
    ]);
    let r = store.calls(&json!([
        {"method": "Series", "min_time": START_MS, "max_time": end, "matchers": ms, "skip_chunks": true},
        {"method": "Series", "min_time": START_MS, "max_time": end, "matchers": ms, "without_replica_labels": ["replica"], "skip_chunks": true},
        {"method": "Series", "min_time": START_MS, "max_time": end, "matchers": ms, "limit": 7, "skip_chunks": true},
        {"method": "Series", "min_time": START_MS, "max_time": end, "matchers": ms, "skip_chunks": true, "shard": [0, 3, true, ["method", "code"]]},
        {"method": "Series", "min_time": START_MS, "max_time": end, "matchers": ms, "skip_chunks": true, "shard": [1, 3, true, ["method", "code"]]},
        {"method": "Series", "min_time": START_MS, "max_time": end, "matchers": ms, "skip_chunks": true, "shard": [2, 3, true, ["method", "code"]]},
    ]));
    let n = r[0]["series"].as_array().unwrap().len();
    assert_eq!(n, 100);
    assert!(
        r[0]["series"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["chunks"].as_array().unwrap().is_empty())
    );
    assert!(
        r[1]["series"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["labels"].get("replica").is_none() && s["labels"]["cluster"] == "eu1")
    );
    assert_eq!(r[2]["series"].as_array().unwrap().len(), 7);
    let shards: Vec<usize> = (3..6)
        .map(|i| r[i]["series"].as_array().unwrap().len())
        .collect();
    assert_eq!(
        shards.iter().sum::<usize>(),
        n,
        "shards partition the series: {shards:?}"
    );
    assert!(shards.iter().all(|&s| s > 0 && s < n), "{shards:?}");

    // Info, legacy Info, label names and values.
    let r = store.calls(&json!([
        {"method": "Info"},
        {"method": "StoreInfo"},
        {"method": "LabelNames", "start": START_MS, "end": end},
        {"method": "LabelValues", "label": "instance", "start": START_MS, "end": end},
        {"method": "LabelValues", "label": "cluster", "start": START_MS, "end": end},
        {"method": "LabelValues", "label": "code", "start": START_MS, "end": end, "matchers": [[0, "__name__", "http_requests_total"], [0, "method", "GET"]]},
        {"method": "LabelNames", "start": START_MS, "end": end, "matchers": [[0, "__name__", "http_requests_total"]]},
        {"method": "LabelValues", "label": "instance", "start": START_MS, "end": end, "matchers": [[0, "cluster", "other"]]},
    ]));
    let info = &r[0];
    assert_eq!(info["component_type"], "store");
    assert_eq!(info["has_store"], true);
    assert_eq!(info["supports_sharding"], true);
    assert_eq!(info["supports_without_replica_labels"], true);
    assert_eq!(
        info["label_sets"],
        json!([{"cluster": "eu1", "replica": "a"}])
    );
    assert_eq!(
        info["min_time"].as_i64().unwrap(),
        dump.values().flatten().map(|s| s.0).min().unwrap()
    );
    assert!(
        info["max_time"].as_i64().unwrap() >= dump.values().flatten().map(|s| s.0).max().unwrap()
    );
    assert_eq!(r[1]["store_type"], 4);
    assert_eq!(r[1]["label_sets"], info["label_sets"]);
    let mut names: Vec<String> = dump.keys().flat_map(|l| l.keys().cloned()).collect();
    names.sort();
    names.dedup();
    assert_eq!(r[2]["names"], json!(names));
    assert_eq!(r[3]["values"], json!(["host-00", "host-01"]));
    assert_eq!(r[4]["values"], json!(["eu1"]));
    assert_eq!(r[5]["values"], json!(["200", "201", "404", "500", "503"]));
    assert_eq!(
        r[6]["names"],
        json!([
            "__name__", "cluster", "code", "handler", "instance", "job", "method", "replica"
        ])
    );
    assert_eq!(r[7]["values"], json!([]));

    let m = store.metrics();
    assert!(m.contains("thanos_bucket_store_blocks_loaded 2"), "{m}");
    assert!(
        m.contains("thanos_bucket_store_series_requests_total"),
        "{m}"
    );
}

#[test]
fn bad_requests_and_bad_blocks_give_clear_errors_and_the_store_keeps_serving_io_uring() {
    bad_requests_and_bad_blocks_give_clear_errors("io-uring");
}

#[test]
fn bad_requests_and_bad_blocks_give_clear_errors_and_the_store_keeps_serving_pread() {
    bad_requests_and_bad_blocks_give_clear_errors("pread");
}

/// Bad input on one I/O backend: clear errors, and the store keeps serving.
fn bad_requests_and_bad_blocks_give_clear_errors(io: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = make_bucket(tmp.path());
    let blocks: Vec<PathBuf> = std::fs::read_dir(&bucket)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    // A partial upload (no meta.json) and a block whose index is truncated.
    let partial = bucket.join("01JGZZZZZZZZZZZZZZZZZZZZZZ");
    std::fs::create_dir_all(partial.join("chunks")).unwrap();
    std::fs::write(partial.join("index"), b"x").unwrap();
    let corrupt_id = "01JH0000000000000000000000";
    let corrupt = bucket.join(corrupt_id);
    copy_dir(&blocks[0], &corrupt);
    let mut meta: Value =
        serde_json::from_slice(&std::fs::read(corrupt.join("meta.json")).unwrap()).unwrap();
    meta["ulid"] = json!(corrupt_id);
    meta["thanos"]["labels"]["cluster"] = json!("broken");
    std::fs::write(corrupt.join("meta.json"), meta.to_string()).unwrap();
    let idx = std::fs::read(corrupt.join("index")).unwrap();
    std::fs::write(corrupt.join("index"), &idx[..idx.len() / 2]).unwrap();

    let mut store = Store::start(
        &bucket,
        &tmp.path().join("data"),
        &[
            "--store.limits.request-series=50",
            &format!("--io-backend={io}"),
        ],
    );
    let m = store.metrics();
    assert!(m.contains("thanos_bucket_store_blocks_loaded 2"), "{m}");
    assert!(
        m.contains("thanos_bucket_store_block_load_failures_total 1"),
        "{m}"
    );

    let end = START_MS + 3 * 3600 * 1000;
    let r = store.calls(&json!([
        series_call(&json!([[2, "__name__", "(unclosed"]]), START_MS, end),
        series_call(&json!([[0, "__name__", "up"]]), end, START_MS),
        series_call(&json!([]), START_MS, end),
        series_call(&json!([[7, "__name__", "up"]]), START_MS, end),
        series_call(&json!([[0, "__name__", "http_requests_total"]]), START_MS, end),
        {"method": "LabelValues", "label": "", "start": START_MS, "end": end},
        {"method": "LabelNames", "start": end, "end": START_MS},
        // A 5 MiB request is refused before it is held.
        series_call(&json!([[0, "__name__", "x".repeat(5 << 20)]]), START_MS, end),
    ]));
    for (i, want) in [
        (0, "INVALID_ARGUMENT"),
        (1, "INVALID_ARGUMENT"),
        (2, "INVALID_ARGUMENT"),
        (3, "INVALID_ARGUMENT"),
        (4, "RESOURCE_EXHAUSTED"),
        (5, "INVALID_ARGUMENT"),
        (6, "INVALID_ARGUMENT"),
        (7, "INVALID_ARGUMENT"),
    ] {
        assert_eq!(r[i]["ok"], false, "call {i}: {}", r[i]);
        assert_eq!(r[i]["code"], want, "call {i}: {}", r[i]);
    }
    assert!(
        r[0]["details"].as_str().unwrap().contains("(unclosed"),
        "{}",
        r[0]
    );
    assert!(
        r[1]["details"].as_str().unwrap().contains("after"),
        "{}",
        r[1]
    );
    assert!(
        r[4]["details"].as_str().unwrap().contains("series limit"),
        "{}",
        r[4]
    );
    assert!(
        r[7]["details"]
            .as_str()
            .unwrap()
            .contains("at most 4194304 bytes"),
        "{}",
        r[7]
    );

    // Chunks vanish from the bucket under a loaded block: WARN gives warnings, ABORT an error.
    let ms = json!([
        [0, "__name__", "http_requests_total"],
        [0, "instance", "host-00"],
        [0, "code", "500"]
    ]);
    for b in &blocks {
        std::fs::remove_dir_all(b.join("chunks")).unwrap();
    }
    let r = store.calls(&json!([
        {"method": "Series", "min_time": START_MS, "max_time": end, "matchers": ms},
        {"method": "Series", "min_time": START_MS, "max_time": end, "matchers": ms, "partial_response_strategy": 1},
    ]));
    assert_eq!(r[0]["ok"], true, "{}", r[0]);
    assert_eq!(r[0]["warnings"].as_array().unwrap().len(), 2, "{}", r[0]);
    assert!(
        r[0]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("chunks/000001"),
        "{}",
        r[0]
    );
    assert_eq!(r[1]["ok"], false);
    assert_eq!(r[1]["code"], "INTERNAL", "{}", r[1]);

    // The whole bucket directory disappears: syncs fail, the server stays up and answers.
    std::fs::remove_dir_all(&bucket).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let info = store.call(json!({"method": "Info"}));
    assert_eq!(info["ok"], true, "{info}");
    let r = store.call(series_call(&ms, START_MS, end));
    assert_eq!(r["ok"], true, "{r}");
    assert!(!r["warnings"].as_array().unwrap().is_empty(), "{r}");
    assert!(store.child.try_wait().unwrap().is_none(), "store exited");
}

/// Prometheus 3 (Debian's current build via `tests/tools/prometheus.sh current`), cached per
/// target directory.
fn prometheus3() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prometheus3");
    let out = run_ok(
        Command::new("bash")
            .arg(repo_root().join("tests/tools/prometheus.sh"))
            .arg("current")
            .arg(&cache),
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The `run series` clients against both real servers: over the same generated blocks (three
/// hours, so two blocks and series split between them), `gauntlet store` over the StoreAPI and
/// Prometheus 3 over remote read with STREAMED_XOR_CHUNKS (frames of uvarint length, BE32
/// CRC-32C, message, each checked) return the same series with byte-identical chunks, for
/// every selector of the scenario.
#[test]
fn store_api_streams_what_prometheus_remote_read_streams() {
    use gauntlet_bench::runner::series::{
        DEFAULT_SELECTORS, GotSeries, RESPONSE_BATCH, Selection, remote_read, store_series,
    };
    let tmp = tempfile::tempdir().unwrap();
    let blocks = tmp.path().join("blocks");
    let g = gauntlet_bench::datagen::GenConfig {
        targets: 4,
        pods_per_target: 6,
        duration_ms: 3 * 3_600_000,
        churn_every_ms: 3_600_000,
        ..Default::default()
    };
    let metas = gauntlet_bench::datagen::write_blocks_dir(&g, &blocks).unwrap();
    assert_eq!(metas.len(), 2);
    let store = Store::start(&blocks, &tmp.path().join("data"), &[]);
    let prom = Prometheus::start(&prometheus3(), &blocks);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut selectors: Vec<&str> = DEFAULT_SELECTORS.to_vec();
    selectors.push(r#"{__name__=~".+", instance!~"host-000[02].*"}"#);
    for text in selectors {
        let sel = Selection::parse(text, g.start_ms, g.start_ms + g.duration_ms).unwrap();
        let (mut ours, mut theirs): (Vec<GotSeries>, Vec<GotSeries>) = (Vec::new(), Vec::new());
        let a = rt
            .block_on(store_series(
                &format!("http://127.0.0.1:{}", store.grpc),
                &sel,
                RESPONSE_BATCH,
                Some(&mut ours),
            ))
            .unwrap();
        // One series per message, as queriers before batching ask: the same answer.
        let mut single = Vec::new();
        let one = rt
            .block_on(store_series(
                &format!("http://127.0.0.1:{}", store.grpc),
                &sel,
                0,
                Some(&mut single),
            ))
            .unwrap();
        assert!(single == ours, "{text}: batched and single answers differ");
        // Batches save a frame header per series (less a header and tag per batch).
        assert!(
            one.wire_bytes >= a.wire_bytes + 4 * a.series,
            "{text}: {} bytes batched, {} one per message",
            a.wire_bytes,
            one.wire_bytes
        );
        let b = rt
            .block_on(remote_read(
                &format!("http://127.0.0.1:{}", prom.port),
                &sel,
                Some(&mut theirs),
            ))
            .unwrap();
        assert!(!ours.is_empty(), "{text}: nothing selected");
        assert_eq!(ours.len(), theirs.len(), "{text}: series count");
        for (o, t) in ours.iter().zip(&theirs) {
            assert_eq!(o, t, "{text}");
        }
        assert_eq!(
            (a.series, a.chunks, a.chunk_bytes),
            (b.series, b.chunks, b.chunk_bytes),
            "{text}"
        );
        assert!(a.warnings.is_empty() && b.warnings.is_empty());
        eprintln!(
            "{text}: {} series, {} chunks, {} chunk bytes",
            a.series, a.chunks, a.chunk_bytes
        );
    }
}
