//! Native histogram data: request latencies of an application observed as Prometheus client
//! libraries expose them with native histograms on (exponential schema 3, the default zero
//! threshold), scraped every interval, with an occasional process restart resetting the
//! counters. Written as 2 h blocks of histogram chunks cut as Prometheus's head cuts them, for
//! the `histogram` scenario of the runner.
//!
//! One series per target, pod and handler: `http_request_duration_seconds{handler, instance,
//! job="app-native", pod}`; the same config gives the same data bit for bit.

use std::collections::BTreeMap;
use std::path::Path;

use gauntlet_engine::block::{
    BlockMeta, BlockWriter, CutOptions, EncodedChunk, HistogramChunkCutter,
};
use gauntlet_engine::histogram::{Histogram, Span};
use gauntlet_engine::labels::Labels;

use super::rng::Rng;
use super::{GenConfig, GenError};

/// The native histogram metric's name.
pub const NATIVE_METRIC: &str = "http_request_duration_seconds";

/// Handlers with their requests per second and median latency, seconds.
const HANDLERS: [(&str, f64, f64); 4] = [
    ("/api/v1/query", 6.0, 0.04),
    ("/api/v1/query_range", 2.0, 0.12),
    ("/api/v1/series", 3.0, 0.015),
    ("/metrics", 0.1, 0.003),
];

/// The schema client libraries use by default: 8 buckets per power of two.
const SCHEMA: i32 = 3;
/// Prometheus client libraries' default zero threshold (2^-128).
const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;
/// Chance per scrape that the process restarts and its counters start again at zero.
const RESET_CHANCE: f64 = 1.0 / 2000.0;
/// Empty buckets a span may hold before it is split, as client libraries encode them.
const MAX_GAP: i32 = 2;

/// One generated native histogram series: labels and its samples in time order.
#[derive(Clone, Debug)]
pub struct NativeSeries {
    /// Labels, including `__name__`.
    pub labels: Labels,
    /// Sample timestamps, ms.
    pub ts: Vec<i64>,
    /// The integer histogram scraped at each timestamp.
    pub h: Vec<Histogram>,
}

/// The latency state of one series: cumulative counts per bucket index.
struct Observer {
    rate: f64,
    median: f64,
    buckets: BTreeMap<i32, u64>,
    count: u64,
    sum: f64,
}

impl Observer {
    /// Observes the requests of one scrape interval.
    fn observe(&mut self, rng: &mut Rng, interval_s: f64) {
        let n = rng.round_stochastic(self.rate * interval_s);
        for _ in 0..n {
            // Log-logistic around the median: ln(u / (1 - u)) is logistic noise.
            let u = rng.f64().clamp(1e-9, 1.0 - 1e-9);
            let v = self.median * (0.5 * (u / (1.0 - u)).ln()).exp();
            *self.buckets.entry(bucket_index(v)).or_default() += 1;
            self.count += 1;
            self.sum += v;
        }
    }

    fn reset(&mut self) {
        self.buckets.clear();
        self.count = 0;
        self.sum = 0.0;
    }

    /// The histogram as a client exposes it: spans over the populated indices, joined over
    /// gaps of at most [`MAX_GAP`] empty buckets, counts as deltas.
    fn histogram(&self) -> Histogram {
        let mut spans: Vec<Span> = Vec::new();
        let mut deltas: Vec<i64> = Vec::new();
        let (mut last_idx, mut last_count) = (None::<i32>, 0i64);
        for (&idx, &c) in &self.buckets {
            match last_idx {
                Some(prev) if idx - prev - 1 <= MAX_GAP => {
                    for _ in prev + 1..idx {
                        deltas.push(-last_count);
                        last_count = 0;
                    }
                    if let Some(s) = spans.last_mut() {
                        s.length += (idx - prev) as u32;
                    }
                }
                Some(prev) => spans.push(Span::new(idx - prev - 1, 1)),
                None => spans.push(Span::new(idx, 1)),
            }
            deltas.push(c as i64 - last_count);
            last_count = c as i64;
            last_idx = Some(idx);
        }
        Histogram {
            schema: SCHEMA,
            zero_threshold: ZERO_THRESHOLD,
            count: self.count,
            sum: self.sum,
            positive_spans: spans,
            positive_buckets: deltas,
            ..Histogram::default()
        }
    }
}

/// The schema-3 bucket of a positive observation: the smallest index `i` with
/// `v <= 2^(i / 8)`.
fn bucket_index(v: f64) -> i32 {
    (v.log2() * f64::from(1 << SCHEMA)).ceil() as i32
}

