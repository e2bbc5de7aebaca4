//! Native histogram helpers shared by the receiver's histogram tests (included with
//! `#[path]`, next to `mod common;`): histograms of three kinds as remote write carries them,
//! 1.0 and 2.0 bodies of them, and what a receiver serves of them over the StoreAPI, decoded
//! from its chunks into one comparable form.

#![allow(dead_code)]

use std::collections::BTreeMap;

pub use crate::common::histograms::{deltas, spans};
use crate::common::receive::snappy;
use crate::common::storeapi::hex;
use gauntlet_engine::chunk::{decode_float_histogram_chunk, decode_histogram_chunk};
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use gauntlet_proto::io::prometheus::write::v2 as pb2;
use gauntlet_proto::prometheus as pb;
use prost::Message;

pub const TENANT: &str = "default-tenant";
pub const V2: (&str, &str) = (
    "Content-Type",
    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
);

/// Series (label name → value) → histogram samples, each as (timestamp ms, normal form).
pub type Hists = BTreeMap<BTreeMap<String, String>, Vec<(i64, FloatHistogram)>>;

/// Series → (timestamp ms, count, sum) per histogram sample, as the HTTP API answers.
pub type CountSums = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64, f64)>>;

/// A histogram in a form two encodings of it share: float counts, empty buckets dropped,
/// spans joined, no counter-reset hint (chunks carry their own).
pub fn normal(h: FloatHistogram) -> FloatHistogram {
    let mut h = FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        ..h
    };
    h.compact(0).unwrap();
    h
}

/// Histogram `j` of series `i` of kind `kind` at `t`: integer ones gain a bucket every other
/// sample (the head recodes its chunk), float ones switch schema 1 → 1, custom ones have
/// custom bounds.
pub fn hist(kind: usize, i: usize, j: usize, t: i64) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    let (i, j) = (i as u64, j as u64);
    match kind {
        0 => {
            let mut pos = vec![i + j + 1, 2 * j + 3, 5];
            let mut pos_spans = vec![(-1, 2), (1, 1)];
            if j % 2 == 1 {
                pos.push(j + 2);
                pos_spans[1].1 = 2;
            }
            let neg = [j + 1, i % 5];
            let zero = (i + j) % 3;
            pb::Histogram {
                count: Some(Count::CountInt(
                    pos.iter().sum::<u64>() + neg.iter().sum::<u64>() + zero,
                )),
                zero_count: Some(ZeroCount::ZeroCountInt(zero)),
                sum: 1.5 * (i * 10 + j) as f64 - 3.25,
                schema: 2,
                zero_threshold: 0.001,
                positive_spans: spans(&pos_spans),
                positive_deltas: deltas(&pos),
                negative_spans: spans(&[(2, 2)]),
                negative_deltas: deltas(&neg),
                timestamp: t,
                ..Default::default()
            }
        }
        1 => {
            let pos: Vec<f64> = (0..4).map(|k| 0.25 * (i + j + k) as f64 + 0.5).collect();
            let zero = 0.5 * (j % 4) as f64;
            pb::Histogram {
                count: Some(Count::CountFloat(pos.iter().sum::<f64>() + zero)),
                zero_count: Some(ZeroCount::ZeroCountFloat(zero)),
                sum: 1e6 + 0.1 * (i * 10 + j) as f64,
                schema: 1,
                zero_threshold: 0.0,
                positive_spans: spans(&[(0, 1), (2, 3)]),
                positive_counts: pos,
                reset_hint: 3,
                timestamp: t,
                ..Default::default()
            }
        }
        _ => {
            let pos = vec![(i + j) as f64, 0.0, 2.5, 1e-7 * j as f64];
            pb::Histogram {
                count: Some(Count::CountFloat(pos.iter().sum())),
                zero_count: Some(ZeroCount::ZeroCountFloat(0.0)),
                sum: 3.0 * j as f64,
                schema: -53,
                positive_spans: spans(&[(0, 2), (1, 2)]),
                positive_counts: pos,
                custom_values: vec![0.1, 0.5, 1.0, 5.0],
                timestamp: t,
                ..Default::default()
            }
        }
    }
}

