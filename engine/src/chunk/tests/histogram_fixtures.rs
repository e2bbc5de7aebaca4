//! Histogram chunks written by real Prometheus 3 (`testdata/histogram-chunks/`, made by
//! `engine/tests/peers/histogram_prometheus.rs`): every chunk decodes to the samples written, with the
//! hints Prometheus reports; Gauntlet's cut rule and appenders give the same chunks from the same
//! samples; and every chunk resumes into an appender that reproduces its bytes.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use flate2::read::GzDecoder;
use serde_json::Value;

use crate::block::{CutHistogramChunk, HistogramChunkCutter};
use crate::chunk::{
    CounterResetHeader, Encoding, FloatHistogramAppender, FloatHistogramIterator, HistogramAppend,
    HistogramAppender, HistogramIterator, counter_reset_hint,
};
use crate::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};

/// A written sample.
#[derive(Debug, Clone)]
pub(super) enum H {
    Int(Histogram),
    Float(FloatHistogram),
}

impl H {
    pub(super) fn to_float(&self) -> FloatHistogram {
        match self {
            H::Int(h) => h.to_float(),
            H::Float(h) => h.clone(),
        }
    }
}

/// A chunk as Prometheus wrote it.
#[derive(Debug, Clone)]
pub(super) struct FixtureChunk {
    pub encoding: Encoding,
    pub min_time: i64,
    pub max_time: i64,
    pub data: Vec<u8>,
}

/// A series of the fixture: the samples written and the chunks Prometheus made of them.
#[derive(Debug)]
pub(super) struct FixtureSeries {
    pub name: String,
    pub samples: Vec<(i64, H)>,
    pub chunks: Vec<FixtureChunk>,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an i64: {v}"))
}

fn f(v: &Value) -> f64 {
    f64::from_bits(u(v))
}

fn spans(v: &Value) -> Vec<Span> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| Span::new(i(&s[0]) as i32, u(&s[1]) as u32))
        .collect()
}

fn list<T>(v: &Value, each: impl Fn(&Value) -> T) -> Vec<T> {
    v.as_array().unwrap().iter().map(each).collect()
}

fn sample(v: &Value) -> (i64, H) {
    let hint = CounterResetHint::from_u8(u(&v["hint"]) as u8).unwrap();
    let custom: Arc<[f64]> = list(&v["custom_values"], f).into();
    let h = if v["float"].as_bool().unwrap() {
        H::Float(FloatHistogram {
            counter_reset_hint: hint,
            schema: i(&v["schema"]) as i32,
            zero_threshold: f(&v["zero_threshold"]),
            zero_count: f(&v["zero_count"]),
            count: f(&v["count"]),
            sum: f(&v["sum"]),
            positive_spans: spans(&v["positive_spans"]),
            negative_spans: spans(&v["negative_spans"]),
            positive_buckets: list(&v["positive"], f),
            negative_buckets: list(&v["negative"], f),
            custom_values: custom.into(),
        })
    } else {
        H::Int(Histogram {
            counter_reset_hint: hint,
            schema: i(&v["schema"]) as i32,
            zero_threshold: f(&v["zero_threshold"]),
            zero_count: u(&v["zero_count"]),
            count: u(&v["count"]),
            sum: f(&v["sum"]),
            positive_spans: spans(&v["positive_spans"]),
            negative_spans: spans(&v["negative_spans"]),
            positive_buckets: list(&v["positive"], i),
            negative_buckets: list(&v["negative"], i),
            custom_values: custom.into(),
        })
    };
    (i(&v["t"]), h)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|k| u8::from_str_radix(&s[k..k + 2], 16).unwrap())
        .collect()
}

/// The fixture's series.
pub(super) fn fixture() -> Vec<FixtureSeries> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/chunk/testdata/histogram-chunks/prometheus-3.json.gz");
    let mut text = String::new();
    GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["written_by"].as_str().unwrap().contains("version 3."));
    list(&v["series"], |s| FixtureSeries {
        name: s["series"].as_str().unwrap().to_string(),
        samples: list(&s["samples"], sample),
        chunks: list(&s["chunks"], |c| FixtureChunk {
            encoding: Encoding::try_from(u(&c["encoding"]) as u8).unwrap(),
            min_time: i(&c["min_time"]),
            max_time: i(&c["max_time"]),
            data: unhex(c["data"].as_str().unwrap()),
        }),
    })
}

/// Every chunk's payload of the fixture, for hostile-input tests.
pub(super) fn fixture_payloads() -> Vec<(Encoding, Vec<u8>)> {
    fixture()
        .into_iter()
        .flat_map(|s| s.chunks.into_iter().map(|c| (c.encoding, c.data)))
        .collect()
}

