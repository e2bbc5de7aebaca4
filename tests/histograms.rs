//! Native histograms on the read-and-serve path against a real Prometheus 3: Prometheus takes
//! integer, float and custom-bucket histograms (and a series switching from floats to
//! histograms) over remote write and snapshots them into a block; `gauntlet tools block dump`
//! of that block must equal promtool 3's dump byte for byte, `inspect` must count its histogram
//! samples, `gauntlet store` must serve its histogram chunks over the StoreAPI with Thanos's
//! chunk types and the block's own bytes (read by the Python grpcio client), and `gauntlet
//! query` over two replica stores must merge and deduplicate them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::histograms::{deltas, spans};
use crate::common::receive::{now_ms, post, snappy};
use crate::common::storeapi::{hex, python_calls};
use crate::common::*;
use gauntlet::query::endpoints::EndpointSet;
use gauntlet::query::fanout::Querier;
use gauntlet::query::{ReadOptions, Source};
use gauntlet_engine::block::histogram_text::push_float_histogram;
use gauntlet_engine::block::{Block, block_dirs};
use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::chunk::{HistogramBatch, SampleBatch};
use gauntlet_engine::histogram::{FloatHistogram, Span};
use gauntlet_engine::labels::{Label, MatchType, Matcher};
use gauntlet_engine::query::{
    LocalBlocks, Queryable, SelectHints, Series, collect_stream, dedup_replicas_with_histograms,
};
use gauntlet_engine::store::{BucketStore, StoreOptions};
use gauntlet_proto::prometheus as pb;
use prost::Message;
use serde_json::{Value, json};

const METRIC: &str = "gauntlet_native";
const STEP: i64 = 15_000;
const SAMPLES: usize = 400;
/// The stale marker's bits: a histogram sample with this sum marks its series stale.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// An integer histogram at schema 3 with negative, zero and positive buckets; counts grow with
/// `i` and, with `big`, reach beyond 2^53, where an integer and its float spelling part ways.
fn int_hist(t: i64, i: u64, big: bool) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    let big = if big && i % 50 == 49 { 1u64 << 54 } else { 0 };
    let pos = [i + 1, 2 * i + 3 + big, 0, i + 7, 5];
    let neg = [i / 2 + 1, 3];
    let zero = i % 3;
    pb::Histogram {
        count: Some(Count::CountInt(
            pos.iter().sum::<u64>() + neg.iter().sum::<u64>() + zero,
        )),
        zero_count: Some(ZeroCount::ZeroCountInt(zero)),
        sum: 1.5 * i as f64 - 3.25,
        schema: 3,
        zero_threshold: 0.001,
        positive_spans: spans(&[(-2, 3), (2, 2)]),
        positive_deltas: deltas(&pos),
        negative_spans: spans(&[(1, 2)]),
        negative_deltas: deltas(&neg),
        timestamp: t,
        ..Default::default()
    }
}

/// A float histogram at `schema` whose zero bucket has a threshold of 0 (printed `[-0,0]`).
fn float_hist(t: i64, i: u64, schema: i32, pos_spans: &[(i32, u32)]) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    let n: u32 = pos_spans.iter().map(|s| s.1).sum();
    let pos: Vec<f64> = (0..n)
        .map(|k| 0.25 * (i + u64::from(k)) as f64 + 1.0)
        .collect();
    let zero = 0.5 * (i % 4) as f64;
    pb::Histogram {
        count: Some(Count::CountFloat(pos.iter().sum::<f64>() + zero)),
        zero_count: Some(ZeroCount::ZeroCountFloat(zero)),
        sum: 1e6 + 0.1 * i as f64,
        schema,
        zero_threshold: 0.0,
        positive_spans: spans(pos_spans),
        positive_counts: pos,
        timestamp: t,
        ..Default::default()
    }
}

