//! Downsampling against independent references: blocks written by promtool and Prometheus (and
//! a long block for Thanos's chunk batching) are downsampled by `gauntlet tools block
//! downsample`; every aggregate sample of the result must equal what
//! `tests/python/downsample_ref.py` computes from `promtool tsdb dump` of the source block
//! (Python written from `docs/formats/downsampling.md`, not from the Rust code). Then the store
//! serves the aggregates to a Python grpcio client, and PromQL through `gauntlet query` with
//! `max_source_resolution=5m` answers like the raw data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::storeapi::{hex, python_calls};
use crate::common::*;
use gauntlet_engine::block::Block;
use gauntlet_engine::chunk::{AggrChunk, AggrType, SampleBatch, XorIterator, decode_xor_into};
use serde_json::{Value, json};

type LabelMap = BTreeMap<String, String>;
/// Per chunk, the samples of each aggregate in `AggrType` order.
type Chunks = Vec<[Vec<(i64, f64)>; 5]>;

const NAMES: [&str; 5] = ["count", "sum", "min", "max", "counter"];
const T0_MS: i64 = 1_735_689_600_000;

/// Runs `gauntlet tools block downsample` and returns the new block's directory.
fn downsample(src: &Path, dst: &Path, res: &str) -> PathBuf {
    let out = run_ok(
        gauntlet()
            .args(["tools", "block", "downsample"])
            .arg(src)
            .arg(dst)
            .args(["--resolution", res]),
    );
    let line = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(line.split('\t').next().unwrap())
}

/// The only block directory in `dir`.
fn only_block(dir: &Path) -> PathBuf {
    let blocks: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    assert_eq!(blocks.len(), 1, "{}", dir.display());
    blocks[0].clone()
}

fn xor_samples(data: &[u8]) -> Vec<(i64, f64)> {
    let mut it = XorIterator::new(data).unwrap();
    let mut out = Vec::new();
    while let Some(s) = it.next().unwrap() {
        out.push(s);
    }
    out
}

/// Reads a downsampled block through the engine's block and chunk readers.
fn read_aggr_block(dir: &Path) -> BTreeMap<LabelMap, Chunks> {
    let b = Block::open(dir).unwrap();
    let mut refs = Vec::new();
    b.index().all_postings(&mut refs).unwrap();
    let mut out = BTreeMap::new();
    for r in refs {
        let (mut labels, mut metas) = (Vec::new(), Vec::new());
        b.series(r, &mut labels, &mut metas).unwrap();
        let key: LabelMap = labels
            .into_iter()
            .map(|l| (l.name.into(), l.value.into()))
            .collect();
        let mut chunks = Chunks::new();
        for m in metas {
            let (enc, data) = b.chunks().chunk(m.chunk_ref).unwrap();
            assert_eq!(enc, 0xFF, "aggregate chunk encoding");
            let ac = AggrChunk::new(data);
            let parts = AggrType::ALL.map(|t| xor_samples(ac.get_xor(t).unwrap()));
            // Chunk bounds are the first and last window timestamps (counter edges excluded).
            assert_eq!(m.min_time, parts[0][0].0);
            assert_eq!(m.max_time, parts[0].last().unwrap().0);
            chunks.push(parts);
        }
        out.insert(key, chunks);
    }
    out
}

/// The Python reference over `promtool tsdb dump` of `block`: label set → resolution name →
/// chunks.
fn reference(block: &Path, then_1h: bool) -> BTreeMap<LabelMap, BTreeMap<String, Chunks>> {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("dump.txt");
    std::fs::write(&dump, promtool_dump(block, &[])).unwrap();
    let mut cmd = Command::new(require("python3"));
    cmd.arg(repo_root().join("tests/python/downsample_ref.py"))
        .arg(&dump);
    if then_1h {
        cmd.arg("--then-1h");
    }
    let out = run_ok(&mut cmd);
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut res = BTreeMap::new();
    for s in v {
        let labels: LabelMap = s["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let mut by_res = BTreeMap::new();
        for r in ["5m", "1h"] {
            let Some(chunks) = s.get(r) else { continue };
            let chunks: Chunks = chunks
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    NAMES.map(|n| {
                        c[n].as_array()
                            .unwrap()
                            .iter()
                            .map(|p| {
                                (
                                    p[0].as_i64().unwrap(),
                                    p[1].as_str().unwrap().parse().unwrap(),
                                )
                            })
                            .collect()
                    })
                })
                .collect();
            by_res.insert(r.to_string(), chunks);
        }
        res.insert(labels, by_res);
    }
    res
}

