//! Blocks of native histograms written by a real Prometheus 3, compacted by Gauntlet, read by
//! Prometheus 3 and its promtool, and compacted by Prometheus 3 itself for comparison.
//!
//! Two Prometheus 3 servers take the same five series over remote write (an integer counter
//! whose buckets grow and which resets, a float counter, an integer gauge, a counter with
//! custom buckets, and a series whose float samples turn into histograms), each a different
//! stretch of time: the second starts half an hour into the first and samples 5 s later, so
//! the two blocks their snapshots write overlap. Every sample is a function of its timestamp,
//! so samples of both servers interleave into one valid series. Then:
//!
//! - Gauntlet merges the two blocks; `promtool tsdb dump` (Prometheus 3's) of the merged block
//!   equals its dump of the two inputs, meta.json counts what the block holds, and Prometheus 3
//!   over the merged block answers range queries (the histograms, `rate`, `histogram_count`,
//!   `histogram_quantile`) exactly as over the inputs;
//! - Prometheus 3 is started over the two inputs and left to compact them (vertical compaction,
//!   on its first pass a minute in): its block holds the same chunks as Gauntlet's, byte for
//!   byte, with the same stats.
//!
//! A block of the same series is also downsampled to 5m: each run of histogram chunks becomes an
//! aggregate chunk whose count, sum and counter aggregates are checked window by window against
//! the raw histograms.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::Prometheus;
use crate::common::histograms::{float_pb, int_pb};
use crate::common::receive::{now_ms, post, snappy};
use gauntlet_engine::block::{Block, BlockMeta, block_dirs};
use gauntlet_engine::compact::{MergeOptions, merge_blocks, overlap};
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use gauntlet_proto::prometheus as pb;
use prost::Message;

const METRIC: &str = "gauntlet_hist_compact";
const STEP: i64 = 15_000;
const MINUTE: i64 = 60_000;
const SERIES: [&str; 5] = [
    "int_counter",
    "float_counter",
    "int_gauge",
    "nhcb",
    "switch",
];

/// One sample.
#[derive(Debug, Clone)]
enum S {
    Float(f64),
    Int(Histogram),
    FloatH(FloatHistogram),
}

/// Buckets in one span from `offset`.
fn span(offset: i32, n: usize) -> Vec<Span> {
    vec![Span::new(offset, n as u32)]
}

fn deltas(counts: &[u64]) -> Vec<i64> {
    let mut prev = 0i64;
    counts
        .iter()
        .map(|&c| {
            let d = c as i64 - prev;
            prev = c as i64;
            d
        })
        .collect()
}

fn int_hist(
    schema: i32,
    offset: i32,
    counts: &[u64],
    zero: u64,
    hint: CounterResetHint,
) -> Histogram {
    let count = zero + counts.iter().sum::<u64>();
    Histogram {
        counter_reset_hint: hint,
        schema,
        zero_threshold: if schema == -53 { 0.0 } else { 1e-3 },
        zero_count: if schema == -53 { 0 } else { zero },
        count: if schema == -53 {
            counts.iter().sum()
        } else {
            count
        },
        sum: count as f64 * 1.25,
        positive_spans: span(offset, counts.len()),
        negative_spans: Vec::new(),
        positive_buckets: deltas(counts),
        negative_buckets: Vec::new(),
        custom_values: if schema == -53 {
            vec![0.1, 0.5, 1.0, 5.0].into()
        } else {
            Default::default()
        },
    }
}