/// A float histogram with custom bucket bounds (schema -53).
fn nhcb(t: i64, i: u64) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    let pos = vec![i as f64, 0.0, 2.5, 1e-7 * i as f64];
    pb::Histogram {
        count: Some(Count::CountFloat(pos.iter().sum())),
        zero_count: Some(ZeroCount::ZeroCountFloat(0.0)),
        sum: 3.0 * i as f64,
        schema: -53,
        positive_spans: spans(&[(0, 2), (1, 2)]),
        positive_counts: pos,
        custom_values: vec![0.1, 0.5, 1.0, 5.0],
        timestamp: t,
        ..Default::default()
    }
}

fn stale(mut h: pb::Histogram) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    h.sum = f64::from_bits(STALE_NAN);
    h.count = Some(Count::CountFloat(0.0));
    h.zero_count = Some(ZeroCount::ZeroCountFloat(0.0));
    h.positive_spans.clear();
    h.positive_counts.clear();
    h.negative_spans.clear();
    h.negative_counts.clear();
    h.custom_values.clear();
    h
}

fn labels(kind: &str) -> Vec<pb::Label> {
    vec![
        pb::Label {
            name: "__name__".into(),
            value: METRIC.into(),
        },
        pb::Label {
            name: "kind".into(),
            value: kind.into(),
        },
    ]
}

/// Every series this file writes, as remote-write series for samples `range` (by index);
/// `big`: some integer bucket counts past 2^53.
fn request(start: i64, range: std::ops::Range<usize>, big: bool) -> Vec<pb::TimeSeries> {
    let at = |i: usize| start + i as i64 * STEP;
    let mut out = Vec::new();
    let each = |f: &dyn Fn(i64, u64) -> pb::Histogram| -> Vec<pb::Histogram> {
        range.clone().map(|i| f(at(i), i as u64)).collect()
    };
    out.push(pb::TimeSeries {
        labels: labels("int"),
        histograms: each(&|t, i| int_hist(t, i, big)),
        ..Default::default()
    });
    out.push(pb::TimeSeries {
        labels: labels("float"),
        histograms: range
            .clone()
            .map(|i| {
                let h = float_hist(at(i), i as u64, 0, &[(-1, 2), (3, 1)]);
                if i == SAMPLES - 1 { stale(h) } else { h }
            })
            .collect(),
        ..Default::default()
    });
    out.push(pb::TimeSeries {
        labels: labels("nhcb"),
        histograms: each(&nhcb),
        ..Default::default()
    });
    out.push(pb::TimeSeries {
        labels: labels("schema-2"),
        histograms: each(&|t, i| float_hist(t, i, -2, &[(-300, 2), (295, 4), (60, 1)])),
        ..Default::default()
    });
    // Every bucket bound of schema 8 within one power of two, and the last finite bucket.
    out.push(pb::TimeSeries {
        labels: labels("schema8"),
        histograms: each(&|t, i| float_hist(t, i, 8, &[(-256, 257), (262_142, 2)])),
        ..Default::default()
    });
    // Floats first, then integer histograms (sent in a later request: Prometheus commits a
    // request's floats and histograms separately).
    let floats: Vec<pb::Sample> = range
        .clone()
        .filter(|&i| i < SAMPLES / 2)
        .map(|i| pb::Sample {
            value: i as f64 * 0.5,
            timestamp: at(i),
        })
        .collect();
    let hists: Vec<pb::Histogram> = range
        .clone()
        .filter(|&i| i >= SAMPLES / 2)
        .map(|i| int_hist(at(i), i as u64, big))
        .collect();
    out.push(pb::TimeSeries {
        labels: labels("mixed"),
        samples: floats,
        histograms: hists,
        ..Default::default()
    });
    out
}

