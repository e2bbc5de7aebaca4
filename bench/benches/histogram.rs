//! Native histogram chunk decoding (encodings 2 and 3), reported per sample, on chunks Gauntlet's
//! head cut rule makes of generated latency histograms: 2 h at 15 s (480 samples a series) of
//! counters taking about 100 observations a scrape, bell-shaped over 2^-5..2^5 s. Group
//! `histogram_int` holds integer histograms (schema 3, about 80 buckets in use; schema 0, about
//! 10; custom buckets with 12 bounds), group `histogram_float` the same samples as float
//! histograms. Each group times the iterator reusing one histogram (a query's loop), the
//! timestamps alone, the whole-chunk decoder that allocates every sample, the integer chunks
//! decoded as float histograms into a batch whose histograms are reused (what a PromQL worker
//! does), whole and for the count and sum only, and, for comparison, appending each chunk's
//! samples to a fresh appender (validation included).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gauntlet_engine::block::{CutHistogramChunk, HistogramChunkCutter};
use gauntlet_engine::chunk::{
    Encoding, FloatHistogramAppender, FloatHistogramIterator, HistogramAppender, HistogramBatch,
    HistogramIterator, decode_float_histogram_chunk, decode_histogram_chunk,
    decode_histogram_chunks_reusing, decode_histogram_stats_reusing,
};
use gauntlet_engine::histogram::{
    CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram, Span,
};

const STEP_MS: i64 = 15_000;
const SAMPLES: usize = 480;
const CHUNK_RANGE_MS: i64 = 7_200_000;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A series' state: absolute counts by bucket index, zero count, sum.
struct Counter {
    schema: i32,
    bounds: Arc<[f64]>,
    buckets: std::collections::BTreeMap<i32, u64>,
    count: u64,
    sum: f64,
}

impl Counter {
    /// Records one observation of `log2(v)` = `e`.
    fn observe(&mut self, e: f64) {
        let idx = if self.bounds.is_empty() {
            // Exponential bucket `i` holds (2^((i-1)/2^schema), 2^(i/2^schema)].
            (e * f64::from(1 << self.schema)).ceil() as i32
        } else {
            let v = e.exp2();
            self.bounds.partition_point(|&b| b < v) as i32
        };
        *self.buckets.entry(idx).or_insert(0) += 1;
        self.count += 1;
        self.sum += e.exp2();
    }

    fn sample(&self) -> Histogram {
        let mut spans: Vec<Span> = Vec::new();
        let mut deltas = Vec::with_capacity(self.buckets.len());
        let (mut last, mut prev) = (0i32, 0i64);
        for (n, (&i, &c)) in self.buckets.iter().enumerate() {
            if n > 0 && i == last + 1 {
                spans.last_mut().unwrap().length += 1;
            } else {
                spans.push(Span::new(if n == 0 { i } else { i - last - 1 }, 1));
            }
            deltas.push(c as i64 - prev);
            prev = c as i64;
            last = i;
        }
        Histogram {
            counter_reset_hint: CounterResetHint::Unknown,
            schema: self.schema,
            zero_threshold: if self.bounds.is_empty() {
                2f64.powi(-128)
            } else {
                0.0
            },
            count: self.count,
            sum: self.sum,
            positive_spans: spans,
            positive_buckets: deltas,
            custom_values: self.bounds.clone().into(),
            ..Histogram::default()
        }
    }
}

/// One generated series: `SAMPLES` integer histograms, 15 s apart from a range start.
fn series(schema: i32, bounds: &[f64], seed: u64) -> Vec<(i64, Histogram)> {
    let mut rng = Rng(seed);
    let mut c = Counter {
        schema,
        bounds: Arc::from(bounds),
        buckets: Default::default(),
        count: 0,
        sum: 0.0,
    };
    (0..SAMPLES)
        .map(|k| {
            for _ in 0..80 + rng.next() % 40 {
                // Three uniforms summed: a bell between -5 and 5.
                let e = (rng.unit() + rng.unit() + rng.unit()) * 10.0 / 3.0 - 5.0;
                c.observe(e);
            }
            (k as i64 * STEP_MS, c.sample())
        })
        .collect()
}

fn all_series() -> Vec<Vec<(i64, Histogram)>> {
    let bounds: Vec<f64> = (-5..7).map(|e| 2f64.powi(e)).collect();
    let mut out = Vec::new();
    for seed in 0..4 {
        out.push(series(3, &[], seed));
        out.push(series(0, &[], 100 + seed));
        out.push(series(CUSTOM_BUCKETS_SCHEMA, &bounds, 200 + seed));
    }
    out
}

/// The chunks the cut rule makes of every series, as integer or float histograms.
fn chunks(float: bool) -> Vec<CutHistogramChunk> {
    let mut out = Vec::new();
    for s in all_series() {
        let mut c = HistogramChunkCutter::new(CHUNK_RANGE_MS);
        for (t, h) in &s {
            if float {
                c.append_float_histogram(*t, &h.to_float()).unwrap();
            } else {
                c.append_histogram(*t, h).unwrap();
            }
        }
        out.extend(c.finish());
    }
    out
}