/// Asserts every aggregate sample equals the reference's bit for bit (values are sums and
/// extremes of the same floats in the same order).
fn assert_same(what: &str, ours: &BTreeMap<LabelMap, Chunks>, want: &BTreeMap<LabelMap, Chunks>) {
    assert_eq!(ours.len(), want.len(), "{what}: series count");
    let mut samples = 0;
    for ((ol, oc), (wl, wc)) in ours.iter().zip(want) {
        assert_eq!(ol, wl, "{what}");
        assert_eq!(oc.len(), wc.len(), "{what} {ol:?}: chunk count");
        for (i, (o, w)) in oc.iter().zip(wc).enumerate() {
            for k in 0..5 {
                assert_eq!(
                    o[k].len(),
                    w[k].len(),
                    "{what} {ol:?} chunk {i} {}",
                    NAMES[k]
                );
                for (a, b) in o[k].iter().zip(&w[k]) {
                    assert!(
                        a.0 == b.0 && a.1.to_bits() == b.1.to_bits(),
                        "{what} {ol:?} chunk {i} {}: {a:?} != {b:?}",
                        NAMES[k]
                    );
                    samples += 1;
                }
            }
        }
    }
    assert!(samples > 1000, "{what}: compared {samples} samples");
}

fn pick(r: &BTreeMap<LabelMap, BTreeMap<String, Chunks>>, res: &str) -> BTreeMap<LabelMap, Chunks> {
    r.iter()
        .filter_map(|(l, m)| m.get(res).map(|c| (l.clone(), c.clone())))
        .collect()
}