fn remote_write(p: &Prometheus, ts: Vec<pb::TimeSeries>) {
    let body = snappy(
        &pb::WriteRequest {
            timeseries: ts,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let (status, _, text) = post(
        p.port,
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &body,
    )
    .expect("remote write to prometheus");
    assert_eq!(status, 204, "remote write answered {status}: {text}");
}

/// The first sample's timestamp: two hours back, on a 2 h boundary plus 7m13s.
fn start_ms() -> i64 {
    let range = 7_200_000;
    (now_ms() - 2 * 3_600_000) / range * range - 3_600_000 + 433_000
}

/// A block (or two) of native histograms written by Prometheus 3, in `dir`; returns the
/// prometheus binary's path.
fn prometheus3_block(dir: &Path) -> PathBuf {
    prometheus3_replica(dir, start_ms(), 0..0, true)
}

/// [`prometheus3_block`] with samples from `start` (ms) and without the samples `gap`; `big`:
/// some integer bucket counts past 2^53.
fn prometheus3_replica(dir: &Path, start: i64, gap: std::ops::Range<usize>, big: bool) -> PathBuf {
    let binary = prometheus3();
    let p = Prometheus::start_with_config(
        &binary,
        |_| "global:\n  scrape_interval: 1h\n".into(),
        &[
            "--web.enable-remote-write-receiver",
            "--web.enable-admin-api",
            "--enable-feature=native-histograms",
        ],
    );
    for lo in (0..SAMPLES).step_by(50) {
        let mut ts = request(start, lo..lo + 50, big);
        for s in &mut ts {
            s.histograms
                .retain(|h| !gap.contains(&(((h.timestamp - start) / STEP) as usize)));
            s.samples
                .retain(|v| !gap.contains(&(((v.timestamp - start) / STEP) as usize)));
        }
        remote_write(&p, ts);
    }
    let (status, _, text) = post(p.port, "/api/v1/admin/tsdb/snapshot", &[], b"").unwrap();
    assert_eq!(status, 200, "snapshot: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let snapshot = p
        .data_dir()
        .join("snapshots")
        .join(v["data"]["name"].as_str().unwrap());
    copy_dir(&snapshot, dir);
    assert!(
        !block_dirs(dir).unwrap().is_empty(),
        "the snapshot holds no block"
    );
    binary
}

/// promtool 3 (beside the prometheus 3 binary) dumping the blocks in `blocks`.
fn promtool3_dump(prometheus: &Path, blocks: &Path) -> Vec<u8> {
    let promtool = prometheus.with_file_name("promtool");
    assert!(
        promtool.is_file(),
        "no promtool beside {}",
        prometheus.display()
    );
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("db");
    copy_dir(blocks, &db);
    std::fs::create_dir_all(db.join("wal")).unwrap();
    run_ok(Command::new(promtool).args(["tsdb", "dump"]).arg(&db)).stdout
}

#[test]
fn dump_and_inspect_equal_promtool_3_on_native_histograms() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = tmp.path().join("blocks");
    let prometheus = prometheus3_block(&blocks);
    let want = promtool3_dump(&prometheus, &blocks);
    let text = String::from_utf8_lossy(&want);
    for kind in ["int", "float", "nhcb", "schema-2", "schema8", "mixed"] {
        assert!(
            text.contains(&format!("kind=\"{kind}\"}}")),
            "promtool printed no sample of {kind}"
        );
    }
    if let Some(out) = std::env::var_os("GAUNTLET_WRITE_HISTOGRAM_DUMP") {
        std::fs::write(out, &want).unwrap();
    }
    let got = gauntlet_dump(&blocks, &[]);
    assert_same_dump("gauntlet dump vs promtool 3 dump", &want, &got);
    // A time window and a selector cut the same lines out of both.
    let win = [
        "--match=gauntlet_native{kind=~\"int|nhcb\"}".to_string(),
        format!("--min-time={}", first_ts(&want) + 40 * STEP),
        format!("--max-time={}", first_ts(&want) + 300 * STEP),
    ];
    let promtool = prometheus.with_file_name("promtool");
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("db");
    copy_dir(&blocks, &db);
    std::fs::create_dir_all(db.join("wal")).unwrap();
    let want_win = run_ok(
        Command::new(promtool)
            .args(["tsdb", "dump"])
            .args(&win)
            .arg(&db),
    )
    .stdout;
    assert!(!want_win.is_empty());
    let win: Vec<&str> = win.iter().map(String::as_str).collect();
    assert_same_dump("windowed dump", &want_win, &gauntlet_dump(&blocks, &win));

    // inspect counts every histogram sample (promtool's dump drops some, the chunks do not).
    let out = run_ok(gauntlet().args(["tools", "block", "inspect"]).arg(&blocks)).stdout;
    let out = String::from_utf8_lossy(&out);
    let sum_field = |name: &str| -> u64 {
        out.lines()
            .filter_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .sum()
    };
    let histograms = 5 * SAMPLES as u64 + SAMPLES as u64 / 2;
    assert_eq!(sum_field("histogram samples"), histograms, "{out}");
    assert_eq!(
        sum_field("samples"),
        histograms + SAMPLES as u64 / 2,
        "{out}"
    );
}

fn first_ts(dump: &[u8]) -> i64 {
    String::from_utf8_lossy(dump)
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .min()
        .unwrap()
}

/// A remote-write histogram as Gauntlet's float histogram.
fn to_float(h: &pb::Histogram) -> FloatHistogram {
    use pb::histogram::{Count, ZeroCount};
    let sp = |s: &[pb::BucketSpan]| -> Vec<Span> {
        s.iter().map(|s| Span::new(s.offset, s.length)).collect()
    };
    // Deltas summed as integers, each absolute count then the float nearest it, as a chunk
    // iterator hands an integer histogram to PromQL.
    let abs = |d: &[i64]| -> Vec<f64> {
        let mut acc = 0i64;
        d.iter()
            .map(|&x| {
                acc = acc.wrapping_add(x);
                acc as f64
            })
            .collect()
    };
    let int = matches!(h.count, Some(Count::CountInt(_)));
    FloatHistogram {
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: match h.zero_count {
            Some(ZeroCount::ZeroCountInt(c)) => c as f64,
            Some(ZeroCount::ZeroCountFloat(c)) => c,
            None => 0.0,
        },
        count: match h.count {
            Some(Count::CountInt(c)) => c as f64,
            Some(Count::CountFloat(c)) => c,
            None => 0.0,
        },
        sum: h.sum,
        positive_spans: sp(&h.positive_spans),
        negative_spans: sp(&h.negative_spans),
        positive_buckets: if int {
            abs(&h.positive_deltas)
        } else {
            h.positive_counts.clone()
        },
        negative_buckets: if int {
            abs(&h.negative_deltas)
        } else {
            h.negative_counts.clone()
        },
        custom_values: h.custom_values.clone().into(),
        ..FloatHistogram::default()
    }
}

/// Asserts two [`lines`] lists are equal, naming the first difference.
fn assert_same_lines(what: &str, got: &[String], want: &[String]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what}: sample {i} differs");
    }
    assert_eq!(got.len(), want.len(), "{what}: sample counts");
}