/// Decodes a chunk: `(t, sample)` pairs and the header.
pub(super) fn decode(encoding: Encoding, data: &[u8]) -> (Vec<(i64, H)>, CounterResetHeader) {
    let mut out = Vec::new();
    if encoding == Encoding::Histogram {
        let mut it = HistogramIterator::new(data).unwrap();
        while let Some((t, h)) = it.next().unwrap() {
            out.push((t, H::Int(h)));
        }
        (out, it.counter_reset_header())
    } else {
        let mut it = FloatHistogramIterator::new(data).unwrap();
        while let Some((t, h)) = it.next().unwrap() {
            out.push((t, H::Float(h)));
        }
        (out, it.counter_reset_header())
    }
}

/// What a sample holds, whatever its bucket layout: the count of every bucket index that has
/// observations, floats as bits.
#[derive(Debug, PartialEq)]
pub(super) struct Canon {
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

fn indexed(spans: &[Span], counts: &[f64]) -> Vec<(i64, u64)> {
    let mut idx = Vec::new();
    let mut i = 0i64;
    for s in spans {
        i += i64::from(s.offset);
        for _ in 0..s.length {
            idx.push(i);
            i += 1;
        }
    }
    idx.into_iter()
        .zip(counts)
        .filter(|(_, c)| **c != 0.0)
        .map(|(i, c)| (i, c.to_bits()))
        .collect()
}

pub(super) fn canon(h: &H) -> Canon {
    let f = h.to_float();
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
        pos: indexed(&f.positive_spans, &f.positive_buckets),
        neg: indexed(&f.negative_spans, &f.negative_buckets),
        custom: f.custom_values.iter().map(|b| b.to_bits()).collect(),
    }
}

/// The series' chunks as Gauntlet cuts them, the last one rewritten as a snapshot writes a
/// chunk still open for appends (decoded and appended afresh, so a counter chunk's header
/// becomes `Unknown`).
pub(super) fn gauntlet_chunks(samples: &[(i64, H)]) -> Vec<CutHistogramChunk> {
    let mut c = HistogramChunkCutter::default();
    for (t, h) in samples {
        match h {
            H::Int(h) => c.append_histogram(*t, h),
            H::Float(h) => c.append_float_histogram(*t, h),
        }
        .unwrap();
    }
    let mut chunks = c.finish();
    if let Some(open) = chunks.last_mut() {
        open.data = rewrite(open.encoding, &open.data);
    }
    chunks
}

/// A chunk decoded and appended afresh with the hints a reader reports.
fn rewrite(encoding: Encoding, data: &[u8]) -> Vec<u8> {
    if encoding == Encoding::Histogram {
        let mut it = HistogramIterator::new(data).unwrap();
        let mut app = HistogramAppender::new();
        while let Some((t, h)) = it.next().unwrap() {
            let done = app.append(None, t, &h).unwrap();
            assert!(matches!(done, HistogramAppend::Appended));
        }
        app.into_bytes()
    } else {
        let mut it = FloatHistogramIterator::new(data).unwrap();
        let mut app = FloatHistogramAppender::new();
        while let Some((t, h)) = it.next().unwrap() {
            let done = app.append(None, t, &h).unwrap();
            assert!(matches!(done, HistogramAppend::Appended));
        }
        app.into_bytes()
    }
}

fn hint_of(h: &H) -> CounterResetHint {
    match h {
        H::Int(h) => h.counter_reset_hint,
        H::Float(h) => h.counter_reset_hint,
    }
}

/// The fixture holds every kind of chunk start the head makes.
#[test]
fn fixture_covers_every_header_and_both_encodings() {
    let all = fixture();
    assert!(all.len() >= 6, "{} series", all.len());
    let chunks: Vec<&FixtureChunk> = all.iter().flat_map(|s| &s.chunks).collect();
    for h in [
        CounterResetHeader::Unknown,
        CounterResetHeader::CounterReset,
        CounterResetHeader::Gauge,
    ] {
        assert!(
            chunks
                .iter()
                .any(|c| CounterResetHeader::from_flags(c.data[2]) == h),
            "no chunk with header {h:?}"
        );
    }
    for e in [Encoding::Histogram, Encoding::FloatHistogram] {
        assert!(chunks.iter().any(|c| c.encoding == e));
    }
    let samples: usize = all.iter().map(|s| s.samples.len()).sum();
    assert!(samples > 200, "{samples} samples");
}

