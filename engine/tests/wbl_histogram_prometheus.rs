//! Out-of-order native histograms against a real Prometheus 3 (Debian's current build), both
//! sides with an out-of-order window of an hour, through the write-behind log `wbl/`:
//!
//! - Prometheus 3 takes integer, float and custom-bucket histograms over remote write, every
//!   other one late, and is killed with SIGKILL; its `wbl/` holds histogram records, and
//!   Gauntlet's head opening the directory holds every histogram written.
//! - Gauntlet's head takes the same writes and is dropped without closing its logs; Prometheus
//!   3 started over a copy of the directory answers every histogram. The head then cuts a block
//!   of in-order and out-of-order histograms merged: `promtool tsdb analyze` of Prometheus 3
//!   reads it, and Prometheus 3 loading it alone answers every histogram again.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use common::Prometheus;
use common::receive::{now_ms, post, snappy};
use gauntlet_engine::head::{AppendBatch, Head, HeadOptions, HeadRuntime, HistogramValue};
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use gauntlet_engine::labels::{MatchType, Matcher, hash_pairs};
use gauntlet_engine::query::{Queryable, SelectHints};
use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
use gauntlet_proto::prometheus as pb;
use prost::Message;

const METRIC: &str = "gauntlet_ooo_hist";
const STEP: i64 = 15_000;
const SAMPLES: i64 = 40;
const HOUR: i64 = 3_600_000;

fn runtime() -> Arc<HeadRuntime> {
    HeadRuntime::start(&RuntimeConfig {
        cores: 2,
        io: IoChoice::Pread,
        pin: false,
        name: "wbl-hist-test".into(),
    })
    .unwrap()
}

fn head_options() -> HeadOptions {
    HeadOptions {
        ooo_window_ms: HOUR,
        ..HeadOptions::default()
    }
}

/// Prometheus with an hour's out-of-order window, no scraping.
fn config(_port: u16) -> String {
    "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: 1h\n".into()
}

/// A counter histogram after `n` steps: three positive buckets (schema 1 or custom bounds),
/// a zero bucket for the exponential ones, every count growing with `n`.
fn int_hist(n: u64, custom: bool) -> Histogram {
    let (a, b) = (n, 2 * n);
    let zero = u64::from(!custom);
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: if custom { -53 } else { 1 },
        zero_threshold: if custom { 0.0 } else { 0.001 },
        zero_count: zero * (n + 1),
        count: a + b + 3 + zero * (n + 1),
        sum: n as f64 * 1.25 + 0.5,
        positive_spans: vec![Span::new(0, 2), Span::new(1, 1)],
        negative_spans: vec![],
        positive_buckets: vec![a as i64 + 1, b as i64 - a as i64, -(b as i64)],
        negative_buckets: vec![],
        custom_values: if custom {
            vec![0.1, 0.5, 1.0, 5.0].into()
        } else {
            Arc::from([])
        },
    }
}

type Samples = Vec<(i64, HistogramValue)>;

/// The three series, (name, samples in time order).
fn all_series(start: i64) -> Vec<(&'static str, Samples)> {
    let ts = |i: i64| start + i * STEP;
    vec![
        (
            "int",
            (0..SAMPLES)
                .map(|i| (ts(i), HistogramValue::Int(int_hist(i as u64, false))))
                .collect(),
        ),
        (
            "float",
            (0..SAMPLES)
                .map(|i| {
                    let mut f = int_hist(i as u64, false).to_float();
                    f.sum += 0.125;
                    f.positive_buckets[0] += 0.5;
                    f.count += 0.5;
                    (ts(i), HistogramValue::Float(f))
                })
                .collect(),
        ),
        (
            "nhcb",
            (0..SAMPLES)
                .map(|i| (ts(i), HistogramValue::Int(int_hist(i as u64, true))))
                .collect(),
        ),
    ]
}

/// The order the samples are written in: the even steps, then the odd ones newest first, so
/// that every odd one but the newest arrives out of order.
fn writes(samples: &Samples) -> [Samples; 2] {
    let even = samples.iter().step_by(2).cloned().collect();
    let odd = samples.iter().skip(1).step_by(2).rev().cloned().collect();
    [even, odd]
}

fn spans_pb(spans: &[Span]) -> Vec<pb::BucketSpan> {
    spans
        .iter()
        .map(|s| pb::BucketSpan {
            offset: s.offset,
            length: s.length,
        })
        .collect()
}