/// The histogram a message carries, in normal form.
pub fn model(h: &pb::Histogram) -> FloatHistogram {
    use pb::histogram::{Count, ZeroCount};
    let sp = |s: &[pb::BucketSpan]| -> Vec<Span> {
        s.iter()
            .map(|s| Span {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    let f = match h.count {
        Some(Count::CountFloat(count)) => FloatHistogram {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: match h.zero_count {
                Some(ZeroCount::ZeroCountFloat(z)) => z,
                _ => unreachable!(),
            },
            count,
            sum: h.sum,
            positive_spans: sp(&h.positive_spans),
            negative_spans: sp(&h.negative_spans),
            positive_buckets: h.positive_counts.clone(),
            negative_buckets: h.negative_counts.clone(),
            custom_values: h.custom_values.as_slice().into(),
            ..FloatHistogram::default()
        },
        _ => Histogram {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: match h.zero_count {
                Some(ZeroCount::ZeroCountInt(z)) => z,
                _ => unreachable!(),
            },
            count: match h.count {
                Some(Count::CountInt(n)) => n,
                _ => unreachable!(),
            },
            sum: h.sum,
            positive_spans: sp(&h.positive_spans),
            negative_spans: sp(&h.negative_spans),
            positive_buckets: h.positive_deltas.clone(),
            negative_buckets: h.negative_deltas.clone(),
            ..Histogram::default()
        }
        .to_float(),
    };
    normal(f)
}

/// `n` series `name{i="0".."n"}` of histograms of kinds 0, 1, 2 in turn, `samples` each,
/// 1 s apart from `t0`.
pub fn batch(name: &str, n: usize, t0: i64, samples: usize) -> Vec<pb::TimeSeries> {
    (0..n)
        .map(|i| pb::TimeSeries {
            labels: vec![
                pb::Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                pb::Label {
                    name: "i".into(),
                    value: i.to_string(),
                },
            ],
            histograms: (0..samples)
                .map(|j| hist(i % 3, i, j, t0 + j as i64 * 1000))
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// A remote write 1.0 body of `ts`.
pub fn body_v1(ts: &[pb::TimeSeries]) -> Vec<u8> {
    snappy(
        &pb::WriteRequest {
            timeseries: ts.to_vec(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

/// A remote write 2.0 body of `ts` (its histograms re-read as 2.0 messages: fields 1-16 are
/// the same).
pub fn body_v2(ts: &[pb::TimeSeries]) -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut index = BTreeMap::new();
    let mut sym = |s: &str| -> u32 {
        *index.entry(s.to_string()).or_insert_with(|| {
            symbols.push(s.to_string());
            symbols.len() as u32 - 1
        })
    };
    let timeseries: Vec<pb2::TimeSeries> = ts
        .iter()
        .map(|s| pb2::TimeSeries {
            labels_refs: s
                .labels
                .iter()
                .flat_map(|l| [sym(&l.name), sym(&l.value)])
                .collect(),
            histograms: s
                .histograms
                .iter()
                .map(|h| pb2::Histogram::decode(h.encode_to_vec().as_slice()).unwrap())
                .collect(),
            ..Default::default()
        })
        .collect();
    snappy(
        &pb2::Request {
            symbols,
            timeseries,
        }
        .encode_to_vec(),
    )
}

/// What `ts` look like served by a receiver of the default tenant with the external labels
/// `ext`.
pub fn expected(ts: &[pb::TimeSeries], ext: &[(&str, &str)]) -> Hists {
    let mut out = Hists::new();
    for s in ts {
        let mut labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        labels.insert("tenant_id".into(), TENANT.into());
        for (n, v) in ext {
            labels.insert(n.to_string(), v.to_string());
        }
        let e = out.entry(labels).or_default();
        e.extend(s.histograms.iter().map(|h| (h.timestamp, model(h))));
        e.sort_by_key(|x| x.0);
    }
    out
}

/// The histograms of a Series result, every chunk decoded by its type (1 `HISTOGRAM`, 2
/// `FLOAT_HISTOGRAM`); float chunks are an error here, none was written.
pub fn served_histograms(res: &serde_json::Value) -> Hists {
    assert_eq!(res["ok"], true, "{res}");
    let mut out = Hists::new();
    for s in res["series"].as_array().unwrap() {
        let labels: BTreeMap<String, String> = s["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let mut samples = Vec::new();
        for c in s["chunks"].as_array().unwrap() {
            let data = hex(c["data"].as_str().unwrap());
            let decoded: Vec<(i64, FloatHistogram)> = match c["type"].as_i64().unwrap() {
                1 => decode_histogram_chunk(&data)
                    .unwrap()
                    .into_iter()
                    .map(|(t, h)| (t, h.to_float()))
                    .collect(),
                2 => decode_float_histogram_chunk(&data).unwrap(),
                other => panic!("chunk type {other} in {labels:?}"),
            };
            assert_eq!(c["min_time"].as_i64(), decoded.first().map(|x| x.0));
            assert_eq!(c["max_time"].as_i64(), decoded.last().map(|x| x.0));
            samples.extend(decoded.into_iter().map(|(t, h)| (t, normal(h))));
        }
        out.insert(labels, samples);
    }
    out
}
