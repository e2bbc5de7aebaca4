//! What histogram appenders and the cut rule decide, sample by sample: when a chunk is
//! rewritten, when a new one starts and with which header; and that whatever is appended reads
//! back.

use proptest::prelude::*;

use super::histogram_fixtures::{H, canon, decode};
use crate::block::{
    CutHistogramChunk, HistogramChunkCutter, MIN_SAMPLES_PER_HISTOGRAM_CHUNK,
    TARGET_BYTES_PER_HISTOGRAM_CHUNK, cut_histogram_chunks,
};
use crate::chunk::{
    ChunkError, CounterResetHeader, Encoding, FloatHistogramAppender, HistogramAppend,
    HistogramAppender, HistogramIterator, MAX_HISTOGRAM_SAMPLES, decode_float_histogram_chunk,
    decode_histogram_chunk,
};
use crate::histogram::{
    CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram, HistogramError, Span,
};

/// An integer histogram from absolute positive counts at consecutive indices from `first`.
fn hist(first: i32, counts: &[u64]) -> Histogram {
    let mut prev = 0i64;
    let deltas = counts
        .iter()
        .map(|&c| {
            let d = c as i64 - prev;
            prev = c as i64;
            d
        })
        .collect();
    Histogram {
        schema: 1,
        zero_threshold: 0.001,
        count: counts.iter().sum(),
        sum: 10.0,
        positive_spans: vec![Span::new(first, counts.len() as u32)],
        positive_buckets: deltas,
        ..Histogram::default()
    }
}

fn gauge(h: Histogram) -> Histogram {
    Histogram {
        counter_reset_hint: CounterResetHint::Gauge,
        ..h
    }
}

fn appended(a: &mut HistogramAppender, t: i64, h: &Histogram) {
    let r = a.append(None, t, h).unwrap();
    assert!(matches!(r, HistogramAppend::Appended), "{r:?}");
}

fn new_chunk(a: &mut HistogramAppender, t: i64, h: &Histogram) -> HistogramAppender {
    match a.append(None, t, h).unwrap() {
        HistogramAppend::NewChunk(next) => next,
        r => panic!("expected a new chunk, got {r:?}"),
    }
}

fn samples_of(data: &[u8]) -> Vec<(i64, Histogram)> {
    decode_histogram_chunk(data).unwrap()
}

#[test]
fn new_buckets_rewrite_the_chunk_with_empty_buckets_in_earlier_samples() {
    let mut a = HistogramAppender::new();
    appended(&mut a, 1000, &hist(0, &[1, 2]));
    appended(&mut a, 2000, &hist(0, &[2, 3]));
    let r = a.append(None, 3000, &hist(0, &[2, 4, 1])).unwrap();
    assert!(matches!(r, HistogramAppend::Recoded));
    let got = samples_of(a.bytes());
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].1.positive_spans, [Span::new(0, 3)]);
    assert_eq!(got[0].1.positive_counts(), [1, 2, 0]);
    assert_eq!(got[2].1.positive_counts(), [2, 4, 1]);
    // A bucket below the first, past a gap.
    let r = a.append(None, 4000, &{
        let mut h = hist(0, &[2, 4, 1]);
        h.positive_spans = vec![Span::new(-3, 1), Span::new(2, 3)];
        h.positive_buckets = vec![5, -3, 2, -3];
        h.count = 12;
        h
    });
    assert!(matches!(r, Ok(HistogramAppend::Recoded)));
    let got = samples_of(a.bytes());
    assert_eq!(got[0].1.positive_spans, [Span::new(-3, 1), Span::new(2, 3)]);
    assert_eq!(got[0].1.positive_counts(), [0, 1, 2, 0]);
    assert_eq!(a.counter_reset_header(), CounterResetHeader::Unknown);
}

#[test]
fn a_sample_without_an_empty_bucket_of_the_chunk_gets_it_back() {
    let mut a = HistogramAppender::new();
    appended(&mut a, 1000, &hist(0, &[1, 0, 2]));
    // Bucket 1 is empty in the chunk and missing from the sample.
    let mut h = hist(0, &[2, 0, 3]);
    h.positive_spans = vec![Span::new(0, 1), Span::new(1, 1)];
    h.positive_buckets = vec![2, 1];
    appended(&mut a, 2000, &h);
    let got = samples_of(a.bytes());
    assert_eq!(got[1].1.positive_spans, [Span::new(0, 3)]);
    assert_eq!(got[1].1.positive_counts(), [2, 0, 3]);
    // A bucket in use may not go missing: that is a counter reset.
    let mut h = hist(0, &[3, 0, 3]);
    h.positive_spans = vec![Span::new(0, 1)];
    h.positive_buckets = vec![3];
    h.count = 3;
    let next = new_chunk(&mut a, 3000, &h);
    assert_eq!(
        next.counter_reset_header(),
        CounterResetHeader::CounterReset
    );
}