/// Every chunk decodes to the samples written, in order, with Prometheus's hints (except where
/// Prometheus 3.5 wrote a defective layout, see below).
#[test]
fn prometheus_chunks_decode_to_the_samples_written() {
    for s in fixture().iter().filter(|s| !s.name.starts_with("defect_")) {
        let mut read = Vec::new();
        for (n, c) in s.chunks.iter().enumerate() {
            let (samples, header) = decode(c.encoding, &c.data);
            assert_eq!(samples.first().unwrap().0, c.min_time, "{} {n}", s.name);
            assert_eq!(samples.last().unwrap().0, c.max_time, "{} {n}", s.name);
            for (pos, (_, h)) in samples.iter().enumerate() {
                let want = if canon(h).stale {
                    CounterResetHint::Unknown
                } else {
                    counter_reset_hint(header, pos)
                };
                assert_eq!(hint_of(h), want, "{} chunk {n} sample {pos}", s.name);
            }
            read.extend(samples);
        }
        assert_eq!(read.len(), s.samples.len(), "{}", s.name);
        for (k, ((wt, wh), (rt, rh))) in s.samples.iter().zip(&read).enumerate() {
            assert_eq!(wt, rt, "{} sample {k}", s.name);
            assert_eq!(canon(wh), canon(rh), "{} sample {k}", s.name);
        }
    }
}

/// Gauntlet cuts the same samples into the same chunks, byte for byte.
#[test]
fn same_samples_give_prometheus_chunks() {
    for s in fixture().iter().filter(|s| !s.name.starts_with("defect_")) {
        let ours = gauntlet_chunks(&s.samples);
        assert_eq!(ours.len(), s.chunks.len(), "{}", s.name);
        for (n, (a, b)) in ours.iter().zip(&s.chunks).enumerate() {
            assert_eq!(
                (a.encoding, a.min_time, a.max_time),
                (b.encoding, b.min_time, b.max_time),
                "{} chunk {n}",
                s.name
            );
            assert!(a.data == b.data, "{} chunk {n}: bytes differ", s.name);
        }
    }
}

/// Prometheus 3.5 writes a layout that visits a bucket index twice when a sample leaves out
/// empty buckets and brings new ones: Gauntlet reads such chunks bucket by bucket, as
/// Prometheus does, and writes instead the valid layout a Prometheus with PR #16893 writes.
#[test]
fn defective_prometheus_layouts_read_and_are_not_reproduced() {
    let all = fixture();
    let defects: Vec<&FixtureSeries> = all
        .iter()
        .filter(|s| s.name.starts_with("defect_"))
        .collect();
    assert_eq!(defects.len(), 2);
    for s in defects {
        let (samples, _) = decode(s.chunks[0].encoding, &s.chunks[0].data);
        let spans = match &samples[samples.len() - 1].1 {
            H::Int(h) => h.positive_spans.clone(),
            H::Float(h) => h.positive_spans.clone(),
        };
        assert!(
            spans.iter().skip(1).any(|sp| sp.offset < 0),
            "{}: {spans:?}",
            s.name
        );
        for c in &s.chunks[1..] {
            decode(c.encoding, &c.data);
        }
        let ours = gauntlet_chunks(&s.samples);
        assert_ne!(ours[0].data, s.chunks[0].data, "{}", s.name);
        let mut read = Vec::new();
        for c in &ours {
            let (samples, _) = decode(c.encoding, &c.data);
            for (_, h) in &samples {
                match h {
                    H::Int(h) => h.validate().unwrap(),
                    H::Float(h) => h.validate().unwrap(),
                }
            }
            read.extend(samples);
        }
        assert_eq!(read.len(), s.samples.len());
        for ((_, w), (_, r)) in s.samples.iter().zip(&read) {
            assert_eq!(canon(w), canon(r), "{}", s.name);
        }
    }
}

/// Every chunk resumes into an appender holding the same bytes, which then appends as if it
/// had written them: a chunk's first samples, written, resumed and continued with the rest,
/// give the chunk's bytes at every split point. (The defective layouts of Prometheus 3.5 resume
/// too, but are not valid histograms to append.)
#[test]
fn every_chunk_resumes_into_an_appender() {
    for (name, encoding, data) in fixture().into_iter().flat_map(|s| {
        s.chunks
            .into_iter()
            .map(move |c| (s.name.clone(), c.encoding, c.data))
    }) {
        let header = CounterResetHeader::from_flags(data[2]);
        let (samples, _) = decode(encoding, &data);
        match encoding {
            Encoding::Histogram => {
                let a = HistogramAppender::from_payload(&data).unwrap();
                assert_eq!(a.bytes(), &data[..]);
            }
            _ => {
                let a = FloatHistogramAppender::from_payload(&data).unwrap();
                assert_eq!(a.bytes(), &data[..]);
            }
        }
        if name.starts_with("defect_") {
            continue;
        }
        for split in 1..samples.len() {
            let resumed = match encoding {
                Encoding::Histogram => {
                    let mut a = HistogramAppender::new();
                    for (t, h) in &samples[..split] {
                        let H::Int(h) = h else { unreachable!() };
                        a.append(None, *t, h).unwrap();
                    }
                    a.set_counter_reset_header(header);
                    let mut b = HistogramAppender::from_payload(a.bytes()).unwrap();
                    for (t, h) in &samples[split..] {
                        let H::Int(h) = h else { unreachable!() };
                        let r = b.append(None, *t, h).unwrap();
                        assert!(matches!(r, HistogramAppend::Appended), "{r:?}");
                    }
                    b.into_bytes()
                }
                _ => {
                    let mut a = FloatHistogramAppender::new();
                    for (t, h) in &samples[..split] {
                        a.append(None, *t, &h.to_float()).unwrap();
                    }
                    a.set_counter_reset_header(header);
                    let mut b = FloatHistogramAppender::from_payload(a.bytes()).unwrap();
                    for (t, h) in &samples[split..] {
                        let r = b.append(None, *t, &h.to_float()).unwrap();
                        assert!(matches!(r, HistogramAppend::Appended), "{r:?}");
                    }
                    b.into_bytes()
                }
            };
            assert!(
                resumed == data,
                "{name}: chunk split at {split}: bytes differ"
            );
        }
    }
}

