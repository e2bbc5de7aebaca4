//! `gauntlet store` over a real S3-compatible server on loopback (`s3s-fs`, an S3 server over a
//! directory, installed by `tests/run.sh`): blocks written by promtool are uploaded through
//! the S3 API, the store is configured with a Thanos `type: S3` objstore file, and a Python
//! grpcio client checks Series, LabelNames and LabelValues against `promtool tsdb dump`. A
//! bucket that disappears under a running store gives errors and warnings, not a crash; an S3
//! server that stops while a store reads, a receiver ships and a compactor works, and comes
//! back, leaves every block whole and every sample served once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::storeapi::*;
use crate::common::*;
use bytes::Bytes;
use gauntlet_engine::bucket::{Bucket, BucketConfig};
use serde_json::{Value, json};

const ACCESS_KEY: &str = "gauntlet-test";
const SECRET_KEY: &str = "gauntlet-test-secret";
const BUCKET: &str = "thanos";
const START_MS: i64 = 1_735_689_600_000;
const EXT: [(&str, &str); 1] = [("cluster", "s3")];

/// An `s3s-fs` server over a scratch directory, killed on drop.
struct S3Server {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl S3Server {
    fn start(root: &Path) -> S3Server {
        S3Server::start_on(root, free_port())
    }

    /// A server on `port` over `root` (a restart reuses both).
    fn start_on(root: &Path, port: u16) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let child = Command::new(require("s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            child,
            port,
            root: root.to_path_buf(),
        }
    }

    /// The objstore configuration as Thanos spells it.
    fn objstore_yaml(&self) -> String {
        format!(
            "type: S3\nconfig:\n  bucket: {BUCKET}\n  endpoint: 127.0.0.1:{}\n  access_key: {ACCESS_KEY}\n  secret_key: {SECRET_KEY}\n  insecure: true\n",
            self.port
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Uploads every file of the blocks in `dir` through the S3 API, `meta.json` of each block
/// last (as Thanos does), with external labels added to the meta.
fn upload(s3: &S3Server, dir: &Path) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A program opening a network bucket installs rustls's provider, as `gauntlet` does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bucket = Bucket::open(&BucketConfig::parse(&s3.objstore_yaml()).unwrap()).unwrap();
    let mut blocks = 0;
    for b in std::fs::read_dir(dir).unwrap() {
        let b = b.unwrap().path();
        if !b.join("meta.json").is_file() {
            continue;
        }
        let id = b.file_name().unwrap().to_str().unwrap().to_string();
        let mut files = vec![b.join("index")];
        for c in std::fs::read_dir(b.join("chunks")).unwrap() {
            files.push(c.unwrap().path());
        }
        for f in files {
            let rel = f.strip_prefix(&b).unwrap().to_str().unwrap().to_string();
            let data = Bytes::from(std::fs::read(&f).unwrap());
            rt.block_on(bucket.put(&format!("{id}/{rel}"), data))
                .unwrap();
        }
        let mut meta: Value =
            serde_json::from_slice(&std::fs::read(b.join("meta.json")).unwrap()).unwrap();
        meta["thanos"] = json!({"version": 1, "labels": {EXT[0].0: EXT[0].1},
            "downsample": {"resolution": 0}, "source": "test"});
        let meta = Bytes::from(serde_json::to_vec_pretty(&meta).unwrap());
        rt.block_on(bucket.put(&format!("{id}/meta.json"), meta))
            .unwrap();
        blocks += 1;
    }
    blocks
}

/// Promtool blocks (2 instances × 200 series, 3 h at 30 s: two blocks) in `dir/blocks`.
fn promtool_blocks(dir: &Path) -> PathBuf {
    promtool_blocks_over(dir, 3)
}

/// Promtool blocks of 2 instances × 200 series over `hours` at 30 s, one per 2 h, in
/// `dir/blocks`.
fn promtool_blocks_over(dir: &Path, hours: u32) -> PathBuf {
    let om = dir.join("input.om");
    run_ok(
        Command::new(require("python3"))
            .arg(repo_root().join("tests/tools/gen_openmetrics.py"))
            .arg(&om)
            .args([
                &(START_MS / 1000).to_string(),
                &(hours * 3600).to_string(),
                "30",
                "2",
            ]),
    );
    let out = dir.join("blocks");
    run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&out),
    );
    out
}

fn start_store(s3: &S3Server, tmp: &Path) -> GauntletServer {
    let cfg = tmp.join("objstore.yml");
    std::fs::write(&cfg, s3.objstore_yaml()).unwrap();
    GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", cfg.display()),
            &format!("--data-dir={}", tmp.join("data").display()),
            "--sync-block-duration=1s",
        ],
        "/-/ready",
    )
}