/// Generates the native histogram series of `cfg`: `targets × pods_per_target × 4` series,
/// one sample per scrape interval over the config's time range.
pub fn native_series(cfg: &GenConfig) -> Result<Vec<NativeSeries>, GenError> {
    cfg.validate()?;
    let interval_s = cfg.scrape_interval_ms as f64 / 1000.0;
    let mut out = Vec::new();
    for t in 0..cfg.targets {
        let host = format!("host-{t:04}:8082");
        for p in 0..cfg.pods_per_target.max(1) {
            let pod = format!("app-{t:04}-{p:02}");
            let mut rng = Rng::new(cfg.seed ^ 0x6e61_7469_7665, (t * 10_007 + p) as u64);
            let offset = rng.below(cfg.scrape_interval_ms as u64) as i64;
            for &(handler, rate, median) in &HANDLERS {
                let labels = Labels::from_pairs([
                    ("__name__", NATIVE_METRIC),
                    ("handler", handler),
                    ("instance", host.as_str()),
                    ("job", "app-native"),
                    ("pod", pod.as_str()),
                ]);
                let mut obs = Observer {
                    rate,
                    median,
                    buckets: BTreeMap::new(),
                    count: 0,
                    sum: 0.0,
                };
                let mut s = NativeSeries {
                    labels,
                    ts: Vec::new(),
                    h: Vec::new(),
                };
                let mut ts = cfg.start_ms + offset;
                while ts < cfg.start_ms + cfg.duration_ms {
                    if rng.chance(RESET_CHANCE) {
                        obs.reset();
                    }
                    obs.observe(&mut rng, interval_s);
                    s.ts.push(ts);
                    s.h.push(obs.histogram());
                    ts += cfg.scrape_interval_ms;
                }
                out.push(s);
            }
        }
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// Generates the native histogram data of `cfg` and writes it under `dir` as blocks of
/// `block_range_ms` aligned to multiples of it, histogram chunks cut as Prometheus's head cuts
/// them; returns the metas of the blocks written.
pub fn write_native_blocks(
    cfg: &GenConfig,
    dir: &Path,
    block_range_ms: i64,
) -> Result<Vec<BlockMeta>, GenError> {
    let series = native_series(cfg)?;
    std::fs::create_dir_all(dir)?;
    let first = cfg.start_ms.div_euclid(block_range_ms) * block_range_ms;
    let mut metas = Vec::new();
    let mut lo = first;
    while lo < cfg.start_ms + cfg.duration_ms {
        let hi = lo + block_range_ms;
        let mut w = BlockWriter::create(dir, CutOptions::default())?;
        for s in &series {
            let a = s.ts.partition_point(|&t| t < lo);
            let z = s.ts.partition_point(|&t| t < hi);
            if a == z {
                continue;
            }
            let mut cutter = HistogramChunkCutter::new(block_range_ms);
            for (t, h) in s.ts[a..z].iter().zip(&s.h[a..z]) {
                cutter
                    .append_histogram(*t, h)
                    .map_err(|e| GenError::InvalidConfig(format!("{}: {e}", s.labels)))?;
            }
            let chunks = cutter.finish();
            w.add_encoded_chunks(
                &s.labels,
                chunks.iter().map(|c| EncodedChunk {
                    encoding: c.encoding,
                    min_time: c.min_time,
                    max_time: c.max_time,
                    data: &c.data,
                }),
            )?;
        }
        w.set_time_range(lo, hi);
        if let Some(meta) = w.finish(None)? {
            metas.push(meta);
        }
        lo = hi;
    }
    Ok(metas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GenConfig {
        GenConfig {
            targets: 2,
            pods_per_target: 1,
            duration_ms: 3_600_000,
            ..GenConfig::default()
        }
    }

    #[test]
    fn every_histogram_is_valid_and_its_buckets_add_up_to_its_count() {
        let series = native_series(&small()).unwrap();
        assert_eq!(series.len(), 2 * HANDLERS.len());
        for s in &series {
            assert_eq!(s.ts.len(), 240);
            for h in &s.h {
                h.validate().unwrap();
            }
            let last = s.h.last().unwrap();
            let total: i64 = last
                .positive_buckets
                .iter()
                .scan(0i64, |c, d| {
                    *c += d;
                    Some(*c)
                })
                .sum();
            assert_eq!(total as u64, last.count);
        }
    }

    #[test]
    fn the_same_config_gives_the_same_data() {
        let a = native_series(&small()).unwrap();
        let b = native_series(&small()).unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.labels, y.labels);
            assert_eq!(x.h, y.h);
        }
    }

    #[test]
    fn blocks_hold_every_sample_as_histogram_chunks_in_2h_ranges() {
        let cfg = GenConfig {
            duration_ms: 3 * 3_600_000,
            ..small()
        };
        let dir = tempfile::tempdir().unwrap();
        let metas = write_native_blocks(&cfg, dir.path(), 2 * 3_600_000).unwrap();
        assert_eq!(metas.len(), 2);
        let total: usize = native_series(&cfg)
            .unwrap()
            .iter()
            .map(|s| s.ts.len())
            .sum();
        let written: u64 = metas.iter().map(|m| m.stats.num_histogram_samples).sum();
        assert_eq!(written, total as u64);
        for m in &metas {
            assert_eq!(m.stats.num_float_samples, 0);
            assert_eq!(m.max_time - m.min_time, 2 * 3_600_000);
        }
    }

    #[test]
    fn bucket_indices_follow_schema_3() {
        assert_eq!(bucket_index(1.0), 0);
        assert_eq!(bucket_index(2.0), 8);
        assert_eq!(bucket_index(1.05), 1);
        assert_eq!(bucket_index(0.5), -8);
    }
}
