//! Native histograms in the WAL and in head blocks, against a real Prometheus 3 (Debian's
//! current build):
//!
//! - Prometheus 3 takes integer, float and custom-bucket histograms over remote write and is
//!   killed with SIGKILL; Gauntlet's head replays its `wal/` (records 7 to 10) to the same
//!   histograms.
//! - Gauntlet's head takes the same histograms and is dropped; Prometheus 3 started over a copy
//!   of its directory replays Gauntlet's `wal/` and answers the same counts and sums.
//! - Gauntlet's head cuts a block of histograms; `promtool tsdb analyze` (Prometheus 3's and
//!   Debian stable's 2.42) reads it and Prometheus 3 loading it answers the same histograms.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;

use common::Prometheus;
use common::histograms::{float_pb, int_pb};
use common::receive::{now_ms, post, snappy};
use gauntlet_engine::head::{AppendBatch, Head, HeadOptions, HeadRuntime, HistogramValue};
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use gauntlet_engine::labels::{MatchType, Matcher, hash_pairs};
use gauntlet_engine::query::{Queryable, SelectHints};
use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
use gauntlet_proto::prometheus as pb;
use prost::Message;

const METRIC: &str = "gauntlet_wal_hist";
const STEP: i64 = 15_000;
const SAMPLES: i64 = 40;