#[test]
fn resets_schema_changes_and_stale_markers_start_chunks_with_their_headers() {
    let mut a = HistogramAppender::new();
    appended(&mut a, 1000, &hist(0, &[5, 5]));
    // Fewer observations: a counter reset.
    let mut b = new_chunk(&mut a, 2000, &hist(0, &[1, 1]));
    assert_eq!(b.counter_reset_header(), CounterResetHeader::CounterReset);
    // An explicit reset hint, counts growing.
    let mut h = hist(0, &[2, 2]);
    h.counter_reset_hint = CounterResetHint::CounterReset;
    let mut c = new_chunk(&mut b, 3000, &h);
    assert_eq!(c.counter_reset_header(), CounterResetHeader::CounterReset);
    // A new schema: nobody knows.
    let mut h = hist(0, &[3, 3]);
    h.schema = 0;
    let mut d = new_chunk(&mut c, 4000, &h);
    assert_eq!(d.counter_reset_header(), CounterResetHeader::Unknown);
    // A stale marker fits; whatever follows it starts a chunk.
    appended(&mut d, 5000, &Histogram::stale_marker());
    appended(&mut d, 6000, &Histogram::stale_marker());
    let mut h = hist(0, &[4, 4]);
    h.schema = 0;
    let e = new_chunk(&mut d, 7000, &h);
    assert_eq!(e.counter_reset_header(), CounterResetHeader::Unknown);
    let got = samples_of(d.bytes());
    assert_eq!(got.len(), 3);
    assert!(got[1].1.is_stale() && got[2].1.is_stale());
    assert_eq!(got[1].1.counter_reset_hint, CounterResetHint::Unknown);
}

#[test]
fn gauges_take_buckets_coming_and_going_and_never_mix_with_counters() {
    let mut a = HistogramAppender::new();
    appended(&mut a, 1000, &gauge(hist(0, &[5, 1])));
    assert_eq!(a.counter_reset_header(), CounterResetHeader::Gauge);
    // Counts go down, bucket 0 goes, bucket 2 comes: the chunk takes it.
    let mut h = gauge(hist(1, &[1, 3]));
    h.count = 4;
    let r = a.append(None, 2000, &h).unwrap();
    assert!(matches!(r, HistogramAppend::Recoded));
    let got = samples_of(a.bytes());
    assert_eq!(got[1].1.positive_spans, [Span::new(0, 3)]);
    assert_eq!(got[1].1.positive_counts(), [0, 1, 3]);
    assert_eq!(got[0].1.positive_counts(), [5, 1, 0]);
    assert!(
        got.iter()
            .all(|(_, h)| h.counter_reset_hint == CounterResetHint::Gauge)
    );
    // A counter sample after gauges, and a gauge after counters.
    let mut b = new_chunk(&mut a, 3000, &hist(0, &[9, 9]));
    assert_eq!(
        b.counter_reset_header(),
        CounterResetHeader::NotCounterReset
    );
    let c = new_chunk(&mut b, 4000, &gauge(hist(0, &[1, 1])));
    assert_eq!(c.counter_reset_header(), CounterResetHeader::Gauge);
}

#[test]
fn custom_bucket_histograms_reset_on_new_bounds() {
    let nhcb = |bounds: &[f64], counts: &[u64]| Histogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        zero_threshold: 0.0,
        custom_values: bounds.into(),
        ..hist(0, counts)
    };
    let mut a = HistogramAppender::new();
    appended(&mut a, 1000, &nhcb(&[0.5, 1.0], &[1, 1]));
    let r = a
        .append(None, 2000, &nhcb(&[0.5, 1.0], &[1, 2, 1]))
        .unwrap();
    assert!(matches!(r, HistogramAppend::Recoded));
    let b = new_chunk(&mut a, 3000, &nhcb(&[0.25, 1.0], &[2, 2]));
    assert_eq!(b.counter_reset_header(), CounterResetHeader::CounterReset);
    let got = samples_of(a.bytes());
    assert_eq!(&got[0].1.custom_values[..], &[0.5, 1.0]);
    // Bounds written as 64-bit floats (not multiples of 0.001) come back exactly.
    let odd = [0.0001, 1.0 / 3.0, 7.5];
    let mut c = HistogramAppender::new();
    appended(&mut c, 1000, &nhcb(&odd, &[1, 1, 1]));
    assert_eq!(&samples_of(c.bytes())[0].1.custom_values[..], &odd);
    // -0 (a bound, the zero threshold) takes the short forms of 0, as Prometheus writes it,
    // and reads back as 0.
    let mut d = HistogramAppender::new();
    let mut h = nhcb(&[-0.0, 1.0], &[1, 1]);
    h.zero_threshold = -0.0;
    appended(&mut d, 1000, &h);
    let back = &samples_of(d.bytes())[0].1;
    assert_eq!(back.custom_values[0].to_bits(), 0.0f64.to_bits());
    assert_eq!(back.zero_threshold.to_bits(), 0.0f64.to_bits());
}

