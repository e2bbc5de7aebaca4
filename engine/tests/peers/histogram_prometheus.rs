//! Native histogram chunks written by a real Prometheus 3 are read by Gauntlet, and Gauntlet
//! writes the same chunks from the same samples.
//!
//! Prometheus 3 (Debian's current build) takes fourteen series of native histograms over its
//! remote-write receiver, in time order over five hours: eight long series (integer and float
//! counters and gauges, custom buckets, many buckets) and six short event-driven ones, whose
//! samples bring buckets (next to the others, past a gap, below the first), leave out empty
//! buckets the chunk has, reset counters (detected and explicit), change the schema, the zero
//! threshold or the custom bounds, mark staleness, and switch between integer and float and
//! between counter and gauge. An admin snapshot then puts everything on disk as blocks, which
//! Gauntlet's block reader opens. For every series:
//!
//! - every chunk decodes, and the samples read are the samples written (the same counts per
//!   bucket index, sums bit for bit), with the counter-reset hints Prometheus reports;
//! - Gauntlet's head cut rule and appenders, given the same samples, produce the same chunks:
//!   the same boundaries (min and max time), the same encodings and the same bytes.
//!
//! Two series (`defect_*`) meet a defect of Prometheus 3.5's appender (prometheus/prometheus
//! PR #16893): a sample that leaves out empty buckets and brings new ones at once gets a layout
//! that visits a bucket index twice. For them Gauntlet must read Prometheus's chunks and write
//! valid ones holding the samples written; see `check_defect_series`.
//!
//! With `GAUNTLET_WRITE_HISTOGRAM_FIXTURE=DIR` set, the test also writes every chunk of the
//! event-driven series and their samples to `DIR/prometheus-3.json.gz`, the fixture the chunk
//! unit tests read (`engine/src/chunk/testdata/histogram-chunks/`).
//!
//! Prometheus listens on 127.0.0.1 only; its start waits at most 60 s, each HTTP read 30 s.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::common::Prometheus;
use crate::common::histograms::{float_pb, int_pb};
use crate::common::receive::{now_ms, post, snappy};
use gauntlet_engine::block::{Block, CutHistogramChunk, HistogramChunkCutter, block_dirs};
use gauntlet_engine::chunk::{
    CounterResetHeader, Encoding, FloatHistogramAppender, FloatHistogramIterator, HistogramAppend,
    HistogramAppender, HistogramIterator, counter_reset_hint,
};
use gauntlet_engine::histogram::{
    CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram, Span,
};
use gauntlet_engine::labels::{MatchType, Matcher};
use gauntlet_proto::prometheus as pb;
use prost::Message;

const METRIC: &str = "gauntlet_hist";
const STEP: i64 = 15_000;
const SAMPLES: usize = 1200;
/// Samples per remote-write request (10 minutes of every series).
const BATCH: usize = 40;
/// Samples at which an event series switches between integer and float histograms.
const TYPE_SWITCHES: [usize; 4] = [25, 28, 30, 36];

/// One written sample.
#[derive(Debug, Clone)]
enum H {
    Int(Histogram),
    Float(FloatHistogram),
}

/// A series: its name and its samples in time order.
struct Series {
    name: &'static str,
    samples: Vec<(i64, H)>,
}

/// splitmix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Spans and buckets (absolute counts, sorted by index, zeros kept) in span form.
fn spans_of<T: Copy>(buckets: &[(i32, T)]) -> (Vec<Span>, Vec<T>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut last = 0i32;
    for (n, &(idx, _)) in buckets.iter().enumerate() {
        if n > 0 && idx == last + 1 {
            spans.last_mut().unwrap().length += 1;
        } else {
            let offset = if n == 0 { idx } else { idx - last - 1 };
            spans.push(Span::new(offset, 1));
        }
        last = idx;
    }
    (spans, buckets.iter().map(|b| b.1).collect())
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

struct IntSpec<'a> {
    schema: i32,
    zero_threshold: f64,
    zero_count: u64,
    pos: &'a BTreeMap<i32, u64>,
    neg: &'a BTreeMap<i32, u64>,
    sum: f64,
    hint: CounterResetHint,
    custom: &'a Arc<[f64]>,
}

fn int_hist(s: IntSpec<'_>) -> Histogram {
    let pos: Vec<(i32, u64)> = s.pos.iter().map(|(&i, &c)| (i, c)).collect();
    let neg: Vec<(i32, u64)> = s.neg.iter().map(|(&i, &c)| (i, c)).collect();
    let (ps, pc) = spans_of(&pos);
    let (ns, nc) = spans_of(&neg);
    Histogram {
        counter_reset_hint: s.hint,
        schema: s.schema,
        zero_threshold: s.zero_threshold,
        zero_count: s.zero_count,
        count: s.zero_count + pc.iter().sum::<u64>() + nc.iter().sum::<u64>(),
        sum: s.sum,
        positive_spans: ps,
        negative_spans: ns,
        positive_buckets: deltas(&pc),
        negative_buckets: deltas(&nc),
        custom_values: s.custom.clone().into(),
    }
}

struct FloatSpec<'a> {
    schema: i32,
    zero_threshold: f64,
    zero_count: f64,
    pos: &'a BTreeMap<i32, f64>,
    neg: &'a BTreeMap<i32, f64>,
    sum: f64,
    hint: CounterResetHint,
    custom: &'a Arc<[f64]>,
}

fn float_hist(s: FloatSpec<'_>) -> FloatHistogram {
    let pos: Vec<(i32, f64)> = s.pos.iter().map(|(&i, &c)| (i, c)).collect();
    let neg: Vec<(i32, f64)> = s.neg.iter().map(|(&i, &c)| (i, c)).collect();
    let (ps, pc) = spans_of(&pos);
    let (ns, nc) = spans_of(&neg);
    FloatHistogram {
        counter_reset_hint: s.hint,
        schema: s.schema,
        zero_threshold: s.zero_threshold,
        zero_count: s.zero_count,
        count: s.zero_count + pc.iter().sum::<f64>() + nc.iter().sum::<f64>(),
        sum: s.sum,
        positive_spans: ps,
        negative_spans: ns,
        positive_buckets: pc,
        negative_buckets: nc,
        custom_values: s.custom.clone().into(),
    }
}

