//! The wire form held to what prost writes for the same `thanos` messages, and the batch
//! operations (drop, truncate, sort, merge) held to the same operations on the series.

use bytes::Bytes;
use gauntlet_proto::thanos::{self, series_response};
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::chunk::{SubChunk, encode_aggr, encode_xor};
use crate::labels::Labels;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A series as the tests write it: labels and chunks.
#[derive(Debug, Clone)]
struct Case {
    labels: Pairs,
    chunks: Vec<RawChunk>,
}

fn xor(ts: &[i64]) -> RawChunk {
    let val: Vec<f64> = ts.iter().map(|&t| t as f64 * 0.5).collect();
    RawChunk {
        min_time: ts[0],
        max_time: *ts.last().unwrap(),
        encoding: Encoding::Xor as u8,
        data: Bytes::from(encode_xor(ts, &val)),
    }
}

fn pairs(p: &[(&str, &str)]) -> Pairs {
    p.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn push(b: &mut WireBatch, c: &Case) {
    let labels: Vec<(&[u8], &[u8])> = c
        .labels
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    b.push_series(&labels, &c.chunks);
}

/// The prost message of a case, with chunks in wire form as the server sent them before
/// this module (one `Chunk` per raw chunk, the aggregates split into their fields).
fn prost_series(c: &Case) -> thanos::Series {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let wire = |data: &[u8], typ: i32| thanos::Chunk {
        r#type: typ,
        data: Bytes::copy_from_slice(data),
        hash: xxhash_rust::xxh64::xxh64(data, 0),
    };
    thanos::Series {
        labels: c
            .labels
            .iter()
            .map(|(n, v)| thanos::Label {
                name: text(n),
                value: text(v),
            })
            .collect(),
        chunks: c
            .chunks
            .iter()
            .map(|ch| {
                let mut out = thanos::AggrChunk {
                    min_time: ch.min_time,
                    max_time: ch.max_time,
                    ..Default::default()
                };
                let typ = |encoding: u8| match encoding {
                    2 => thanos::chunk::Encoding::Histogram,
                    3 => thanos::chunk::Encoding::FloatHistogram,
                    _ => thanos::chunk::Encoding::Xor,
                } as i32;
                if ch.encoding == Encoding::Aggr as u8 {
                    let parts = AggrChunk::new(&ch.data).present();
                    let f = |t: AggrType| parts[t as usize].map(|p| wire(p.data, typ(p.encoding)));
                    out.count = f(AggrType::Count);
                    out.sum = f(AggrType::Sum);
                    out.min = f(AggrType::Min);
                    out.max = f(AggrType::Max);
                    out.counter = f(AggrType::Counter);
                } else {
                    out.raw = Some(wire(&ch.data, typ(ch.encoding)));
                }
                out
            })
            .collect(),
    }
}

/// What prost writes for `cases` framed `per_frame` series to a message (as the old encoder
/// cut them: a new frame when the last one holds `per_frame` series or 1 MiB of series).
fn prost_frames(cases: &[Case], per_frame: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let frame = |r: thanos::SeriesResponse, out: &mut Vec<u8>| put_frame(&r.encode_to_vec(), out);
    if per_frame <= 1 {
        for c in cases {
            let r = thanos::SeriesResponse {
                result: Some(series_response::Result::Series(prost_series(c))),
            };
            frame(r, &mut out);
        }
        return out;
    }
    let mut group: Vec<thanos::Series> = Vec::new();
    let mut bytes = 0;
    let flush = |group: &mut Vec<thanos::Series>, out: &mut Vec<u8>| {
        if !group.is_empty() {
            let r = thanos::SeriesResponse {
                result: Some(series_response::Result::Batch(thanos::SeriesBatch {
                    series: std::mem::take(group),
                })),
            };
            frame(r, out);
        }
    };
    for c in cases {
        if group.len() >= per_frame || bytes >= MAX_FRAME_SERIES_BYTES {
            flush(&mut group, &mut out);
            bytes = 0;
        }
        let s = prost_series(c);
        bytes += field_len(s.encoded_len());
        group.push(s);
    }
    flush(&mut group, &mut out);
    out
}

fn written(cases: &[Case], per_frame: i64) -> WireBatch {
    let mut b = WireBatch::new(WireFraming::for_request(per_frame));
    for c in cases {
        push(&mut b, c);
    }
    b
}

fn sample_cases() -> Vec<Case> {
    let long = "v".repeat(300);
    let aggr = {
        let count = encode_xor(&[0, 300_000], &[30.0, 30.0]);
        let sum = encode_xor(&[0, 300_000], &[1.5, -2.0]);
        encode_aggr(&[
            Some(SubChunk::xor(&count)),
            Some(SubChunk::xor(&sum)),
            None,
            None,
            None,
        ])
    };
    // A native histogram's aggregates: its sum and counter are float histogram chunks (the
    // payloads' bytes do not matter here, only that they travel typed as such).
    let histogram_aggr = {
        let count = encode_xor(&[0, 300_000], &[30.0, 30.0]);
        let fh = |b: &'static [u8]| SubChunk {
            encoding: 3,
            data: b,
        };
        encode_aggr(&[
            Some(SubChunk::xor(&count)),
            Some(fh(&[0, 2, 9, 9, 9])),
            None,
            None,
            Some(fh(&[0, 2, 7, 7])),
        ])
    };
    vec![
        Case {
            labels: pairs(&[("__name__", "up"), ("job", "node"), ("zone", "")]),
            chunks: vec![xor(&[1_700_000_000_000, 1_700_000_119_000]), xor(&[-5, 0])],
        },
        Case {
            labels: pairs(&[("a", long.as_str())]),
            chunks: vec![],
        },
        Case {
            labels: vec![],
            chunks: vec![RawChunk {
                min_time: 0,
                max_time: i64::MAX,
                encoding: 2,
                data: Bytes::from(vec![7; 200]),
            }],
        },
        Case {
            labels: pairs(&[("", "no name"), ("h", "float histogram")]),
            chunks: vec![RawChunk {
                min_time: 10,
                max_time: 20,
                encoding: 3,
                data: Bytes::from_static(&[0, 1, 2, 3]),
            }],
        },
        Case {
            labels: pairs(&[("__name__", "down"), ("le", "+Inf")]),
            chunks: vec![RawChunk {
                min_time: 0,
                max_time: 300_000,
                encoding: Encoding::Aggr as u8,
                data: Bytes::from(aggr),
            }],
        },
        Case {
            labels: pairs(&[("__name__", "down_histogram")]),
            chunks: vec![RawChunk {
                min_time: 0,
                max_time: 300_000,
                encoding: Encoding::Aggr as u8,
                data: Bytes::from(histogram_aggr),
            }],
        },
    ]
}