/// A series' samples as text lines, histograms spelled out (`t h`), floats as `t v`, in time
/// order: equal for equal data whatever the bucket layout.
fn lines(f: &SampleBatch, h: &HistogramBatch) -> Vec<String> {
    let mut out: Vec<(i64, String)> = f
        .iter()
        .map(|(t, v)| (t, format!("{t} {}", v.to_bits())))
        .collect();
    for (t, h) in h.iter() {
        let mut s = format!("{t} ");
        push_float_histogram(&mut s, h);
        out.push((t, s));
    }
    out.sort();
    out.into_iter().map(|(_, s)| s).collect()
}

/// What [`request`] wrote from `start` without `gap`, per `kind`, as [`lines`].
fn written(
    start: i64,
    gap: std::ops::Range<usize>,
) -> BTreeMap<String, (SampleBatch, HistogramBatch)> {
    let mut out: BTreeMap<String, (SampleBatch, HistogramBatch)> = BTreeMap::new();
    for s in request(start, 0..SAMPLES, true) {
        let kind = s.labels[1].value.clone();
        let e = out.entry(kind).or_default();
        let keep = |t: i64| !gap.contains(&(((t - start) / STEP) as usize));
        for v in s.samples.iter().filter(|v| keep(v.timestamp)) {
            e.0.push(v.timestamp, v.value);
        }
        for h in s.histograms.iter().filter(|h| keep(h.timestamp)) {
            e.1.push(h.timestamp, to_float(h));
        }
    }
    out
}