fn runtime() -> Arc<HeadRuntime> {
    HeadRuntime::start(&RuntimeConfig {
        cores: 2,
        io: IoChoice::Pread,
        pin: false,
        name: "wal-hist-test".into(),
    })
    .unwrap()
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

/// The three series: (name, samples).
fn all_series(start: i64) -> Vec<(&'static str, Vec<(i64, HistogramValue)>)> {
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

fn to_pb(t: i64, h: &HistogramValue) -> pb::Histogram {
    match h {
        HistogramValue::Int(h) => int_pb(t, h),
        HistogramValue::Float(h) => float_pb(t, h),
    }
}

fn labels(name: &str) -> [(&'static str, &str); 2] {
    [("__name__", METRIC), ("series", name)]
}

/// A remote write 1.0 body of every series' samples in `range`.
fn write_body(
    series: &[(&str, Vec<(i64, HistogramValue)>)],
    range: std::ops::Range<usize>,
) -> Vec<u8> {
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
            histograms: samples[range.clone()]
                .iter()
                .map(|(t, h)| to_pb(*t, h))
                .collect(),
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

fn prometheus3_receiver(binary: &Path) -> Prometheus {
    Prometheus::start_with_config(
        binary,
        |_| "global:\n  scrape_interval: 1h\n".into(),
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    )
}

fn float_of(h: &HistogramValue) -> FloatHistogram {
    match h {
        HistogramValue::Int(h) => h.to_float(),
        HistogramValue::Float(h) => h.clone(),
    }
}

/// What must match: everything but the counter reset hint (chunk headers set it).
fn canon(h: &FloatHistogram) -> String {
    let h = FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        ..h.clone()
    };
    format!("{h:?}")
}

/// The head's histograms of series `name`, canonical.
fn head_histograms(head: &Head, name: &str) -> Vec<(i64, String)> {
    let ms = [
        Matcher::new(MatchType::Equal, "__name__", METRIC).unwrap(),
        Matcher::new(MatchType::Equal, "series", name).unwrap(),
    ];
    let got = head
        .select(&ms, i64::MIN, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(got.len(), 1, "series {name}: {got:?}");
    let h = &got[0].histograms;
    h.ts.iter().copied().zip(h.h.iter().map(canon)).collect()
}

fn want_histograms(samples: &[(i64, HistogramValue)]) -> Vec<(i64, String)> {
    samples
        .iter()
        .map(|(t, h)| (*t, canon(&float_of(h))))
        .collect()
}

#[test]
fn prometheus3_histogram_wal_replays_in_gauntlet() {
    let binary = common::prometheus3();
    let start = (now_ms() - 3_600_000) / STEP * STEP;
    let series = all_series(start);
    let mut p = prometheus3_receiver(&binary);
    for lo in (0..SAMPLES as usize).step_by(10) {
        let body = write_body(&series, lo..lo + 10);
        let (status, _, text) = post(p.port, "/api/v1/write", &RW_HEADERS, &body).unwrap();
        assert_eq!(status, 204, "{text}");
    }
    p.kill();
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&p.data_dir().join("wal"), &dir.path().join("wal"));
    // Prometheus wrote histogram records of types 7, 8 and 9.
    let mut types = std::collections::BTreeSet::new();
    let mut r = gauntlet_engine::wal::WalReader::open(&dir.path().join("wal")).unwrap();
    while let Ok(Some(rec)) = r.next() {
        types.insert(rec[0]);
    }
    for t in [7u8, 8, 9] {
        assert!(types.contains(&t), "no record of type {t} in {types:?}");
    }
    let (head, rep) = Head::open(runtime(), dir.path(), HeadOptions::default()).unwrap();
    assert_eq!(rep.samples, 3 * SAMPLES as u64, "{rep:?}");
    assert_eq!(rep.dropped, 0, "{rep:?}");
    for (name, samples) in &series {
        assert_eq!(
            head_histograms(&head, name),
            want_histograms(samples),
            "{name}"
        );
    }
}

/// A Gauntlet head holding `series`, dropped so that its WAL is complete.
fn gauntlet_head(
    dir: &Path,
    series: &[(&str, Vec<(i64, HistogramValue)>)],
    opts: HeadOptions,
) -> Head {
    let (head, _) = Head::open(runtime(), dir, opts).unwrap();
    for lo in (0..SAMPLES as usize).step_by(10) {
        let mut batches = vec![AppendBatch::new(); head.cores()];
        for (name, samples) in series {
            let l = labels(name);
            let hash = hash_pairs(l);
            batches[head.route(hash)].push_series_with_histograms(
                hash,
                l,
                [],
                samples[lo..lo + 10].iter().cloned(),
            );
        }
        let r = futures::executor::block_on(head.append(batches)).unwrap();
        assert_eq!(r.appended_histograms, 30, "{r:?}");
    }
    head.sync_wal().unwrap();
    head
}

/// Prometheus's answer for series `name` over `[from, to]`: (timestamp ms, count, sum, buckets
/// with a count) per sample.
fn prometheus_histograms(
    p: &Prometheus,
    name: &str,
    to: i64,
    range_s: i64,
) -> Vec<(i64, f64, f64, usize)> {
    let q = common::urlencode(&format!("{METRIC}{{series=\"{name}\"}}[{range_s}s]"));
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

fn want_summary(samples: &[(i64, HistogramValue)]) -> Vec<(i64, f64, f64, usize)> {
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
fn gauntlet_histogram_wal_replays_in_prometheus3() {
    let binary = common::prometheus3();
    let start = (now_ms() - 3_600_000) / STEP * STEP;
    let series = all_series(start);
    let dir = tempfile::tempdir().unwrap();
    let head = gauntlet_head(dir.path(), &series, HeadOptions::default());
    drop(head);
    let p = Prometheus::start_over(
        &binary,
        dir.path(),
        |_| "global:\n  scrape_interval: 1h\n".into(),
        &["--enable-feature=native-histograms"],
    );
    let end = start + (SAMPLES - 1) * STEP;
    for (name, samples) in &series {
        assert_eq!(
            prometheus_histograms(&p, name, end, 3 * 3600),
            want_summary(samples),
            "{name}"
        );
    }
}

#[test]
fn gauntlet_head_block_of_histograms_reads_in_promtool_and_prometheus3() {
    let binary = common::prometheus3();
    let promtool3 = binary.with_file_name("promtool");
    // Samples in one 2h block range well in the past, then one sample 4h later so the head
    // spans more than one and a half ranges and the first range is due.
    let range = 7_200_000;
    let start = (now_ms() - 10 * 3_600_000) / range * range + 60_000;
    let series = all_series(start);
    let dir = tempfile::tempdir().unwrap();
    let head = gauntlet_head(dir.path(), &series, HeadOptions::default());
    let late = start + 4 * 3_600_000;
    let mut batches = vec![AppendBatch::new(); head.cores()];
    let l = labels("int");
    let hash = hash_pairs(l);
    batches[head.route(hash)].push_series_with_histograms(
        hash,
        l,
        [],
        [(late, HistogramValue::Int(int_hist(SAMPLES as u64, false)))],
    );
    futures::executor::block_on(head.append(batches)).unwrap();
    let (lo, hi) = head.due_block().expect("a block is due");
    let meta = head
        .cut_block(lo, hi, None, |_| {})
        .unwrap()
        .expect("a block");
    assert_eq!(meta.stats.num_histogram_samples, 3 * SAMPLES as u64);
    assert_eq!(meta.stats.num_float_samples, 0);
    let block = dir.path().join(meta.ulid.to_string());
    drop(head);
    // The WAL was checkpointed at the cut: the histogram after the block is kept through it.
    assert!(
        gauntlet_engine::wal::last_checkpoint(&dir.path().join("wal"))
            .unwrap()
            .is_some()
    );
    let (head, rep) = Head::open(runtime(), dir.path(), HeadOptions::default()).unwrap();
    assert_eq!((rep.samples, rep.dropped), (1, 0), "{rep:?}");
    assert_eq!(
        head_histograms(&head, "int"),
        want_histograms(&[(late, HistogramValue::Int(int_hist(SAMPLES as u64, false)))])
    );
    drop(head);

    for promtool in [Some(promtool3), common::which("promtool")]
        .into_iter()
        .flatten()
    {
        let out = common::run_ok(
            std::process::Command::new(&promtool)
                .args(["tsdb", "analyze"])
                .arg(dir.path())
                .arg(meta.ulid.to_string()),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Series: 3"), "{}: {text}", promtool.display());
    }

    let only_block = tempfile::tempdir().unwrap();
    common::copy_dir(&block, &only_block.path().join(meta.ulid.to_string()));
    let p = Prometheus::start(&binary, only_block.path());
    let end = start + (SAMPLES - 1) * STEP;
    for (name, samples) in &series {
        assert_eq!(
            prometheus_histograms(&p, name, end, 3 * 3600),
            want_summary(samples),
            "{name}"
        );
    }
}
