//! Native histogram fixtures of the head's WAL and WBL tests against Prometheus 3
//! (`engine/tests/peers/wal_histogram_prometheus.rs`, `engine/tests/peers/wbl_histogram_prometheus.rs`):
//! three series of counter histograms (integer, float, custom buckets), their remote-write
//! form, and the canonical forms both sides are compared in.

use std::sync::Arc;

use gauntlet_engine::head::{HeadRuntime, HistogramValue};
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
use gauntlet_proto::prometheus as pb;
use prost::Message;

use super::Prometheus;
use super::histograms::{float_pb, int_pb};
use super::receive::snappy;

/// Scrape interval of the fixtures, ms.
pub const STEP: i64 = 15_000;
/// Samples per series.
pub const SAMPLES: i64 = 40;

/// Series (name, samples in time order).
pub type Samples = Vec<(i64, HistogramValue)>;

/// Headers of a remote write 1.0 request.
pub const RW_HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

/// A two-core head runtime named `name`, pread I/O, unpinned.
pub fn runtime(name: &str) -> Arc<HeadRuntime> {
    HeadRuntime::start(&RuntimeConfig {
        cores: 2,
        io: IoChoice::Pread,
        pin: false,
        name: name.into(),
    })
    .unwrap()
}

/// A counter histogram after `n` steps: three positive buckets (schema 1 or custom bounds),
/// a zero bucket for the exponential ones, every count growing with `n`.
pub fn int_hist(n: u64, custom: bool) -> Histogram {
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
            Default::default()
        },
    }
}

/// The three series from `start` (ms), [`SAMPLES`] each: `int`, `float` (the integer one as
/// floats, a little off) and `nhcb` (custom buckets).
pub fn all_series(start: i64) -> Vec<(&'static str, Samples)> {
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

/// A head histogram as remote write carries it.
pub fn to_pb(t: i64, h: &HistogramValue) -> pb::Histogram {
    match h {
        HistogramValue::Int(h) => int_pb(t, h),
        HistogramValue::Float(h) => float_pb(t, h),
    }
}

/// The labels of series `name` of `metric`.
pub fn labels<'a>(metric: &'a str, name: &'a str) -> [(&'static str, &'a str); 2] {
    [("__name__", metric), ("series", name)]
}

/// A remote write 1.0 body (snappy) of each series' samples, series of `metric`.
pub fn write_body(metric: &str, series: &[(&str, &[(i64, HistogramValue)])]) -> Vec<u8> {
    let ts = series
        .iter()
        .map(|(name, samples)| pb::TimeSeries {
            labels: labels(metric, name)
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

/// A head histogram with float counts.
pub fn float_of(h: &HistogramValue) -> FloatHistogram {
    match h {
        HistogramValue::Int(h) => h.to_float(),
        HistogramValue::Float(h) => h.clone(),
    }
}

/// What must match: everything but the counter reset hint (chunk headers set it).
pub fn canon(h: &FloatHistogram) -> String {
    let h = FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        ..h.clone()
    };
    format!("{h:?}")
}

/// Prometheus's answer for `metric{series="name"}[range]` at `to` (ms): (timestamp ms, count,
/// sum, buckets with a count) per sample.
pub fn prometheus_histograms(
    p: &Prometheus,
    (metric, name): (&str, &str),
    to: i64,
    range: &str,
) -> Vec<(i64, f64, f64, usize)> {
    let q = super::urlencode(&format!("{metric}{{series=\"{name}\"}}[{range}]"));
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

/// [`prometheus_histograms`] as the samples given should read.
pub fn want_summary(samples: &[(i64, HistogramValue)]) -> Vec<(i64, f64, f64, usize)> {
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