fn name_matcher() -> Matcher {
    Matcher::new(MatchType::Equal, "__name__", METRIC).unwrap()
}

#[test]
fn local_blocks_select_and_stream_native_histograms() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = tmp.path().join("blocks");
    let start = start_ms();
    prometheus3_replica(&blocks, start, 0..0, true);
    let want = written(start, 0..0);
    let local = LocalBlocks::open(&blocks).unwrap();
    let hints = SelectHints::default();
    let all = local
        .select(&[name_matcher()], i64::MIN, i64::MAX, &hints)
        .unwrap();
    assert_eq!(all.len(), want.len());
    for s in &all {
        let kind = s.labels.get("kind").unwrap();
        let (f, h) = &want[kind];
        assert_same_lines(kind, &lines(&s.samples, &s.histograms), &lines(f, h));
    }
    // The stream hands histogram chunks over as they are; decoded, they are the same.
    let (mint, maxt) = (start + 37 * STEP, start + 333 * STEP + 1);
    let stream = local
        .select_stream(&[name_matcher()], mint, maxt, &hints)
        .unwrap();
    let streamed = collect_stream(stream, mint, maxt).unwrap();
    let selected = local.select(&[name_matcher()], mint, maxt, &hints).unwrap();
    assert_eq!(streamed.len(), selected.len());
    for (a, b) in streamed.iter().zip(&selected) {
        assert_eq!(a.labels, b.labels);
        assert_eq!(
            lines(&a.samples, &a.histograms),
            lines(&b.samples, &b.histograms)
        );
        assert!(a.histograms.ts.iter().all(|t| (mint..=maxt).contains(t)));
    }
    assert!(selected.iter().all(|s| !s.histograms.is_empty()));

    // The bucket store, as `gauntlet all` queries it, streams the same histograms.
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    crate::common::bucket::upload(&blocks, &bucket, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = BucketConfig::parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    ))
    .unwrap();
    let store = rt.block_on(async {
        let s = Arc::new(
            BucketStore::open(
                Bucket::open(&cfg).unwrap(),
                &tmp.path().join("store"),
                StoreOptions::default(),
            )
            .unwrap(),
        );
        s.sync().await.unwrap();
        s
    });
    let from_store = std::thread::scope(|sc| {
        sc.spawn(|| {
            let stream = store
                .select_stream(&[name_matcher()], mint, maxt, &hints)
                .unwrap();
            collect_stream(stream, mint, maxt).unwrap()
        })
        .join()
        .unwrap()
    });
    assert_eq!(from_store.len(), selected.len());
    for (a, b) in from_store.iter().zip(&selected) {
        assert_eq!(a.labels, b.labels);
        assert_eq!(
            lines(&a.samples, &a.histograms),
            lines(&b.samples, &b.histograms)
        );
    }
}