#[test]
fn downsampled_blocks_equal_a_reference_computed_from_promtool_dumps() {
    let tmp = tempfile::tempdir().unwrap();

    // A promtool block: 2h of 15 s samples, one 5m chunk per series.
    let promtool = only_block(&fixtures().join("promtool-200series-2h"));
    let d5 = downsample(&promtool, &tmp.path().join("a5"), "5m");
    let want = reference(&promtool, false);
    assert_same(
        "promtool 2h → 5m",
        &read_aggr_block(&d5),
        &pick(&want, "5m"),
    );
    let src_meta: Value =
        serde_json::from_slice(&std::fs::read(promtool.join("meta.json")).unwrap()).unwrap();
    let meta: Value =
        serde_json::from_slice(&std::fs::read(d5.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["thanos"]["downsample"]["resolution"], 300_000);
    assert_eq!(meta["thanos"]["source"], "compactor");
    assert_eq!(meta["minTime"], src_meta["minTime"]);
    assert_eq!(meta["maxTime"], src_meta["maxTime"]);
    assert_eq!(meta["compaction"], src_meta["compaction"]);
    assert_ne!(meta["ulid"], src_meta["ulid"]);
    assert_eq!(
        meta["ulid"].as_str().unwrap(),
        d5.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(meta["stats"]["numSeries"], 200);
    assert_eq!(meta["stats"]["numSamples"], 200 * 24);

    // A 6h block Prometheus compacted from three promtool blocks: 5m, then 1h from the 5m.
    let compacted = fixtures()
        .join("prometheus-compacted-200series-10h")
        .join("01M80EJD593276B0WSCA6NM0B3");
    let c5 = downsample(&compacted, &tmp.path().join("b5"), "5m");
    let c1 = downsample(&c5, &tmp.path().join("b1"), "1h");
    let want = reference(&compacted, true);
    assert_same(
        "prometheus 6h → 5m",
        &read_aggr_block(&c5),
        &pick(&want, "5m"),
    );
    assert_same(
        "prometheus 6h → 5m → 1h",
        &read_aggr_block(&c1),
        &pick(&want, "1h"),
    );

    // 16h of 1-minute samples: more than 140 windows per series, so Thanos's batching cuts
    // two 5m chunks per series, and the counter edges of each must carry over to 1h.
    let om = tmp.path().join("long.om");
    run_ok(
        Command::new(require("python3"))
            .arg(repo_root().join("tests/tools/gen_openmetrics.py"))
            .arg(&om)
            .args([&(T0_MS / 1000).to_string(), "57600", "60", "1"]),
    );
    let long = tmp.path().join("long");
    run_ok(
        gauntlet()
            .args(["tools", "block", "create-from-openmetrics"])
            .arg(&om)
            .arg(&long)
            .args(["--block-duration", "24h"]),
    );
    let long = only_block(&long);
    let l5 = downsample(&long, &tmp.path().join("c5"), "5m");
    let l1 = downsample(&l5, &tmp.path().join("c1"), "1h");
    let ours5 = read_aggr_block(&l5);
    assert!(
        ours5.values().all(|c| c.len() == 2),
        "two 5m chunks per series"
    );
    let want = reference(&long, true);
    assert_same("16h → 5m", &ours5, &pick(&want, "5m"));
    assert_same("16h → 5m → 1h", &read_aggr_block(&l1), &pick(&want, "1h"));

    // Bad requests are refused with a reason, leaving nothing behind.
    for (src, res, why) in [
        (&l1, "5m", "cannot downsample"),
        (&promtool, "10m", "--resolution"),
        (&tmp.path().join("nope"), "5m", "nope"),
    ] {
        let out = gauntlet()
            .args(["tools", "block", "downsample"])
            .arg(src)
            .arg(tmp.path().join("bad"))
            .args(["--resolution", res])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{err}");
    }
    let left = std::fs::read_dir(tmp.path().join("bad")).map_or(0, |d| d.count());
    assert_eq!(left, 0);
}

/// A FILESYSTEM bucket with the promtool block and its 5m downsample, both labelled
/// `cluster="eu1"`.
fn bucket_with_5m(root: &Path) -> (PathBuf, PathBuf) {
    let bucket = root.join("bucket");
    copy_dir(&fixtures().join("promtool-200series-2h"), &bucket);
    let raw = only_block(&bucket);
    let meta_path = raw.join("meta.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["thanos"] = json!({"version": 1, "labels": {"cluster": "eu1"}, "downsample": {"resolution": 0}, "source": "sidecar"});
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    let d5 = downsample(&raw, &bucket, "5m");
    let cfg = filesystem_objstore(root.join("bucket.yml"), &bucket);
    (cfg, d5)
}

fn store_server(cfg: &Path, data: &Path) -> GauntletServer {
    GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", cfg.display()),
            &format!("--data-dir={}", data.display()),
            "--sync-block-duration=1h",
        ],
        "/-/ready",
    )
}

#[test]
fn the_store_serves_requested_aggregates_to_a_grpc_client() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, d5) = bucket_with_5m(tmp.path());
    let store = store_server(&cfg, &tmp.path().join("data"));
    let want = pick(
        &reference(&fixtures().join("promtool-200series-2h"), false),
        "5m",
    );
    let end = T0_MS + 2 * 3_600_000;
    let ms = json!([[0, "__name__", "temperature_celsius"]]);
    let r = python_calls(
        store.grpc_port,
        &json!([
            {"method": "Series", "min_time": T0_MS, "max_time": end, "matchers": ms,
             "max_resolution_window": 300_000, "aggregates": [1, 2, 4]},
            {"method": "Series", "min_time": T0_MS, "max_time": end, "matchers": ms,
             "max_resolution_window": 3_600_000, "aggregates": [5]},
            {"method": "Series", "min_time": T0_MS, "max_time": end, "matchers": ms,
             "max_resolution_window": 299_999, "aggregates": [5]},
        ]),
    );
    let series = r[0]["series"].as_array().unwrap();
    assert!(!series.is_empty());
    for s in series {
        let mut labels: LabelMap = s["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        assert_eq!(labels.remove("cluster").as_deref(), Some("eu1"));
        let w = &want[&labels];
        let chunks = s["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), w.len());
        for (c, wc) in chunks.iter().zip(w) {
            let aggs = c["aggregates"].as_object().unwrap();
            let mut present: Vec<&str> = aggs.keys().map(String::as_str).collect();
            present.sort();
            assert_eq!(present, ["count", "max", "sum"], "only what was asked for");
            for (name, k) in [("count", 0), ("sum", 1), ("max", 3)] {
                assert_eq!(
                    xor_samples(&hex(aggs[name].as_str().unwrap())),
                    wc[k],
                    "{labels:?} {name}"
                );
            }
        }
    }
    // The counter aggregate at up to 1h (only 5m blocks exist, so they answer).
    let counters = r[1]["series"].as_array().unwrap();
    assert_eq!(counters.len(), series.len());
    assert!(counters.iter().all(|s| {
        s["chunks"][0]["aggregates"]
            .as_object()
            .unwrap()
            .keys()
            .eq(["counter"])
    }));
    // Below 5m only raw blocks qualify: raw XOR chunks, decoded like the dump.
    let raw = r[2]["series"].as_array().unwrap();
    assert_eq!(raw.len(), series.len());
    let mut b = SampleBatch::new();
    for c in raw[0]["chunks"].as_array().unwrap() {
        assert_eq!(
            c["aggregates"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["raw"]
        );
        decode_xor_into(&hex(c["data"].as_str().unwrap()), &mut b).unwrap();
    }
    assert_eq!(b.len(), 480);
    assert!(d5.is_dir());
}

/// `(labels, value)` pairs of an instant query's vector, keyed by the label map.
fn vector(s: &GauntletServer, query: &str, at_ms: i64, res: &str) -> BTreeMap<LabelMap, f64> {
    let path = format!(
        "/api/v1/query?query={}&time={}&max_source_resolution={res}",
        urlencode(query),
        at_ms as f64 / 1000.0
    );
    let (status, body) = s.get(&path);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let l: LabelMap = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (l, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

#[test]
fn promql_at_5m_resolution_answers_like_raw_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = bucket_with_5m(tmp.path());
    let store = store_server(&cfg, &tmp.path().join("data"));
    let query = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", store.grpc_port),
        ],
        "/-/ready",
    );
    // Window ends (t = k·5m − 1 ms) inside the block: a 1h range then covers whole windows,
    // so min/max/sum/avg over time are exact up to float rounding (the 5m sums are added in
    // a different grouping: relative 1e-9). rate/increase see 12 counter points 5 minutes
    // apart instead of 240 raw points 15 s apart: the first point in the range sits up to 5
    // minutes after its start, and Prometheus extrapolates the increase over that gap from
    // the sampled slope, so the answer is off by how much the counter's rate in those first
    // and last minutes differs from its hourly mean. These counters grow at steady rates with
    // random increments; measured worst: 0.1 % (rate of float counters), 1.5 % (increase of
    // integer counters with resets). The bounds leave room: 2 % and 5 %.
    let mut checked = 0;
    let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
    for k in [13i64, 17, 23] {
        let at = T0_MS + k * 300_000 - 1;
        for (q, tol) in [
            ("max_over_time(temperature_celsius[1h])", 1e-12),
            ("min_over_time(process_resident_memory_bytes[1h])", 1e-12),
            ("sum_over_time(temperature_celsius[1h])", 1e-9),
            ("avg_over_time(node_cpu_seconds_total[1h])", 1e-9),
            ("sum by (mode) (rate(node_cpu_seconds_total[1h]))", 0.02),
            ("sum by (code) (increase(http_requests_total[1h]))", 0.05),
        ] {
            let raw = vector(&query, q, at, "0s");
            let ds = vector(&query, q, at, "5m");
            assert!(!raw.is_empty(), "{q}");
            assert_eq!(
                raw.keys().collect::<Vec<_>>(),
                ds.keys().collect::<Vec<_>>(),
                "{q}"
            );
            for (l, r) in &raw {
                let d = ds[l];
                let rel = (d - r).abs() / r.abs().max(1e-9);
                assert!(
                    rel <= tol,
                    "{q} at {at} {l:?}: raw {r}, 5m {d} (relative {rel})"
                );
                let w = worst.entry(q).or_default();
                *w = w.max(rel);
                checked += 1;
            }
        }
    }
    assert!(checked > 250, "{checked}");
    eprintln!("largest relative differences, 5m vs raw: {worst:?}");
    // The querier asked for the counter aggregate for resets(): chained with resets removed,
    // as in Thanos, so no reset is left to count, while the raw data has some.
    let at = T0_MS + 23 * 300_000 - 1;
    let q = "sum(resets(http_requests_total[2h]))";
    let raw_resets = vector(&query, q, at, "0s");
    let ds_resets = vector(&query, q, at, "5m");
    assert!(raw_resets.values().sum::<f64>() > 0.0, "{raw_resets:?}");
    assert_eq!(ds_resets.values().sum::<f64>(), 0.0, "{ds_resets:?}");
    // The 5m answers really come from downsampled data: rates differ from the raw ones.
    assert!(
        worst.iter().any(|(q, &w)| q.contains("rate") && w > 1e-6),
        "{worst:?}"
    );
}

/// `gauntlet all` reads the bucket in-process, PromQL streaming the store's series: at 5m it
/// must answer as the querier does over gRPC (the same aggregates chosen per function, decoded
/// the same way), and differently from the raw data where downsampling shows.
#[test]
fn all_in_one_streams_downsampled_data_as_the_querier_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = bucket_with_5m(tmp.path());
    let store = store_server(&cfg, &tmp.path().join("data"));
    let query = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", store.grpc_port),
        ],
        "/-/ready",
    );
    let copy = tmp.path().join("all-bucket");
    copy_dir(&tmp.path().join("bucket"), &copy);
    let all = GauntletServer::start(
        &["all", &format!("--data-dir={}", copy.display())],
        "/-/ready",
    );
    let mut checked = 0;
    let mut rate_differs = false;
    for k in [13i64, 23] {
        let at = T0_MS + k * 300_000 - 1;
        for q in [
            "temperature_celsius",
            "max_over_time(temperature_celsius[1h])",
            "sum by (mode) (rate(node_cpu_seconds_total[1h]))",
            "count(rate(http_requests_total[1h]))",
            "topk(3, increase(http_requests_total[1h]))",
            "sum(count_over_time(process_resident_memory_bytes[30m]))",
        ] {
            let want = vector(&query, q, at, "5m");
            let got = vector(&all, q, at, "5m");
            assert!(!want.is_empty(), "{q}");
            assert_eq!(
                want.keys().collect::<Vec<_>>(),
                got.keys().collect::<Vec<_>>(),
                "{q}"
            );
            for (l, w) in &want {
                let g = got[l];
                assert!(
                    close(*w, g),
                    "{q} at {at} {l:?}: querier {w}, all-in-one {g}"
                );
                checked += 1;
            }
            if q.contains("rate") {
                let raw = vector(&all, q, at, "0s");
                rate_differs |= raw.iter().any(|(l, r)| !close(*r, got[l]));
            }
        }
    }
    assert!(checked > 60, "{checked}");
    assert!(
        rate_differs,
        "the 5m answers come from the downsampled block"
    );
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