/// The sample of series `name` at `t`, a function of time alone so that samples of both
/// servers interleave into one valid series. `start` is the first server's first sample.
fn sample(name: &str, start: i64, t: i64) -> S {
    let secs = ((t - start) / 1000) as u64;
    match name {
        "int_counter" => {
            // Two buckets appear 40 minutes in; the counter resets at 70 minutes.
            let reset = start + 70 * MINUTE;
            let s = if t >= reset {
                (t - reset) as u64 / 1000
            } else {
                secs
            };
            let n = if t >= start + 40 * MINUTE { 6 } else { 4 };
            let counts: Vec<u64> = (0..n).map(|b| s / (b as u64 + 3) + 1).collect();
            S::Int(int_hist(1, -1, &counts, s / 11, CounterResetHint::Unknown))
        }
        "float_counter" => {
            let counts: Vec<f64> = (0..5)
                .map(|b| secs as f64 / (b as f64 + 2.5) + 0.5)
                .collect();
            let count = counts.iter().sum::<f64>() + 0.25;
            S::FloatH(FloatHistogram {
                counter_reset_hint: CounterResetHint::Unknown,
                schema: 0,
                zero_threshold: 1e-3,
                zero_count: 0.25,
                count,
                sum: count * 0.75,
                positive_spans: span(0, 5),
                negative_spans: Vec::new(),
                positive_buckets: counts,
                negative_buckets: Vec::new(),
                custom_values: Default::default(),
            })
        }
        "int_gauge" => {
            let k = secs / 15;
            let counts: Vec<u64> = (0..3).map(|b| (k * 7 + b * 5) % 13 + 1).collect();
            S::Int(int_hist(2, 3, &counts, k % 4, CounterResetHint::Gauge))
        }
        "nhcb" => {
            let counts: Vec<u64> = (0..5).map(|b| secs / (b + 4) + 2).collect();
            S::Int(int_hist(-53, 0, &counts, 0, CounterResetHint::Unknown))
        }
        _ => {
            // Floats for the first 50 minutes, then histograms.
            if t < start + 50 * MINUTE {
                S::Float(secs as f64 * 0.5)
            } else {
                let counts: Vec<u64> = (0..3).map(|b| secs / (b + 2)).collect();
                S::Int(int_hist(0, 0, &counts, 1, CounterResetHint::Unknown))
            }
        }
    }
}

fn to_pb(t: i64, h: &S) -> Option<pb::Histogram> {
    match h {
        S::Float(_) => None,
        S::Int(h) => Some(int_pb(t, h)),
        S::FloatH(h) => Some(float_pb(t, h)),
    }
}