/// A `gauntlet store` or `gauntlet query` process on loopback, killed on drop.
struct Server {
    child: Child,
    grpc: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(args: &[String]) -> Server {
        let [grpc, http] = free_ports();
        let child = gauntlet()
            .args(args)
            .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http_get(http, "/-/ready"), Ok((200, _))) {
            assert!(Instant::now() < deadline, "{args:?} not ready in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Server { child, grpc }
    }

    fn store(bucket: &Path, data: &Path) -> Server {
        let cfg = filesystem_objstore(data.with_extension("yaml"), bucket);
        Server::start(&[
            "store".into(),
            format!("--objstore.config-file={}", cfg.display()),
            format!("--data-dir={}", data.display()),
            "--sync-block-duration=1s".into(),
        ])
    }
}

/// Series kind → its chunks as (encoding or chunk type, payload).
type ChunksByKind = BTreeMap<String, Vec<(u8, Vec<u8>)>>;

/// Each series' chunks in the blocks under `dir`: labels (without external ones) → (encoding,
/// payload) in time order.
fn block_chunks(dir: &Path) -> ChunksByKind {
    let mut out = ChunksByKind::new();
    for d in block_dirs(dir).unwrap() {
        let b = Block::open(&d).unwrap();
        for r in b.select(&[name_matcher()]).unwrap() {
            let (mut labels, mut metas): (Vec<Label>, _) = (Vec::new(), Vec::new());
            b.series(r, &mut labels, &mut metas).unwrap();
            let kind = labels
                .iter()
                .find(|l| l.name == "kind")
                .unwrap()
                .value
                .to_string();
            for m in metas {
                let (enc, data) = b.chunks().chunk(m.chunk_ref).unwrap();
                out.entry(kind.clone())
                    .or_default()
                    .push((enc, data.to_vec()));
            }
        }
    }
    out
}

/// Asserts a series' StoreAPI chunks (Thanos type, payload) are its block chunks (TSDB
/// encoding, payload): TSDB encodings 1, 2, 3 are Thanos's XOR = 0, HISTOGRAM = 1,
/// FLOAT_HISTOGRAM = 2. Histogram chunks come as they are stored (in any order); XOR chunks of
/// over 120 samples are cut to 120 as Thanos's store cuts them, so only their sample counts
/// are compared.
fn assert_same_chunks(what: &str, got: &[(u8, Vec<u8>)], stored: &[(u8, Vec<u8>)]) {
    let mut want_h: Vec<(u8, Vec<u8>)> = stored
        .iter()
        .filter(|c| c.0 != 1)
        .map(|(e, d)| (e - 1, d.clone()))
        .collect();
    let mut got_h: Vec<(u8, Vec<u8>)> = got.iter().filter(|c| c.0 != 0).cloned().collect();
    want_h.sort();
    got_h.sort();
    assert_eq!(got_h, want_h, "{what}: histogram chunk types and bytes");
    let samples = |c: &[(u8, Vec<u8>)], xor: u8| -> u64 {
        c.iter()
            .filter(|x| x.0 == xor)
            .map(|x| u64::from(u16::from_be_bytes([x.1[0], x.1[1]])))
            .sum()
    };
    assert_eq!(samples(got, 0), samples(stored, 1), "{what}: XOR samples");
}

/// The Python grpcio client's Series answer for every series of the metric, as kind → chunks
/// (Thanos chunk type, payload).
fn python_series(grpc: u16) -> (Value, ChunksByKind) {
    let res = python_calls(
        grpc,
        &json!([{"method": "Series", "min_time": i64::MIN, "max_time": i64::MAX,
                 "matchers": [[0, "__name__", METRIC]]}]),
    );
    assert_eq!(res[0]["ok"], true, "{}", res[0]);
    let mut out = ChunksByKind::new();
    for s in res[0]["series"].as_array().unwrap() {
        let kind = s["labels"]["kind"].as_str().unwrap().to_string();
        for c in s["chunks"].as_array().unwrap() {
            out.entry(kind.clone()).or_default().push((
                c["type"].as_u64().unwrap() as u8,
                hex(c["data"].as_str().unwrap()),
            ));
        }
    }
    (res[0].clone(), out)
}

#[test]
fn store_serves_native_histogram_chunks_to_a_grpcio_client() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = tmp.path().join("blocks");
    prometheus3_block(&blocks);
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    crate::common::bucket::upload(&blocks, &bucket, &[("cluster", "eu1"), ("replica", "a")]);
    let store = Server::store(&bucket, &tmp.path().join("store"));
    let (raw, got) = python_series(store.grpc);
    for s in raw["series"].as_array().unwrap() {
        assert_eq!(s["labels"]["cluster"], "eu1", "{}", s["labels"]);
    }
    let want = block_chunks(&blocks);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (kind, chunks) in &want {
        assert_same_chunks(kind, &got[kind], chunks);
    }
    let types = |k: &str| {
        got[k]
            .iter()
            .map(|c| c.0)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(types("int"), [1].into());
    assert_eq!(types("float"), [2].into());
    assert_eq!(types("nhcb"), [2].into());
    assert_eq!(types("mixed"), [0, 1].into());
}

#[test]
fn query_merges_and_deduplicates_native_histograms_of_two_replica_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let start = start_ms();
    // Replica a misses samples 100..150; replica b, 5 s later, has them all.
    let gap = 100..150;
    let (ra, rb) = (tmp.path().join("a"), tmp.path().join("b"));
    prometheus3_replica(&ra, start, gap.clone(), true);
    prometheus3_replica(&rb, start + 5_000, 0..0, true);
    let mut stores = Vec::new();
    for (name, blocks) in [("a", &ra), ("b", &rb)] {
        let bucket = tmp.path().join(format!("bucket-{name}"));
        std::fs::create_dir_all(&bucket).unwrap();
        crate::common::bucket::upload(blocks, &bucket, &[("cluster", "eu1"), ("replica", name)]);
        stores.push(Server::store(
            &bucket,
            &tmp.path().join(format!("store-{name}")),
        ));
    }
    let addrs: Vec<String> = stores
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.grpc))
        .collect();

    // The querier's read path in-process, over the two stores.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let eps = Arc::new(EndpointSet::new(
        addrs.clone(),
        Vec::new(),
        Duration::from_secs(10),
    ));
    rt.block_on(eps.refresh());
    let querier = Arc::new(Querier::new(
        eps,
        rt.handle().clone(),
        vec!["replica".into()],
        Duration::from_secs(60),
    ));
    let hints = SelectHints::default();
    let select = |opts: ReadOptions| -> Vec<Series> {
        let view = querier.view(&opts).unwrap();
        let out = view
            .select(&[name_matcher()], i64::MIN, i64::MAX, &hints)
            .unwrap();
        assert!(view.warnings().is_empty(), "{:?}", view.warnings());
        out
    };
    let (wa, wb) = (written(start, gap.clone()), written(start + 5_000, 0..0));
    let deduped = select(ReadOptions::default());
    assert_eq!(deduped.len(), wa.len());
    for s in &deduped {
        assert!(s.labels.get("replica").is_none());
        let kind = s.labels.get("kind").unwrap();
        let (a, b) = (&wa[kind], &wb[kind]);
        let (f, h) = dedup_replicas_with_histograms(&[(&a.0, &a.1), (&b.0, &b.1)], false);
        assert_same_lines(kind, &lines(&s.samples, &s.histograms), &lines(&f, &h));
        // The gap is bridged from replica b and the rate never doubles.
        let mut ts: Vec<i64> = s
            .samples
            .ts
            .iter()
            .chain(&s.histograms.ts)
            .copied()
            .collect();
        ts.sort_unstable();
        assert!(ts.windows(2).all(|w| w[1] - w[0] >= STEP - 5_000), "{kind}");
        assert!(
            ts.iter().any(|t| (t - start) % STEP == 5_000),
            "{kind}: nothing from b"
        );
        assert!(ts.len() >= SAMPLES - 5, "{kind}: {} samples", ts.len());
    }
    // Without dedup both replicas come back, whole.
    let plain = select(ReadOptions {
        dedup: false,
        ..ReadOptions::default()
    });
    assert_eq!(plain.len(), 2 * wa.len());
    for s in &plain {
        let kind = s.labels.get("kind").unwrap();
        let w = if s.labels.get("replica") == Some("a") {
            &wa
        } else {
            &wb
        };
        assert_eq!(
            lines(&s.samples, &s.histograms),
            lines(&w[kind].0, &w[kind].1),
            "{kind}"
        );
    }

    // `gauntlet query`'s own StoreAPI passes the histogram chunks through.
    let mut args = vec!["query".to_string()];
    args.extend(addrs.iter().map(|a| format!("--endpoint={a}")));
    args.push("--query.replica-label=replica".into());
    let query = Server::start(&args);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (raw, got) = loop {
        let (raw, got) = python_series(query.grpc);
        if got.len() == wa.len() || Instant::now() > deadline {
            break (raw, got);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(raw["series"].as_array().unwrap().len(), 2 * wa.len());
    let mut want = block_chunks(&ra);
    for (k, v) in block_chunks(&rb) {
        want.entry(k).or_default().extend(v);
    }
    for (kind, chunks) in &want {
        assert_same_chunks(kind, &got[kind], chunks);
    }
}

/// PromQL over the native histograms of [`request`] (integer, float, custom-bucket, schema -2
/// and 8, floats turning into histograms, a stale marker).
const BLOCK_QUERIES: &[&str] = &[
    METRIC,
    "gauntlet_native[2m]",
    "rate(gauntlet_native[5m])",
    "increase(gauntlet_native[10m])",
    "delta(gauntlet_native[5m])",
    "irate(gauntlet_native[5m])",
    "sum(gauntlet_native)",
    r#"sum by (kind) (rate(gauntlet_native{kind!="mixed"}[5m]))"#,
    "avg(gauntlet_native)",
    "count(gauntlet_native)",
    "histogram_quantile(0.9, gauntlet_native)",
    "histogram_quantile(0.25, rate(gauntlet_native[5m]))",
    "histogram_count(gauntlet_native)",
    "histogram_sum(rate(gauntlet_native[5m]))",
    "histogram_avg(gauntlet_native)",
    "histogram_fraction(0, 4, gauntlet_native)",
    "histogram_stddev(gauntlet_native)",
    "histogram_stdvar(gauntlet_native)",
    "gauntlet_native * 3",
    "gauntlet_native / 2",
    "gauntlet_native + gauntlet_native",
    r#"gauntlet_native{kind="nhcb"} + on() gauntlet_native{kind="int"}"#,
    "gauntlet_native - gauntlet_native offset 1m",
    "sum_over_time(gauntlet_native[1m])",
    "avg_over_time(gauntlet_native[1m])",
    "last_over_time(gauntlet_native[3m])",
    "count_over_time(gauntlet_native[3m])",
    "max_over_time(gauntlet_native[3m])",
    "timestamp(gauntlet_native)",
];

/// The HTTP API over a Prometheus 3 block of native histograms answers as Prometheus 3 does
/// over the same block, byte for byte, for instant queries at sample times and range queries
/// whose steps fall between samples. Integer bucket counts stay below 2^53 here: past it, a
/// Prometheus range selection reads the newest sample's counts exactly but older ones by
/// adding float deltas, which Gauntlet does not copy (it reads them all exactly).
#[test]
fn http_api_over_a_prometheus_3_block_answers_as_prometheus_3_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = tmp.path().join("blocks");
    let binary = prometheus3_replica(&blocks, start_ms(), 0..0, false);
    let prom =
        Prometheus::start_with_args(&binary, &blocks, &["--enable-feature=native-histograms"]);
    let data = tmp.path().join("bucket");
    copy_dir(&blocks, &data);
    let data_arg = format!("--data-dir={}", data.display());
    let ours = GauntletServer::start(&["all", &data_arg], "/-/ready");

    let first = first_ts(&gauntlet_dump(&blocks, &[])) as f64 / 1000.0;
    let last = first + ((SAMPLES - 1) as i64 * STEP) as f64 / 1000.0;
    let times: Vec<String> = [1800.0, 3600.0, last - first, last - first + 300.0]
        .iter()
        .map(|d| format!("{:.3}", first + d))
        .collect();
    let mut paths = Vec::new();
    for q in BLOCK_QUERIES {
        for t in &times {
            paths.push(api_path("/api/v1/query", &[("query", q), ("time", t)]));
        }
        for step in ["60", "90"] {
            paths.push(api_path(
                "/api/v1/query_range",
                &[
                    ("query", q),
                    ("start", &format!("{:.3}", first + 1.0)),
                    ("end", &format!("{:.3}", last + 120.0)),
                    ("step", step),
                ],
            ));
        }
    }
    let with_histograms = assert_same_answers(prom.port, &ours, &paths, |b| b);
    // Many queries end in floats (histogram_count, …); a third at least hold histograms.
    assert!(
        with_histograms * 3 >= paths.len(),
        "only {with_histograms} of {} answers hold native histograms",
        paths.len()
    );
}