fn histogram_int(c: &mut Criterion) {
    let chunks = chunks(false);
    let decoded: Vec<Vec<(i64, Histogram)>> = chunks
        .iter()
        .map(|c| decode_histogram_chunk(&c.data).unwrap())
        .collect();
    let samples: usize = decoded.iter().map(Vec::len).sum();
    let bytes: usize = chunks.iter().map(|c| c.data.len()).sum();
    assert!(chunks.iter().all(|c| c.encoding == Encoding::Histogram));
    let buckets: usize = decoded
        .iter()
        .flatten()
        .map(|(_, h)| h.positive_buckets.len() + h.negative_buckets.len())
        .sum();
    eprintln!(
        "histogram_int: {} chunks, {samples} samples, {:.1} buckets and {:.1} bytes a sample",
        chunks.len(),
        buckets as f64 / samples as f64,
        bytes as f64 / samples as f64
    );

    let mut g = c.benchmark_group("histogram_int");
    g.throughput(Throughput::Elements(samples as u64));
    let mut h = Histogram::default();
    g.bench_function("iterate_into", |b| {
        b.iter(|| {
            let mut n = 0;
            for c in &chunks {
                let mut it = HistogramIterator::new(black_box(&c.data)).unwrap();
                while it.next_sample().unwrap().is_some() {
                    it.histogram_into(&mut h);
                    black_box(&h);
                    n += 1;
                }
            }
            n
        })
    });
    let mut f = FloatHistogram::default();
    g.bench_function("iterate_into_float", |b| {
        b.iter(|| {
            let mut n = 0;
            for c in &chunks {
                let mut it = HistogramIterator::new(black_box(&c.data)).unwrap();
                while it.next_sample().unwrap().is_some() {
                    it.float_histogram_into(&mut f);
                    black_box(&f);
                    n += 1;
                }
            }
            n
        })
    });
    g.bench_function("timestamps_only", |b| {
        b.iter(|| {
            let mut n = 0;
            for c in &chunks {
                let mut it = HistogramIterator::new(black_box(&c.data)).unwrap();
                while let Some(t) = it.next_sample().unwrap() {
                    n += t & 1;
                }
            }
            n
        })
    });
    g.bench_function("decode_chunk", |b| {
        b.iter(|| {
            let mut n = 0;
            for c in &chunks {
                n += decode_histogram_chunk(black_box(&c.data)).unwrap().len();
            }
            n
        })
    });
    // A query worker's loop: each chunk's samples as float histograms into one batch kept
    // from chunk to chunk, its histograms overwritten in place.
    let mut batch = HistogramBatch::new();
    g.bench_function("decode_into_reused_batch", |b| {
        b.iter(|| {
            let mut n = 0;
            for c in &chunks {
                let one = [(c.encoding as u8, black_box(&c.data[..]))];
                decode_histogram_chunks_reusing(one, (i64::MIN, i64::MAX), &mut batch).unwrap();
                n += batch.len();
            }
            n
        })
    });
    // The same for a reader of the count and sum only: buckets kept for the last sample of
    // each chunk alone.
    g.bench_function("decode_stats_into_reused_batch", |b| {
        b.iter(|| {
            let mut n = 0;
            for c in &chunks {
                let one = [(c.encoding as u8, black_box(&c.data[..]))];
                decode_histogram_stats_reusing(one, (i64::MIN, i64::MAX), &mut batch).unwrap();
                n += batch.len();
            }
            n
        })
    });
    g.bench_function("append", |b| {
        b.iter(|| {
            let mut n = 0;
            for s in &decoded {
                let mut a = HistogramAppender::new();
                for (t, h) in s {
                    a.append(None, *t, black_box(h)).unwrap();
                }
                n += a.into_bytes().len();
            }
            n
        })
    });
    g.finish();
}

fn histogram_float(c: &mut Criterion) {
    let chunks = chunks(true);
    let decoded: Vec<Vec<(i64, FloatHistogram)>> = chunks
        .iter()
        .map(|c| decode_float_histogram_chunk(&c.data).unwrap())
        .collect();
    let samples: usize = decoded.iter().map(Vec::len).sum();
    let bytes: usize = chunks.iter().map(|c| c.data.len()).sum();
    assert!(
        chunks
            .iter()
            .all(|c| c.encoding == Encoding::FloatHistogram)
    );
    let buckets: usize = decoded
        .iter()
        .flatten()
        .map(|(_, h)| h.positive_buckets.len() + h.negative_buckets.len())
        .sum();
    eprintln!(
        "histogram_float: {} chunks, {samples} samples, {:.1} buckets and {:.1} bytes a sample",
        chunks.len(),
        buckets as f64 / samples as f64,
        bytes as f64 / samples as f64
    );

    let mut g = c.benchmark_group("histogram_float");
    g.throughput(Throughput::Elements(samples as u64));
    let mut f = FloatHistogram::default();
    g.bench_function("iterate_into", |b| {
        b.iter(|| {
            let mut n = 0;
            for c in &chunks {
                let mut it = FloatHistogramIterator::new(black_box(&c.data)).unwrap();
                while it.next_sample().unwrap().is_some() {
                    it.float_histogram_into(&mut f);
                    black_box(&f);
                    n += 1;
                }
            }
            n
        })
    });
    g.bench_function("timestamps_only", |b| {
        b.iter(|| {
            let mut n = 0;
            for c in &chunks {
                let mut it = FloatHistogramIterator::new(black_box(&c.data)).unwrap();
                while let Some(t) = it.next_sample().unwrap() {
                    n += t & 1;
                }
            }
            n
        })
    });
    g.bench_function("decode_chunk", |b| {
        b.iter(|| {
            let mut n = 0;
            for c in &chunks {
                n += decode_float_histogram_chunk(black_box(&c.data))
                    .unwrap()
                    .len();
            }
            n
        })
    });
    g.bench_function("append", |b| {
        b.iter(|| {
            let mut n = 0;
            for s in &decoded {
                let mut a = FloatHistogramAppender::new();
                for (t, h) in s {
                    a.append(None, *t, black_box(h)).unwrap();
                }
                n += a.into_bytes().len();
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, histogram_int, histogram_float);
criterion_main!(benches);