/// The compactor's own downsampling: 26 promtool blocks of 2 h (1-minute samples from a 48 h
/// boundary) in a bucket are compacted level by level into a 2-day block, which `gauntlet
/// compact` then downsamples to 5m. Its aggregates must equal the reference computed from the
/// dump of the 24 source blocks it covers, counters included across the sources' edges.
#[test]
fn the_compactor_downsamples_the_2d_block_it_compacted_like_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    // 2025-01-02T00:00Z is a multiple of 48 h.
    let start = 1_735_776_000i64;
    let om = tmp.path().join("in.om");
    run_ok(
        Command::new(require("python3"))
            .arg(repo_root().join("tests/tools/gen_openmetrics.py"))
            .arg(&om)
            .args([&start.to_string(), &(52 * 3600).to_string(), "60", "1"]),
    );
    let src = tmp.path().join("src");
    run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&src),
    );
    let bucket = tmp.path().join("bucket");
    let covered = tmp.path().join("covered");
    let mut blocks: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    blocks.sort();
    assert_eq!(blocks.len(), 26);
    for b in &blocks {
        let mut meta: Value =
            serde_json::from_slice(&std::fs::read(b.join("meta.json")).unwrap()).unwrap();
        let min = meta["minTime"].as_i64().unwrap();
        // Ended at their range end, as Prometheus and receivers end them.
        meta["maxTime"] = json!(min + 7_200_000);
        meta["thanos"] = json!({"version": 1, "labels": {"cluster": "eu1"}, "downsample": {"resolution": 0}, "source": "sidecar"});
        let id = b.file_name().unwrap();
        copy_dir(b, &bucket.join(id));
        std::fs::write(
            bucket.join(id).join("meta.json"),
            serde_json::to_vec_pretty(&meta).unwrap(),
        )
        .unwrap();
        if min < (start + 48 * 3600) * 1000 {
            copy_dir(b, &covered.join(id));
        }
    }
    let cfg = filesystem_objstore(tmp.path().join("objstore.yml"), &bucket);
    let out = gauntlet()
        .arg("compact")
        .arg("--objstore.config-file")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["--http-address", "127.0.0.1:0", "--consistency-delay", "0s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut five = Vec::new();
    let mut two_day = 0;
    for e in std::fs::read_dir(&bucket).unwrap() {
        let p = e.unwrap().path();
        let Ok(bytes) = std::fs::read(p.join("meta.json")) else {
            continue;
        };
        let meta: Value = serde_json::from_slice(&bytes).unwrap();
        let span = meta["maxTime"].as_i64().unwrap() - meta["minTime"].as_i64().unwrap();
        match meta["thanos"]["downsample"]["resolution"].as_i64() {
            Some(300_000) => five.push((p.clone(), meta)),
            Some(0) if span == 48 * 3_600_000 && !p.join("deletion-mark.json").exists() => {
                two_day += 1
            }
            _ => {}
        }
    }
    assert_eq!(two_day, 1, "one raw 2-day block");
    assert_eq!(five.len(), 1, "one 5m block");
    let (dir, meta) = &five[0];
    assert_eq!(meta["thanos"]["source"], "compactor");
    assert_eq!(meta["compaction"]["sources"].as_array().unwrap().len(), 24);
    let want = reference(&covered, false);
    assert_same(
        "compacted 2d → 5m",
        &read_aggr_block(dir),
        &pick(&want, "5m"),
    );
}