#[test]
fn a_new_chunk_is_judged_against_the_one_it_follows() {
    let prev = {
        let mut a = HistogramAppender::new();
        appended(&mut a, 1000, &hist(0, &[5, 5]));
        a
    };
    for (h, want) in [
        (hist(0, &[6, 5]), CounterResetHeader::NotCounterReset),
        (hist(0, &[1, 1]), CounterResetHeader::CounterReset),
        (
            Histogram {
                schema: 0,
                ..hist(0, &[6, 6])
            },
            CounterResetHeader::Unknown,
        ),
    ] {
        let mut a = HistogramAppender::new();
        appended_with_prev(&mut a, &prev, 2000, &h);
        assert_eq!(a.counter_reset_header(), want, "{h:?}");
        assert_eq!(prev.counter_reset_after(&h), want);
    }
    // A float chunk after a schema change is not Unknown but NotCounterReset.
    let fprev = {
        let mut a = FloatHistogramAppender::new();
        a.append(None, 1000, &hist(0, &[5, 5]).to_float()).unwrap();
        a
    };
    let mut f = Histogram {
        schema: 0,
        ..hist(0, &[6, 6])
    }
    .to_float();
    assert_eq!(
        fprev.counter_reset_after(&f),
        CounterResetHeader::NotCounterReset
    );
    f.count = 1.0;
    f.positive_buckets = vec![0.5, 0.5];
    assert_eq!(
        fprev.counter_reset_after(&f),
        CounterResetHeader::CounterReset
    );
}

fn appended_with_prev(a: &mut HistogramAppender, prev: &HistogramAppender, t: i64, h: &Histogram) {
    let r = a.append(Some(prev), t, h).unwrap();
    assert!(matches!(r, HistogramAppend::Appended));
}

#[test]
fn invalid_histograms_are_refused_and_a_full_chunk_says_so() {
    let mut a = HistogramAppender::new();
    let mut h = hist(0, &[1, 2]);
    h.count = 7;
    assert!(matches!(
        a.append(None, 1000, &h),
        Err(ChunkError::InvalidHistogram {
            source: HistogramError::CountMismatch { .. }
        })
    ));
    assert_eq!(a.num_samples(), 0);
    let mut h = hist(0, &[1, 2]);
    h.schema = 12;
    assert!(a.append(None, 1000, &h).is_err());

    for t in 0..MAX_HISTOGRAM_SAMPLES as i64 {
        appended(&mut a, t, &Histogram::stale_marker());
    }
    assert_eq!(
        a.append(None, 1 << 20, &Histogram::stale_marker())
            .unwrap_err(),
        ChunkError::TooManySamples {
            max: MAX_HISTOGRAM_SAMPLES
        }
    );
    let mut it = HistogramIterator::new(a.bytes()).unwrap();
    assert_eq!(it.num_samples(), MAX_HISTOGRAM_SAMPLES);
    assert_eq!(it.seek(60_000).unwrap(), Some(60_000));
    assert_eq!(it.seek(10).unwrap(), Some(60_000));
}

/// A series sampled every `step` ms from 0 with `n` samples of eight buckets growing by
/// uneven amounts, so each sample takes several bytes.
fn steady(n: usize, step: i64) -> Vec<(i64, Histogram)> {
    let mut counts = [0u64; 8];
    let mut x = 7u64;
    (0..n)
        .map(|k| {
            for c in &mut counts {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                *c += (x >> 59) * 3;
            }
            (k as i64 * step, hist(0, &counts))
        })
        .collect()
}

