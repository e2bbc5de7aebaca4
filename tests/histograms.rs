//! Native histograms on the read-and-serve path against a real Prometheus 3: Prometheus takes
//! integer, float and custom-bucket histograms (and a series switching from floats to
//! histograms) over remote write and snapshots them into a block; `gauntlet tools block dump`
//! of that block must equal promtool 3's dump byte for byte, `inspect` must count its histogram
//! samples, `gauntlet store` must serve its histogram chunks over the StoreAPI with Thanos's
//! chunk types and the block's own bytes (read by the Python grpcio client), and `gauntlet
//! query` over two replica stores must merge and deduplicate them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::receive::{now_ms, post, snappy};
use common::*;
use gauntlet_engine::block::block_dirs;
use gauntlet_proto::prometheus as pb;
use prost::Message;
use serde_json::Value;

const METRIC: &str = "gauntlet_native";
const STEP: i64 = 15_000;
const SAMPLES: usize = 400;
/// The stale marker's bits: a histogram sample with this sum marks its series stale.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn spans(s: &[(i32, u32)]) -> Vec<pb::BucketSpan> {
    s.iter()
        .map(|&(offset, length)| pb::BucketSpan { offset, length })
        .collect()
}

/// Deltas of absolute counts, as integer histograms carry them.
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

/// An integer histogram at schema 3 with negative, zero and positive buckets; counts grow with
/// `i` and reach beyond 2^53, where an integer and its float spelling part ways.
fn int_hist(t: i64, i: u64) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    let big = if i % 50 == 49 { 1u64 << 54 } else { 0 };
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

/// Every series this file writes, as remote-write series for samples `range` (by index).
fn request(start: i64, range: std::ops::Range<usize>) -> Vec<pb::TimeSeries> {
    let at = |i: usize| start + i as i64 * STEP;
    let mut out = Vec::new();
    let each = |f: &dyn Fn(i64, u64) -> pb::Histogram| -> Vec<pb::Histogram> {
        range.clone().map(|i| f(at(i), i as u64)).collect()
    };
    out.push(pb::TimeSeries {
        labels: labels("int"),
        histograms: each(&int_hist),
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
        .map(|i| int_hist(at(i), i as u64))
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

/// A block (or two) of native histograms written by Prometheus 3, in `dir`; returns the
/// prometheus binary's path.
fn prometheus3_block(dir: &Path) -> PathBuf {
    let binary = prometheus3();
    // Two hours back, on a 2 h boundary plus 7m13s, so that the head spans a block boundary.
    let range = 7_200_000;
    let start = (now_ms() - 2 * 3_600_000) / range * range - 3_600_000 + 433_000;
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
        remote_write(&p, request(start, lo..lo + 50));
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