#[test]
fn frames_are_what_prost_writes() {
    let cases = sample_cases();
    for per in [0i64, 1, 2, 3, 64, -3] {
        let b = written(&cases, per);
        assert_eq!(b.len(), cases.len());
        assert_eq!(
            b.total_chunks(),
            cases.iter().map(|c| c.chunks.len()).sum::<usize>()
        );
        let framing = WireFraming::for_request(per);
        assert_eq!(
            b.into_frames(),
            prost_frames(&cases, framing.per_frame()),
            "per frame {per}"
        );
    }
}

#[test]
fn large_series_and_frames_past_the_byte_cap_match_prost() {
    // Series of 40 KiB (a 3-byte length), frames cut by bytes before they reach their count,
    // and a frame of one small series (shorter header than reserved).
    let mut cases = Vec::new();
    for i in 0..70u32 {
        let value = if i % 10 == 0 { 40_000 } else { 20 + i as usize };
        let v = "x".repeat(value);
        cases.push(Case {
            labels: pairs(&[("__name__", "big"), ("i", &format!("{i:03}")), ("v", &v)]),
            chunks: vec![xor(&[i64::from(i), i64::from(i) + 15_000])],
        });
    }
    let huge = "y".repeat(MAX_FRAME_SERIES_BYTES);
    cases.push(Case {
        labels: pairs(&[("__name__", "huge"), ("v", &huge)]),
        chunks: vec![],
    });
    cases.push(Case {
        labels: pairs(&[("__name__", "tiny")]),
        chunks: vec![],
    });
    for per in [1i64, 8, 64] {
        let b = written(&cases, per);
        assert_eq!(
            b.into_frames(),
            prost_frames(&cases, per as usize),
            "per frame {per}"
        );
    }
}

#[test]
fn labels_read_back_and_compare_as_label_sets() {
    let cases = sample_cases();
    let b = written(&cases, 2);
    for (i, c) in cases.iter().enumerate() {
        let got: Pairs = b.labels(i).map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        // proto3 leaves empty strings out: an empty name or value reads back empty.
        assert_eq!(got, c.labels, "series {i}");
    }
}

#[test]
fn dropping_and_truncating_keep_frames_whole() {
    let cases: Vec<Case> = (0..20u32)
        .map(|i| Case {
            labels: pairs(&[("__name__", "m"), ("i", &format!("{i:02}"))]),
            chunks: vec![xor(&[i64::from(i) * 10, i64::from(i) * 10 + 5])],
        })
        .collect();
    for per in [1i64, 3, 4, 64] {
        for keep in [0usize, 1, 3, 4, 5, 12, 19, 20] {
            let mut b = written(&cases, per);
            b.truncate(keep);
            assert_eq!(b.len(), keep);
            assert_eq!(b.total_chunks(), keep);
            assert_eq!(
                b.clone().into_frames(),
                prost_frames(&cases[..keep], per as usize),
                "per frame {per}, keep {keep}"
            );
            // The batch takes more series after a cut.
            push(&mut b, &cases[keep.min(19)]);
            let mut want = cases[..keep].to_vec();
            want.push(cases[keep.min(19)].clone());
            assert_eq!(b.into_frames(), prost_frames(&want, per as usize));
        }
        let mut b = written(&cases, per);
        for n in (0..20).rev() {
            b.pop_series();
            assert_eq!(b.len(), n);
        }
        assert!(b.into_frames().is_empty());
    }
}