#[test]
fn cut_rule_predicts_chunk_ends_and_keeps_chunk_ranges() {
    let step = 15_000;
    let samples = steady(2000, step);
    let chunks = cut_histogram_chunks(&samples, 7_200_000).unwrap();
    let total: u64 = chunks
        .iter()
        .map(|c| u64::from(u16::from_be_bytes([c.data[0], c.data[1]])))
        .sum();
    assert_eq!(total, 2000);
    for w in chunks.windows(2) {
        assert!(w[0].max_time < w[1].min_time);
    }
    for c in &chunks {
        // Within one 2h range.
        assert_eq!(c.min_time / 7_200_000, c.max_time / 7_200_000, "{c:?}");
        assert!(c.data.len() < 2 * TARGET_BYTES_PER_HISTOGRAM_CHUNK + 200);
    }
    // Once a chunk holds 256 bytes its end is predicted so that the rest of the range splits
    // into chunks of equal time spans (each chunk predicts afresh): in each full range every
    // chunk but the last covers about the same time and comes near the 1024-byte target.
    for range in 0..3 {
        let (lo, hi) = (range * 7_200_000, (range + 1) * 7_200_000);
        let inside: Vec<&CutHistogramChunk> = chunks
            .iter()
            .filter(|c| c.min_time >= lo && c.min_time < hi)
            .collect();
        assert!(
            inside.len() >= 3,
            "{} chunks in range {range}",
            inside.len()
        );
        let span = inside[0].max_time - inside[0].min_time;
        for c in &inside[..inside.len() - 1] {
            let (s, len) = (c.max_time - c.min_time, c.data.len());
            assert!(
                s * 10 > span * 9 && s * 10 < span * 11,
                "range {range}: {s} vs {span}"
            );
            assert!(
                len > TARGET_BYTES_PER_HISTOGRAM_CHUNK * 3 / 4,
                "range {range}: {len} B"
            );
        }
        assert_eq!(inside.last().unwrap().max_time, hi - step);
    }
}

#[test]
fn cut_rule_keeps_ten_samples_unless_the_range_ends() {
    // Samples so big that 2048 bytes come after a few (200 buckets growing unevenly): still 10
    // per chunk.
    let wide: Vec<(i64, Histogram)> = (0..40u64)
        .map(|k| {
            let counts: Vec<u64> = (0..200u64)
                .map(|b| k * k * (b + 1) * 100 + (k * 31 + b * 17) % 97)
                .collect();
            (k as i64 * 1000, hist(0, &counts))
        })
        .collect();
    let chunks = cut_histogram_chunks(&wide, 7_200_000).unwrap();
    assert!(chunks.len() > 1);
    for c in &chunks[..chunks.len() - 1] {
        let n = u16::from_be_bytes([c.data[0], c.data[1]]) as usize;
        assert!(n >= MIN_SAMPLES_PER_HISTOGRAM_CHUNK, "{n} samples");
    }
    // Across a range boundary a chunk ends however few samples it has.
    let two = vec![(7_199_000, hist(0, &[1])), (7_200_000, hist(0, &[2]))];
    let chunks = cut_histogram_chunks(&two, 7_200_000).unwrap();
    assert_eq!(chunks.len(), 2);
}

#[test]
fn cutter_refuses_out_of_order_and_invalid_samples_and_switches_encodings() {
    let mut c = HistogramChunkCutter::default();
    c.append_histogram(1000, &hist(0, &[1])).unwrap();
    assert_eq!(
        c.append_histogram(1000, &hist(0, &[1])),
        Err(ChunkError::OutOfOrderSample {
            t: 1000,
            max_t: 1000
        })
    );
    assert!(matches!(
        c.append_histogram(500, &hist(0, &[1])),
        Err(ChunkError::OutOfOrderSample { .. })
    ));
    let mut bad = hist(0, &[1]);
    bad.positive_buckets.push(1);
    assert!(matches!(
        c.append_histogram(2000, &bad),
        Err(ChunkError::InvalidHistogram { .. })
    ));
    c.append_float_histogram(3000, &hist(0, &[2]).to_float())
        .unwrap();
    c.append_histogram(4000, &hist(0, &[3])).unwrap();
    let chunks: Vec<CutHistogramChunk> = c.finish();
    let encodings: Vec<Encoding> = chunks.iter().map(|c| c.encoding).collect();
    assert_eq!(
        encodings,
        [
            Encoding::Histogram,
            Encoding::FloatHistogram,
            Encoding::Histogram
        ]
    );
    // A switch of type has nothing to be judged against.
    assert!(
        chunks
            .iter()
            .all(|c| CounterResetHeader::from_flags(c.data[2]) == CounterResetHeader::Unknown)
    );
}

/// A random series' steps: an event byte (8: reset, 9: stale marker) and observations as
/// (bucket index, count).
type Steps = Vec<(u8, Vec<(i8, u16)>)>;

/// Random counter or gauge series of integer histograms: buckets coming (and, for gauges,
/// going), resets, stale markers.
fn series_strategy() -> impl Strategy<Value = (bool, Steps)> {
    (
        any::<bool>(),
        proptest::collection::vec(
            (
                0u8..10,
                proptest::collection::vec((-6i8..6, 0u16..50), 0..6),
            ),
            1..40,
        ),
    )
}