/// Remote-writes every series at the timestamps `ts`, 40 at a time; panics unless Prometheus
/// answers 204.
fn remote_write(p: &Prometheus, start: i64, ts: &[i64]) {
    for batch in ts.chunks(40) {
        let timeseries = SERIES
            .iter()
            .map(|name| {
                let samples: Vec<(i64, S)> =
                    batch.iter().map(|&t| (t, sample(name, start, t))).collect();
                pb::TimeSeries {
                    labels: vec![
                        pb::Label {
                            name: "__name__".into(),
                            value: METRIC.into(),
                        },
                        pb::Label {
                            name: "series".into(),
                            value: (*name).into(),
                        },
                    ],
                    samples: samples
                        .iter()
                        .filter_map(|(t, s)| match s {
                            S::Float(v) => Some(pb::Sample {
                                value: *v,
                                timestamp: *t,
                            }),
                            _ => None,
                        })
                        .collect(),
                    histograms: samples.iter().filter_map(|(t, s)| to_pb(*t, s)).collect(),
                    ..Default::default()
                }
            })
            .collect();
        let body = snappy(
            &pb::WriteRequest {
                timeseries,
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
}

const FLAGS: &[&str] = &[
    "--web.enable-remote-write-receiver",
    "--web.enable-admin-api",
    "--enable-feature=native-histograms",
];

/// A Prometheus 3 fed samples at `ts`, snapshotted: the one block the snapshot holds, copied
/// under `dst`.
fn prometheus_block(binary: &Path, start: i64, ts: &[i64], dst: &Path) -> PathBuf {
    let p =
        Prometheus::start_with_config(binary, |_| "global:\n  scrape_interval: 1h\n".into(), FLAGS);
    remote_write(&p, start, ts);
    let (status, _, text) = post(p.port, "/api/v1/admin/tsdb/snapshot", &[], b"").unwrap();
    assert_eq!(status, 200, "snapshot: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let snapshot = p
        .data_dir()
        .join("snapshots")
        .join(v["data"]["name"].as_str().unwrap());
    let blocks = block_dirs(&snapshot).unwrap();
    assert_eq!(blocks.len(), 1, "the snapshot holds one block: {blocks:?}");
    let out = dst.join(blocks[0].file_name().unwrap());
    crate::common::copy_dir(&blocks[0], &out);
    out
}

/// Prometheus 3's promtool next to its server binary.
fn promtool3(prometheus: &Path) -> PathBuf {
    prometheus.with_file_name("promtool")
}

/// `promtool tsdb dump` (Prometheus 3's) of the blocks under `dir`, on a scratch copy.
fn dump(promtool: &Path, dir: &Path) -> Vec<u8> {
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("db");
    crate::common::copy_dir(dir, &db);
    std::fs::create_dir_all(db.join("wal")).unwrap();
    crate::common::run_ok(
        Command::new(promtool)
            .args(["tsdb", "dump", "--min-time=0"])
            .arg(&db),
    )
    .stdout
}

/// Every chunk of every series of the block in `dir`: labels → (encoding, min, max, bytes).
type Chunks = BTreeMap<String, Vec<(u8, i64, i64, Vec<u8>)>>;

fn chunks(dir: &Path) -> Chunks {
    let b = Block::open(dir).unwrap();
    let mut refs = Vec::new();
    b.index().all_postings(&mut refs).unwrap();
    let (mut labels, mut metas) = (Vec::new(), Vec::new());
    let mut out = Chunks::new();
    for r in refs {
        b.series(r, &mut labels, &mut metas).unwrap();
        let name = gauntlet_engine::labels::Labels::from_sorted(labels.clone()).to_string();
        let list = metas
            .iter()
            .map(|m| {
                let (enc, data) = b.chunks().chunk(m.chunk_ref).unwrap();
                (enc, m.min_time, m.max_time, data.to_vec())
            })
            .collect();
        out.insert(name, list);
    }
    out
}

/// Range queries over a Prometheus 3 holding `blocks`, each answer's `data`.
fn answers(binary: &Path, blocks: &Path, from: i64, to: i64) -> Vec<(String, serde_json::Value)> {
    let p = Prometheus::start_with_args(binary, blocks, &["--enable-feature=native-histograms"]);
    let queries = [
        METRIC.to_string(),
        format!("rate({METRIC}[5m])"),
        format!("histogram_count({METRIC})"),
        format!("histogram_sum(increase({METRIC}[10m]))"),
        format!("histogram_quantile(0.9, rate({METRIC}[5m]))"),
    ];
    queries
        .iter()
        .map(|q| {
            let path = format!(
                "/api/v1/query_range?query={}&start={}&end={}&step=60",
                crate::common::urlencode(q),
                from as f64 / 1000.0,
                to as f64 / 1000.0
            );
            let v = p.get(&path);
            assert_eq!(v["status"], "success", "{q}: {v}");
            (q.clone(), v["data"].clone())
        })
        .collect()
}

/// The two overlapping input blocks Prometheus 3 writes, under `dir`; their first sample's
/// time.
fn input_blocks(binary: &Path, dir: &Path) -> (Vec<PathBuf>, i64) {
    // Four hours back, on a 2h boundary plus 10 minutes, so every run cuts alike.
    let range = 2 * 3_600_000;
    let start = (now_ms() - 4 * 3_600_000) / range * range + 10 * MINUTE;
    let a: Vec<i64> = (0..360).map(|i| start + i * STEP).collect();
    let b: Vec<i64> = (0..360)
        .map(|i| start + 30 * MINUTE + 5_000 + i * STEP)
        .collect();
    let blocks = vec![
        prometheus_block(binary, start, &a, dir),
        prometheus_block(binary, start, &b, dir),
    ];
    (blocks, start)
}

#[test]
fn prometheus_3_histogram_blocks_compact_as_prometheus_compacts_them() {
    let binary = crate::common::prometheus3();
    let promtool = promtool3(&binary);
    let scratch = tempfile::tempdir().unwrap();
    let inputs = scratch.path().join("inputs");
    let (blocks, start) = input_blocks(&binary, &inputs);

    let out = scratch.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (meta, stats) = merge_blocks(&blocks, &out, &MergeOptions::default()).unwrap();
    let meta = meta.expect("a merged block");
    let merged = out.join(meta.ulid.to_string());
    eprintln!("merge: {stats:?}");
    assert!(stats.series_rewritten > 0, "the inputs overlap");

    // promtool reads the same samples from the merged block as from the inputs.
    let want = dump(&promtool, &inputs);
    let got = dump(&promtool, &out);
    let text = String::from_utf8_lossy(&want);
    assert!(
        text.contains("{count:"),
        "histograms in the dump:\n{}",
        &text[..text.len().min(2000)]
    );
    crate::common::assert_same_dump("merged block against its inputs", &want, &got);
    // Every sample of both inputs is in the merged block once: 720 timestamps a series, of
    // which the switching series has 200 + 80 floats. (promtool's dump cannot check this: it
    // leaves out the first sample of every run of another type than float, and the one
    // after for integer histograms, in the inputs and the merged block alike.)
    let mut by_type = [0u64; 2];
    for list in chunks(&merged).values() {
        let mut ts = Vec::new();
        for (enc, _, _, data) in list {
            for (t, _) in overlap::decode_chunk(*enc, data).unwrap() {
                ts.push(t);
                by_type[usize::from(*enc != 1)] += 1;
            }
        }
        assert!(
            ts.windows(2).all(|w| w[0] < w[1]),
            "samples in time order, once"
        );
        assert_eq!(ts.len(), 720);
    }
    assert_eq!(by_type, [280, 3320]);
    assert_eq!(meta.stats.num_samples, 3600);
    assert_eq!(meta.stats.num_float_samples, 280);
    assert_eq!(meta.stats.num_histogram_samples, 3320);
    assert_eq!(meta.stats.num_series, 5);

    // Prometheus 3 answers the same over the merged block as over the inputs.
    let end = start + 125 * MINUTE;
    let over_inputs = answers(&binary, &inputs, start, end);
    let over_merged = answers(&binary, &out, start, end);
    for ((q, a), (_, b)) in over_inputs.iter().zip(&over_merged) {
        assert!(
            a["result"].as_array().is_some_and(|r| !r.is_empty()),
            "{q}: no result over the inputs"
        );
        assert_eq!(
            a, b,
            "{q}: Prometheus 3 answers differently over the merged block"
        );
    }

    // Prometheus 3 compacts the same inputs itself: the same chunks, the same stats.
    let ours = chunks(&merged);
    let theirs_dir = prometheus_compaction(&binary, &inputs, &blocks);
    let theirs = chunks(&theirs_dir);
    let theirs_meta = BlockMeta::read(&theirs_dir).unwrap();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    let mut differ = Vec::new();
    for (series, want) in &theirs {
        let got = &ours[series];
        if got != want {
            let show = |c: &[(u8, i64, i64, Vec<u8>)]| {
                c.iter()
                    .map(|(e, a, b, d)| {
                        format!("enc {e} [{a}, {b}] {} bytes h{:?}", d.len(), d.get(2))
                    })
                    .collect::<Vec<_>>()
            };
            differ.push(format!(
                "{series}:\n  prometheus {:?}\n  gauntlet   {:?}",
                show(want),
                show(got)
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "chunks differ from Prometheus 3's compaction:\n{}",
        differ.join("\n")
    );
    eprintln!(
        "prometheus: {:?}\ngauntlet: {:?}",
        theirs_meta.stats, meta.stats
    );
    assert_eq!(meta.stats.num_samples, theirs_meta.stats.num_samples);
    assert_eq!(meta.stats.num_chunks, theirs_meta.stats.num_chunks);
    assert_eq!(meta.stats.num_series, theirs_meta.stats.num_series);
}

/// Starts Prometheus 3 over the blocks in `inputs` and waits (at most 300 s) for the block
/// its compactor makes of `blocks`; returns a copy of it. Prometheus first compacts a minute
/// after it starts, and later on a loaded machine.
fn prometheus_compaction(binary: &Path, inputs: &Path, blocks: &[PathBuf]) -> PathBuf {
    let p = Prometheus::start_over(
        binary,
        inputs,
        |_| "global:\n  scrape_interval: 1h\n".into(),
        &[
            "--storage.tsdb.retention.time=100y",
            "--enable-feature=native-histograms",
        ],
    );
    let parents: Vec<String> = blocks
        .iter()
        .map(|b| b.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        for dir in block_dirs(&p.data_dir()).unwrap_or_default() {
            let Ok(meta) = BlockMeta::read(&dir) else {
                continue;
            };
            let mut got: Vec<String> = meta
                .compaction
                .parents
                .iter()
                .map(|d| d.ulid.to_string())
                .collect();
            got.sort();
            let mut want = parents.clone();
            want.sort();
            if got == want {
                let copy = inputs.parent().unwrap().join("prometheus-compacted");
                crate::common::copy_dir(&dir, &copy);
                return copy;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus 3 did not compact the inputs in 300 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The window (its timestamp) of each of `ts` as Thanos's downsampler groups them: the
/// window's last millisecond, the last sample's timestamp for the last window.
fn windows(ts: &[i64], res: i64) -> Vec<i64> {
    let last = *ts.last().unwrap();
    ts.iter()
        .map(|t| (t - t.rem_euclid(res) + res - 1).min(last))
        .collect()
}

#[test]
fn prometheus_3_histogram_block_downsamples_to_count_sum_and_counter() {
    use gauntlet_engine::chunk::{AggrChunk, AggrType, FloatHistogramIterator, XorIterator};
    use gauntlet_engine::downsample::{RES_5M, downsample_block};
    let binary = crate::common::prometheus3();
    let scratch = tempfile::tempdir().unwrap();
    let range = 2 * 3_600_000;
    let start = (now_ms() - 4 * 3_600_000) / range * range + 10 * MINUTE;
    let ts: Vec<i64> = (0..360).map(|i| start + i * STEP).collect();
    let raw = prometheus_block(&binary, start, &ts, &scratch.path().join("raw"));
    let out = scratch.path().join("5m");
    std::fs::create_dir_all(&out).unwrap();
    let stats = downsample_block(&raw, &out, RES_5M).unwrap();
    let raw_chunks = chunks(&raw);
    let down = chunks(&stats.dir);
    // And on to 1h: each histogram run's counter ends where the 5m one ends, its count is the
    // 5m counts added up.
    let hour_dir = scratch.path().join("1h");
    std::fs::create_dir_all(&hour_dir).unwrap();
    let hour = chunks(
        &downsample_block(&stats.dir, &hour_dir, gauntlet_engine::downsample::RES_1H)
            .unwrap()
            .dir,
    );
    for (series, list) in &down {
        let last_of = |list: &[(u8, i64, i64, Vec<u8>)], at: AggrType| {
            let mut total = 0.0;
            let mut last = None;
            for (_, _, _, d) in list {
                let a = AggrChunk::new(d);
                let Ok(sub) = a.get(at) else { continue };
                if sub.encoding == 3 {
                    let mut it = FloatHistogramIterator::new(sub.data).unwrap();
                    while let Some((_, h)) = it.next().unwrap() {
                        last = Some(h.count);
                    }
                } else if at == AggrType::Count && a.get(AggrType::Counter).unwrap().encoding == 3 {
                    let mut it = XorIterator::new(sub.data).unwrap();
                    while let Some((_, v)) = it.next().unwrap() {
                        total += v;
                    }
                }
            }
            (total, last)
        };
        assert_eq!(
            last_of(list, AggrType::Counter),
            last_of(&hour[series], AggrType::Counter),
            "{series}: 1h counter"
        );
        assert_eq!(
            last_of(list, AggrType::Count),
            last_of(&hour[series], AggrType::Count),
            "{series}: 1h count"
        );
    }
    assert_eq!(
        raw_chunks.keys().collect::<Vec<_>>(),
        down.keys().collect::<Vec<_>>()
    );
    for (series, raw_list) in &raw_chunks {
        // The raw histograms, as floats: (t, count, sum).
        let mut raw_h: Vec<(i64, f64, f64)> = Vec::new();
        for (enc, _, _, data) in raw_list {
            for (t, v) in overlap::decode_chunk(*enc, data).unwrap() {
                match v {
                    overlap::Value::Int(h) => raw_h.push((t, h.count as f64, h.sum)),
                    overlap::Value::FloatHist(h) => raw_h.push((t, h.count, h.sum)),
                    overlap::Value::Float(_) => {}
                }
            }
        }
        let hist_chunks: Vec<_> = down[series]
            .iter()
            .filter(|(_, _, _, d)| {
                AggrChunk::new(d)
                    .get(AggrType::Counter)
                    .is_ok_and(|s| s.encoding == 3)
            })
            .collect();
        if raw_h.is_empty() {
            assert!(hist_chunks.is_empty());
            continue;
        }
        assert_eq!(
            hist_chunks.len(),
            1,
            "{series}: one histogram aggregate chunk"
        );
        let a = AggrChunk::new(&hist_chunks[0].3);
        // count: histograms per window.
        let w = windows(&raw_h.iter().map(|s| s.0).collect::<Vec<_>>(), RES_5M);
        let mut want_count: BTreeMap<i64, f64> = BTreeMap::new();
        let mut want_sum: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
        for (win, (_, count, sum)) in w.iter().zip(&raw_h) {
            *want_count.entry(*win).or_default() += 1.0;
            let e = want_sum.entry(*win).or_default();
            e.0 += count;
            e.1 += sum;
        }
        let mut it = XorIterator::new(a.get(AggrType::Count).unwrap().data).unwrap();
        let mut got_count = BTreeMap::new();
        while let Some((t, v)) = it.next().unwrap() {
            got_count.insert(t, v);
        }
        assert_eq!(got_count, want_count, "{series}: count");
        // sum: the window's histograms added (their counts and sums add up).
        let mut it = FloatHistogramIterator::new(a.get(AggrType::Sum).unwrap().data).unwrap();
        let mut got_sum = BTreeMap::new();
        while let Some((t, h)) = it.next().unwrap() {
            got_sum.insert(t, (h.count, h.sum));
        }
        for (win, (c, s)) in &want_sum {
            let (gc, gs) = got_sum[win];
            assert!(
                (gc - c).abs() <= 1e-9 * c.abs().max(1.0),
                "{series}: sum count at {win}"
            );
            assert!(
                (gs - s).abs() <= 1e-9 * s.abs().max(1.0),
                "{series}: sum sum at {win}"
            );
        }
        // counter: the count with resets removed, at each window's end.
        let mut it = FloatHistogramIterator::new(a.get(AggrType::Counter).unwrap().data).unwrap();
        let mut got_counter = BTreeMap::new();
        while let Some((t, h)) = it.next().unwrap() {
            got_counter.insert(t, h.count);
        }
        if series.contains("int_gauge") {
            continue;
        }
        let mut total = 0.0;
        let mut prev: Option<f64> = None;
        let mut want_counter = BTreeMap::new();
        for (win, (_, count, _)) in w.iter().zip(&raw_h) {
            total += match prev {
                Some(p) if *count >= p => count - p,
                _ => *count,
            };
            prev = Some(*count);
            want_counter.insert(*win, total);
        }
        for (win, c) in &want_counter {
            let g = got_counter[win];
            assert!(
                (g - c).abs() <= 1e-9 * c.abs().max(1.0),
                "{series}: counter at {win}: {g} != {c}"
            );
        }
    }
}