/// Sample timestamps: 15 s apart with some jitter and one 5-minute gap.
fn times(start: i64, rng: &mut Rng) -> Vec<i64> {
    let mut t = start;
    (0..SAMPLES)
        .map(|k| {
            let out = t;
            t += STEP;
            if rng.chance(10) {
                t += rng.below(400) as i64 - 200;
            }
            if k == 300 {
                t += 300_000;
            }
            out
        })
        .collect()
}

const DEFAULT_ZT: f64 = 2.938_735_877_055_719e-39; // 2^-128

/// An integer counter: buckets appear next to the others, past a gap and below the first; a
/// counter reset; a schema change (buckets merged, count unchanged); a stale marker.
fn int_counter(start: i64) -> Series {
    let mut rng = Rng(1);
    let ts = times(start, &mut rng);
    let mut pos: BTreeMap<i32, u64> = (0..4).map(|i| (i, 1)).collect();
    let mut neg = BTreeMap::new();
    let (mut zc, mut schema, mut sum) = (0u64, 3, 0.0);
    let none: Arc<[f64]> = Arc::default();
    let mut samples = Vec::new();
    for (k, &t) in ts.iter().enumerate() {
        match k {
            50 => {
                pos.insert(4, 0);
            }
            120 => {
                pos.insert(9, 2);
            }
            180 => {
                pos.insert(-2, 1);
            }
            250 => {
                neg.insert(0, 1);
            }
            400 => {
                pos.values_mut().for_each(|c| *c = 1);
                neg.values_mut().for_each(|c| *c = 0);
                zc = 0;
                sum = 1.5;
            }
            700 => {
                schema = 2;
                let mut merged = BTreeMap::new();
                for (&i, &c) in &pos {
                    *merged.entry(((i - 1) >> 1) + 1).or_insert(0) += c;
                }
                pos = merged;
                let mut merged = BTreeMap::new();
                for (&i, &c) in &neg {
                    *merged.entry(((i - 1) >> 1) + 1).or_insert(0) += c;
                }
                neg = merged;
            }
            _ => {}
        }
        if k == 900 {
            samples.push((t, H::Int(Histogram::stale_marker())));
            continue;
        }
        for c in pos.values_mut().chain(neg.values_mut()) {
            if rng.chance(60) {
                *c += rng.below(5);
            }
        }
        if k >= 250 && rng.chance(30) {
            zc += 1;
        }
        sum += rng.below(1000) as f64 / 8.0;
        samples.push((
            t,
            H::Int(int_hist(IntSpec {
                schema,
                zero_threshold: DEFAULT_ZT,
                zero_count: zc,
                pos: &pos,
                neg: &neg,
                sum,
                hint: CounterResetHint::Unknown,
                custom: &none,
            })),
        ));
    }
    Series {
        name: "int_counter",
        samples,
    }
}

/// An integer gauge histogram whose buckets come and go; a schema change.
fn int_gauge(start: i64) -> Series {
    let mut rng = Rng(2);
    let ts = times(start, &mut rng);
    let none: Arc<[f64]> = Arc::default();
    let samples = ts
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            let mut pos = BTreeMap::new();
            let mut neg = BTreeMap::new();
            for i in -3..7 {
                if rng.chance(70) {
                    pos.insert(i, rng.below(50));
                }
                if i < 2 && rng.chance(40) {
                    neg.insert(i, rng.below(20));
                }
            }
            let h = int_hist(IntSpec {
                schema: if k < 600 { 0 } else { 1 },
                zero_threshold: 0.0,
                zero_count: rng.below(10),
                pos: &pos,
                neg: &neg,
                sum: rng.below(100_000) as f64 / 3.0 - 10_000.0,
                hint: CounterResetHint::Gauge,
                custom: &none,
            });
            (t, H::Int(h))
        })
        .collect();
    Series {
        name: "int_gauge",
        samples,
    }
}

/// A float counter: fractional counts, buckets appearing, a counter reset, a zero-threshold
/// change; every sample says it is not a reset, which changes nothing.
fn float_counter(start: i64) -> Series {
    let mut rng = Rng(3);
    let ts = times(start, &mut rng);
    let mut pos: BTreeMap<i32, f64> = (-1..3).map(|i| (i, 0.5)).collect();
    let mut neg: BTreeMap<i32, f64> = BTreeMap::new();
    let (mut zc, mut zt, mut sum) = (0.0, DEFAULT_ZT, 0.0);
    let none: Arc<[f64]> = Arc::default();
    let mut samples = Vec::new();
    for (k, &t) in ts.iter().enumerate() {
        match k {
            60 => {
                pos.insert(3, 0.0);
                pos.insert(4, 0.0);
            }
            140 => {
                pos.insert(8, 1.25);
            }
            200 => {
                neg.insert(-1, 0.75);
            }
            500 => {
                pos.values_mut().for_each(|c| *c = 0.125);
                neg.values_mut().for_each(|c| *c = 0.0);
                zc = 0.0;
            }
            800 => zt = 2f64.powi(-100),
            _ => {}
        }
        for c in pos.values_mut().chain(neg.values_mut()) {
            if rng.chance(50) {
                *c += rng.below(40) as f64 / 10.0;
            }
        }
        if rng.chance(20) {
            zc += 0.25;
        }
        sum += rng.below(10_000) as f64 / 7.0;
        samples.push((
            t,
            H::Float(float_hist(FloatSpec {
                schema: 1,
                zero_threshold: zt,
                zero_count: zc,
                pos: &pos,
                neg: &neg,
                sum,
                hint: CounterResetHint::NotCounterReset,
                custom: &none,
            })),
        ));
    }
    Series {
        name: "float_counter",
        samples,
    }
}