#[test]
fn merged_series_join_or_merge_their_chunks() {
    let labels = pairs(&[("__name__", "m"), ("job", "a")]);
    let case = |chunks: Vec<RawChunk>| Case {
        labels: labels.clone(),
        chunks,
    };
    // Blocks following each other in time: chunks joined as they are.
    let a = written(&[case(vec![xor(&[0, 10]), xor(&[20, 30])])], 64);
    let b = written(&[case(vec![xor(&[40, 50])])], 64);
    let mut out = WireBatch::new(WireFraming::for_request(64));
    out.push_merged(&[(&a, 0), (&b, 0)]).unwrap();
    let want = case(vec![xor(&[0, 10]), xor(&[20, 30]), xor(&[40, 50])]);
    assert_eq!(
        out.clone().into_frames(),
        prost_frames(std::slice::from_ref(&want), 64)
    );
    // The same series again (a block holding it twice): the last series grows.
    let c = written(&[case(vec![xor(&[60, 70])])], 64);
    out.push_merged(&[(&c, 0)]).unwrap();
    assert_eq!(out.len(), 1);
    let mut grown = want.clone();
    grown.chunks.push(xor(&[60, 70]));
    assert_eq!(out.into_frames(), prost_frames(&[grown], 64));
    // Overlapping blocks: samples merged and cut again, as merge_chunks does.
    let x = written(&[case(vec![xor(&[0, 10, 20])])], 1);
    let y = written(&[case(vec![xor(&[5, 15, 25])])], 1);
    let mut out = WireBatch::new(WireFraming::for_request(1));
    out.push_merged(&[(&x, 0), (&y, 0)]).unwrap();
    let merged = merge_chunks(vec![xor(&[0, 10, 20]), xor(&[5, 15, 25])]).unwrap();
    assert_eq!(out.into_frames(), prost_frames(&[case(merged)], 1));
}

#[test]
fn sorting_orders_series_as_label_sets() {
    let names = ["b", "a", "a", "c", ""];
    let cases: Vec<Case> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Case {
            labels: if i == 2 {
                pairs(&[("a", "1"), ("b", "2")])
            } else {
                pairs(&[("a", n)])
            },
            chunks: vec![xor(&[i as i64, i as i64 + 1])],
        })
        .collect();
    let b = written(&cases, 2);
    assert!(!b.is_sorted());
    let s = b.sorted();
    assert!(s.is_sorted());
    let mut want = cases.clone();
    want.sort_by_key(|x| label_set(&x.labels));
    assert_eq!(s.into_frames(), prost_frames(&want, 2));
}

fn label_set(p: &Pairs) -> Labels {
    Labels::from_pairs(p.iter().map(|(n, v)| {
        (
            String::from_utf8_lossy(n).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        )
    }))
}

proptest! {
    #[test]
    fn series_compare_as_their_label_sets(
        a in proptest::collection::btree_map("[a-c_]{1,3}", "[a-c]{0,3}|[x]{130}", 0..4),
        b in proptest::collection::btree_map("[a-c_]{1,3}", "[a-c]{0,3}|[x]{130}", 0..4),
    ) {
        // Empty values are not labels (Prometheus drops them), so leave them out.
        let to_case = |m: &std::collections::BTreeMap<String, String>| Case {
            labels: m
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            chunks: vec![],
        };
        let (ca, cb) = (to_case(&a), to_case(&b));
        let wa = written(std::slice::from_ref(&ca), 64);
        let wb = written(std::slice::from_ref(&cb), 1);
        prop_assert_eq!(
            wa.cmp_series(0, &wb, 0),
            label_set(&ca.labels).cmp(&label_set(&cb.labels))
        );
    }
}

#[test]
fn varints_written_at_once_are_the_varints() {
    let mut values: Vec<u64> = vec![0, 1, 127, 128, 300, 16_383, 16_384, u64::MAX];
    values.extend((0..64).map(|s| 1u64 << s));
    values.extend((1..64).map(|s| (1u64 << s) - 1));
    values.extend([1_700_000_000_000, -5i64 as u64, i64::MIN as u64]);
    for v in values {
        // Go's binary.PutUvarint, byte by byte.
        let (mut want, mut x) = (Vec::new(), v);
        while x >= 0x80 {
            want.push(x as u8 | 0x80);
            x >>= 7;
        }
        want.push(x as u8);
        assert_eq!(want.len(), varint_len(v), "{v}");
        let mut buf = [0xEE; 24];
        let end = buf::varint_at(&mut buf, 3, v);
        assert_eq!(&buf[3..end], &want[..], "{v}");
        assert_eq!(buf[..3], [0xEE; 3]);
    }
}