fn to_pb(t: i64, h: &HistogramValue) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    match h {
        HistogramValue::Int(h) => pb::Histogram {
            count: Some(Count::CountInt(h.count)),
            zero_count: Some(ZeroCount::ZeroCountInt(h.zero_count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            positive_spans: spans_pb(&h.positive_spans),
            positive_deltas: h.positive_buckets.clone(),
            custom_values: h.custom_values.to_vec(),
            timestamp: t,
            ..Default::default()
        },
        HistogramValue::Float(h) => pb::Histogram {
            count: Some(Count::CountFloat(h.count)),
            zero_count: Some(ZeroCount::ZeroCountFloat(h.zero_count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            positive_spans: spans_pb(&h.positive_spans),
            positive_counts: h.positive_buckets.clone(),
            custom_values: h.custom_values.to_vec(),
            timestamp: t,
            ..Default::default()
        },
    }
}

fn labels(name: &str) -> [(&'static str, &str); 2] {
    [("__name__", METRIC), ("series", name)]
}

/// A remote write 1.0 body of the given samples of each series.
fn write_body(series: &[(&str, Samples)]) -> Vec<u8> {
    let ts = series
        .iter()
        .map(|(name, samples)| pb::TimeSeries {
            labels: labels(name)
                .iter()
                .map(|(n, v)| pb::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            histograms: samples.iter().map(|(t, h)| to_pb(*t, h)).collect(),
            ..Default::default()
        })
        .collect();
    snappy(
        &pb::WriteRequest {
            timeseries: ts,
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

const RW_HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

/// Everything but the counter reset hint (chunk headers set it), as text.
fn canon(h: &FloatHistogram) -> String {
    let h = FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        ..h.clone()
    };
    format!("{h:?}")
}

fn float_of(h: &HistogramValue) -> FloatHistogram {
    match h {
        HistogramValue::Int(h) => h.to_float(),
        HistogramValue::Float(h) => h.clone(),
    }
}

/// The histograms of series `name` that `q` holds, canonical.
fn held(q: &dyn Queryable, name: &str) -> Vec<(i64, String)> {
    let ms = [
        Matcher::new(MatchType::Equal, "__name__", METRIC).unwrap(),
        Matcher::new(MatchType::Equal, "series", name).unwrap(),
    ];
    let got = q
        .select(&ms, i64::MIN, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(got.len(), 1, "series {name}: {got:?}");
    let h = &got[0].histograms;
    h.ts.iter().copied().zip(h.h.iter().map(canon)).collect()
}

fn want(samples: &Samples) -> Vec<(i64, String)> {
    samples
        .iter()
        .map(|(t, h)| (*t, canon(&float_of(h))))
        .collect()
}

/// Record types in the log directory `dir`.
fn record_types(dir: &Path) -> BTreeSet<u8> {
    let mut types = BTreeSet::new();
    let mut r = gauntlet_engine::wal::WalReader::open(dir).unwrap();
    while let Ok(Some(rec)) = r.next() {
        types.insert(rec[0]);
    }
    types
}

/// Prometheus's answer for series `name` up to `to` (ms): (timestamp ms, count, sum, buckets
/// with a count) per sample.
fn prometheus_histograms(p: &Prometheus, name: &str, to: i64) -> Vec<(i64, f64, f64, usize)> {
    let q = common::urlencode(&format!("{METRIC}{{series=\"{name}\"}}[3h]"));
    let v = p.get(&format!(
        "/api/v1/query?query={q}&time={}",
        to as f64 / 1000.0
    ));
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{name}: {v}");
    result[0]["histograms"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no histograms in {v}"))
        .iter()
        .map(|s| {
            let t = (s[0].as_f64().unwrap() * 1000.0).round() as i64;
            let h = &s[1];
            let f = |k: &str| h[k].as_str().unwrap().parse::<f64>().unwrap();
            let buckets = h["buckets"].as_array().map_or(0, Vec::len);
            (t, f("count"), f("sum"), buckets)
        })
        .collect()
}

fn want_summary(samples: &Samples) -> Vec<(i64, f64, f64, usize)> {
    samples
        .iter()
        .map(|(t, h)| {
            let f = float_of(h);
            let buckets = f.positive_buckets.iter().filter(|&&c| c != 0.0).count()
                + usize::from(f.zero_count != 0.0);
            (*t, f.count, f.sum, buckets)
        })
        .collect()
}

#[test]
fn prometheus3_ooo_histogram_wbl_replays_in_gauntlet() {
    let binary = common::prometheus3();
    let start = (now_ms() - HOUR / 2) / STEP * STEP;
    let series = all_series(start);
    let mut p = Prometheus::start_with_config(
        &binary,
        config,
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    );
    for part in 0..2 {
        let batch: Vec<(&str, Samples)> = series
            .iter()
            .map(|(name, s)| (*name, writes(s)[part].clone()))
            .collect();
        let (status, _, text) =
            post(p.port, "/api/v1/write", &RW_HEADERS, &write_body(&batch)).unwrap();
        assert_eq!(status, 204, "part {part}: {text}");
    }
    p.kill();
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&p.data_dir().join("wal"), &dir.path().join("wal"));
    common::copy_dir(&p.data_dir().join("wbl"), &dir.path().join("wbl"));
    // Prometheus logged the late integer, float and custom-bucket histograms to its WBL.
    let types = record_types(&dir.path().join("wbl"));
    for t in [7u8, 8, 9] {
        assert!(types.contains(&t), "no WBL record of type {t}: {types:?}");
    }
    let (head, rep) = Head::open(runtime(), dir.path(), head_options()).unwrap();
    assert_eq!(rep.skipped_records, 0, "{rep:?}");
    assert_eq!(rep.wbl_samples, 3 * (SAMPLES as u64 / 2 - 1), "{rep:?}");
    for (name, samples) in &series {
        assert_eq!(held(&head, name), want(samples), "{name}");
    }
}

#[test]
fn gauntlet_ooo_histograms_reach_prometheus3_through_the_wbl_and_a_block() {
    let binary = common::prometheus3();
    let promtool3 = binary.with_file_name("promtool");
    // Every sample in one 2h block range well in the past.
    let range = 2 * HOUR;
    let start = (now_ms() - 10 * HOUR) / range * range + 60_000;
    let series = all_series(start);
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime(), dir.path(), head_options()).unwrap();
    for part in 0..2 {
        let mut batches = vec![AppendBatch::new(); head.cores()];
        for (name, samples) in &series {
            let l = labels(name);
            let hash = hash_pairs(l);
            batches[head.route(hash)].push_series_with_histograms(
                hash,
                l,
                [],
                writes(samples)[part].iter().cloned(),
            );
        }
        let r = futures::executor::block_on(head.append(batches)).unwrap();
        assert_eq!(r.appended_histograms, 3 * SAMPLES as u64 / 2, "{r:?}");
        if part == 1 {
            assert_eq!(r.appended_ooo, 3 * (SAMPLES as u64 / 2 - 1), "{r:?}");
        }
    }
    head.sync_wal().unwrap();
    for (name, samples) in &series {
        assert_eq!(held(&head, name), want(samples), "{name}");
    }
    let types = record_types(&dir.path().join("wbl"));
    assert_eq!(types, [7u8, 8, 9].into_iter().collect(), "WBL record types");

    // Prometheus 3 replays Gauntlet's WAL and WBL.
    let end = start + (SAMPLES - 1) * STEP;
    {
        let p = Prometheus::start_over(
            &binary,
            dir.path(),
            config,
            &["--enable-feature=native-histograms"],
        );
        for (name, samples) in &series {
            assert_eq!(
                prometheus_histograms(&p, name, end),
                want_summary(samples),
                "Prometheus 3 over Gauntlet's WAL and WBL: {name}"
            );
        }
    }

    // The block of the range merges in-order and out-of-order histograms.
    let meta = head
        .cut_block(start, start / range * range + range, None, |_| {})
        .unwrap()
        .expect("a block");
    assert_eq!(meta.stats.num_histogram_samples, 3 * SAMPLES as u64);
    assert_eq!(meta.stats.num_float_samples, 0);
    drop(head);
    let out = common::run_ok(
        std::process::Command::new(&promtool3)
            .args(["tsdb", "analyze"])
            .arg(dir.path())
            .arg(meta.ulid.to_string()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Series: 3"), "{text}");
    let only_block = tempfile::tempdir().unwrap();
    let block = dir.path().join(meta.ulid.to_string());
    common::copy_dir(&block, &only_block.path().join(meta.ulid.to_string()));
    let blocks = gauntlet_engine::query::LocalBlocks::open(only_block.path()).unwrap();
    for (name, samples) in &series {
        assert_eq!(held(&blocks, name), want(samples), "block: {name}");
    }
    let p = Prometheus::start(&binary, only_block.path());
    for (name, samples) in &series {
        assert_eq!(
            prometheus_histograms(&p, name, end),
            want_summary(samples),
            "Prometheus 3 over the block: {name}"
        );
    }
}