/// The count-and-sum decoder gives, for every sample of every fixture series (each series'
/// chunks read in order, over the whole range and a part of it), the timestamp, count, sum,
/// zero bucket, schema, custom bounds and hint of the whole decoder; the samples it writes
/// whole (each chunk's last, and every sample whose unknown hint is decided against the one
/// before) are the whole decoder's; and it hands a series back only for a gauge or an unknown
/// hint after a sample it did not write whole.
#[test]
fn count_and_sum_decode_matches_whole_decode_on_every_fixture_chunk() {
    use crate::chunk::{
        HistogramBatch, ReusedDecode, decode_histogram_chunks_reusing,
        decode_histogram_stats_reusing,
    };
    let mut checked = 0usize;
    let mut stats = HistogramBatch::new();
    let mut whole = HistogramBatch::new();
    for s in fixture() {
        let chunks: Vec<(u8, &[u8])> = s
            .chunks
            .iter()
            .map(|c| (c.encoding as u8, &c.data[..]))
            .collect();
        let (Some(first), Some(last)) = (s.chunks.first(), s.chunks.last()) else {
            continue;
        };
        let middle = (
            first.min_time + (last.max_time - first.min_time) / 3,
            last.max_time - 1,
        );
        for range in [(i64::MIN, i64::MAX), middle] {
            let got_whole =
                decode_histogram_chunks_reusing(chunks.iter().copied(), range, &mut whole).unwrap();
            let got =
                decode_histogram_stats_reusing(chunks.iter().copied(), range, &mut stats).unwrap();
            if got_whole != ReusedDecode::Done {
                continue;
            }
            let at = format!("{} {range:?}", s.name);
            if got == ReusedDecode::NeedsBuckets {
                let gauge = whole
                    .h
                    .iter()
                    .any(|h| h.counter_reset_hint == CounterResetHint::Gauge);
                let after_stale = whole
                    .h
                    .windows(2)
                    .any(|w| w[0].is_stale() && !w[1].is_stale());
                assert!(gauge || after_stale, "{at}: handed back without cause");
                continue;
            }
            assert_eq!(got, ReusedDecode::Done, "{at}");
            assert_eq!(stats.ts, whole.ts, "{at}");
            let mut prev_kept: Option<usize> = None;
            for (k, (a, b)) in stats.h.iter().zip(&whole.h).enumerate() {
                let at = format!("{at} sample {k}");
                assert_eq!(a.sum.to_bits(), b.sum.to_bits(), "{at}");
                assert_eq!(a.count.to_bits(), b.count.to_bits(), "{at}");
                assert_eq!(a.zero_count.to_bits(), b.zero_count.to_bits(), "{at}");
                assert_eq!(
                    a.zero_threshold.to_bits(),
                    b.zero_threshold.to_bits(),
                    "{at}"
                );
                assert_eq!(a.schema, b.schema, "{at}");
                assert_eq!(a.custom_values, b.custom_values, "{at}");
                assert_eq!(a.counter_reset_hint, b.counter_reset_hint, "{at}");
                if let Some(p) = prev_kept
                    && b.counter_reset_hint == CounterResetHint::Unknown
                {
                    assert_eq!(a, b, "{at}: a sample compared for resets is whole");
                    assert_eq!(stats.h[p], whole.h[p], "{at}: and so is the one before");
                }
                if a.positive_spans.is_empty() && a.negative_spans.is_empty() {
                    assert!(a.positive_buckets.is_empty() && a.negative_buckets.is_empty());
                } else {
                    assert_eq!(a, b, "{at}");
                }
                if !b.is_stale() {
                    prev_kept = Some(k);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "{checked} samples checked");
}