fn build(gauge_series: bool, steps: &Steps) -> Vec<(i64, Histogram)> {
    let mut counts = std::collections::BTreeMap::<i32, u64>::new();
    let mut out = Vec::new();
    for (k, (event, buckets)) in steps.iter().enumerate() {
        let t = k as i64 * 15_000 + i64::from(*event) * 7;
        if *event == 9 {
            out.push((t, Histogram::stale_marker()));
            continue;
        }
        if gauge_series || *event == 8 {
            counts.clear();
        }
        for &(i, c) in buckets {
            *counts.entry(i32::from(i)).or_insert(0) += u64::from(c);
        }
        let mut spans: Vec<Span> = Vec::new();
        let mut deltas = Vec::new();
        let (mut last, mut prev) = (0i32, 0i64);
        for (n, (&i, &c)) in counts.iter().enumerate() {
            if n > 0 && i == last + 1 {
                spans.last_mut().unwrap().length += 1;
            } else {
                spans.push(Span::new(if n == 0 { i } else { i - last - 1 }, 1));
            }
            deltas.push(c as i64 - prev);
            prev = c as i64;
            last = i;
        }
        out.push((
            t,
            Histogram {
                counter_reset_hint: if gauge_series {
                    CounterResetHint::Gauge
                } else {
                    CounterResetHint::Unknown
                },
                schema: 2,
                count: counts.values().sum(),
                sum: k as f64,
                positive_spans: spans,
                positive_buckets: deltas,
                ..Histogram::default()
            },
        ));
    }
    out
}

proptest! {
    /// Whatever the cut rule makes of a series decodes to the same samples, and each chunk
    /// resumes into an appender holding its bytes.
    #[test]
    fn cut_series_read_back((gauge_series, steps) in series_strategy()) {
        let samples = build(gauge_series, &steps);
        let chunks = cut_histogram_chunks(&samples, 7_200_000).unwrap();
        let mut read = Vec::new();
        for c in &chunks {
            read.extend(decode(c.encoding, &c.data).0);
            let resumed = HistogramAppender::from_payload(&c.data).unwrap();
            prop_assert_eq!(resumed.bytes(), &c.data[..]);
        }
        prop_assert_eq!(read.len(), samples.len());
        for ((wt, w), (rt, r)) in samples.iter().zip(&read) {
            prop_assert_eq!(wt, rt);
            prop_assert_eq!(canon(&H::Int(w.clone())), canon(r));
        }
        // The same series as float histograms.
        let mut c = HistogramChunkCutter::default();
        for (t, h) in &samples {
            c.append_float_histogram(*t, &h.to_float()).unwrap();
        }
        let mut read = Vec::new();
        for chunk in c.finish() {
            read.extend(decode_float_histogram_chunk(&chunk.data).unwrap());
            let resumed = FloatHistogramAppender::from_payload(&chunk.data).unwrap();
            prop_assert_eq!(resumed.bytes(), &chunk.data[..]);
        }
        prop_assert_eq!(read.len(), samples.len());
        for ((_, w), (_, r)) in samples.iter().zip(&read) {
            prop_assert_eq!(canon(&H::Int(w.clone())), canon(&H::Float(r.clone())));
        }
    }

    /// Float counts of every kind (fractions, huge, tiny) survive the XOR encoding bit for bit.
    #[test]
    fn float_counts_survive(counts in proptest::collection::vec(proptest::collection::vec(0u64..u64::MAX / 2, 3), 1..20)) {
        let mut a = FloatHistogramAppender::new();
        let mut written = Vec::new();
        for (k, c) in counts.iter().enumerate() {
            let buckets: Vec<f64> = c.iter().map(|&b| f64::from_bits(b >> 2)).collect();
            let h = FloatHistogram {
                counter_reset_hint: CounterResetHint::Gauge,
                schema: -4,
                count: buckets.iter().sum(),
                sum: -(k as f64),
                positive_spans: vec![Span::new(-1, 3)],
                positive_buckets: buckets,
                ..FloatHistogram::default()
            };
            match a.append(None, k as i64, &h).unwrap() {
                HistogramAppend::NewChunk(_) => unreachable!("a gauge chunk takes every layout"),
                _ => written.push(h),
            }
        }
        let read = decode_float_histogram_chunk(a.bytes()).unwrap();
        for (w, (_, r)) in written.iter().zip(&read) {
            prop_assert!(w.identical(r), "{:?} vs {:?}", w, r);
        }
    }
}