#[test]
fn store_over_s3_serves_promtool_blocks_like_promtool_dumps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = promtool_blocks(tmp.path());
    let dump = parse_dump(&promtool_dump(&blocks, &[]), &EXT);
    assert_eq!(dump.len(), 400);
    let s3 = S3Server::start(&tmp.path().join("s3"));
    assert_eq!(upload(&s3, &blocks), 2);
    let store = start_store(&s3, tmp.path());
    let (_, body) = store.get("/metrics");
    let m = String::from_utf8_lossy(&body);
    assert!(m.contains("thanos_bucket_store_blocks_loaded 2"), "{m}");

    let end = START_MS + 3 * 3600 * 1000;
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
                [0, "job", "api"],
                [2, "handler", "/api/[ab]"],
                [3, "code", "2.*"]
            ]),
            START_MS - 5000,
            w1,
        ),
        (
            json!([[0, "cluster", "s3"], [0, "__name__", "temperature_celsius"]]),
            w0,
            end,
        ),
        (
            json!([
                [0, "cluster", "other"],
                [0, "__name__", "temperature_celsius"]
            ]),
            START_MS,
            end,
        ),
    ];
    let calls: Vec<Value> = cases
        .iter()
        .map(|(m, a, b)| series_call(m, *a, *b))
        .collect();
    let results = python_calls(store.grpc_port, &Value::Array(calls));
    let mut total = 0;
    for ((ms, mint, maxt), res) in cases.iter().zip(&results) {
        let matchers: Vec<_> = ms.as_array().unwrap().iter().map(matcher).collect();
        let want = expected(&dump, &matchers, *mint, *maxt);
        let got = decoded(res, *mint, *maxt);
        assert_same_series(&ms.to_string(), &got, &want);
        assert!(res["warnings"].as_array().unwrap().is_empty(), "{res}");
        total += got.len();
    }
    assert!(total > 150, "cases select a fair share of series: {total}");

    let r = python_calls(
        store.grpc_port,
        &json!([
            {"method": "LabelNames", "start": START_MS, "end": end},
            {"method": "LabelValues", "label": "instance", "start": START_MS, "end": end},
            {"method": "LabelValues", "label": "code", "start": START_MS, "end": end,
             "matchers": [[0, "__name__", "http_requests_total"], [0, "method", "GET"]]},
            {"method": "LabelValues", "label": "cluster", "start": START_MS, "end": end},
        ]),
    );
    let mut names: Vec<String> = dump.keys().flat_map(|l| l.keys().cloned()).collect();
    names.sort();
    names.dedup();
    assert_eq!(r[0]["names"], json!(names));
    assert_eq!(r[1]["values"], json!(["host-00", "host-01"]));
    assert_eq!(r[2]["values"], json!(["200", "201", "404", "500", "503"]));
    assert_eq!(r[3]["values"], json!(["s3"]));

    // Ranged reads went to the S3 server.
    let (_, body) = store.get("/metrics");
    let m = String::from_utf8_lossy(&body);
    let ops: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("thanos_objstore_bucket_operations_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ops > 10.0, "{m}");
}