/// A float gauge histogram whose buckets come and go; a zero-threshold change.
fn float_gauge(start: i64) -> Series {
    let mut rng = Rng(4);
    let ts = times(start, &mut rng);
    let none: Arc<[f64]> = Arc::default();
    let samples = ts
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            let mut pos = BTreeMap::new();
            let mut neg = BTreeMap::new();
            for i in 0..8 {
                if rng.chance(60) {
                    pos.insert(i, rng.below(1000) as f64 / 16.0);
                }
                if rng.chance(30) {
                    neg.insert(i - 4, rng.below(100) as f64 / 3.0);
                }
            }
            let h = float_hist(FloatSpec {
                schema: -1,
                zero_threshold: if k < 450 { 0.125 } else { 0.25 },
                zero_count: rng.below(30) as f64 / 4.0,
                pos: &pos,
                neg: &neg,
                sum: rng.below(1_000_000) as f64 / 1000.0,
                hint: CounterResetHint::Gauge,
                custom: &none,
            });
            (t, H::Float(h))
        })
        .collect();
    Series {
        name: "float_gauge",
        samples,
    }
}

/// Custom bounds, one of them not a multiple of 0.001 (written as a full float).
fn bounds_a() -> Arc<[f64]> {
    Arc::from([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn bounds_b() -> Arc<[f64]> {
    Arc::from([0.01, 0.1, 1.0, 10.0, 100.0, 1000.0])
}

/// An integer NHCB counter: buckets appearing, then new bounds (a reset for Prometheus).
fn nhcb_int(start: i64) -> Series {
    let mut rng = Rng(5);
    let ts = times(start, &mut rng);
    let mut bounds = bounds_a();
    let mut pos: BTreeMap<i32, u64> = [0, 2, 3, 7, 14].iter().map(|&i| (i, 1)).collect();
    let mut sum = 0.0;
    let mut samples = Vec::new();
    for (k, &t) in ts.iter().enumerate() {
        match k {
            100 => {
                pos.insert(5, 0);
            }
            200 => {
                pos.insert(1, 3);
            }
            600 => {
                bounds = bounds_b();
                pos = (0..7).map(|i| (i, 5)).collect();
            }
            _ => {}
        }
        for c in pos.values_mut() {
            if rng.chance(40) {
                *c += rng.below(3);
            }
        }
        sum += rng.below(100) as f64 / 100.0;
        samples.push((
            t,
            H::Int(int_hist(IntSpec {
                schema: CUSTOM_BUCKETS_SCHEMA,
                zero_threshold: 0.0,
                zero_count: 0,
                pos: &pos,
                neg: &BTreeMap::new(),
                sum,
                hint: CounterResetHint::Unknown,
                custom: &bounds,
            })),
        ));
    }
    Series {
        name: "nhcb_int",
        samples,
    }
}

/// A float NHCB counter with an explicit counter reset hint and a detected reset.
fn nhcb_float(start: i64) -> Series {
    let mut rng = Rng(6);
    let ts = times(start, &mut rng);
    let bounds = bounds_a();
    let mut pos: BTreeMap<i32, f64> = [1, 2, 4, 8].iter().map(|&i| (i, 0.5)).collect();
    let mut sum = 0.0;
    let mut samples = Vec::new();
    for (k, &t) in ts.iter().enumerate() {
        let mut hint = CounterResetHint::Unknown;
        match k {
            150 => {
                pos.insert(3, 0.0);
                pos.insert(10, 0.0);
            }
            300 => hint = CounterResetHint::CounterReset,
            700 => {
                pos.values_mut().for_each(|c| *c /= 4.0);
            }
            _ => {}
        }
        for c in pos.values_mut() {
            if rng.chance(50) {
                *c += rng.below(16) as f64 / 8.0;
            }
        }
        sum += rng.below(1000) as f64 / 10.0;
        samples.push((
            t,
            H::Float(float_hist(FloatSpec {
                schema: CUSTOM_BUCKETS_SCHEMA,
                zero_threshold: 0.0,
                zero_count: 0.0,
                pos: &pos,
                neg: &BTreeMap::new(),
                sum,
                hint,
                custom: &bounds,
            })),
        ));
    }
    Series {
        name: "nhcb_float",
        samples,
    }
}

/// An integer counter with an empty bucket that samples sometimes leave out (the chunk keeps
/// it, the sample gains it back), once together with a new bucket; an explicit reset hint.
fn int_backward(start: i64) -> Series {
    let mut rng = Rng(7);
    let ts = times(start, &mut rng);
    let none: Arc<[f64]> = Arc::default();
    let mut pos: BTreeMap<i32, u64> = [(0, 3), (1, 2), (2, 0), (3, 4)].into_iter().collect();
    let mut sum = 0.0;
    let mut samples = Vec::new();
    for (k, &t) in ts.iter().enumerate() {
        let mut hint = CounterResetHint::Unknown;
        if k == 150 {
            pos.insert(5, 1);
        }
        if k == 400 {
            hint = CounterResetHint::CounterReset;
        }
        if k == 650 {
            pos.insert(8, 0);
        }
        for (&i, c) in pos.iter_mut() {
            if i != 2 && i != 8 && rng.chance(50) {
                *c += rng.below(4);
            }
        }
        sum += rng.below(50) as f64;
        // Leave out the empty buckets now and then.
        let mut sent = pos.clone();
        if (100..120).contains(&k) || (k >= 150 && k % 3 == 0) {
            sent.remove(&2);
        }
        if k >= 650 && k % 4 == 0 {
            sent.remove(&8);
        }
        samples.push((
            t,
            H::Int(int_hist(IntSpec {
                schema: 0,
                zero_threshold: DEFAULT_ZT,
                zero_count: 0,
                pos: &sent,
                neg: &BTreeMap::new(),
                sum,
                hint,
                custom: &none,
            })),
        ));
    }
    Series {
        name: "int_backward",
        samples,
    }
}

/// An integer counter at low resolution with large counts, big jumps, negative buckets and a
/// zero threshold that is not a power of two.
fn int_large(start: i64) -> Series {
    let mut rng = Rng(8);
    let ts = times(start, &mut rng);
    let none: Arc<[f64]> = Arc::default();
    let mut pos: BTreeMap<i32, u64> = (-1..3).map(|i| (i, 1u64 << 40)).collect();
    let mut neg: BTreeMap<i32, u64> = (0..2).map(|i| (i, 1u64 << 33)).collect();
    let (mut zc, mut sum) = (1u64 << 20, -5.0e9);
    let mut samples = Vec::new();
    for &t in &ts {
        for c in pos.values_mut().chain(neg.values_mut()) {
            *c += if rng.chance(5) {
                rng.below(1 << 30)
            } else {
                rng.below(3000)
            };
        }
        zc += rng.below(100);
        sum += rng.below(1 << 20) as f64 * 1.5;
        samples.push((
            t,
            H::Int(int_hist(IntSpec {
                schema: -2,
                zero_threshold: 0.001,
                zero_count: zc,
                pos: &pos,
                neg: &neg,
                sum,
                hint: CounterResetHint::Unknown,
                custom: &none,
            })),
        ));
    }
    Series {
        name: "int_large",
        samples,
    }
}

/// The state of an event-driven series: what its next sample holds.
#[derive(Clone)]
struct EvState {
    float: bool,
    gauge: bool,
    schema: i32,
    zero_threshold: f64,
    zero_count: f64,
    pos: BTreeMap<i32, f64>,
    neg: BTreeMap<i32, f64>,
    sum: f64,
    custom: Arc<[f64]>,
}

impl EvState {
    fn sample(&self, hint: CounterResetHint, omit: &[i32]) -> H {
        let mut pos = self.pos.clone();
        for i in omit {
            pos.remove(i);
        }
        if self.float {
            H::Float(float_hist(FloatSpec {
                schema: self.schema,
                zero_threshold: self.zero_threshold,
                zero_count: self.zero_count,
                pos: &pos,
                neg: &self.neg,
                sum: self.sum,
                hint,
                custom: &self.custom,
            }))
        } else {
            let ints = |m: &BTreeMap<i32, f64>| m.iter().map(|(&i, &c)| (i, c as u64)).collect();
            H::Int(int_hist(IntSpec {
                schema: self.schema,
                zero_threshold: self.zero_threshold,
                zero_count: self.zero_count as u64,
                pos: &ints(&pos),
                neg: &ints(&self.neg),
                sum: self.sum,
                hint,
                custom: &self.custom,
            }))
        }
    }

    /// Counters grow (by whole numbers, or quarters for floats); gauges take new counts.
    fn step(&mut self, rng: &mut Rng, frozen: &[i32]) {
        let unit = if self.float { 0.25 } else { 1.0 };
        for (i, c) in self.pos.iter_mut() {
            if frozen.contains(i) {
                continue;
            }
            if self.gauge {
                *c = rng.below(12) as f64 * unit;
            } else if rng.chance(60) {
                *c += rng.below(4) as f64 * unit;
            }
        }
        for c in self.neg.values_mut() {
            if self.gauge {
                *c = rng.below(6) as f64 * unit;
            } else if rng.chance(40) {
                *c += unit;
            }
        }
        if rng.chance(30) && self.custom.is_empty() {
            self.zero_count += unit;
        }
        self.sum += rng.below(400) as f64 / 4.0;
    }

    /// Counts in whole numbers, so the series can switch to integer histograms.
    fn round(&mut self) {
        for c in self.pos.values_mut().chain(self.neg.values_mut()) {
            *c = c.floor();
        }
        self.zero_count = self.zero_count.floor();
    }

    /// Merges buckets to the next lower exponential schema, keeping every count.
    fn downscale(&mut self) {
        for m in [&mut self.pos, &mut self.neg] {
            let mut merged = BTreeMap::new();
            for (&i, &c) in m.iter() {
                *merged.entry(((i - 1) >> 1) + 1).or_insert(0.0) += c;
            }
            *m = merged;
        }
        self.schema -= 1;
    }
}

/// Runs an event-driven series of `n` samples from `start`: `event(k, state)` changes the
/// state before sample `k` and returns its hint, the buckets it leaves out, the buckets kept
/// at 0, and whether it is a stale marker.
fn event_series(
    name: &'static str,
    start: i64,
    seed: u64,
    n: usize,
    mut state: EvState,
    event: impl Fn(usize, &mut EvState) -> (CounterResetHint, Vec<i32>, Vec<i32>, bool),
) -> Series {
    let mut rng = Rng(seed);
    let mut samples = Vec::with_capacity(n);
    for k in 0..n {
        let t = start + k as i64 * STEP + if rng.chance(20) { 37 } else { 0 };
        let (hint, omit, frozen, stale) = event(k, &mut state);
        if stale {
            let h = if state.float {
                H::Float(FloatHistogram::stale_marker())
            } else {
                H::Int(Histogram::stale_marker())
            };
            samples.push((t, h));
            continue;
        }
        state.step(&mut rng, &frozen);
        let hint = if state.gauge {
            CounterResetHint::Gauge
        } else {
            hint
        };
        samples.push((t, state.sample(hint, &omit)));
    }
    Series { name, samples }
}

/// Integer histograms with an event every few samples: new buckets (after the last, below the
/// first past a gap), empty buckets left out (alone and with a new bucket), a detected and an
/// explicit counter reset, a schema change, a zero-threshold change, a stale marker, a switch
/// to gauge and back, a first negative bucket.
fn ev_int(start: i64) -> Series {
    let state = EvState {
        float: false,
        gauge: false,
        schema: 0,
        zero_threshold: DEFAULT_ZT,
        zero_count: 0.0,
        pos: [(0, 1.0), (1, 1.0)].into_iter().collect(),
        neg: BTreeMap::new(),
        sum: 0.0,
        custom: Arc::default(),
    };
    event_series("ev_int", start, 11, 60, state, |k, s| {
        let mut hint = CounterResetHint::Unknown;
        let mut omit = vec![];
        let frozen = vec![5];
        match k {
            5 => {
                s.pos.insert(2, 0.0);
            }
            9 => {
                s.pos.insert(-3, 1.0);
            }
            12 => {
                s.pos.insert(5, 0.0);
            }
            14..=16 => omit.push(5),
            17 => {
                omit.push(5);
                s.pos.insert(7, 1.0);
            }
            21 => {
                s.pos.values_mut().for_each(|c| *c = (*c / 2.0).floor());
                s.zero_count = 0.0;
            }
            26 => hint = CounterResetHint::CounterReset,
            30 => s.downscale(),
            34 => s.zero_threshold = 2f64.powi(-100),
            38 => return (hint, omit, frozen, true),
            44 => s.gauge = true,
            50 => {
                s.gauge = false;
                s.pos.values_mut().for_each(|c| *c += 20.0);
            }
            55 => {
                s.neg.insert(1, 1.0);
            }
            _ => {}
        }
        (hint, omit, frozen, false)
    })
}

/// Float histograms with a zero threshold that takes 9 bytes, new buckets on both sides, an
/// empty bucket left out together with a new one, a counter reset, a zero-threshold change, a
/// switch to integer histograms and back, a stale marker, then gauges.
fn ev_float(start: i64) -> Series {
    let state = EvState {
        float: true,
        gauge: false,
        schema: 2,
        zero_threshold: 0.001,
        zero_count: 0.0,
        pos: [(-1, 0.5), (0, 0.25)].into_iter().collect(),
        neg: BTreeMap::new(),
        sum: 0.0,
        custom: Arc::default(),
    };
    event_series("ev_float", start, 12, 55, state, |k, s| {
        let mut omit = vec![];
        let frozen = if k < 20 { vec![1] } else { vec![] };
        match k {
            4 => {
                s.pos.insert(1, 0.0);
            }
            8 => {
                s.neg.insert(-2, 0.75);
            }
            11..=13 => omit.push(1),
            14 => {
                // The new bucket below the one left out: Prometheus 3.5 gets the other
                // order wrong (see `defect_float`).
                omit.push(1);
                s.pos.insert(-3, 0.5);
            }
            18 => {
                s.pos.values_mut().for_each(|c| *c /= 4.0);
            }
            24 => s.zero_threshold = 0.002,
            28 => {
                s.round();
                s.float = false;
            }
            36 => s.float = true,
            40 => return (CounterResetHint::Unknown, omit, frozen, true),
            46 => s.gauge = true,
            _ => {}
        }
        (CounterResetHint::Unknown, omit, frozen, false)
    })
}

/// Custom-bucket histograms: a bucket filling a gap, an empty bucket left out, new bounds, a
/// stale marker, then float NHCB counters and gauges.
fn ev_nhcb(start: i64) -> Series {
    let state = EvState {
        float: false,
        gauge: false,
        schema: CUSTOM_BUCKETS_SCHEMA,
        zero_threshold: 0.0,
        zero_count: 0.0,
        pos: [(0, 1.0), (3, 1.0)].into_iter().collect(),
        neg: BTreeMap::new(),
        sum: 0.0,
        custom: bounds_a(),
    };
    event_series("ev_nhcb", start, 13, 45, state, |k, s| {
        let mut omit = vec![];
        let frozen = vec![9];
        match k {
            6 => {
                s.pos.insert(1, 2.0);
            }
            10 => {
                s.pos.insert(9, 0.0);
            }
            12..=14 => omit.push(9),
            18 => {
                s.custom = bounds_b();
                s.pos = [(0, 1.0), (2, 3.0), (6, 1.0)].into_iter().collect();
            }
            25 => return (CounterResetHint::Unknown, omit, frozen, true),
            30 => s.float = true,
            36 => s.gauge = true,
            _ => {}
        }
        (CounterResetHint::Unknown, omit, frozen, false)
    })
}

/// Gauge histograms whose buckets come and go on both sides: a schema change, a switch to float
/// gauges, a zero-threshold change.
fn ev_gauge(start: i64) -> Series {
    let state = EvState {
        float: false,
        gauge: true,
        schema: 3,
        zero_threshold: 0.0,
        zero_count: 0.0,
        pos: BTreeMap::new(),
        neg: BTreeMap::new(),
        sum: 0.0,
        custom: Arc::default(),
    };
    let picks = std::cell::RefCell::new(Rng(14));
    event_series("ev_gauge", start, 15, 45, state, move |k, s| {
        let mut rng = picks.borrow_mut();
        s.pos = (-4..7)
            .filter(|_| rng.chance(50))
            .map(|i| (i, 0.0))
            .collect();
        s.neg = (-2..3)
            .filter(|_| rng.chance(30))
            .map(|i| (i, 0.0))
            .collect();
        match k {
            15 => s.schema = 4,
            25 => s.float = true,
            35 => s.zero_threshold = 0.5,
            _ => {}
        }
        (CounterResetHint::Gauge, vec![], vec![], false)
    })
}

/// The event-driven series, all of whose chunks make the committed fixture.
fn event_series_all(start: i64) -> Vec<Series> {
    vec![
        ev_int(start),
        ev_float(start),
        ev_nhcb(start),
        ev_gauge(start),
        defect_float(start),
        defect_int(start),
    ]
}

/// A float counter whose sample 5 leaves out an empty bucket and brings a new one right above
/// it. Prometheus 3.5 (before PR #16893) records the left-out bucket at the new bucket's index
/// and writes a layout that visits that index twice (a span with offset -1); Gauntlet writes
/// the layout Prometheus writes with that fix. A counter reset at sample 8 closes that chunk.
fn defect_float(start: i64) -> Series {
    let state = EvState {
        float: true,
        gauge: false,
        schema: 0,
        zero_threshold: DEFAULT_ZT,
        zero_count: 0.0,
        pos: [(0, 1.0), (1, 0.0)].into_iter().collect(),
        neg: BTreeMap::new(),
        sum: 0.0,
        custom: Arc::default(),
    };
    event_series("defect_float", start, 16, 12, state, |k, s| {
        let mut omit = vec![];
        if (5..8).contains(&k) {
            omit.push(1);
        }
        match k {
            5 => {
                s.pos.insert(2, 1.0);
            }
            8 => s.pos.values_mut().for_each(|c| *c = 0.0),
            _ => {}
        }
        (CounterResetHint::Unknown, omit, vec![1], false)
    })
}

/// An integer counter whose sample 5 leaves out two neighbouring empty buckets and brings a new
/// one: Prometheus 3.5 records the run at its last index and writes a layout with
/// buckets at wrong indices. A counter reset at sample 8 closes that chunk.
fn defect_int(start: i64) -> Series {
    let state = EvState {
        float: false,
        gauge: false,
        schema: 0,
        zero_threshold: DEFAULT_ZT,
        zero_count: 0.0,
        pos: [(0, 1.0), (1, 0.0), (2, 0.0), (3, 1.0)]
            .into_iter()
            .collect(),
        neg: BTreeMap::new(),
        sum: 0.0,
        custom: Arc::default(),
    };
    event_series("defect_int", start, 17, 12, state, |k, s| {
        let mut omit = vec![];
        if (5..8).contains(&k) {
            omit.extend([1, 2]);
        }
        match k {
            5 => {
                s.pos.insert(6, 1.0);
            }
            8 => s.pos.values_mut().for_each(|c| *c = 0.0),
            _ => {}
        }
        (CounterResetHint::Unknown, omit, vec![1, 2], false)
    })
}

fn all_series(start: i64) -> Vec<Series> {
    vec![
        int_counter(start),
        int_gauge(start),
        float_counter(start),
        float_gauge(start),
        nhcb_int(start),
        nhcb_float(start),
        int_backward(start),
        int_large(start),
    ]
    .into_iter()
    .chain(event_series_all(start))
    .collect()
}

fn to_pb(t: i64, h: &H) -> pb::Histogram {
    match h {
        H::Int(h) => int_pb(t, h),
        H::Float(h) => float_pb(t, h),
    }
}

/// Remote-writes samples `range` of every series; panics unless Prometheus answers 204.
fn remote_write(p: &Prometheus, series: &[Series], range: std::ops::Range<usize>) {
    let ts = series
        .iter()
        .map(|s| pb::TimeSeries {
            labels: vec![
                pb::Label {
                    name: "__name__".into(),
                    value: METRIC.into(),
                },
                pb::Label {
                    name: "series".into(),
                    value: s.name.into(),
                },
            ],
            histograms: s.samples[range.start.min(s.samples.len())..range.end.min(s.samples.len())]
                .iter()
                .map(|(t, h)| to_pb(*t, h))
                .collect(),
            ..Default::default()
        })
        .collect();
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
    assert_eq!(
        status, 204,
        "remote write {range:?} answered {status}: {text}"
    );
}

/// A chunk as it sits in a block.
#[derive(Debug, Clone, PartialEq)]
struct DiskChunk {
    encoding: u8,
    min_time: i64,
    max_time: i64,
    data: Vec<u8>,
}

/// Every chunk of every series named `series=...` in the blocks under `dir`, in time order.
fn read_blocks(dir: &Path) -> BTreeMap<String, Vec<DiskChunk>> {
    let mut out: BTreeMap<String, Vec<DiskChunk>> = BTreeMap::new();
    let m = Matcher::new(MatchType::Equal, "__name__", METRIC).unwrap();
    for b in block_dirs(dir).unwrap() {
        let block = Block::open(&b).unwrap();
        for r in block.select(std::slice::from_ref(&m)).unwrap() {
            let (mut labels, mut metas) = (Vec::new(), Vec::new());
            block.series(r, &mut labels, &mut metas).unwrap();
            let name = labels
                .iter()
                .find(|l| l.name == "series")
                .map(|l| l.value.to_string())
                .unwrap();
            for c in metas {
                let (enc, data) = block.chunks().chunk(c.chunk_ref).unwrap();
                out.entry(name.clone()).or_default().push(DiskChunk {
                    encoding: enc,
                    min_time: c.min_time,
                    max_time: c.max_time,
                    data: data.to_vec(),
                });
            }
        }
    }
    for chunks in out.values_mut() {
        chunks.sort_by_key(|c| c.min_time);
    }
    out
}

/// The chunks Gauntlet cuts from a series' samples.
fn gauntlet_chunks(s: &Series) -> Vec<CutHistogramChunk> {
    let mut c = HistogramChunkCutter::default();
    for (t, h) in &s.samples {
        match h {
            H::Int(h) => c.append_histogram(*t, h),
            H::Float(h) => c.append_float_histogram(*t, h),
        }
        .unwrap_or_else(|e| panic!("{}: sample at {t}: {e}", s.name));
    }
    c.finish()
}

/// The open head chunk as a Prometheus snapshot (or any block write of the head) writes it: its
/// samples decoded and appended afresh to an empty chunk, each with the hint a reader reports,
/// so a counter chunk's header becomes `Unknown` and a gauge chunk's stays `Gauge`.
fn rewrite_open_chunk(c: &CutHistogramChunk) -> Vec<u8> {
    if c.encoding == Encoding::Histogram {
        let mut it = HistogramIterator::new(&c.data).unwrap();
        let mut app = HistogramAppender::new();
        while let Some((t, h)) = it.next().unwrap() {
            let outcome = app.append(None, t, &h).unwrap();
            assert!(matches!(outcome, HistogramAppend::Appended), "{outcome:?}");
        }
        app.into_bytes()
    } else {
        let mut it = FloatHistogramIterator::new(&c.data).unwrap();
        let mut app = FloatHistogramAppender::new();
        while let Some((t, h)) = it.next().unwrap() {
            let outcome = app.append(None, t, &h).unwrap();
            assert!(matches!(outcome, HistogramAppend::Appended), "{outcome:?}");
        }
        app.into_bytes()
    }
}

/// What a sample holds, independent of how its buckets are laid out: counts per bucket index
/// (empty buckets left out), floats as bits.
#[derive(Debug, PartialEq)]
struct Canon {
    stale: bool,
    schema: i32,
    zero_threshold: u64,
    zero_count: u64,
    count: u64,
    sum: u64,
    pos: Vec<(i64, u64)>,
    neg: Vec<(i64, u64)>,
    custom: Vec<u64>,
}

fn indexed(spans: &[Span], counts: impl IntoIterator<Item = f64>) -> Vec<(i64, u64)> {
    let mut idx = Vec::new();
    let mut i = 0i64;
    for s in spans {
        // The first offset is an index, later ones count from one past the previous bucket.
        i += i64::from(s.offset);
        for _ in 0..s.length {
            idx.push(i);
            i += 1;
        }
    }
    idx.into_iter()
        .zip(counts)
        .filter(|(_, c)| *c != 0.0)
        .map(|(i, c)| (i, c.to_bits()))
        .collect()
}

fn canon(h: &H) -> Canon {
    let f = match h {
        H::Int(h) => h.to_float(),
        H::Float(h) => h.clone(),
    };
    if f.is_stale() {
        return Canon {
            stale: true,
            schema: 0,
            zero_threshold: 0,
            zero_count: 0,
            count: 0,
            sum: 0,
            pos: vec![],
            neg: vec![],
            custom: vec![],
        };
    }
    Canon {
        stale: false,
        schema: f.schema,
        zero_threshold: f.zero_threshold.to_bits(),
        zero_count: f.zero_count.to_bits(),
        count: f.count.to_bits(),
        sum: f.sum.to_bits(),
        pos: indexed(&f.positive_spans, f.positive_buckets.iter().copied()),
        neg: indexed(&f.negative_spans, f.negative_buckets.iter().copied()),
        custom: f.custom_values.iter().map(|b| b.to_bits()).collect(),
    }
}

/// Decodes a chunk: `(t, sample, hint)` per sample, and its header.
fn decode(c: &DiskChunk) -> (Vec<(i64, H, CounterResetHint)>, CounterResetHeader) {
    let mut out = Vec::new();
    if c.encoding == Encoding::Histogram as u8 {
        let mut it = HistogramIterator::new(&c.data).unwrap();
        while let Some((t, h)) = it.next().unwrap() {
            let hint = h.counter_reset_hint;
            out.push((t, H::Int(h), hint));
        }
        (out, it.counter_reset_header())
    } else {
        assert_eq!(c.encoding, Encoding::FloatHistogram as u8);
        let mut it = FloatHistogramIterator::new(&c.data).unwrap();
        while let Some((t, h)) = it.next().unwrap() {
            let hint = h.counter_reset_hint;
            out.push((t, H::Float(h), hint));
        }
        (out, it.counter_reset_header())
    }
}

#[test]
fn prometheus_3_histogram_chunks_decode_and_reencode_byte_for_byte() {
    let binary = crate::common::prometheus3();
    // Six hours back, on a chunk range boundary plus 13m37s, so every run cuts alike.
    let range = 7_200_000;
    let start = (now_ms() - 6 * 3_600_000) / range * range + 817_000;
    let series = all_series(start);

    let p = Prometheus::start_with_config(
        &binary,
        |_| "global:\n  scrape_interval: 1h\n".into(),
        &[
            "--web.enable-remote-write-receiver",
            "--web.enable-admin-api",
            // Prometheus 3.5 refuses native histograms without it (500 "native histograms are
            // disabled").
            "--enable-feature=native-histograms",
        ],
    );
    // A request is committed type by type (integer histograms before float ones), so a series
    // switching type within one request would lose its earlier samples as out of order: the
    // event series switch type only at batch boundaries.
    let mut cuts: Vec<usize> = (0..=SAMPLES).step_by(BATCH).collect();
    cuts.extend(TYPE_SWITCHES);
    cuts.sort_unstable();
    for w in cuts.windows(2) {
        remote_write(&p, &series, w[0]..w[1]);
    }
    let (status, _, text) = post(p.port, "/api/v1/admin/tsdb/snapshot", &[], b"").unwrap();
    assert_eq!(status, 200, "snapshot: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let name = v["data"]["name"].as_str().unwrap();
    let snapshot = p.data_dir().join("snapshots").join(name);
    let on_disk = read_blocks(&snapshot);
    let mut fixture = Vec::new();
    let mut failures = Vec::new();
    for s in &series {
        let disk = on_disk
            .get(s.name)
            .unwrap_or_else(|| panic!("{}: no chunks in the snapshot", s.name));
        let headers: Vec<CounterResetHeader> = disk
            .iter()
            .map(|c| CounterResetHeader::from_flags(c.data[2]))
            .collect();
        eprintln!(
            "{}: {} chunks from Prometheus ({} bytes), headers {headers:?}",
            s.name,
            disk.len(),
            disk.iter().map(|c| c.data.len()).sum::<usize>()
        );
        if s.name.starts_with("defect_") {
            check_defect_series(s, disk);
        } else {
            check_reads_back(s, disk);
            failures.extend(check_same_chunks(s, disk));
        }
        fixture.push((s, disk.clone()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    if let Some(dir) = std::env::var_os("GAUNTLET_WRITE_HISTOGRAM_FIXTURE") {
        let version = crate::common::run_ok(std::process::Command::new(&binary).arg("--version"));
        let version = String::from_utf8_lossy(&version.stdout);
        let version = version.lines().next().unwrap_or_default().trim();
        write_fixture(Path::new(&dir), version, &fixture);
    }
}

/// Every written sample reads back from the chunks, in order, with Prometheus's hints.
fn check_reads_back(s: &Series, chunks: &[DiskChunk]) {
    let mut read = Vec::new();
    for (n, c) in chunks.iter().enumerate() {
        let (samples, header) = decode(c);
        let first = samples.first().map(|s| s.0);
        let last = samples.last().map(|s| s.0);
        assert_eq!(first, Some(c.min_time), "{} chunk {n}", s.name);
        assert_eq!(last, Some(c.max_time), "{} chunk {n}", s.name);
        for (pos, (_, h, hint)) in samples.iter().enumerate() {
            let want = if canon(h).stale {
                CounterResetHint::Unknown
            } else {
                counter_reset_hint(header, pos)
            };
            assert_eq!(*hint, want, "{} chunk {n} sample {pos}", s.name);
        }
        read.extend(samples);
    }
    assert_eq!(read.len(), s.samples.len(), "{}: samples read", s.name);
    for (k, ((wt, wh), (rt, rh, _))) in s.samples.iter().zip(&read).enumerate() {
        assert_eq!(wt, rt, "{} sample {k}", s.name);
        assert_eq!(canon(wh), canon(rh), "{} sample {k} at {wt}", s.name);
    }
}

/// The chunks Gauntlet cuts from the series' samples, the last one as a snapshot writes a chunk
/// still open for appends.
fn gauntlet_snapshot_chunks(s: &Series) -> Vec<CutHistogramChunk> {
    let mut ours = gauntlet_chunks(s);
    if let Some(open) = ours.last_mut() {
        open.data = rewrite_open_chunk(open);
    }
    ours
}

/// Gauntlet cuts the same chunks from the same samples: boundaries, encodings, bytes. Returns
/// what differs.
fn check_same_chunks(s: &Series, disk: &[DiskChunk]) -> Vec<String> {
    let ours = gauntlet_snapshot_chunks(s);
    let mine: Vec<(u8, i64, i64, usize)> = ours
        .iter()
        .map(|c| (c.encoding as u8, c.min_time, c.max_time, c.data.len()))
        .collect();
    let theirs: Vec<(u8, i64, i64, usize)> = disk
        .iter()
        .map(|c| (c.encoding, c.min_time, c.max_time, c.data.len()))
        .collect();
    let times = |v: &[(u8, i64, i64, usize)]| -> Vec<(u8, i64, i64)> {
        v.iter().map(|c| (c.0, c.1, c.2)).collect()
    };
    if times(&mine) != times(&theirs) {
        return vec![format!(
            "{}: chunk boundaries differ: ours {mine:?}, Prometheus's {theirs:?}",
            s.name
        )];
    }
    let mut failures = Vec::new();
    for (n, (a, b)) in ours.iter().zip(disk).enumerate() {
        if a.data != b.data {
            let at = a
                .data
                .iter()
                .zip(&b.data)
                .position(|(x, y)| x != y)
                .unwrap_or(a.data.len().min(b.data.len()));
            let around = |d: &[u8]| d[at.saturating_sub(4)..d.len().min(at + 8)].to_vec();
            failures.push(format!(
                "{} chunk {n} ({} samples from {}): bytes differ from byte {at} on: ours \
                 {:02x?}…, Prometheus's {:02x?}…",
                s.name,
                u16::from_be_bytes([b.data[0], b.data[1]]),
                b.min_time,
                around(&a.data),
                around(&b.data),
            ));
        }
    }
    failures
}

/// A series that meets Prometheus 3.5's recoding defect: Gauntlet reads every chunk
/// Prometheus wrote; its own chunks hold the samples written, each with a valid layout; and
/// Prometheus's chunks either match them (a Prometheus with the fix) or differ first in a chunk
/// whose layout visits a bucket index twice (after which Prometheus sees a counter reset where
/// there is none, so the boundaries differ too).
fn check_defect_series(s: &Series, disk: &[DiskChunk]) {
    for c in disk {
        decode(c);
    }
    let ours = gauntlet_snapshot_chunks(s);
    let ours_disk: Vec<DiskChunk> = ours
        .iter()
        .map(|c| DiskChunk {
            encoding: c.encoding as u8,
            min_time: c.min_time,
            max_time: c.max_time,
            data: c.data.clone(),
        })
        .collect();
    check_reads_back(s, &ours_disk);
    if ours_disk == disk {
        eprintln!("{}: this Prometheus has the recoding fix", s.name);
        return;
    }
    let n = ours_disk
        .iter()
        .zip(disk)
        .position(|(a, b)| a != b)
        .unwrap_or(ours_disk.len().min(disk.len()));
    let (samples, _) = decode(&disk[n]);
    let spans = match &samples.last().unwrap().1 {
        H::Int(h) => h.positive_spans.clone(),
        H::Float(h) => h.positive_spans.clone(),
    };
    assert!(
        spans.iter().skip(1).any(|s| s.offset < 0),
        "{}: chunk {n} differs from Prometheus's, whose layout {spans:?} is not the known defect",
        s.name
    );
    eprintln!(
        "{}: Prometheus's chunk {n} has the defective layout {spans:?}; Gauntlet's is valid",
        s.name
    );
}

/// Floats as their bits, so that every value (stale NaN included) survives JSON.
fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn spans_json(spans: &[Span]) -> serde_json::Value {
    spans
        .iter()
        .map(|s| vec![s.offset as i64, s.length as i64])
        .collect()
}

fn sample_json(t: i64, h: &H) -> serde_json::Value {
    use serde_json::json;
    match h {
        H::Int(h) => json!({
            "t": t, "float": false, "hint": h.counter_reset_hint as u8, "schema": h.schema,
            "zero_threshold": h.zero_threshold.to_bits(), "zero_count": h.zero_count,
            "count": h.count, "sum": h.sum.to_bits(),
            "positive_spans": spans_json(&h.positive_spans), "positive": h.positive_buckets,
            "negative_spans": spans_json(&h.negative_spans), "negative": h.negative_buckets,
            "custom_values": bits(&h.custom_values),
        }),
        H::Float(h) => json!({
            "t": t, "float": true, "hint": h.counter_reset_hint as u8, "schema": h.schema,
            "zero_threshold": h.zero_threshold.to_bits(), "zero_count": h.zero_count.to_bits(),
            "count": h.count.to_bits(), "sum": h.sum.to_bits(),
            "positive_spans": spans_json(&h.positive_spans), "positive": bits(&h.positive_buckets),
            "negative_spans": spans_json(&h.negative_spans), "negative": bits(&h.negative_buckets),
            "custom_values": bits(&h.custom_values),
        }),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes every chunk of the event-driven series (the defect ones included) with their samples,
/// and the Prometheus version that wrote them.
fn write_fixture(dir: &Path, version: &str, series: &[(&Series, Vec<DiskChunk>)]) {
    use serde_json::json;
    let mut out = Vec::new();
    let kept = |name: &str| name.starts_with("ev_") || name.starts_with("defect_");
    for (s, chunks) in series.iter().filter(|(s, _)| kept(s.name)) {
        out.push(json!({
            "series": s.name,
            "samples": s.samples.iter().map(|(t, h)| sample_json(*t, h)).collect::<Vec<_>>(),
            "chunks": chunks.iter().map(|c| json!({
                "encoding": c.encoding, "min_time": c.min_time, "max_time": c.max_time,
                "data": hex(&c.data),
            })).collect::<Vec<_>>(),
        }));
    }
    let out = json!({ "written_by": version, "series": out });
    std::fs::create_dir_all(dir).unwrap();
    let file = std::fs::File::create(dir.join("prometheus-3.json.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    serde_json::to_writer(&mut gz, &out).unwrap();
    gz.write_all(b"\n").unwrap();
    gz.finish().unwrap();
}