#[test]
fn a_bucket_that_disappears_gives_errors_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = promtool_blocks(tmp.path());
    let s3 = S3Server::start(&tmp.path().join("s3"));
    upload(&s3, &blocks);
    let store = start_store(&s3, tmp.path());
    let end = START_MS + 3 * 3600 * 1000;
    let ms = json!([
        [0, "__name__", "http_requests_total"],
        [0, "instance", "host-00"],
        [0, "code", "500"]
    ]);
    let ok = python_calls(store.grpc_port, &json!([series_call(&ms, START_MS, end)]));
    assert_eq!(ok[0]["ok"], true, "{}", ok[0]);
    assert!(!ok[0]["series"].as_array().unwrap().is_empty());

    // The bucket vanishes on the server side.
    std::fs::remove_dir_all(s3.root.join(BUCKET)).unwrap();
    let other = json!([
        [0, "__name__", "http_requests_total"],
        [0, "instance", "host-01"],
        [0, "code", "500"]
    ]);
    let r = python_calls(
        store.grpc_port,
        &json!([
            series_call(&other, START_MS, end),
            {"method": "Series", "min_time": START_MS, "max_time": end, "matchers": other,
             "partial_response_strategy": 1},
            {"method": "Info"},
            series_call(&ms, START_MS, end),
        ]),
    );
    // A selection not read before needs the bucket: its reads fail, as warnings (WARN) or an
    // error (ABORT).
    assert_eq!(r[0]["ok"], true, "{}", r[0]);
    assert!(!r[0]["warnings"].as_array().unwrap().is_empty(), "{}", r[0]);
    assert_eq!(r[1]["ok"], false, "{}", r[1]);
    assert_eq!(r[2]["ok"], true, "{}", r[2]);
    // The one read before is still answered whole from the index and chunk caches.
    assert_eq!(r[3]["ok"], true, "{}", r[3]);
    assert_eq!(r[3]["series"], ok[0]["series"]);
    assert!(r[3]["warnings"].as_array().unwrap().is_empty(), "{}", r[3]);
    // Syncs fail and are counted; the loaded blocks are kept and the process lives.
    std::thread::sleep(Duration::from_millis(2500));
    let (code, body) = store.get("/metrics");
    assert_eq!(code, 200);
    let m = String::from_utf8_lossy(&body);
    let failures: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("thanos_blocks_meta_sync_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 1.0, "{m}");
    assert!(m.contains("thanos_bucket_store_blocks_loaded 2"), "{m}");
    let again = python_calls(
        store.grpc_port,
        &json!([{"method": "LabelNames", "start": START_MS, "end": end}]),
    );
    assert_eq!(again[0]["ok"], true, "{}", again[0]);
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The blocks of the bucket (`root/BUCKET`) with a meta.json, after checking that every file
/// each meta.json lists is there with its size: nothing half written is visible as a block.
fn whole_blocks(s3_root: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(s3_root.join(BUCKET)).unwrap() {
        let dir = e.unwrap().path();
        let Ok(meta) = std::fs::read(dir.join("meta.json")) else {
            continue;
        };
        let meta: Value = serde_json::from_slice(&meta).unwrap();
        for f in meta["thanos"]["files"].as_array().into_iter().flatten() {
            let rel = f["rel_path"].as_str().unwrap();
            if rel == "meta.json" {
                continue;
            }
            let len = std::fs::metadata(dir.join(rel))
                .unwrap_or_else(|e| panic!("{} lists {rel}, which is missing: {e}", dir.display()))
                .len();
            if let Some(want) = f["size_bytes"].as_u64() {
                assert_eq!(len, want, "{}/{rel}", dir.display());
            }
        }
        out.push(meta);
    }
    out
}

#[test]
fn s3_going_away_mid_work_loses_nothing_and_serves_nothing_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    // Twelve hours: six 2 h blocks, the first four of which the compactor merges into one (the
    // newest is left for later, and the one before it closes the first 8 h window).
    let blocks = promtool_blocks_over(tmp.path(), 12);
    let dump = parse_dump(&promtool_dump(&blocks, &[]), &EXT);
    let s3_root = tmp.path().join("s3");
    let s3 = S3Server::start(&s3_root);
    let port = s3.port;
    assert_eq!(upload(&s3, &blocks), 6);
    let cfg = tmp.path().join("objstore.yml");
    std::fs::write(&cfg, s3.objstore_yaml()).unwrap();
    let objstore = format!("--objstore.config-file={}", cfg.display());
    let store = start_store(&s3, tmp.path());
    let end = START_MS + 12 * 3600 * 1000;
    let read_first = json!([
        [0, "__name__", "http_requests_total"],
        [0, "instance", "host-00"]
    ]);
    let read_later = json!([
        [0, "__name__", "http_requests_total"],
        [0, "instance", "host-01"]
    ]);
    let first = python_calls(
        store.grpc_port,
        &json!([series_call(&read_first, START_MS, end)]),
    );
    assert_eq!(first[0]["ok"], true, "{}", first[0]);

    // A receiver shipping to the bucket and a compactor working on it.
    let recv = crate::common::receive::Receiver::start(
        &tmp.path().join("receive"),
        &[
            &objstore,
            "--tsdb.min-block-duration=2m",
            "--tsdb.max-block-duration=2m",
            "--receive.cut-check-interval=100ms",
        ],
    );
    let compact_http = free_port();
    let mut compactor = KillOnDrop(
        gauntlet()
            .args([
                "compact",
                &objstore,
                "--wait",
                "--wait-interval=1s",
                "--consistency-delay=0s",
            ])
            .arg(format!(
                "--data-dir={}",
                tmp.path().join("compact").display()
            ))
            .arg(format!("--http-address=127.0.0.1:{compact_http}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The bucket goes away while the compactor's first pass runs.
    std::thread::sleep(Duration::from_millis(300));
    drop(s3);
    let down = Instant::now();

    // Seven minutes of samples go to the receiver: two blocks are cut, their uploads fail.
    let minute = 60_000;
    let start = (crate::common::receive::now_ms() - 20 * minute) / (2 * minute) * (2 * minute);
    for k in 0..42 {
        let t = start + k * 10_000;
        let ts = (0..20)
            .map(|i| {
                crate::common::receive::series(
                    &[("__name__", "cut"), ("i", &i.to_string())],
                    &[(t, k as f64)],
                )
            })
            .collect();
        let (code, _, msg) = crate::common::receive::post(
            recv.rw,
            "/api/v1/receive",
            &[crate::common::receive::V1],
            &crate::common::receive::write_body(ts),
        )
        .unwrap();
        assert_eq!(code, 200, "writes do not need the bucket: {msg}");
    }
    // A store read the caches cannot answer waits on the bucket, in a thread of its own.
    let store_port = store.grpc_port;
    let later = read_later.clone();
    let reader = std::thread::spawn(move || {
        let started = Instant::now();
        let r = python_calls(store_port, &json!([series_call(&later, START_MS, end)]));
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_secs(4));
    // Every process is alive and answering while the bucket is gone.
    assert!(
        compactor.0.try_wait().unwrap().is_none(),
        "the compactor exited"
    );
    for port in [store.http_port, recv.http, compact_http] {
        let (code, _) = http_get(port, "/-/healthy").unwrap();
        assert_eq!(code, 200, "port {port}");
    }
    // The same samples: the chunks may be the compacted block's, when the compactor's first
    // pass was quick enough to upload it and the store to sync it before the bucket went.
    let samples = |r: &Value| {
        let mut d = decoded(r, START_MS, end);
        for s in d.values_mut() {
            s.sort_by_key(|p| p.0);
            s.dedup_by_key(|p| p.0);
        }
        d
    };
    assert_eq!(
        samples(
            &python_calls(
                store.grpc_port,
                &json!([series_call(&read_first, START_MS, end)])
            )[0]
        ),
        samples(&first[0]),
        "what was read before is answered from the caches"
    );

    // The bucket comes back where it was.
    let s3 = S3Server::start_on(&s3_root, port);
    assert!(down.elapsed() < Duration::from_secs(30));
    let (r, took) = reader.join().unwrap();
    assert!(took < Duration::from_secs(120), "the read took {took:?}");
    assert_eq!(r[0]["ok"], true, "{}", r[0]);

    // The receiver ships its blocks and the compactor finishes: all within a minute and a half.
    let deadline = Instant::now() + Duration::from_secs(90);
    let metas = loop {
        let metas = whole_blocks(&s3.root);
        let shipped = metas
            .iter()
            .filter(|m| m["thanos"]["source"] == "receive")
            .count();
        let compacted = metas
            .iter()
            .any(|m| m["compaction"]["level"] == 2 && m["thanos"]["labels"]["cluster"] == "s3");
        if shipped >= 2 && compacted {
            break metas;
        }
        assert!(
            Instant::now() < deadline,
            "after the bucket came back: {shipped} receive blocks shipped, compacted: {compacted}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let level2 = metas
        .iter()
        .find(|m| m["compaction"]["level"] == 2)
        .unwrap();
    assert_eq!(
        level2["compaction"]["sources"].as_array().unwrap().len(),
        4,
        "{level2}"
    );

    // The store serves every sample of the promtool blocks once: the unread selection whole.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = python_calls(
            store.grpc_port,
            &json!([series_call(&read_later, START_MS, end)]),
        );
        let got = decoded(&r[0], START_MS, end);
        let want = expected(
            &dump,
            &read_later
                .as_array()
                .unwrap()
                .iter()
                .map(matcher)
                .collect::<Vec<_>>(),
            START_MS,
            end,
        );
        if r[0]["ok"] == true
            && r[0]["warnings"].as_array().is_some_and(|w| w.is_empty())
            && got == want
        {
            break;
        }
        assert!(Instant::now() < deadline, "{}", r[0]);
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(compactor);
}
